//! [`LocalStore`]: the state folder — `<state>/keys/<project>.key` and
//! `<state>/vaults/<project>.age` (mode 0600), written with
//! [`flux_vault::files::write_atomic`], and `<state>/revisions/<project>`,
//! the highest vault revision served. The names are
//! [`flux_vault::layout::StateDir`]'s; this module owns what is done with
//! the files.
//!
//! With a host key (systemd's `fluxd-host-key` credential, see
//! `docs/DEPLOY.md`), new key files are themselves age files encrypted to
//! the host key, so a key file copied off the host is useless. Key files
//! are read either way: plain ones (written before the host key was
//! configured) keep working.
//!
//! Its change feed is the folder watcher ([`watch`](super::watch)) on `keys/` and
//! `vaults/`.

use super::{ChangeFeed, Store};
use crate::error::{ConfigError, Error, Location, Result};
use crate::folders::check_private;
use flux_vault::files::{self, ensure_private_dir, write_atomic};
use flux_vault::keys::ProjectKey;
use flux_vault::layout::{MAX_KEY_FILE, MAX_VAULT_FILE, StateDir};
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// A folder on the local disk: `keys/` and `vaults/` under the state dir.
#[derive(Debug, Clone)]
pub struct LocalStore {
    state: StateDir,
    keys: PathBuf,
    vaults: PathBuf,
    revisions: PathBuf,
    host: Option<std::sync::Arc<ProjectKey>>,
}

