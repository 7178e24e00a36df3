//! `Status`: the daemon and each project's health.

use super::Ctx;
use crate::access::{Effect, Need, Rule};
use crate::error::Result;
use crate::server::Services;
use flux_protocol::message::{DaemonStatus, Response};

pub const RULE: Rule = Rule::control(Need::DaemonAdmin, Effect::Read);

pub fn handle(ctx: &mut Ctx<'_>) -> Result<Response> {
    Ok(Response::Status(status(ctx.services)))
}

/// The daemon's status (also inside `Health`).
pub fn status(services: &Services) -> DaemonStatus {
    DaemonStatus {
        version: env!("CARGO_PKG_VERSION").into(),
        pid: std::process::id(),
        started_at_ms: services.runtime.started_at_ms(),
        state_dir: services.config.state_dir.display().to_string(),
        runtime_dir: services.config.runtime_dir.display().to_string(),
        projects: services.lifecycle.registry().infos(),
    }
}
