//! `Metrics`: the daemon's counters and gauges in the Prometheus text
//! format ([`crate::server::exposition`]) — project names and numbers,
//! never a secret's name or value.

use super::Ctx;
use crate::access::{Effect, Need, Rule};
use crate::error::Result;
use flux_protocol::message::Response;

pub const RULE: Rule = Rule::control(Need::DaemonAdmin, Effect::Read);

pub fn handle(ctx: &mut Ctx<'_>) -> Result<Response> {
    Ok(Response::Metrics(crate::server::exposition::render(
        ctx.services,
    )))
}
