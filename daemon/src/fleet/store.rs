//! [`EtcdStore`]: project keys and sealed vaults kept in etcd, with a sealed
//! copy on local disk that serves while etcd is unreachable.
//!
//! Keys are laid out as [`super::layout`] says (see `docs/FLEET.md`).
//! etcd only ever holds ciphertext: vaults are the same age files the local
//! store writes, and a project key is stored once per host, wrapped to that
//! host's own age identity (`<state>/host.key`).
//!
//! Reads come from an in-memory cache mirrored to `<state>/fleet/`
//! (`vaults/<name>.age`, `keys/<name>.key`, both mode 0600, the key still
//! wrapped): the watcher ([`super::watch`]) keeps it current, so a get
//! never waits on etcd and a restart during an outage still serves. Writes
//! go to etcd first and are compared on the vault key's mod_revision.

use super::etcd::{self, Etcd, EtcdError, Kv, WatchEvent};
use super::identity::{host_identity, parse_recipient, wrap_for};
use super::layout::{EtcdKey, HOSTS, PROJECTS, host_key, project_prefix, vault_key, wrapped_key};
use crate::error::{Error, Location, Result, Unavailable};
use crate::store::Store;
use crate::store::local::{MAX_KEY_FILE, MAX_VAULT_FILE, names_in};
use flux_vault::files::{ensure_private_dir, read_regular, remove_durably, write_atomic};
use flux_vault::keys::ProjectKey;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tracing::{info, warn};
use zeroize::Zeroizing;

/// The cache of what etcd holds for this host.
#[derive(Debug, Default)]
struct Cache {
    /// The last etcd revision applied.
    revision: i64,
    /// Vault ciphertext and its mod_revision (0: read from the local copy).
    vaults: BTreeMap<String, (Vec<u8>, i64)>,
    /// This host's wrapped copy of each project key.
    keys: BTreeMap<String, Vec<u8>>,
    /// Why etcd cannot be reached, while it cannot.
    outage: Option<String>,
}

/// What changed when etcd data was applied to the cache.
#[derive(Debug, Default)]
pub struct Applied {
    /// Projects whose key or vault changed.
    pub changed: BTreeSet<String>,
    /// Projects this host no longer holds a key for.
    pub gone: BTreeSet<String>,
}

/// The etcd store. See the module docs.
#[derive(Debug)]
pub struct EtcdStore {
    etcd: Etcd,
    host: Arc<ProjectKey>,
    me: String,
    dir: PathBuf,
    cache: Mutex<Cache>,
    /// Local-copy writes not yet made: (file, new contents or removal).
    pending: Mutex<Vec<(PathBuf, Option<Vec<u8>>)>>,
    flushing: Mutex<()>,
}

