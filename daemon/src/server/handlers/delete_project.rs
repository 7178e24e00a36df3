//! `DeleteProject`: key first (crypto-shredding), then vault, then socket.

use super::Ctx;
use crate::access::{Effect, Need, Rule};
use crate::error::Result;
use flux_protocol::message::{ProjectName, Response};

pub const RULE: Rule = Rule::control(Need::DaemonAdminOrAdminOfNamed, Effect::Write);

pub async fn handle(ctx: &mut Ctx<'_>, req: ProjectName) -> Result<Response> {
    ctx.services.lifecycle.delete_project(&req.name).await?;
    Ok(Response::ProjectDeleted(req))
}
