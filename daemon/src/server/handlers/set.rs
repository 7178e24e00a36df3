//! `Set`: create or replace one secret, as a new version recorded with the
//! peer's uid and executable; answered once it is durable.

use super::Ctx;
use crate::access::{Effect, Need, Rule};
use crate::error::Result;
use flux_protocol::message::{Response, Set};

pub const RULE: Rule = Rule::project(Need::Admin, Effect::Write);

pub async fn handle(ctx: &mut Ctx<'_>, req: Set) -> Result<Response> {
    let writer = ctx.writer();
    let stored = ctx.project()?.set(&req.name, req.value, &writer).await?;
    Ok(Response::Stored(stored))
}