fn sha(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl EtcdStore {
    /// Opens the store: this host's identity and the local sealed copy
    /// under `state_dir`. Nothing is read from etcd yet ([`Self::resync`]).
    pub fn open(state_dir: &Path, endpoints: Vec<String>) -> Result<Self> {
        let host = host_identity(&state_dir.join("host.key"))?;
        let dir = state_dir.join("fleet");
        ensure_private_dir(&dir)?;
        ensure_private_dir(&dir.join("vaults"))?;
        ensure_private_dir(&dir.join("keys"))?;
        let mut cache = Cache::default();
        for name in names_in(&dir.join("keys"), ".key")? {
            let path = dir.join("keys").join(format!("{name}.key"));
            let key = read_regular(&path, MAX_KEY_FILE)?
                .ok_or_else(|| Error::io("read", &path, std::io::ErrorKind::NotFound.into()))?;
            cache.keys.insert(name.clone(), key);
            let vault = dir.join("vaults").join(format!("{name}.age"));
            if let Ok(Some(v)) = read_regular(&vault, MAX_VAULT_FILE) {
                cache.vaults.insert(name, (v, 0));
            }
        }
        Ok(Self {
            etcd: Etcd::new(endpoints),
            me: host.recipient().to_string(),
            host: Arc::new(host),
            dir,
            cache: Mutex::new(cache),
            pending: Mutex::new(Vec::new()),
            flushing: Mutex::new(()),
        })
    }

    /// This host's age recipient.
    pub fn recipient(&self) -> &str {
        &self.me
    }

    /// This host's identity, to unwrap project keys.
    pub fn host(&self) -> &ProjectKey {
        &self.host
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The last etcd revision applied.
    pub fn revision(&self) -> i64 {
        self.cache().revision
    }

    /// Records that etcd answered, or why it did not.
    pub fn set_outage(&self, outage: Option<String>) {
        let mut cache = self.cache();
        match (&cache.outage, &outage) {
            (None, Some(e)) => {
                warn!(error = %e, "etcd is unreachable; serving the last good vaults")
            }
            (Some(_), None) => info!("etcd is reachable again"),
            _ => {}
        }
        cache.outage = outage;
    }

    /// Maps an etcd failure to a daemon error, noting the outage.
    pub(super) fn fail(&self, e: EtcdError) -> Error {
        if e.is_unreachable() {
            self.set_outage(Some(e.to_string()));
        }
        Error::Unavailable(Unavailable::Store(e.to_string()))
    }

    /// A transaction, its failure mapped ([`Self::fail`]).
    pub(super) fn txn(
        &self,
        compare: Vec<serde_json::Value>,
        success: Vec<serde_json::Value>,
        failure: Vec<serde_json::Value>,
    ) -> Result<(bool, i64, Vec<serde_json::Value>)> {
        self.etcd
            .txn(compare, success, failure)
            .map_err(|e| self.fail(e))
    }

    /// Everything under `prefix`, its failure mapped ([`Self::fail`]).
    pub(super) fn range_prefix(&self, prefix: &str) -> Result<(i64, Vec<Kv>)> {
        self.etcd.range_prefix(prefix).map_err(|e| self.fail(e))
    }

    /// The etcd endpoints, for messages.
    pub fn endpoints(&self) -> String {
        self.etcd.endpoints()
    }

    /// Follows `prefix` from `start` (see [`Etcd::watch`]).
    pub(super) fn watch(
        &self,
        prefix: &str,
        start: i64,
        on_message: impl FnMut(etcd::WatchMessage) -> bool,
    ) -> std::result::Result<(), EtcdError> {
        self.etcd.watch(prefix, start, on_message)
    }

    fn vault_file(&self, name: &str) -> PathBuf {
        self.dir.join("vaults").join(format!("{name}.age"))
    }

    fn key_file(&self, name: &str) -> PathBuf {
        self.dir.join("keys").join(format!("{name}.key"))
    }

    /// Queues a change to the local copy; [`Self::flush`] writes it.
    fn persist_vault(&self, name: &str, bytes: Option<&[u8]>) {
        let path = self.vault_file(name);
        self.queue(path, bytes);
    }

    fn persist_key(&self, name: &str, bytes: Option<&[u8]>) {
        let path = self.key_file(name);
        self.queue(path, bytes);
    }

    fn queue(&self, path: PathBuf, bytes: Option<&[u8]>) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((path, bytes.map(<[u8]>::to_vec)));
    }

    /// Writes the queued changes to the local copy, durably, in order. The
    /// watcher calls it after the new vaults are swapped in, so the disk
    /// adds no latency to propagation.
    pub fn flush(&self) {
        // One flush at a time, so writes land in the order they were queued.
        let _flushing = self.flushing.lock().unwrap_or_else(|e| e.into_inner());
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        for (path, bytes) in pending {
            let result = match bytes {
                Some(b) => write_atomic(&path, &b, 0o600),
                None if path.exists() => remove_durably(&path),
                None => Ok(()),
            };
            if let Err(e) = result {
                warn!(error = %e, "cannot update the local sealed copy");
            }
        }
    }

    /// Sets a vault in the cache (and on disk) when `revision` is newer.
    fn put_vault(&self, cache: &mut Cache, name: &str, bytes: &[u8], revision: i64) -> bool {
        match cache.vaults.get(name) {
            Some((_, known)) if *known > revision && *known != 0 => return false,
            Some((old, _)) if old == bytes => {
                cache
                    .vaults
                    .insert(name.to_owned(), (bytes.to_vec(), revision));
                return false;
            }
            _ => {}
        }
        cache
            .vaults
            .insert(name.to_owned(), (bytes.to_vec(), revision));
        self.persist_vault(name, Some(bytes));
        true
    }

    fn put_key(&self, cache: &mut Cache, name: &str, bytes: &[u8]) -> bool {
        if cache.keys.get(name).map(Vec::as_slice) == Some(bytes) {
            return false;
        }
        cache.keys.insert(name.to_owned(), bytes.to_vec());
        self.persist_key(name, Some(bytes));
        true
    }

    /// Replaces the whole cache with a full read of etcd. Returns what
    /// changed.
    pub fn resync(&self) -> std::result::Result<Applied, EtcdError> {
        let (revision, kvs) = self.etcd.range_prefix(PROJECTS)?;
        let mut vaults = BTreeMap::new();
        let mut keys = BTreeMap::new();
        for kv in kvs {
            match EtcdKey::parse(&kv.key) {
                Some(EtcdKey::Vault(p)) => {
                    vaults.insert(p, (kv.value, kv.mod_revision));
                }
                Some(EtcdKey::Key { project, host }) if host == self.me => {
                    keys.insert(project, kv.value);
                }
                _ => {}
            }
        }
        let mut applied = Applied::default();
        let mut cache = self.cache();
        let known: BTreeSet<String> = cache
            .keys
            .keys()
            .chain(cache.vaults.keys())
            .cloned()
            .collect();
        for name in known {
            if !keys.contains_key(&name) {
                cache.keys.remove(&name);
                cache.vaults.remove(&name);
                self.persist_key(&name, None);
                self.persist_vault(&name, None);
                applied.gone.insert(name);
            }
        }
        for (name, key) in &keys {
            if self.put_key(&mut cache, name, key) {
                applied.changed.insert(name.clone());
            }
            if let Some((bytes, rev)) = vaults.get(name) {
                let same = cache.vaults.get(name).is_some_and(|(old, _)| old == bytes);
                if !same {
                    applied.changed.insert(name.clone());
                    self.persist_vault(name, Some(bytes));
                }
                cache.vaults.insert(name.clone(), (bytes.clone(), *rev));
            }
        }
        cache.revision = revision;
        drop(cache);
        self.flush();
        Ok(applied)
    }

    /// Applies watch events of `revision` to the cache; the local copy is
    /// written by the next [`Self::flush`].
    pub fn apply(&self, revision: i64, events: Vec<WatchEvent>) -> Applied {
        let mut applied = Applied::default();
        let mut cache = self.cache();
        for event in events {
            let (put, key) = match event {
                WatchEvent::Put(kv) => (Some((kv.value, kv.mod_revision)), kv.key),
                WatchEvent::Delete { key, .. } => (None, key),
            };
            let (project, is_vault) = match EtcdKey::parse(&key) {
                Some(EtcdKey::Vault(p)) => (p, true),
                Some(EtcdKey::Key { project, host }) if host == self.me => (project, false),
                _ => continue,
            };
            match (put, is_vault) {
                (Some((value, revision)), true) => {
                    if self.put_vault(&mut cache, &project, &value, revision) {
                        applied.changed.insert(project);
                    }
                }
                (Some((value, _)), false) => {
                    if self.put_key(&mut cache, &project, &value) {
                        applied.changed.insert(project);
                    }
                }
                (None, true) => {
                    if cache.vaults.remove(&project).is_some() {
                        self.persist_vault(&project, None);
                        applied.changed.insert(project);
                    }
                }
                (None, false) => {
                    if cache.keys.remove(&project).is_some() {
                        cache.vaults.remove(&project);
                        self.persist_key(&project, None);
                        self.persist_vault(&project, None);
                        applied.gone.insert(project);
                    }
                }
            }
        }
        // A project whose key came back in the same batch is not gone.
        applied.gone.retain(|p| !cache.keys.contains_key(p));
        cache.revision = cache.revision.max(revision);
        applied
    }

    /// The registered hosts of the fleet.
    pub fn hosts(&self) -> Result<Vec<String>> {
        let (_, kvs) = self.etcd.range_prefix(HOSTS).map_err(|e| self.fail(e))?;
        Ok(kvs
            .into_iter()
            .filter_map(|kv| match EtcdKey::parse(&kv.key) {
                Some(EtcdKey::Host(h)) => Some(h),
                _ => None,
            })
            .collect())
    }

    /// Registers this host when the fleet has no host yet (the first host
    /// of a fleet is trusted by whoever points it at an empty etcd).
    pub fn bootstrap(&self) -> std::result::Result<bool, EtcdError> {
        let marker = EtcdKey::Marker.to_string();
        let (ok, _, _) = self.etcd.txn(
            vec![etcd::cmp_mod(&marker, 0)],
            vec![
                etcd::op_put(&marker, b"flux-secrets fleet v1"),
                etcd::op_put(&host_key(&self.me), b""),
            ],
            vec![],
        )?;
        Ok(ok)
    }

    /// Reads this host's key and the vault of `name` straight from etcd
    /// into the cache (after a failed compare).
    fn refresh(&self, name: &str, kvs: Vec<Kv>) {
        let mut cache = self.cache();
        for kv in kvs {
            match EtcdKey::parse(&kv.key) {
                Some(EtcdKey::Vault(p)) if p == name => {
                    self.put_vault(&mut cache, &p, &kv.value, kv.mod_revision);
                }
                Some(EtcdKey::Key { project, host }) if project == name && host == self.me => {
                    self.put_key(&mut cache, &project, &kv.value);
                }
                _ => {}
            }
        }
        drop(cache);
        self.flush();
    }

    /// Unwraps this host's copy of a project key.
    pub fn unwrap_key(&self, name: &str, wrapped: &[u8]) -> Result<Zeroizing<String>> {
        let plain = flux_vault::vault::decrypt(wrapped, &self.host).map_err(|e| Error::Key {
            location: self.key_location(name),
            reason: format!("cannot unwrap with this host's identity: {e}"),
        })?;
        let text = std::str::from_utf8(&plain).map_err(|_| Error::Key {
            location: self.key_location(name),
            reason: "not a text key".into(),
        })?;
        Ok(Zeroizing::new(text.to_owned()))
    }

    fn put_vault_now(&self, name: &str, ciphertext: &[u8], revision: i64) {
        let mut cache = self.cache();
        self.put_vault(&mut cache, name, ciphertext, revision);
        drop(cache);
        self.flush();
    }
}

impl Store for EtcdStore {
    fn projects(&self) -> Result<Vec<String>> {
        Ok(self.cache().keys.keys().cloned().collect())
    }

    fn load_key(&self, project: &str) -> Result<Zeroizing<String>> {
        let wrapped = self.cache().keys.get(project).cloned().ok_or_else(|| Error::Key {
            location: self.key_location(project),
            reason: format!(
                "this host ({}) holds no key for the project; add it with `fluxctl hosts add {}` on a host that serves it",
                self.me, self.me
            ),
        })?;
        self.unwrap_key(project, &wrapped)
    }

    fn create_key(&self, project: &str, key: &ProjectKey) -> Result<()> {
        let mut hosts = self.hosts()?;
        if !hosts.contains(&self.me) {
            hosts.push(self.me.clone());
        }
        let created = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let plain = key.to_file_contents(&created);
        let mut puts = Vec::new();
        let mut mine = Vec::new();
        for h in &hosts {
            let Ok(r) = parse_recipient(h) else {
                warn!(host = %h, "skipping a registered host that is not an age recipient");
                continue;
            };
            let wrapped = wrap_for(plain.as_bytes(), &r)?;
            if *h == self.me {
                mine = wrapped.clone();
            }
            puts.push(etcd::op_put(&wrapped_key(project, h), &wrapped));
        }
        let (ok, _, _) = self
            .etcd
            .txn(
                vec![
                    etcd::cmp_mod(&vault_key(project), 0),
                    etcd::cmp_mod(&wrapped_key(project, &self.me), 0),
                ],
                puts,
                vec![],
            )
            .map_err(|e| self.fail(e))?;
        if !ok {
            return Err(Error::AlreadyExists(project.to_owned()));
        }
        let mut cache = self.cache();
        self.put_key(&mut cache, project, &mine);
        drop(cache);
        self.flush();
        Ok(())
    }

    fn delete_key(&self, project: &str) -> Result<()> {
        self.etcd
            .txn(
                vec![],
                vec![etcd::op_delete_prefix(&project_prefix(project))],
                vec![],
            )
            .map_err(|e| self.fail(e))?;
        let mut cache = self.cache();
        cache.keys.remove(project);
        cache.vaults.remove(project);
        self.persist_key(project, None);
        self.persist_vault(project, None);
        drop(cache);
        self.flush();
        Ok(())
    }

    fn load_vault(&self, project: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.cache().vaults.get(project).map(|(v, _)| v.clone()))
    }

    fn vault_exists(&self, project: &str) -> bool {
        self.cache().vaults.contains_key(project)
    }

    fn store_vault(&self, project: &str, ciphertext: &[u8]) -> Result<()> {
        let (_, revision, _) = self
            .etcd
            .txn(
                vec![],
                vec![etcd::op_put(&vault_key(project), ciphertext)],
                vec![],
            )
            .map_err(|e| self.fail(e))?;
        self.put_vault_now(project, ciphertext, revision);
        Ok(())
    }

    fn store_vault_if(
        &self,
        project: &str,
        expected: Option<&[u8; 32]>,
        ciphertext: &[u8],
    ) -> Result<bool> {
        let base = {
            let cache = self.cache();
            match (cache.vaults.get(project), expected) {
                (Some((bytes, rev)), Some(fp)) if sha(bytes) == *fp && *rev != 0 => Some(*rev),
                (None, None) => Some(0),
                _ => None,
            }
        };
        // Unknown base (the cache moved on, or was read from the local copy
        // during an outage): read etcd and let the caller re-apply.
        let compare = match base {
            Some(rev) => vec![etcd::cmp_mod(&vault_key(project), rev)],
            None => vec![etcd::cmp_mod(&vault_key(project), -1)],
        };
        let (ok, revision, responses) = self
            .etcd
            .txn(
                compare,
                vec![etcd::op_put(&vault_key(project), ciphertext)],
                vec![etcd::op_range_prefix(&project_prefix(project))],
            )
            .map_err(|e| self.fail(e))?;
        self.set_outage(None);
        if ok {
            self.put_vault_now(project, ciphertext, revision);
            return Ok(true);
        }
        let kvs = responses
            .iter()
            .flat_map(etcd::range_kvs)
            .collect::<Vec<_>>();
        if !kvs.iter().any(|kv| kv.key == vault_key(project)) {
            return Err(Error::UnknownProject(project.to_owned()));
        }
        self.refresh(project, kvs);
        Ok(false)
    }

    fn delete_vault(&self, project: &str) -> Result<()> {
        self.etcd
            .txn(vec![], vec![etcd::op_delete(&vault_key(project))], vec![])
            .map_err(|e| self.fail(e))?;
        let mut cache = self.cache();
        cache.vaults.remove(project);
        self.persist_vault(project, None);
        drop(cache);
        self.flush();
        Ok(())
    }

    fn vault_location(&self, project: &str) -> Location {
        Location::Etcd(vault_key(project))
    }

    fn key_location(&self, project: &str) -> Location {
        Location::Etcd(wrapped_key(project, &self.me))
    }

    fn check_key_private(&self, _project: &str) -> Result<()> {
        Ok(())
    }

    fn health(&self, _project: &str) -> Option<String> {
        self.cache().outage.clone()
    }
}
