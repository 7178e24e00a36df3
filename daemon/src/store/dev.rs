//! `fluxd dev`: one project served from a `.env` file, on the same socket
//! protocol as production, so function code is identical in both.
//!
//! [`DevStore`] is a [`Store`] whose only project's "vault" is the `.env`
//! file: each load parses the file ([`flux_vault::dotenv`]) and seals it in
//! memory with a key that lives only as long as the process, so the
//! daemon's whole serving path — snapshots, change events, the watcher —
//! is the production one. Writes are refused: the file is the source of
//! truth, and a secret that is not set is answered with a hint to add it
//! to the file ([`Store::not_found_hint`]). A missing file serves no
//! secrets until it appears.
//!
//! Every request re-reads the file first when a `stat` of it differs from
//! the one taken just before it was last read ([`Store::maybe_changed`]):
//! device, inode, size, modification and change time. So a request that
//! starts after a save has returned is answered from what was saved,
//! without waiting for the watcher (which follows the file's folder and
//! tells subscribers). A save can keep the size, the inode (a write in
//! place) and the modification time (`touch -d`, `cp -p`), but not the
//! change time, which only the kernel sets — except within one tick of its
//! coarse clock (1–10 ms). Until the last read started [`RACY`] after the
//! file's change time, the `stat` is not trusted and every request
//! re-reads and hashes the file (the check git makes for "racily clean"
//! files). The bound holds on a local file system whose clock is this
//! machine's; a clock set back can hide a save until the next one. The
//! `stat` costs a few microseconds a request at most (docs/DOTENV.md).
//!
//! A file that cannot be read at all (not UTF-8, too large, not a regular
//! file) is refused at start-up, and found later it makes every request
//! answer `unavailable` with its `file:line:col` until it is fixed
//! ([`Store::keeps_last_good`] is false): the developer is editing the
//! truth, and values the file no longer holds would mislead.
//!
//! A line the parser flags ([`flux_vault::dotenv::Issue`]) never stops the rest
//! of the file from being served: each load of a changed file logs one
//! warning per flagged line (`file:line:col` and why, never a value), serves
//! the flagged lines that have a value as Node's dotenv reads them, and
//! leaves out the lines it cannot serve.
//!
//! Production `fluxd` never reads `.env`: only this store does, and only
//! `fluxd dev` creates it.

use super::{ChangeFeed, Store};
use crate::error::{Error, Location, NotFoundHint, Result};
use flux_vault::dotenv::Options;
use flux_vault::keys::ProjectKey;
use flux_vault::vault::{self, Entry, Secrets};
use sha2::{Digest, Sha256};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::warn;
use zeroize::Zeroizing;

/// Largest `.env` file `fluxd dev` reads.
pub const MAX_ENV_FILE: u64 = 64 * 1024 * 1024;

/// How long after a file's change time its `stat` is not trusted to show
/// the next save: more than one tick of the kernel's coarse clock, which
/// file times come from (at most 10 ms).
pub const RACY: Duration = Duration::from_millis(20);

/// What a `stat` of the `.env` file showed: none when there was no file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat(Option<(u64, u64, u64, i64, i64, i64, i64)>);

