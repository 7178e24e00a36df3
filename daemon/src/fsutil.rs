//! File-system helpers with the durability rules every write follows.
//!
//! [`write_atomic`] is how a vault or key reaches disk: a temp file in the
//! same folder (mode 0600, holding only ciphertext or a key), `fsync`,
//! `rename` over the target, `fsync` of the folder. A crash at any instant
//! leaves the old file or the new one, never a torn one, and once it returns
//! the new file survives power loss. Temp files start with `.` and end in
//! `.tmp`, so the watcher and the project scan pass them over.

use crate::error::{Error, Result};
use std::fs::{self, DirBuilder, File};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` (and parents) with mode 0700 when missing.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io("create folder", dir, e))
}

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
    ensure_private_dir(dir)?;
    let meta = fs::symlink_metadata(dir).map_err(|e| Error::io("inspect", dir, e))?;
    let me = nix::unistd::geteuid().as_raw();
    let refuse = |why: String| {
        Error::Config(format!(
            "{what} {} {why}; remove it (fluxd creates it) or choose another folder",
            dir.display()
        ))
    };
    if meta.file_type().is_symlink() || !meta.is_dir() {
        return Err(refuse("is not a folder (a symbolic link or a file)".into()));
    }
    if meta.uid() != me {
        return Err(refuse(format!(
            "is owned by uid {}, not by fluxd's uid {me}: another user may have created it",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(refuse(format!(
            "can be written by other users (mode {:04o})",
            meta.mode() & 0o777
        )));
    }
    if let Some(parent) = dir.parent() {
        flux_protocol::trust::Trust::only_me()
            .check_folders(parent)
            .map_err(|e| Error::Config(format!("{what} {}: {e}", dir.display())))?;
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
        return Err(Error::Config(format!(
            "{} is not owned by fluxd's uid: its mode is left alone",
            dir.display()
        )));
    }
    fchmod(&fd, Mode::from_bits_truncate(mode))
        .map_err(|e| Error::io("set the mode of", dir, e.into()))
}

/// The OS error alone: tempfile's errors repeat the path, which the caller
/// already names.
fn bare(e: std::io::Error) -> std::io::Error {
    if let Some(code) = e.raw_os_error() {
        return std::io::Error::from_raw_os_error(code);
    }
    let text = e.to_string();
    match text.rfind(" at path \"") {
        Some(at) => std::io::Error::new(e.kind(), text[..at].to_owned()),
        None => e,
    }
}

/// Removes temp files a crash left behind in `dir` (fluxd's own:
/// `.<name>.<random>.tmp`; never `..data` or other dot files). They hold
/// only ciphertext, and no write is in flight at start-up. Returns how many
/// were removed.
pub fn remove_stale_temp_files(dir: &Path) -> Result<usize> {
    let mut removed = 0;
    let entries = fs::read_dir(dir).map_err(|e| Error::io("read folder", dir, e))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') && !name.starts_with("..") && name.ends_with(".tmp") {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_file()) && fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// Writes `bytes` to `path` atomically and durably (see the module docs).
/// The file gets mode `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| Error::Internal(format!("{} has no parent folder", path.display())))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{file_name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| Error::io("create a temp file in", dir, bare(e)))?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io("set the mode of", tmp.path(), e))?;
    tmp.write_all(bytes)
        .map_err(|e| Error::io("write", tmp.path(), bare(e)))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io("fsync", tmp.path(), bare(e)))?;
    tmp.persist(path)
        .map_err(|e| Error::io("rename a temp file over", path, bare(e.error)))?;
    sync_dir(dir)
}

/// Writes a new file at `path` atomically and durably, never replacing one
/// that exists (`AlreadyExists` then): a temp file, `fsync`, a hard link to
/// `path`, the temp file removed, the folder `fsync`ed. A failure at any
/// point (a full disk) leaves no file at `path`.
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("no parent folder"))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{file_name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(bare)?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))?;
    tmp.write_all(bytes).map_err(bare)?;
    tmp.as_file().sync_all().map_err(bare)?;
    fs::hard_link(tmp.path(), path)?;
    drop(tmp);
    File::open(dir).and_then(|d| d.sync_all())
}

