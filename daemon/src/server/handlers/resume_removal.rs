//! `ResumeRemoval`: re-key the projects still keyed from before the newest
//! host removal — finishes an interrupted `hosts remove` (fleet mode).

use super::{Ctx, blocking};
use crate::access::{Effect, Need, Rule};
use crate::error::Result;
use flux_protocol::message::Response;

pub const RULE: Rule = Rule::control(Need::DaemonAdmin, Effect::Write);

pub async fn handle(ctx: &mut Ctx<'_>) -> Result<Response> {
    let hosts = ctx.services.hosts.clone();
    Ok(Response::HostsChanged(
        blocking("hosts", move || hosts.resume()).await?,
    ))
}
