//! `PublishHosts`: a host list signed by the operator key, published and
//! acted on — keys wrapped for added hosts, projects re-keyed away from
//! removed ones (fleet mode, `crate::fleet::hosts`).

use super::{Ctx, blocking};
use crate::access::{Effect, Need, Rule};
use crate::error::Result;
use flux_protocol::message::{Response, SignedHosts};

pub const RULE: Rule = Rule::control(Need::DaemonAdmin, Effect::Write);

pub async fn handle(ctx: &mut Ctx<'_>, req: SignedHosts) -> Result<Response> {
    let hosts = ctx.services.hosts.clone();
    Ok(Response::HostsChanged(
        blocking("hosts", move || hosts.publish(req)).await?,
    ))
}
