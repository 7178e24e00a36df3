//! The audit log: one JSON line per access decision.
//!
//! Each line records when, the project, the operation, the secret or project
//! name, the peer (uid, gid, pid, executable), whether the policy allowed it
//! and the result — never a value.
//!
//! Recording is cheap on the request path: a record is pushed onto a
//! shared queue under a mutex (no system call, no wake-up). A writer thread
//! drains the queue every [`BATCH`] — or at once when it passes
//! [`HIGH_WATER`] or someone waits for a flush — formats the lines and
//! appends them to the file (mode 0600). When the queue reaches [`QUEUE`],
//! requests wait for the writer rather than drop records.
//!
//! `fluxctl audit` reads the file back through the control socket
//! ([`read`]), filtered by project and time, newest records kept.

use crate::error::{Error, Result};
use crate::vault::format_time_ms;
use flux_protocol::message::AuditRecord;
use serde::{Deserialize, Serialize};
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use tracing::error;

/// How often the writer drains the queue when nothing hurries it.
pub const BATCH: Duration = Duration::from_millis(5);
/// Queue length that wakes the writer early.
pub const HIGH_WATER: usize = 4096;
/// Queue length at which requests wait for the writer.
pub const QUEUE: usize = 64 * 1024;
/// Records `read` returns when the query sets no limit.
pub const DEFAULT_LIMIT: usize = 1000;

/// A line of the audit log: the record, and its time in RFC 3339 for
/// people reading the file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Line {
    /// RFC 3339 with milliseconds.
    pub time: String,
    #[serde(flatten)]
    pub record: AuditRecord,
}

#[derive(Debug, Default)]
struct Queue {
    records: Vec<AuditRecord>,
    /// Records ever queued, and ever written.
    queued: u64,
    written: u64,
    /// Someone waits for everything queued to be written.
    hurry: bool,
}

#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<Queue>,
    /// Signals the writer (work to do) and the waiters (work done).
    changed: Condvar,
}

/// The sending side of the audit log.
#[derive(Debug, Clone)]
pub struct Audit {
    shared: Option<Arc<Shared>>,
    path: Option<PathBuf>,
}

impl Audit {
    /// An audit log that records nothing (`[audit] enabled = false`).
    pub fn disabled() -> Self {
        Self {
            shared: None,
            path: None,
        }
    }

    /// Opens (creating, mode 0600) the log at `path` and starts its writer.
    pub fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::io("open audit log", path, e))?;
        let shared = Arc::new(Shared::default());
        let writer = shared.clone();
        let shown = path.display().to_string();
        std::thread::Builder::new()
            .name("fluxd-audit".into())
            .spawn(move || write_loop(&writer, BufWriter::new(file), &shown))
            .map_err(|e| Error::Internal(format!("cannot start the audit writer: {e}")))?;
        Ok(Self {
            shared: Some(shared),
            path: Some(path.to_path_buf()),
        })
    }

    /// Records a decision; waits only when the writer is far behind.
    pub fn record(&self, record: AuditRecord) {
        let Some(shared) = &self.shared else { return };
        let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        while q.records.len() >= QUEUE {
            q.hurry = true;
            shared.changed.notify_all();
            q = shared.changed.wait(q).unwrap_or_else(|e| e.into_inner());
        }
        q.records.push(record);
        q.queued += 1;
        if q.records.len() == HIGH_WATER {
            shared.changed.notify_all();
        }
    }

    /// Waits until everything recorded so far is in the file.
    pub async fn flush(&self) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let _ = tokio::task::spawn_blocking(move || {
            let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            let target = q.queued;
            while q.written < target {
                q.hurry = true;
                shared.changed.notify_all();
                q = shared.changed.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        })
        .await;
    }

    /// Where the log is, if it is enabled.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

/// The writer thread: drain, format, append, flush; forever (the process
/// ends it).
fn write_loop(shared: &Shared, mut out: BufWriter<std::fs::File>, shown: &str) {
    let mut batch = Vec::new();
    loop {
        {
            let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            if !q.hurry && q.records.len() < HIGH_WATER {
                q = shared
                    .changed
                    .wait_timeout(q, BATCH)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            q.hurry = false;
            std::mem::swap(&mut batch, &mut q.records);
        }
        let count = batch.len() as u64;
        for record in batch.drain(..) {
            let line = Line {
                time: format_time_ms(record.time_ms),
                record,
            };
            let written = serde_json::to_writer(&mut out, &line)
                .map_err(std::io::Error::other)
                .and_then(|()| out.write_all(b"\n"));
            if let Err(e) = written {
                error!(path = %shown, error = %e, "cannot write the audit log");
            }
        }
        if let Err(e) = out.flush() {
            error!(path = %shown, error = %e, "cannot write the audit log");
        }
        let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.written += count;
        shared.changed.notify_all();
    }
}

/// Reads records back: those of `project` (all when `None`) at or after
/// `since_ms`, the newest `limit`, oldest first. Unparseable lines are
/// skipped.
pub fn read(path: &Path, project: Option<&str>, since_ms: u64, limit: usize) -> Result<Vec<Line>> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read audit log", path, e)),
    };
    let mut kept = std::collections::VecDeque::with_capacity(limit.min(4096));
    for line in BufReader::new(file).lines() {
        let line = line.map_err(|e| Error::io("read audit log", path, e))?;
        let Ok(rec) = serde_json::from_str::<Line>(&line) else {
            continue;
        };
        let r = &rec.record;
        if r.time_ms < since_ms || (project.is_some() && r.project.as_deref() != project) {
            continue;
        }
        if kept.len() == limit {
            kept.pop_front();
        }
        kept.push_back(rec);
    }
    Ok(kept.into())
}
