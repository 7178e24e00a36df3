//! [`StateDir`]: the layout of fluxd's state folder, the one place its
//! file and folder names are spelled. fluxd, `fluxctl`, the end-to-end
//! tests and the benchmarks all find a project's files through it.
//!
//! ```text
//! <state>/
//!   keys/<project>.key          a project's key (mode 0600)
//!   keys/<project>.key.next     a new key being put in place (rekey)
//!   keys/.<project>.key.old     the replaced key, until it is shredded
//!   vaults/<project>.age        a project's sealed vault (mode 0600)
//!   revisions/<project>         the highest vault revision served
//!   audit.log                   the audit log (default path)
//!   audit.key                   the audit log's chain key
//!   fluxd.lock                  the daemon's exclusive lock
//!   host.key                    fleet mode: this host's identity
//!   host.key.next / .host.key.old   the same, while it is rotated
//!   fleet/{id,hosts,vaults,keys,deleted}   fleet mode: the sealed local copy
//! ```
//!
//! Temp files (`.<name>.<random>.tmp`) are [`crate::files`]'s; the names
//! of projects found in a folder ([`names_in`]) pass them over, since no
//! project name starts with a dot. The size limits of the files read back
//! ([`MAX_KEY_FILE`], [`MAX_VAULT_FILE`]) live here too.

use crate::files::FileError;
use flux_protocol::limits::validate_project_name;
use std::path::{Path, PathBuf};

/// The folder of project keys.
const KEYS: &str = "keys";
/// The folder of sealed vaults.
const VAULTS: &str = "vaults";
/// The folder of revision records.
const REVISIONS: &str = "revisions";
/// The folder of fleet mode's sealed local copy.
const FLEET: &str = "fleet";
/// A key file's extension.
pub const KEY_EXT: &str = ".key";
/// A vault file's extension.
pub const VAULT_EXT: &str = ".age";
/// The extension of a new key being put in place.
const NEXT_KEY_EXT: &str = ".key.next";
/// The extension of a replaced key, until it is shredded.
const OLD_KEY_EXT: &str = ".key.old";

/// Largest key file read (a key wrapped with a host key is well under
/// 1 KiB).
pub const MAX_KEY_FILE: u64 = 64 * 1024;
/// Largest vault file read: the largest plaintext, armored.
pub const MAX_VAULT_FILE: u64 = crate::vault::MAX_PLAINTEXT / 3 * 4 * 65 / 64 + 1024 * 1024;

/// A state folder. See the module docs for its layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// The state folder at `root` (nothing is read or created).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The folder itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<state>/keys`.
    pub fn keys_dir(&self) -> PathBuf {
        self.root.join(KEYS)
    }

    /// `<state>/vaults`.
    pub fn vaults_dir(&self) -> PathBuf {
        self.root.join(VAULTS)
    }

    /// `<state>/revisions`.
    pub fn revisions_dir(&self) -> PathBuf {
        self.root.join(REVISIONS)
    }

    /// `<state>/keys/<project>.key`.
    pub fn key(&self, project: &str) -> PathBuf {
        self.keys_dir().join(format!("{project}{KEY_EXT}"))
    }

    /// `<state>/keys/<project>.key.next`: a new key being put in place.
    pub fn next_key(&self, project: &str) -> PathBuf {
        self.keys_dir().join(format!("{project}{NEXT_KEY_EXT}"))
    }

    /// `<state>/keys/.<project>.key.old`: the replaced key, until it is
    /// shredded.
    pub fn old_key(&self, project: &str) -> PathBuf {
        self.keys_dir().join(format!(".{project}{OLD_KEY_EXT}"))
    }

    /// `<state>/vaults/<project>.age`.
    pub fn vault(&self, project: &str) -> PathBuf {
        self.vaults_dir().join(format!("{project}{VAULT_EXT}"))
    }

    /// `<state>/revisions/<project>`: the highest revision served.
    pub fn revision(&self, project: &str) -> PathBuf {
        self.revisions_dir().join(project)
    }

    /// `<state>/audit.log`: the audit log when `[audit] path` is not set.
    pub fn audit_log(&self) -> PathBuf {
        self.root.join("audit.log")
    }

    /// `<state>/audit.key`: the audit log's chain key when systemd gives
    /// none.
    pub fn audit_key(&self) -> PathBuf {
        self.root.join("audit.key")
    }

    /// `<state>/fluxd.lock`: held by the daemon serving the folder.
    pub fn lock(&self) -> PathBuf {
        self.root.join("fluxd.lock")
    }

    /// `<state>/host.key`: fleet mode's host identity.
    pub fn host_key(&self) -> PathBuf {
        self.root.join("host.key")
    }

    /// `<state>/host.key.next`: the host's next identity, while it is
    /// rotated.
    pub fn next_host_key(&self) -> PathBuf {
        self.root.join("host.key.next")
    }

    /// `<state>/.host.key.old`: the host's replaced identity, until it is
    /// shredded.
    pub fn old_host_key(&self) -> PathBuf {
        self.root.join(".host.key.old")
    }

    /// `<state>/fleet`: fleet mode's sealed local copy.
    pub fn fleet_dir(&self) -> PathBuf {
        self.root.join(FLEET)
    }

    /// The projects with a key file, sorted.
    pub fn projects(&self) -> Result<Vec<String>, FileError> {
        names_in(&self.keys_dir(), KEY_EXT)
    }

    /// The project a key or vault file named `file_name` belongs to;
    /// `None` for any other name.
    pub fn project_of_file(file_name: &str) -> Option<&str> {
        file_name
            .strip_suffix(VAULT_EXT)
            .or_else(|| file_name.strip_suffix(KEY_EXT))
            .filter(|p| validate_project_name(p).is_ok())
    }

    /// The project whose new key `file_name` (in `keys/`) is; `None` for
    /// any other name.
    pub fn project_of_next_key(file_name: &str) -> Option<&str> {
        file_name.strip_suffix(NEXT_KEY_EXT)
    }

    /// True when `file_name` (in `keys/`) is a replaced key left behind.
    pub fn is_old_key(file_name: &str) -> bool {
        file_name.starts_with('.') && file_name.ends_with(OLD_KEY_EXT)
    }
}

