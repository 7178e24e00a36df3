//! `Subscribe`: from now on, the project's change events are pushed on
//! this connection (names and generations, never values).

use super::Ctx;
use crate::access::{Effect, Need, Rule};
use crate::error::Result;
use flux_protocol::message::{Response, Subscribed};
use tracing::debug;

pub const RULE: Rule = Rule::project(Need::Reader, Effect::Read);

pub fn handle(ctx: &mut Ctx<'_>) -> Result<Response> {
    let (rx, generation) = ctx.project()?.subscribe();
    *ctx.events = Some(rx);
    debug!(generation, "subscribed");
    Ok(Response::Subscribed(Subscribed { generation }))
}
