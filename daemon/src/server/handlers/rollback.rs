//! `Rollback`: make an earlier version of a secret current again, as a new
//! version recorded with the peer; live at once, announced to subscribers
//! like a `Set`.

use super::Ctx;
use crate::access::{Effect, Need, Rule};
use crate::error::Result;
use flux_protocol::message::{Response, Rollback};

pub const RULE: Rule = Rule::project(Need::Admin, Effect::Write);

pub async fn handle(ctx: &mut Ctx<'_>, req: Rollback) -> Result<Response> {
    let writer = ctx.writer();
    let rolled = ctx.project()?.rollback(&req.name, req.to, &writer).await?;
    Ok(Response::RolledBack(rolled))
}
