//! The audit log's file format and how it is read back: JSON lines, with
//! rotated files read oldest first. A line holds the peer's workload
//! (`unit`, `slice`, `cgroup`, `exe_sha256`) when it is known; a field that
//! is not is left out, so lines written before workloads were recorded
//! read (and verify) as they are.

use crate::error::{Error, Result};
use flux_protocol::message::AuditTrailEntry;
use flux_vault::time::format_time_ms;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// Entries `read` returns when the query sets no limit.
pub const DEFAULT_LIMIT: usize = 1000;

/// A line of the audit log as written: the entry, with its times also in
/// RFC 3339 for people reading the file. Lines written before summaries
/// existed (no `first_ms`, `count`, `detail`) or before workloads were
/// recorded (no `unit`, `slice`, `cgroup`, `exe_sha256`) still read.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Line {
    /// RFC 3339 with milliseconds (the last decision's, for a summary).
    pub time: String,
    /// RFC 3339 of the first decision of a summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<String>,
    pub time_ms: u64,
    #[serde(default)]
    pub first_ms: u64,
    #[serde(default = "one")]
    pub count: u64,
    pub project: Option<String>,
    pub op: String,
    pub name: Option<String>,
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<u32>,
    pub exe: Option<String>,
    /// The peer's workload: its systemd unit, slice and cgroup, and its
    /// executable's SHA-256 when a rule had it checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe_sha256: Option<String>,
    pub allowed: bool,
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

fn one() -> u64 {
    1
}

impl Line {
    /// The line for `entry`.
    pub fn of(entry: AuditTrailEntry) -> Self {
        let summary = entry.count > 1;
        Self {
            time: format_time_ms(entry.time_ms),
            first: summary.then(|| format_time_ms(entry.first_ms)),
            time_ms: entry.time_ms,
            first_ms: entry.first_ms,
            count: entry.count,
            project: entry.project,
            op: entry.op,
            name: entry.name,
            uid: entry.uid,
            gid: entry.gid,
            pid: entry.pid,
            exe: entry.exe,
            unit: entry.unit,
            slice: entry.slice,
            cgroup: entry.cgroup,
            exe_sha256: entry.exe_sha256,
            allowed: entry.allowed,
            result: entry.result,
            detail: entry.detail,
        }
    }

    /// The entry this line records.
    pub fn entry(self) -> AuditTrailEntry {
        AuditTrailEntry {
            time_ms: self.time_ms,
            first_ms: if self.first_ms == 0 {
                self.time_ms
            } else {
                self.first_ms
            },
            count: self.count.max(1),
            project: self.project,
            op: self.op,
            name: self.name,
            uid: self.uid,
            gid: self.gid,
            pid: self.pid,
            exe: self.exe,
            allowed: self.allowed,
            result: self.result,
            detail: self.detail,
            unit: self.unit,
            slice: self.slice,
            cgroup: self.cgroup,
            exe_sha256: self.exe_sha256,
        }
    }
}

/// `audit.log.N`.
pub(super) fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The files of the log, oldest first: `audit.log.<keep>` … `audit.log`.
pub(super) fn files(path: &Path, keep: u32) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = (1..=keep).rev().map(|n| rotated(path, n)).collect();
    out.push(path.to_path_buf());
    out
}

/// What a log file holds, for the report of a file rotation removes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Span {
    /// Entries (lines that parse).
    pub entries: u64,
    /// Of them, those whose last decision is at or after the `since` asked.
    pub young: u64,
    /// The earliest and latest last decision.
    pub first_ms: Option<u64>,
    pub last_ms: Option<u64>,
}

/// Counts the entries of one file (reads only each line's `time_ms`).
pub(super) fn span(file: &Path, since_ms: u64) -> std::io::Result<Span> {
    #[derive(Deserialize)]
    struct Stamp {
        time_ms: u64,
    }
    let mut span = Span::default();
    for line in BufReader::new(File::open(file)?).split(b'\n') {
        let Ok(stamp) = serde_json::from_slice::<Stamp>(&line?) else {
            continue;
        };
        let t = stamp.time_ms;
        span.entries += 1;
        span.young += u64::from(t >= since_ms);
        span.first_ms = Some(span.first_ms.map_or(t, |f| f.min(t)));
        span.last_ms = Some(span.last_ms.map_or(t, |l| l.max(t)));
    }
    Ok(span)
}

