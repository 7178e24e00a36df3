//! The metrics in the Prometheus text exposition format (version 0.0.4):
//! what the `Metrics` request answers (`fluxctl metrics`) and what the
//! optional scrape listener serves at `GET /metrics`.
//!
//! Every family has its `# HELP` and `# TYPE` lines; labels are `project`,
//! `op`, `result` (`ok`, `denied`, `error`), `socket`, `source` and `uid`
//! (the uid that drives the audit log's rotation). The text names projects
//! and operations and holds numbers — never a secret's name, never a
//! value. Rendering reads atomics and the registry's project
//! list; nothing on the request path waits for it.
//!
//! | family | type | what |
//! |---|---|---|
//! | `flux_requests_total{project,op,result}` | counter | requests on a project's socket |
//! | `flux_control_requests_total{op,result}` | counter | requests on the control socket |
//! | `flux_worker_threads` | gauge | threads that serve connections (`[server] workers`) |
//! | `flux_connections{socket}` | gauge | connections open now |
//! | `flux_connections_accepted_total{socket}` | counter | connections accepted |
//! | `flux_project_connections{project}` | gauge | connections open to one project's socket |
//! | `flux_project_secrets{project}`, `flux_project_generation{project}` | gauge | the served snapshot |
//! | `flux_project_healthy{project}` | gauge | 1 with no load error, else 0 |
//! | `flux_vault_load_failures_total{project}` | counter | vault or key files that could not be used |
//! | `flux_revision_records_rebuilt_total{project}` | counter | revision records found missing and rebuilt |
//! | `flux_rotation_apply_seconds{project,source}` | histogram | a write or reload, from its start to its snapshot being served |
//! | `flux_audit_*` | gauge, counter | the audit log: enabled, writable, queue depth, entries dropped, folded lines pending and decisions folded, rotations, files and entries younger than `keep_for` that rotation removed, rotations driven by one uid |
//! | `flux_fleet_*` | gauge | fleet mode: etcd outage, applied revision, problems |

use super::Services;
use crate::metrics::{BUCKETS, HistogramSnapshot, Outcome, RequestCounters};
use flux_protocol::message::RequestKind;
use std::fmt::Write;
use std::sync::atomic::Ordering;

/// Request kinds always shown for every project, even at zero, so a rate
/// can be taken from the first scrape on.
const ALWAYS: [RequestKind; 2] = [RequestKind::Get, RequestKind::Set];

