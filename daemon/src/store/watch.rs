//! The folder watcher: the change feed of the local and dev stores, so a
//! vault or key replaced from outside fluxd is live within milliseconds.
//!
//! It watches *folders* (`vaults/` and `keys/`, or a `.env` file's folder),
//! not file inodes, so a file replaced by rename, rewritten in place,
//! copied over, restored, or swapped Kubernetes-style (a `..data` symlink
//! renamed over) is never missed. Events are coalesced: after the first,
//! the watcher waits until the folder has been quiet for [`QUIET`] (at most
//! [`MAX_BATCH`]), then sends one [`Change`] naming just the projects of the
//! changed files — or [`Change::All`] when a name is not a project file
//! (`..data`), or when the kernel dropped events.
//!
//! The re-read compares SHA-256 fingerprints with what each project last
//! loaded or wrote, so fluxd's own writes (and unchanged files) cost a hash,
//! not a decryption, and produce no second swap. fluxd's own temp files
//! ([`flux_vault::files::is_temp_file`]) are ignored; the rename that
//! completes a write is seen.
//!
//! The coalescing runs on its own thread (notify delivers events on one),
//! so the watcher needs no runtime and stops when its feed is dropped.

use super::{Change, ChangeFeed};
use crate::error::{Error, Result};
use flux_protocol::limits::validate_project_name;
use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// Quiet time that ends a burst of events.
pub const QUIET: Duration = Duration::from_millis(3);
/// Longest a burst is coalesced before a rescan runs anyway.
pub const MAX_BATCH: Duration = Duration::from_millis(50);

/// Which projects a burst of events may have changed.
#[derive(Debug, Default)]
struct Scope {
    all: bool,
    projects: BTreeSet<String>,
}

impl Scope {
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        !self.all && self.projects.is_empty()
    }

    fn add(&mut self, event: notify::Result<notify::Event>) {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                warn!(error = %e, "watcher error; rescanning every project");
                self.all = true;
                return;
            }
        };
        match event.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => {}
            EventKind::Access(_) => return,
            _ => {}
        }
        if event.need_rescan() {
            self.all = true;
        }
        for path in &event.paths {
            self.add_path(path);
        }
    }

    fn add_path(&mut self, path: &Path) {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            self.all = true;
            return;
        };
        // fluxd's own temp files: the rename that finishes a write is what
        // matters.
        if flux_vault::files::is_temp_file(name) {
            return;
        }
        let project = name
            .strip_suffix(".age")
            .or_else(|| name.strip_suffix(".key"))
            .filter(|p| validate_project_name(p).is_ok());
        match project {
            Some(p) => {
                self.projects.insert(p.to_owned());
            }
            // `..data`, a timestamped folder, an editor's backup: anything
            // may have moved.
            None => self.all = true,
        }
    }
}

impl Scope {
    fn into_change(self) -> Option<Change> {
        if self.all {
            Some(Change::All)
        } else if self.projects.is_empty() {
            None
        } else {
            Some(Change::Projects(self.projects))
        }
    }
}

/// Watches `folders` and returns the feed of coalesced changes (see the
/// module docs). The watch stops when the feed is dropped.
pub fn folders(folders: &[PathBuf]) -> Result<ChangeFeed> {
    let (events_tx, events_rx) = std_mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = events_tx.send(event);
    })
    .map_err(|e| Error::Internal(format!("cannot start the file watcher: {e}")))?;
    for dir in folders {
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|e| Error::Internal(format!("cannot watch {}: {e}", dir.display())))?;
    }
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("fluxd-watch".into())
        .spawn(move || coalesce(&events_rx, &tx))
        .map_err(|e| Error::Internal(format!("cannot start the file watcher: {e}")))?;
    Ok(ChangeFeed::new(rx, Some(Box::new(watcher))))
}

/// Turns bursts of events into changes until either side is gone.
fn coalesce(
    events: &std_mpsc::Receiver<notify::Result<notify::Event>>,
    tx: &mpsc::UnboundedSender<Change>,
) {
    while let Ok(first) = events.recv() {
        let mut scope = Scope::default();
        scope.add(first);
        let started = Instant::now();
        while started.elapsed() < MAX_BATCH {
            match events.recv_timeout(QUIET) {
                Ok(event) => scope.add(event),
                Err(_) => break,
            }
        }
        let Some(change) = scope.into_change() else {
            continue;
        };
        debug!(?change, "files changed");
        if tx.send(change).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_from_paths() {
        let mut s = Scope::default();
        s.add_path(Path::new("/s/vaults/.app.age.abc123.tmp"));
        assert!(s.is_empty(), "own temp files are ignored");
        s.add_path(Path::new("/s/vaults/app.age"));
        s.add_path(Path::new("/s/keys/other.key"));
        assert!(!s.all);
        assert_eq!(s.projects.iter().collect::<Vec<_>>(), ["app", "other"]);
        s.add_path(Path::new("/s/vaults/..data"));
        assert!(s.all, "a Kubernetes-style swap rescans everything");
    }
}
