//! A served project: its key, the in-memory snapshot of its vault, and the
//! write path.
//!
//! Reads never touch the disk and never wait on a writer: the snapshot is an
//! immutable [`Snapshot`] behind an [`ArcSwap`], replaced whole on every
//! change, so a reader sees the old vault or the new one, never a mix.
//! Writes to one project are serialized by an async mutex; each one builds
//! the new secret map, seals and encrypts it, writes it durably (on a
//! blocking thread), and only then swaps the snapshot and answers — so an
//! acknowledged write is on disk, and every later read sees it.
//!
//! A project whose vault cannot be opened at start is served as
//! *unreadable*: reads and writes fail with the reason, and nothing
//! overwrites the file, which may still be recoverable.

use crate::error::{Error, Result};
use crate::keys::ProjectKey;
use crate::store::Store;
use crate::vault::{self, Entry, Secrets, now_ms};
use arc_swap::ArcSwap;
use flux_protocol::SecretValue;
use flux_protocol::limits::{validate_secret_name, validate_value_len};
use flux_protocol::message::{Deleted, NamedValue, ProjectInfo, SecretInfo, Stored};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// One immutable view of a project's secrets.
#[derive(Debug)]
pub struct Snapshot {
    /// Raised by every swap.
    pub generation: u64,
    /// When this snapshot was loaded or written, ms since the epoch.
    pub loaded_at_ms: u64,
    pub secrets: Secrets,
    /// Set when no good vault was ever loaded: why it is unreadable.
    pub unreadable: Option<String>,
}

/// A project served by this daemon.
#[derive(Debug)]
pub struct Project {
    name: String,
    socket: PathBuf,
    key: Arc<ProjectKey>,
    store: Arc<dyn Store>,
    snapshot: ArcSwap<Snapshot>,
    writer: tokio::sync::Mutex<()>,
    deleted: AtomicBool,
    last_error: Mutex<Option<String>>,
    cancel: CancellationToken,
}

