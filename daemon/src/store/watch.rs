//! The folder watcher: the change feed of the local and dev stores, so a
//! vault or key replaced from outside fluxd is live within milliseconds.
//!
//! It watches *folders* (`vaults/` and `keys/`, or a `.env` file's folder),
//! not file inodes, so a file replaced by rename, rewritten in place,
//! copied over, restored, or swapped Kubernetes-style (a `..data` symlink
//! renamed over) is never missed.
//!
//! Every file that is complete — renamed into place (how fluxd, `mv`,
//! `age -o tmp && mv`, rsync and Kubernetes swap files) or a project file
//! closed after being written in place — is applied at once, on its own
//! (the project it names, or every project for a `..data` swap), so an
//! external rotation is live within a millisecond. Everything else in the
//! burst is coalesced: the watcher waits until the folder has been quiet
//! for [`QUIET`] (at most [`MAX_BATCH`]), then sends one [`Change`] for
//! the whole burst. A file truncated and still being written, or another
//! tool's staging file (`app.age.new`) closed, waits for its rename or the
//! quiet, so a half-written file is not read. fluxd's own writes — its
//! temp files renamed into place — wait for the quiet too: the project
//! already serves what they hold, and the re-read only confirms it.
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

    /// Adds an event to the burst. When the event completes a file (a
    /// rename into place, or the close of a project file written in place)
    /// returns the change that file makes on its own, to apply without
    /// waiting for the burst to end.
    fn add(&mut self, event: notify::Result<notify::Event>) -> Option<Change> {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                warn!(error = %e, "watcher error; rescanning every project");
                self.all = true;
                return None;
            }
        };
        let own_temp = |p: Option<&PathBuf>| {
            p.and_then(|p| p.file_name())
                .and_then(|n| n.to_str())
                .is_some_and(flux_vault::files::is_temp_file)
        };
        // The paths that hold a complete file once this event is seen: a
        // rename's destination (its source is gone), a closed file.
        let (complete, finished): (bool, &[PathBuf]) = match event.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => (true, &event.paths),
            EventKind::Access(_) => return None,
            EventKind::Modify(ModifyKind::Name(RenameMode::From)) => {
                self.own_rename = own_temp(event.paths.first());
                (false, &[])
            }
            // fluxd's own writes (its temp files renamed into place) need no
            // hurry: the project already serves what they hold.
            EventKind::Modify(ModifyKind::Name(RenameMode::To)) => (!self.own_rename, &event.paths),
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => (
                !own_temp(event.paths.first()),
                event.paths.get(1..).unwrap_or_default(),
            ),
            _ => (false, &[]),
        };
        if event.need_rescan() {
            self.all = true;
        }
        for path in &event.paths {
            self.add_path(path);
        }
        if !complete {
            return None;
        }
        let mut own = Scope::default();
        let seen: Vec<Seen> = finished.iter().map(|p| own.add_path(p)).collect();
        let closed = matches!(event.kind, EventKind::Access(_));
        // A temp file closed is not what completes a write: its rename is.
        // Nor is another tool's staging file (`app.age.new`, rsync's
        // `.app.age.XXXXXX`) closed: its rename into place is.
        if closed && !seen.contains(&Seen::Project) {
            return None;
        }
        own.into_change()
    }

    /// Adds a changed path: a project's vault or key, one of fluxd's temp
    /// files (ignored), or any other name (every project rescanned).
    fn add_path(&mut self, path: &Path) -> Seen {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            self.all = true;
            return Seen::Other;
        };
        // fluxd's own temp files: the rename that finishes a write is what
        // matters.
        if flux_vault::files::is_temp_file(name) {
            return Seen::Ignored;
        }
        match flux_vault::layout::StateDir::project_of_file(name) {
            Some(p) => {
                self.projects.insert(p.to_owned());
                Seen::Project
            }
            // `..data`, a timestamped folder, an editor's backup: anything
            // may have moved.
            None => {
                self.all = true;
                Seen::Other
            }
        }
    }
}

/// What a changed path is to the watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// One of fluxd's own temp files.
    Ignored,
    /// A project's vault or key file.
    Project,
    /// Any other name.
    Other,
}

impl Scope {
    /// The change so far, leaving the scope empty.
    #[cfg(test)]
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
        // Each completed file is applied at once, on its own (a rename's
        // "from" half may come first); the rest of the burst — partial
        // writes, other tools' staging files, what the completed files
        // touched again — is coalesced and re-read once it is quiet.
        if let Some(change) = scope.add(first)
            && !send(Some(change))
        {
            return;
        }
        let started = Instant::now();
        while started.elapsed() < MAX_BATCH {
            match events.recv_timeout(QUIET) {
                Ok(event) => {
                    if let Some(change) = scope.add(event)
                        && !send(Some(change))
                    {
                        return;
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

    // The paths below spell the state folder's layout on purpose: the
    // watcher is checked against the names fluxd writes.

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

    fn app() -> Option<Change> {
        Some(Change::Projects(["app".to_owned()].into()))
    }

    #[test]
    fn renames_into_place_and_closes_after_writing_complete_a_file() {
        use notify::event::{CreateKind, DataChange};
        let event = |kind: EventKind, path: &str| {
            Ok(notify::Event::new(kind).add_path(PathBuf::from(path)))
        };
        let mut s = Scope::default();
        assert_eq!(
            s.add(event(
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                "/s/vaults/.app.age.abc123.tmp"
            )),
            None
        );
        // Another tool's staging file, closed: its rename completes it.
        assert_eq!(
            s.add(event(
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                "/s/vaults/app.age.new"
            )),
            None
        );
        assert_eq!(
            s.add(event(
                EventKind::Modify(ModifyKind::Name(RenameMode::From)),
                "/s/vaults/app.age.new"
            )),
            None
        );
        // The rename applies its own project at once, not the whole
        // burst's rescan the staging file asked for.
        assert_eq!(
            s.add(event(
                EventKind::Modify(ModifyKind::Name(RenameMode::To)),
                "/s/vaults/app.age"
            )),
            app()
        );
        assert!(s.all, "the staging file still rescans at the quiet");
        // A second completed file in the same burst goes out at once too.
        assert_eq!(
            s.add(event(
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                "/s/vaults/app.age"
            )),
            app()
        );
        // A file still being written is not complete.
        for kind in [
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Create(CreateKind::File),
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
        ] {
            assert_eq!(s.add(event(kind, "/s/vaults/app.age")), None);
        }
        // A Kubernetes-style swap completes every project.
        assert_eq!(
            s.add(event(
                EventKind::Modify(ModifyKind::Name(RenameMode::To)),
                "/s/vaults/..data"
            )),
            Some(Change::All)
        );
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
        assert_eq!(
            s.add(rename(RenameMode::From, &["/s/vaults/.app.age.abc123.tmp"])),
            None
        );
        assert_eq!(s.add(rename(RenameMode::To, &["/s/vaults/app.age"])), None);
        assert_eq!(
            s.add(rename(
                RenameMode::Both,
                &["/s/vaults/.app.age.abc123.tmp", "/s/vaults/app.age"]
            )),
            None
        );
        assert_eq!(s.projects.iter().collect::<Vec<_>>(), ["app"], "still seen");
        // Another tool's rename is applied at once, as its destination.
        assert_eq!(
            s.add(rename(
                RenameMode::Both,
                &["/s/vaults/app.age.new", "/s/vaults/app.age"]
            )),
            app()
        );
    }
}