impl LocalStore {
    /// Opens (creating with mode 0700 where missing) the store under
    /// `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Self> {
        let state = StateDir::new(state_dir);
        let store = Self {
            keys: state.keys_dir(),
            vaults: state.vaults_dir(),
            revisions: state.revisions_dir(),
            state,
            host: None,
        };
        ensure_private_dir(&store.keys)?;
        ensure_private_dir(&store.vaults)?;
        ensure_private_dir(&store.revisions)?;
        Ok(store)
    }

    /// `keys/<project>.key.next`: a new key being put in place.
    fn next_key_path(&self, project: &str) -> PathBuf {
        self.state.next_key(project)
    }

    /// `keys/.<project>.key.old`: the replaced key, until it is shredded.
    fn old_key_path(&self, project: &str) -> PathBuf {
        self.state.old_key(project)
    }

    /// A key file's bytes for `key`: wrapped with the host key when there
    /// is one.
    fn key_contents(&self, path: &Path, key: &ProjectKey) -> Result<Zeroizing<Vec<u8>>> {
        let created = flux_vault::time::created_stamp();
        let plain = key.to_file_contents(&created);
        Ok(match &self.host {
            Some(host) => Zeroizing::new(
                flux_vault::vault::encrypt(plain.as_bytes(), host).map_err(|e| Error::Key {
                    location: Location::File(path.to_path_buf()),
                    reason: format!("cannot wrap with the host key: {e}"),
                })?,
            ),
            None => Zeroizing::new(plain.as_bytes().to_vec()),
        })
    }

    /// Reads and unwraps the key file at `path`: the text `age-keygen`
    /// writes.
    fn key_text_at(&self, path: &Path) -> Result<Zeroizing<String>> {
        let bytes = read_key_file(path)?;
        let plain = if is_wrapped(&bytes) {
            let host = self.host.as_ref().ok_or_else(|| Error::Key {
                location: Location::File(path.to_path_buf()),
                reason: "the key file is wrapped with a host key, but fluxd was started without the fluxd-host-key credential".into(),
            })?;
            flux_vault::vault::decrypt(&bytes, host).map_err(|e| Error::Key {
                location: Location::File(path.to_path_buf()),
                reason: format!("cannot unwrap with the host key: {e}"),
            })?
        } else {
            bytes
        };
        let text = std::str::from_utf8(&plain).map_err(|_| Error::Key {
            location: Location::File(path.to_path_buf()),
            reason: "not a text key file".into(),
        })?;
        Ok(Zeroizing::new(text.to_owned()))
    }

    /// The key in the key file at `path`.
    fn key_at(&self, path: &Path) -> Result<ProjectKey> {
        ProjectKey::parse(&self.key_text_at(path)?).map_err(|reason| Error::Key {
            location: Location::File(path.to_path_buf()),
            reason,
        })
    }

    /// Finishes key replacements a crash interrupted (call at start-up,
    /// before any project loads): a new key that opens the vault stored is
    /// put in place; one that does not (the vault was never written with
    /// it) is destroyed; a replaced key left behind is destroyed. Returns
    /// the projects whose new key was put in place.
    pub fn finish_rekeys(&self) -> Result<Vec<String>> {
        let mut finished = Vec::new();
        for entry in fs::read_dir(&self.keys).map_err(|e| Error::io("list", &self.keys, e))? {
            let name = entry
                .map_err(|e| Error::io("list", &self.keys, e))?
                .file_name()
                .to_string_lossy()
                .into_owned();
            if let Some(project) = StateDir::project_of_next_key(&name) {
                let next = self.next_key_path(project);
                let opens = self.key_at(&next).ok().is_some_and(|key| {
                    files::read_regular(&self.vault_path(project), MAX_VAULT_FILE)
                        .ok()
                        .flatten()
                        .is_some_and(|vault| flux_vault::vault::open(&vault, project, &key).is_ok())
                });
                if opens {
                    let old = self.old_key_path(project);
                    if !old.exists() && self.key_path(project).exists() {
                        fs::hard_link(self.key_path(project), &old)
                            .map_err(|e| Error::io("keep", &old, e))?;
                    }
                    fs::rename(&next, self.key_path(project))
                        .map_err(|e| Error::io("replace", self.key_path(project), e))?;
                    files::sync_dir(&self.keys)?;
                    tracing::warn!(
                        project,
                        "finished giving the project its new key (interrupted by a stop)"
                    );
                    finished.push(project.to_owned());
                } else {
                    files::shred_durably(&next)?;
                }
            }
        }
        for entry in fs::read_dir(&self.keys).map_err(|e| Error::io("list", &self.keys, e))? {
            let name = entry
                .map_err(|e| Error::io("list", &self.keys, e))?
                .file_name()
                .to_string_lossy()
                .into_owned();
            if StateDir::is_old_key(&name) {
                files::shred_durably(&self.keys.join(&name))?;
            }
        }
        Ok(finished)
    }

    /// Removes temp files a crash left in `keys/` and `vaults/` (call at
    /// start-up, before any write); returns how many.
    pub fn remove_stale_temp_files(&self) -> Result<usize> {
        Ok(files::remove_stale_temp_files(&self.keys)?
            + files::remove_stale_temp_files(&self.vaults)?
            + files::remove_stale_temp_files(&self.revisions)?)
    }

    /// Wraps key files with the host key in the file at `path`, if any.
    pub fn with_host_key(mut self, path: Option<PathBuf>) -> Result<Self> {
        if let Some(path) = path {
            let text = Zeroizing::new(fs::read_to_string(&path).map_err(|source| {
                ConfigError::CannotRead {
                    what: "the host key",
                    path: path.clone(),
                    source,
                }
            })?);
            let key = ProjectKey::parse(&text).map_err(|reason| {
                Error::Config(format!("host key {}: {reason}", path.display()))
            })?;
            self.host = Some(std::sync::Arc::new(key));
        }
        Ok(self)
    }

    /// With a host key: re-writes every plain key file wrapped with it
    /// (atomically, mode 0600), so none stays usable off the host. Returns
    /// the projects whose key was wrapped.
    pub fn wrap_plain_keys(&self) -> Result<Vec<String>> {
        let Some(host) = &self.host else {
            return Ok(Vec::new());
        };
        let mut wrapped = Vec::new();
        for name in self.projects()? {
            let path = self.key_path(&name);
            let bytes = read_key_file(&path)?;
            if is_wrapped(&bytes) {
                continue;
            }
            // Only a key that parses is re-written.
            let text = std::str::from_utf8(&bytes).map_err(|_| Error::Key {
                location: Location::File(path.clone()),
                reason: "not a text key file".into(),
            })?;
            ProjectKey::parse(text).map_err(|reason| Error::Key {
                location: Location::File(path.clone()),
                reason,
            })?;
            let ciphertext = flux_vault::vault::encrypt(&bytes, host).map_err(|e| Error::Key {
                location: Location::File(path.clone()),
                reason: format!("cannot wrap with the host key: {e}"),
            })?;
            write_atomic(&path, &ciphertext, 0o600)?;
            wrapped.push(name);
        }
        Ok(wrapped)
    }

    /// True when key files are wrapped with a host key.
    pub fn wraps_keys(&self) -> bool {
        self.host.is_some()
    }

    /// `<state>/keys/<project>.key`.
    pub fn key_path(&self, project: &str) -> PathBuf {
        self.state.key(project)
    }

    /// `<state>/vaults/<project>.age`.
    pub fn vault_path(&self, project: &str) -> PathBuf {
        self.state.vault(project)
    }

    /// `<state>/revisions/<project>`: the highest revision served.
    pub fn revision_path(&self, project: &str) -> PathBuf {
        self.state.revision(project)
    }

    /// The folder of vault files.
    pub fn vaults_dir(&self) -> &Path {
        &self.vaults
    }

    /// The folder of key files.
    pub fn keys_dir(&self) -> &Path {
        &self.keys
    }

    /// The changes to `keys/` and `vaults/` made outside fluxd.
    pub fn changes(&self) -> Result<ChangeFeed> {
        super::watch::folders(&[self.vaults.clone(), self.keys.clone()])
    }
}

