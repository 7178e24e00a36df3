//! A served project: its key, the in-memory snapshot of its vault, the
//! write path, reloads from disk, and change events.
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

use crate::config::Limits;
use crate::error::{Error, Result};
use crate::keys::ProjectKey;
use crate::store::Store;
use crate::vault::{self, Entry, Opened, Secrets, now_ms};
use arc_swap::ArcSwap;
use flux_protocol::SecretValue;
use flux_protocol::limits::{validate_secret_name, validate_value_len};
use flux_protocol::message::{
    Deleted, Event, EventKind, NamedValue, ProjectInfo, Restored, SecretInfo, Stored, StoredMany,
};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// Writes tried before giving up when other writers keep winning.
const WRITE_TRIES: usize = 50;

/// Events buffered per subscriber before it is told it fell behind.
const EVENT_BUFFER: usize = 256;

/// SHA-256 of a file's bytes.
type Fingerprint = [u8; 32];

fn fingerprint(bytes: &[u8]) -> Fingerprint {
    Sha256::digest(bytes).into()
}

/// One immutable view of a project's secrets.
#[derive(Debug)]
pub struct Snapshot {
    /// Raised by every swap.
    pub generation: u64,
    /// When this snapshot was loaded or written, ms since the epoch.
    pub loaded_at_ms: u64,
    /// The vault's revision (see [`crate::vault`]).
    pub revision: u64,
    pub secrets: Secrets,
    /// Set when no good vault was ever loaded: why it is unreadable.
    pub unreadable: Option<String>,
}

/// What the project last saw on disk. Only changed under the writer lock.
#[derive(Debug, Default)]
struct DiskState {
    key: Option<Fingerprint>,
    vault: Option<Fingerprint>,
    last_error: Option<String>,
    /// The highest vault revision served: an older vault is a rollback.
    floor: u64,
}

/// The outcome of [`Project::reload`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// The files are what is already served.
    Unchanged,
    /// A new snapshot is served.
    Swapped,
    /// The files could not be used; the last good snapshot keeps serving.
    Failed,
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
}

/// What [`read_disk`] found.
enum DiskRead {
    Same,
    New {
        key: Option<(Arc<ProjectKey>, Fingerprint)>,
        vault: Fingerprint,
        opened: Opened,
    },
}

/// Reads and checks a project's key and vault, skipping decryption when
/// both fingerprints match `known`, and refusing a vault older than `floor`
/// (a rollback; 0 accepts any). Blocking; the error names a path and a
/// reason, never a value.
fn read_disk(
    store: &dyn Store,
    name: &str,
    current_key: Option<Arc<ProjectKey>>,
    known: (Option<Fingerprint>, Option<Fingerprint>),
    floor: u64,
) -> std::result::Result<DiskRead, String> {
    let key_text = store.load_key(name).map_err(|e| match &e {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => format!(
            "{e}: the key file is missing; the next write puts it back from memory (a restart before then stops serving the project)"
        ),
        _ => e.to_string(),
    })?;
    let key_fp = fingerprint(key_text.as_bytes());
    let (key, new_key) = match current_key {
        Some(key) if known.0 == Some(key_fp) => (key, None),
        _ => {
            let key = Arc::new(ProjectKey::parse(&key_text).map_err(|reason| {
                format!("key {}: {reason}", store.key_location(name).display())
            })?);
            (key.clone(), Some((key, key_fp)))
        }
    };
    let location = store.vault_location(name);
    let bytes = store.load_vault(name).map_err(|e| e.to_string())?.ok_or_else(|| {
        format!(
            "vault {} is missing: serving the last good snapshot (restore the file, or set a secret to write a new one)",
            location.display()
        )
    })?;
    let vault_fp = fingerprint(&bytes);
    if new_key.is_none() && known.1 == Some(vault_fp) {
        return Ok(DiskRead::Same);
    }
    let opened = vault::open(&bytes, name, &key)
        .map_err(|e| format!("vault {}: {e}", location.display()))?;
    if opened.revision < floor {
        return Err(format!(
            "vault {} has revision {}, older than revision {floor}, the newest this fluxd has served: refused as a rollback (an older copy put back). To serve it on purpose — a backup being restored — run `fluxctl vault restore -p {name}`",
            location.display(),
            opened.revision
        ));
    }
    Ok(DiskRead::New {
        key: new_key,
        vault: vault_fp,
        opened,
    })
}