impl Project {
    /// Loads an existing project from the store. A missing or broken vault
    /// does not fail the load: it is reported through `last_error`.
    pub fn load(
        name: &str,
        socket: PathBuf,
        store: Arc<dyn Store>,
        cancel: CancellationToken,
    ) -> Result<Self> {
        let key = Arc::new(store.load_key(name)?);
        let location = store.vault_location(name);
        let (secrets, unreadable, last_error) = match store.load_vault(name) {
            Ok(Some(bytes)) => match vault::open(&bytes, name, &key) {
                Ok(secrets) => (secrets, None, None),
                Err(e) => {
                    let reason = format!("vault {}: {e}", location.display());
                    (Secrets::new(), Some(reason.clone()), Some(reason))
                }
            },
            Ok(None) => (
                Secrets::new(),
                None,
                Some(format!(
                    "vault {} is missing: serving no secrets",
                    location.display()
                )),
            ),
            Err(e) => {
                let reason = e.to_string();
                (Secrets::new(), Some(reason.clone()), Some(reason))
            }
        };
        Ok(Self::new(
            name, socket, key, store, secrets, unreadable, last_error, cancel,
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
        let sealed = vault::seal(name, &Secrets::new(), &key).map_err(|e| Error::Vault {
            path: store.vault_location(name),
            reason: e.0,
        });
        if let Err(e) = sealed.and_then(|bytes| store.store_vault(name, &bytes)) {
            let _ = store.delete_key(name);
            return Err(e);
        }
        Ok(Self::new(
            name,
            socket,
            Arc::new(key),
            store,
            Secrets::new(),
            None,
            None,
            cancel,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn new(
        name: &str,
        socket: PathBuf,
        key: Arc<ProjectKey>,
        store: Arc<dyn Store>,
        secrets: Secrets,
        unreadable: Option<String>,
        last_error: Option<String>,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            name: name.to_owned(),
            socket,
            key,
            store,
            snapshot: ArcSwap::from_pointee(Snapshot {
                generation: 1,
                loaded_at_ms: now_ms(),
                secrets,
                unreadable,
            }),
            writer: tokio::sync::Mutex::new(()),
            deleted: AtomicBool::new(false),
            last_error: Mutex::new(last_error),
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

    /// A secret's value.
    pub fn get(&self, name: &str) -> Result<SecretValue> {
        validate_secret_name(name).map_err(|e| Error::InvalidName(e.to_string()))?;
        let snap = self.readable()?;
        snap.secrets
            .get(name)
            .map(|e| e.value.clone())
            .ok_or_else(|| Error::NotFound {
                project: self.name.clone(),
                name: name.to_owned(),
            })
    }

    /// Every secret with its value, sorted by name.
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

    /// Sets a secret; answers once the vault holding it is durable.
    pub async fn set(&self, name: &str, value: SecretValue) -> Result<Stored> {
        validate_secret_name(name).map_err(|e| Error::InvalidName(e.to_string()))?;
        validate_value_len(value.len())
            .map_err(|e| Error::TooLarge(format!("secret {name}: {e}")))?;
        let name = name.to_owned();
        let (created, generation) = self
            .write(move |secrets| {
                let entry = Entry {
                    value,
                    set_at_ms: now_ms(),
                };
                Ok(secrets.insert(name, entry).is_none())
            })
            .await?;
        Ok(Stored {
            created,
            generation,
        })
    }

    /// Deletes a secret; answers once the vault without it is durable.
    pub async fn delete(&self, name: &str) -> Result<Deleted> {
        validate_secret_name(name).map_err(|e| Error::InvalidName(e.to_string()))?;
        let (project, owned) = (self.name.clone(), name.to_owned());
        let ((), generation) = self
            .write(move |secrets| match secrets.remove(&owned) {
                Some(_) => Ok(()),
                None => Err(Error::NotFound {
                    project,
                    name: owned,
                }),
            })
            .await?;
        Ok(Deleted { generation })
    }

    /// The write path: under the project's writer lock, apply `change` to a
    /// copy of the current secrets, seal, encrypt and store the result, then
    /// swap it in. Returns `change`'s result and the new generation.
    async fn write<T: Send + 'static>(
        &self,
        change: impl FnOnce(&mut Secrets) -> Result<T> + Send + 'static,
    ) -> Result<(T, u64)> {
        let _writer = self.writer.lock().await;
        let current = Arc::clone(&*self.readable()?);
        let mut secrets = current.secrets.clone();
        let (key, store, project) = (self.key.clone(), self.store.clone(), self.name.clone());
        let (secrets, result) = tokio::task::spawn_blocking(move || {
            let result = change(&mut secrets).and_then(|out| {
                let bytes = vault::seal(&project, &secrets, &key).map_err(|e| Error::Vault {
                    path: store.vault_location(&project),
                    reason: e.0,
                })?;
                store.store_vault(&project, &bytes)?;
                Ok(out)
            });
            (secrets, result)
        })
        .await
        .map_err(|e| Error::Internal(format!("vault writer task failed: {e}")))?;
        let out = result?;
        let generation = current.generation + 1;
        self.snapshot.store(Arc::new(Snapshot {
            generation,
            loaded_at_ms: now_ms(),
            secrets,
            unreadable: None,
        }));
        Ok((out, generation))
    }

    /// Deletes the project: marks it gone for every open connection, then
    /// removes the key first (crypto-shredding: the vault and all its
    /// backups become unreadable), then the vault. Waits for an in-flight
    /// write so no vault is written after the delete.
    pub async fn destroy(&self) -> Result<()> {
        let _writer = self.writer.lock().await;
        self.deleted.store(true, Ordering::Release);
        self.cancel.cancel();
        let store = self.store.clone();
        let name = self.name.clone();
        tokio::task::spawn_blocking(move || {
            store.delete_key(&name)?;
            store.delete_vault(&name)
        })
        .await
        .map_err(|e| Error::Internal(format!("project delete task failed: {e}")))?
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
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}
