//! The audit log: one JSON line per write, denial and project or host
//! change, and one line per *summary* of reads.
//!
//! Each line records when, the project, the operation, the secret, project
//! or host name, the peer (uid, gid, pid, executable), whether the policy
//! allowed it and the result — never a value. A summary line stands for
//! `count` identical decisions on one connection (same operation, name and
//! result) between `first` and `time`; sessions build them
//! ([`ReadSummaries`]) and hand them over when the connection closes, every
//! `[audit] summary_interval` while it stays open, and whenever one
//! connection has [`MAX_SUMMARIES`] of them. So "who read what, how often,
//! when" stays answerable while a busy read load costs a few lines a minute
//! instead of a line per read. `[audit] reads = "every"` writes a line per
//! read instead.
//!
//! Recording is cheap on the request path: an entry is pushed onto a queue
//! under a mutex (no system call, no wake-up). A writer thread drains the
//! queue every [`BATCH`] — or at once when it passes [`HIGH_WATER`] or
//! someone waits for a flush — formats the lines and appends them to the
//! file (mode 0600) in one write.
//!
//! **Size.** When the file reaches `[audit] max_bytes` it is rotated:
//! `audit.log` becomes `audit.log.1`, `audit.log.1` becomes `audit.log.2`,
//! and so on up to `[audit] keep` files; the oldest is removed. [`read`]
//! reads the rotated files too, oldest first.
//!
//! **Failure.** When a write fails (disk full, read-only file system), the
//! file is cut back to its last whole line, the batch is kept (up to
//! [`RETRY_LIMIT`] entries, past which entries are counted as dropped) and
//! retried every [`RETRY`]; [`Audit::writable`] turns false, the reason
//! shows in `fluxctl status`, and the daemon refuses writes to vaults,
//! projects and hosts until the log can be written again — reads keep
//! being served. Recording never blocks a request on a failing disk.

use crate::error::{Error, Result};
use crate::vault::format_time_ms;
use flux_protocol::message::{AuditEntry, AuditHealth};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use tracing::{error, info};

/// How often the writer drains the queue when nothing hurries it.
pub const BATCH: Duration = Duration::from_millis(5);
/// How often a failing log is tried again.
pub const RETRY: Duration = Duration::from_millis(250);
/// Queue length that wakes the writer early.
pub const HIGH_WATER: usize = 4096;
/// Queue length at which requests wait for the writer (only a writer that
/// is slow, not one that fails, makes a request wait).
pub const QUEUE: usize = 64 * 1024;
/// Entries kept for a retry while the log cannot be written.
pub const RETRY_LIMIT: usize = 16 * 1024;
/// Entries `read` returns when the query sets no limit.
pub const DEFAULT_LIMIT: usize = 1000;
/// Summaries one connection holds before handing them over.
pub const MAX_SUMMARIES: usize = 1024;
/// Denials one connection gets a line each for; past them, identical
/// denials are summarized like reads.
pub const DENIALS_IN_FULL: u32 = 100;
/// Characters of an invalid name the log keeps.
pub const NAME_PREFIX: usize = 64;

/// How reads are recorded (`[audit] reads`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadAudit {
    /// One summary per connection, name and result.
    #[default]
    Summary,
    /// One line per read.
    Every,
}

impl ReadAudit {
    /// The name in the config file and in `fluxctl status`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Summary => "summary",
            Self::Every => "every",
        }
    }
}

/// `[audit]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// The log file; `None` when auditing is disabled.
    pub path: Option<PathBuf>,
    pub reads: ReadAudit,
    /// Longest a summary waits before it is written.
    pub summary_interval: Duration,
    /// Size at which the file is rotated.
    pub max_bytes: u64,
    /// Rotated files kept.
    pub keep: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            path: None,
            reads: ReadAudit::Summary,
            summary_interval: Duration::from_secs(60),
            max_bytes: 64 * 1024 * 1024,
            keep: 5,
        }
    }
}

/// A line of the audit log as written: the entry, with its times also in
/// RFC 3339 for people reading the file. Lines written before summaries
/// existed (no `first_ms`, `count`, `detail`) still read.
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
    pub fn of(entry: AuditEntry) -> Self {
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
            allowed: entry.allowed,
            result: entry.result,
            detail: entry.detail,
        }
    }

    /// The entry this line records.
    pub fn entry(self) -> AuditEntry {
        AuditEntry {
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
        }
    }
}

