//! How a rendered file reaches disk: atomically, durably, and never
//! readable by more than asked for, even for a moment.
//!
//! A temp file `.<name>.<16 hex>.tmp` is created in the output's own
//! folder with `O_CREAT|O_EXCL|O_NOFOLLOW` and the final mode (the umask
//! can only narrow it), given its owner (`fchown`) and then exactly its
//! mode (`fchmod`, so the umask does not narrow the result either) before
//! its first byte; then the bytes, `fsync`, `rename` over the output,
//! `fsync` of the folder. A crash at any instant leaves the previous file
//! whole (and perhaps a temp file, private like the output, which the next
//! render removes). A failure removes the temp file.
//!
//! Errors name paths and the OS's reason, never the contents.

use crate::failure::{EXIT_DENIED, EXIT_FAILURE, Failure};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where and how the output is written.
#[derive(Debug, Clone)]
pub(crate) struct Output {
    pub path: PathBuf,
    /// Permission bits, never any for others.
    pub mode: u32,
    /// `--owner`: uid and gid to give the file (`None`: leave as created).
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

impl Output {
    /// The folder the output is in (`.` for a bare file name).
    fn dir(&self) -> &Path {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        }
    }

    fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// True when `name` is one of this output's temp files.
    fn is_temp(&self, name: &str) -> bool {
        let Some(rest) = name
            .strip_prefix('.')
            .and_then(|n| n.strip_prefix(self.file_name().as_str()))
            .and_then(|n| n.strip_prefix('.'))
            .and_then(|n| n.strip_suffix(".tmp"))
        else {
            return false;
        };
        rest.len() == 16 && rest.bytes().all(|b| b.is_ascii_hexdigit())
    }

    /// Removes temp files of this output a crash left behind.
    pub(crate) fn remove_stale(&self) {
        let Ok(entries) = fs::read_dir(self.dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name.to_str().is_some_and(|n| self.is_temp(n))
                && entry.file_type().is_ok_and(|t| t.is_file())
            {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    /// Writes `bytes` as the output (see the module docs).
    pub(crate) fn write(&self, bytes: &[u8]) -> Result<(), Failure> {
        if self.path.file_name().is_none() {
            return Err(Failure::usage(format!(
                "cannot write {}: not a file name",
                self.path.display()
            )));
        }
        let dir = self.dir();
        let (tmp, mut file) = self.create_temp(dir)?;
        let result = self.fill(&tmp, &mut file, bytes);
        drop(file);
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        if let Err(e) = fs::rename(&tmp, &self.path) {
            let _ = fs::remove_file(&tmp);
            return Err(fail("rename a temp file over", &self.path, &e));
        }
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| fail("fsync folder", dir, &e))
    }

    fn create_temp(&self, dir: &Path) -> Result<(PathBuf, File), Failure> {
        let name = self.file_name();
        for _ in 0..16 {
            let mut random = [0u8; 8];
            getrandom::fill(&mut random)
                .map_err(|e| Failure::general(format!("cannot draw random bytes: {e}")))?;
            let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
            let tmp = dir.join(format!(".{name}.{hex}.tmp"));
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(self.mode)
                .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
                .open(&tmp)
            {
                Ok(file) => return Ok((tmp, file)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(fail("create a temp file in", dir, &e)),
            }
        }
        Err(Failure::general(format!(
            "cannot create a temp file in {}: every name tried exists",
            dir.display()
        )))
    }

    /// Owner, mode, bytes, fsync.
    fn fill(&self, tmp: &Path, file: &mut File, bytes: &[u8]) -> Result<(), Failure> {
        if self.uid.is_some() || self.gid.is_some() {
            std::os::unix::fs::fchown(&*file, self.uid, self.gid)
                .map_err(|e| fail("give the owner asked for (--owner) to", tmp, &e))?;
        }
        file.set_permissions(fs::Permissions::from_mode(self.mode))
            .map_err(|e| fail("set the mode of", tmp, &e))?;
        file.write_all(bytes).map_err(|e| fail("write", tmp, &e))?;
        file.sync_all().map_err(|e| fail("fsync", tmp, &e))
    }
}

fn fail(action: &str, path: &Path, e: &std::io::Error) -> Failure {
    let exit = if e.kind() == std::io::ErrorKind::PermissionDenied {
        EXIT_DENIED
    } else {
        EXIT_FAILURE
    };
    Failure::new(exit, format!("cannot {action} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn output(dir: &Path, mode: u32) -> Output {
        Output {
            path: dir.join("out.conf"),
            mode,
            uid: None,
            gid: None,
        }
    }

    #[test]
    fn writes_with_exactly_the_mode_asked_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = output(dir.path(), 0o640);
        out.write(b"one").unwrap();
        out.write(b"two").unwrap();
        assert_eq!(fs::read(&out.path).unwrap(), b"two");
        assert_eq!(fs::metadata(&out.path).unwrap().mode() & 0o7777, 0o640);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn stale_temp_files_of_this_output_only_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let out = output(dir.path(), 0o600);
        let stale = dir.path().join(".out.conf.0123456789abcdef.tmp");
        let other = dir.path().join(".other.0123456789abcdef.tmp");
        let odd = dir.path().join(".out.conf.x.tmp");
        for p in [&stale, &other, &odd] {
            fs::write(p, "x").unwrap();
        }
        out.remove_stale();
        assert!(!stale.exists());
        assert!(other.exists() && odd.exists());
    }
}
