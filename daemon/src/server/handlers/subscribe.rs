//! `Subscribe`: from now on, the project's change events are pushed on
//! this connection (names and generations, never values).
//!
//! Readers subscribe to drop cached values; admins may too — an event
//! tells them no more than `List` does (names, and that they changed), and
//! it lets a read-only view such as `fluxctl dashboard` follow changes as
//! they happen. No role receives a value through it.

use super::Ctx;
use crate::access::{Effect, Need, Rule};
use crate::error::Result;
use flux_protocol::message::{Response, Subscribed};
use tracing::debug;

pub const RULE: Rule = Rule::project(Need::ReaderOrAdmin, Effect::Read);

pub fn handle(ctx: &mut Ctx<'_>) -> Result<Response> {
    let (rx, generation) = ctx.project()?.subscribe()?;
    *ctx.events = Some(rx);
    debug!(generation, "subscribed");
    Ok(Response::Subscribed(Subscribed { generation }))
}
