//! Reads: served from the snapshot, never from the store, never waiting
//! on a writer.

use super::{Project, Snapshot};
use crate::error::{Error, Result};
use flux_protocol::limits::validate_secret_name;
use flux_protocol::message::{DiffState, Difference, NamedValue, SecretDigest, SecretInfo};
use std::collections::BTreeMap;
use std::sync::Arc;

impl Project {
    pub(super) fn readable(&self) -> Result<arc_swap::Guard<Arc<Snapshot>>> {
        if self.is_deleted() {
            return Err(Error::UnknownProject(self.name.clone()));
        }
        let snap = self.snapshot.load();
        if let Some(reason) = &snap.unreadable {
            let (project, reason) = (self.name.clone(), reason.clone());
            return Err(if self.store.keeps_last_good() {
                Error::Unreadable { project, reason }
            } else {
                Error::EnvFile { project, reason }
            });
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
            .ok_or_else(|| self.not_found(name))
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

    /// Names, set times and keyed value digests, sorted by name.
    pub fn list_digests(&self) -> Result<Vec<SecretDigest>> {
        let snap = self.readable()?;
        let key = self.key.load();
        Ok(snap
            .secrets
            .iter()
            .map(|(name, e)| SecretDigest {
                name: name.clone(),
                set_at_ms: e.set_at_ms,
                digest: key.digest(e.value.expose()),
            })
            .collect())
    }

    /// How each name in `given` and in the project compares, sorted by
    /// name; from one snapshot. Says nothing of a value but whether it
    /// matches.
    pub fn diff(&self, given: &[NamedValue]) -> Result<Vec<Difference>> {
        let mut by_name = BTreeMap::new();
        for e in given {
            validate_secret_name(&e.name)?;
            if by_name.insert(e.name.as_str(), e.value.expose()).is_some() {
                return Err(Error::BadRequest(format!(
                    "secret {} appears twice",
                    e.name
                )));
            }
        }
        let snap = self.readable()?;
        let mut out: Vec<Difference> = by_name
            .iter()
            .map(|(name, value)| Difference {
                name: (*name).to_owned(),
                state: match snap.secrets.get(*name) {
                    None => DiffState::OnlyInRequest,
                    Some(e) if same_value(e.value.expose(), value) => DiffState::Same,
                    Some(_) => DiffState::Changed,
                },
            })
            .collect();
        out.extend(
            snap.secrets
                .keys()
                .filter(|n| !by_name.contains_key(n.as_str()))
                .map(|name| Difference {
                    name: name.clone(),
                    state: DiffState::OnlyInProject,
                }),
        );
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// Compares two values in time that depends on their length only.
fn same_value(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DevStore, LocalStore, Store};
    use flux_vault::dotenv::Options;
    use std::sync::Arc;
    use tokio_util::sync::CancellationToken;

    #[tokio::test]
    async fn a_missing_secret_s_hint_comes_from_the_project_s_own_store() {
        let dir = tempfile::tempdir().unwrap();
        let env = dir.path().join("dev.env");
        std::fs::write(&env, "A=1\n").unwrap();
        let store: Arc<dyn Store> = Arc::new(DevStore::new("app", &env, Options::default()));
        let dev = Project::load(
            "app",
            dir.path().join("dev.sock"),
            store,
            CancellationToken::new(),
        )
        .unwrap();
        assert!(
            dev.read_value("A", |v| v == "1").unwrap(),
            "the file is served"
        );
        let err = dev.read_value("MISSING", |_| ()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "secret MISSING is not set in {f} (fluxd dev, project app): add it to {f} as MISSING=…; edits are live at once",
                f = env.display()
            )
        );

        // A production project in the same process keeps `fluxctl`'s hint:
        // the dev store's hint is its own, not the process's.
        let state = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(LocalStore::open(state.path()).unwrap());
        let prod = Project::create(
            "app",
            state.path().join("app.sock"),
            store,
            CancellationToken::new(),
        )
        .unwrap();
        let err = prod.read_value("MISSING", |_| ()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "secret MISSING is not set in project app; set it with `fluxctl secrets set MISSING --project app`"
        );
    }
}
