//! File-system helpers with the durability rules every write follows.
//!
//! [`write_atomic`] is how a vault or key reaches disk: a temp file in the
//! same folder (mode 0600, holding only ciphertext or a key), `fsync`,
//! `rename` over the target, `fsync` of the folder. A crash at any instant
//! leaves the old file or the new one, never a torn one, and once it returns
//! the new file survives power loss. Temp files start with `.` and end in
//! `.tmp` ([`is_temp_file`]), so the watcher and the project scan pass them
//! over. [`write_new`] creates a file that must not exist yet the same way,
//! with a hard link in place of the rename. [`read_regular`] is how a file
//! someone else may have replaced is read.

use std::fs::{self, DirBuilder, File};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A file operation that failed: what, where, and the OS's reason. Never
/// holds file contents.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}: {source}", path.display())]
pub struct FileError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl FileError {
    fn new(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    /// True when the failure is that the file already exists.
    pub fn already_exists(&self) -> bool {
        self.source.kind() == std::io::ErrorKind::AlreadyExists
    }
}

/// Results of this module.
pub type Result<T, E = FileError> = std::result::Result<T, E>;

/// Creates `dir` (and parents) with mode 0700 when missing.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| FileError::new("create folder", dir, e))
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
    let entries = fs::read_dir(dir).map_err(|e| FileError::new("read folder", dir, e))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if is_temp_file(name) {
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
    let (dir, mut tmp) = temp_file_for(path, mode)?;
    tmp.write_all(bytes)
        .map_err(|e| FileError::new("write", tmp.path(), bare(e)))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| FileError::new("fsync", tmp.path(), bare(e)))?;
    tmp.persist(path)
        .map_err(|e| FileError::new("rename a temp file over", path, bare(e.error)))?;
    sync_dir(dir)
}

/// A temp file beside `path`, named as [`is_temp_file`] recognizes, with
/// mode `mode` from before its first byte.
fn temp_file_for(path: &Path, mode: u32) -> Result<(&Path, tempfile::NamedTempFile)> {
    let dir = folder_of(path).ok_or_else(|| {
        FileError::new(
            "write",
            path,
            std::io::Error::other("the path has no parent folder"),
        )
    })?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{file_name}."))
        .suffix(TEMP_SUFFIX)
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(|e| FileError::new("create a temp file in", dir, bare(e)))?;
    Ok((dir, tmp))
}

/// Writes a new file at `path` atomically and durably, never replacing one
/// that exists (`AlreadyExists` then): a temp file, `fsync`, a hard link to
/// `path`, the temp file removed, the folder `fsync`ed. A failure at any
/// point (a full disk) leaves no file at `path`.
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let (dir, mut tmp) = temp_file_for(path, mode)?;
    tmp.write_all(bytes)
        .map_err(|e| FileError::new("write", tmp.path(), bare(e)))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| FileError::new("fsync", tmp.path(), bare(e)))?;
    fs::hard_link(tmp.path(), path).map_err(|e| FileError::new("create", path, e))?;
    drop(tmp);
    sync_dir(dir)
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
        Err(e) => return Err(FileError::new("open", path, e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| FileError::new("inspect", path, e))?;
    if !meta.file_type().is_file() {
        return Err(FileError::new(
            "read",
            path,
            std::io::Error::other("not a regular file (a FIFO, device, socket or folder): refused"),
        ));
    }
    if meta.len() > max {
        return Err(FileError::new(
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
        .map_err(|e| FileError::new("read", path, e))?;
    if bytes.len() as u64 > max {
        return Err(FileError::new(
            "read",
            path,
            std::io::Error::other(format!("the file grew past the {max} bytes it may be")),
        ));
    }
    Ok(Some(bytes))
}

/// The folder `path` is in: `.` for a bare file name (`Path::parent` gives
/// an empty path there, which cannot be opened), `None` for `/` or an
/// empty path.
fn folder_of(path: &Path) -> Option<&Path> {
    path.parent().map(current_if_empty)
}

/// `.` for an empty path, which names the current folder as a parent but
/// cannot be opened.
fn current_if_empty(dir: &Path) -> &Path {
    if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }
}

/// `fsync`s a folder, making renames and removals in it durable. An empty
/// path (the parent of a bare file name) is the current folder.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let dir = current_if_empty(dir);
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| FileError::new("fsync folder", dir, e))
}

