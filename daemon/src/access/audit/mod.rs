//! The audit log: one JSON line per write and project or host change, and
//! *folded* lines for reads and denials.
//!
//! Each line records when, the project, the operation, the secret, project
//! or host name, the peer (uid, gid, pid, executable) and its workload
//! (systemd unit, slice, cgroup, and the executable's SHA-256 when a rule
//! had it checked; fields not known are left out), whether the policy
//! allowed it and the result — never a value. A folded line stands for
//! `count` identical decisions (same peer and workload, project,
//! operation, name and result) between `first` and `time`.
//!
//! **Folding, in two steps.** A session counts its connection's reads (and
//! its denials past the first [`DENIALS_IN_FULL`]) into summaries
//! ([`ReadSummaries`]) and hands them over ([`Audit::fold`]) when the
//! connection closes, every `[audit] summary_interval` while it stays
//! open, and whenever it holds [`summary::MAX_SUMMARIES`]; its first denials are
//! handed over one by one. The writer then folds them again *per peer*
//! (uid, gid, executable and workload) across connections ([`fold`]): a line is
//! written `summary_interval` after the first decision it counts, or when
//! the log is read (`fluxctl audit`) or fluxd stops. Denials get a line
//! each within a per-uid budget (a hundred, then ten a minute), and the
//! names one uid can make the log keep per interval are bounded. So a peer
//! that opens twenty thousand connections to be denied writes about a
//! hundred lines, not twenty thousand, and "who read what, how often,
//! when" stays answerable at a few lines a minute. Writes are never
//! folded; `[audit] reads = "every"` writes a line per read.
//!
//! Recording is cheap on the request path: an entry is pushed onto a queue
//! under a mutex (no system call, no wake-up). A writer thread drains the
//! queue every [`BATCH`] — or at once when it passes [`HIGH_WATER`] or
//! someone waits for a flush — folds what is to be folded, formats the
//! lines and appends them to the file (mode 0600), one write per file.
//!
//! **Size.** A line that would take the file past `[audit] max_bytes` goes
//! to a new file: `audit.log` becomes `audit.log.1`, `audit.log.1` becomes
//! `audit.log.2`, and so on up to `[audit] keep` files; the oldest is
//! removed. No file passes `max_bytes` (unless one line alone is longer),
//! so the log never takes more than `max_bytes × (keep + 1)`. [`read`]
//! reads the rotated files too, oldest first.
//!
//! **Age.** Rotation keeps that bound even when the file it removes holds
//! entries younger than `[audit] keep_for` — but never quietly: it logs an
//! error naming the file, how many entries of the last `keep_for` are lost
//! and who filled the log, counts the file
//! (`flux_audit_dropped_files_total`) and the entries
//! (`flux_audit_dropped_young_entries_total`, and `dropped` in
//! `fluxctl status`). At every rotation the uid that wrote most of the file
//! is logged; one that wrote more than half of it drives rotation and is
//! counted (`flux_audit_rotation_drivers_total{uid}`).
//!
//! **Failure.** When a write fails (disk full, read-only file system), the
//! file is cut back to its last whole line, the batch is kept (up to
//! [`RETRY_LIMIT`] entries, past which entries are counted as dropped) and
//! retried every [`RETRY`]; [`Audit::writable`] turns false, the reason
//! shows in `fluxctl status`, and the daemon refuses writes to vaults,
//! projects and hosts until the log can be written again — reads keep
//! being served. Recording never blocks a request on a failing disk.

pub mod fold;
mod log;
mod summary;

pub use fold::Folds;
pub use log::{DEFAULT_LIMIT, Filter, Line, read};
pub use summary::{DENIALS_IN_FULL, ReadSummaries, bounded_name};

use crate::error::{Error, Result};
use flux_protocol::message::{AuditHealth, AuditTrailEntry};
use flux_vault::chain::{self, AuditKey};
use flux_vault::time::{format_time_ms, now_ms};
use log::rotated;
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use tracing::{error, info, warn};

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
/// Uids `flux_audit_rotation_drivers_total` names; others count as
/// `uid="other"`.
pub const DRIVER_UIDS: usize = 32;

