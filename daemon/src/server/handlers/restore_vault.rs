//! `RestoreVault`: serve the vault now in the store although it is older
//! than the one served (a backup put back on purpose).

use super::Ctx;
use crate::access::{Effect, Need, Rule};
use crate::error::Result;
use flux_protocol::message::Response;

pub const RULE: Rule = Rule::project(Need::Admin, Effect::Write);

pub async fn handle(ctx: &mut Ctx<'_>) -> Result<Response> {
    Ok(Response::Restored(ctx.project()?.restore().await?))
}
