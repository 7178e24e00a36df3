//! `AddHost`: sign a host, named by its join token, into the fleet's host
//! list and let it serve every project this host holds a key for (fleet
//! mode). The answer names the host by its recipient.

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
        recipient: req
            .recipient
            .split_once(':')
            .map_or(req.recipient.as_str(), |(r, _)| r)
            .to_owned(),
        projects,
    }))
}