/// Which entries [`read`] returns.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter<'a> {
    /// Only this project's (all when `None`).
    pub project: Option<&'a str>,
    /// Only those whose last decision is at or after this.
    pub since_ms: u64,
    /// Only those of peers in a unit this pattern matches (`*` globs,
    /// [`crate::access::workload::glob`]); an entry with no unit matches
    /// no pattern.
    pub unit: Option<&'a str>,
}

impl<'a> Filter<'a> {
    /// What an `Audit` or `AuditLog` query asks for (no unit pattern).
    pub fn of(query: &'a flux_protocol::message::AuditQuery) -> Self {
        Self {
            project: query.project.as_deref(),
            since_ms: query.since_ms,
            unit: None,
        }
    }

    fn admits(&self, line: &Line) -> bool {
        line.time_ms >= self.since_ms
            && (self.project.is_none() || line.project.as_deref() == self.project)
            && self.unit.is_none_or(|pattern| {
                line.unit
                    .as_deref()
                    .is_some_and(|unit| crate::access::workload::glob(pattern, unit))
            })
    }
}

/// Reads entries back, rotated files included: those `filter` admits, the
/// last `limit` written, sorted by the time of their last decision (oldest
/// first; a folded line is written when its interval ends, after entries
/// of later decisions). Unparseable lines are skipped.
pub fn read(
    path: &Path,
    keep: u32,
    filter: Filter<'_>,
    limit: usize,
) -> Result<Vec<AuditTrailEntry>> {
    let mut kept = std::collections::VecDeque::with_capacity(limit.min(4096));
    for file in files(path, keep) {
        let f = match File::open(&file) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("read audit log", &file, e)),
        };
        for line in BufReader::new(f).split(b'\n') {
            let line = line.map_err(|e| Error::io("read audit log", &file, e))?;
            let Ok(line) = serde_json::from_slice::<Line>(&line) else {
                continue;
            };
            if !filter.admits(&line) {
                continue;
            }
            if kept.len() == limit {
                kept.pop_front();
            }
            kept.push_back(line.entry());
        }
    }
    let mut entries: Vec<AuditTrailEntry> = kept.into();
    // Stable: entries of the same millisecond stay in the order written.
    entries.sort_by_key(|e| e.time_ms);
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::audit::tests::entry;

    #[test]
    fn entries_come_back_sorted_by_their_last_decision() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        // Written in this order: a summary ending at 5 lands after a
        // decision at 9 (written when its connection closed).
        let mut text = String::new();
        for (op, t) in [("set", 3), ("hello", 9), ("get", 5), ("delete", 12)] {
            text.push_str(&serde_json::to_string(&Line::of(entry(op, "A", t))).unwrap());
            text.push('\n');
        }
        std::fs::write(&path, text).unwrap();
        let times = |limit| -> Vec<u64> {
            read(&path, 0, Filter::default(), limit)
                .unwrap()
                .iter()
                .map(|e| e.time_ms)
                .collect()
        };
        assert_eq!(times(10), [3, 5, 9, 12]);
        // The last three written, sorted.
        assert_eq!(times(3), [5, 9, 12]);
    }

    #[test]
    fn lines_round_trip_and_old_lines_read() {
        let mut e = entry("get", "A", 5);
        e.count = 3;
        e.first_ms = 2;
        let text = serde_json::to_string(&Line::of(e.clone())).unwrap();
        assert!(text.contains("\"first\""), "{text}");
        assert_eq!(serde_json::from_str::<Line>(&text).unwrap().entry(), e);
        let old = r#"{"time":"2026-01-01T00:00:00.000Z","time_ms":7,"project":"app","op":"set","name":"A","uid":1,"gid":1,"pid":null,"exe":null,"allowed":true,"result":"ok"}"#;
        let e = serde_json::from_str::<Line>(old).unwrap().entry();
        assert_eq!((e.count, e.first_ms, e.time_ms), (1, 7, 7));
    }

    #[test]
    fn the_workload_is_written_when_known_and_left_out_when_not() {
        let mut e = entry("get", "A", 5);
        e.unit = Some("billing.service".into());
        e.slice = Some("functions.slice".into());
        e.cgroup = Some("/functions.slice/billing.service".into());
        e.exe_sha256 = Some("0f".repeat(32));
        let text = serde_json::to_string(&Line::of(e.clone())).unwrap();
        for field in [
            r#""unit":"billing.service""#,
            r#""slice":"functions.slice""#,
            r#""cgroup":"/functions.slice/billing.service""#,
            r#""exe_sha256":"0f0f"#,
        ] {
            assert!(text.contains(field), "{field} in {text}");
        }
        assert_eq!(serde_json::from_str::<Line>(&text).unwrap().entry(), e);
        // Unknown: not written at all, so a line reads as before.
        let text = serde_json::to_string(&Line::of(entry("get", "A", 5))).unwrap();
        for field in ["unit", "slice", "cgroup", "exe_sha256"] {
            assert!(!text.contains(&format!("\"{field}\"")), "{field} in {text}");
        }
    }

    #[test]
    fn read_filters_by_unit_pattern() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut text = String::new();
        for (t, unit) in [
            (1, Some("fn-billing.service")),
            (2, Some("fn-web.service")),
            (3, Some("cron.service")),
            (4, None),
            (5, Some("fn-billing.service")),
        ] {
            let mut e = entry("get", "A", t);
            e.unit = unit.map(str::to_owned);
            text.push_str(&serde_json::to_string(&Line::of(e)).unwrap());
            text.push('\n');
        }
        std::fs::write(&path, text).unwrap();
        let times = |unit: Option<&str>, limit| -> Vec<u64> {
            let filter = Filter {
                unit,
                ..Filter::default()
            };
            read(&path, 0, filter, limit)
                .unwrap()
                .iter()
                .map(|e| e.time_ms)
                .collect()
        };
        assert_eq!(times(None, 10), [1, 2, 3, 4, 5]);
        assert_eq!(times(Some("fn-*.service"), 10), [1, 2, 5]);
        assert_eq!(times(Some("fn-billing.service"), 10), [1, 5]);
        assert_eq!(times(Some("*"), 10), [1, 2, 3, 5], "no unit, no match");
        assert_eq!(times(Some("fn-*"), 1), [5], "the newest that match");
        assert!(times(Some("billing"), 10).is_empty(), "the whole name");
    }

    #[test]
    fn span_counts_the_entries_of_a_file_and_the_young_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut text = String::new();
        for t in [5, 3, 9, 12] {
            text.push_str(&serde_json::to_string(&Line::of(entry("get", "A", t))).unwrap());
            text.push('\n');
        }
        text.push_str("not json\n");
        std::fs::write(&path, text).unwrap();
        let s = span(&path, 9).unwrap();
        assert_eq!(
            s,
            Span {
                entries: 4,
                young: 2,
                first_ms: Some(3),
                last_ms: Some(12)
            }
        );
    }

    #[test]
    fn read_spans_rotated_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let write = |p: &Path, ts: &[u64]| {
            let text: String = ts
                .iter()
                .map(|t| serde_json::to_string(&Line::of(entry("set", "A", *t))).unwrap() + "\n")
                .collect();
            std::fs::write(p, text).unwrap();
        };
        write(&rotated(&path, 2), &[1, 2]);
        write(&rotated(&path, 1), &[3]);
        write(&path, &[4, 5]);
        let times = |keep, since, limit| -> Vec<u64> {
            read(
                &path,
                keep,
                Filter {
                    since_ms: since,
                    ..Filter::default()
                },
                limit,
            )
            .unwrap()
            .iter()
            .map(|e| e.time_ms)
            .collect()
        };
        assert_eq!(times(2, 0, 100), [1, 2, 3, 4, 5]);
        assert_eq!(times(1, 0, 100), [3, 4, 5]);
        assert_eq!(times(2, 3, 100), [3, 4, 5]);
        assert_eq!(times(2, 0, 2), [4, 5]);
    }
}
