//! The audit log: one JSON line per access decision.
//!
//! Each line records when, the project, the operation, the secret or project
//! name, the peer (uid, gid, pid, executable), whether the policy allowed it
//! and the result — never a value. Lines are handed to a writer task over a
//! bounded channel and appended to the file (mode 0600) in batches, flushed
//! whenever the queue runs dry; when the queue is full, requests wait for
//! the writer rather than drop records.
//!
//! `fluxctl audit` reads the file back through the control socket
//! ([`read`]), filtered by project and time, newest records kept.

use crate::error::{Error, Result};
use flux_protocol::message::AuditRecord;
use serde::{Deserialize, Serialize};
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use tokio::sync::{mpsc, oneshot};
use tracing::error;

/// Records queued before requests wait for the writer.
const QUEUE: usize = 16 * 1024;
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

enum Msg {
    Line(Box<Line>),
    Flush(oneshot::Sender<()>),
}

/// The sending side of the audit log.
#[derive(Debug, Clone)]
pub struct Audit {
    tx: Option<mpsc::Sender<Msg>>,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("audit message")
    }
}

impl Audit {
    /// An audit log that records nothing (`[audit] enabled = false`).
    pub fn disabled() -> Self {
        Self {
            tx: None,
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
        let (tx, mut rx) = mpsc::channel::<Msg>(QUEUE);
        let shown = path.display().to_string();
        std::thread::Builder::new()
            .name("fluxd-audit".into())
            .spawn(move || {
                let mut out = BufWriter::new(file);
                while let Some(msg) = rx.blocking_recv() {
                    let mut pending = Some(msg);
                    while let Some(msg) = pending.take() {
                        match msg {
                            Msg::Line(line) => {
                                let written = serde_json::to_writer(&mut out, &line)
                                    .map_err(std::io::Error::other)
                                    .and_then(|()| out.write_all(b"\n"));
                                if let Err(e) = written {
                                    error!(path = %shown, error = %e, "cannot write the audit log");
                                }
                            }
                            Msg::Flush(done) => {
                                let _ = out.flush();
                                let _ = done.send(());
                            }
                        }
                        pending = rx.try_recv().ok();
                    }
                    if let Err(e) = out.flush() {
                        error!(path = %shown, error = %e, "cannot write the audit log");
                    }
                }
            })
            .map_err(|e| Error::Internal(format!("cannot start the audit writer: {e}")))?;
        Ok(Self {
            tx: Some(tx),
            path: Some(path.to_path_buf()),
        })
    }

    /// Records a decision; waits only when the writer is far behind.
    pub async fn record(&self, line: Line) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Line(Box::new(line))).await;
        }
    }

    /// Waits until everything recorded so far is in the file.
    pub async fn flush(&self) {
        if let Some(tx) = &self.tx {
            let (done, wait) = oneshot::channel();
            if tx.send(Msg::Flush(done)).await.is_ok() {
                let _ = wait.await;
            }
        }
    }

    /// Where the log is, if it is enabled.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
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
