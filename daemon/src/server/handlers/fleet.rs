//! `Fleet`: the fleet as this host sees it — its id, this host's join
//! token, the host list, and what keeps this host from serving it.

use super::Ctx;
use crate::access::{Effect, Need, Rule};
use crate::error::Result;
use flux_protocol::message::Response;

pub const RULE: Rule = Rule::control(Need::DaemonAdmin, Effect::Read);

pub fn handle(ctx: &mut Ctx<'_>) -> Result<Response> {
    Ok(Response::Fleet(ctx.services.hosts.fleet()))
}
