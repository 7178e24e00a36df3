//! `fluxctl audit [--project P] [--since DURATION] [--json]`: the daemon's
//! record of access decisions, read through the control socket (admins
//! only), rotated files included. Entries hold names, peers and outcomes —
//! never values. A summary of reads shows how many it stands for
//! (`COUNT`) and spans from its first to its last (`TIME`).

use crate::failure::{Failure, Result};
use crate::target::Target;
use crate::timefmt::{now_ms, rfc3339_ms};
use crate::{columns, out};
use flux_protocol::message::AuditQuery;

pub(crate) fn run(
    target: &Target,
    project: Option<String>,
    since: Option<&str>,
    limit: u32,
    json: bool,
) -> Result<()> {
    let since_ms = match since {
        None => 0,
        Some(text) => {
            let d = humantime::parse_duration(text).map_err(|e| {
                Failure::usage(format!(
                    "--since {text:?} is not a duration like 1h or 30m: {e}"
                ))
            })?;
            now_ms().saturating_sub(d.as_millis() as u64)
        }
    };
    let records = target.control()?.audit_log(AuditQuery {
        project,
        since_ms,
        limit,
    })?;
    if json {
        let mut text = String::new();
        for r in &records {
            let line = serde_json::json!({
                "time": rfc3339_ms(r.time_ms),
                "first": rfc3339_ms(r.first_ms),
                "count": r.count,
                "project": r.project,
                "op": r.op,
                "name": r.name,
                "uid": r.uid,
                "gid": r.gid,
                "pid": r.pid,
                "exe": r.exe,
                "allowed": r.allowed,
                "result": r.result,
                "detail": r.detail,
            });
            text.push_str(&line.to_string());
            text.push('\n');
        }
        return out(&text);
    }
    if records.is_empty() {
        eprintln!("No audit records match.");
        return Ok(());
    }
    let mut rows = vec![vec![
        "TIME".into(),
        "COUNT".into(),
        "PROJECT".into(),
        "OP".into(),
        "NAME".into(),
        "UID".into(),
        "PID".into(),
        "DECISION".into(),
        "RESULT".into(),
        "EXE".into(),
    ]];
    rows.extend(records.iter().map(|r| {
        vec![
            rfc3339_ms(r.time_ms),
            r.count.to_string(),
            r.project.clone().unwrap_or_else(|| "-".into()),
            r.op.clone(),
            r.name.clone().unwrap_or_else(|| "-".into()),
            r.uid.to_string(),
            r.pid.map_or_else(|| "-".into(), |p| p.to_string()),
            if r.allowed { "allowed" } else { "denied" }.into(),
            match &r.detail {
                Some(d) => format!("{} ({d})", r.result),
                None => r.result.clone(),
            },
            r.exe.clone().unwrap_or_else(|| "-".into()),
        ]
    }));
    out(&columns(&rows))
}