/// The daemon's metrics, as one exposition.
pub fn render(services: &Services) -> String {
    let mut out = Exposition::default();
    let m = &services.metrics;
    out.family("flux_up", "gauge", "1 while fluxd serves.");
    out.sample("flux_up", &[], 1);
    out.family(
        "flux_build_info",
        "gauge",
        "fluxd's version, as a label; always 1.",
    );
    out.sample(
        "flux_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    out.family(
        "flux_start_time_seconds",
        "gauge",
        "When fluxd started, seconds since the Unix epoch.",
    );
    out.float(
        "flux_start_time_seconds",
        &[],
        services.runtime.started_at_ms() as f64 / 1000.0,
    );
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        out.family(
            "flux_worker_threads",
            "gauge",
            "Threads that serve connections ([server] workers).",
        );
        out.sample(
            "flux_worker_threads",
            &[],
            runtime.metrics().num_workers() as u64,
        );
    }

    let projects = services.lifecycle.registry().all();
    out.family(
        "flux_requests_total",
        "counter",
        "Requests on a project's socket, by operation and result (ok, denied by the policy, error).",
    );
    for p in &projects {
        requests(
            &mut out,
            "flux_requests_total",
            Some(p.name()),
            &p.metrics().requests,
        );
    }
    out.family(
        "flux_control_requests_total",
        "counter",
        "Requests on the control socket, by operation and result (ok, denied by the policy, error).",
    );
    requests(&mut out, "flux_control_requests_total", None, &m.control);

    out.family(
        "flux_connections",
        "gauge",
        "Connections open now, to the control socket and to project sockets.",
    );
    let gauge = |a: &std::sync::atomic::AtomicI64| a.load(Ordering::Relaxed).max(0) as u64;
    out.sample(
        "flux_connections",
        &[("socket", "control")],
        gauge(&m.control_connections),
    );
    out.sample(
        "flux_connections",
        &[("socket", "project")],
        gauge(&m.project_connections),
    );
    out.family(
        "flux_connections_accepted_total",
        "counter",
        "Connections accepted since fluxd started.",
    );
    out.sample(
        "flux_connections_accepted_total",
        &[("socket", "control")],
        m.control_accepted.load(Ordering::Relaxed),
    );
    out.sample(
        "flux_connections_accepted_total",
        &[("socket", "project")],
        m.project_accepted.load(Ordering::Relaxed),
    );
    out.family(
        "flux_project_connections",
        "gauge",
        "Connections open now to one project's socket.",
    );
    for p in &projects {
        out.sample(
            "flux_project_connections",
            &[("project", p.name())],
            gauge(&p.metrics().connections),
        );
    }

    let infos = services.lifecycle.registry().infos();
    out.family(
        "flux_project_secrets",
        "gauge",
        "Secrets in the snapshot a project serves.",
    );
    for i in &infos {
        out.sample("flux_project_secrets", &[("project", &i.name)], i.secrets);
    }
    out.family(
        "flux_project_generation",
        "gauge",
        "The generation of the snapshot a project serves: raised by every set, delete and reload.",
    );
    for i in &infos {
        out.sample(
            "flux_project_generation",
            &[("project", &i.name)],
            i.generation,
        );
    }
    out.family(
        "flux_project_healthy",
        "gauge",
        "1 when a project is served with no load error, 0 when its last load failed or it is not served (fluxctl status says why).",
    );
    for i in &infos {
        out.sample(
            "flux_project_healthy",
            &[("project", &i.name)],
            u64::from(i.last_error.is_none()),
        );
    }
    out.family(
        "flux_vault_load_failures_total",
        "counter",
        "Times a project's vault or key could not be used, at start or on a reload; the last good snapshot kept serving.",
    );
    for p in &projects {
        out.sample(
            "flux_vault_load_failures_total",
            &[("project", p.name())],
            p.metrics().load_failures.load(Ordering::Relaxed),
        );
    }
    out.family(
        "flux_revision_records_rebuilt_total",
        "counter",
        "Times a project's revision record was found missing and rebuilt from the newest vault seen (the rollback check had lost its memory).",
    );
    for p in &projects {
        out.sample(
            "flux_revision_records_rebuilt_total",
            &[("project", p.name())],
            p.metrics().records_rebuilt.load(Ordering::Relaxed),
        );
    }
    out.family(
        "flux_rotation_apply_seconds",
        "histogram",
        "From the start of a write (source=write: set, import, delete, restore) or a reload (source=reload: a vault replaced outside fluxd, a fleet peer's write, SIGHUP) to its snapshot being served.",
    );
    for p in &projects {
        let pm = p.metrics();
        for (source, h) in [("write", &pm.apply_write), ("reload", &pm.apply_reload)] {
            let snap = h.snapshot();
            if snap.count > 0 {
                histogram(
                    &mut out,
                    "flux_rotation_apply_seconds",
                    &[("project", p.name()), ("source", source)],
                    &snap,
                );
            }
        }
    }

    let audit = services.access.audit();
    let stats = audit.stats();
    out.family(
        "flux_audit_enabled",
        "gauge",
        "1 when the audit log is on ([audit] enabled; fluxd dev has none).",
    );
    out.sample("flux_audit_enabled", &[], u64::from(audit.enabled()));
    out.family(
        "flux_audit_writable",
        "gauge",
        "0 while the audit log cannot be written (writes are refused until it can), else 1.",
    );
    out.sample("flux_audit_writable", &[], u64::from(audit.writable()));
    out.family(
        "flux_audit_queue_depth",
        "gauge",
        "Audit entries recorded and not yet written (queued, or kept for a retry).",
    );
    out.sample("flux_audit_queue_depth", &[], audit.queue_depth());
    out.family(
        "flux_audit_dropped_total",
        "counter",
        "Audit entries lost because the log could not be written for too long.",
    );
    out.sample("flux_audit_dropped_total", &[], stats.dropped);
    out.family(
        "flux_audit_pending_summaries",
        "gauge",
        "Folded audit lines (read summaries, repeated denials) waiting for their [audit] summary_interval.",
    );
    out.sample("flux_audit_pending_summaries", &[], stats.pending_folds);
    out.family(
        "flux_audit_folded_total",
        "counter",
        "Reads and denials counted into a folded audit line with others instead of a line of their own.",
    );
    out.sample("flux_audit_folded_total", &[], stats.folded);
    out.family(
        "flux_audit_rotations_total",
        "counter",
        "Times the audit log was rotated ([audit] max_bytes reached).",
    );
    out.sample("flux_audit_rotations_total", &[], stats.rotations);
    out.family(
        "flux_audit_dropped_files_total",
        "counter",
        "Rotated audit files removed while they held entries younger than [audit] keep_for (fluxd logs an error for each).",
    );
    out.sample("flux_audit_dropped_files_total", &[], stats.dropped_files);
    out.family(
        "flux_audit_dropped_young_entries_total",
        "counter",
        "Audit entries younger than [audit] keep_for in the files rotation removed.",
    );
    out.sample(
        "flux_audit_dropped_young_entries_total",
        &[],
        stats.dropped_young_entries,
    );
    out.family(
        "flux_audit_rotation_drivers_total",
        "counter",
        "Audit log rotations where one uid wrote more than half of the file rotated, by that uid (\"other\" past 32 uids).",
    );
    for (uid, n) in &stats.drivers {
        out.sample("flux_audit_rotation_drivers_total", &[("uid", uid)], *n);
    }

    let fleet = services.hosts.gauges();
    out.family(
        "flux_fleet_mode",
        "gauge",
        "1 when fluxd keeps its vaults in etcd (fleet mode).",
    );
    out.sample("flux_fleet_mode", &[], u64::from(fleet.is_some()));
    if let Some(f) = fleet {
        out.family(
            "flux_fleet_etcd_outage",
            "gauge",
            "1 while etcd is unreachable (gets are served from the local copy; writes are refused), else 0.",
        );
        out.sample("flux_fleet_etcd_outage", &[], u64::from(f.outage));
        out.family(
            "flux_fleet_applied_revision",
            "gauge",
            "The newest etcd revision this host has applied; a host's watch lag is max over the fleet minus its own.",
        );
        out.sample(
            "flux_fleet_applied_revision",
            &[],
            u64::try_from(f.applied_revision).unwrap_or(0),
        );
        out.family(
            "flux_fleet_problems",
            "gauge",
            "Fleet problems this host reports (fluxctl hosts list shows them).",
        );
        out.sample("flux_fleet_problems", &[], f.problems as u64);
        out.family(
            "flux_fleet_unsynced",
            "gauge",
            "1 while the last full read of etcd did not finish (the host serves the copies it holds and keeps trying), else 0.",
        );
        out.sample("flux_fleet_unsynced", &[], u64::from(f.unsynced));
        out.family(
            "flux_fleet_refused_envelopes_total",
            "counter",
            "Envelopes read from etcd and refused (unsigned, signed by a stranger, forged, rolled back, over [store] max_envelope_bytes); none is kept.",
        );
        out.sample(
            "flux_fleet_refused_envelopes_total",
            &[],
            f.refused_envelopes,
        );
        out.family(
            "flux_fleet_held_bytes",
            "gauge",
            "Bytes of verified envelopes (vaults, keys, deletions, host lists) this host holds in memory.",
        );
        out.sample("flux_fleet_held_bytes", &[], f.held_bytes);
        out.family(
            "flux_fleet_read_pages_total",
            "counter",
            "etcd range requests answered (reads are paged: [store] read_page_keys keys each).",
        );
        out.sample("flux_fleet_read_pages_total", &[], f.read_pages);
        out.family(
            "flux_fleet_read_pages_shrunk_total",
            "counter",
            "etcd range pages asked again with half as many keys because the answer did not finish within [store] read_page_timeout.",
        );
        out.sample(
            "flux_fleet_read_pages_shrunk_total",
            &[],
            f.read_pages_shrunk,
        );
    }
    out.text
}