/// A name as the log records it: as is when it is short and plain, else
/// its first [`NAME_PREFIX`] characters escaped and marked, with a detail
/// giving its length. A hostile 256 KiB name costs the log a few hundred
/// bytes.
pub fn bounded_name(name: &str) -> (String, Option<String>) {
    let plain = name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if plain && !name.is_empty() {
        return (name.to_owned(), None);
    }
    let prefix: String = name.chars().take(NAME_PREFIX).collect();
    let mut shown = prefix.escape_debug().to_string();
    if prefix.len() < name.len() {
        shown.push('…');
    }
    (shown, Some(format!("invalid name of {} bytes", name.len())))
}

#[derive(Debug, Default)]
struct Queue {
    entries: Vec<AuditEntry>,
    /// Entries ever queued, and ever written or dropped.
    queued: u64,
    done: u64,
    /// Someone waits for everything queued to be written.
    hurry: bool,
}

#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<Queue>,
    /// Signals the writer (work to do) and the waiters (work done).
    changed: Condvar,
    /// False while the file cannot be written.
    failing: AtomicBool,
    /// Why, while it cannot.
    error: Mutex<Option<String>>,
    /// Entries lost to a failing log.
    dropped: AtomicU64,
}

/// The sending side of the audit log.
#[derive(Debug, Clone)]
pub struct Audit {
    shared: Option<Arc<Shared>>,
    config: AuditConfig,
}

impl Audit {
    /// An audit log that records nothing (`[audit] enabled = false`).
    pub fn disabled() -> Self {
        Self {
            shared: None,
            config: AuditConfig::default(),
        }
    }

