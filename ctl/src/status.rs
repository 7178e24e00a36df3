//! `fluxctl status`: the daemon, the audit log's health and any daemon-wide
//! problem, and per project its socket, secret count, snapshot generation,
//! when it was loaded and the last load error.
//!
//! The exit status is for health checks: 0 when every project is served
//! as stored and fluxd reports no problem, [`EXIT_UNHEALTHY`] (7) when a
//! project has a load error (a vault that does not decrypt, a missing
//! key…) or fluxd reports a daemon-wide problem — the same text or JSON is
//! printed either way.

use crate::failure::Result;

/// `fluxctl status`'s exit status when something is unhealthy.
pub const EXIT_UNHEALTHY: u8 = 7;
use crate::target::Target;
use crate::timefmt::ago;
use crate::{columns, out};
use flux_vault::time::{format_time_ms, now_ms};

pub(crate) fn run(target: &Target, json: bool) -> Result<u8> {
    let health = target.control()?.health()?;
    let status = &health.status;
    let audit = &health.audit;
    let healthy =
        health.problems.is_empty() && status.projects.iter().all(|p| p.last_error.is_none());
    let exit = if healthy { 0 } else { EXIT_UNHEALTHY };
    if json {
        let projects: Vec<serde_json::Value> =
            status.projects.iter().map(crate::project_json).collect();
        let doc = serde_json::json!({
            "version": status.version,
            "pid": status.pid,
            "started_at": format_time_ms(status.started_at_ms),
            "state_dir": status.state_dir,
            "runtime_dir": status.runtime_dir,
            "projects": projects,
            "audit": {
                "path": audit.path,
                "reads": audit.reads,
                "error": audit.error,
                "dropped": audit.dropped,
                "writes_refused": audit.writes_refused,
            },
            "problems": health.problems,
            "healthy": healthy,
        });
        return crate::out_json(&doc).map(|()| exit);
    }
    let now = now_ms();
    let mut text = format!(
        "fluxd {} (pid {}), started {}\nstate:   {}\nruntime: {}\n",
        status.version,
        status.pid,
        ago(status.started_at_ms, now),
        status.state_dir,
        status.runtime_dir
    );
    text.push_str(&match &audit.path {
        Some(path) => format!("audit:   {path} (reads: {})\n", audit.reads),
        None => "audit:   disabled\n".into(),
    });
    for problem in &health.problems {
        text.push_str(&format!("! {problem}\n"));
    }
    if audit.dropped > 0 {
        text.push_str(&format!(
            "! {} audit entries were lost: the log could not be written, or rotation removed entries younger than [audit] keep_for (fluxd's log says which and who filled it)\n",
            audit.dropped
        ));
    }
    if status.projects.is_empty() {
        text.push_str("no projects\n");
        return out(&text).map(|()| exit);
    }
    let mut rows = vec![vec![
        "PROJECT".into(),
        "SECRETS".into(),
        "GENERATION".into(),
        "LOADED".into(),
        "SOCKET".into(),
    ]];
    rows.extend(status.projects.iter().map(|p| {
        vec![
            p.name.clone(),
            p.secrets.to_string(),
            p.generation.to_string(),
            ago(p.loaded_at_ms, now),
            p.socket.clone(),
        ]
    }));
    text.push('\n');
    text.push_str(&columns(&rows));
    for p in status.projects.iter().filter(|p| p.last_error.is_some()) {
        text.push_str(&format!(
            "\n! {}: {}\n",
            p.name,
            p.last_error.as_deref().unwrap_or_default()
        ));
    }
    out(&text).map(|()| exit)
}