/// Reads a file that must be a regular file of at most `max` bytes;
/// `Ok(None)` when there is none. It is opened without blocking (a FIFO or
/// a device planted in its place cannot hang the daemon), checked with
/// `fstat` before a byte is read (a special file or a 4 GiB sparse file is
/// refused, not read), and read no further than `max`. A symbolic link is
/// followed — Kubernetes-style `..data` swaps rely on it — but what it
/// leads to must pass the same checks.
pub fn read_regular(path: &Path, max: u64) -> Result<Option<Vec<u8>>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("open", path, e)),
    };
    let meta = file.metadata().map_err(|e| Error::io("inspect", path, e))?;
    if !meta.file_type().is_file() {
        return Err(Error::io(
            "read",
            path,
            std::io::Error::other("not a regular file (a FIFO, device, socket or folder): refused"),
        ));
    }
    if meta.len() > max {
        return Err(Error::io(
            "read",
            path,
            std::io::Error::other(format!(
                "the file is {} bytes, over the {max} bytes it may be: refused",
                meta.len()
            )),
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("read", path, e))?;
    if bytes.len() as u64 > max {
        return Err(Error::io(
            "read",
            path,
            std::io::Error::other(format!("the file grew past the {max} bytes it may be")),
        ));
    }
    Ok(Some(bytes))
}

/// `fsync`s a folder, making renames and removals in it durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync folder", dir, e))
}

/// Removes `path` if it exists and makes the removal durable.
pub fn remove_durably(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("remove", path, e)),
    }
    match path.parent() {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

/// Refuses (as a configuration error, exit 78) a file or folder that group
/// or others may read or write, as ssh does for private keys. `want` is the
/// mode the message suggests.
pub fn check_private(path: &Path, what: &str, want: u32) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(path).map_err(|e| Error::io("inspect", path, e))?;
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::Config(format!(
            "{what} {} has mode {mode:04o}: it must not be readable or writable by group or others; fix it with: chmod {want:o} {}",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

/// True for the names `write_atomic` gives its temp files, and other dot
/// files that are never vaults or keys.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.age");
        write_atomic(&path, b"one", 0o600).unwrap();
        write_atomic(&path, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temp file left behind");
    }

    #[test]
    fn stale_temp_files_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            ".app.age.x1Y2.tmp",
            ".key.key.abc.tmp",
            "app.age",
            "..data",
            ".env",
            "x.tmp",
        ] {
            fs::write(dir.path().join(f), "").unwrap();
        }
        assert_eq!(remove_stale_temp_files(dir.path()).unwrap(), 2);
        let mut left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["..data", ".env", "app.age", "x.tmp"]);
    }

    #[test]
    fn write_errors_name_the_path_once() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no/such/dir/v.age");
        let msg = write_atomic(&missing, b"x", 0o600).unwrap_err().to_string();
        assert_eq!(msg.matches("no/such/dir").count(), 1, "{msg}");
    }

    #[test]
    fn own_dir_refuses_folders_others_could_change() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        own_dir(&run, "the runtime folder").unwrap();
        assert_eq!(fs::metadata(&run).unwrap().mode() & 0o777, 0o700);
        fs::set_permissions(&run, fs::Permissions::from_mode(0o777)).unwrap();
        let err = own_dir(&run, "the runtime folder").unwrap_err().to_string();
        assert!(err.contains("can be written by other users"), "{err}");
        fs::set_permissions(&run, fs::Permissions::from_mode(0o700)).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&run, &link).unwrap();
        let err = own_dir(&link, "the runtime folder")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a folder"), "{err}");
        chmod_own_dir(&run, 0o711).unwrap();
        assert_eq!(fs::metadata(&run).unwrap().mode() & 0o777, 0o711);
        assert!(
            chmod_own_dir(&link, 0o700).is_err(),
            "a symlink is not followed"
        );
    }

    #[test]
    fn read_regular_refuses_special_and_oversized_files() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("v.age");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let err = read_regular(&fifo, 1024).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        let big = dir.path().join("big.age");
        let f = File::create(&big).unwrap();
        f.set_len(4 << 30).unwrap();
        let err = read_regular(&big, 1024).unwrap_err().to_string();
        assert!(err.contains("4294967296 bytes"), "{err}");
        assert!(read_regular(&dir.path().join("none"), 1).unwrap().is_none());
        fs::write(&big, b"ok").unwrap();
        assert_eq!(read_regular(&big, 2).unwrap().unwrap(), b"ok");
    }

    #[test]
    fn write_new_never_replaces_and_leaves_nothing_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.key");
        write_new(&path, b"one", 0o600).unwrap();
        let err = write_new(&path, b"two", 0o600).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"one");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
        assert!(write_new(&dir.path().join("no/such/p.key"), b"x", 0o600).is_err());
    }

    #[test]
    fn ensure_private_dir_uses_0700() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        ensure_private_dir(&sub).unwrap();
        assert_eq!(fs::metadata(&sub).unwrap().mode() & 0o777, 0o700);
    }
}
