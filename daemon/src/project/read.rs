//! Reads: served from the snapshot, never from the store, never waiting
//! on a writer.

use super::{Project, Snapshot};
use crate::error::{Error, Result};
use flux_protocol::limits::validate_secret_name;
use flux_protocol::message::{NamedValue, SecretInfo};
use std::sync::Arc;
use std::sync::atomic::Ordering;

impl Project {
    pub(super) fn readable(&self) -> Result<arc_swap::Guard<Arc<Snapshot>>> {
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
        validate_secret_name(name)?;
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
}
