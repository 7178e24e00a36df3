//! The vault a write starts from: the vault served, read back for the
//! earlier versions it keeps — or, for [`KEEP_WRITTEN`] after a write, the
//! copy that write kept in memory — else another writer's newer vault, else
//! the values served.

use super::disk::{DiskRead, Fingerprint, Keep, fingerprint, read_disk};
use super::{Project, Snapshot};
use crate::error::{Error, Result};
use crate::store::Store;
use flux_vault::keys::ProjectKey;
use flux_vault::vault::{self, Secrets};
use std::sync::Arc;
use tracing::warn;

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long the vault last written is kept whole in memory after the
/// write, for the next write to build on without reading it back.
pub(super) const KEEP_WRITTEN: std::time::Duration = if cfg!(test) {
    std::time::Duration::from_millis(300)
} else {
    std::time::Duration::from_secs(5)
};

/// The vault last written, earlier versions included.
#[derive(Debug)]
pub(super) struct Written {
    pub(super) fingerprint: Fingerprint,
    pub(super) secrets: Secrets,
    /// The generation that wrote it: a later write replaces it.
    pub(super) generation: u64,
}

/// The vault a write starts from.
pub(super) struct Base {
    pub(super) secrets: Secrets,
    pub(super) fingerprint: Option<Fingerprint>,
    /// Another writer's vault, not the one served: its changes are
    /// announced with the write's.
    pub(super) merged: bool,
    pub(super) new_key: Option<(Arc<ProjectKey>, Fingerprint)>,
    pub(super) floor: u64,
}

/// Reads back the vault served — `served_fp` is its fingerprint — for the
/// earlier versions it keeps (fluxd serves current values from memory and
/// leaves the rest in the vault); when it is the vault `written` holds,
/// that copy is used instead of opening it again. `None` when the store
/// holds another vault, or none, or one it cannot hand over; an error only
/// when the store cannot be reached (nothing may be written then).
pub(super) fn served_vault(
    store: &dyn Store,
    project: &str,
    key: &ProjectKey,
    served_fp: Option<Fingerprint>,
    written: Option<Written>,
) -> Result<Option<Secrets>> {
    let bytes = match store.load_vault(project) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(None),
        Err(e @ Error::Unavailable(_)) => return Err(e),
        Err(_) => return Ok(None),
    };
    if served_fp != Some(fingerprint(&bytes)) {
        return Ok(None);
    }
    // Still the vault this daemon wrote last: no need to open it again.
    if let Some(w) = written.filter(|w| Some(w.fingerprint) == served_fp) {
        return Ok(Some(w.secrets));
    }
    match vault::open(&bytes, project, key) {
        Ok(opened) => Ok(Some(opened.secrets)),
        Err(e) => {
            warn!(project, error = %e, "the vault served does not open again");
            Ok(None)
        }
    }
}

/// The base of a write: the vault served, read back with its versions (or
/// as this daemon just wrote it, `written`); or, when the store holds
/// another one, that vault if it is good and not older than `floor`
/// (another writer's, or one put in place and not loaded yet); or else the
/// values served, without earlier versions (they were in a vault that is
/// gone or cannot be used).
pub(super) fn write_base(
    store: &dyn Store,
    project: &str,
    key: &Arc<ProjectKey>,
    served: &Snapshot,
    served_fp: Option<Fingerprint>,
    floor: u64,
    written: Option<Written>,
) -> Result<Base> {
    if let Some(secrets) = served_vault(store, project, key, served_fp, written)? {
        return Ok(Base {
            secrets,
            fingerprint: served_fp,
            merged: false,
            new_key: None,
            floor,
        });
    }
    match read_disk(
        store,
        project,
        Some(key.clone()),
        (None, None),
        floor,
        Keep::Versions,
    ) {
        Ok(DiskRead::New {
            key: new_key,
            vault,
            opened,
        }) => Ok(Base {
            secrets: opened.secrets,
            fingerprint: Some(vault),
            merged: true,
            new_key,
            floor: floor.max(opened.revision),
        }),
        Ok(DiskRead::Same) => unreachable!("no fingerprint was known"),
        Err(e @ Error::Unavailable(_)) => Err(e),
        Err(e) => {
            if served_fp.is_some() {
                warn!(project, error = %e, "the vault in the store is not the one served: this write keeps the values served, without their earlier versions");
            }
            Ok(Base {
                secrets: served.secrets.clone(),
                fingerprint: served_fp,
                merged: false,
                new_key: None,
                floor,
            })
        }
    }
}

impl Project {
    /// Keeps the vault just written for [`KEEP_WRITTEN`], unless another
    /// write replaces it first.
    pub(super) fn keep_written(&self, written: Written) {
        let generation = written.generation;
        *lock(&self.written) = Some(written);
        let (slot, cancel) = (Arc::clone(&self.written), self.cancel.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(KEEP_WRITTEN) => {}
                () = cancel.cancelled() => {}
            }
            let mut slot = lock(&slot);
            if slot.as_ref().is_some_and(|w| w.generation == generation) {
                *slot = None;
            }
        });
    }
}
