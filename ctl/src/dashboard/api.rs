//! The dashboard's JSON answers, built from what [`ReadOnly`] returns:
//! projects and their health, names and set times, audit entries (with
//! each peer's unit, slice, cgroup and executable hash), and the
//! activity behind the charts. Names, times, peers and numbers — the types
//! they are built from hold no value.

use super::live::Hub;
use super::readonly::{ReadError, ReadOnly};
use flux_protocol::message::{AuditTrailEntry, AuditTrailQuery, ProjectInfo};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Audit entries read for one answer, at most.
const AUDIT_READ: u32 = 5000;

fn error_json(e: &ReadError) -> Value {
    json!({ "message": e.message, "denied": e.is_denied() })
}

fn project_json(p: &ProjectInfo, hub: &Hub) -> Value {
    json!({
        "name": p.name,
        "socket": p.socket,
        "secrets": p.secrets,
        "generation": p.generation,
        "loaded_at_ms": p.loaded_at_ms,
        "last_error": p.last_error,
        "healthy": p.last_error.is_none(),
        "live": hub.is_live(&p.name),
    })
}

fn entry_json(e: &AuditTrailEntry) -> Value {
    json!({
        "time_ms": e.time_ms,
        "first_ms": e.first_ms,
        "count": e.count,
        "project": e.project,
        "op": e.op,
        "name": e.name,
        "uid": e.uid,
        "gid": e.gid,
        "pid": e.pid,
        "exe": e.exe,
        "exe_sha256": e.exe_sha256,
        "unit": e.unit,
        "slice": e.slice,
        "cgroup": e.cgroup,
        "allowed": e.allowed,
        "result": e.result,
        "detail": e.detail,
    })
}

/// `/api/overview`: the daemon, its problems, the fleet and every project.
pub async fn overview(daemon: &ReadOnly, hub: &Hub, fallback: Option<&str>) -> Value {
    let health = daemon.health().await;
    let (status, projects, error) = match &health {
        Ok(h) => (
            json!({
                "version": h.status.version,
                "pid": h.status.pid,
                "started_at_ms": h.status.started_at_ms,
                "state_dir": h.status.state_dir,
                "runtime_dir": h.status.runtime_dir,
            }),
            h.status
                .projects
                .iter()
                .map(|p| project_json(p, hub))
                .collect::<Vec<_>>(),
            Value::Null,
        ),
        Err(e) => {
            // Not a daemon admin: show the project named on the command
            // line, if any, from its own socket.
            let projects = match fallback {
                Some(name) => match daemon.names(name).await {
                    Ok(names) => vec![json!({
                        "name": name,
                        "socket": daemon.project_socket(name).display().to_string(),
                        "secrets": names.len(),
                        "generation": Value::Null,
                        "loaded_at_ms": Value::Null,
                        "last_error": Value::Null,
                        "healthy": Value::Null,
                        "live": hub.is_live(name),
                    })],
                    Err(_) => Vec::new(),
                },
                None => Vec::new(),
            };
            (Value::Null, projects, error_json(e))
        }
    };
    let (audit, problems) = match &health {
        Ok(h) => (
            json!({
                "path": h.audit.path,
                "reads": h.audit.reads,
                "error": h.audit.error,
                "dropped": h.audit.dropped,
                "writes_refused": h.audit.writes_refused,
            }),
            json!(h.problems),
        ),
        Err(_) => (Value::Null, json!([])),
    };
    let mut projects = projects;
    let fleet = match daemon.fleet().await {
        Ok(f) if f.fleet_id.is_some() || !f.hosts.is_empty() || f.this_host.is_some() => {
            // Which hosts serve which project: from the signed host list,
            // checked against the fleet id.
            let assigned = match (&f.fleet_id, daemon.hosts_head().await) {
                (Some(id), Ok(list)) if !list.is_empty() => {
                    crate::hosts::assignments_in(id, &list).unwrap_or_default()
                }
                _ => BTreeMap::new(),
            };
            for p in &mut projects {
                let on = p["name"].as_str().and_then(|n| assigned.get(n));
                p["hosts"] = json!(on);
            }
            json!({
                "fleet_id": f.fleet_id,
                "this_host": f.this_host,
                "member": f.member,
                "hosts_version": f.hosts_version,
                "hosts": f.hosts,
                "assigned": assigned,
                "problems": f.problems,
            })
        }
        _ => Value::Null,
    };
    json!({
        "control_socket": daemon.control_socket().display().to_string(),
        "daemon": status,
        "error": error,
        "audit": audit,
        "problems": problems,
        "fleet": fleet,
        "projects": projects,
    })
}

/// Who last set `name`, from the newest allowed write naming it.
fn set_by<'a>(entries: &'a [AuditTrailEntry], name: &str) -> Option<&'a AuditTrailEntry> {
    entries.iter().rev().find(|e| {
        e.allowed
            && e.result == "ok"
            && match e.op.as_str() {
                "set" | "write" => e.name.as_deref() == Some(name),
                // `N names: A, B, …` (the first 20).
                "set_many" | "write_many" => e.detail.as_deref().is_some_and(|d| {
                    d.split_once(": ")
                        .is_some_and(|(_, list)| list.split(", ").any(|n| n == name))
                }),
                _ => false,
            }
    })
}