/// Reads a key file (see [`files::read_regular`]).
fn read_key_file(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    files::read_regular(path, MAX_KEY_FILE)?
        .map(Zeroizing::new)
        .ok_or_else(|| Error::io("read key", path, std::io::Error::from(ErrorKind::NotFound)))
}

/// True for a key file that is an age file (wrapped with a host key).
fn is_wrapped(bytes: &[u8]) -> bool {
    bytes.starts_with(b"age-encryption.org/")
        || bytes.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----")
}

impl Store for LocalStore {
    fn projects(&self) -> Result<Vec<String>> {
        Ok(self.state.projects()?)
    }

    fn load_key(&self, project: &str) -> Result<Zeroizing<String>> {
        self.key_text_at(&self.key_path(project))
    }

    fn create_key(&self, project: &str, key: &ProjectKey) -> Result<()> {
        let path = self.key_path(project);
        let contents = self.key_contents(&path, key)?;
        // An existing key is never replaced, and a failure (a full disk)
        // leaves no half-written key behind: the name can be created again.
        files::write_new(&path, &contents, 0o600).map_err(|e| {
            if e.already_exists() {
                Error::AlreadyExists(project.to_owned())
            } else {
                e.into()
            }
        })
    }

    fn ensure_key(&self, project: &str, key: &ProjectKey) -> Result<bool> {
        let path = self.key_path(project);
        match fs::symlink_metadata(&path) {
            Ok(_) => Ok(false),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                match self.create_key(project, key) {
                    Ok(()) | Err(Error::AlreadyExists(_)) => {}
                    Err(e) => return Err(e),
                }
                tracing::warn!(project, path = %path.display(), "the key file went missing while the project was served; written back from memory (delete a project with `fluxctl projects delete`)");
                Ok(true)
            }
            Err(e) => Err(Error::io("inspect", &path, e)),
        }
    }

    fn replace_key(&self, project: &str, key: &ProjectKey, ciphertext: &[u8]) -> Result<()> {
        let path = self.key_path(project);
        let next = self.next_key_path(project);
        let old = self.old_key_path(project);
        // 1. The new key, durable, beside the old one.
        files::shred_durably(&next)?;
        files::write_new(&next, &self.key_contents(&next, key)?, 0o600)?;
        // 2. The vault sealed with it. From here to 3, a restart finishes
        //    the swap (`finish_rekeys`): the new key opens the vault.
        files::write_atomic(&self.vault_path(project), ciphertext, 0o600)?;
        // 3. The new key in place; the old one kept under another name
        //    only until it is overwritten and removed.
        files::shred_durably(&old)?;
        fs::hard_link(&path, &old).map_err(|e| Error::io("keep", &old, e))?;
        fs::rename(&next, &path).map_err(|e| Error::io("replace", &path, e))?;
        files::sync_dir(&self.keys)?;
        Ok(files::shred_durably(&old)?)
    }

    fn delete_key(&self, project: &str) -> Result<()> {
        // Overwritten before it goes: freed blocks keep no key.
        Ok(files::shred_durably(&self.key_path(project))?)
    }

    fn load_vault(&self, project: &str) -> Result<Option<Vec<u8>>> {
        Ok(files::read_regular(
            &self.vault_path(project),
            MAX_VAULT_FILE,
        )?)
    }

    fn vault_exists(&self, project: &str) -> bool {
        self.vault_path(project).exists()
    }

    fn store_vault(&self, project: &str, ciphertext: &[u8]) -> Result<()> {
        Ok(write_atomic(&self.vault_path(project), ciphertext, 0o600)?)
    }

    fn delete_vault(&self, project: &str) -> Result<()> {
        files::remove_durably(&self.vault_path(project))?;
        Ok(files::shred_durably(&self.revision_path(project))?)
    }

    fn revision_floor(&self, project: &str) -> Result<u64> {
        let path = self.revision_path(project);
        let Some(bytes) = files::read_regular(&path, 64)? else {
            return Ok(0);
        };
        std::str::from_utf8(&bytes)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .ok_or_else(|| {
                Error::Config(format!(
                    "{} does not hold a revision number; fluxd will not guess one (a rollback check depends on it): restore it, or remove it to accept the vault as it is",
                    path.display()
                ))
            })
    }

    fn revision_record_missing(&self, project: &str) -> bool {
        matches!(
            std::fs::symlink_metadata(self.revision_path(project)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound
        )
    }

    fn raise_revision_floor(&self, project: &str, revision: u64) -> Result<()> {
        if revision > self.revision_floor(project).unwrap_or(0) {
            write_atomic(
                &self.revision_path(project),
                format!("{revision}\n").as_bytes(),
                0o600,
            )?;
        }
        Ok(())
    }

    fn vault_location(&self, project: &str) -> Location {
        Location::File(self.vault_path(project))
    }

    fn key_location(&self, project: &str) -> Location {
        Location::File(self.key_path(project))
    }

    fn check_key_private(&self, project: &str) -> Result<()> {
        check_private(&self.key_path(project), "key file", 0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        store.create_key("app", &ProjectKey::generate()).unwrap();
        let err = store
            .create_key("app", &ProjectKey::generate())
            .unwrap_err();
        assert!(matches!(err, Error::AlreadyExists(_)), "{err}");
        assert_eq!(store.projects().unwrap(), vec!["app".to_owned()]);
    }

    #[test]
    fn scan_skips_temp_and_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        for f in ["a.key", ".a.key.x.tmp", "b.txt", "-x.key", "c.key"] {
            fs::write(store.keys_dir().join(f), "").unwrap();
        }
        assert_eq!(store.projects().unwrap(), vec!["a", "c"]);
    }

    #[test]
    fn a_host_key_that_cannot_be_read_is_a_configuration_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("fluxd-host-key");
        let err = LocalStore::open(dir.path())
            .unwrap()
            .with_host_key(Some(missing.clone()))
            .map(drop)
            .unwrap_err();
        let want = format!(
            "cannot read the host key {}: {}",
            missing.display(),
            fs::read_to_string(&missing).unwrap_err()
        );
        assert_eq!(err.to_string(), want);
        assert!(err.is_config(), "{err}");
    }
}
