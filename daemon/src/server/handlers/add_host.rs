//! `AddHost`: let a host serve every project this host holds a key for
//! (fleet mode).

use super::{Ctx, blocking};
use crate::access::{Effect, Need, Rule};
use crate::error::Result;
use flux_protocol::message::{HostRecipient, HostUpdate, Response};

pub const RULE: Rule = Rule::control(Need::DaemonAdmin, Effect::Write);

pub async fn handle(ctx: &mut Ctx<'_>, req: HostRecipient) -> Result<Response> {
    let hosts = ctx.services.hosts.clone();
    let recipient = req.recipient.clone();
    let projects = blocking("hosts", move || hosts.add(&recipient)).await?;
    Ok(Response::HostUpdated(HostUpdate {
        recipient: req.recipient,
        projects,
    }))
}
