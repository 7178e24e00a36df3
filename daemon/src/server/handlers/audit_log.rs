//! `AuditLog`: the newest entries of the audit log, rotated files
//! included, read summaries with their counts (without the workload,
//! which only `AuditTrail`'s entries carry); and the reading all three
//! audit requests share.

use super::{Ctx, blocking};
use crate::access::audit::{self, Filter};
use crate::access::{Effect, Need, Rule};
use crate::error::{Error, Result};
use flux_protocol::message::{AuditQuery, AuditTrailEntry, Response};

pub const RULE: Rule = Rule::control(Need::DaemonAdmin, Effect::Read);

pub async fn handle(ctx: &mut Ctx<'_>, query: AuditQuery) -> Result<Response> {
    let entries = entries(ctx, Filter::of(&query), query.limit).await?;
    Ok(Response::AuditLog(
        entries.iter().map(AuditTrailEntry::to_entry).collect(),
    ))
}

/// The newest `limit` (0: the default) of the entries `filter` admits.
pub async fn entries(
    ctx: &Ctx<'_>,
    filter: Filter<'_>,
    limit: u32,
) -> Result<Vec<AuditTrailEntry>> {
    let log = ctx.services.access.audit();
    let Some(path) = log.path().map(std::path::Path::to_path_buf) else {
        return Err(Error::BadRequest(
            "the audit log is disabled ([audit] enabled = false)".into(),
        ));
    };
    log.flush().await;
    let limit = match limit {
        0 => audit::DEFAULT_LIMIT,
        n => n as usize,
    };
    let keep = log.config().keep;
    let project = filter.project.map(str::to_owned);
    let unit = filter.unit.map(str::to_owned);
    let since_ms = filter.since_ms;
    blocking("audit read", move || {
        let filter = Filter {
            project: project.as_deref(),
            since_ms,
            unit: unit.as_deref(),
        };
        audit::read(&path, keep, filter, limit)
    })
    .await
}
