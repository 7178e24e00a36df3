//! `Audit`: the audit log as records without counts (kept for clients of
//! the first protocol release; `AuditLog` supersedes it).

use super::Ctx;
use crate::access::{Effect, Need, Rule};
use crate::error::Result;
use flux_protocol::message::{AuditQuery, Response};

pub const RULE: Rule = Rule::control(Need::DaemonAdmin, Effect::Read);

pub async fn handle(ctx: &mut Ctx<'_>, query: AuditQuery) -> Result<Response> {
    let entries = super::audit_log::entries(ctx, query).await?;
    Ok(Response::AuditRecords(
        entries.iter().map(|e| e.to_record()).collect(),
    ))
}
