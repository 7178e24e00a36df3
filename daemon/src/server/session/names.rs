//! The names a request is recorded by in the audit log and the metrics:
//! the secret, project or host it names (bounded), and a detail — never a
//! value. Read by the decision ([`super::conn`]), written by the record
//! ([`super::record`]).

use crate::access::audit::{bounded_name, bounded_name_into};
use flux_protocol::message::{NamedValue, Request};

/// What the audit log records of a request: the name it names (bounded,
/// see [`bounded_name`]) and a detail.
#[cfg(test)]
pub(super) fn audit_names(req: &Request) -> (Option<String>, Option<String>) {
    audit_names_into(req, &mut String::new())
}

/// [`audit_names`], a plain name written into `spare`'s buffer (see
/// [`bounded_name_into`]).
pub(super) fn audit_names_into(
    req: &Request,
    spare: &mut String,
) -> (Option<String>, Option<String>) {
    let mut one = |name: &str| {
        let (shown, detail) = bounded_name_into(name, spare);
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
