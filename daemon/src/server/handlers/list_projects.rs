//! `ListProjects`: every project with a key, served or not.

use super::Ctx;
use crate::access::{Effect, Need, Rule};
use crate::error::Result;
use flux_protocol::message::Response;

pub const RULE: Rule = Rule::control(Need::DaemonAdmin, Effect::Read);

pub fn handle(ctx: &mut Ctx<'_>) -> Result<Response> {
    Ok(Response::Projects(
        ctx.services.lifecycle.registry().infos(),
    ))
}
