//! Storage: where project keys and sealed vaults live.
//!
//! The [`Store`] trait is the whole interface the daemon needs — list,
//! load, store and delete, for keys and for vault ciphertext — so a
//! replicated backend can sit beside the local folder. Stores only ever see
//! ciphertext and keys; sealing and encryption happen above them.
//!
//! [`LocalStore`] keeps `<state>/keys/<project>.key` (mode 0600) and
//! `<state>/vaults/<project>.age` (mode 0600), written with
//! [`crate::fsutil::write_atomic`].
//!
//! With a host key (systemd's `fluxd-host-key` credential, see
//! `docs/DEPLOY.md`), new key files are themselves age files encrypted to
//! the host key, so a key file copied off the host is useless. Key files
//! are read either way: plain ones (written before the host key was
//! configured) keep working.

use crate::error::{Error, Result};
use crate::fsutil::{self, ensure_private_dir, is_temp_name, write_atomic};
use crate::keys::ProjectKey;
use flux_protocol::limits::validate_project_name;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Where the daemon keeps project keys and vaults.
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Names of the projects that have a key, sorted.
    fn projects(&self) -> Result<Vec<String>>;
    /// Reads a project's key file (the text `age-keygen` writes).
    fn load_key(&self, project: &str) -> Result<Zeroizing<String>>;
    /// Writes a new project key; fails if one exists (a key is never
    /// overwritten: that would make its vault unreadable).
    fn create_key(&self, project: &str, key: &ProjectKey) -> Result<()>;
    /// Removes a project key durably. Without it the vault and every backup
    /// of it are unreadable.
    fn delete_key(&self, project: &str) -> Result<()>;
    /// Reads a vault's ciphertext; `None` when there is none.
    fn load_vault(&self, project: &str) -> Result<Option<Vec<u8>>>;
    /// True when the project has a vault (a project appearing from outside
    /// is served once both its key and its vault are there).
    fn vault_exists(&self, project: &str) -> bool;
    /// Replaces a vault's ciphertext atomically and durably.
    fn store_vault(&self, project: &str, ciphertext: &[u8]) -> Result<()>;
    /// Removes a vault durably.
    fn delete_vault(&self, project: &str) -> Result<()>;
    /// Where a project's vault is, for messages.
    fn vault_location(&self, project: &str) -> PathBuf;
    /// Where a project's key is, for messages.
    fn key_location(&self, project: &str) -> PathBuf;
    /// Refuses a key that group or others could read or write.
    fn check_key_private(&self, project: &str) -> Result<()>;
    /// Replaces a vault only while the stored one is still the one whose
    /// SHA-256 is `expected` (`None`: no vault); `Ok(false)` when another
    /// writer got there first — the caller reloads and tries again. A
    /// single-writer store simply stores.
    fn store_vault_if(
        &self,
        project: &str,
        expected: Option<&[u8; 32]>,
        ciphertext: &[u8],
    ) -> Result<bool> {
        let _ = expected;
        self.store_vault(project, ciphertext).map(|()| true)
    }
    /// Makes sure the key `key` is stored for `project`, writing it back
    /// when its file went missing while the project was served; true when
    /// it was written. Called before every write is acknowledged, so no
    /// write is acknowledged that a restart could not decrypt.
    fn ensure_key(&self, project: &str, key: &ProjectKey) -> Result<bool> {
        let _ = (project, key);
        Ok(false)
    }
    /// The highest vault revision this host has served for `project`
    /// (0: none), remembered outside the vault so a restart cannot be fooled
    /// by an older vault put back.
    fn revision_floor(&self, project: &str) -> Result<u64> {
        let _ = project;
        Ok(0)
    }
    /// Remembers that `project` has served `revision` (only ever raised).
    fn raise_revision_floor(&self, project: &str, revision: u64) -> Result<()> {
        let _ = (project, revision);
        Ok(())
    }
    /// Why the store cannot be reached right now, if it cannot (shown in
    /// the project's `last_error`).
    fn health(&self, _project: &str) -> Option<String> {
        None
    }
    /// The etcd store, when this is one (fleet mode).
    fn fleet(&self) -> Option<&crate::fleet::EtcdStore> {
        None
    }
}

/// A folder on the local disk: `keys/` and `vaults/` under the state dir.
#[derive(Debug, Clone)]
pub struct LocalStore {
    keys: PathBuf,
    vaults: PathBuf,
    revisions: PathBuf,
    host: Option<std::sync::Arc<ProjectKey>>,
}