/// How reads are recorded (`[audit] reads`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadAudit {
    /// Folded: per connection, then per peer and interval.
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

/// Default of `[audit] keep_for`.
pub const DEFAULT_KEEP_FOR: Duration = Duration::from_secs(7 * 24 * 3600);

/// `[audit]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// The log file; `None` when auditing is disabled.
    pub path: Option<PathBuf>,
    pub reads: ReadAudit,
    /// Longest a summary waits before it is written.
    pub summary_interval: Duration,
    /// Size a file does not pass.
    pub max_bytes: u64,
    /// Rotated files kept.
    pub keep: u32,
    /// Age below which a file removed by rotation is reported as a loss
    /// (zero: never).
    pub keep_for: Duration,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            path: None,
            reads: ReadAudit::Summary,
            summary_interval: Duration::from_secs(60),
            max_bytes: 64 * 1024 * 1024,
            keep: 5,
            keep_for: DEFAULT_KEEP_FOR,
        }
    }
}

#[derive(Debug, Default)]
struct Queue {
    /// Entries, each with whether it is to be folded.
    entries: Vec<(AuditTrailEntry, bool)>,
    /// Entries ever queued, and ever written, folded or dropped.
    queued: u64,
    done: u64,
    /// Someone waits for everything queued to be written.
    hurry: bool,
    /// Flushes asked for, and the last one whose folded lines were
    /// written.
    drains_asked: u64,
    drained: u64,
}

/// What rotation did, since start.
#[derive(Debug, Default)]
struct Rotation {
    rotations: AtomicU64,
    /// Files removed while younger than `keep_for`, and the entries of the
    /// last `keep_for` they held.
    dropped_files: AtomicU64,
    dropped_young_entries: AtomicU64,
    /// Rotations driven by one uid (more than half of the file), by uid.
    drivers: Mutex<Drivers>,
}

#[derive(Debug, Default)]
struct Drivers {
    by_uid: BTreeMap<u32, u64>,
    other: u64,
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
    /// Folded lines waiting for their interval, and decisions folded.
    folds: AtomicU64,
    folded: AtomicU64,
    rotation: Rotation,
}

