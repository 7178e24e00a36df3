//! What a session writes to the audit log: who asked — the peer's uid,
//! gid, pid and executable, and its workload from the kernel (systemd
//! unit, slice, cgroup, and the executable's SHA-256 when a rule had it
//! checked) — and what. Writes, one entry each; a
//! connection's first denials one by one, and its reads and later denials
//! counted into summaries handed over when the connection ends, every
//! `[audit] summary_interval`, or when too many are pending. Denials and
//! summaries are folded again per peer by the audit writer
//! ([`crate::access::audit::fold`]), so many connections of one peer cost
//! the log a few lines, not one each.

use super::conn::{Conn, Tally};
use crate::access::Effect;
use crate::access::audit::{DENIALS_IN_FULL, ReadAudit};
use flux_protocol::message::AuditTrailEntry;
use flux_vault::time::now_ms;

impl Conn {
    /// Records a decision: writes one entry each; the first denials handed
    /// over one by one and reads and later denials counted into summaries,
    /// both folded per peer by the writer. Says what the connection must do
    /// about its pending summaries.
    pub(super) fn audit(
        &mut self,
        op: &'static str,
        name: Option<&str>,
        detail: Option<String>,
        allowed: bool,
        effect: Effect,
        result: &str,
    ) -> Tally {
        let audit = self.services.access.audit();
        if !audit.enabled() {
            return Tally::Quiet;
        }
        let time_ms = now_ms();
        let workload = &self.peer.identity.workload;
        let entry = || AuditTrailEntry {
            time_ms,
            first_ms: time_ms,
            count: 1,
            project: self.target.project_name().map(str::to_owned),
            op: op.to_owned(),
            name: name.map(str::to_owned),
            uid: self.peer.uid,
            gid: self.peer.gid,
            pid: self.peer.pid,
            exe: self.peer.exe.clone(),
            unit: workload.unit.clone(),
            slice: workload.slice.clone(),
            cgroup: workload.cgroup.clone(),
            exe_sha256: workload.exe.as_ref().and_then(|e| e.sha256.clone()),
            allowed,
            result: result.to_owned(),
            detail: detail.clone(),
        };
        let summarize = if allowed {
            effect == Effect::Read && audit.config().reads == ReadAudit::Summary
        } else {
            self.denials = self.denials.saturating_add(1);
            self.denials > DENIALS_IN_FULL
        };
        if !summarize {
            if allowed {
                audit.record(entry());
            } else {
                audit.fold(entry());
            }
            return Tally::Quiet;
        }
        let key = name.unwrap_or("");
        let program = (
            self.peer.exe.as_deref(),
            workload.exe.as_ref().and_then(|e| e.sha256.as_deref()),
        );
        let mut summaries = self.summaries.lock().unwrap_or_else(|e| e.into_inner());
        let was_empty = summaries.is_empty();
        let full = summaries.count(key, op, allowed, result, program, time_ms, entry);
        if full {
            Tally::Full
        } else if was_empty {
            Tally::Started(audit.config().summary_interval)
        } else {
            Tally::Quiet
        }
    }
}
