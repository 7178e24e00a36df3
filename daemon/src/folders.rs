//! The daemon's own folders: created private, refused when someone else
//! could change them, and locked so two daemons never share a state
//! folder.
//!
//! Like ssh with its keys, fluxd refuses to start (exit 78) when the state
//! folder or a key file is open to group or others ([`check_private`]), and
//! when its runtime or state folder is not its own ([`own_dir`]).

use crate::error::{ConfigError, Error, FolderProblem, Result};
use nix::fcntl::{Flock, FlockArg};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Creates `dir` (and missing parents, mode 0700) when missing, then
/// refuses — as a configuration error — a `dir` that is a symbolic link or
/// not a folder, that fluxd's uid does not own, that group or others can
/// write, or that sits under a folder another user could swap (see
/// [`flux_protocol::trust`]). `what` names it in the message.
///
/// This is what keeps a pre-created `/tmp/flux-<uid>` from steering fluxd:
/// a folder that passes can only be changed by fluxd's uid and root, so the
/// paths fluxd then creates and changes in it are its own.
pub fn own_dir(dir: &Path, what: &str) -> Result<()> {
    flux_vault::files::ensure_private_dir(dir)?;
    let meta = fs::symlink_metadata(dir).map_err(|e| Error::io("inspect", dir, e))?;
    let me = nix::unistd::geteuid().as_raw();
    let refuse = |problem| {
        Error::from(ConfigError::NotOwnFolder {
            what: what.to_owned(),
            dir: dir.to_owned(),
            problem,
        })
    };
    if meta.file_type().is_symlink() || !meta.is_dir() {
        return Err(refuse(FolderProblem::NotAFolder));
    }
    if meta.uid() != me {
        return Err(refuse(FolderProblem::OwnedBy {
            owner: meta.uid(),
            me,
        }));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(refuse(FolderProblem::WritableByOthers {
            mode: meta.mode() & 0o777,
        }));
    }
    if let Some(parent) = dir.parent() {
        flux_protocol::trust::Trust::only_me()
            .check_folders(parent)
            .map_err(|reason| ConfigError::UntrustedParent {
                what: what.to_owned(),
                dir: dir.to_owned(),
                reason,
            })?;
    }
    Ok(())
}

/// Sets the mode of a folder fluxd owns through a descriptor opened
/// without following a symbolic link, after checking the owner.
pub fn chmod_own_dir(dir: &Path, mode: u32) -> Result<()> {
    use nix::fcntl::{OFlag, open};
    use nix::sys::stat::{Mode, fchmod, fstat};
    let fd = open(
        dir,
        OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io("open", dir, e.into()))?;
    let st = fstat(&fd).map_err(|e| Error::io("inspect", dir, e.into()))?;
    if st.st_uid != nix::unistd::geteuid().as_raw() {
        return Err(ConfigError::NotOwned {
            dir: dir.to_owned(),
        }
        .into());
    }
    fchmod(&fd, Mode::from_bits_truncate(mode))
        .map_err(|e| Error::io("set the mode of", dir, e.into()))
}

/// Refuses (as a configuration error, exit 78) a file or folder that group
/// or others may read or write, as ssh does for private keys. `want` is the
/// mode the message suggests.
pub fn check_private(path: &Path, what: &str, want: u32) -> Result<()> {
    let meta = fs::metadata(path).map_err(|e| Error::io("inspect", path, e))?;
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ConfigError::NotPrivate {
            what: what.to_owned(),
            path: path.to_owned(),
            mode,
            want,
        }
        .into());
    }
    Ok(())
}

/// Takes the state folder's exclusive lock (`fluxd.lock`, holding the
/// daemon's pid) for as long as the returned guard lives: two daemons must
/// never write one vault.
pub fn lock_state_dir(state_dir: &Path) -> Result<Flock<File>> {
    let path = flux_vault::layout::StateDir::new(state_dir).lock();
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| Error::io("open lock file", &path, e))?;
    let mut lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        ConfigError::StateFolderInUse {
            state_dir: state_dir.to_owned(),
            lock: path.clone(),
            errno,
        }
    })?;
    let _ = lock.set_len(0);
    let _ = writeln!(&mut *lock, "{}", std::process::id());
    Ok(lock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn own_dir_refuses_folders_others_could_change() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        own_dir(&run, "the runtime folder").unwrap();
        assert_eq!(fs::metadata(&run).unwrap().mode() & 0o777, 0o700);
        fs::set_permissions(&run, fs::Permissions::from_mode(0o777)).unwrap();
        let err = own_dir(&run, "the runtime folder").unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "the runtime folder {} can be written by other users (mode 0777); remove it (fluxd creates it) or choose another folder",
                run.display()
            )
        );
        fs::set_permissions(&run, fs::Permissions::from_mode(0o700)).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&run, &link).unwrap();
        let err = own_dir(&link, "the runtime folder")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "the runtime folder {} is not a folder (a symbolic link or a file); remove it (fluxd creates it) or choose another folder",
                link.display()
            )
        );
        chmod_own_dir(&run, 0o711).unwrap();
        assert_eq!(fs::metadata(&run).unwrap().mode() & 0o777, 0o711);
        assert!(
            chmod_own_dir(&link, 0o700).is_err(),
            "a symlink is not followed"
        );
    }

    #[test]
    fn folders_others_could_change_or_use_are_refused_with_their_messages() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let run = open.join("run");
        let err = own_dir(&run, "the runtime folder").unwrap_err();
        let reason = flux_protocol::trust::Trust::only_me()
            .check_folders(&open)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("the runtime folder {}: {reason}", run.display())
        );
        assert!(err.is_config(), "{err}");

        let state = dir.path().join("state");
        fs::create_dir(&state).unwrap();
        fs::set_permissions(&state, fs::Permissions::from_mode(0o750)).unwrap();
        let err = check_private(&state, "the state folder", 0o700).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "the state folder {0} has mode 0750: it must not be readable or writable by group or others; fix it with: chmod 700 {0}",
                state.display()
            )
        );
        assert!(err.is_config(), "{err}");

        let _held = lock_state_dir(&state).unwrap();
        let err = lock_state_dir(&state).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "another fluxd is using the state folder {} ({}: {}); stop it, or pass another --state-dir",
                state.display(),
                flux_vault::layout::StateDir::new(&state).lock().display(),
                nix::errno::Errno::EWOULDBLOCK
            )
        );
        assert!(err.is_config(), "{err}");
    }

    /// Needs root, to give a folder to another user.
    #[test]
    fn a_folder_of_another_user_keeps_its_mode() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!(
                "SKIPPED: a_folder_of_another_user_keeps_its_mode: needs root to give a folder to another uid"
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let theirs = dir.path().join("theirs");
        fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        let err = chmod_own_dir(&theirs, 0o700).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{} is not owned by fluxd's uid: its mode is left alone",
                theirs.display()
            )
        );
        assert!(err.is_config(), "{err}");
    }
}
