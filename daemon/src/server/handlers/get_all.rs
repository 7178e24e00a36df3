//! `GetAll`: every name with its value, for `fluxctl run`.

use super::Ctx;
use crate::access::{Effect, Need, Rule};
use crate::error::Result;
use flux_protocol::message::Response;

pub const RULE: Rule = Rule::project(Need::Reader, Effect::Read);

pub fn handle(ctx: &mut Ctx<'_>) -> Result<Response> {
    Ok(Response::Values(ctx.project()?.get_all()?))
}