/// fleet mode's sealed local copy, under [`StateDir::fleet_dir`]: the names
/// of its files, relative to that folder.
pub mod fleet_copy {
    /// Its folders (`""` is the folder itself).
    pub const DIRS: [&str; 5] = ["", HOSTS, VAULTS, KEYS, DELETED];
    /// The folder of host lists.
    pub const HOSTS: &str = "hosts";
    /// The folder of vaults.
    pub const VAULTS: &str = "vaults";
    /// The folder of this host's wrapped project keys.
    pub const KEYS: &str = "keys";
    /// The folder of signed deletions.
    pub const DELETED: &str = "deleted";
    /// The fleet's id.
    pub const ID: &str = "id";

    /// `hosts/<version>`, zero-padded so that names sort by version.
    pub fn hosts(version: u64) -> String {
        format!("{HOSTS}/{version:020}")
    }

    /// `<folder>/<name>`.
    pub fn file(folder: &str, name: &str) -> String {
        format!("{folder}/{name}")
    }
}

/// Project names found as `<name><ext>` in `dir`, sorted: names that are
/// not valid project names (temp files start with a dot, which none does)
/// are passed over.
pub fn names_in(dir: &Path, ext: &str) -> Result<Vec<String>, FileError> {
    let failed = |source| FileError {
        action: "read folder",
        path: dir.to_path_buf(),
        source,
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(failed)? {
        let file_name = entry.map_err(failed)?.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        if let Some(name) = file_name.strip_suffix(ext)
            && validate_project_name(name).is_ok()
        {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    // These tests spell the layout on purpose: they pin it.

    #[test]
    fn paths_of_a_project() {
        let state = StateDir::new("/s");
        assert_eq!(state.key("app"), Path::new("/s/keys/app.key"));
        assert_eq!(state.next_key("app"), Path::new("/s/keys/app.key.next"));
        assert_eq!(state.old_key("app"), Path::new("/s/keys/.app.key.old"));
        assert_eq!(state.vault("app"), Path::new("/s/vaults/app.age"));
        assert_eq!(state.revision("app"), Path::new("/s/revisions/app"));
        assert_eq!(state.audit_log(), Path::new("/s/audit.log"));
        assert_eq!(state.audit_key(), Path::new("/s/audit.key"));
        assert_eq!(state.lock(), Path::new("/s/fluxd.lock"));
        assert_eq!(state.host_key(), Path::new("/s/host.key"));
        assert_eq!(state.next_host_key(), Path::new("/s/host.key.next"));
        assert_eq!(state.old_host_key(), Path::new("/s/.host.key.old"));
        assert_eq!(state.fleet_dir(), Path::new("/s/fleet"));
        assert_eq!(fleet_copy::hosts(7), "hosts/00000000000000000007");
    }

    #[test]
    fn file_names_tell_their_project() {
        assert_eq!(StateDir::project_of_file("app.age"), Some("app"));
        assert_eq!(StateDir::project_of_file("app.key"), Some("app"));
        for other in ["app.age.new", ".app.age.x.tmp", "..data", "-x.key", "app"] {
            assert_eq!(StateDir::project_of_file(other), None, "{other}");
        }
        assert_eq!(StateDir::project_of_next_key("app.key.next"), Some("app"));
        assert_eq!(StateDir::project_of_next_key("app.key"), None);
        assert!(StateDir::is_old_key(".app.key.old"));
        assert!(!StateDir::is_old_key("app.key"));
    }

    #[test]
    fn names_in_skips_temp_and_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["a.key", ".a.key.x.tmp", "b.txt", "-x.key", "c.key"] {
            std::fs::write(dir.path().join(f), "").unwrap();
        }
        assert_eq!(names_in(dir.path(), KEY_EXT).unwrap(), vec!["a", "c"]);
        let err = names_in(&dir.path().join("missing"), "").unwrap_err();
        assert_eq!(err.action, "read folder");
    }
}
