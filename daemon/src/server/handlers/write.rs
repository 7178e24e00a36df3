//! `Write`: `Set`, answered with what the write did — created, updated, or
//! unchanged (the value was already current: no new version) — which
//! `Stored` cannot say (`fluxctl secrets set`).

use super::Ctx;
use crate::access::{Effect, Need, Rule};
use crate::error::Result;
use flux_protocol::message::{Response, Set};

pub const RULE: Rule = Rule::project(Need::Admin, Effect::Write);

pub async fn handle(ctx: &mut Ctx<'_>, req: Set) -> Result<Response> {
    let writer = ctx.writer();
    let written = ctx
        .project()?
        .write_one(&req.name, req.value, &writer)
        .await?;
    Ok(Response::Written(written))
}