    /// Opens (creating, mode 0600) the log `config` names and starts its
    /// writer; a disabled log when it names none.
    pub fn open(config: &AuditConfig) -> Result<Self> {
        let Some(path) = &config.path else {
            return Ok(Self::disabled());
        };
        let file = open_log(path)?;
        let shared = Arc::new(Shared::default());
        let mut writer = Writer {
            shared: shared.clone(),
            path: path.clone(),
            size: file.metadata().map(|m| m.len()).unwrap_or(0),
            file,
            max_bytes: config.max_bytes,
            keep: config.keep,
            pending: Vec::new(),
        };
        std::thread::Builder::new()
            .name("fluxd-audit".into())
            .spawn(move || writer.run())
            .map_err(|e| Error::Internal(format!("cannot start the audit writer: {e}")))?;
        Ok(Self {
            shared: Some(shared),
            config: config.clone(),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &AuditConfig {
        &self.config
    }

    /// True when auditing is on.
    pub fn enabled(&self) -> bool {
        self.shared.is_some()
    }

    /// Records one entry; waits only when the writer is far behind (never
    /// when it fails).
    pub fn record(&self, entry: AuditEntry) {
        let Some(shared) = &self.shared else { return };
        let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        while q.entries.len() >= QUEUE {
            q.hurry = true;
            shared.changed.notify_all();
            q = shared.changed.wait(q).unwrap_or_else(|e| e.into_inner());
        }
        q.entries.push(entry);
        q.queued += 1;
        if q.entries.len() == HIGH_WATER {
            shared.changed.notify_all();
        }
    }

    /// True unless the log is enabled and cannot be written now.
    pub fn writable(&self) -> bool {
        self.shared
            .as_ref()
            .is_none_or(|s| !s.failing.load(Ordering::Acquire))
    }

    /// Waits until everything recorded so far is written (or, while the
    /// log fails, kept for a retry or dropped).
    pub async fn flush(&self) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let _ = tokio::task::spawn_blocking(move || {
            let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            let target = q.queued;
            while q.done < target {
                q.hurry = true;
                shared.changed.notify_all();
                q = shared.changed.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        })
        .await;
    }

    /// The log's state, for `fluxctl status`.
    pub fn health(&self) -> AuditHealth {
        let (error, dropped) = match &self.shared {
            Some(s) => (
                s.error.lock().unwrap_or_else(|e| e.into_inner()).clone(),
                s.dropped.load(Ordering::Relaxed),
            ),
            None => (None, 0),
        };
        AuditHealth {
            path: self.config.path.as_ref().map(|p| p.display().to_string()),
            reads: self.config.reads.name().to_owned(),
            writes_refused: error.is_some(),
            error,
            dropped,
        }
    }

    /// Where the log is, if it is enabled.
    pub fn path(&self) -> Option<&Path> {
        self.shared.as_ref().and(self.config.path.as_deref())
    }
}

fn open_log(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io("open audit log", path, e))
}

/// `audit.log.N`.
fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The writer thread's state.
struct Writer {
    shared: Arc<Shared>,
    path: PathBuf,
    file: File,
    /// Bytes in the file, all of them whole lines.
    size: u64,
    max_bytes: u64,
    keep: u32,
    /// Entries that could not be written yet, oldest first.
    pending: Vec<AuditEntry>,
}

impl Writer {
    /// Drain, format, append; forever (the process ends it).
    fn run(&mut self) {
        let mut batch = Vec::new();
        let mut bytes = Vec::new();
        loop {
            let wait = if self.pending.is_empty() {
                BATCH
            } else {
                RETRY
            };
            {
                let mut q = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
                if !q.hurry && q.entries.len() < HIGH_WATER {
                    q = self
                        .shared
                        .changed
                        .wait_timeout(q, wait)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                q.hurry = false;
                std::mem::swap(&mut batch, &mut q.entries);
            }
            let count = batch.len() as u64;
            self.pending.append(&mut batch);
            if !self.pending.is_empty() {
                self.write_pending(&mut bytes);
            }
            let mut q = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.done += count;
            self.shared.changed.notify_all();
        }
    }

    /// Writes every pending entry, or keeps them (bounded) when the file
    /// cannot be written.
    fn write_pending(&mut self, bytes: &mut Vec<u8>) {
        bytes.clear();
        for entry in &self.pending {
            // Serializing plain strings and numbers cannot fail.
            let _ = serde_json::to_writer(&mut *bytes, &Line::of(entry.clone()));
            bytes.push(b'\n');
        }
        match self.append(bytes) {
            Ok(()) => {
                self.pending.clear();
                if self.shared.failing.swap(false, Ordering::AcqRel) {
                    *self.shared.error.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    info!(path = %self.path.display(), "the audit log can be written again; writes are accepted");
                }
                if self.size >= self.max_bytes {
                    self.rotate();
                }
            }
            Err(e) => {
                let reason = format!("cannot write the audit log {}: {e}", self.path.display());
                if !self.shared.failing.swap(true, Ordering::AcqRel) {
                    error!("{reason}; writes are refused and reads served until it can be written");
                }
                *self.shared.error.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
                if self.pending.len() > RETRY_LIMIT {
                    let lost = self.pending.len() - RETRY_LIMIT;
                    self.pending.drain(..lost);
                    self.shared
                        .dropped
                        .fetch_add(lost as u64, Ordering::Relaxed);
                }
            }
        }
    }

    /// Appends whole lines; on failure cuts the file back to its last whole
    /// line, so a retry never leaves half a line behind.
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self.file.write_all(bytes) {
            Ok(()) => {
                self.size += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                let _ = self.file.set_len(self.size);
                Err(e)
            }
        }
    }

    /// `audit.log` → `audit.log.1` → … → `audit.log.<keep>`, dropping the
    /// oldest; then a new, empty `audit.log`.
    fn rotate(&mut self) {
        let result = (|| -> std::io::Result<()> {
            if self.keep == 0 {
                std::fs::remove_file(&self.path)?;
            } else {
                let _ = std::fs::remove_file(rotated(&self.path, self.keep));
                for n in (1..self.keep).rev() {
                    match std::fs::rename(rotated(&self.path, n), rotated(&self.path, n + 1)) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                        _ => {}
                    }
                }
                std::fs::rename(&self.path, rotated(&self.path, 1))?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            error!(path = %self.path.display(), error = %e, "cannot rotate the audit log; it keeps growing");
            return;
        }
        match open_log(&self.path) {
            Ok(file) => {
                self.file = file;
                self.size = 0;
                info!(path = %self.path.display(), keep = self.keep, "audit log rotated");
            }
            Err(e) => error!(error = %e, "cannot reopen the audit log after rotating it"),
        }
    }
}

/// The files of the log, oldest first: `audit.log.<keep>` … `audit.log`.
fn files(path: &Path, keep: u32) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = (1..=keep).rev().map(|n| rotated(path, n)).collect();
    out.push(path.to_path_buf());
    out
}

/// Reads entries back, rotated files included: those of `project` (all
/// when `None`) whose last decision is at or after `since_ms`, the newest
/// `limit`, oldest first. Unparseable lines are skipped.
pub fn read(
    path: &Path,
    keep: u32,
    project: Option<&str>,
    since_ms: u64,
    limit: usize,
) -> Result<Vec<AuditEntry>> {
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
            if line.time_ms < since_ms || (project.is_some() && line.project.as_deref() != project)
            {
                continue;
            }
            if kept.len() == limit {
                kept.pop_front();
            }
            kept.push_back(line.entry());
        }
    }
    Ok(kept.into())
}

