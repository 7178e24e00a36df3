//! `RemoveHost`: superseded by `PublishHosts` (see `add_host`).

use super::Ctx;
use crate::access::{Effect, Need, Rule};
use crate::error::Result;
use flux_protocol::message::{HostRecipient, Response};

pub const RULE: Rule = Rule::control(Need::DaemonAdmin, Effect::Write);

pub async fn handle(_ctx: &mut Ctx<'_>, _req: HostRecipient) -> Result<Response> {
    Err(super::add_host::superseded("remove"))
}
