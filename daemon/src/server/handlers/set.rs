//! `Set`: create or replace one secret; answered once it is durable.

use super::Ctx;
use crate::access::{Effect, Need, Rule};
use crate::error::Result;
use flux_protocol::message::{Response, Set};

pub const RULE: Rule = Rule::project(Need::Admin, Effect::Write);

pub async fn handle(ctx: &mut Ctx<'_>, req: Set) -> Result<Response> {
    let limits = &ctx.services.config.limits;
    let stored = ctx.project()?.set(&req.name, req.value, limits).await?;
    Ok(Response::Stored(stored))
}
