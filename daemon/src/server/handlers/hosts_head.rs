//! `HostsHead`: the signed host list and fleet id this host holds, for
//! `fluxctl` to check against the operator key before it signs the next
//! version over them (fleet mode).

use super::{Ctx, blocking};
use crate::access::{Effect, Need, Rule};
use crate::error::Result;
use flux_protocol::message::Response;

pub const RULE: Rule = Rule::control(Need::DaemonAdmin, Effect::Read);

pub async fn handle(ctx: &mut Ctx<'_>) -> Result<Response> {
    let hosts = ctx.services.hosts.clone();
    Ok(Response::HostsHead(
        blocking("hosts", move || hosts.head()).await?,
    ))
}
