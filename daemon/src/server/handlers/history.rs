//! `History`: every version kept of a secret — number, when, who, keyed
//! digest — never a value. An admin read, like `List`: readers get values,
//! not their history.

use super::Ctx;
use crate::access::{Effect, Need, Rule};
use crate::error::Result;
use flux_protocol::message::{Response, SecretName};

pub const RULE: Rule = Rule::project(Need::Admin, Effect::Read);

pub async fn handle(ctx: &mut Ctx<'_>, req: SecretName) -> Result<Response> {
    Ok(Response::History(ctx.project()?.history(&req.name).await?))
}
