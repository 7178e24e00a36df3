//! `CreateProject`: a new key, an empty vault and a socket.

use super::Ctx;
use crate::access::{Effect, Need, Rule};
use crate::error::Result;
use flux_protocol::message::{ProjectName, Response};

pub const RULE: Rule = Rule::control(Need::DaemonAdmin, Effect::Write);

pub async fn handle(ctx: &mut Ctx<'_>, req: ProjectName) -> Result<Response> {
    let info = ctx.services.lifecycle.create_project(&req.name).await?;
    Ok(Response::ProjectCreated(info))
}
