//! `AddHost`: superseded by `PublishHosts`. Host lists are signed by the
//! fleet's operator key, which no daemon holds, so a daemon cannot add a
//! host by itself: the request is refused with what to run instead.

use super::Ctx;
use crate::access::{Effect, Need, Rule};
use crate::error::{Error, Result};
use flux_protocol::message::{HostRecipient, Response};

pub const RULE: Rule = Rule::control(Need::DaemonAdmin, Effect::Write);

pub async fn handle(_ctx: &mut Ctx<'_>, _req: HostRecipient) -> Result<Response> {
    Err(superseded("add"))
}

/// Why `AddHost` and `RemoveHost` are refused.
pub fn superseded(what: &str) -> Error {
    Error::BadRequest(format!(
        "host list changes are signed with the fleet's operator key, which fluxd does not hold: run `fluxctl hosts {what} … --operator-key FILE` (a fluxctl as new as this fluxd)"
    ))
}
