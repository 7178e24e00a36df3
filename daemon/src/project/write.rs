//! Writes: every mutation — set, set many, delete, restore — goes through
//! one validator ([`validate_entry`]), one capacity check ([`Capacity`])
//! and one write path ([`Project::write`]).
//!
//! Writes and reloads of one project are serialized by an async mutex. A
//! write builds the new secret map, checks it, seals and encrypts it,
//! stores it durably (on a blocking thread) with the key that decrypts it,
//! records the file's fingerprint and revision, and only then swaps the
//! snapshot and answers — so an acknowledged write is on disk and every
//! later read sees it.

use super::disk::{DiskRead, changed_names, fingerprint, read_disk};
use super::{Project, Snapshot};
use crate::config::Limits;
use crate::error::{Error, Limit, Result, Unavailable};
use flux_protocol::SecretValue;
use flux_protocol::limits::{validate_secret_name, validate_value_len};
use flux_protocol::message::{Deleted, EventKind, NamedValue, Restored, Stored, StoredMany};
use flux_vault::vault::{self, Entry, Opened, Secrets, now_ms};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tracing::info;

/// Writes tried before giving up when other writers keep winning.
const WRITE_TRIES: usize = 50;

/// Checks a secret's name and value against the grammar and `limits`: the
/// one check every write of a value goes through.
pub fn validate_entry(name: &str, value: &SecretValue, limits: &Limits) -> Result<()> {
    validate_secret_name(name)?;
    let too_large = |limit_text: String| Error::TooLarge {
        name: name.to_owned(),
        len: value.len(),
        limit_text,
    };
    if validate_value_len(value.len()).is_err() {
        return Err(too_large(format!(
            "the limit is {} bytes (64 KiB)",
            flux_protocol::limits::MAX_VALUE_LEN
        )));
    }
    if value.len() > limits.max_value_bytes {
        return Err(too_large(format!(
            "this fluxd's limit is {} bytes ([limits] max_value_bytes)",
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
            return Err(Error::LimitReached(Limit::Secrets {
                project: project.to_owned(),
                would_hold: after.len(),
                limit: self.secrets,
            }));
        }
        let (was, now) = (project_bytes(before), project_bytes(after));
        if now > self.bytes && now > was {
            return Err(Error::LimitReached(Limit::ProjectBytes {
                project: project.to_owned(),
                would_hold: now,
                limit: self.bytes,
            }));
        }
        Ok(())
    }
}

impl Project {
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
        validate_secret_name(name)?;
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
                        location: store.vault_location(&project),
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
                    Err(e) => return Err(e),
                }
            }
            Err(Error::Unavailable(Unavailable::Contended { project }))
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
                    reason: e.0,
                }
            })?;
            let on_disk = store
                .load_vault(&name)?
                .map(|b| fingerprint(&b));
            if !store.store_vault_if(&name, on_disk.as_ref(), &bytes)? {
                return Err(Error::Unavailable(Unavailable::Contended { project: name }));
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
}
