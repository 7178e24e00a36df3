//! `WriteMany`: `SetMany`, answered with the names created, updated and
//! unchanged (already holding the value given: no new version)
//! (`fluxctl secrets import`).

use super::Ctx;
use crate::access::{Effect, Need, Rule};
use crate::error::Result;
use flux_protocol::message::{NamedValue, Response};

pub const RULE: Rule = Rule::project(Need::Admin, Effect::Write);

pub async fn handle(ctx: &mut Ctx<'_>, entries: Vec<NamedValue>) -> Result<Response> {
    let writer = ctx.writer();
    let written = ctx.project()?.write_many(entries, &writer).await?;
    Ok(Response::WrittenMany(written))
}