/// Removes `path` if it exists and makes the removal durable.
pub fn remove_durably(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(FileError::new("remove", path, e)),
    }
    match folder_of(path) {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

/// Most bytes [`shred_durably`] overwrites: key files and records are
/// small; anything larger is removed without being overwritten.
const MAX_SHRED: u64 = 1024 * 1024;

/// Overwrites a small regular file with zeros in place, `fsync`s it, then
/// removes it durably ([`remove_durably`]): what a project key file gets on
/// delete, so that its blocks, once freed, no longer hold the key (the
/// folder's other copies, vaults, are ciphertext that key opened). A
/// symbolic link or special file in its place is removed, never written
/// through. What a file system keeps elsewhere — a data journal, copy-on-
/// write snapshots, an SSD's remapped blocks — is beyond a rewrite:
/// docs/DEPLOY.md says so.
pub fn shred_durably(path: &Path) -> Result<()> {
    use std::io::{Seek, SeekFrom};
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .write(true)
        .custom_flags((nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK).bits())
        .open(path);
    match file {
        Ok(mut file) => {
            let meta = file
                .metadata()
                .map_err(|e| FileError::new("inspect", path, e))?;
            if meta.file_type().is_file() && meta.len() <= MAX_SHRED {
                let zeros = vec![0u8; meta.len() as usize];
                file.seek(SeekFrom::Start(0))
                    .and_then(|_| file.write_all(&zeros))
                    .and_then(|()| file.sync_all())
                    .map_err(|e| FileError::new("overwrite", path, e))?;
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        // A link (ELOOP) or something that cannot be opened for writing:
        // removed below without being written through.
        Err(_) => {}
    }
    remove_durably(path)
}

/// The suffix of every temp file a write leaves while in flight.
pub const TEMP_SUFFIX: &str = ".tmp";

/// True for the names [`write_atomic`] and [`write_new`] give their temp
/// files (`.<name>.<random>.tmp`): the one rule the folder watcher, the
/// project scan and the clean-up at start-up share. `..data` (a Kubernetes
/// volume's link) and other dot files are not temp files.
pub fn is_temp_file(name: &str) -> bool {
    name.starts_with('.') && !name.starts_with("..") && name.ends_with(TEMP_SUFFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shredded_file_is_zeroed_before_it_goes_and_a_link_is_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("app.key");
        fs::write(&key, b"AGE-SECRET-KEY-1SECRET").unwrap();
        // Another name for the same inode shows what its blocks hold after.
        let witness = dir.path().join("witness");
        fs::hard_link(&key, &witness).unwrap();
        shred_durably(&key).unwrap();
        assert!(!key.exists());
        assert_eq!(fs::read(&witness).unwrap(), vec![0u8; 22]);
        let target = dir.path().join("target");
        fs::write(&target, b"keep me").unwrap();
        let link = dir.path().join("link.key");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        shred_durably(&link).unwrap();
        assert!(fs::symlink_metadata(&link).is_err());
        assert_eq!(fs::read(&target).unwrap(), b"keep me");
        shred_durably(&dir.path().join("absent")).unwrap();
    }
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
    fn temp_files_are_recognized_by_one_rule() {
        assert!(is_temp_file(".app.age.x1Y2.tmp"));
        for name in ["..data", ".env", "app.age", "x.tmp", "..2026_11_01.tmp"] {
            assert!(!is_temp_file(name), "{name}");
        }
    }

    #[test]
    fn write_errors_name_the_path_once() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no/such/dir/v.age");
        let msg = write_atomic(&missing, b"x", 0o600).unwrap_err().to_string();
        assert_eq!(msg.matches("no/such/dir").count(), 1, "{msg}");
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
        assert!(err.already_exists(), "{err}");
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
    fn a_bare_file_name_is_in_the_current_folder() {
        assert_eq!(folder_of(Path::new("v.age")), Some(Path::new(".")));
        assert_eq!(folder_of(Path::new("out/v.age")), Some(Path::new("out")));
        assert_eq!(folder_of(Path::new("/v.age")), Some(Path::new("/")));
        assert_eq!(folder_of(Path::new("/")), None);
        // What `fsync`ing the parent of a bare file name does.
        sync_dir(Path::new("")).unwrap();
    }

    #[test]
    fn ensure_private_dir_uses_0700() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        ensure_private_dir(&sub).unwrap();
        assert_eq!(fs::metadata(&sub).unwrap().mode() & 0o777, 0o700);
    }
}
