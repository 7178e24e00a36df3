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
//! under a mutex (no system call, and no wake-up unless the writer sleeps).
//! A writer thread drains the queue [`BATCH`](state::BATCH) after an entry
//! arrives — or at once when it passes [`HIGH_WATER`] or someone waits for
//! a flush — folds what is to be folded, formats the lines and appends
//! them to the file (mode 0600), one write per file. With nothing queued,
//! held for a retry or folded, the writer sleeps until the first entry
//! wakes it (or until the next folded line is due): an idle daemon does not
//! wake at all.
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
//! [`RETRY_LIMIT`](state::RETRY_LIMIT) entries, past which entries are counted as dropped) and
//! retried every [`RETRY`](state::RETRY); [`Audit::writable`] turns false, the reason
//! shows in `fluxctl status`, and the daemon refuses writes to vaults,
//! projects and hosts until the log can be written again — reads keep
//! being served. Recording never blocks a request on a failing disk.
//!
//! Files: the recording side ([`Audit`], here), `[audit]` resolved
//! (`config.rs`), what it shares with the writer (`state.rs`), the writer
//! thread (`writer.rs`) and its rotation (`rotate.rs`), reading the log
//! back (`log.rs`), a connection's summaries (`summary.rs`) and the
//! writer's folding per peer (`fold.rs`).

mod config;
pub mod fold;
mod log;
mod rotate;
mod state;
mod summary;
mod writer;

pub use config::{AuditConfig, ReadAudit};
pub use log::{DEFAULT_LIMIT, Filter, read};
pub use summary::{DENIALS_IN_FULL, ReadSummaries, bounded_name, bounded_name_into};

use crate::error::Result;
use flux_protocol::message::{AuditHealth, AuditTrailEntry};
use flux_vault::chain::AuditKey;
use state::{HIGH_WATER, QUEUE, Shared};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

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
        let shared = writer::start(path, config, key)?;
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
        if q.asleep || q.entries.len() == HIGH_WATER {
            q.asleep = false;
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

#[cfg(test)]
mod tests {
    use super::*;
    use config::DEFAULT_KEEP_FOR;
    use flux_vault::chain;
    use flux_vault::time::now_ms;
    use log::{files, rotated};
    use std::time::Duration;

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

    /// Times the writer thread woke so far.
    fn wakes(audit: &Audit) -> u64 {
        let shared = audit.shared.as_ref().unwrap();
        shared.queue.lock().unwrap().wakes
    }

    /// Waits until `ok` holds, at most 5 s.
    fn until(mut ok: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !ok() {
            assert!(std::time::Instant::now() < deadline, "not within 5 s");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn an_idle_writer_sleeps_and_the_first_entry_wakes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let audit = Audit::open(
            &AuditConfig {
                path: Some(path.clone()),
                summary_interval: Duration::from_millis(300),
                ..AuditConfig::default()
            },
            Some(test_key()),
        )
        .unwrap();
        // Nothing to write: no wake-ups (a writer polling every 5 ms would
        // have woken about 40 times).
        std::thread::sleep(Duration::from_millis(200));
        assert!(wakes(&audit) <= 1, "{} wake-ups while idle", wakes(&audit));
        // A write's entry wakes it and is written, with no flush asked.
        audit.record(entry("set", "A", now_ms()));
        until(|| lines(&path, 1).len() == 1);
        // A read summary is folded and written when its interval is up,
        // with nothing else happening.
        let mut e = entry("get", "A", now_ms());
        e.count = 3;
        audit.fold(e);
        until(|| lines(&path, 1).len() == 2);
        assert_eq!(lines(&path, 1)[1].count, 3);
        // Idle again: asleep again.
        let after = wakes(&audit);
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            wakes(&audit) <= after + 1,
            "{} wake-ups while idle",
            wakes(&audit) - after
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