/// Names whose value differs between two secret maps, or that are in only
/// one of them; sorted. (A new set time alone is no change to a reader.)
fn changed_names(old: &Secrets, new: &Secrets) -> Vec<String> {
    let mut names: Vec<String> = old
        .iter()
        .filter(|(n, e)| new.get(*n).map(|x| &x.value) != Some(&e.value))
        .map(|(n, _)| n.clone())
        .chain(new.keys().filter(|n| !old.contains_key(*n)).cloned())
        .collect();
    names.sort();
    names
}

/// Checks a secret's name and value against the grammar and `limits`: the
/// one check every write of a value goes through.
pub fn validate_entry(name: &str, value: &SecretValue, limits: &Limits) -> Result<()> {
    validate_secret_name(name).map_err(|e| Error::InvalidName(e.to_string()))?;
    validate_value_len(value.len()).map_err(|e| Error::TooLarge(format!("secret {name}: {e}")))?;
    if value.len() > limits.max_value_bytes {
        return Err(Error::TooLarge(format!(
            "secret {name}: value is {} bytes; this fluxd's limit is {} bytes ([limits] max_value_bytes)",
            value.len(),
            limits.max_value_bytes
        )));
    }
    if value.expose().contains('\0') {
        return Err(Error::BadRequest(format!(
            "secret {name}: the value contains a NUL byte, which no environment variable can hold (`fluxctl run`); store binary data encoded, e.g. as base64"
        )));
    }
    Ok(())
}

/// How much one project may hold: a write may not take it past either
/// bound, nor further past one it is already over (a lowered limit never
/// blocks a delete).
#[derive(Debug, Clone, Copy)]
struct Capacity {
    secrets: usize,
    bytes: usize,
}

/// Bytes of names and values, what `[limits] max_project_bytes` bounds.
pub fn project_bytes(secrets: &Secrets) -> usize {
    secrets.iter().map(|(n, e)| n.len() + e.value.len()).sum()
}

impl Capacity {
    fn of(limits: &Limits) -> Self {
        Self {
            secrets: limits.max_secrets_per_project,
            bytes: limits.max_project_bytes,
        }
    }

