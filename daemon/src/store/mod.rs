//! Storage: where project keys and sealed vaults live, and how the daemon
//! learns that they changed.
//!
//! The [`Store`] trait is the whole interface the daemon needs — list,
//! load, store and delete, for keys and for vault ciphertext — so a
//! replicated backend sits beside the local folder. Stores only ever see
//! ciphertext and keys; sealing and encryption happen above them. Start-up
//! picks one store ([`crate::daemon`]) and hands out:
//!
//! - an `Arc<dyn Store>` for the projects;
//! - a [`ChangeFeed`]: the projects whose files changed outside the
//!   daemon's own writes (the folder watcher for [`LocalStore`] and
//!   [`DevStore`], the etcd watch in fleet mode);
//! - an `Arc<dyn Hosts>`: fleet host administration, which only the etcd
//!   store supports ([`NoFleet`] answers for the others).
//!
//! | store | keys and vaults | changes from |
//! |---|---|---|
//! | [`LocalStore`] | `<state>/keys`, `<state>/vaults` | the folder watcher |
//! | [`DevStore`] | a key in memory, the `.env` file | the folder watcher on the file's folder |
//! | [`crate::fleet::FleetStore`] | etcd, with a sealed local copy | the etcd watch |

pub mod dev;
pub mod local;
mod watch;

pub use dev::DevStore;
pub use local::LocalStore;

use crate::error::{Location, NotFoundHint, Result};
use flux_protocol::message::HostList;
use flux_vault::keys::ProjectKey;
use std::collections::BTreeSet;
use tokio::sync::mpsc;
use zeroize::Zeroizing;

/// Where the daemon keeps project keys and vaults.
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Names of the projects that have a key, sorted.
    fn projects(&self) -> Result<Vec<String>>;
    /// Reads a project's key file (the text `age-keygen` writes).
    fn load_key(&self, project: &str) -> Result<Zeroizing<String>>;
    /// Writes a new project key; fails if one exists (a key is never
    /// overwritten: that would make its vault unreadable).
    fn create_key(&self, project: &str, key: &ProjectKey) -> Result<()>;
    /// Removes a project key durably. Without it the vault and every backup
    /// of it are unreadable. What a store cannot remove at once (etcd's
    /// history) it reports among [`Hosts::problems`].
    fn delete_key(&self, project: &str) -> Result<()>;
    /// Reads a vault's ciphertext; `None` when there is none.
    fn load_vault(&self, project: &str) -> Result<Option<Vec<u8>>>;
    /// True when the project has a vault (a project appearing from outside
    /// is served once both its key and its vault are there).
    fn vault_exists(&self, project: &str) -> bool;
    /// Replaces a vault's ciphertext atomically and durably.
    fn store_vault(&self, project: &str, ciphertext: &[u8]) -> Result<()>;
    /// Removes a vault durably.
    fn delete_vault(&self, project: &str) -> Result<()>;
    /// Where a project's vault is, for messages.
    fn vault_location(&self, project: &str) -> Location;
    /// Where a project's key is, for messages.
    fn key_location(&self, project: &str) -> Location;
    /// Refuses a key that group or others could read or write.
    fn check_key_private(&self, project: &str) -> Result<()>;
    /// Replaces a vault only while the stored one is still the one whose
    /// SHA-256 is `expected` (`None`: no vault); `Ok(false)` when another
    /// writer got there first — the caller reloads and tries again. A
    /// single-writer store simply stores.
    fn store_vault_if(
        &self,
        project: &str,
        expected: Option<&[u8; 32]>,
        ciphertext: &[u8],
    ) -> Result<bool> {
        let _ = expected;
        self.store_vault(project, ciphertext).map(|()| true)
    }
    /// Makes sure the key `key` is stored for `project`, writing it back
    /// when its file went missing while the project was served; true when
    /// it was written. Called before every write is acknowledged, so no
    /// write is acknowledged that a restart could not decrypt.
    fn ensure_key(&self, project: &str, key: &ProjectKey) -> Result<bool> {
        let _ = (project, key);
        Ok(false)
    }
    /// The highest vault revision this host has served for `project`
    /// (0: none), remembered outside the vault so a restart cannot be fooled
    /// by an older vault put back.
    fn revision_floor(&self, project: &str) -> Result<u64> {
        let _ = project;
        Ok(0)
    }
    /// Gives `project` a new key: `ciphertext` is its vault sealed with
    /// `key`. Crash-safe — at every moment the key stored opens the vault
    /// stored — and the old key is destroyed (overwritten, then removed).
    fn replace_key(&self, project: &str, key: &ProjectKey, ciphertext: &[u8]) -> Result<()> {
        let _ = (project, key, ciphertext);
        Err(crate::error::Error::BadRequest(
            "this store cannot give a project a new key (fluxd dev: its key lives for the run only)".into(),
        ))
    }
    /// True when this store keeps revision records and `project`'s is
    /// missing (deleted from under fluxd): the rollback check has lost its
    /// memory, and the record is rebuilt from the newest vault seen.
    fn revision_record_missing(&self, project: &str) -> bool {
        let _ = project;
        false
    }
    /// Remembers that `project` has served `revision` (only ever raised).
    fn raise_revision_floor(&self, project: &str, revision: u64) -> Result<()> {
        let _ = (project, revision);
        Ok(())
    }
    /// Why the store cannot be reached right now, if it cannot (shown in
    /// the project's `last_error`).
    fn health(&self, _project: &str) -> Option<String> {
        None
    }
    /// True when `project`'s source may have changed since it was last
    /// loaded, so a request re-reads it before it is answered. Asked on
    /// every project request: a store whose watcher is its only feed
    /// answers false without a system call; the dev store compares a
    /// `stat` of its `.env` file ([`DevStore`]).
    fn maybe_changed(&self, project: &str) -> bool {
        let _ = project;
        false
    }
    /// True when a source that cannot be used leaves the last good
    /// snapshot serving (vaults: an outside copy gone wrong must not stop
    /// production). False when the source is the truth the developer is
    /// editing (the dev store's `.env` file): the project answers
    /// `unavailable` with the reason until the file is fixed, rather than
    /// values the file no longer holds.
    fn keeps_last_good(&self) -> bool {
        true
    }
    /// What the message for a secret that is not set tells the user to
    /// do: `fluxctl secrets set`, unless the store's source is a file the
    /// developer edits ([`DevStore`] names its `.env` file).
    fn not_found_hint(&self) -> NotFoundHint {
        NotFoundHint::Fluxctl
    }

    /// Writes what the store still owes its disk — fleet mode's local copy
    /// of what it last took from etcd, which is written after it is served —
    /// at shutdown, once no request runs: what a host served before it
    /// stopped is what it serves from its copy after a restart.
    fn finish(&self) {}

    /// True when the store holds so much that a starting daemon binds every
    /// project's socket first and loads the projects in the background, a
    /// client's connection loading its project ahead of its turn (fleet
    /// mode past `[store] load_in_background_above`); false: each project
    /// is served once loaded.
    fn serves_before_loading(&self) -> bool {
        false
    }
}