/// `/api/projects/NAME`: the project's names, when each was set and by
/// whom.
pub async fn project(daemon: &ReadOnly, hub: &Hub, name: &str) -> Value {
    let info = daemon
        .projects()
        .await
        .ok()
        .and_then(|list| list.into_iter().find(|p| p.name == name));
    let writes = daemon
        .audit(AuditTrailQuery {
            project: Some(name.to_owned()),
            since_ms: 0,
            limit: AUDIT_READ,
            unit: None,
        })
        .await;
    let (secrets, error) = match daemon.names(name).await {
        Ok(list) => {
            let entries = writes.as_deref().unwrap_or_default();
            let rows: Vec<Value> = list
                .iter()
                .map(|s| {
                    let by = set_by(entries, &s.name).map(|e| {
                        json!({
                            "uid": e.uid,
                            "pid": e.pid,
                            "exe": e.exe,
                            "time_ms": e.time_ms,
                            "op": e.op,
                        })
                    });
                    json!({
                        "name": s.name,
                        "set_at_ms": s.set_at_ms,
                        "digest": s.digest,
                        "set_by": by,
                    })
                })
                .collect();
            (json!(rows), Value::Null)
        }
        Err(e) => (json!([]), error_json(&e)),
    };
    json!({
        "project": name,
        "info": info.map(|p| project_json(&p, hub)),
        "live": hub.is_live(name),
        "secrets": secrets,
        "error": error,
        "audit_error": writes.as_ref().err().map(error_json),
    })
}

/// `/api/audit`'s filters.
#[derive(Debug, Default)]
pub struct AuditFilter<'a> {
    pub project: Option<String>,
    pub op: Option<&'a str>,
    pub denied_only: bool,
    /// Keep the dashboard's own requests: its polling of projects, status
    /// and names (hidden unless asked for, as they would fill the page).
    pub own: bool,
    pub limit: usize,
}

/// Whether an entry is a request of this process: the dashboard's own
/// polling, which the peer's pid names.
fn is_own(e: &AuditTrailEntry) -> bool {
    e.pid == Some(std::process::id())
}

/// `/api/audit`: the newest `limit` entries, filtered by project, by
/// operation and to denials, without the dashboard's own requests unless
/// `own`; `own_hidden` counts the entries left out as its own.
pub async fn audit(daemon: &ReadOnly, filter: AuditFilter<'_>) -> Value {
    let AuditFilter {
        project,
        op,
        denied_only,
        own,
        limit,
    } = filter;
    match daemon
        .audit(AuditTrailQuery {
            project,
            since_ms: 0,
            limit: AUDIT_READ,
            unit: None,
        })
        .await
    {
        Ok(entries) => {
            let matching: Vec<&AuditTrailEntry> = entries
                .iter()
                .filter(|e| op.is_none_or(|op| e.op == op))
                .filter(|e| !denied_only || !e.allowed)
                .collect();
            let own_hidden = if own {
                0
            } else {
                matching.iter().filter(|e| is_own(e)).count()
            };
            let mut kept: Vec<&AuditTrailEntry> =
                matching.into_iter().filter(|e| own || !is_own(e)).collect();
            let ops: std::collections::BTreeSet<&str> =
                entries.iter().map(|e| e.op.as_str()).collect();
            let skip = kept.len().saturating_sub(limit);
            kept.drain(..skip);
            json!({
                "entries": kept.iter().map(|e| entry_json(e)).collect::<Vec<_>>(),
                "ops": ops,
                "own_hidden": own_hidden,
                "error": Value::Null,
            })
        }
        Err(e) => json!({ "entries": [], "ops": [], "own_hidden": 0, "error": error_json(&e) }),
    }
}

/// Whether an audited operation is a read for the reads chart: a get of
/// one value or of all of them (`get…`), or a listing of names.
fn is_read(op: &str) -> bool {
    op == "list" || op.split('_').next() == Some("get")
}
/// Operations that change a vault, for the rotation timeline.
const ROTATIONS: [&str; 6] = [
    "set",
    "set_many",
    "write",
    "write_many",
    "delete",
    "restore_vault",
];

/// `/api/activity`: one project's reads and denials per bucket over the
/// last `hours`, and its writes (the rotation timeline), from the audit
/// log. Read summaries are written at least every `[audit]
/// summary_interval`, so the last minute fills in as they arrive.
pub async fn activity(daemon: &ReadOnly, project: &str, hours: u64, now_ms: u64) -> Value {
    const BUCKETS: u64 = 48;
    let span = hours.clamp(1, 24 * 7) * 3_600_000;
    let start = now_ms.saturating_sub(span);
    let width = span / BUCKETS;
    let entries = match daemon
        .audit(AuditTrailQuery {
            project: Some(project.to_owned()),
            since_ms: start,
            limit: AUDIT_READ,
            unit: None,
        })
        .await
    {
        Ok(e) => e,
        Err(e) => return json!({ "error": error_json(&e) }),
    };
    let mut reads = vec![0u64; BUCKETS as usize];
    let mut denials = vec![0u64; BUCKETS as usize];
    let mut rotations = Vec::new();
    let mut by_op: BTreeMap<&str, u64> = BTreeMap::new();
    for e in &entries {
        let slot = (((e.time_ms.max(start) - start) / width.max(1)) as usize).min(reads.len() - 1);
        if !e.allowed {
            denials[slot] += e.count;
        } else if is_read(&e.op) {
            reads[slot] += e.count;
        }
        if ROTATIONS.contains(&e.op.as_str()) && e.allowed {
            rotations.push(json!({
                "time_ms": e.time_ms,
                "op": e.op,
                "name": e.name,
                "detail": e.detail,
                "uid": e.uid,
                "exe": e.exe,
                "result": e.result,
            }));
        }
        *by_op.entry(e.op.as_str()).or_default() += e.count;
    }
    json!({
        "start_ms": start,
        "bucket_ms": width,
        "reads": reads,
        "denials": denials,
        "rotations": rotations,
        "by_op": by_op,
        "error": Value::Null,
    })
}
