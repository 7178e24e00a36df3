//! `Health`: the status, with the health of what every project depends on
//! (the audit log) and the daemon-wide problems.

use super::Ctx;
use crate::access::{Effect, Need, Rule};
use crate::error::Result;
use flux_protocol::message::{Health, Response};

pub const RULE: Rule = Rule::control(Need::DaemonAdmin, Effect::Read);

pub fn handle(ctx: &mut Ctx<'_>) -> Result<Response> {
    let audit = ctx.services.access.audit().health();
    let mut problems = ctx.services.hosts.problems();
    if let Some(e) = &audit.error {
        problems.push(format!(
            "{e}: writes are refused until it can be written; free space or fix the file system"
        ));
    }
    Ok(Response::Health(Box::new(Health {
        status: super::status::status(ctx.services),
        audit,
        problems,
    })))
}