/// One connection's pending summaries (see the module docs): identical
/// decisions counted under one entry until they are handed to the log.
#[derive(Debug, Default)]
pub struct ReadSummaries {
    /// By name (`""` for requests that name nothing), then by operation,
    /// decision and result.
    by_name: HashMap<String, Vec<AuditEntry>>,
    len: usize,
}

impl ReadSummaries {
    /// True when nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Counts one decision; `make` builds the entry the first time. Returns
    /// true when the connection holds [`MAX_SUMMARIES`] and should hand
    /// them over.
    pub fn count(
        &mut self,
        name: &str,
        op: &str,
        allowed: bool,
        result: &str,
        time_ms: u64,
        make: impl FnOnce() -> AuditEntry,
    ) -> bool {
        let entries = match self.by_name.get_mut(name) {
            Some(e) => e,
            None => self.by_name.entry(name.to_owned()).or_default(),
        };
        match entries
            .iter_mut()
            .find(|e| e.op == op && e.allowed == allowed && e.result == result)
        {
            Some(e) => {
                e.count += 1;
                e.time_ms = time_ms;
            }
            None => {
                entries.push(make());
                self.len += 1;
            }
        }
        self.len >= MAX_SUMMARIES
    }

    /// Hands every pending summary to `audit`.
    pub fn flush(&mut self, audit: &Audit) {
        for (_, entries) in self.by_name.drain() {
            for e in entries {
                audit.record(e);
            }
        }
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(op: &str, name: &str, t: u64) -> AuditEntry {
        AuditEntry {
            time_ms: t,
            first_ms: t,
            count: 1,
            project: Some("app".into()),
            op: op.into(),
            name: Some(name.into()),
            uid: 1,
            gid: 1,
            pid: None,
            exe: None,
            allowed: true,
            result: "ok".into(),
            detail: None,
        }
    }

    #[test]
    fn bounded_names() {
        assert_eq!(
            bounded_name("OPENAI_API_KEY"),
            ("OPENAI_API_KEY".into(), None)
        );
        let (shown, detail) = bounded_name(&"A".repeat(256 * 1024));
        assert!(shown.len() < 80, "{}", shown.len());
        assert!(shown.ends_with('…'));
        assert_eq!(detail.as_deref(), Some("invalid name of 262144 bytes"));
        let (shown, _) = bounded_name("bad\u{1b}[2J\nname");
        assert!(
            !shown.contains('\u{1b}') && !shown.contains('\n'),
            "{shown}"
        );
    }

    #[test]
    fn summaries_count_identical_decisions() {
        let mut s = ReadSummaries::default();
        for t in 0..10 {
            s.count("A", "get", true, "ok", t, || entry("get", "A", t));
        }
        s.count("A", "get", true, "not_found", 11, || entry("get", "A", 11));
        s.count("B", "get", true, "ok", 12, || entry("get", "B", 12));
        let mut all: Vec<AuditEntry> = s.by_name.values().flatten().cloned().collect();
        all.sort_by_key(|e| (e.name.clone(), e.first_ms));
        assert_eq!(all.len(), 3);
        assert_eq!((all[0].count, all[0].first_ms, all[0].time_ms), (10, 0, 9));
        assert_eq!(all[1].count, 1);
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
            read(&path, keep, None, since, limit)
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

    #[test]
    fn the_writer_rotates_at_max_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let config = AuditConfig {
            path: Some(path.clone()),
            max_bytes: 1000,
            keep: 2,
            ..AuditConfig::default()
        };
        let audit = Audit::open(&config).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for t in 0..60 {
            audit.record(entry("set", "A", t));
            rt.block_on(audit.flush());
        }
        assert!(rotated(&path, 1).exists() && rotated(&path, 2).exists());
        assert!(!rotated(&path, 3).exists(), "only `keep` files are kept");
        for f in files(&path, 2) {
            let len = std::fs::metadata(&f).unwrap().len();
            assert!(len < 1000 + 400, "{} is {len} bytes", f.display());
        }
        let back = read(&path, 2, None, 0, 1000).unwrap();
        assert_eq!(back.last().map(|e| e.time_ms), Some(59));
        assert!(back.len() > 5 && back.len() < 60, "{}", back.len());
    }
}
