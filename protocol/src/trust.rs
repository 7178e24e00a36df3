//! Whether a socket may be trusted before anything is sent over it.
//!
//! A client sends values (`secrets set`, `import`) and runs programs with
//! the values it receives (`fluxctl run`, `ctx.secrets.get`), so a socket
//! planted by another local user — a squatted `/tmp/flux-<uid>`, a folder
//! another user can write — would hand that user every value, or feed the
//! client values of their choosing. Every Flux client (Rust, Node.js,
//! Python) applies the same rule before connecting:
//!
//! 1. The socket's path is resolved (symlinks followed) and the client
//!    connects to the resolved path, so what was checked is what is used.
//! 2. The socket file is a socket owned by a trusted uid.
//! 3. Every folder above it, up to `/`, is owned by a trusted uid or root,
//!    and is not writable by group or others — unless it has the sticky bit
//!    (like `/tmp`), where only an entry's owner can move it.
//! 4. After connecting, the peer's uid from the kernel (`SO_PEERCRED`) is
//!    trusted. (Node.js cannot read it; its client relies on 1–3.)
//!
//! Trusted uids: the client's own effective uid, root, and the daemon's
//! user — the user named by `FLUX_DAEMON_USER` (a name or a number), else
//! the system user `fluxd` when it exists (what `systemd/fluxd.sysusers`
//! creates). `fluxd` applies rule 3 to its own runtime folder with its own
//! uid and root.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Environment variable naming the daemon's user, when it is not `fluxd`.
pub const DAEMON_USER_ENV: &str = "FLUX_DAEMON_USER";
/// The system user the packaged units run fluxd as.
pub const DAEMON_USER: &str = "fluxd";

/// The uids a client or the daemon trusts with its sockets and folders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trust {
    uids: Vec<u32>,
    me: u32,
}

impl Trust {
    /// A client's trust: its own uid, root, and the daemon's user.
    pub fn for_client() -> Self {
        let me = nix::unistd::geteuid().as_raw();
        let mut uids = vec![me, 0];
        let daemon = std::env::var(DAEMON_USER_ENV)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| DAEMON_USER.to_owned());
        let uid = daemon.parse::<u32>().ok().or_else(|| {
            nix::unistd::User::from_name(&daemon)
                .ok()
                .flatten()
                .map(|u| u.uid.as_raw())
        });
        uids.extend(uid);
        Self { uids, me }
    }

    /// A client's trust in a daemon run as `daemon_uid`: its own uid, root,
    /// and that uid.
    pub fn for_client_of(daemon_uid: u32) -> Self {
        let me = nix::unistd::geteuid().as_raw();
        Self {
            uids: vec![me, 0, daemon_uid],
            me,
        }
    }

    /// Trust in exactly `me` and root (the daemon's own folders).
    pub fn only_me() -> Self {
        let me = nix::unistd::geteuid().as_raw();
        Self {
            uids: vec![me, 0],
            me,
        }
    }

    /// Trust in `uids` (and root), for tests of the rule.
    pub fn with_uids(me: u32, uids: &[u32]) -> Self {
        let mut all = vec![me, 0];
        all.extend_from_slice(uids);
        Self { uids: all, me }
    }

    fn trusts(&self, uid: u32) -> bool {
        self.uids.contains(&uid)
    }

    fn owner_reason(&self, what: &Path, uid: u32) -> String {
        format!(
            "{} is owned by uid {uid}, not by you (uid {}), root or fluxd's user: another user may have created it to receive what you send",
            what.display(),
            self.me
        )
    }

    /// Checks rule 3 for `dir` and every folder above it. The error says
    /// which folder and why.
    pub fn check_folders(&self, dir: &Path) -> Result<(), String> {
        let mut at = Some(dir);
        while let Some(d) = at {
            if d.as_os_str().is_empty() {
                break;
            }
            let meta = fs::symlink_metadata(d)
                .map_err(|e| format!("cannot inspect {}: {e}", d.display()))?;
            if meta.file_type().is_symlink() {
                return Err(format!(
                    "{} is a symbolic link: resolve the path first",
                    d.display()
                ));
            }
            if !meta.is_dir() {
                return Err(format!("{} is not a folder", d.display()));
            }
            if !self.trusts(meta.uid()) {
                return Err(self.owner_reason(d, meta.uid()));
            }
            let mode = meta.mode() & 0o7777;
            if mode & 0o022 != 0 && mode & 0o1000 == 0 {
                return Err(format!(
                    "{} can be written by other users (mode {:04o}): any of them could replace what is in it",
                    d.display(),
                    mode & 0o777
                ));
            }
            at = d.parent();
        }
        Ok(())
    }

    /// Checks rules 1–3 for a socket path; returns the resolved path to
    /// connect to. A socket that does not exist is not an error here (the
    /// connect reports it, with the usual "is fluxd running?").
    pub fn check_socket(&self, path: &Path) -> Result<PathBuf, Untrusted> {
        let untrusted = |reason: String| Untrusted {
            path: path.to_path_buf(),
            reason,
        };
        let resolved = match fs::canonicalize(path) {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(path.to_path_buf()),
            Err(e) => return Err(untrusted(format!("cannot resolve it: {e}"))),
        };
        let meta = fs::symlink_metadata(&resolved)
            .map_err(|e| untrusted(format!("cannot inspect {}: {e}", resolved.display())))?;
        if !meta.file_type().is_socket() {
            return Err(untrusted(format!("{} is not a socket", resolved.display())));
        }
        if !self.trusts(meta.uid()) {
            return Err(untrusted(self.owner_reason(&resolved, meta.uid())));
        }
        if let Some(dir) = resolved.parent() {
            self.check_folders(dir).map_err(untrusted)?;
        }
        Ok(resolved)
    }

    /// Checks rule 4: the uid the kernel reports for the listening peer.
    pub fn check_peer(&self, path: &Path, uid: u32) -> Result<(), Untrusted> {
        if self.trusts(uid) {
            return Ok(());
        }
        Err(Untrusted {
            path: path.to_path_buf(),
            reason: format!(
                "the process listening on it runs as uid {uid}, not as you (uid {}), root or fluxd's user",
                self.me
            ),
        })
    }
}