/// A store as start-up picked it: the store, its change feed and its host
/// administration.
#[derive(Debug)]
pub struct Opened {
    pub store: std::sync::Arc<dyn Store>,
    pub feed: ChangeFeed,
    pub hosts: std::sync::Arc<dyn Hosts>,
}

/// What changed in a store outside the daemon's own writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// These projects' files may have changed: re-read them, and serve
    /// those that appeared.
    Projects(BTreeSet<String>),
    /// Anything may have changed (events were lost, a folder was swapped):
    /// re-read every project.
    All,
    /// This host may no longer serve these projects (deleted elsewhere, or
    /// its key removed): stop serving them, touching nothing in the store.
    Gone(BTreeSet<String>),
}

/// The stream of [`Change`]s a store's watcher produces, and what keeps
/// the watcher alive: dropping the feed stops it.
pub struct ChangeFeed {
    rx: mpsc::UnboundedReceiver<Change>,
    _watcher: Option<Box<dyn std::any::Any + Send>>,
}

impl std::fmt::Debug for ChangeFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeFeed").finish_non_exhaustive()
    }
}

impl ChangeFeed {
    /// A feed reading `rx`, keeping `watcher` alive as long as it lives.
    pub fn new(
        rx: mpsc::UnboundedReceiver<Change>,
        watcher: Option<Box<dyn std::any::Any + Send>>,
    ) -> Self {
        Self {
            rx,
            _watcher: watcher,
        }
    }

    /// A feed that never has a change (a store nothing else writes).
    pub fn none() -> (Self, mpsc::UnboundedSender<Change>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self::new(rx, None), tx)
    }

    /// The next change; `None` once the watcher stopped.
    pub async fn next(&mut self) -> Option<Change> {
        self.rx.recv().await
    }
}

/// Fleet host administration (`fluxctl hosts`): the hosts that may serve
/// the projects. A trait, so the control socket's handlers never ask which
/// store they run on.
pub trait Hosts: Send + Sync + std::fmt::Debug + 'static {
    /// This host's recipient (none outside fleet mode) and the fleet's
    /// hosts.
    fn list(&self) -> Result<HostList>;
    /// The signed host list and fleet id this host holds.
    fn head(&self) -> Result<SignedHosts> {
        Err(not_a_fleet())
    }
    /// Publishes a host list signed by the operator key (or founds a
    /// fleet), then wraps keys for the added hosts and re-keys projects
    /// away from the removed ones.
    fn publish(&self, signed: SignedHosts) -> Result<HostsReport> {
        let _ = signed;
        Err(not_a_fleet())
    }
    /// Re-keys the projects still keyed from before the newest removal.
    fn resume(&self) -> Result<HostsReport> {
        Err(not_a_fleet())
    }
    /// This host's next host key (created when there is none): its join
    /// token.
    fn prepare_key(&self) -> Result<String> {
        Err(not_a_fleet())
    }
    /// The fleet as this host sees it (none outside fleet mode).
    fn fleet(&self) -> FleetInfo {
        FleetInfo::default()
    }
    /// Daemon-wide problems of the store, one sentence each.
    fn problems(&self) -> Vec<String> {
        Vec::new()
    }
    /// The fleet's gauges (none outside fleet mode).
    fn gauges(&self) -> Option<crate::metrics::FleetGauges> {
        None
    }
}

pub use flux_protocol::message::{FleetInfo, HostsReport, SignedHosts};

/// The [`Hosts`] of a store that is not a fleet.
#[derive(Debug, Default)]
pub struct NoFleet;

impl Hosts for NoFleet {
    fn list(&self) -> Result<HostList> {
        Ok(HostList {
            this_host: None,
            hosts: Vec::new(),
        })
    }
}

fn not_a_fleet() -> crate::error::Error {
    crate::error::Error::BadRequest(
        "this fluxd keeps its vaults in a local folder: hosts are managed in fleet mode only (fluxd --store etcd, see docs/FLEET.md)".into(),
    )
}
