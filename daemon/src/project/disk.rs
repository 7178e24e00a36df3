//! Reading a project's key and vault from its store: at load, on a
//! change from the store's feed, and on SIGHUP ([`Project::reload`]).
//!
//! A read skips decryption when the SHA-256 fingerprints of both files
//! match what was last loaded or written — which is how fluxd's own writes
//! are not loaded a second time. A file that cannot be used (missing,
//! truncated, wrong key, bad seal, wrong schema, older than the one served)
//! never replaces a good snapshot: the last good one keeps serving and the
//! reason is kept in `last_error` for `fluxctl status` — except for a store
//! whose source is the truth being edited (`fluxd dev`'s `.env` file,
//! [`Store::keeps_last_good`]), where the project answers `unavailable`
//! with the reason until the file is fixed. [`Project::refresh`] re-reads a
//! source the store says may have changed before a request is answered.

use super::{Project, Snapshot};
use crate::error::{Error, Result};
use crate::store::Store;
use flux_protocol::message::EventKind;
use flux_vault::keys::ProjectKey;
use flux_vault::time::now_ms;
use flux_vault::vault::{self, Opened, Secrets};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tracing::{error, info};

/// Records `revision` as the project's floor once its vault is served —
/// written by fluxd, or swapped in by a reload. The vault already stands,
/// so a failure here (a disk that filled up in between) is logged, not
/// returned: the floor in memory still refuses an older vault until fluxd
/// restarts, and the next revision recorded restores the refusal across
/// restarts.
pub(super) fn record_floor(store: &dyn Store, project: &str, revision: u64) {
    if let Err(e) = store.raise_revision_floor(project, revision) {
        error!(project, revision, error = %e, "the vault is served but its revision cannot be recorded; an older vault is refused until fluxd restarts");
    }
}

/// SHA-256 of a file's bytes.
pub(crate) type Fingerprint = [u8; 32];

pub(super) fn fingerprint(bytes: &[u8]) -> Fingerprint {
    Sha256::digest(bytes).into()
}

/// What the project last saw on disk. Only changed under the writer lock.
#[derive(Debug, Default)]
pub(super) struct DiskState {
    pub(super) key: Option<Fingerprint>,
    pub(super) vault: Option<Fingerprint>,
    pub(super) last_error: Option<String>,
    /// The highest vault revision served: an older vault is a rollback.
    pub(super) floor: u64,
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

/// What [`read_disk`] keeps of a vault besides its current values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Keep {
    /// The versions too: a write builds on them.
    Versions,
    /// Current values only: what is served from memory.
    Current,
}

/// What [`read_disk`] found.
pub(super) enum DiskRead {
    Same,
    New {
        key: Option<(Arc<ProjectKey>, Fingerprint)>,
        vault: Fingerprint,
        opened: Opened,
    },
}

/// Reads and checks a project's key and vault, skipping decryption when
/// both fingerprints match `known`, and refusing a vault older than `floor`
/// (a rollback; 0 accepts any). Blocking; the error names a location and a
/// reason, never a value.
pub(super) fn read_disk(
    store: &dyn Store,
    name: &str,
    current_key: Option<Arc<ProjectKey>>,
    known: (Option<Fingerprint>, Option<Fingerprint>),
    floor: u64,
    keep: Keep,
) -> Result<DiskRead> {
    let key_text = store.load_key(name).map_err(|e| {
        if e.is_not_found() {
            Error::Key {
                location: store.key_location(name),
                reason: "the key file is missing; the next write puts it back from memory (a restart before then stops serving the project)".into(),
            }
        } else {
            e
        }
    })?;
    let key_fp = fingerprint(key_text.as_bytes());
    let (key, new_key) = match current_key {
        Some(key) if known.0 == Some(key_fp) => (key, None),
        _ => {
            let key = Arc::new(ProjectKey::parse(&key_text).map_err(|reason| Error::Key {
                location: store.key_location(name),
                reason,
            })?);
            (key.clone(), Some((key, key_fp)))
        }
    };
    let location = store.vault_location(name);
    let vault_error = |reason: String| Error::Vault {
        location: location.clone(),
        reason,
    };
    let bytes = store.load_vault(name)?.ok_or_else(|| {
        vault_error(
            "the file is missing: serving the last good snapshot (restore the file, or set a secret to write a new one)".into(),
        )
    })?;
    let vault_fp = fingerprint(&bytes);
    if new_key.is_none() && known.1 == Some(vault_fp) {
        return Ok(DiskRead::Same);
    }
    let opened = match keep {
        Keep::Versions => vault::open(&bytes, name, &key),
        Keep::Current => vault::open_current(&bytes, name, &key),
    }
    .map_err(|e| vault_error(e.to_string()))?;
    if opened.revision < floor {
        return Err(vault_error(format!(
            "revision {} is older than revision {floor}, the newest this fluxd has served: refused as a rollback (an older copy put back). To serve it on purpose — a backup being restored — run `fluxctl vault restore -p {name}`",
            opened.revision
        )));
    }
    Ok(DiskRead::New {
        key: new_key,
        vault: vault_fp,
        opened,
    })
}

