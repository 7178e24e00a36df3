//! `PrepareHostKey`: this host's next host key (fleet mode), for `fluxctl
//! hosts rotate-key`: created when there is none; fluxd switches to it at
//! its next start once a host list lists it.

use super::{Ctx, blocking};
use crate::access::{Effect, Need, Rule};
use crate::error::Result;
use flux_protocol::message::{HostKeyToken, Response};

pub const RULE: Rule = Rule::control(Need::DaemonAdmin, Effect::Write);

pub async fn handle(ctx: &mut Ctx<'_>) -> Result<Response> {
    let hosts = ctx.services.hosts.clone();
    let join_token = blocking("hosts", move || hosts.prepare_key()).await?;
    Ok(Response::HostKey(HostKeyToken { join_token }))
}
