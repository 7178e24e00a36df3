//! `fluxctl audit verify [FILE…]`: the audit log's MAC chain checked
//! (`flux_vault::chain`), offline, with the audit key.
//!
//! `fluxctl audit [--project P] [--since DURATION] [--json]`: the daemon's
//! record of access decisions, read through the control socket (admins
//! only), rotated files included. Entries hold names, peers and outcomes —
//! never values. A summary of reads shows how many it stands for
//! (`COUNT`) and spans from its first to its last (`TIME`).

use crate::failure::{Failure, Result};
use crate::target::Target;
use crate::timefmt::{now_ms, rfc3339_ms};
use crate::{columns, out, out_json};
use flux_protocol::message::{Request, Response};
use flux_vault::chain::{AuditKey, Finding};
use std::path::PathBuf;

/// `fluxctl audit verify`: 0 when the chain is whole, 1 at the first line
/// that does not follow.
pub(crate) fn verify(
    target: &Target,
    files: Vec<PathBuf>,
    key: Option<PathBuf>,
    json: bool,
) -> Result<u8> {
    let (files, key) = if let (false, Some(key)) = (files.is_empty(), &key) {
        (files, key.clone())
    } else {
        // What fluxd reports: its state folder, its log and how many
        // rotated files it keeps.
        let Response::Health(health) = target.control()?.call(&Request::Health)? else {
            return Err(Failure::general(
                "fluxd answered health with an unexpected message",
            ));
        };
        let log = health
            .audit
            .path
            .clone()
            .map(PathBuf::from)
            .ok_or_else(|| {
                Failure::usage("fluxd keeps no audit log ([audit] is off): name the files to check")
            })?;
        let files = if files.is_empty() {
            let mut all: Vec<PathBuf> = (1..=64)
                .rev()
                .map(|n| PathBuf::from(format!("{}.{n}", log.display())))
                .filter(|p| p.exists())
                .collect();
            all.push(log);
            all
        } else {
            files
        };
        let key = key.unwrap_or_else(|| PathBuf::from(&health.status.state_dir).join("audit.key"));
        (files, key)
    };
    let key_bytes = zeroize::Zeroizing::new(std::fs::read(&key).map_err(|e| {
        Failure::general(format!("cannot read the audit key {}: {e}", key.display()))
    })?);
    let key_ = AuditKey::from_file_bytes(&key_bytes)
        .map_err(|e| Failure::usage(format!("{}: {e}", key.display())))?;
    let mut contents = Vec::new();
    for f in &files {
        contents.push(
            std::fs::read(f)
                .map_err(|e| Failure::general(format!("cannot read {}: {e}", f.display())))?,
        );
    }
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    match flux_vault::chain::verify(&key_, &contents) {
        Finding::Whole { lines, unchained } => {
            if json {
                out_json(&serde_json::json!({
                    "whole": true, "lines": lines, "unchained": unchained, "files": names,
                }))?;
            } else {
                let mut text = format!(
                    "{}\n",
                    crate::style::done(&format!(
                        "The audit log is whole: {lines} line(s) in {} file(s), each following the one before",
                        names.len()
                    ))
                );
                if unchained > 0 {
                    text.push_str(&crate::style::caution(&format!(
                        "the first {unchained} line(s) were written before the log was chained: not covered\n"
                    )));
                }
                out(&text)?;
            }
            Ok(0)
        }
        Finding::Broken { file, line, what } => {
            if json {
                out_json(&serde_json::json!({
                    "whole": false, "file": names[file], "line": line, "what": what,
                }))?;
            } else {
                out(&format!("{}:{line}: {what}\n", names[file]))?;
            }
            Ok(1)
        }
    }
}
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
