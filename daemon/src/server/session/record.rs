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
use crate::access::audit::{DENIALS_IN_FULL, ReadAudit, bounded_name};
use flux_protocol::message::{AuditTrailEntry, NamedValue, Request};
use flux_vault::vault::now_ms;

/// What the audit log records of a request: the name it names (bounded,
/// see [`bounded_name`]) and a detail.
pub(super) fn audit_names(req: &Request) -> (Option<String>, Option<String>) {
    let one = |name: &str| {
        let (shown, detail) = bounded_name(name);
        (Some(shown), detail)
    };
    match req {
        Request::Get(g) => one(&g.name),
        Request::History(h) => one(&h.name),
        Request::Rollback(r) => {
            let (name, detail) = one(&r.name);
            let to = match r.to {
                Some(v) => format!("to version {v}"),
                None => "to the previous version".to_owned(),
            };
            (
                name,
                Some(match detail {
                    Some(d) => format!("{to}; {d}"),
                    None => to,
                }),
            )
        }
        Request::Diff(entries) => (None, Some(names_detail(entries))),
        Request::Set(s) | Request::Write(s) => one(&s.name),
        Request::Delete(d) => one(&d.name),
        Request::CreateProject(p) | Request::DeleteProject(p) | Request::RekeyProject(p) => {
            one(&p.name)
        }
        Request::Audit(q) | Request::AuditLog(q) => match &q.project {
            Some(p) => one(p),
            None => (None, None),
        },
        Request::AuditTrail(q) => {
            let (name, detail) = match &q.project {
                Some(p) => one(p),
                None => (None, None),
            };
            // The pattern, escaped and bounded as a name is.
            let unit = q.unit.as_deref().map(|u| {
                let kept: String = u.chars().take(64).collect();
                let more = if kept.len() < u.len() { "…" } else { "" };
                format!("units matching {}{more}", kept.escape_debug())
            });
            let detail = match (detail, unit) {
                (Some(d), Some(u)) => Some(format!("{u}; {d}")),
                (d, u) => u.or(d),
            };
            (name, detail)
        }
        Request::AddHost(h) | Request::RemoveHost(h) => one(&h.recipient),
        Request::PublishHosts(signed) => (
            None,
            Some(
                match flux_vault::membership::Envelope::peek_version(&signed.list) {
                    Ok(v) if signed.id.is_empty() => format!("host list version {v}"),
                    Ok(v) => format!("host list version {v}, founding the fleet"),
                    Err(_) => "not a signed host list".to_owned(),
                },
            ),
        ),
        Request::SetMany(entries) | Request::WriteMany(entries) => {
            (None, Some(names_detail(entries)))
        }
        Request::Hello(_)
        | Request::List
        | Request::GetAll
        | Request::ListProjects
        | Request::Status
        | Request::Subscribe
        | Request::ListHosts
        | Request::Health
        | Request::RestoreVault
        | Request::Fleet
        | Request::ListDigests
        | Request::Metrics
        | Request::HostsHead
        | Request::ResumeRemoval
        | Request::PrepareHostKey => (None, None),
    }
}

/// `N names: A, B, …` — the names of a `SetMany` or `Diff` (never a
/// value), the first 20 of them.
fn names_detail(entries: &[NamedValue]) -> String {
    const SHOWN: usize = 20;
    let mut names: Vec<String> = entries
        .iter()
        .take(SHOWN)
        .map(|e| bounded_name(&e.name).0)
        .collect();
    if entries.len() > SHOWN {
        names.push(format!("and {} more", entries.len() - SHOWN));
    }
    format!("{} names: {}", entries.len(), names.join(", "))
}

impl Conn {
    /// Records a decision: writes one entry each; the first denials handed
    /// over one by one and reads and later denials counted into summaries,
    /// both folded per peer by the writer. Says what the connection must do
    /// about its pending summaries.
    pub(super) fn audit(
        &mut self,
        op: &'static str,
        name: Option<String>,
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
            name: name.clone(),
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
        let key = name.as_deref().unwrap_or("");
        let was_empty = self.summaries.is_empty();
        let program = (
            self.peer.exe.as_deref(),
            workload.exe.as_ref().and_then(|e| e.sha256.as_deref()),
        );
        let full = self
            .summaries
            .count(key, op, allowed, result, program, time_ms, entry);
        if full {
            Tally::Full
        } else if was_empty {
            Tally::Started(audit.config().summary_interval)
        } else {
            Tally::Quiet
        }
    }
}

#[cfg(test)]
mod tests {
    use super::audit_names;
    use flux_protocol::message::{AuditTrailQuery, Request};

    fn trail(project: Option<&str>, unit: Option<&str>) -> Request {
        Request::AuditTrail(AuditTrailQuery {
            project: project.map(str::to_owned),
            unit: unit.map(str::to_owned),
            ..AuditTrailQuery::default()
        })
    }

    #[test]
    fn an_audit_trail_is_recorded_with_its_project_and_unit_pattern() {
        assert_eq!(audit_names(&trail(None, None)), (None, None));
        assert_eq!(
            audit_names(&trail(Some("app"), Some("fn-*.service"))),
            (
                Some("app".to_owned()),
                Some("units matching fn-*.service".to_owned())
            )
        );
        // A hostile pattern is bounded and escaped, as a name is.
        let (name, detail) = audit_names(&trail(Some("a b"), Some(&"\n".repeat(100))));
        assert_eq!(name.as_deref(), Some("a b"));
        let detail = detail.unwrap();
        assert!(!detail.contains('\n'), "{detail}");
        assert_eq!(
            detail,
            format!(
                "units matching {}…; invalid name of 3 bytes",
                "\\n".repeat(64)
            )
        );
    }
}
