//! Re-sealing the vault as stored, with the project's writer lock held:
//! [`Project::restore`] serves a backup put back on purpose (older than the
//! vault served) at a new revision; [`Project::rekey`] seals it with a new
//! key and destroys the old one.

use super::disk::{DiskRead, Keep, changed_names, fingerprint, read_disk, record_floor};
use super::{Project, Snapshot};
use crate::error::{Error, Result, Unavailable};
use flux_protocol::message::{EventKind, Restored};
use flux_vault::keys::ProjectKey;
use flux_vault::time::now_ms;
use flux_vault::vault::{self, Opened};
use std::sync::Arc;
use std::time::Instant;
use tracing::info;

/// What a re-seal starts from: the project's writer lock, held until the
/// re-seal is done; the snapshot served; and the revision the new seal must
/// pass (above every one served or recorded).
struct Reseal<'a> {
    _writer: tokio::sync::MutexGuard<'a, ()>,
    current: Arc<Snapshot>,
    floor: u64,
}

impl Project {
    /// Takes the writer lock and checks the project still exists: where
    /// [`Project::restore`] and [`Project::rekey`] begin.
    async fn begin_reseal(&self) -> Result<Reseal<'_>> {
        let writer = self.writer.lock().await;
        if self.is_deleted() {
            return Err(Error::UnknownProject(self.name.clone()));
        }
        let current = self.snapshot.load_full();
        let floor = self.disk().floor.max(current.revision);
        Ok(Reseal {
            _writer: writer,
            current,
            floor,
        })
    }

    /// Serves the vault now in the store although it is older than the one
    /// served — a backup put back on purpose — by sealing its secrets again
    /// at a revision above every one served, so the rollback check accepts
    /// it from then on (after a restart too). The vault must still open
    /// with the project's key and carry a valid seal.
    pub async fn restore(&self) -> Result<Restored> {
        let started = Instant::now();
        let Reseal {
            _writer,
            current,
            floor,
        } = self.begin_reseal().await?;
        let (store, name, key) = (self.store.clone(), self.name.clone(), self.key.load_full());
        let restored = tokio::task::spawn_blocking(move || {
            let (new_key, opened) =
                match read_disk(&*store, &name, Some(key.clone()), (None, None), 0, Keep::Versions) {
                    Ok(DiskRead::New { key, opened, .. }) => (key, opened),
                    Ok(DiskRead::Same) => unreachable!("no fingerprint was known"),
                    // The disk failing (an errno: EIO, EACCES, …) is the
                    // daemon's problem, not the backup's: it keeps its code.
                    Err(e @ Error::Io { .. }) if e.os_error() => return Err(e),
                    Err(e @ Error::Unavailable(_)) => return Err(e),
                    Err(e) => return Err(Error::BadRequest(e.to_string())),
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
                        location: store.vault_location(&name),
                    reason: e.to_string(),
                }
            })?;
            let on_disk = store
                .load_vault(&name)?
                .map(|b| fingerprint(&b));
            if !store.store_vault_if(&name, on_disk.as_ref(), &bytes)? {
                return Err(Error::Unavailable(Unavailable::Contended { project: name }));
            }
            record_floor(&*store, &name, revision);
            Ok((new_key, fingerprint(&bytes), Opened {
                revision,
                // Served from memory without the earlier versions.
                secrets: opened.secrets.without_versions(),
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
        self.metrics.apply_write.observe(started.elapsed());
        self.announce(generation, EventKind::Reloaded, names);
        Ok(Restored {
            revision,
            generation,
            secrets,
        })
    }
}

impl Project {
    /// Gives the project a new key: the vault as stored — current values
    /// and every kept version — re-sealed with it at a new revision, both
    /// durable before this returns, the old key destroyed by the store
    /// ([`Store::replace_key`]). Reads are served from the snapshot
    /// throughout: the values do not change, so neither does the
    /// generation. Digests change with the key (they are keyed by it).
    pub async fn rekey(&self) -> Result<flux_protocol::message::Rekeyed> {
        let started = Instant::now();
        let Reseal {
            _writer,
            current,
            floor,
        } = self.begin_reseal().await?;
        let (store, name, key) = (self.store.clone(), self.name.clone(), self.key.load_full());
        let done = tokio::task::spawn_blocking(move || {
            let opened = match read_disk(
                &*store,
                &name,
                Some(key),
                (None, None),
                floor,
                Keep::Versions,
            )? {
                DiskRead::New { opened, .. } => opened,
                DiskRead::Same => unreachable!("no fingerprint was known"),
            };
            let new = ProjectKey::generate();
            let revision = floor + 1;
            let bytes =
                vault::seal(&name, &opened.secrets, revision, &new).map_err(|e| Error::Vault {
                    location: store.vault_location(&name),
                    reason: e.to_string(),
                })?;
            store.replace_key(&name, &new, &bytes)?;
            record_floor(&*store, &name, revision);
            let key_fp = fingerprint(store.load_key(&name)?.as_bytes());
            Ok::<_, Error>((new, key_fp, fingerprint(&bytes), revision))
        })
        .await
        .map_err(|e| Error::Internal(format!("rekey task failed: {e}")))?;
        let (new, key_fp, vault_fp, revision) = done?;
        self.key.store(Arc::new(new));
        {
            let mut disk = self.disk();
            disk.key = Some(key_fp);
            disk.vault = Some(vault_fp);
            disk.floor = revision;
            disk.last_error = None;
        }
        // The same values, at the vault's new revision.
        self.snapshot.store(Arc::new(Snapshot {
            generation: current.generation,
            loaded_at_ms: now_ms(),
            revision,
            secrets: current.secrets.clone(),
            unreadable: None,
        }));
        self.metrics.apply_write.observe(started.elapsed());
        info!(project = %self.name, revision, "project re-keyed: its old key is destroyed");
        Ok(flux_protocol::message::Rekeyed {
            name: self.name.clone(),
            revision,
            generation: current.generation,
        })
    }
}
