//! The audit log's writer thread: it drains the queue every [`BATCH`] (or
//! at once when hurried), folds what is to be folded, formats and chains
//! the lines, and appends them to the file, one write per file; a failing
//! write keeps the batch for a retry and refuses writes until the log can
//! be written again. Rotation is in `rotate.rs`.

use super::config::AuditConfig;
use super::fold::{self, Folds};
use super::log::{Line, rotated};
use super::state::{BATCH, HIGH_WATER, RETRY, RETRY_LIMIT, Shared};
use crate::error::{Error, Result};
use flux_protocol::message::AuditTrailEntry;
use flux_vault::chain::{self, AuditKey};
use flux_vault::time::now_ms;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tracing::{error, info};

/// Opens (creating, mode 0600) the log at `path` and starts its writer
/// thread; returns what the recording side shares with it.
pub(super) fn start(
    path: &Path,
    config: &AuditConfig,
    key: Option<AuditKey>,
) -> Result<Arc<Shared>> {
    // The chain goes on from the last line written, in this file or,
    // when it is new, the one before it.
    let link = [path.to_path_buf(), rotated(path, 1)]
        .iter()
        .find_map(|p| last_link(p))
        .unwrap_or(chain::START);
    let file = open_log(path)?;
    let shared = Arc::new(Shared::default());
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut writer = Writer {
        shared: shared.clone(),
        path: path.to_path_buf(),
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
    Ok(shared)
}

/// The MAC the last line of the file at `path` carries, if any.
fn last_link(path: &Path) -> Option<chain::Link> {
    let bytes = std::fs::read(path).ok()?;
    let last = bytes.split(|&b| b == b'\n').rfind(|l| !l.is_empty())?;
    chain::carried(last)
}

pub(super) fn open_log(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io("open audit log", path, e))
}

/// The writer thread's state.
pub(super) struct Writer {
    pub(super) shared: Arc<Shared>,
    pub(super) path: PathBuf,
    pub(super) file: File,
    /// Bytes in the file, all of them whole lines.
    pub(super) size: u64,
    pub(super) max_bytes: u64,
    pub(super) keep: u32,
    pub(super) keep_for: Duration,
    /// Entries that could not be written yet, oldest first.
    pub(super) pending: Vec<AuditTrailEntry>,
    pub(super) folds: Folds,
    /// Bytes each uid wrote to the current file (since fluxd started).
    pub(super) by_uid: HashMap<u32, u64>,
    /// When the current file was started, if by this fluxd.
    pub(super) started_ms: Option<u64>,
    /// The last rotation failed (logged once until one succeeds).
    pub(super) rotate_failing: bool,
    /// The audit key and the MAC of the last line written.
    pub(super) chain: Option<(AuditKey, chain::Link)>,
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
                // Nothing to write and nothing coming due: sleep until an
                // entry or a flush arrives (`Audit::push` wakes a sleeping
                // writer), else until the next folded line is due.
                while !q.hurry && q.entries.is_empty() && self.pending.is_empty() {
                    let now = now_ms();
                    let due = self.folds.next_due();
                    if due.is_some_and(|due| due <= now) {
                        break;
                    }
                    q.asleep = true;
                    q = match due {
                        Some(due) => {
                            let until = Duration::from_millis(due - now);
                            let changed = &self.shared.changed;
                            changed
                                .wait_timeout(q, until)
                                .unwrap_or_else(|e| e.into_inner())
                                .0
                        }
                        None => self
                            .shared
                            .changed
                            .wait(q)
                            .unwrap_or_else(|e| e.into_inner()),
                    };
                    q.asleep = false;
                }
                q.wakes += 1;
                // Entries gather for a moment, to be written together.
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
}