impl LocalStore {
    /// Opens (creating with mode 0700 where missing) the store under
    /// `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Self> {
        let store = Self {
            keys: state_dir.join("keys"),
            vaults: state_dir.join("vaults"),
            revisions: state_dir.join("revisions"),
            host: None,
        };
        ensure_private_dir(&store.keys)?;
        ensure_private_dir(&store.vaults)?;
        ensure_private_dir(&store.revisions)?;
        Ok(store)
    }

    /// Removes temp files a crash left in `keys/` and `vaults/` (call at
    /// start-up, before any write); returns how many.
    pub fn remove_stale_temp_files(&self) -> Result<usize> {
        Ok(fsutil::remove_stale_temp_files(&self.keys)?
            + fsutil::remove_stale_temp_files(&self.vaults)?
            + fsutil::remove_stale_temp_files(&self.revisions)?)
    }

    /// Wraps key files with the host key in the file at `path`, if any.
    pub fn with_host_key(mut self, path: Option<PathBuf>) -> Result<Self> {
        if let Some(path) = path {
            let text = Zeroizing::new(fs::read_to_string(&path).map_err(|e| {
                Error::Config(format!("cannot read the host key {}: {e}", path.display()))
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
                path: path.clone(),
                reason: "not a text key file".into(),
            })?;
            ProjectKey::parse(text).map_err(|reason| Error::Key {
                path: path.clone(),
                reason,
            })?;
            let ciphertext = crate::vault::encrypt(&bytes, host).map_err(|e| Error::Key {
                path: path.clone(),
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
        self.keys.join(format!("{project}.key"))
    }

    /// `<state>/vaults/<project>.age`.
    pub fn vault_path(&self, project: &str) -> PathBuf {
        self.vaults.join(format!("{project}.age"))
    }

    /// `<state>/revisions/<project>`: the highest revision served.
    pub fn revision_path(&self, project: &str) -> PathBuf {
        self.revisions.join(project)
    }

    /// The folder of vault files.
    pub fn vaults_dir(&self) -> &Path {
        &self.vaults
    }

    /// The folder of key files.
    pub fn keys_dir(&self) -> &Path {
        &self.keys
    }
}

/// Largest key file fluxd reads (a wrapped key is well under 1 KiB).
pub const MAX_KEY_FILE: u64 = 64 * 1024;
/// Largest vault file fluxd reads: the largest plaintext, armored.
pub const MAX_VAULT_FILE: u64 = crate::vault::MAX_PLAINTEXT / 3 * 4 * 65 / 64 + 1024 * 1024;

/// Reads a key file (see [`fsutil::read_regular`]).
fn read_key_file(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    fsutil::read_regular(path, MAX_KEY_FILE)?
        .map(Zeroizing::new)
        .ok_or_else(|| Error::io("read key", path, std::io::Error::from(ErrorKind::NotFound)))
}

/// True for a key file that is an age file (wrapped with a host key).
fn is_wrapped(bytes: &[u8]) -> bool {
    bytes.starts_with(b"age-encryption.org/")
        || bytes.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----")
}

/// Project names found as `<name><ext>` in `dir`, skipping temp files and
/// names that are not valid project names.
pub fn names_in(dir: &Path, ext: &str) -> Result<Vec<String>> {
    let mut names = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| Error::io("read folder", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read folder", dir, e))?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        if is_temp_name(file_name) {
            continue;
        }
        if let Some(name) = file_name.strip_suffix(ext)
            && validate_project_name(name).is_ok()
        {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

impl Store for LocalStore {
    fn projects(&self) -> Result<Vec<String>> {
        names_in(&self.keys, ".key")
    }

    fn load_key(&self, project: &str) -> Result<Zeroizing<String>> {
        let path = self.key_path(project);
        let bytes = read_key_file(&path)?;
        let plain = if is_wrapped(&bytes) {
            let host = self.host.as_ref().ok_or_else(|| Error::Key {
                path: path.clone(),
                reason: "the key file is wrapped with a host key, but fluxd was started without the fluxd-host-key credential".into(),
            })?;
            crate::vault::decrypt(&bytes, host).map_err(|e| Error::Key {
                path: path.clone(),
                reason: format!("cannot unwrap with the host key: {e}"),
            })?
        } else {
            bytes
        };
        let text = std::str::from_utf8(&plain).map_err(|_| Error::Key {
            path: path.clone(),
            reason: "not a text key file".into(),
        })?;
        Ok(Zeroizing::new(text.to_owned()))
    }

    fn create_key(&self, project: &str, key: &ProjectKey) -> Result<()> {
        let path = self.key_path(project);
        let created = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let plain = key.to_file_contents(&created);
        let contents: Zeroizing<Vec<u8>> = match &self.host {
            Some(host) => {
                Zeroizing::new(crate::vault::encrypt(plain.as_bytes(), host).map_err(|e| {
                    Error::Key {
                        path: path.clone(),
                        reason: format!("cannot wrap with the host key: {e}"),
                    }
                })?)
            }
            None => Zeroizing::new(plain.as_bytes().to_vec()),
        };
        // An existing key is never replaced, and a failure (a full disk)
        // leaves no half-written key behind: the name can be created again.
        fsutil::write_new(&path, &contents, 0o600).map_err(|e| match e.kind() {
            ErrorKind::AlreadyExists => Error::AlreadyExists(project.to_owned()),
            _ => Error::io("create key", &path, e),
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

    fn delete_key(&self, project: &str) -> Result<()> {
        fsutil::remove_durably(&self.key_path(project))
    }

    fn load_vault(&self, project: &str) -> Result<Option<Vec<u8>>> {
        fsutil::read_regular(&self.vault_path(project), MAX_VAULT_FILE)
    }

    fn vault_exists(&self, project: &str) -> bool {
        self.vault_path(project).exists()
    }

    fn store_vault(&self, project: &str, ciphertext: &[u8]) -> Result<()> {
        write_atomic(&self.vault_path(project), ciphertext, 0o600)
    }

    fn delete_vault(&self, project: &str) -> Result<()> {
        fsutil::remove_durably(&self.vault_path(project))?;
        fsutil::remove_durably(&self.revision_path(project))
    }

    fn revision_floor(&self, project: &str) -> Result<u64> {
        let path = self.revision_path(project);
        let Some(bytes) = fsutil::read_regular(&path, 64)? else {
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

    fn vault_location(&self, project: &str) -> PathBuf {
        self.vault_path(project)
    }

    fn key_location(&self, project: &str) -> PathBuf {
        self.key_path(project)
    }

    fn check_key_private(&self, project: &str) -> Result<()> {
        fsutil::check_private(&self.key_path(project), "key file", 0o600)
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
}
