//! `SetMany`: several secrets in one vault write, all or none
//! (`fluxctl secrets import`).

use super::Ctx;
use crate::access::{Effect, Need, Rule};
use crate::error::Result;
use flux_protocol::message::{NamedValue, Response};

pub const RULE: Rule = Rule::project(Need::Admin, Effect::Write);

pub async fn handle(ctx: &mut Ctx<'_>, entries: Vec<NamedValue>) -> Result<Response> {
    let writer = ctx.writer();
    let stored = ctx.project()?.set_many(entries, &writer).await?;
    Ok(Response::StoredMany(stored))
}
