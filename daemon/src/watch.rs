//! The file watcher: a vault or key replaced from outside fluxd is live
//! within milliseconds.
//!
//! It watches the `vaults/` and `keys/` *folders* (not file inodes), so a
//! file replaced by rename, rewritten in place, copied over, restored, or
//! swapped Kubernetes-style (a `..data` symlink renamed over) is never
//! missed. Events are coalesced: after the first, the watcher waits until
//! the folder has been quiet for [`QUIET`] (at most [`MAX_BATCH`]), then
//! asks the daemon to rescan just the projects named by the changed files —
//! or all of them when a name is not a project file (`..data`), or when
//! the kernel dropped events.
//!
//! The rescan compares SHA-256 fingerprints with what each project last
//! loaded or wrote, so fluxd's own writes (and unchanged files) cost a hash,
//! not a decryption, and produce no second swap. fluxd's own temp files
//! (`.<name>.tmp`) are ignored; the rename that completes a write is seen.

use crate::daemon::Shared;
use crate::error::{Error, Result};
use flux_protocol::limits::validate_project_name;
use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info_span, warn};

/// Quiet time that ends a burst of events.
pub const QUIET: Duration = Duration::from_millis(3);
/// Longest a burst is coalesced before a rescan runs anyway.
pub const MAX_BATCH: Duration = Duration::from_millis(50);

/// Which projects a burst of events may have changed.
#[derive(Debug, Default)]
pub(crate) struct Scope {
    pub(crate) all: bool,
    pub(crate) projects: BTreeSet<String>,
}

impl Scope {
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
        if name.starts_with('.') && name.ends_with(".tmp") && !name.starts_with("..") {
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

/// Starts watching `vaults/` and `keys/` and spawns the task that turns
/// bursts of events into rescans.
pub(crate) fn spawn(shared: Arc<Shared>, folders: &[std::path::PathBuf]) -> Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    })
    .map_err(|e| Error::Internal(format!("cannot start the file watcher: {e}")))?;
    for dir in folders {
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|e| Error::Internal(format!("cannot watch {}: {e}", dir.display())))?;
    }
    let shutdown = shared.shutdown.clone();
    let tracker = shared.tracker.clone();
    tracker.spawn(
        async move {
            let _watcher = watcher;
            loop {
                let first = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    event = rx.recv() => match event {
                        Some(e) => e,
                        None => return,
                    },
                };
                let mut scope = Scope::default();
                scope.add(first);
                let started = Instant::now();
                while started.elapsed() < MAX_BATCH {
                    match tokio::time::timeout(QUIET, rx.recv()).await {
                        Ok(Some(event)) => scope.add(event),
                        _ => break,
                    }
                }
                if scope.is_empty() {
                    continue;
                }
                debug!(all = scope.all, projects = ?scope.projects, "files changed");
                shared.rescan(scope, false).await;
            }
        }
        .instrument(info_span!("watcher")),
    );
    Ok(())
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