    fn check(&self, project: &str, before: &Secrets, after: &Secrets) -> Result<()> {
        if after.len() > self.secrets && after.len() > before.len() {
            return Err(Error::LimitReached(format!(
                "project {project} would hold {} secrets, over the limit of {} ([limits] max_secrets_per_project); nothing was changed",
                after.len(),
                self.secrets
            )));
        }
        let (was, now) = (project_bytes(before), project_bytes(after));
        if now > self.bytes && now > was {
            return Err(Error::LimitReached(format!(
                "project {project} would hold {now} bytes of names and values, over the limit of {} ([limits] max_project_bytes); nothing was changed: delete secrets or raise the limit",
                self.bytes
            )));
        }
        Ok(())
    }
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
            path: store.key_location(name),
            reason,
        })?;
        let mut disk = DiskState {
            key: Some(fingerprint(key_text.as_bytes())),
            floor: store.revision_floor(name)?,
            ..DiskState::default()
        };
        let key = Arc::new(key);
        let mut unreadable = None;
        let read = read_disk(
            &*store,
            name,
            Some(key.clone()),
            (disk.key, None),
            disk.floor,
        );
        let opened = match read {
            Ok(DiskRead::New { vault, opened, .. }) => {
                disk.vault = Some(vault);
                if opened.revision > disk.floor {
                    store.raise_revision_floor(name, opened.revision)?;
                    disk.floor = opened.revision;
                }
                opened
            }
            Ok(DiskRead::Same) => unreachable!("no vault fingerprint was known"),
            Err(reason) => {
                // A missing vault is an empty project; a broken one (or one
                // that cannot even be read: a special file, too large) is
                // kept untouched and served as unreadable.
                if !matches!(store.load_vault(name), Ok(None)) {
                    unreadable = Some(reason.clone());
                }
                disk.last_error = Some(reason);
                Opened::default()
            }
        };
        Ok(Self::new(
            name, socket, key, store, opened, unreadable, disk, cancel,
        ))
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
                path: store.vault_location(name),
                reason: e.0,
            })
            .and_then(|bytes| store.store_vault(name, &bytes).map(|()| bytes));
        let bytes = match written {
            Ok(bytes) => bytes,
            Err(e) => {
                let _ = store.delete_key(name);
                return Err(e);
            }
        };
        let key_fp = store
            .load_key(name)
            .map(|text| fingerprint(text.as_bytes()))
            .ok();
        store.raise_revision_floor(name, 1)?;
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
        Self {
            name: name.to_owned(),
            socket,
            key: ArcSwap::new(key),
            store,
            snapshot: ArcSwap::from_pointee(Snapshot {
                generation: 1,
                loaded_at_ms: now_ms(),
                revision: opened.revision,
                secrets: opened.secrets,
                unreadable,
            }),
            writer: tokio::sync::Mutex::new(()),
            disk: Mutex::new(disk),
            deleted: AtomicBool::new(false),
            events: broadcast::channel(EVENT_BUFFER).0,
            cancel,
        }
    }

    /// The project's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The project's socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Cancelled when the project is deleted or the daemon stops.
    pub fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// The snapshot being served now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// A receiver of this project's change events, and the generation
    /// served at the moment of subscribing.
    pub fn subscribe(&self) -> (broadcast::Receiver<Event>, u64) {
        let rx = self.events.subscribe();
        (rx, self.snapshot.load().generation)
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

    fn readable(&self) -> Result<arc_swap::Guard<Arc<Snapshot>>> {
        if self.deleted.load(Ordering::Acquire) {
            return Err(Error::UnknownProject(self.name.clone()));
        }
        let snap = self.snapshot.load();
        if let Some(reason) = &snap.unreadable {
            return Err(Error::Internal(format!(
                "project {} cannot be served: {reason}",
                self.name
            )));
        }
        Ok(snap)
    }

    /// Hands a secret's value to `f` without copying it out of the
    /// snapshot (the `get` path writes it straight into the reply).
    pub fn read_value<R>(&self, name: &str, f: impl FnOnce(&str) -> R) -> Result<R> {
        validate_secret_name(name).map_err(|e| Error::InvalidName(e.to_string()))?;
        let snap = self.readable()?;
        snap.secrets
            .get(name)
            .map(|e| f(e.value.expose()))
            .ok_or_else(|| Error::NotFound {
                project: self.name.clone(),
                name: name.to_owned(),
            })
    }

    /// Every secret with its value, sorted by name, from one snapshot.
    pub fn get_all(&self) -> Result<Vec<NamedValue>> {
        let snap = self.readable()?;
        Ok(snap
            .secrets
            .iter()
            .map(|(name, e)| NamedValue {
                name: name.clone(),
                value: e.value.clone(),
            })
            .collect())
    }

    /// Names and set times, sorted by name.
    pub fn list(&self) -> Result<Vec<SecretInfo>> {
        let snap = self.readable()?;
        Ok(snap
            .secrets
            .iter()
            .map(|(name, e)| SecretInfo {
                name: name.clone(),
                set_at_ms: e.set_at_ms,
            })
            .collect())
    }

    /// Sets a secret within `limits`; answers once the vault holding it is
    /// durable.
    pub async fn set(&self, name: &str, value: SecretValue, limits: &Limits) -> Result<Stored> {
        validate_entry(name, &value, limits)?;
        let owned = name.to_owned();
        let (created, generation) = self
            .write(
                EventKind::Set,
                vec![name.to_owned()],
                limits,
                move |secrets| {
                    let entry = Entry {
                        value: value.clone(),
                        set_at_ms: now_ms(),
                    };
                    Ok(secrets.insert(owned.clone(), entry).is_none())
                },
            )
            .await?;
        Ok(Stored {
            created,
            generation,
        })
    }

    /// Sets several secrets in one vault write: all of them, or none when
    /// any name, value or limit is refused.
    pub async fn set_many(&self, entries: Vec<NamedValue>, limits: &Limits) -> Result<StoredMany> {
        if entries.is_empty() {
            return Err(Error::BadRequest(
                "set_many needs at least one secret".into(),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for e in &entries {
            validate_entry(&e.name, &e.value, limits)?;
            if !seen.insert(e.name.clone()) {
                return Err(Error::BadRequest(format!(
                    "secret {} appears twice",
                    e.name
                )));
            }
        }
        let names: Vec<String> = seen.into_iter().collect();
        let ((created, updated), generation) = self
            .write(EventKind::Set, names, limits, move |secrets| {
                let now = now_ms();
                let (mut created, mut updated) = (Vec::new(), Vec::new());
                for e in &entries {
                    let entry = Entry {
                        value: e.value.clone(),
                        set_at_ms: now,
                    };
                    match secrets.insert(e.name.clone(), entry) {
                        None => created.push(e.name.clone()),
                        Some(_) => updated.push(e.name.clone()),
                    }
                }
                created.sort();
                updated.sort();
                Ok((created, updated))
            })
            .await?;
        Ok(StoredMany {
            created,
            updated,
            generation,
        })
    }

    /// Deletes a secret; answers once the vault without it is durable.
    pub async fn delete(&self, name: &str, limits: &Limits) -> Result<Deleted> {
        validate_secret_name(name).map_err(|e| Error::InvalidName(e.to_string()))?;
        let (project, owned) = (self.name.clone(), name.to_owned());
        let ((), generation) = self
            .write(
                EventKind::Deleted,
                vec![name.to_owned()],
                limits,
                move |secrets| match secrets.remove(&owned) {
                    Some(_) => Ok(()),
                    None => Err(Error::NotFound {
                        project: project.clone(),
                        name: owned.clone(),
                    }),
                },
            )
            .await?;
        Ok(Deleted { generation })
    }

    /// The write path: under the project's writer lock, apply `change` to a
    /// copy of the current secrets, check the result against `limits`
    /// ([`check_capacity`]), seal, encrypt and store it, then swap it in and
    /// announce `kind` for `names`. Returns `change`'s result and the new
    /// generation.
    ///
    /// The store compares the vault it replaces with the one the change was
    /// applied to ([`Store::store_vault_if`]); when another host wrote
    /// first (fleet mode), the newer vault (and key) is read and the change
    /// applied again.
    async fn write<T: Send + 'static>(
        &self,
        kind: EventKind,
        names: Vec<String>,
        limits: &Limits,
        mut change: impl FnMut(&mut Secrets) -> Result<T> + Send + 'static,
    ) -> Result<(T, u64)> {
        let capacity = Capacity::of(limits);
        let _writer = self.writer.lock().await;
        let current = Arc::clone(&*self.readable()?);
        let (base_fp, floor) = {
            let disk = self.disk();
            (disk.vault, disk.floor.max(current.revision))
        };
        let base = current.secrets.clone();
        let (key, store, project) = (self.key.load_full(), self.store.clone(), self.name.clone());
        let written = tokio::task::spawn_blocking(move || {
            let (mut base, mut base_fp, mut key, mut new_key) = (base, base_fp, key, None);
            let (mut merged, mut floor) = (false, floor);
            for _ in 0..WRITE_TRIES {
                let mut secrets = base.clone();
                let out = change(&mut secrets)?;
                capacity.check(&project, &base, &secrets)?;
                store.ensure_key(&project, &key)?;
                let revision = floor + 1;
                let bytes =
                    vault::seal(&project, &secrets, revision, &key).map_err(|e| Error::Vault {
                        path: store.vault_location(&project),
                        reason: e.0,
                    })?;
                if store.store_vault_if(&project, base_fp.as_ref(), &bytes)? {
                    store.raise_revision_floor(&project, revision)?;
                    let opened = Opened { revision, secrets };
                    return Ok((out, fingerprint(&bytes), opened, new_key, merged));
                }
                match read_disk(&*store, &project, Some(key.clone()), (None, None), floor) {
                    Ok(DiskRead::New {
                        key: k,
                        vault,
                        opened,
                    }) => {
                        if let Some((k, fp)) = k {
                            key = k.clone();
                            new_key = Some((k, fp));
                        }
                        floor = floor.max(opened.revision);
                        (base, base_fp, merged) = (opened.secrets, Some(vault), true);
                    }
                    Ok(DiskRead::Same) => {}
                    Err(reason) => return Err(Error::Internal(reason)),
                }
            }
            Err(Error::Unavailable(format!(
                "project {project} is being written by other hosts; try again"
            )))
        })
        .await
        .map_err(|e| Error::Internal(format!("vault writer task failed: {e}")))?;
        let (out, vault_fp, opened, new_key, merged) = written?;
        // Built on another writer's vault: its changes are announced too.
        let names = if merged {
            let mut all: std::collections::BTreeSet<String> = names.into_iter().collect();
            all.extend(changed_names(&current.secrets, &opened.secrets));
            all.into_iter().collect()
        } else {
            names
        };
        {
            let mut disk = self.disk();
            disk.vault = Some(vault_fp);
            disk.floor = opened.revision;
            disk.last_error = None;
            if let Some((key, key_fp)) = new_key {
                self.key.store(key);
                disk.key = Some(key_fp);
            }
        }
        let generation = current.generation + 1;
        self.snapshot.store(Arc::new(Snapshot {
            generation,
            loaded_at_ms: now_ms(),
            revision: opened.revision,
            secrets: opened.secrets,
            unreadable: None,
        }));
        self.announce(generation, kind, names);
        Ok((out, generation))
    }

    /// Re-reads the key and vault files and swaps in the vault when it
    /// changed and is good (see the module docs). `force` re-opens the files
    /// even when their fingerprints match.
    pub async fn reload(&self, force: bool) -> Reload {
        let _writer = self.writer.lock().await;
        if self.deleted.load(Ordering::Acquire) {
            return Reload::Unchanged;
        }
        let (known, floor) = {
            let disk = self.disk();
            let known = if force {
                (None, None)
            } else {
                (disk.key, disk.vault)
            };
            (known, disk.floor.max(self.snapshot.load().revision))
        };
        let (store, name, key) = (self.store.clone(), self.name.clone(), self.key.load_full());
        let read = tokio::task::spawn_blocking(move || {
            let read = read_disk(&*store, &name, Some(key), known, floor)?;
            if let DiskRead::New { opened, .. } = &read
                && opened.revision > floor
            {
                store
                    .raise_revision_floor(&name, opened.revision)
                    .map_err(|e| e.to_string())?;
            }
            Ok(read)
        })
        .await
        .unwrap_or_else(|e| Err(format!("reload task failed: {e}")));
        let mut disk = self.disk();
        match read {
            Ok(DiskRead::Same) => {
                if let Some(e) = disk.last_error.take() {
                    info!(project = %self.name, cleared = %e, "vault is back to the served version");
                }
                Reload::Unchanged
            }
            Ok(DiskRead::New { key, vault, opened }) => {
                if let Some((key, key_fp)) = key {
                    self.key.store(key);
                    disk.key = Some(key_fp);
                }
                disk.vault = Some(vault);
                disk.floor = disk.floor.max(opened.revision);
                disk.last_error = None;
                let current = self.snapshot.load_full();
                let names = changed_names(&current.secrets, &opened.secrets);
                let generation = current.generation + 1;
                info!(
                    project = %self.name,
                    generation,
                    changed = names.len(),
                    "vault reloaded"
                );
                self.snapshot.store(Arc::new(Snapshot {
                    generation,
                    loaded_at_ms: now_ms(),
                    revision: opened.revision,
                    secrets: opened.secrets,
                    unreadable: None,
                }));
                // A forced reload of an unchanged file needs no event.
                if !names.is_empty() {
                    self.announce(generation, EventKind::Reloaded, names);
                }
                Reload::Swapped
            }
            Err(reason) => {
                if disk.last_error.as_deref() != Some(reason.as_str()) {
                    error!(project = %self.name, error = %reason, "vault not loaded; the last good snapshot keeps serving");
                }
                disk.last_error = Some(reason);
                Reload::Failed
            }
        }
    }

    /// Serves the vault now in the store although it is older than the one
    /// served — a backup put back on purpose — by sealing its secrets again
    /// at a revision above every one served, so the rollback check accepts
    /// it from then on (after a restart too). The vault must still open
    /// with the project's key and carry a valid seal.
    pub async fn restore(&self) -> Result<Restored> {
        let _writer = self.writer.lock().await;
        if self.deleted.load(Ordering::Acquire) {
            return Err(Error::UnknownProject(self.name.clone()));
        }
        let current = self.snapshot.load_full();
        let floor = self.disk().floor.max(current.revision);
        let (store, name, key) = (self.store.clone(), self.name.clone(), self.key.load_full());
        let restored = tokio::task::spawn_blocking(move || {
            let (new_key, opened) =
                match read_disk(&*store, &name, Some(key.clone()), (None, None), 0) {
                    Ok(DiskRead::New { key, opened, .. }) => (key, opened),
                    Ok(DiskRead::Same) => unreachable!("no fingerprint was known"),
                    Err(reason) => return Err(Error::BadRequest(reason)),
                };
            if opened.revision >= floor {
                return Err(Error::BadRequest(format!(
                    "the vault of project {name} (revision {}) is not older than the one served (revision {floor}): nothing to restore",
                    opened.revision
                )));
            }
            let key = new_key.as_ref().map_or(key, |(k, _)| k.clone());
            let revision = floor + 1;
            let bytes = vault::seal(&name, &opened.secrets, revision, &key).map_err(|e| {
                Error::Vault {
                    path: store.vault_location(&name),
                    reason: e.0,
                }
            })?;
            let on_disk = store
                .load_vault(&name)?
                .map(|b| fingerprint(&b));
            if !store.store_vault_if(&name, on_disk.as_ref(), &bytes)? {
                return Err(Error::Unavailable(format!(
                    "the vault of project {name} changed while it was being restored; nothing was changed: try again"
                )));
            }
            store.raise_revision_floor(&name, revision)?;
            Ok((new_key, fingerprint(&bytes), Opened {
                revision,
                secrets: opened.secrets,
            }))
        })
        .await
        .map_err(|e| Error::Internal(format!("vault restore task failed: {e}")))?;
        let (new_key, vault_fp, opened) = restored?;
        {
            let mut disk = self.disk();
            if let Some((key, key_fp)) = new_key {
                self.key.store(key);
                disk.key = Some(key_fp);
            }
            disk.vault = Some(vault_fp);
            disk.floor = opened.revision;
            disk.last_error = None;
        }
        let names = changed_names(&current.secrets, &opened.secrets);
        let generation = current.generation + 1;
        let (revision, secrets) = (opened.revision, opened.secrets.len() as u64);
        info!(project = %self.name, revision, "vault restored from the store on request");
        self.snapshot.store(Arc::new(Snapshot {
            generation,
            loaded_at_ms: now_ms(),
            revision,
            secrets: opened.secrets,
            unreadable: None,
        }));
        self.announce(generation, EventKind::Reloaded, names);
        Ok(Restored {
            revision,
            generation,
            secrets,
        })
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
        let result = tokio::task::spawn_blocking(move || {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(v: &str, at: u64) -> Entry {
        Entry {
            value: v.into(),
            set_at_ms: at,
        }
    }

    #[test]
    fn changed_names_covers_added_removed_and_changed() {
        let old: Secrets = [
            ("A", entry("1", 1)),
            ("B", entry("2", 1)),
            ("C", entry("3", 1)),
        ]
        .into_iter()
        .map(|(n, e)| (n.to_owned(), e))
        .collect();
        let new: Secrets = [
            ("A", entry("1", 1)),
            ("B", entry("9", 2)),
            ("D", entry("4", 1)),
        ]
        .into_iter()
        .map(|(n, e)| (n.to_owned(), e))
        .collect();
        assert_eq!(changed_names(&old, &new), ["B", "C", "D"]);
        assert!(changed_names(&old, &old).is_empty());
    }
}
