//! `SetMany`: several secrets in one vault write, all or none
//! (`fluxctl secrets import`).

use super::Ctx;
use crate::access::{Effect, Need, Rule};
use crate::error::Result;
use flux_protocol::message::{NamedValue, Response};

pub const RULE: Rule = Rule::project(Need::Admin, Effect::Write);

pub async fn handle(ctx: &mut Ctx<'_>, entries: Vec<NamedValue>) -> Result<Response> {
    let limits = &ctx.services.config.limits;
    let stored = ctx.project()?.set_many(entries, limits).await?;
    Ok(Response::StoredMany(stored))
}
