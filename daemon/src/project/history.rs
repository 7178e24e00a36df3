//! A secret's versions: read back from the vault served, since fluxd keeps
//! only current values in memory. Never a value: each version is described
//! by its number, when and by whom it was set, and its keyed digest.

use super::Project;
use super::base::served_vault;
use crate::error::{Error, Result};
use flux_protocol::limits::validate_secret_name;
use flux_protocol::message::{SecretHistory, VersionInfo};
use std::sync::Arc;

impl Project {
    /// Every version kept of `name`, the current one first, then the
    /// earlier ones newest first.
    pub async fn history(&self, name: &str) -> Result<SecretHistory> {
        validate_secret_name(name)?;
        // Under the writer lock, so the vault in the store is the one
        // served unless something outside replaced it.
        let _writer = self.writer.lock().await;
        let current = Arc::clone(&*self.readable()?);
        if !current.secrets.contains_key(name) {
            return Err(self.not_found(name));
        }
        let served_fp = self.disk().vault;
        let (key, store, project, owned) = (
            self.key.load_full(),
            self.store.clone(),
            self.name.clone(),
            name.to_owned(),
        );
        let versions = tokio::task::spawn_blocking(move || -> Result<Option<Vec<VersionInfo>>> {
            let Some(secrets) = served_vault(&*store, &project, &key, served_fp, None)? else {
                return Ok(None);
            };
            let Some(versions) = secrets.versions_of(&owned) else {
                return Ok(None);
            };
            // The vault read back must hold the value served.
            if Some(&versions[0].value) != current.secrets.get(&owned).map(|e| &e.value) {
                return Ok(None);
            }
            Ok(Some(
                versions
                    .into_iter()
                    .map(|v| VersionInfo {
                        version: v.version,
                        set_at_ms: v.set_at_ms,
                        uid: v.set_by.as_ref().map(|b| b.uid),
                        exe: v.set_by.and_then(|b| b.exe),
                        digest: key.digest(v.value.expose()),
                    })
                    .collect::<Vec<_>>(),
            ))
        })
        .await
        .map_err(|e| Error::Internal(format!("history task failed: {e}")))??;
        let versions = versions.ok_or_else(|| Error::Vault {
            location: self.store.vault_location(&self.name),
            reason: format!(
                "the vault in the store is no longer the one served (replaced, removed or unreadable since it was loaded): the versions of {name} show again once a good vault is loaded, or after the next write (which keeps only the values served)"
            ),
        })?;
        Ok(SecretHistory {
            name: name.to_owned(),
            versions,
        })
    }
}
