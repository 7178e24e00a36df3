//! Socket files: binding, modes and groups, sockets passed by systemd, and
//! removal — owned here, so nothing else touches a path in the runtime
//! folder.
//!
//! A socket is created as stale-check → bind → chmod 0600: an existing
//! socket that accepts a connection belongs to a running daemon and is left
//! alone (that project fails with a clear message); one that refuses is a
//! leftover from a crash and is replaced; anything else in the way (a file,
//! a symbolic link) is refused, never removed or followed. The runtime
//! folder was checked at start ([`crate::fsutil::own_dir`]): fluxd's uid
//! owns it and no one else can write it, so nothing can appear in it or be
//! swapped between fluxd's calls.
//!
//! Every socket fluxd binds is remembered by device and inode. Modes and
//! groups are (re)applied — at bind and on every policy reload — only to a
//! path that is still that very socket: fluxd never changes a path it did
//! not just create. Sockets passed by systemd (socket activation) are
//! remembered the same way when taken, and their files are never removed:
//! they belong to the `.socket` unit.

use crate::error::{Error, Result};
use crate::systemd::Inherited;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tokio::net::UnixListener;
use tracing::{info, warn};

/// Mode of a socket no group may reach.
pub const SOCKET_MODE: u32 = 0o600;
/// Mode of a socket opened to its group.
pub const GROUP_SOCKET_MODE: u32 = 0o660;

/// A socket file as the kernel knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(meta: &fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// The daemon's socket files.
#[derive(Debug, Default)]
pub struct Sockets {
    /// Sockets passed in by systemd, not yet used.
    inherited: Mutex<Inherited>,
    /// Paths of sockets taken from systemd: never removed.
    systemd_paths: Mutex<HashSet<PathBuf>>,
    /// Every socket fluxd listens on, by path.
    ids: Mutex<HashMap<PathBuf, FileId>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sockets {
    /// The owner of the sockets systemd passed in.
    pub fn new(inherited: Inherited) -> Self {
        Self {
            inherited: Mutex::new(inherited),
            ..Self::default()
        }
    }

    /// Names of sockets passed by systemd that nothing used.
    pub fn leftover(&self) -> Vec<String> {
        lock(&self.inherited).leftover()
    }

    /// The listener for `path` — the socket systemd passed under `name`, or
    /// a new one — with `group` applied (see [`Sockets::apply_policy`]).
    pub fn listen(&self, path: &Path, name: &str, group: Option<u32>) -> Result<UnixListener> {
        let passed = lock(&self.inherited).take(name);
        let listener = match passed {
            Some(std_listener) => {
                info!(socket = %path.display(), name, "using the socket passed by systemd");
                let fail = |e: std::io::Error| Error::Bind {
                    path: path.to_path_buf(),
                    reason: format!("the socket passed by systemd as {name:?} is unusable: {e}"),
                };
                std_listener.set_nonblocking(true).map_err(fail)?;
                let listener = UnixListener::from_std(std_listener).map_err(fail)?;
                lock(&self.systemd_paths).insert(path.to_path_buf());
                listener
            }
            None => bind(path)?,
        };
        let meta = fs::symlink_metadata(path).map_err(|e| Error::Bind {
            path: path.to_path_buf(),
            reason: format!("cannot inspect the socket just bound: {e}"),
        })?;
        lock(&self.ids).insert(path.to_path_buf(), FileId::of(&meta));
        self.apply_policy(path, group)?;
        Ok(listener)
    }

    /// Gives a socket file its policy: group-owned by `group` with mode
    /// 0660, or mode 0600 when no group may reach it — only while the path
    /// is still the socket fluxd bound there.
    pub fn apply_policy(&self, path: &Path, group: Option<u32>) -> Result<()> {
        let fail = |reason: String| Error::Bind {
            path: path.to_path_buf(),
            reason,
        };
        let known = lock(&self.ids).get(path).copied();
        let meta = fs::symlink_metadata(path)
            .map_err(|e| fail(format!("cannot inspect the socket: {e}")))?;
        if known != Some(FileId::of(&meta)) || !meta.file_type().is_socket() {
            return Err(fail(
                "the path is no longer the socket fluxd created; its mode and group are left alone (restart fluxd to create it again)".into(),
            ));
        }
        let mode = match group {
            Some(gid) => {
                std::os::unix::fs::lchown(path, None, Some(gid))
                    .map_err(|e| fail(format!("cannot give the socket to group {gid}: {e}")))?;
                GROUP_SOCKET_MODE
            }
            None => SOCKET_MODE,
        };
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|e| fail(format!("cannot set mode {mode:o}: {e}")))
    }

    /// Removes a socket file fluxd created (systemd's are left alone), if
    /// the path is still that socket.
    pub fn retire(&self, path: &Path) {
        let known = lock(&self.ids).remove(path);
        if lock(&self.systemd_paths).contains(path) {
            return;
        }
        match fs::symlink_metadata(path) {
            Ok(meta) if known == Some(FileId::of(&meta)) => {
                if let Err(e) = fs::remove_file(path) {
                    warn!(path = %path.display(), error = %e, "cannot remove socket file");
                }
            }
            Ok(_) => {
                warn!(path = %path.display(), "not removing a file fluxd did not create");
            }
            Err(_) => {}
        }
    }
}

/// Binds a Unix socket at `path` with mode 0600, replacing a stale socket
/// (see the module docs).
pub fn bind(path: &Path) -> Result<UnixListener> {
    let bind_err = |reason: String| Error::Bind {
        path: path.to_path_buf(),
        reason,
    };
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(bind_err(
                    "another fluxd is already listening there; stop it first, or use another --runtime-dir".into(),
                ));
            }
            fs::remove_file(path)
                .map_err(|e| bind_err(format!("cannot remove the stale socket: {e}")))?;
        }
        Ok(meta) => {
            let what = if meta.file_type().is_symlink() {
                "a symbolic link"
            } else {
                "a file that is not a socket"
            };
            return Err(bind_err(format!(
                "{what} is in the way; move it away, then reload fluxd (SIGHUP)"
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(bind_err(e.to_string())),
    }
    let listener = UnixListener::bind(path).map_err(|e| bind_err(e.to_string()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(SOCKET_MODE))
        .map_err(|e| bind_err(format!("cannot set mode {SOCKET_MODE:o}: {e}")))?;
    Ok(listener)
}
