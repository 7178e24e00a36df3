//! `GetAll`: every name with its value, for `fluxctl run` — every one this
//! reader may read.

use super::Ctx;
use crate::access::{Effect, Need, Rule};
use crate::error::Result;
use flux_protocol::message::Response;

pub const RULE: Rule = Rule::project(Need::Reader, Effect::Read);

pub fn handle(ctx: &mut Ctx<'_>) -> Result<Response> {
    let mut values = ctx.project()?.get_all()?;
    if !ctx.hidden.is_empty() {
        values.retain(|v| !ctx.hidden.contains(&v.name));
    }
    Ok(Response::Values(values))
}