/// The audit log's counters, for the metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditStats {
    /// Entries lost while the log could not be written.
    pub dropped: u64,
    /// Rotations since start.
    pub rotations: u64,
    /// Files rotation removed while younger than `keep_for`.
    pub dropped_files: u64,
    /// Entries of the last `keep_for` those files held.
    pub dropped_young_entries: u64,
    /// Rotations driven by one uid: (uid, or `"other"`, count).
    pub drivers: Vec<(String, u64)>,
    /// Folded lines waiting for their interval.
    pub pending_folds: u64,
    /// Decisions counted into a line with others.
    pub folded: u64,
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
    pub fn open(config: &AuditConfig, key: Option<AuditKey>) -> Result<Self> {
        let Some(path) = &config.path else {
            return Ok(Self::disabled());
        };
        // The chain goes on from the last line written, in this file or,
        // when it is new, the one before it.
        let link = [path.clone(), rotated(path, 1)]
            .iter()
            .find_map(|p| last_link(p))
            .unwrap_or(chain::START);
        let file = open_log(path)?;
        let shared = Arc::new(Shared::default());
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut writer = Writer {
            shared: shared.clone(),
            path: path.clone(),
            size,
            file,
            max_bytes: config.max_bytes,
            keep: config.keep,
            keep_for: config.keep_for,
            pending: Vec::new(),
            folds: Folds::new(config.summary_interval.as_millis() as u64),
            by_uid: HashMap::new(),
            started_ms: (size == 0).then(now_ms),
            rotate_failing: false,
            chain: key.map(|k| (k, link)),
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

    /// Records one entry, written as its own line (writes; reads under
    /// `reads = "every"`); waits only when the writer is far behind (never
    /// when it fails).
    pub fn record(&self, entry: AuditTrailEntry) {
        self.push(entry, false);
    }

    /// Records a read summary or a denial, to be folded per peer and
    /// interval (see the module docs); the same wait as [`Audit::record`].
    pub fn fold(&self, entry: AuditTrailEntry) {
        self.push(entry, true);
    }

    fn push(&self, entry: AuditTrailEntry, fold: bool) {
        let Some(shared) = &self.shared else { return };
        let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        while q.entries.len() >= QUEUE {
            q.hurry = true;
            shared.changed.notify_all();
            q = shared.changed.wait(q).unwrap_or_else(|e| e.into_inner());
        }
        q.entries.push((entry, fold));
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

    /// Waits until everything recorded so far is written, folded lines
    /// included (or, while the log fails, kept for a retry or dropped).
    pub async fn flush(&self) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let _ = tokio::task::spawn_blocking(move || {
            let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            let target = q.queued;
            q.drains_asked += 1;
            let drain = q.drains_asked;
            while q.done < target || q.drained < drain {
                q.hurry = true;
                shared.changed.notify_all();
                q = shared.changed.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        })
        .await;
    }

    /// The log's state, for `fluxctl status`: `dropped` counts entries lost
    /// while the log could not be written and entries younger than
    /// `keep_for` that rotation removed.
    pub fn health(&self) -> AuditHealth {
        let (error, dropped) = match &self.shared {
            Some(s) => (
                s.error.lock().unwrap_or_else(|e| e.into_inner()).clone(),
                s.dropped.load(Ordering::Relaxed)
                    + s.rotation.dropped_young_entries.load(Ordering::Relaxed),
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

    /// The log's counters (all zero when disabled).
    pub fn stats(&self) -> AuditStats {
        let Some(s) = &self.shared else {
            return AuditStats::default();
        };
        let r = &s.rotation;
        let drivers = {
            let d = r.drivers.lock().unwrap_or_else(|e| e.into_inner());
            let mut out: Vec<(String, u64)> =
                d.by_uid.iter().map(|(u, n)| (u.to_string(), *n)).collect();
            if d.other > 0 {
                out.push(("other".into(), d.other));
            }
            out
        };
        AuditStats {
            dropped: s.dropped.load(Ordering::Relaxed),
            rotations: r.rotations.load(Ordering::Relaxed),
            dropped_files: r.dropped_files.load(Ordering::Relaxed),
            dropped_young_entries: r.dropped_young_entries.load(Ordering::Relaxed),
            drivers,
            pending_folds: s.folds.load(Ordering::Relaxed),
            folded: s.folded.load(Ordering::Relaxed),
        }
    }

    /// Entries recorded and not yet written: queued, being written, or
    /// kept for a retry while the log cannot be written (0 when disabled).
    /// Folded lines waiting for their interval are not counted (see
    /// [`AuditStats::pending_folds`]).
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

/// The MAC the last line of the file at `path` carries, if any.
fn last_link(path: &Path) -> Option<chain::Link> {
    let bytes = std::fs::read(path).ok()?;
    let last = bytes.split(|&b| b == b'\n').rfind(|l| !l.is_empty())?;
    chain::carried(last)
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
    keep_for: Duration,
    /// Entries that could not be written yet, oldest first.
    pending: Vec<AuditTrailEntry>,
    folds: Folds,
    /// Bytes each uid wrote to the current file (since fluxd started).
    by_uid: HashMap<u32, u64>,
    /// When the current file was started, if by this fluxd.
    started_ms: Option<u64>,
    /// The last rotation failed (logged once until one succeeds).
    rotate_failing: bool,
    /// The audit key and the MAC of the last line written.
    chain: Option<(AuditKey, chain::Link)>,
}

impl Writer {
    /// Drain, fold, format, append; forever (the process ends it).
    fn run(&mut self) {
        let mut batch = Vec::new();
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        loop {
            let wait = if self.pending.is_empty() {
                BATCH
            } else {
                RETRY
            };
            let drain = {
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
                (q.drains_asked > q.drained).then_some(q.drains_asked)
            };
            let count = batch.len() as u64;
            let now = now_ms();
            for (entry, fold) in batch.drain(..) {
                if !fold {
                    self.pending.push(entry);
                } else if let Some(entry) = self.folds.add(entry, now) {
                    self.pending.push(entry);
                }
            }
            if drain.is_some() || self.folds.len() >= fold::MAX_PENDING {
                self.folds.drain(&mut self.pending);
            } else {
                self.folds.take_due(now, &mut self.pending);
            }
            self.shared
                .folds
                .store(self.folds.len() as u64, Ordering::Relaxed);
            self.shared
                .folded
                .store(self.folds.folded(), Ordering::Relaxed);
            if !self.pending.is_empty() {
                self.write_pending(&mut bytes, &mut ends);
            }
            self.shared
                .pending
                .store(self.pending.len() as u64, Ordering::Relaxed);
            let mut q = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.done += count;
            if let Some(drain) = drain {
                q.drained = q.drained.max(drain);
            }
            self.shared.changed.notify_all();
        }
    }

    /// Writes every pending entry, rotating before a line that would take
    /// the file past `max_bytes`; keeps what could not be written (bounded)
    /// when the file cannot be written.
    fn write_pending(&mut self, bytes: &mut Vec<u8>, ends: &mut Vec<usize>) {
        bytes.clear();
        ends.clear();
        let mut links = Vec::with_capacity(self.pending.len());
        let mut link = self.chain.as_ref().map(|(_, l)| *l);
        let mut line = Vec::new();
        for entry in &self.pending {
            // Serializing plain strings and numbers cannot fail.
            line.clear();
            let _ = serde_json::to_writer(&mut line, &Line::of(entry.clone()));
            if let (Some((key, _)), Some(prev)) = (&self.chain, link.as_mut()) {
                *prev = key.chain(prev, &mut line);
                links.push(*prev);
            }
            bytes.extend_from_slice(&line);
            bytes.push(b'\n');
            ends.push(bytes.len());
        }
        let mut written = 0;
        let mut rotation_failed = false;
        let result = loop {
            if written == ends.len() {
                break Ok(());
            }
            let start = if written == 0 { 0 } else { ends[written - 1] };
            let room = self.max_bytes.saturating_sub(self.size);
            let mut end = written;
            while end < ends.len() && (ends[end] - start) as u64 <= room {
                end += 1;
            }
            if end == written {
                // The next line does not fit: a new file first.
                if self.size > 0 && !rotation_failed {
                    rotation_failed = !self.rotate();
                    continue;
                }
                // A line longer than `max_bytes` alone in a new file, or a
                // log that cannot be rotated keeps growing.
                end = if self.size == 0 {
                    written + 1
                } else {
                    ends.len()
                };
            }
            if let Err(e) = self.append(&bytes[start..ends[end - 1]]) {
                break Err(e);
            }
            let mut from = start;
            for (entry, &to) in self.pending[written..end].iter().zip(&ends[written..end]) {
                *self.by_uid.entry(entry.uid).or_default() += (to - from) as u64;
                from = to;
            }
            written = end;
        };
        self.pending.drain(..written);
        if let (Some((_, link)), Some(last)) = (
            self.chain.as_mut(),
            written.checked_sub(1).and_then(|i| links.get(i)),
        ) {
            *link = *last;
        }
        match result {
            Ok(()) => {
                if self.shared.failing.swap(false, Ordering::AcqRel) {
                    *self.shared.error.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    info!(path = %self.path.display(), "the audit log can be written again; writes are accepted");
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

    /// `audit.log` → `audit.log.1` → … → `audit.log.<keep>`, removing the
    /// oldest (loudly when it is younger than `keep_for`); then a new,
    /// empty `audit.log`. False when the log could not be rotated (it keeps
    /// growing; the next batch tries again).
    fn rotate(&mut self) -> bool {
        let now = now_ms();
        let top = self.top_writer(now);
        let victim = match self.keep {
            0 => self.path.clone(),
            n => rotated(&self.path, n),
        };
        let young = self.young(&victim, now);
        let result = (|| -> std::io::Result<()> {
            match std::fs::remove_file(&victim) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            for n in (1..self.keep).rev() {
                match std::fs::rename(rotated(&self.path, n), rotated(&self.path, n + 1)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            if self.keep > 0 {
                std::fs::rename(&self.path, rotated(&self.path, 1))?;
            }
            Ok(())
        })();
        if let Some(lost) = young.filter(|_| result.is_ok()) {
            self.report_young(&victim, &lost, top.as_ref());
        }
        if let Err(e) = result {
            if !self.rotate_failing {
                error!(path = %self.path.display(), error = %e, "cannot rotate the audit log; it keeps growing past [audit] max_bytes until it can");
            }
            self.rotate_failing = true;
            return false;
        }
        match open_log(&self.path) {
            Ok(file) => {
                self.file = file;
                self.size = 0;
                self.by_uid.clear();
                self.started_ms = Some(now);
                self.rotate_failing = false;
                self.shared
                    .rotation
                    .rotations
                    .fetch_add(1, Ordering::Relaxed);
                if let Some(top) = &top {
                    self.report_top(top);
                }
                info!(path = %self.path.display(), keep = self.keep, "audit log rotated");
                true
            }
            Err(e) => {
                error!(error = %e, "cannot reopen the audit log after rotating it");
                false
            }
        }
    }

    /// Who wrote most of the file being rotated.
    fn top_writer(&self, now: u64) -> Option<TopWriter> {
        let (&uid, &bytes) = self.by_uid.iter().max_by_key(|(_, b)| **b)?;
        Some(TopWriter {
            uid,
            bytes,
            size: self.size.max(1),
            filled_in: self
                .started_ms
                .map(|s| Duration::from_millis(now.saturating_sub(s))),
        })
    }

    /// Logs the top writer of a rotated file; counts it as driving
    /// rotation when it wrote more than half of it.
    fn report_top(&self, top: &TopWriter) {
        let filled = match top.filled_in {
            Some(d) => format!(
                " in {}",
                humantime::format_duration(Duration::from_secs(d.as_secs()))
            ),
            None => String::new(),
        };
        if top.bytes * 2 <= top.size {
            info!(
                uid = top.uid,
                "the audit log filled{filled}; uid {} wrote the most of it ({}%)",
                top.uid,
                top.percent()
            );
            return;
        }
        warn!(
            uid = top.uid,
            "uid {} drives the audit log's rotation: it wrote {}% of the {} bytes rotated{filled} (fluxctl audit shows what it did)",
            top.uid,
            top.percent(),
            top.size
        );
        let mut d = self
            .shared
            .rotation
            .drivers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if d.by_uid.contains_key(&top.uid) || d.by_uid.len() < DRIVER_UIDS {
            *d.by_uid.entry(top.uid).or_default() += 1;
        } else {
            d.other += 1;
        }
    }

    /// When `victim` exists and its newest entry is younger than
    /// `keep_for`: what removing it loses.
    fn young(&self, victim: &Path, now: u64) -> Option<log::Span> {
        if self.keep_for.is_zero() {
            return None;
        }
        let meta = std::fs::metadata(victim).ok()?;
        let age = meta.modified().ok()?.elapsed().unwrap_or_default();
        if age >= self.keep_for {
            return None;
        }
        let since = now.saturating_sub(self.keep_for.as_millis() as u64);
        Some(log::span(victim, since).unwrap_or_default())
    }

    /// Says loudly that rotation removed entries younger than `keep_for`.
    fn report_young(&self, victim: &Path, lost: &log::Span, top: Option<&TopWriter>) {
        let r = &self.shared.rotation;
        r.dropped_files.fetch_add(1, Ordering::Relaxed);
        r.dropped_young_entries
            .fetch_add(lost.young, Ordering::Relaxed);
        let keep_for = humantime::format_duration(self.keep_for);
        let who = match top {
            Some(t) => format!(
                "uid {} wrote {}% of the file rotated now",
                t.uid,
                t.percent()
            ),
            None => "who wrote it is not known (it was written before fluxd started)".into(),
        };
        let span = match (lost.first_ms, lost.last_ms) {
            (Some(f), Some(l)) => format!(" ({} to {})", format_time_ms(f), format_time_ms(l)),
            _ => String::new(),
        };
        error!(
            file = %victim.display(),
            lost = lost.young,
            "audit entries younger than [audit] keep_for ({keep_for}) are lost: rotation removed {} with {} entries{span}, {} of them from the last {keep_for}; {who}. Raise [audit] max_bytes or keep, or stop what writes so much",
            victim.display(),
            lost.entries,
            lost.young
        );
    }
}

/// The uid that wrote the most of a file.
#[derive(Debug)]
struct TopWriter {
    uid: u32,
    bytes: u64,
    /// The file's size (its lines from before fluxd started included).
    size: u64,
    /// How long the file took to fill, when fluxd started it.
    filled_in: Option<Duration>,
}

impl TopWriter {
    fn percent(&self) -> u64 {
        self.bytes * 100 / self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use log::files;

    pub(super) fn entry(op: &str, name: &str, t: u64) -> AuditTrailEntry {
        AuditTrailEntry {
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
            ..AuditTrailEntry::default()
        }
    }

    fn open(path: &Path, max_bytes: u64, keep: u32, keep_for: Duration) -> Audit {
        Audit::open(
            &AuditConfig {
                path: Some(path.to_path_buf()),
                max_bytes,
                keep,
                keep_for,
                ..AuditConfig::default()
            },
            Some(test_key()),
        )
        .unwrap()
    }

    fn test_key() -> AuditKey {
        AuditKey::from_file_bytes(&[7u8; 32]).unwrap()
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn lines(path: &Path, keep: u32) -> Vec<AuditTrailEntry> {
        read(path, keep, Filter::default(), usize::MAX).unwrap()
    }

    #[test]
    fn the_writer_rotates_at_max_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let audit = open(&path, 1000, 2, Duration::ZERO);
        for t in 0..60 {
            audit.record(entry("set", "A", t));
            block_on(audit.flush());
        }
        assert!(rotated(&path, 1).exists() && rotated(&path, 2).exists());
        assert!(!rotated(&path, 3).exists(), "only `keep` files are kept");
        for f in files(&path, 2) {
            let len = std::fs::metadata(&f).unwrap().len();
            assert!(len <= 1000, "{} is {len} bytes", f.display());
        }
        let back = lines(&path, 2);
        assert_eq!(back.last().map(|e| e.time_ms), Some(59));
        assert!(back.len() > 5 && back.len() < 60, "{}", back.len());
        // About 180 bytes a line: five a file.
        assert!(audit.stats().rotations >= 10, "{:?}", audit.stats());
    }

    #[test]
    fn the_chain_runs_across_rotations_and_restarts_and_catches_an_edit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let read_all = || -> Vec<Vec<u8>> {
            files(&path, 5)
                .iter()
                .filter_map(|f| std::fs::read(f).ok())
                .collect()
        };
        {
            let audit = open(&path, 2000, 5, Duration::ZERO);
            for t in 0..20 {
                audit.record(entry("set", "A", t));
                block_on(audit.flush());
            }
        }
        // A restart carries the chain on from the last line written.
        let audit = open(&path, 2000, 5, Duration::ZERO);
        for t in 20..30 {
            audit.record(entry("set", "B", t));
        }
        block_on(audit.flush());
        assert!(rotated(&path, 2).exists(), "rotated");
        assert!(matches!(
            chain::verify(&test_key(), &read_all()),
            chain::Finding::Whole {
                lines: 30,
                unchained: 0
            }
        ));
        // One name changed in the middle of a rotated file: found there.
        let file = rotated(&path, 1);
        let text = std::fs::read_to_string(&file).unwrap();
        let second = text.lines().nth(1).unwrap();
        let edited = second.replace("\"op\":\"set\"", "\"op\":\"get\"");
        assert_ne!(edited, second);
        std::fs::write(&file, text.replacen(second, &edited, 1)).unwrap();
        match chain::verify(&test_key(), &read_all()) {
            chain::Finding::Broken { line: 2, .. } => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_batch_never_takes_a_file_past_max_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let audit = open(&path, 4096, 100, Duration::ZERO);
        // One batch of 1400 lines (about 350 KB): written across files,
        // none past the limit (it used to land in one file, then rotate).
        for t in 0..1400 {
            audit.record(entry("set", "A", t));
        }
        block_on(audit.flush());
        let mut total = 0;
        for f in files(&path, 100) {
            let Ok(meta) = std::fs::metadata(&f) else {
                continue;
            };
            assert!(
                meta.len() <= 4096,
                "{} is {} bytes",
                f.display(),
                meta.len()
            );
            total += meta.len();
        }
        assert!(total > 300_000, "{total}");
        assert_eq!(lines(&path, 100).len(), 1400, "nothing lost");
    }

    #[test]
    fn a_line_longer_than_max_bytes_gets_a_file_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let audit = open(&path, 4096, 3, Duration::ZERO);
        audit.record(entry("set", "A", 1));
        let mut long = entry("set_many", "B", 2);
        long.detail = Some("N".repeat(5000));
        audit.record(long);
        audit.record(entry("set", "C", 3));
        block_on(audit.flush());
        let sizes: Vec<u64> = files(&path, 3)
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .collect();
        assert_eq!(sizes.len(), 3, "{sizes:?}");
        assert!(sizes[1] > 5000, "{sizes:?}");
        assert_eq!(lines(&path, 3).len(), 3);
    }

    #[test]
    fn rotation_removing_entries_younger_than_keep_for_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let audit = open(&path, 4096, 1, DEFAULT_KEEP_FOR);
        let now = now_ms();
        for i in 0..100 {
            let mut e = entry("set", "A", now + i);
            e.uid = 4242;
            audit.record(e);
            block_on(audit.flush());
        }
        let stats = audit.stats();
        assert!(stats.rotations >= 3, "{stats:?}");
        // Each rotation from the second on removes a file of this minute.
        assert_eq!(stats.dropped_files, stats.rotations - 1, "{stats:?}");
        let kept = lines(&path, 1).len() as u64;
        assert_eq!(stats.dropped_young_entries, 100 - kept, "{stats:?}");
        assert_eq!(audit.health().dropped, 100 - kept);
        assert!(!audit.health().writes_refused);
        assert_eq!(
            stats.drivers,
            [("4242".to_owned(), stats.rotations)],
            "uid 4242 wrote every rotated file"
        );

        // Old entries are expected to go: nothing is counted.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let audit = open(&path, 4096, 1, Duration::from_millis(1));
        for i in 0..100 {
            audit.record(entry("set", "A", i));
            block_on(audit.flush());
            std::thread::sleep(Duration::from_millis(2));
        }
        let stats = audit.stats();
        assert!(stats.rotations >= 3, "{stats:?}");
        assert_eq!((stats.dropped_files, audit.health().dropped), (0, 0));
    }

    #[test]
    fn denials_and_summaries_of_one_peer_are_folded_across_connections() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let audit = open(&path, 1 << 20, 1, Duration::ZERO);
        let now = now_ms();
        audit.record(entry("set", "A", now));
        for i in 0..5000 {
            // One denial per connection, as a flood of connections hands
            // them over.
            let mut e = entry("get", "A", now + i);
            e.allowed = false;
            e.result = "permission_denied".into();
            e.uid = 65533;
            e.pid = Some(i as u32);
            audit.fold(e);
        }
        for i in 0..50 {
            let mut e = entry("get", "A", now + i);
            e.count = 10;
            audit.fold(e);
        }
        block_on(audit.flush());
        let back = lines(&path, 1);
        let denied: Vec<&AuditTrailEntry> = back.iter().filter(|e| !e.allowed).collect();
        assert_eq!(denied.len(), 101, "a hundred in full, then one line");
        assert_eq!(denied.iter().map(|e| e.count).sum::<u64>(), 5000);
        let reads: Vec<&AuditTrailEntry> =
            back.iter().filter(|e| e.op == "get" && e.allowed).collect();
        assert_eq!(reads.len(), 1);
        assert_eq!(reads[0].count, 500);
        assert_eq!(back.iter().filter(|e| e.op == "set").count(), 1);
        assert_eq!(audit.stats().pending_folds, 0, "the flush wrote them");
        let bytes = std::fs::metadata(&path).unwrap().len();
        assert!(
            bytes < 40_000,
            "{bytes} bytes for 5000 denials and 500 reads"
        );
    }

    #[test]
    fn a_flush_writes_folded_lines_even_when_nothing_new_is_queued() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let audit = open(&path, 1 << 20, 1, Duration::ZERO);
        let mut e = entry("get", "A", now_ms());
        e.count = 3;
        audit.fold(e);
        // Let the writer take it into its folds.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while audit.stats().pending_folds == 0 {
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(lines(&path, 1).is_empty());
        block_on(audit.flush());
        assert_eq!(lines(&path, 1).len(), 1);
    }
}
