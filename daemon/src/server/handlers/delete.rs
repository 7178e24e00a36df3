//! `Delete`: remove one secret with every version kept of it; answered
//! once the vault without it is durable.

use super::Ctx;
use crate::access::{Effect, Need, Rule};
use crate::error::Result;
use flux_protocol::message::{Delete, Response};

pub const RULE: Rule = Rule::project(Need::Admin, Effect::Write);

pub async fn handle(ctx: &mut Ctx<'_>, req: Delete) -> Result<Response> {
    let writer = ctx.writer();
    let deleted = ctx.project()?.delete(&req.name, &writer).await?;
    Ok(Response::Deleted(deleted))
}
