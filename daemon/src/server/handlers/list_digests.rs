//! `ListDigests`: names, set times and keyed value digests, never values.

use super::Ctx;
use crate::access::{Effect, Need, Rule};
use crate::error::Result;
use flux_protocol::message::Response;

pub const RULE: Rule = Rule::project(Need::Admin, Effect::Read);

pub fn handle(ctx: &mut Ctx<'_>) -> Result<Response> {
    Ok(Response::SecretDigests(ctx.project()?.list_digests()?))
}
