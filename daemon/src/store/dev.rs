//! `fluxd dev`: one project served from a `.env` file, on the same socket
//! protocol as production, so function code is identical in both.
//!
//! [`DevStore`] is a [`Store`] whose only project's "vault" is the `.env`
//! file: each load parses the file ([`flux_vault::dotenv`]) and seals it in
//! memory with a key that lives only as long as the process, so the
//! daemon's whole serving path — snapshots, change events, the watcher —
//! is the production one. The watcher follows the file's folder, so an
//! edit is live on the next `get`. Writes are refused: the file is the
//! source of truth. A missing file serves no secrets until it appears.
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
use crate::error::{Error, Location, Result};
use flux_vault::dotenv::Options;
use flux_vault::keys::ProjectKey;
use flux_vault::vault::{self, Entry, Secrets};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::UNIX_EPOCH;
use tracing::warn;
use zeroize::Zeroizing;

/// Largest `.env` file `fluxd dev` reads.
pub const MAX_ENV_FILE: u64 = 64 * 1024 * 1024;

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
}

impl DevStore {
    /// Serves `project` from `env_file`, read with `options`. From then
    /// on a missing secret's error says to add it to `env_file`.
    pub fn new(project: &str, env_file: &Path, options: Options) -> Self {
        crate::error::hint_env_file(env_file);
        Self {
            project: project.to_owned(),
            env_file: env_file.to_path_buf(),
            options,
            key: ProjectKey::generate(),
            last: Mutex::new(None),
        }
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
            .map_or_else(vault::now_ms, |d| d.as_millis() as u64);
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
}
