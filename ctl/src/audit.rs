//! `fluxctl audit verify [FILE…]`: the audit log's MAC chain checked
//! (`flux_vault::chain`), offline, with the audit key.
//!
//! `fluxctl audit [--project P] [--since DURATION] [--unit PATTERN]
//! [--json]`: the daemon's record of access decisions, read through the
//! control socket (admins only), rotated files included, each with the
//! peer's workload (`AuditTrail`): its systemd unit, slice, cgroup and the
//! executable's SHA-256 when a rule checked it. `--unit` keeps the entries
//! of units a pattern matches (`*` globs), chosen by the daemon, so
//! `--limit` counts matching entries. A fluxd that predates `AuditTrail`
//! answers `bad_request`: the entries are then read with `AuditLog`,
//! without workloads, and a note says so (`--unit` is refused: nothing
//! could match). Entries hold names, peers and outcomes — never values.
//! `--json` prints every field of every record; the text table is laid
//! out for a terminal (see [`table`]): the time in UTC to the second, a
//! summary of reads as `get ×120` (how many it stands for, timed at its
//! last), the unit (a column only when some entry has one), the peer as
//! `exe[pid]` with the executable's file name, the decision and result in
//! one column (`ok`, `denied: why`), and cells cut with `…` so that each
//! line fits the terminal's width (or `COLUMNS`); piped with no `COLUMNS`,
//! cells are whole.

use crate::failure::{Failure, Result};
use crate::target::Target;
use crate::{columns, out, out_json};
use flux_protocol::message::{AuditTrailEntry, AuditTrailQuery, Request, RequestKind, Response};
use flux_protocol::{ClientError, ErrorCode};
use flux_vault::chain::{AuditKey, Finding};
use flux_vault::layout::StateDir;
use flux_vault::time::{format_time_ms, now_ms};
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
            return Err(Failure::unexpected(RequestKind::Health));
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
        let key = key.unwrap_or_else(|| StateDir::new(&health.status.state_dir).audit_key());
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

/// The note printed when entries come without their workload.
const NO_WORKLOADS: &str = "this fluxd predates workloads in the audit log: entries are shown without their unit (upgrade fluxd to see them)";

