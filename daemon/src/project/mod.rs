//! A served project: its key, the in-memory snapshot of its vault, the
//! write path ([`write`]), reloads from the store ([`disk`]), reads
//! ([`read`]), and change events.
//!
//! Reads never touch the disk and never wait on a writer: the snapshot is an
//! immutable [`Snapshot`] behind an [`ArcSwap`], replaced whole on every
//! change, so a reader sees the old vault or the new one, never a mix.
//!
//! Writes and reloads of one project are serialized by an async mutex.
//! A write builds the new secret map, seals and encrypts it, stores it
//! durably (on a blocking thread), records the file's fingerprint, and only
//! then swaps the snapshot and answers — so an acknowledged write is on
//! disk and every later read sees it.
//!
//! A reload ([`Project::reload`], driven by the watcher and SIGHUP) reads
//! the key and vault files, and skips them when their SHA-256 fingerprints
//! match what was last loaded or written — which is how fluxd's own writes
//! are not loaded a second time. A file that cannot be used (missing,
//! truncated, wrong key, bad seal, wrong schema) never replaces a good
//! snapshot: the last good one keeps serving and the reason is kept in
//! `last_error` for `fluxctl status`.
//!
//! A project whose vault could not be opened at start is served as
//! *unreadable*: reads and writes fail with the reason, and nothing
//! overwrites the file, until a good file is loaded.
//!
//! Every change is announced on a broadcast channel as an [`Event`] with the
//! names that changed (never values), for subscribed connections.

mod base;
mod capacity;
mod disk;
mod history;
mod read;
mod reseal;
mod write;

pub use write::Writer;

use crate::error::{Error, Result};
use crate::metrics::ProjectMetrics;
use crate::store::Store;
use arc_swap::ArcSwap;
use disk::{DiskRead, DiskState, Keep, fingerprint, read_disk};
use flux_protocol::message::{Event, EventKind, ProjectInfo};
use flux_vault::keys::ProjectKey;
use flux_vault::time::now_ms;
use flux_vault::vault::{self, Opened, Secrets};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Events buffered per subscriber before it is told it fell behind.
const EVENT_BUFFER: usize = 256;

/// One immutable view of a project's secrets.
#[derive(Debug)]
pub struct Snapshot {
    /// Raised by every swap.
    pub generation: u64,
    /// When this snapshot was loaded or written, ms since the epoch.
    pub loaded_at_ms: u64,
    /// The vault's revision (see [`flux_vault::vault`]).
    pub revision: u64,
    /// The current values only: the earlier versions stay in the vault
    /// (read back by writes and `History`), so history costs no memory.
    pub secrets: Secrets,
    /// Set when no good vault was ever loaded (or, for a store that does
    /// not keep the last good one, since its source broke): why it is
    /// unreadable.
    pub unreadable: Option<String>,
}

/// A project served by this daemon.
#[derive(Debug)]
pub struct Project {
    name: String,
    socket: PathBuf,
    key: ArcSwap<ProjectKey>,
    store: Arc<dyn Store>,
    snapshot: ArcSwap<Snapshot>,
    writer: tokio::sync::Mutex<()>,
    disk: Mutex<DiskState>,
    deleted: AtomicBool,
    events: broadcast::Sender<Event>,
    cancel: CancellationToken,
    /// The vault last written, earlier versions included, for a few
    /// seconds after the write ([`base::KEEP_WRITTEN`]): a burst of writes
    /// does not read the vault back each time.
    written: Arc<Mutex<Option<base::Written>>>,
    /// Requests, connections, load failures and apply latencies.
    metrics: Arc<ProjectMetrics>,
}

