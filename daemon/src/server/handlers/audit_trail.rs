//! `AuditTrail`: the newest entries of the audit log, rotated files
//! included, read summaries with their counts, each with the peer's
//! workload (unit, slice, cgroup, executable hash); optionally only those
//! of units matching a pattern.

use super::Ctx;
use crate::access::audit::Filter;
use crate::access::{Effect, Need, Rule};
use crate::error::Result;
use flux_protocol::message::{AuditTrailQuery, Response};

pub const RULE: Rule = Rule::control(Need::DaemonAdmin, Effect::Read);

pub async fn handle(ctx: &mut Ctx<'_>, query: AuditTrailQuery) -> Result<Response> {
    let filter = Filter {
        project: query.project.as_deref(),
        since_ms: query.since_ms,
        unit: query.unit.as_deref(),
    };
    Ok(Response::AuditTrail(
        super::audit_log::entries(ctx, filter, query.limit).await?,
    ))
}