impl Stat {
    fn of(path: &Path) -> Self {
        Self(std::fs::metadata(path).ok().map(|m| {
            (
                m.dev(),
                m.ino(),
                m.size(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
            )
        }))
    }

    /// The change time, when there is a file.
    fn changed_at(&self) -> Option<SystemTime> {
        let (.., secs, nanos) = self.0?;
        let secs = u64::try_from(secs).ok()?;
        Some(UNIX_EPOCH + Duration::new(secs, u32::try_from(nanos).ok()?))
    }
}

/// The `stat` taken just before the file was last read, and when.
#[derive(Debug, Clone, Copy)]
struct LastRead {
    stat: Stat,
    at: SystemTime,
}

impl LastRead {
    /// True when a save after that read could have left the same `stat`:
    /// the read started within [`RACY`] of the file's change time.
    fn racy(&self) -> bool {
        self.stat
            .changed_at()
            .is_some_and(|changed| changed + RACY > self.at)
    }
}

/// One project backed by a `.env` file.
#[derive(Debug)]
pub struct DevStore {
    project: String,
    env_file: PathBuf,
    options: Options,
    key: ProjectKey,
    /// The last file contents' hash and the vault sealed from them, so an
    /// unchanged file reloads as unchanged.
    last: Mutex<Option<([u8; 32], Vec<u8>)>>,
    /// The `stat` before the last read: what [`Store::maybe_changed`]
    /// compares with. None before the first read.
    read: Mutex<Option<LastRead>>,
}

impl DevStore {
    /// Serves `project` from `env_file`, read with `options`. A missing
    /// secret's error says to add it to `env_file`
    /// ([`Store::not_found_hint`]).
    pub fn new(project: &str, env_file: &Path, options: Options) -> Self {
        Self {
            project: project.to_owned(),
            env_file: env_file.to_path_buf(),
            options,
            key: ProjectKey::generate(),
            last: Mutex::new(None),
            read: Mutex::new(None),
        }
    }

    /// Reads the file once, as serving it would: a file that cannot be
    /// read at all is a configuration error naming `file:line:col`, so
    /// `fluxd dev` refuses to start rather than serve nothing. A missing
    /// file is fine (nothing is served until it appears).
    pub fn check(&self) -> Result<()> {
        self.load_vault(&self.project).map(drop).map_err(|e| {
            Error::Config(format!(
                "{e}: fluxd dev cannot serve this file; fix it and start again"
            ))
        })
    }

    /// The changes to the `.env` file (its folder is watched, so an editor
    /// that saves by rename is followed).
    pub fn changes(&self) -> Result<ChangeFeed> {
        let folder = self
            .env_file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        super::watch::folders(&[folder])
    }

    /// The `.env` file.
    pub fn env_file(&self) -> &Path {
        &self.env_file
    }

    fn read_only(&self) -> Error {
        Error::BadRequest(format!(
            "fluxd dev serves {} read-only: edit that file; changes are live at once",
            self.env_file.display()
        ))
    }

    fn unknown(&self, project: &str) -> Error {
        Error::UnknownProject(project.to_owned())
    }
}

impl Store for DevStore {
    fn projects(&self) -> Result<Vec<String>> {
        Ok(vec![self.project.clone()])
    }

    fn load_key(&self, project: &str) -> Result<Zeroizing<String>> {
        if project != self.project {
            return Err(self.unknown(project));
        }
        Ok(self.key.to_file_contents("fluxd dev"))
    }

    fn create_key(&self, _project: &str, _key: &ProjectKey) -> Result<()> {
        Err(Error::BadRequest(
            "fluxd dev serves one project from its .env file; run fluxd for more".into(),
        ))
    }

    fn delete_key(&self, _project: &str) -> Result<()> {
        Err(self.read_only())
    }

    fn load_vault(&self, project: &str) -> Result<Option<Vec<u8>>> {
        if project != self.project {
            return Err(self.unknown(project));
        }
        // The stat first: a save between it and the read shows at the next
        // request as a changed stat (re-read, found the same).
        let read = LastRead {
            at: SystemTime::now(),
            stat: Stat::of(&self.env_file),
        };
        *self.read.lock().unwrap_or_else(|e| e.into_inner()) = Some(read);
        // Like a vault: a regular file of bounded size, opened without
        // blocking (a FIFO in its place hangs nothing).
        let bytes = Zeroizing::new(
            flux_vault::files::read_regular(&self.env_file, MAX_ENV_FILE)?.unwrap_or_default(),
        );
        let hash: [u8; 32] = Sha256::digest(&bytes).into();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((h, sealed)) = &*last
            && *h == hash
        {
            return Ok(Some(sealed.clone()));
        }
        let set_at_ms = std::fs::metadata(&self.env_file)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or_else(flux_vault::time::now_ms, |d| d.as_millis() as u64);
        let parsed =
            flux_vault::dotenv::parse(&bytes, &self.env_file.display().to_string(), &self.options)
                .map_err(|e| Error::Config(e.to_string()))?;
        for issue in &parsed.issues {
            warn!("{issue}");
        }
        let secrets: Secrets = parsed
            .entries
            .into_iter()
            .map(|(name, value)| (name, Entry { value, set_at_ms }))
            .collect();
        let sealed = vault::seal(&self.project, &secrets, 0, &self.key)
            .map_err(|e| Error::Internal(e.to_string()))?;
        *last = Some((hash, sealed.clone()));
        Ok(Some(sealed))
    }