/// One counter family's samples for a socket's requests: every kind and
/// result counted so far, and the [`ALWAYS`] kinds of a project at zero.
fn requests(out: &mut Exposition, family: &str, project: Option<&str>, c: &RequestCounters) {
    for kind in RequestKind::ALL {
        let op = kind.op();
        for outcome in Outcome::ALL {
            let n = c.get(kind.index(), outcome);
            if n == 0 && !(project.is_some() && ALWAYS.contains(&kind)) {
                continue;
            }
            let result = outcome.name();
            match project {
                Some(p) => out.sample(family, &[("project", p), ("op", op), ("result", result)], n),
                None => out.sample(family, &[("op", op), ("result", result)], n),
            }
        }
    }
}

fn histogram(out: &mut Exposition, family: &str, labels: &[(&str, &str)], h: &HistogramSnapshot) {
    let bucket = format!("{family}_bucket");
    for (le, n) in BUCKETS.iter().zip(h.cumulative) {
        let le = le.to_string();
        let mut l = labels.to_vec();
        l.push(("le", &le));
        out.sample(&bucket, &l, n);
    }
    let mut l = labels.to_vec();
    l.push(("le", "+Inf"));
    out.sample(&bucket, &l, h.count);
    out.float(&format!("{family}_sum"), labels, h.sum_seconds);
    out.sample(&format!("{family}_count"), labels, h.count);
}