/// Names whose value differs between two secret maps, or that are in only
/// one of them; sorted. (A new set time alone is no change to a reader.)
pub(super) fn changed_names(old: &Secrets, new: &Secrets) -> Vec<String> {
    let mut names: Vec<String> = old
        .iter()
        .filter(|(n, e)| new.get(*n).map(|x| &x.value) != Some(&e.value))
        .map(|(n, _)| n.clone())
        .chain(new.keys().filter(|n| !old.contains_key(*n)).cloned())
        .collect();
    names.sort();
    names
}

impl Project {
    /// Re-reads the project's source first when the store says it may have
    /// changed since it was last read (`fluxd dev`'s `.env` file, see
    /// [`Store::maybe_changed`]), so the request that follows sees a save
    /// that returned before it started. Other stores answer from their
    /// watcher alone, and this costs them nothing.
    pub async fn refresh(&self) {
        if self.may_have_changed() {
            self.reload(false).await;
        }
    }

    /// True when the source must be re-read before answering (see
    /// [`Project::refresh`]); never for a store with a watcher.
    pub fn may_have_changed(&self) -> bool {
        self.store.maybe_changed(&self.name)
    }

    /// Re-reads the key and vault files and swaps in the vault when it
    /// changed and is good (see the module docs). `force` re-opens the files
    /// even when their fingerprints match.
    pub async fn reload(&self, force: bool) -> Reload {
        let started = std::time::Instant::now();
        let _writer = self.writer.lock().await;
        if self.is_deleted() {
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
            read_disk(&*store, &name, Some(key), known, floor, Keep::Current)
        })
        .await
        .unwrap_or_else(|e| Err(Error::Internal(format!("reload task failed: {e}"))));
        let outcome = self.apply_read(read, started);
        // A refused rollback while the record is gone: the record is
        // rebuilt from the floor in memory, so a restart keeps refusing.
        if let Reload::Failed = outcome
            && self.store.revision_record_missing(&self.name)
        {
            let (store, name) = (self.store.clone(), self.name.clone());
            error!(project = %self.name, revision = floor, "the revision record was deleted: rebuilt from the newest revision served");
            self.metrics
                .records_rebuilt
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let _ = tokio::task::spawn_blocking(move || record_floor(&*store, &name, floor)).await;
        }
        // The newer revision is served first and recorded right after: the
        // floor in memory refuses an older vault from the swap on, and the
        // record (an fsynced file) keeps refusing it after a restart. Only
        // a crash in the millisecond between the two forgets it.
        if let Reload::Swapped = outcome {
            let revision = self.snapshot.load().revision;
            if revision > floor {
                let (store, name) = (self.store.clone(), self.name.clone());
                let recorded =
                    tokio::task::spawn_blocking(move || record_floor(&*store, &name, revision))
                        .await;
                if let Err(e) = recorded {
                    error!(project = %self.name, revision, error = %e, "the task recording the revision served failed; an older vault is refused until fluxd restarts");
                }
            }
        }
        outcome
    }

    /// Serves what a reload read, or keeps the last good snapshot and
    /// records why.
    fn apply_read(&self, read: Result<DiskRead>, started: std::time::Instant) -> Reload {
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
                    // Earlier versions stay in the vault until asked for.
                    secrets: opened.secrets.without_versions(),
                    unreadable: None,
                }));
                self.metrics.apply_reload.observe(started.elapsed());
                // A forced reload of an unchanged file needs no event.
                if !names.is_empty() {
                    self.announce(generation, EventKind::Reloaded, names);
                }
                Reload::Swapped
            }
            Err(e) if !self.store.keeps_last_good() => {
                // The source is the truth being edited (`fluxd dev`): what
                // it held before is no longer served.
                self.metrics.load_failures.fetch_add(1, Ordering::Relaxed);
                let reason = e.to_string();
                if disk.last_error.as_deref() != Some(reason.as_str()) {
                    error!(project = %self.name, error = %reason, "file not loaded; requests answer unavailable until it is fixed");
                }
                disk.last_error = Some(reason.clone());
                // The next good read is new, even when it is the file
                // served before.
                disk.vault = None;
                let current = self.snapshot.load_full();
                if current.unreadable.is_none() {
                    let names = changed_names(&current.secrets, &Secrets::new());
                    let generation = current.generation + 1;
                    self.snapshot.store(Arc::new(Snapshot {
                        generation,
                        loaded_at_ms: now_ms(),
                        revision: current.revision,
                        secrets: Secrets::new(),
                        unreadable: Some(reason),
                    }));
                    if !names.is_empty() {
                        self.announce(generation, EventKind::Reloaded, names);
                    }
                }
                Reload::Failed
            }
            Err(e) => {
                self.metrics.load_failures.fetch_add(1, Ordering::Relaxed);
                let reason = e.to_string();
                if disk.last_error.as_deref() != Some(reason.as_str()) {
                    error!(project = %self.name, error = %reason, "vault not loaded; the last good snapshot keeps serving");
                }
                disk.last_error = Some(reason);
                Reload::Failed
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flux_vault::vault::Entry;

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
