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
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
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
    use std::os::unix::fs::MetadataExt;

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
    fn ensure_private_dir_uses_0700() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        ensure_private_dir(&sub).unwrap();
        assert_eq!(fs::metadata(&sub).unwrap().mode() & 0o777, 0o700);
    }
}