impl Project {
    /// Loads an existing project from the store. Fails only when the key
    /// cannot be used; a missing or broken vault is reported through
    /// `last_error` (a broken one makes the project unreadable).
    pub fn load(
        name: &str,
        socket: PathBuf,
        store: Arc<dyn Store>,
        cancel: CancellationToken,
    ) -> Result<Self> {
        let key_text = store.load_key(name)?;
        let key = ProjectKey::parse(&key_text).map_err(|reason| Error::Key {
            location: store.key_location(name),
            reason,
        })?;
        let record_missing = store.revision_record_missing(name);
        let mut disk = DiskState {
            key: Some(fingerprint(key_text.as_bytes())),
            floor: store.revision_floor(name)?,
            ..DiskState::default()
        };
        let key = Arc::new(key);
        let mut unreadable = None;
        let mut rebuilt = false;
        let read = read_disk(
            &*store,
            name,
            Some(key.clone()),
            (disk.key, None),
            disk.floor,
            Keep::Current,
        );
        let opened = match read {
            Ok(DiskRead::New { vault, opened, .. }) => {
                disk.vault = Some(vault);
                rebuilt = record_missing && opened.revision > 0;
                if rebuilt {
                    // Every project fluxd made has a record from its
                    // creation on: this one was deleted.
                    let why = format!(
                        "the revision record of project {name} (<state>/revisions/{name}) was missing, so an older vault put back could not be refused: rebuilt from the vault served now (revision {}); if that is not the newest, check `fluxctl secrets history` and restore the newest",
                        opened.revision
                    );
                    tracing::error!(project = name, revision = opened.revision, "{why}");
                    disk.last_error = Some(why);
                }
                if opened.revision > disk.floor {
                    store.raise_revision_floor(name, opened.revision)?;
                    disk.floor = opened.revision;
                }
                opened
            }
            Ok(DiskRead::Same) => unreachable!("no vault fingerprint was known"),
            Err(e) => {
                // A missing vault is an empty project; a broken one (or one
                // that cannot even be read: a special file, too large) is
                // kept untouched and served as unreadable.
                let reason = e.to_string();
                if !matches!(store.load_vault(name), Ok(None)) {
                    unreadable = Some(reason.clone());
                }
                disk.last_error = Some(reason);
                Opened::default()
            }
        };
        let project = Self::new(name, socket, key, store, opened, unreadable, disk, cancel);
        if rebuilt {
            project
                .metrics
                .records_rebuilt
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(project)
    }

    /// Creates a new project: a fresh key and an empty sealed vault, both
    /// durable before this returns.
    pub fn create(
        name: &str,
        socket: PathBuf,
        store: Arc<dyn Store>,
        cancel: CancellationToken,
    ) -> Result<Self> {
        let key = ProjectKey::generate();
        store.create_key(name, &key)?;
        let written = vault::seal(name, &Secrets::new(), 1, &key)
            .map_err(|e| Error::Vault {
                location: store.vault_location(name),
                reason: e.to_string(),
            })
            .and_then(|bytes| store.store_vault(name, &bytes).map(|()| bytes))
            .and_then(|bytes| store.raise_revision_floor(name, 1).map(|()| bytes));
        let bytes = match written {
            Ok(bytes) => bytes,
            Err(e) => {
                // Nothing of a project that was not created stays behind.
                let _ = store.delete_vault(name);
                let _ = store.delete_key(name);
                return Err(e);
            }
        };
        let key_fp = store
            .load_key(name)
            .map(|text| fingerprint(text.as_bytes()))
            .ok();
        let disk = DiskState {
            key: key_fp,
            vault: Some(fingerprint(&bytes)),
            last_error: None,
            floor: 1,
        };
        let opened = Opened {
            revision: 1,
            secrets: Secrets::new(),
        };
        Ok(Self::new(
            name,
            socket,
            Arc::new(key),
            store,
            opened,
            None,
            disk,
            cancel,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn new(
        name: &str,
        socket: PathBuf,
        key: Arc<ProjectKey>,
        store: Arc<dyn Store>,
        opened: Opened,
        unreadable: Option<String>,
        disk: DiskState,
        cancel: CancellationToken,
    ) -> Self {
        let metrics = ProjectMetrics::default();
        if unreadable.is_some() {
            metrics.load_failures.fetch_add(1, Ordering::Relaxed);
        }
        Self {
            name: name.to_owned(),
            socket,
            key: ArcSwap::new(key),
            store,
            snapshot: ArcSwap::from_pointee(Snapshot {
                generation: 1,
                loaded_at_ms: now_ms(),
                revision: opened.revision,
                // Earlier versions stay in the vault until asked for.
                secrets: opened.secrets.without_versions(),
                unreadable,
            }),
            writer: tokio::sync::Mutex::new(()),
            disk: Mutex::new(disk),
            deleted: AtomicBool::new(false),
            events: broadcast::channel(EVENT_BUFFER).0,
            cancel,
            written: Arc::default(),
            metrics: Arc::new(metrics),
        }
    }

    /// The project's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The error for `name`, which is not set here: its hint is the one
    /// this project's store gives.
    fn not_found(&self, name: &str) -> Error {
        Error::NotFound {
            project: self.name.clone(),
            name: name.to_owned(),
            hint: self.store.not_found_hint(),
        }
    }

    /// The project's socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Cancelled when the project is deleted or the daemon stops.
    pub fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// The project's counters.
    pub fn metrics(&self) -> &Arc<ProjectMetrics> {
        &self.metrics
    }

    /// The snapshot being served now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// A receiver of this project's change events, and the generation
    /// served at the moment of subscribing; `unknown_project` once the
    /// project is deleted (no event could ever come).
    pub fn subscribe(&self) -> Result<(broadcast::Receiver<Event>, u64)> {
        if self.is_deleted() {
            return Err(Error::UnknownProject(self.name.clone()));
        }
        let rx = self.events.subscribe();
        Ok((rx, self.snapshot.load().generation))
    }

    /// True once the project is deleted: its connections answer every
    /// request `unknown_project`.
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    fn disk(&self) -> std::sync::MutexGuard<'_, DiskState> {
        self.disk.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn announce(&self, generation: u64, kind: EventKind, names: Vec<String>) {
        // No receivers is not an error.
        let _ = self.events.send(Event {
            generation,
            kind,
            names,
        });
    }

    /// Deletes the project: marks it gone for every open connection, then
    /// removes the key first (crypto-shredding: the vault and all its
    /// backups become unreadable), then the vault. Waits for an in-flight
    /// write so no vault is written after the delete.
    pub async fn destroy(&self) -> Result<()> {
        let _writer = self.writer.lock().await;
        self.deleted.store(true, Ordering::Release);
        let store = self.store.clone();
        let name = self.name.clone();
        let result = tokio::task::spawn_blocking(move || -> Result<Result<()>> {
            store.delete_key(&name)?;
            Ok(store.delete_vault(&name))
        })
        .await
        .map_err(|e| Error::Internal(format!("project delete task failed: {e}")))?;
        // Nothing was deleted (say, etcd is unreachable): keep serving.
        let result = result.inspect_err(|_| self.deleted.store(false, Ordering::Release))?;
        let generation = self.snapshot.load().generation + 1;
        self.announce(generation, EventKind::ProjectDeleted, Vec::new());
        self.cancel.cancel();
        result
    }

    /// Stops serving the project without touching the store (it was
    /// deleted elsewhere, or this host may no longer serve it).
    pub async fn forget(&self) {
        let _writer = self.writer.lock().await;
        self.deleted.store(true, Ordering::Release);
        let generation = self.snapshot.load().generation + 1;
        self.announce(generation, EventKind::ProjectDeleted, Vec::new());
        self.cancel.cancel();
    }

    /// How the control socket describes this project.
    pub fn info(&self) -> ProjectInfo {
        let snap = self.snapshot.load();
        ProjectInfo {
            name: self.name.clone(),
            socket: self.socket.display().to_string(),
            secrets: snap.secrets.len() as u64,
            generation: snap.generation,
            loaded_at_ms: snap.loaded_at_ms,
            last_error: self
                .store
                .health(&self.name)
                .or_else(|| self.disk().last_error.clone()),
        }
    }
}