pub(crate) fn run(
    target: &Target,
    project: Option<String>,
    since: Option<&str>,
    unit: Option<String>,
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
    if let Some(pattern) = &unit {
        check_pattern(pattern)?;
    }
    let mut control = target.control()?;
    let query = AuditTrailQuery {
        project,
        since_ms,
        limit,
        unit,
    };
    let records = match control.audit_trail(query.clone()) {
        Ok(records) => records,
        // A fluxd from before `AuditTrail` cannot decode it (or the log is
        // off, which `AuditLog` says again).
        Err(ClientError::Remote {
            code: ErrorCode::BadRequest,
            ..
        }) => {
            let entries = control.audit_log(AuditQuery {
                project: query.project,
                since_ms: query.since_ms,
                limit: query.limit,
            })?;
            if query.unit.is_some() {
                return Err(Failure::general(
                    "this fluxd predates workloads in the audit log: it cannot select entries by --unit (upgrade fluxd)",
                ));
            }
            eprintln!("{}", crate::style::caution(NO_WORKLOADS));
            entries.into_iter().map(AuditTrailEntry::from).collect()
        }
        Err(e) => return Err(e.into()),
    };
    if json {
        let mut text = String::new();
        for r in &records {
            let line = serde_json::json!({
                "time": format_time_ms(r.time_ms),
                "first": format_time_ms(r.first_ms),
                "count": r.count,
                "project": r.project,
                "op": r.op,
                "name": r.name,
                "uid": r.uid,
                "gid": r.gid,
                "pid": r.pid,
                "exe": r.exe,
                "exe_sha256": r.exe_sha256,
                "unit": r.unit,
                "slice": r.slice,
                "cgroup": r.cgroup,
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
    out(&table(&records, line_width()))
}

/// Refuses a `--unit` pattern that could match no unit name.
fn check_pattern(pattern: &str) -> Result<()> {
    let bad = pattern
        .chars()
        .find(|c| c.is_control() || c.is_whitespace() || *c == '/');
    if pattern.is_empty() || bad.is_some() {
        return Err(Failure::usage(format!(
            "--unit {}: a unit pattern is a unit name such as billing.service, with * for any run of characters (fn-*.service); {}",
            pattern.escape_debug(),
            match bad {
                Some(c) => format!("{} cannot be part of one", c.escape_debug()),
                None => "it cannot be empty".to_owned(),
            }
        )));
    }
    Ok(())
}

/// The width to fit lines to: the terminal's (stdout is a terminal), else
/// `COLUMNS`, else none.
fn line_width() -> Option<usize> {
    use std::io::IsTerminal;
    let stdout = std::io::stdout();
    if stdout.is_terminal()
        && let Ok(size) = rustix::termios::tcgetwinsize(&stdout)
        && size.ws_col > 0
    {
        return Some(size.ws_col.into());
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse().ok())
        .filter(|c| *c > 0)
}

/// A time as the table shows it: `MM-DD HH:MM:SS`, UTC.
fn short_time(ms: u64) -> String {
    // 2026-12-07T14:55:47.123Z
    let full = format_time_ms(ms);
    format!("{} {}", &full[5..10], &full[11..19])
}

/// The last part of an executable's path.
fn file_name(exe: &str) -> &str {
    exe.rsplit('/').next().unwrap_or(exe)
}

/// Columns that give way, widest first, when a line is too long; the
/// others (time, op, uid) are short and kept whole.
const SHRINKS: [&str; 5] = ["PROJECT", "NAME", "UNIT", "PEER", "RESULT"];
/// A column is never cut below this many characters.
const NARROWEST: usize = 8;

/// The text table of `records`, each line at most `width` characters when
/// a width is given. The UNIT column is left out when no entry has a unit.
fn table(records: &[AuditTrailEntry], width: Option<usize>) -> String {
    let units = records.iter().any(|r| r.unit.is_some());
    let mut head = vec!["TIME (UTC)", "PROJECT", "OP", "NAME", "UID"];
    if units {
        head.push("UNIT");
    }
    head.extend(["PEER", "RESULT"]);
    let mut rows = vec![head.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>()];
    rows.extend(records.iter().map(|r| {
        let op = if r.count > 1 {
            format!("{} ×{}", r.op, r.count)
        } else {
            r.op.clone()
        };
        let peer = match (&r.exe, r.pid) {
            (Some(exe), Some(pid)) => format!("{}[{pid}]", file_name(exe)),
            (Some(exe), None) => file_name(exe).to_owned(),
            (None, Some(pid)) => format!("[{pid}]"),
            (None, None) => "-".into(),
        };
        let result = match (r.allowed, &r.detail) {
            (true, None) => r.result.clone(),
            (true, Some(d)) => format!("{}: {d}", r.result),
            (false, Some(d)) => format!("denied: {d}"),
            (false, None) => format!("denied: {}", r.result),
        };
        let mut row = vec![
            short_time(r.time_ms),
            r.project.clone().unwrap_or_else(|| "-".into()),
            op,
            r.name.clone().unwrap_or_else(|| "-".into()),
            r.uid.to_string(),
        ];
        if units {
            row.push(r.unit.clone().unwrap_or_else(|| "-".into()));
        }
        row.extend([peer, result]);
        row
    }));
    if let Some(width) = width {
        let shrinks: Vec<usize> = SHRINKS
            .iter()
            .filter_map(|s| head.iter().position(|h| h == s))
            .collect();
        fit(&mut rows, &shrinks, width);
    }
    columns(&rows)
}

/// Cuts cells of the `shrinks` columns ([`SHRINKS`]) with `…` until a
/// line of `rows`, as [`columns`] lays it out, fits in `width`.
fn fit(rows: &mut [Vec<String>], shrinks: &[usize], width: usize) {
    let len = |s: &str| crate::style::clean(s).chars().count();
    let mut widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| len(&r[i])).max().unwrap_or(0))
        .collect();
    let total = |w: &[usize]| w.iter().sum::<usize>() + 2 * (w.len() - 1);
    while total(&widths) > width {
        let Some(&widest) = shrinks
            .iter()
            .filter(|&&i| widths[i] > NARROWEST)
            .max_by_key(|&&i| widths[i])
        else {
            break;
        };
        widths[widest] -= 1;
    }
    for row in rows.iter_mut() {
        for &i in shrinks {
            let cell = crate::style::clean(&row[i]).into_owned();
            if cell.chars().count() > widths[i] {
                let cut: String = cell.chars().take(widths[i] - 1).collect();
                row[i] = format!("{cut}…");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use flux_protocol::message::AuditTrailEntry;

    fn entry(name: &str, exe: &str, allowed: bool) -> AuditTrailEntry {
        AuditTrailEntry {
            time_ms: 1_796_000_000_000,
            first_ms: 1_796_000_000_000,
            count: 120,
            project: Some("billing-service-production".into()),
            op: "get".into(),
            name: Some(name.into()),
            uid: 1000,
            gid: 1000,
            pid: Some(4_194_304),
            exe: Some(exe.into()),
            allowed,
            result: if allowed { "ok" } else { "permission_denied" }.into(),
            detail: (!allowed).then(|| "uid 1000 is not a reader of billing-service-production (access.projects.billing-service-production.readers)".into()),
            ..AuditTrailEntry::default()
        }
    }

    #[test]
    fn lines_fit_the_width_and_keep_the_short_columns_whole() {
        let records = [
            entry(
                "STRIPE_SECRET_KEY",
                "/home/someone/.local/share/nvm/v20.11.1/bin/node",
                true,
            ),
            entry(
                "OPENAI_API_KEY_FOR_THE_SUMMARISER_WORKER",
                "/usr/bin/python3.12",
                false,
            ),
        ];
        for width in [80, 100, 120] {
            let text = super::table(&records, Some(width));
            for line in text.lines() {
                assert!(line.chars().count() <= width, "{width}: {line}");
            }
            assert!(text.contains("get ×120"), "{text}");
            assert!(text.contains("1000"), "{text}");
        }
        let whole = super::table(&records, None);
        assert!(whole.contains("node[4194304]"), "{whole}");
        assert!(
            whole.contains("denied: uid 1000 is not a reader"),
            "{whole}"
        );
        assert!(!whole.contains('…'), "{whole}");
    }

    #[test]
    fn the_unit_has_a_column_when_known_and_lines_still_fit() {
        let mut billing = entry("STRIPE_SECRET_KEY", "/usr/bin/node", true);
        billing.unit = Some("fn-billing-reconciliation-worker.service".into());
        billing.slice = Some("functions.slice".into());
        let unknown = entry("API_KEY", "/usr/bin/python3.12", false);
        let records = [billing, unknown];
        let whole = super::table(&records, None);
        let head = whole.lines().next().unwrap();
        assert!(
            head.find("UID") < head.find("UNIT") && head.find("UNIT") < head.find("PEER"),
            "{head}"
        );
        assert!(
            whole.contains("fn-billing-reconciliation-worker.service"),
            "{whole}"
        );
        for width in [80, 100, 120] {
            let text = super::table(&records, Some(width));
            for line in text.lines() {
                assert!(line.chars().count() <= width, "{width}: {line}");
            }
            assert!(text.contains("fn-bill"), "{text}");
            assert!(text.contains("get ×120"), "{text}");
        }
        // No entry with a unit (a peer outside systemd, an older fluxd):
        // no column for it.
        let text = super::table(&records[1..], None);
        assert!(!text.contains("UNIT"), "{text}");
    }

    #[test]
    fn a_unit_pattern_that_cannot_match_is_refused() {
        for ok in ["billing.service", "fn-*.service", "*", "run-u12.scope"] {
            assert!(super::check_pattern(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b.service", "/system.slice/a.service", "a\n"] {
            assert!(super::check_pattern(bad).is_err(), "{bad:?}");
        }
    }
}