/// A socket a client refuses to use, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "refusing to use {}: {reason}. Remove it, or point FLUX_RUNTIME_DIR (--runtime-dir) or FLUX_SECRETS_SOCKET at the folder fluxd really uses; set FLUX_DAEMON_USER if fluxd runs as a user other than fluxd",
    path.display()
)]
pub struct Untrusted {
    pub path: PathBuf,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn me() -> u32 {
        nix::unistd::geteuid().as_raw()
    }

    #[test]
    fn a_private_folder_and_socket_are_trusted() {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
        let sock = dir.path().join("s.sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let resolved = Trust::with_uids(me(), &[]).check_socket(&sock).unwrap();
        assert_eq!(resolved, fs::canonicalize(&sock).unwrap());
    }

    #[test]
    fn a_folder_others_can_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let sock = open.join("s.sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let err = Trust::with_uids(me(), &[]).check_socket(&sock).unwrap_err();
        assert!(
            err.reason.contains("can be written by other users"),
            "{err}"
        );
        assert!(err.reason.contains("0777"), "{err}");
        // Sticky, like /tmp: entries can only be moved by their owner.
        fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
        Trust::with_uids(me(), &[]).check_socket(&sock).unwrap();
    }

    #[test]
    fn a_file_that_is_not_a_socket_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s.sock");
        fs::write(&f, "").unwrap();
        let err = Trust::with_uids(me(), &[]).check_socket(&f).unwrap_err();
        assert!(err.reason.contains("not a socket"), "{err}");
    }

    #[test]
    fn a_missing_socket_is_left_to_connect() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.sock");
        assert_eq!(
            Trust::with_uids(me(), &[]).check_socket(&missing).unwrap(),
            missing
        );
    }

    #[test]
    fn only_trusted_peers() {
        let trust = Trust::with_uids(1000, &[998]);
        assert!(trust.check_peer(Path::new("/s"), 1000).is_ok());
        assert!(trust.check_peer(Path::new("/s"), 0).is_ok());
        assert!(trust.check_peer(Path::new("/s"), 998).is_ok());
        let err = trust.check_peer(Path::new("/s"), 1234).unwrap_err();
        assert!(err.to_string().contains("uid 1234"), "{err}");
    }

    #[test]
    fn owners_other_than_trusted_ones_are_refused() {
        // Pretend to be someone else: the temp folder's owner (us) is then
        // an untrusted uid, unless we are root (root is always trusted).
        if me() == 0 {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let err = Trust::with_uids(me() + 1, &[])
            .check_folders(dir.path())
            .unwrap_err();
        assert!(err.contains(&format!("owned by uid {}", me())), "{err}");
    }
}