    fn vault_exists(&self, project: &str) -> bool {
        project == self.project
    }

    fn store_vault(&self, _project: &str, _ciphertext: &[u8]) -> Result<()> {
        Err(self.read_only())
    }

    fn delete_vault(&self, _project: &str) -> Result<()> {
        Err(self.read_only())
    }

    fn vault_location(&self, _project: &str) -> Location {
        Location::File(self.env_file.clone())
    }

    fn key_location(&self, _project: &str) -> Location {
        Location::Memory("fluxd dev: a key held in memory")
    }

    fn check_key_private(&self, _project: &str) -> Result<()> {
        Ok(())
    }

    fn maybe_changed(&self, project: &str) -> bool {
        if project != self.project {
            return false;
        }
        let last = *self.read.lock().unwrap_or_else(|e| e.into_inner());
        match last {
            Some(last) => last.racy() || Stat::of(&self.env_file) != last.stat,
            None => true,
        }
    }

    fn keeps_last_good(&self) -> bool {
        false
    }

    /// Dev mode refuses `fluxctl secrets set`: a missing secret is added
    /// to the file.
    fn not_found_hint(&self) -> NotFoundHint {
        NotFoundHint::EnvFile(self.env_file.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_at(changed: Duration, read: Duration) -> LastRead {
        let secs = i64::try_from(changed.as_secs()).unwrap();
        let nanos = i64::from(changed.subsec_nanos());
        LastRead {
            stat: Stat(Some((1, 2, 3, secs, nanos, secs, nanos))),
            at: UNIX_EPOCH + read,
        }
    }

    #[test]
    fn a_read_within_a_clock_tick_of_the_change_is_not_trusted() {
        let changed = Duration::from_secs(1_764_000_000);
        assert!(read_at(changed, changed).racy());
        assert!(read_at(changed, changed + Duration::from_millis(5)).racy());
        assert!(!read_at(changed, changed + RACY).racy());
        assert!(!read_at(changed, changed + Duration::from_secs(60)).racy());
        // No file: nothing to re-read until one appears.
        let none = LastRead {
            stat: Stat(None),
            at: UNIX_EPOCH,
        };
        assert!(!none.racy());
    }

    #[test]
    fn a_save_that_keeps_size_inode_and_mtime_still_changes_the_stat() {
        let dir = tempfile::tempdir().unwrap();
        let env = dir.path().join(".env");
        std::fs::write(&env, "A=1\n").unwrap();
        let mtime = std::fs::metadata(&env).unwrap().modified().unwrap();
        // Read once the change time is past the racy window: the stat is
        // trusted.
        std::thread::sleep(RACY);
        let store = DevStore::new("app", &env, Options::default());
        store.load_vault("app").unwrap();
        assert!(!store.maybe_changed("app"), "nothing changed");
        let before = Stat::of(&env).0.unwrap();
        // Same size, in place, modification time put back (`cp -p`).
        std::fs::write(&env, "A=2\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&env)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let after = Stat::of(&env).0.unwrap();
        assert_eq!(
            (before.0, before.1, before.2, before.3, before.4),
            (after.0, after.1, after.2, after.3, after.4),
            "device, inode, size and modification time kept"
        );
        assert!(store.maybe_changed("app"), "the change time tells");
    }
}