/// The text being written.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn labels(&mut self, name: &str, labels: &[(&str, &str)]) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape_label(v));
            }
            self.text.push('}');
        }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.labels(name, labels);
        let _ = writeln!(self.text, " {value}");
    }

    fn float(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.labels(name, labels);
        let _ = writeln!(self.text, " {value}");
    }
}

/// A label value: backslash, double quote and newline escaped.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A HELP text: backslash and newline escaped.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        let mut e = Exposition::default();
        e.family("x_total", "counter", "a\\b\nc");
        e.sample("x_total", &[("project", "a\"b\\c\nd")], 3);
        assert_eq!(
            e.text,
            "# HELP x_total a\\\\b\\nc\n# TYPE x_total counter\nx_total{project=\"a\\\"b\\\\c\\nd\"} 3\n"
        );
    }

    #[test]
    fn a_histogram_ends_with_inf_sum_and_count() {
        let h = crate::metrics::Histogram::default();
        h.observe(std::time::Duration::from_millis(3));
        let mut e = Exposition::default();
        histogram(&mut e, "h", &[("project", "p")], &h.snapshot());
        let lines: Vec<&str> = e.text.lines().collect();
        assert_eq!(lines[0], "h_bucket{project=\"p\",le=\"0.001\"} 0");
        assert_eq!(lines[2], "h_bucket{project=\"p\",le=\"0.005\"} 1");
        assert_eq!(
            lines[BUCKETS.len()],
            "h_bucket{project=\"p\",le=\"+Inf\"} 1"
        );
        assert_eq!(lines[BUCKETS.len() + 1], "h_sum{project=\"p\"} 0.003");
        assert_eq!(lines[BUCKETS.len() + 2], "h_count{project=\"p\"} 1");
    }
}
