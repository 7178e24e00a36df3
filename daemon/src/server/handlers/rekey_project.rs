//! `RekeyProject`: a new key for a project — its vault, current values and
//! kept versions, re-sealed with it, the old key destroyed (see
//! `Project::rekey`). Reads go on throughout.

use super::Ctx;
use crate::access::{Effect, Need, Rule};
use crate::error::Result;
use flux_protocol::message::{ProjectName, Response};

pub const RULE: Rule = Rule::control(Need::DaemonAdminOrAdminOfNamed, Effect::Write);

pub async fn handle(ctx: &mut Ctx<'_>, req: ProjectName) -> Result<Response> {
    Ok(Response::Rekeyed(
        ctx.services.lifecycle.rekey_project(&req.name).await?,
    ))
}
