//! `ListHosts`: this host's recipient and the fleet's hosts.

use super::{Ctx, blocking};
use crate::access::{Effect, Need, Rule};
use crate::error::Result;
use flux_protocol::message::Response;

pub const RULE: Rule = Rule::control(Need::DaemonAdmin, Effect::Read);

pub async fn handle(ctx: &mut Ctx<'_>) -> Result<Response> {
    let hosts = ctx.services.hosts.clone();
    Ok(Response::Hosts(
        blocking("hosts", move || hosts.list()).await?,
    ))
}
