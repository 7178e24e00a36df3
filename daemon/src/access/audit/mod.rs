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

mod log;
mod summary;

pub use log::{DEFAULT_LIMIT, Line, read};
pub use summary::{DENIALS_IN_FULL, ReadSummaries, bounded_name};

use crate::error::{Error, Result};
use flux_protocol::message::{AuditEntry, AuditHealth};
use log::rotated;
use std::fs::{File, OpenOptions};
use std::io::Write;
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
    /// Entries the writer holds for a retry.
    pending: AtomicU64,
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

    /// Entries recorded and not yet written: queued, being written, or
    /// kept for a retry while the log cannot be written (0 when disabled).
    pub fn queue_depth(&self) -> u64 {
        let Some(shared) = &self.shared else { return 0 };
        let waiting = {
            let q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.queued - q.done
        };
        waiting + shared.pending.load(Ordering::Relaxed)
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
            self.shared
                .pending
                .store(self.pending.len() as u64, Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;
    use log::files;

    pub(super) fn entry(op: &str, name: &str, t: u64) -> AuditEntry {
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
