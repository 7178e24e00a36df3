//! `Audit`: the audit log as records without counts (kept for clients of
//! the first protocol release; `AuditLog` and `AuditTrail` supersede it).

use super::Ctx;
use crate::access::audit::Filter;
use crate::access::{Effect, Need, Rule};
use crate::error::Result;
use flux_protocol::message::{AuditQuery, Response};

pub const RULE: Rule = Rule::control(Need::DaemonAdmin, Effect::Read);

pub async fn handle(ctx: &mut Ctx<'_>, query: AuditQuery) -> Result<Response> {
    let entries = super::audit_log::entries(ctx, Filter::of(&query), query.limit).await?;
    Ok(Response::AuditRecords(
        entries.iter().map(|e| e.to_entry().to_record()).collect(),
    ))
}
