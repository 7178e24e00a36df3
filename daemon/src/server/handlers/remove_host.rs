//! `RemoveHost`: remove a host and re-key its projects (fleet mode).

use super::{Ctx, blocking};
use crate::access::{Effect, Need, Rule};
use crate::error::Result;
use flux_protocol::message::{HostRecipient, HostUpdate, Response};

pub const RULE: Rule = Rule::control(Need::DaemonAdmin, Effect::Write);

pub async fn handle(ctx: &mut Ctx<'_>, req: HostRecipient) -> Result<Response> {
    let hosts = ctx.services.hosts.clone();
    let recipient = req.recipient.clone();
    let projects = blocking("hosts", move || hosts.remove(&recipient)).await?;
    Ok(Response::HostUpdated(HostUpdate {
        recipient: req.recipient,
        projects,
    }))
}
