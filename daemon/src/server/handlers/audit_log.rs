//! `AuditLog`: the newest entries of the audit log, rotated files
//! included, read summaries with their counts.

use super::{Ctx, blocking};
use crate::access::audit;
use crate::access::{Effect, Need, Rule};
use crate::error::{Error, Result};
use flux_protocol::message::{AuditEntry, AuditQuery, Response};

pub const RULE: Rule = Rule::control(Need::DaemonAdmin, Effect::Read);

pub async fn handle(ctx: &mut Ctx<'_>, query: AuditQuery) -> Result<Response> {
    Ok(Response::AuditLog(entries(ctx, query).await?))
}

/// The newest `limit` (0: the default) of `project`'s entries (all when
/// none), at or after `since_ms`.
pub async fn entries(ctx: &Ctx<'_>, query: AuditQuery) -> Result<Vec<AuditEntry>> {
    let log = ctx.services.access.audit();
    let Some(path) = log.path().map(std::path::Path::to_path_buf) else {
        return Err(Error::BadRequest(
            "the audit log is disabled ([audit] enabled = false)".into(),
        ));
    };
    log.flush().await;
    let limit = match query.limit {
        0 => audit::DEFAULT_LIMIT,
        n => n as usize,
    };
    let keep = log.config().keep;
    blocking("audit read", move || {
        audit::read(&path, keep, query.project.as_deref(), query.since_ms, limit)
    })
    .await
}
