//! The folder watcher: the change feed of the local and dev stores, so a
//! vault or key replaced from outside fluxd is live within milliseconds.
//!
//! It watches *folders* (`vaults/` and `keys/`, or a `.env` file's folder),
//! not file inodes, so a file replaced by rename, rewritten in place,
//! copied over, restored, or swapped Kubernetes-style (a `..data` symlink
//! renamed over) is never missed.
//!
//! The first file of a burst that is complete — renamed into place (how
//! fluxd, `mv`, `age -o tmp && mv` and Kubernetes swap files) or closed
//! after being written in place — is applied at once, so an external
//! rotation is live within a millisecond. The rest of the burst is
//! coalesced: the watcher waits until the folder has been quiet for
//! [`QUIET`] (at most [`MAX_BATCH`]), then sends one [`Change`] for it. A
//! burst that starts with a partial write (a file truncated and still
//! being written) waits for the quiet, so a half-written file is not read.
//! fluxd's own writes — its temp files renamed into place — wait for the
//! quiet too: the project already serves what they hold, and the re-read
//! only confirms it.
//! Changes name just the projects of the changed files — or are
//! [`Change::All`] when a name is not a project file (`..data`), or when
//! the kernel dropped events.
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
use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind, RenameMode};
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
    /// The last rename seen started from one of fluxd's own temp files.
    own_rename: bool,
}

impl Scope {
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        !self.all && self.projects.is_empty()
    }

    /// Adds an event; true when it completes a file (a rename into place,
    /// or the close of a file written in place), so the change can be
    /// applied without waiting for the burst to end.
    fn add(&mut self, event: notify::Result<notify::Event>) -> bool {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                warn!(error = %e, "watcher error; rescanning every project");
                self.all = true;
                return false;
            }
        };
        let own_temp = |p: Option<&PathBuf>| {
            p.and_then(|p| p.file_name())
                .and_then(|n| n.to_str())
                .is_some_and(flux_vault::files::is_temp_file)
        };
        let complete = match event.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
            EventKind::Access(_) => return false,
            EventKind::Modify(ModifyKind::Name(RenameMode::From)) => {
                self.own_rename = own_temp(event.paths.first());
                false
            }
            // fluxd's own writes (its temp files renamed into place) need no
            // hurry: the project already serves what they hold.
            EventKind::Modify(ModifyKind::Name(RenameMode::To)) => !self.own_rename,
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => !own_temp(event.paths.first()),
            _ => false,
        };
        if event.need_rescan() {
            self.all = true;
        }
        let mut counted = false;
        for path in &event.paths {
            counted |= self.add_path(path);
        }
        // A temp file closed is not what completes a write: its rename is.
        complete && counted
    }

    /// Adds a changed path; false when it is one of fluxd's temp files.
    fn add_path(&mut self, path: &Path) -> bool {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            self.all = true;
            return true;
        };
        // fluxd's own temp files: the rename that finishes a write is what
        // matters.
        if flux_vault::files::is_temp_file(name) {
            return false;
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
        true
    }
}

impl Scope {
    /// The change so far, leaving the scope empty.
    fn take(&mut self) -> Option<Change> {
        std::mem::take(self).into_change()
    }

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
    let send = |change: Option<Change>| match change {
        Some(change) => {
            debug!(?change, "files changed");
            tx.send(change).is_ok()
        }
        None => !tx.is_closed(),
    };
    while let Ok(first) = events.recv() {
        let mut scope = Scope::default();
        // The burst's first completed file is applied at once (a rename's
        // "from" half may come first); the rest of the burst is coalesced.
        let mut sent_early = scope.add(first);
        if sent_early && !send(scope.take()) {
            return;
        }
        let started = Instant::now();
        while started.elapsed() < MAX_BATCH {
            match events.recv_timeout(QUIET) {
                Ok(event) => {
                    if scope.add(event) && !sent_early {
                        sent_early = true;
                        if !send(scope.take()) {
                            return;
                        }
                    }
                }
                Err(_) => break,
            }
        }
        if !send(scope.into_change()) {
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

    #[test]
    fn renames_into_place_and_closes_after_writing_complete_a_file() {
        use notify::event::{CreateKind, DataChange};
        let event = |kind: EventKind, path: &str| {
            Ok(notify::Event::new(kind).add_path(PathBuf::from(path)))
        };
        let mut s = Scope::default();
        assert!(!s.add(event(
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            "/s/vaults/.app.age.abc123.tmp"
        )));
        assert!(!s.add(event(
            EventKind::Modify(ModifyKind::Name(RenameMode::From)),
            "/s/vaults/app.age.new"
        )));
        assert!(s.add(event(
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            "/s/vaults/app.age"
        )));
        assert!(s.add(event(
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            "/s/vaults/app.age"
        )));
        // A file still being written is not complete.
        assert!(!s.add(event(
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            "/s/vaults/app.age"
        )));
        assert!(!s.add(event(
            EventKind::Create(CreateKind::File),
            "/s/vaults/app.age"
        )));
        assert!(!s.add(event(
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            "/s/vaults/app.age"
        )));
        assert!(s.take().is_some());
        assert!(s.take().is_none(), "take leaves the scope empty");
    }

    #[test]
    fn fluxds_own_writes_wait_for_the_quiet() {
        let rename = |mode: RenameMode, paths: &[&str]| {
            let mut e = notify::Event::new(EventKind::Modify(ModifyKind::Name(mode)));
            for p in paths {
                e = e.add_path(PathBuf::from(p));
            }
            Ok(e)
        };
        let mut s = Scope::default();
        assert!(!s.add(rename(RenameMode::From, &["/s/vaults/.app.age.abc123.tmp"])));
        assert!(!s.add(rename(RenameMode::To, &["/s/vaults/app.age"])));
        assert!(!s.add(rename(
            RenameMode::Both,
            &["/s/vaults/.app.age.abc123.tmp", "/s/vaults/app.age"]
        )));
        assert_eq!(s.projects.iter().collect::<Vec<_>>(), ["app"], "still seen");
        // Another tool's rename is applied at once.
        assert!(s.add(rename(
            RenameMode::Both,
            &["/s/vaults/app.age.new", "/s/vaults/app.age"]
        )));
    }
}
