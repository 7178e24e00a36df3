//! [`EtcdStore`]: project keys and sealed vaults kept in etcd as signed
//! envelopes, verified before use ([`super::cache`]), with a sealed local
//! copy (`<state>/fleet/`, the accepted envelopes, mode 0600) that serves
//! while etcd is unreachable and remembers, across restarts, the highest
//! version this host accepted of everything (so nothing older is accepted
//! after a restart either).
//!
//! Reads come from the verified cache, so a get never waits on etcd.
//! Writes go to etcd first, signed by this host, compared on the vault's
//! mod_revision: when another host wrote first, this host reads the newer
//! vault, verifies it, and the project applies its change again. A vault
//! that disappeared from etcd without a signed deletion is written back
//! (with every host's wrapped key) by the next write.
//!
//! The local copy is written after the new vault is served, off the
//! request path ([`EtcdStore::flush`]), in the order the changes were
//! accepted.
//!
//! A full read ([`EtcdStore::resync`]) goes in pages at one revision and
//! applies each page as it arrives; one that cannot finish is reported
//! (`unsynced`, shown by `fluxctl hosts list` and `status`) while the host
//! serves what it holds and the watch tries again. Objects refused for an
//! unknown signer are not kept: their keys are read from etcd again when
//! the host list changes ([`super::cache::Applied::reread`]).

use super::cache::{Applied, Cache, Persist};
use super::envelope::{self, Kind, Signing};
use super::etcd::{self, Etcd, EtcdError, Kv, WatchEvent};
use super::identity::{HostIdentity, fleet_id, parse_fleet_id, parse_recipient, wrap_for};
use super::kv::{Backend, Compare, Op};
use super::layout::{DELETED, EtcdKey, FLEET, HOSTS, ID, VAULTS, keys_of};
use super::{FleetOptions, MAX_TXN_OPS};
use crate::error::{Error, Location, Result, Unavailable};
use crate::store::Store;
use flux_vault::files::{
    ensure_private_dir, read_regular, remove_durably, shred_durably, write_atomic,
};
use flux_vault::keys::ProjectKey;
use flux_vault::layout::{MAX_VAULT_FILE, StateDir, fleet_copy, names_in};
use flux_vault::membership::OPERATOR;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tracing::{debug, info, warn};
use zeroize::Zeroizing;

/// Vaults read again one request each, at most; more are read in pages.
const REREAD_ONE_BY_ONE: usize = 32;

/// The etcd store. See the module docs.
#[derive(Debug)]
pub struct EtcdStore {
    /// The key-value store: etcd, or a test double ([`super::kv::Backend`]).
    etcd: Box<dyn Backend>,
    identity: Arc<HostIdentity>,
    me: String,
    dir: PathBuf,
    cache: Mutex<Cache>,
    /// Local-copy writes not yet made, in order.
    pending: Mutex<Vec<Persist>>,
    flushing: Mutex<()>,
    compact_on_delete: bool,
    /// The change feed, once the watch runs: what a write's or a repair's
    /// read of etcd changed is announced on it too.
    feed: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<crate::store::Change>>,
    /// Deleted projects etcd's history still holds, with the revision of
    /// the deletion, until etcd is compacted past it.
    remains: Mutex<std::collections::BTreeMap<String, (i64, String)>>,
    /// The newest etcd revision applied from a watch or a full read, for
    /// the `flux_fleet_applied_revision` gauge.
    applied: std::sync::atomic::AtomicI64,
    /// Held while re-keying ([`EtcdStore::rekeying`]).
    rekeying: Mutex<()>,
}

fn sha(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Switches to `<state>/host.key.next` when the newest host list this host
/// keeps lists it (`fluxctl hosts rotate-key` published one that does):
/// the old `host.key` is linked aside, the new one renamed into place, and
/// the old one overwritten and removed — a stop anywhere in between is
/// finished at the next start. Until then the old key stays in use.
fn adopt_next_key(state_dir: &Path) -> Result<()> {
    let state = StateDir::new(state_dir);
    let (key, next) = (state.host_key(), state.next_host_key());
    let old = state.old_host_key();
    if !next.exists() {
        return Ok(shred_durably(&old)?);
    }
    let recipient = HostIdentity::load_or_create(&next)?.recipient();
    let hosts = state.fleet_dir().join(fleet_copy::HOSTS);
    let newest = names_in(&hosts, "")?
        .into_iter()
        .filter_map(|n| n.parse::<u64>().ok().map(|v| (v, n)))
        .max();
    let listed = newest.is_some_and(|(version, name)| {
        read_regular(&hosts.join(name), MAX_VAULT_FILE)
            .ok()
            .flatten()
            .and_then(|raw| envelope::parse(&raw, Kind::Hosts, &EtcdKey::Hosts(version)).ok())
            .and_then(|env| {
                serde_json::from_slice::<flux_vault::membership::HostsDoc>(&env.payload).ok()
            })
            .is_some_and(|doc| doc.contains(&recipient))
    });
    if !listed {
        return Ok(());
    }
    if key.exists() && !old.exists() {
        std::fs::hard_link(&key, &old).map_err(|e| Error::io("keep", &old, e))?;
    }
    std::fs::rename(&next, &key).map_err(|e| Error::io("replace", &key, e))?;
    flux_vault::files::sync_dir(state_dir)?;
    shred_durably(&old)?;
    info!(recipient = %recipient, "switched to this host's new key (listed by the fleet); the old one is destroyed");
    Ok(())
}

/// The order a full read is applied in: the fleet id, the host lists by
/// version, then the rest.
fn apply_order(kvs: &mut [(EtcdKey, Kv)]) {
    kvs.sort_by_key(|(k, _)| match k {
        EtcdKey::Id => (0, 0),
        EtcdKey::Hosts(v) => (1, *v),
        EtcdKey::Deleted(_) => (2, 0),
        EtcdKey::Vault(_) => (3, 0),
        EtcdKey::Key { .. } => (4, 0),
    });
}

impl EtcdStore {
    /// Opens the store: this host's identity, the pinned fleet, and the
    /// local sealed copy under `state_dir`. Nothing is read from etcd yet
    /// ([`Self::start`]).
    pub fn open(state_dir: &Path, options: &FleetOptions) -> Result<Self> {
        let etcd = Etcd::new(options.etcd.clone()).map_err(|e| Error::Config(e.to_string()))?;
        Self::with_backend(state_dir, options, Box::new(etcd))
    }

    /// [`Self::open`] on any key-value store ([`Backend`]).
    pub fn with_backend(
        state_dir: &Path,
        options: &FleetOptions,
        etcd: Box<dyn Backend>,
    ) -> Result<Self> {
        adopt_next_key(state_dir)?;
        let state = StateDir::new(state_dir);
        let identity = HostIdentity::load_or_create(&state.host_key())?;
        let me = identity.recipient();
        let dir = state.fleet_dir();
        for sub in fleet_copy::DIRS {
            ensure_private_dir(&dir.join(sub))?;
        }
        let read = |name: &str| -> Result<Option<Vec<u8>>> {
            Ok(read_regular(&dir.join(name), MAX_VAULT_FILE)?)
        };
        let local_id = read(fleet_copy::ID)?;
        let local_pin = match &local_id {
            Some(raw) => {
                let env = envelope::parse(raw, Kind::Fleet, &EtcdKey::Id).map_err(|e| {
                    Error::Config(format!(
                        "{}: {e} (a fleet founded by an earlier fluxd: see docs/FLEET.md, \"Upgrading\")",
                        dir.join(fleet_copy::ID).display()
                    ))
                })?;
                let pin = parse_fleet_id(&String::from_utf8_lossy(&env.payload))?;
                if env.signer != OPERATOR || !env.signed_by(&pin) {
                    return Err(Error::Config(format!(
                        "{}: not signed by the fleet it names",
                        dir.join(fleet_copy::ID).display()
                    )));
                }
                Some(pin)
            }
            None => None,
        };
        let pin = match (&options.fleet_id, local_pin) {
            (Some(id), Some(local)) => {
                let wanted = parse_fleet_id(id)?;
                if wanted != local {
                    return Err(Error::Config(format!(
                        "this host belongs to fleet {}, not {id}: remove [store] fleet_id (or --fleet-id), or move {} away to leave the old fleet",
                        fleet_id(&local),
                        dir.display()
                    )));
                }
                Some(local)
            }
            (Some(id), None) => Some(parse_fleet_id(id)?),
            (None, local) => local,
        };
        let identity = Arc::new(identity);
        let mut cache = Cache::new(me.clone(), pin).with_identity(identity.clone());
        if let Some(raw) = local_id {
            cache.load_local_id(raw);
        }
        for name in names_in(&dir.join(fleet_copy::HOSTS), "")? {
            let file = dir.join(fleet_copy::HOSTS).join(&name);
            let (Ok(version), Some(raw)) = (
                name.parse::<u64>(),
                read(&fleet_copy::file(fleet_copy::HOSTS, &name))?,
            ) else {
                continue;
            };
            cache
                .load_local_hosts(version, raw)
                .map_err(|e| Error::Config(format!("{}: {e}", file.display())))?;
        }
        for (sub, make) in [
            (fleet_copy::VAULTS, EtcdKey::vault as fn(&str) -> EtcdKey),
            (fleet_copy::DELETED, |p: &str| {
                EtcdKey::Deleted(p.to_owned())
            }),
        ] {
            for name in names_in(&dir.join(sub), "")? {
                let file = fleet_copy::file(sub, &name);
                if let Some(raw) = read(&file)?
                    && let Err(e) = cache.load_local(&make(&name), raw)
                {
                    warn!(file = %file, error = %e, "local sealed copy not used");
                }
            }
        }
        for name in names_in(&dir.join(fleet_copy::KEYS), "")? {
            let file = fleet_copy::file(fleet_copy::KEYS, &name);
            if let Some(raw) = read(&file)?
                && let Err(e) = cache.load_local(&EtcdKey::key(&me, &name), raw)
            {
                warn!(file = %file, error = %e, "local sealed copy not used");
            }
        }
        // A list accepted just before a stop may have taken projects away
        // from this host: what it no longer serves goes now.
        let mut dropped = Applied::default();
        cache.retire_lists(&mut dropped);
        cache.drop_unserved(&mut dropped);
        let store = Self {
            etcd,
            identity,
            me,
            dir,
            cache: Mutex::new(cache),
            pending: Mutex::new(dropped.persist),
            flushing: Mutex::new(()),
            compact_on_delete: options.compact_on_delete,
            feed: std::sync::OnceLock::new(),
            remains: Mutex::new(std::collections::BTreeMap::new()),
            applied: std::sync::atomic::AtomicI64::new(0),
            rekeying: Mutex::new(()),
        };
        store.flush();
        Ok(store)
    }

    /// `<state>/host.key.next`: this host's next identity, while a key
    /// rotation is under way ([`adopt_next_key`]).
    pub fn next_key_path(&self) -> PathBuf {
        StateDir::new(self.dir.parent().unwrap_or(Path::new(""))).next_host_key()
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This host's recipient.
    pub fn recipient(&self) -> &str {
        &self.me
    }

    /// This host's identity.
    pub fn identity(&self) -> &HostIdentity {
        &self.identity
    }

    /// The etcd endpoints, for messages.
    pub fn endpoints(&self) -> String {
        self.etcd.endpoints()
    }

    /// The etcd revision last read in full.
    pub fn revision(&self) -> i64 {
        self.cache().revision
    }

    /// The pinned fleet's id, once known.
    pub fn fleet_id(&self) -> Option<String> {
        self.cache().fleet()
    }

    /// The held host list: its version and its hosts.
    pub fn host_list(&self) -> Option<super::cache::HostList> {
        self.cache().host_list().cloned()
    }

    /// Fleet-wide problems, one sentence each.
    pub fn problems(&self) -> Vec<String> {
        let cache = self.cache();
        let mut out: Vec<String> = cache
            .outage
            .iter()
            .chain(&cache.unsynced)
            .chain(&cache.problem)
            .cloned()
            .collect();
        match cache.host_list() {
            Some(list) if !list.contains(&self.me) => out.push(format!(
                "this host is not in the fleet's host list: it serves its local copies and writes nothing; with the fleet's operator key, run `fluxctl hosts add {} --operator-key FILE` on a host of the fleet",
                self.identity.record().join_token()
            )),
            _ => {}
        }
        for (key, reason) in cache.refused.iter().filter(|(k, _)| k.starts_with(HOSTS)) {
            out.push(format!("{key} refused: {reason}"));
        }
        let pending = cache.pending_rekeys();
        let member = cache.host_list().is_some_and(|l| l.contains(&self.me));
        if !pending.is_empty() && member {
            let mut who = std::collections::BTreeSet::new();
            let mut version = 0;
            for p in &pending {
                let (v, hosts) = cache.revoked_at(p);
                version = version.max(v);
                who.extend(hosts);
            }
            let who: Vec<String> = who.into_iter().collect();
            out.push(format!(
                "{} project(s) still have the key {} could open (host list version {version} took it away): run `fluxctl hosts remove --resume` — {}",
                pending.len(),
                who.join(", "),
                pending.join(", ")
            ));
        }
        drop(cache);
        for (project, (_, note)) in self
            .remains
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            out.push(format!("project {project} was deleted, but {note}"));
        }
        out
    }

    /// True while a deleted project's history waits for compaction.
    pub fn has_remains(&self) -> bool {
        !self
            .remains
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Forgets the deleted projects whose history etcd no longer holds
    /// (compacted since, by anyone).
    pub fn check_remains(&self) {
        let waiting: Vec<(String, i64)> = self
            .remains
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(p, (r, _))| (p.clone(), *r))
            .collect();
        for (project, revision) in waiting {
            if self.etcd.compacted_past(revision - 1) == Some(true) {
                info!(
                    project,
                    "etcd's history of the deleted project is compacted"
                );
                self.remains
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&project);
            }
        }
    }

    /// Notes that everything up to `revision` has been applied.
    pub fn note_applied(&self, revision: i64) {
        self.applied
            .fetch_max(revision, std::sync::atomic::Ordering::Relaxed);
    }

    /// The newest etcd revision applied (0 before the first read).
    pub fn applied_revision(&self) -> i64 {
        self.applied.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the last full read did not finish, envelopes refused so
    /// far, and bytes of envelopes held.
    pub fn memory_gauges(&self) -> (bool, u64, u64) {
        let cache = self.cache();
        (
            cache.unsynced.is_some(),
            cache.refused_total,
            cache.held_bytes(),
        )
    }

    /// etcd range pages read, and pages asked again smaller.
    pub fn page_counts(&self) -> (u64, u64) {
        self.etcd.page_counts()
    }

    /// True while etcd is taken to be unreachable.
    pub fn has_outage(&self) -> bool {
        self.cache().outage.is_some()
    }

    /// Asks etcd for the fleet id: clears the outage when it answers.
    pub fn probe(&self) {
        let _ = self.range_prefix(&EtcdKey::Id.to_string());
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

    /// Maps an etcd failure to a daemon error, noting an outage.
    pub(super) fn fail(&self, e: EtcdError) -> Error {
        if e.is_unreachable() {
            self.set_outage(Some(e.to_string()));
        }
        match e {
            EtcdError::Unknown(reason) => Error::Unavailable(Unavailable::Unknown(reason)),
            other => Error::Unavailable(Unavailable::Store(other.to_string())),
        }
    }

    /// A transaction, its failure mapped ([`Self::fail`]).
    pub(super) fn txn(&self, compare: Vec<Compare>, success: Vec<Op>) -> Result<(bool, i64)> {
        let answer = self
            .etcd
            .txn(&compare, &success)
            .map_err(|e| self.fail(e))?;
        self.set_outage(None);
        Ok(answer)
    }

    /// Runs `ops` unconditionally in transactions of at most
    /// [`MAX_TXN_OPS`] operations (etcd's default `--max-txn-ops` is 128).
    pub(super) fn put_all(&self, ops: Vec<Op>) -> Result<i64> {
        let mut revision = 0;
        for chunk in ops.chunks(MAX_TXN_OPS) {
            revision = self.txn(vec![], chunk.to_vec())?.1;
        }
        Ok(revision)
    }

    /// Everything under `prefix`, its failure mapped ([`Self::fail`]).
    pub(super) fn range_prefix(&self, prefix: &str) -> Result<(i64, Vec<Kv>)> {
        let answer = self.etcd.range_prefix(prefix).map_err(|e| self.fail(e))?;
        self.set_outage(None);
        Ok(answer)
    }

    /// Signs `payload` for `key` as this host, at the held host list's
    /// version as its epoch.
    pub(super) fn sign(&self, kind: Kind, key: &EtcdKey, version: u64, payload: &[u8]) -> Vec<u8> {
        let epoch = self.cache().hosts_version();
        self.sign_at(kind, key, version, epoch, payload)
    }

    /// Signs `payload` for `key` as this host, at `epoch`.
    pub(super) fn sign_at(
        &self,
        kind: Kind,
        key: &EtcdKey,
        version: u64,
        epoch: u64,
        payload: &[u8],
    ) -> Vec<u8> {
        let fleet = self.fleet_id().unwrap_or_default();
        let s = Signing {
            fleet: &fleet,
            kind,
            version,
            epoch,
        };
        envelope::seal(s, key, payload, &self.identity)
    }

    /// Joins the fleet as etcd holds it, founds a new one, or reports why
    /// it does neither; then reads everything. Returns whether the cache is
    /// in step with etcd (else the watch starts with a full read).
    ///
    /// Local sealed copies are never wiped because etcd is empty: a host
    /// holding fleet data that finds no fleet in etcd serves its copies and
    /// says so, until restarted with `publish` (`--publish-fleet`), which
    /// writes its fleet (the same fleet id, host lists and projects) back.
    pub fn start(&self, publish: bool) -> Result<bool> {
        let (_, kvs) = match self.etcd.range_prefix(&EtcdKey::Id.to_string()) {
            Ok(answer) => answer,
            Err(e) => {
                warn!(error = %e, "etcd is unreachable at start; serving the local sealed copies until it is back");
                self.set_outage(Some(e.to_string()));
                return Ok(false);
            }
        };
        let in_etcd = !kvs.is_empty();
        let (pinned, holds_data, holds_id) = {
            let c = self.cache();
            (
                c.pin.is_some(),
                !c.vaults.is_empty() || !c.keys.is_empty() || c.hosts.is_some(),
                c.id.is_some(),
            )
        };
        match (in_etcd, pinned) {
            (false, false) if !holds_data => {
                self.cache().problem = Some(format!(
                    "etcd at {} holds no fleet yet: found one on this host with `fluxctl fleet init --operator-key FILE` (the operator key it creates signs the host list; keep it off the hosts)",
                    self.etcd.endpoints()
                ));
                info!("etcd holds no fleet yet: waiting for `fluxctl fleet init`");
                Ok(false)
            }
            (false, true) if publish && holds_id => {
                // Announced: the projects may be served already (a slow
                // etcd is read after start-up).
                let (applied, _) = self.resync().map_err(|e| self.fail(e))?;
                self.absorb(applied);
                self.repair(true)?;
                info!(
                    fleet = self.fleet_id().as_deref().unwrap_or(""),
                    "wrote this host's fleet back to an etcd that held none"
                );
                Ok(true)
            }
            (false, _) => {
                let advice = if holds_id {
                    "if this is the fleet's etcd and it lost its data, restart one host of the fleet with --publish-fleet to write the fleet back"
                } else {
                    "check [store] endpoints; this host was told to join a fleet it has never seen there"
                };
                self.cache().problem = Some(format!(
                    "etcd at {} holds no fleet (a typo in the endpoints, or a rebuilt or restored cluster?): serving this host's sealed copies, which are never wiped for it; {advice}",
                    self.etcd.endpoints()
                ));
                warn!("etcd holds no fleet; serving this host's sealed copies");
                Ok(false)
            }
            (true, false) => {
                self.cache().problem = Some(format!(
                    "etcd holds a fleet this host has not joined: start fluxd with --fleet-id (or [store] fleet_id) set to the fleet id `fluxctl hosts list` shows on a host of the fleet, then add it with the operator key: `fluxctl hosts add {} --operator-key FILE` on a host of the fleet",
                    self.identity.record().join_token()
                ));
                warn!("etcd holds a fleet and this host has no fleet id: serving nothing from it");
                Ok(false)
            }
            (true, true) => {
                // Announced: the projects may be served already (a slow
                // etcd is read after start-up).
                let (applied, _) = self.resync().map_err(|e| self.fail(e))?;
                self.absorb(applied);
                self.repair(false)?;
                Ok(true)
            }
        }
    }

    /// The signed envelopes of the held host list and fleet id (empty
    /// when none), for `fluxctl` to check against the operator key and
    /// sign the next version over.
    pub fn head(&self) -> (Vec<u8>, Vec<u8>) {
        let cache = self.cache();
        (
            cache
                .hosts
                .as_ref()
                .map(|(_, r)| r.clone())
                .unwrap_or_default(),
            cache.id.clone().unwrap_or_default(),
        )
    }

    /// Publishes host list `raw`, signed by the operator key: the next
    /// version after the one held, or — with the fleet id envelope `id` —
    /// version 1 of a new fleet in an etcd that holds none (this host
    /// pins that fleet). Returns the list now held.
    pub fn publish_hosts(&self, raw: &[u8], id: &[u8]) -> Result<super::cache::HostList> {
        let version = flux_vault::membership::Envelope::peek_version(raw)
            .map_err(|e| Error::BadRequest(format!("not a signed host list: {e}")))?;
        let republished = self
            .cache()
            .hosts
            .as_ref()
            .is_some_and(|(l, held)| l.version == version && held == raw);
        if republished {
            // The version held, again: nothing to write; the caller finishes
            // what that version asked for.
        } else if !id.is_empty() {
            self.found(raw, id, version)?;
        } else {
            if self.cache().pin.is_none() {
                return Err(Error::BadRequest(
                    "this host holds no fleet yet: found one with `fluxctl fleet init`, or start fluxd with the fleet's id".into(),
                ));
            }
            self.cache()
                .check_next_hosts(version, raw)
                .map_err(Error::BadRequest)?;
            let key = EtcdKey::Hosts(version);
            // A refused object in that slot (a forged list) is written over; a
            // version not seen yet, or accepted, is not.
            let base = self.refused_revision(&key);
            let (ok, revision) = self.txn(
                vec![Compare::mod_revision(&key.to_string(), base)],
                vec![Op::put(&key.to_string(), raw)],
            )?;
            // Not written: unless etcd holds this very list already (an
            // earlier try whose answer was lost), another one came first.
            let landed = !ok
                && self
                    .range_prefix(&key.to_string())?
                    .1
                    .iter()
                    .any(|kv| kv.key == key.to_string() && kv.value == raw);
            if !ok && !landed {
                return Err(Error::Unavailable(Unavailable::Store(format!(
                    "the host list changed (version {version} was written first) at the same moment: run the command again"
                ))));
            }
            let mut applied = Applied::default();
            self.cache().apply(&key, raw, revision, &mut applied);
            self.absorb(applied);
            self.flush();
            // The versions this one retires leave etcd (every host forgets
            // them as it takes this one).
            let oldest = self.host_list().map_or(0, |l| l.oldest);
            if oldest > 1 {
                let retire = Op::delete_range(
                    &EtcdKey::Hosts(0).to_string(),
                    &EtcdKey::Hosts(oldest).to_string(),
                );
                if let Err(e) = self.txn(vec![], vec![retire]) {
                    warn!(error = %e, oldest, "cannot delete the retired host list versions from etcd; the next list tries again");
                }
            }
        }
        self.host_list()
            .filter(|l| l.version >= version)
            .ok_or_else(|| Error::Internal("the published host list was not held".into()))
    }

    /// Founds the fleet whose operator signed `id` and host list version 1
    /// (`raw`) in an etcd that holds no fleet.
    fn found(&self, raw: &[u8], id: &[u8], version: u64) -> Result<()> {
        let env = envelope::parse(id, Kind::Fleet, &EtcdKey::Id)
            .map_err(|e| Error::BadRequest(format!("not a signed fleet id: {e}")))?;
        let pin = parse_fleet_id(&String::from_utf8_lossy(&env.payload))
            .map_err(|e| Error::BadRequest(e.to_string()))?;
        if env.signer != OPERATOR || !env.signed_by(&pin) || env.fleet != fleet_id(&pin) {
            return Err(Error::BadRequest(
                "the fleet id is not signed by the operator key it names".into(),
            ));
        }
        {
            let c = self.cache();
            if let Some(held) = c.pin
                && held != pin
            {
                return Err(Error::BadRequest(format!(
                    "this host belongs to fleet {}, not {}",
                    fleet_id(&held),
                    fleet_id(&pin)
                )));
            }
            if c.hosts.is_some() {
                return Err(Error::BadRequest(format!(
                    "this host already holds host list version {}: a fleet is founded once",
                    c.hosts_version()
                )));
            }
        }
        let doc =
            flux_vault::membership::open_hosts(raw, version, &pin).map_err(Error::BadRequest)?;
        if version != 1 || !doc.previous.is_empty() || !doc.contains(&self.me) {
            return Err(Error::BadRequest(
                "a fleet is founded with host list version 1, naming no predecessor and listing this host".into(),
            ));
        }
        // Host lists left by an older fleet go: this one starts at 1. (etcd
        // refuses a txn that deletes a range it also writes into.)
        let (ok, _) = self.txn(
            vec![Compare::mod_revision(&EtcdKey::Id.to_string(), 0)],
            vec![
                Op::delete_prefix(HOSTS),
                Op::put(&EtcdKey::Id.to_string(), id),
            ],
        )?;
        if !ok {
            return Err(Error::Unavailable(Unavailable::Store(
                "etcd holds a fleet already (founded at the same moment, or the endpoints name another fleet's etcd): nothing was founded".into(),
            )));
        }
        let revision = self.put_all(vec![Op::put(&EtcdKey::Hosts(1).to_string(), raw)])?;
        let mut applied = Applied::default();
        {
            let mut cache = self.cache();
            cache.pin = Some(pin);
            cache.problem = None;
            cache.apply(&EtcdKey::Id, id, revision, &mut applied);
            cache.apply(&EtcdKey::Hosts(1), raw, revision, &mut applied);
            cache.revision = revision;
        }
        self.absorb(applied);
        self.flush();
        info!(fleet = %fleet_id(&pin), recipient = %self.me, "founded a new fleet: this host is its first host");
        Ok(())
    }

    /// Writes back what etcd lost and this host holds — the fleet id, host
    /// list versions, deletions, its own wrapped keys, and vaults (re-signed
    /// as a new version, with every listed host's key) — each only where
    /// etcd holds nothing. Runs after a full read and whenever the watch
    /// sees a deletion no signed deletion explains. Without `publish`, only
    /// while etcd holds this fleet's id or this host saw it deleted (never
    /// into an etcd that simply holds no fleet). Returns how many objects
    /// were written back.
    pub fn repair(&self, publish: bool) -> Result<usize> {
        // The newest host list first: a host removed a moment ago (its key
        // deleted in the same breath) writes nothing back.
        let lists = self.read_host_lists()?;
        self.absorb(lists);
        if self.my_host_list().is_err() {
            return Ok(0);
        }
        let present: std::collections::BTreeMap<String, i64> = self
            .etcd
            .keys_prefix(FLEET)
            .and_then(|mut fleet| {
                fleet.extend(self.etcd.keys_prefix(&keys_of(&self.me))?);
                Ok(fleet)
            })
            .map_err(|e| self.fail(e))?
            .into_iter()
            .collect();
        let id = EtcdKey::Id.to_string();
        let (objects, lost_vaults, resurrected) = {
            let cache = self.cache();
            let saw_id_go = cache.seen.get(&id) == Some(&0);
            if !publish && !present.contains_key(&id) && !saw_id_go {
                return Ok(0);
            }
            let mut objects: Vec<(EtcdKey, Vec<u8>)> = Vec::new();
            if let Some(raw) = &cache.id {
                objects.push((EtcdKey::Id, raw.clone()));
            }
            for (v, raw) in &cache.chain {
                objects.push((EtcdKey::Hosts(*v), raw.clone()));
            }
            for (p, held) in &cache.deleted {
                objects.push((EtcdKey::Deleted(p.clone()), held.raw.clone()));
            }
            for (p, held) in &cache.keys {
                // Not a key whose project etcd shows deleted: this host's
                // own deletion may be applied here a moment after etcd's.
                if !present.contains_key(&EtcdKey::Deleted(p.clone()).to_string()) {
                    objects.push((EtcdKey::key(&self.me, p), held.raw.clone()));
                }
            }
            let lost_vaults: Vec<(String, Vec<u8>)> = cache
                .vaults
                .iter()
                .filter(|(p, _)| {
                    !present.contains_key(&EtcdKey::vault(p).to_string())
                        && !present.contains_key(&EtcdKey::Deleted((*p).clone()).to_string())
                })
                .map(|(p, h)| (p.clone(), h.payload.clone()))
                .collect();
            // What etcd holds but this host refused for good where it holds
            // the real thing: a forged host list version (a fork), written
            // back over with the version this host accepted.
            let mut overwrite: Vec<(EtcdKey, Vec<u8>, i64)> = Vec::new();
            for (v, raw) in &cache.chain {
                let key = EtcdKey::Hosts(*v);
                let name = key.to_string();
                if let Some(revision) = present.get(&name)
                    && cache.refused.contains_key(&name)
                    && !cache.is_waiting(&name)
                {
                    overwrite.push((key, raw.clone(), *revision));
                }
            }
            // A deleted project whose vault is back in etcd (a restore from
            // an older snapshot): its deletion is applied again.
            let resurrected: Vec<(String, i64)> = cache
                .deleted
                .keys()
                .filter_map(|p| {
                    present
                        .get(&EtcdKey::vault(p).to_string())
                        .map(|r| (p.clone(), *r))
                })
                .collect();
            let objects = objects
                .into_iter()
                .filter(|(k, _)| !present.contains_key(&k.to_string()))
                .map(|(k, raw)| (k, raw, 0))
                .chain(overwrite)
                .collect::<Vec<_>>();
            (objects, lost_vaults, resurrected)
        };
        let mut written = 0;
        for (key, raw, base) in objects {
            let name = key.to_string();
            let (ok, revision) = self.txn(
                vec![Compare::mod_revision(&name, base)],
                vec![Op::put(&name, &raw)],
            )?;
            if ok {
                if base == 0 {
                    warn!(key = %name, "etcd had lost it: written back from this host's copy");
                } else {
                    warn!(key = %name, "etcd held a refused object: written over with this host's copy");
                }
                let mut cache = self.cache();
                cache.seen.insert(name.clone(), revision);
                cache.refused.remove(&name);
                written += 1;
            }
        }
        let hosts = self.host_list().map(|l| l.hosts).unwrap_or_default();
        for (project, revision) in resurrected {
            let vault = EtcdKey::vault(&project).to_string();
            let mut ops = vec![Op::delete(&vault)];
            ops.extend(
                hosts
                    .iter()
                    .map(|h| Op::delete(&EtcdKey::key(&h.recipient, &project).to_string())),
            );
            ops.truncate(MAX_TXN_OPS);
            let (ok, _) = self.txn(vec![Compare::mod_revision(&vault, revision)], ops)?;
            if ok {
                warn!(
                    project,
                    "etcd held a deleted project's vault again (restored from an older snapshot?): its deletion is applied again"
                );
                written += 1;
            }
        }
        for (project, ciphertext) in lost_vaults {
            if self.restore_to_etcd(&project, &ciphertext)? {
                written += 1;
            }
        }
        self.flush();
        Ok(written)
    }

    /// Replaces what is held with a full read of etcd (verified), page by
    /// page ([`Etcd::range_paged`]), all at the revision of its first
    /// answer: the fleet id, the host lists, deletions, vaults, then this
    /// host's wrapped keys — the order they are applied in. Each page is
    /// applied (and written to the local copy) as it arrives, so memory
    /// holds one page beyond what the host serves. A read that cannot
    /// finish is reported ([`Self::note_unsynced`]) and leaves what was
    /// applied so far — each object verified on its own. Returns what
    /// changed and the revision read at.
    pub fn resync(&self) -> std::result::Result<(Applied, i64), EtcdError> {
        let mut applied = Applied::default();
        let mut tries = 0;
        let revision = loop {
            match self.read_everything(&mut applied) {
                // Compacted between two pages: read again, now.
                Err(EtcdError::Failed(reason)) if reason.contains("compacted") && tries < 3 => {
                    tries += 1;
                }
                Err(e) => {
                    self.note_unsynced(Some(&e));
                    let applied = self.reread(applied);
                    self.absorb(applied);
                    return Err(e);
                }
                Ok(revision) => break revision,
            }
        };
        self.cache().revision = revision;
        self.note_applied(revision);
        self.set_outage(None);
        self.note_unsynced(None);
        let mut applied = self.reread(applied);
        self.queue(std::mem::take(&mut applied.persist));
        self.flush();
        Ok((applied, revision))
    }

    /// One full read (see [`Self::resync`]); returns its revision.
    fn read_everything(&self, applied: &mut Applied) -> std::result::Result<i64, EtcdError> {
        let mut apply = |page: Vec<Kv>| {
            {
                let mut cache = self.cache();
                for kv in &page {
                    if let Some(key) = EtcdKey::parse(&kv.key) {
                        cache.apply_kv(&key, kv, applied);
                    }
                }
            }
            drop(page);
            self.queue(std::mem::take(&mut applied.persist));
            self.flush();
        };
        let revision = self.etcd.range_paged(ID, 0, &mut apply)?;
        for prefix in [HOSTS, DELETED] {
            self.etcd.range_paged(prefix, revision, &mut apply)?;
        }
        if self
            .cache()
            .host_list()
            .is_some_and(|l| !l.assigned.is_empty())
        {
            // Projects are assigned: only the vaults this host serves are
            // read (their names first), not every project's.
            let mut page = Vec::new();
            for (key, _) in self.etcd.keys_at(VAULTS, revision)? {
                let serves = match EtcdKey::parse(&key) {
                    Some(EtcdKey::Vault(p)) => self.cache().serves_here(&p),
                    _ => false,
                };
                if serves && let Some(kv) = self.etcd.get_at(&key, revision)? {
                    page.push(kv);
                    if page.len() >= etcd::DEFAULT_PAGE_KEYS {
                        apply(std::mem::take(&mut page));
                    }
                }
            }
            apply(page);
        } else {
            self.etcd.range_paged(VAULTS, revision, &mut apply)?;
        }
        self.etcd
            .range_paged(&keys_of(&self.me), revision, &mut apply)?;
        Ok(revision)
    }

    /// Records why a full read of etcd did not finish (`None`: one did).
    pub fn note_unsynced(&self, error: Option<&EtcdError>) {
        let mut cache = self.cache();
        match (&cache.unsynced, error) {
            (None, Some(e)) => {
                warn!(error = %e, "cannot finish reading etcd; serving this host's copies and trying again")
            }
            (Some(_), None) => info!("read etcd in full again"),
            _ => {}
        }
        cache.unsynced = error.map(|e| {
            format!(
                "this host could not finish reading etcd ({e}): it serves the copies it holds and keeps trying"
            )
        });
    }

    /// Reads again, from etcd, what waited for the host list that just
    /// changed ([`Applied::reread`]), one key at a time, until nothing is
    /// left to read.
    fn reread(&self, mut applied: Applied) -> Applied {
        let mut rounds = 0;
        while !applied.reread.is_empty() && rounds < 8 {
            rounds += 1;
            let mut keys = std::mem::take(&mut applied.reread);
            // Many vaults at once (a host given many projects): a paged
            // read rather than a request each.
            let vaults: std::collections::BTreeSet<String> = keys
                .iter()
                .filter(|k| matches!(k, EtcdKey::Vault(_)))
                .map(|k| k.to_string())
                .collect();
            if vaults.len() > REREAD_ONE_BY_ONE
                && let (Some(first), Some(last)) = (vaults.first(), vaults.last())
            {
                // From the first to the last of them: a host is given
                // projects in name order, so little else is read.
                let mut end = last.as_bytes().to_vec();
                end.push(0);
                let read = self
                    .etcd
                    .range_between(first.as_bytes(), &end, 0, &mut |page| {
                        let mut cache = self.cache();
                        for kv in page.iter().filter(|kv| vaults.contains(&kv.key)) {
                            if let Some(key) = EtcdKey::parse(&kv.key) {
                                cache.apply_kv(&key, kv, &mut applied);
                            }
                        }
                    });
                match read {
                    Ok(_) => keys.retain(|k| !matches!(k, EtcdKey::Vault(_))),
                    Err(e) => {
                        debug!(error = %e, "cannot read the vaults again in pages; one by one")
                    }
                }
            }
            for key in keys {
                match self.etcd.get(&key.to_string()) {
                    Ok(Some(kv)) => self.cache().apply_kv(&key, &kv, &mut applied),
                    Ok(None) => self.cache().gone_from_etcd(&key),
                    Err(e) => {
                        debug!(error = %e, key = %key, "cannot read again what waited for the host list");
                        self.cache().wait_again(key);
                    }
                }
            }
        }
        applied
    }

    /// Applies watch events. A deletion changes nothing held (see
    /// [`super::cache`]); it is noted, and [`Applied::lost`] set so the
    /// caller runs [`Self::repair`].
    pub fn apply(&self, events: Vec<WatchEvent>) -> Applied {
        let mut applied = Applied::default();
        let mut cache = self.cache();
        for event in events {
            match event {
                WatchEvent::Put(kv) => {
                    if let Some(key) = EtcdKey::parse(&kv.key) {
                        cache.apply_kv(&key, &kv, &mut applied);
                        // A forged host list where this host holds the real
                        // one, or a deleted project's vault put back: the
                        // repair writes over them.
                        let repairable = match &key {
                            EtcdKey::Hosts(v) => cache.chain.contains_key(v),
                            EtcdKey::Vault(p) => cache.deleted.contains_key(p),
                            _ => false,
                        };
                        if repairable && cache.refused.contains_key(&kv.key) {
                            applied.lost = true;
                        }
                    }
                }
                WatchEvent::Delete { key, .. } => {
                    if let Some(key) = EtcdKey::parse(&key) {
                        cache.gone_from_etcd(&key);
                        applied.lost = true;
                    }
                }
            }
        }
        drop(cache);
        let mut applied = self.reread(applied);
        self.queue(std::mem::take(&mut applied.persist));
        applied
    }

    /// True (once) after etcd's history went backwards or its cluster
    /// changed: read everything again.
    pub fn take_reset(&self) -> bool {
        self.etcd.take_reset()
    }

    /// Follows `prefix` from `start` (see [`Etcd::watch`]).
    pub(super) fn watch(
        &self,
        prefix: &str,
        start: i64,
        on_message: impl FnMut(etcd::WatchMessage) -> bool,
    ) -> std::result::Result<(), EtcdError> {
        let mut on_message = on_message;
        self.etcd.watch(prefix, start, &mut on_message)
    }

    /// Sets the change feed ([`super::watch`]).
    pub(super) fn set_feed(&self, tx: tokio::sync::mpsc::UnboundedSender<crate::store::Change>) {
        let _ = self.feed.set(tx);
    }

    /// Announces what a read outside the watch changed, and queues its
    /// local-copy writes.
    fn absorb(&self, applied: Applied) {
        let mut applied = self.reread(applied);
        self.queue(std::mem::take(&mut applied.persist));
        if let Some(tx) = self.feed.get() {
            if !applied.gone.is_empty() {
                let _ = tx.send(crate::store::Change::Gone(applied.gone));
            }
            if !applied.changed.is_empty() {
                let _ = tx.send(crate::store::Change::Projects(applied.changed));
            }
        }
    }

    fn queue(&self, persist: Vec<Persist>) {
        if !persist.is_empty() {
            self.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(persist);
        }
    }

    /// Writes the queued changes to the local copy, durably, in order. The
    /// watcher calls it after the new vaults are swapped in, so the disk
    /// adds no latency to propagation.
    pub fn flush(&self) {
        // One flush at a time, so writes land in the order they were queued.
        let _flushing = self.flushing.lock().unwrap_or_else(|e| e.into_inner());
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        for change in pending {
            let result = match change {
                Persist::Write(name, bytes) => write_atomic(&self.dir.join(name), &bytes, 0o600),
                // A wrapped key opens with host.key, which stays: its
                // blocks are overwritten before they are freed.
                Persist::Remove(name) if name.starts_with("keys/") => {
                    shred_durably(&self.dir.join(name))
                }
                Persist::Remove(name) => remove_durably(&self.dir.join(name)),
            };
            if let Err(e) = result {
                warn!(error = %e, "cannot update the local sealed copy");
            }
        }
    }

    /// Unwraps this host's copy of a project key.
    pub fn unwrap_key(&self, name: &str, wrapped: &[u8]) -> Result<Zeroizing<String>> {
        let plain =
            flux_vault::vault::decrypt(wrapped, self.identity.age()).map_err(|e| Error::Key {
                location: self.key_location(name),
                reason: format!("cannot unwrap with this host's identity: {e}"),
            })?;
        let text = std::str::from_utf8(&plain).map_err(|_| Error::Key {
            location: self.key_location(name),
            reason: "not a text key".into(),
        })?;
        Ok(Zeroizing::new(text.to_owned()))
    }

    /// This host's plain copy of `project`'s key, as held.
    pub(super) fn plain_key(&self, project: &str) -> Result<Zeroizing<String>> {
        let wrapped = self
            .cache()
            .keys
            .get(project)
            .map(|h| h.payload.clone())
            .ok_or_else(|| Error::Key {
                location: self.key_location(project),
                reason: format!(
                    "this host ({}) holds no key for the project; add it with `fluxctl hosts add` on a host that serves it",
                    self.me
                ),
            })?;
        self.unwrap_key(project, &wrapped)
    }

    /// The signed key envelopes that give `plain` (generation `generation`)
    /// to every host of the held list.
    pub(super) fn key_puts(
        &self,
        project: &str,
        plain: &[u8],
        generation: u64,
        epoch: u64,
        hosts: &[super::identity::HostRecord],
    ) -> Result<(Vec<Op>, Option<Vec<u8>>)> {
        let mut ops = Vec::new();
        let mut mine = None;
        for h in hosts {
            let recipient = match parse_recipient(&h.recipient) {
                Ok(r) => r,
                Err(_) => {
                    warn!(host = %h.recipient, "skipping a listed host that is not an age recipient");
                    continue;
                }
            };
            let key = EtcdKey::key(&h.recipient, project);
            let env = self.sign_at(
                Kind::Key,
                &key,
                generation,
                epoch,
                &wrap_for(plain, &recipient)?,
            );
            if h.recipient == self.me {
                mine = Some(env.clone());
            }
            ops.push(Op::put(&key.to_string(), &env));
        }
        Ok((ops, mine))
    }

    /// The held host list, which must list this host, with no fleet-wide
    /// problem (etcd holding no fleet, or another one): what every write
    /// needs.
    pub(super) fn my_host_list(&self) -> Result<super::cache::HostList> {
        if let Some(problem) = self.cache().problem.clone() {
            return Err(Error::Unavailable(Unavailable::Store(problem)));
        }
        if let Some(refused) = self.cache().refused_newer_list() {
            return Err(Error::Unavailable(Unavailable::Store(format!(
                "{refused}: writes wait until it is gone — publish the next version with `fluxctl hosts add/remove --operator-key FILE` (it goes over the refused one), or delete it (`etcdctl del` that key) and revoke the etcd access that wrote it"
            ))));
        }
        match self.host_list() {
            Some(list) if list.contains(&self.me) => Ok(list),
            _ => Err(Error::Unavailable(Unavailable::Store(
                self.problems()
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| "this host is not a member of a fleet yet".into()),
            ))),
        }
    }

    /// Reads the host lists, then `project`'s deletion, vault and this
    /// host's key from etcd into the cache (after a failed compare). Returns
    /// whether etcd holds a vault for it at all.
    fn refresh(&self, project: &str) -> Result<bool> {
        let mut found = false;
        let mut applied = self.read_host_lists()?;
        for key in [
            EtcdKey::Deleted(project.to_owned()),
            EtcdKey::vault(project),
            EtcdKey::key(&self.me, project),
        ] {
            let name = key.to_string();
            let (_, kvs) = self.range_prefix(&name)?;
            let mut cache = self.cache();
            match kvs.iter().find(|kv| kv.key == name) {
                Some(kv) => {
                    found |= matches!(key, EtcdKey::Vault(_));
                    cache.apply_kv(&key, kv, &mut applied);
                }
                None => cache.gone_from_etcd(&key),
            }
        }
        self.absorb(applied);
        self.flush();
        Ok(found)
    }

    /// Reads and applies the host lists etcd holds.
    fn read_host_lists(&self) -> Result<Applied> {
        let mut applied = Applied::default();
        let (_, lists) = self.range_prefix(HOSTS)?;
        let mut lists: Vec<(EtcdKey, Kv)> = lists
            .into_iter()
            .filter_map(|kv| EtcdKey::parse(&kv.key).map(|k| (k, kv)))
            .collect();
        apply_order(&mut lists);
        let mut cache = self.cache();
        for (key, kv) in &lists {
            cache.apply_kv(key, kv, &mut applied);
        }
        Ok(applied)
    }

    /// The mod_revision of what etcd holds under `key` when this host
    /// refused it for good (a forgery), else 0.
    pub(super) fn refused_revision(&self, key: &EtcdKey) -> i64 {
        let cache = self.cache();
        let name = key.to_string();
        if cache.refused.contains_key(&name) && !cache.is_waiting(&name) {
            cache.seen.get(&name).copied().unwrap_or(0)
        } else {
            0
        }
    }

    /// The generation and epoch of this host's key of `project` (1 and 0
    /// when none).
    pub(super) fn key_generation(&self, project: &str) -> (u64, u64) {
        self.cache()
            .keys
            .get(project)
            .map_or((1, 0), |h| (h.version, h.epoch))
    }

    /// Host list `version`, as held in the chain.
    pub(super) fn host_list_at(&self, version: u64) -> Option<super::cache::HostList> {
        let cache = self.cache();
        let pin = cache.pin?;
        let doc =
            flux_vault::membership::open_hosts(cache.chain.get(&version)?, version, &pin).ok()?;
        Some(super::cache::HostList::from_doc(doc))
    }

    /// The newest host removal: its list version and whom it removed.
    pub(super) fn removal(&self) -> Option<(u64, Vec<String>)> {
        self.cache().removal.clone()
    }

    /// Projects whose key predates the last host list that took a host
    /// away from them.
    pub(super) fn pending_rekeys(&self) -> Vec<String> {
        self.cache().pending_rekeys()
    }

    /// The host list `raw` would be, were it published now (checked as
    /// [`Self::publish_hosts`] checks it); `None` when it would not be
    /// taken.
    pub(super) fn incoming_hosts(&self, raw: &[u8]) -> Option<flux_vault::membership::HostsDoc> {
        let version = flux_vault::membership::Envelope::peek_version(raw).ok()?;
        self.cache().check_next_hosts(version, raw).ok()
    }

    /// The pending re-keys this host takes on by itself
    /// ([`super::cache::Cache::designated_rekeys`]).
    pub(super) fn designated_rekeys(&self) -> Vec<String> {
        self.cache().designated_rekeys()
    }

    /// Held while this host re-keys projects: the publisher's re-keys and
    /// its own background ones never race.
    pub(super) fn rekeying(&self) -> std::sync::MutexGuard<'_, ()> {
        self.rekeying.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The projects etcd still holds a key of wrapped for `host`.
    pub(super) fn keys_left_for(&self, host: &str) -> Result<Vec<String>> {
        let keys = self
            .etcd
            .keys_prefix(&keys_of(host))
            .map_err(|e| self.fail(e))?;
        Ok(keys
            .into_iter()
            .filter_map(|(k, _)| match EtcdKey::parse(&k) {
                Some(EtcdKey::Key { project, .. }) => Some(project),
                _ => None,
            })
            .collect())
    }

    /// The hosts taken away from `project` since its key was made: whose
    /// wrapped keys a re-key deletes.
    pub(super) fn revoked_hosts(&self, project: &str) -> Vec<String> {
        self.cache().revoked_at(project).1.into_iter().collect()
    }

    /// Holds what this host just wrote for `project` and tells the
    /// project to reload from it.
    pub(super) fn keep_and_announce(
        &self,
        project: &str,
        written: Vec<(EtcdKey, Vec<u8>)>,
        revision: i64,
    ) {
        for (key, raw) in written {
            self.held(&key, raw, revision);
        }
        self.flush();
        let applied = Applied {
            changed: [project.to_owned()].into(),
            ..Applied::default()
        };
        self.absorb(applied);
    }

    /// The version the next vault write of `project` gets.
    pub(super) fn next_version(&self, project: &str) -> u64 {
        self.cache().next_version(project)
    }

    /// The held vault of `project` and its etcd mod_revision (0: unknown).
    pub(super) fn held_vault(&self, project: &str) -> Option<(Vec<u8>, i64)> {
        self.cache()
            .vaults
            .get(project)
            .map(|h| (h.payload.clone(), h.mod_revision))
    }

    /// Reads `project` from etcd into the cache.
    pub(super) fn refresh_held(&self, project: &str) -> Result<()> {
        self.refresh(project).map(drop)
    }

    /// Keeps what this host wrote, and queues it for the local copy.
    fn held(&self, key: &EtcdKey, raw: Vec<u8>, revision: i64) {
        let persist = self.cache().held_written(key, raw, revision);
        self.queue(persist.into_iter().collect());
    }

    /// Discards etcd's history up to a project's deletion at `revision`,
    /// so its old vaults and wrapped keys cannot be read back with a host
    /// key. Returns what remains when that was not done.
    fn compact(&self, revision: i64) -> Option<String> {
        let remains = |why: &str| {
            format!(
                "etcd's history still holds the sealed vaults and wrapped keys of a deleted project ({why}): anyone holding a host key and etcd access can read them until etcd is compacted past revision {revision} (`etcdctl compact {revision}`)"
            )
        };
        if !self.compact_on_delete {
            return Some(remains("[store] compact_on_delete is false"));
        }
        match self.etcd.compact(revision) {
            Ok(()) => {
                info!(revision, "etcd history compacted past the deletion");
                None
            }
            Err(e) => {
                warn!(error = %e, revision, "cannot compact etcd past the deletion");
                Some(remains(&format!("compacting failed: {e}")))
            }
        }
    }
}

impl Store for EtcdStore {
    fn projects(&self) -> Result<Vec<String>> {
        Ok(self.cache().projects())
    }

    fn load_key(&self, project: &str) -> Result<Zeroizing<String>> {
        self.plain_key(project)
    }

    fn create_key(&self, project: &str, key: &ProjectKey) -> Result<()> {
        let list = self.my_host_list()?;
        if !list.serves(&self.me, project) {
            let on: Vec<String> = list
                .serving(project)
                .into_iter()
                .map(|h| h.recipient)
                .collect();
            return Err(Error::BadRequest(format!(
                "project {project} is assigned to {} by host list version {}, not to this host ({}): create it on one of them",
                on.join(", "),
                list.version,
                self.me
            )));
        }
        let (vault_key, my_key) = (EtcdKey::vault(project), EtcdKey::key(&self.me, project));
        let (generation, vault_revision, key_revision) = {
            let cache = self.cache();
            if cache.keys.contains_key(project) {
                return Err(Error::AlreadyExists(project.to_owned()));
            }
            if cache.vaults.contains_key(project) {
                return Err(Error::BadRequest(format!(
                    "project {project} exists in the fleet, but this host holds no key for it: run `fluxctl hosts add` for this host on a host that serves it"
                )));
            }
            // Anything etcd holds there was refused (a forgery): written over.
            (
                cache.next_version(project),
                cache.etcd_revision(&vault_key, 0),
                cache.etcd_revision(&my_key, 0),
            )
        };
        let created = flux_vault::time::created_stamp();
        let plain = key.to_file_contents(&created);
        let (mut ops, mine) = self.key_puts(
            project,
            plain.as_bytes(),
            generation,
            list.version,
            &list.serving(project),
        )?;
        let mine = mine.expect("this host is listed");
        let rest = ops.split_off(ops.len().min(MAX_TXN_OPS - 2));
        let (ok, revision) = self.txn(
            vec![
                Compare::mod_revision(&vault_key.to_string(), vault_revision),
                Compare::mod_revision(&my_key.to_string(), key_revision),
            ],
            ops,
        )?;
        if !ok {
            return Err(Error::AlreadyExists(project.to_owned()));
        }
        self.put_all(rest)?;
        self.held(&EtcdKey::key(&self.me, project), mine, revision);
        self.flush();
        Ok(())
    }

    fn delete_key(&self, project: &str) -> Result<()> {
        let list = self.my_host_list()?;
        let version = self.cache().next_version(project);
        let tomb_key = EtcdKey::Deleted(project.to_owned());
        let tomb = self.sign(Kind::Deleted, &tomb_key, version, b"");
        let mut ops = vec![
            Op::put(&tomb_key.to_string(), &tomb),
            Op::delete(&EtcdKey::vault(project).to_string()),
        ];
        ops.extend(
            list.hosts
                .iter()
                .map(|h| Op::delete(&EtcdKey::key(&h.recipient, project).to_string())),
        );
        let revision = self.put_all(ops)?;
        self.held(&tomb_key, tomb, revision);
        self.queue(vec![
            Persist::Remove(format!("vaults/{project}")),
            Persist::Remove(format!("keys/{project}")),
        ]);
        self.flush();
        if let Some(note) = self.compact(revision) {
            warn!(project, "{note}");
            self.remains
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(project.to_owned(), (revision, note));
        }
        Ok(())
    }

    fn load_vault(&self, project: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.cache().vaults.get(project).map(|h| h.payload.clone()))
    }

    fn vault_exists(&self, project: &str) -> bool {
        self.cache().vaults.contains_key(project)
    }

    fn store_vault(&self, project: &str, ciphertext: &[u8]) -> Result<()> {
        if self.store_vault_if(project, None, ciphertext)? {
            Ok(())
        } else {
            Err(Error::Unavailable(Unavailable::Contended {
                project: project.to_owned(),
            }))
        }
    }

    fn store_vault_if(
        &self,
        project: &str,
        expected: Option<&[u8; 32]>,
        ciphertext: &[u8],
    ) -> Result<bool> {
        self.my_host_list()?;
        let key = EtcdKey::vault(project);
        let (matches, held, base, version) = {
            let cache = self.cache();
            let held = cache.vaults.get(project);
            let matches = match (held, expected) {
                (Some(h), Some(fp)) => sha(&h.payload) == *fp,
                (None, None) => true,
                _ => false,
            };
            let base = cache.etcd_revision(&key, held.map_or(0, |h| h.mod_revision));
            (matches, held.is_some(), base, cache.next_version(project))
        };
        if !matches {
            // The vault moved on: read etcd and let the caller apply its
            // change again.
            self.refresh(project)?;
            return Ok(false);
        }
        if held && base == 0 {
            // etcd lost the vault this host serves.
            return self.restore_to_etcd(project, ciphertext);
        }
        // Compared with what etcd holds, accepted or not: a forgery or a
        // replayed old version there is written over.
        let env = self.sign(Kind::Vault, &key, version, ciphertext);
        let (ok, revision) = self.txn(
            vec![Compare::mod_revision(&key.to_string(), base)],
            vec![Op::put(&key.to_string(), &env)],
        )?;
        if ok {
            self.held(&key, env, revision);
            self.flush();
            return Ok(true);
        }
        self.refresh(project)?;
        if self.cache().deleted.contains_key(project) && !self.cache().keys.contains_key(project) {
            return Err(Error::UnknownProject(project.to_owned()));
        }
        Ok(false)
    }

    fn replace_key(&self, project: &str, key: &ProjectKey, ciphertext: &[u8]) -> Result<()> {
        let list = self.my_host_list()?;
        let vault_key = EtcdKey::vault(project);
        let (version, base) = {
            let cache = self.cache();
            let held = cache.vaults.get(project).map_or(0, |h| h.mod_revision);
            (
                cache.next_version(project),
                cache.etcd_revision(&vault_key, held),
            )
        };
        let env = self.sign(Kind::Vault, &vault_key, version, ciphertext);
        let created = flux_vault::time::created_stamp();
        let plain = key.to_file_contents(&created);
        // This host first: its new key lands in the transaction with the
        // vault it opens; every host serving the project gets it, at this
        // list's epoch.
        let mut hosts = list.serving(project);
        hosts.sort_by_key(|h| h.recipient != self.me);
        let (mut keys, mine) =
            self.key_puts(project, plain.as_bytes(), version, list.version, &hosts)?;
        let mine = mine.expect("this host is listed");
        let rest = keys.split_off(keys.len().min(MAX_TXN_OPS - 1));
        let mut ops = vec![Op::put(&vault_key.to_string(), &env)];
        ops.extend(keys);
        let compare = if base == 0 {
            vec![]
        } else {
            vec![Compare::mod_revision(&vault_key.to_string(), base)]
        };
        let (ok, revision) = self.txn(compare, ops)?;
        if !ok {
            self.refresh(project)?;
            return Err(Error::Unavailable(Unavailable::Contended {
                project: project.to_owned(),
            }));
        }
        self.put_all(rest)?;
        self.held(&EtcdKey::key(&self.me, project), mine, revision);
        self.held(&vault_key, env, revision);
        self.flush();
        Ok(())
    }

    fn delete_vault(&self, _project: &str) -> Result<()> {
        // The signed deletion (`delete_key`) removed the vault too.
        Ok(())
    }

    fn vault_location(&self, project: &str) -> Location {
        Location::Etcd(EtcdKey::vault(project).to_string())
    }

    fn key_location(&self, project: &str) -> Location {
        Location::Etcd(EtcdKey::key(&self.me, project).to_string())
    }

    fn check_key_private(&self, _project: &str) -> Result<()> {
        Ok(())
    }

    fn health(&self, project: &str) -> Option<String> {
        let cache = self.cache();
        cache
            .outage
            .clone()
            .or_else(|| cache.unsynced.clone())
            .or_else(|| cache.problem.clone())
            .or_else(|| cache.refusal(project))
    }
}

impl EtcdStore {
    /// etcd lost a vault this host serves (deleted without a signed
    /// deletion, or etcd restored or rebuilt): writes `ciphertext` back,
    /// with every listed host's wrapped key, as a new version — only where
    /// etcd holds no vault and no newer deletion of the project.
    fn restore_to_etcd(&self, project: &str, ciphertext: &[u8]) -> Result<bool> {
        let list = self.my_host_list()?;
        let plain = self.plain_key(project)?;
        let key = EtcdKey::vault(project);
        let tomb = EtcdKey::Deleted(project.to_owned());
        let (version, generation, epoch, tomb_revision) = {
            let cache = self.cache();
            (
                cache.next_version(project),
                cache.keys.get(project).map_or(1, |h| h.version),
                cache.keys.get(project).map_or(0, |h| h.epoch),
                cache.etcd_revision(
                    &tomb,
                    cache.deleted.get(project).map_or(0, |h| h.mod_revision),
                ),
            )
        };
        let env = self.sign(Kind::Vault, &key, version, ciphertext);
        let (mut ops, mine) = self.key_puts(
            project,
            plain.as_bytes(),
            generation,
            epoch,
            &list.serving(project),
        )?;
        let rest = ops.split_off(ops.len().min(MAX_TXN_OPS - 2));
        ops.insert(0, Op::put(&key.to_string(), &env));
        let (ok, revision) = self.txn(
            vec![
                Compare::mod_revision(&key.to_string(), 0),
                Compare::mod_revision(&tomb.to_string(), tomb_revision),
            ],
            ops,
        )?;
        if !ok {
            self.refresh(project)?;
            return Ok(false);
        }
        self.put_all(rest)?;
        warn!(
            project,
            "etcd had lost the project's vault: written back with every host's key"
        );
        self.held(&key, env, revision);
        if let Some(mine) = mine {
            self.held(&EtcdKey::key(&self.me, project), mine, revision);
        }
        self.flush();
        Ok(true)
    }

    /// Prefixes this host watches.
    pub fn watched(&self) -> [String; 2] {
        [FLEET.to_owned(), keys_of(&self.me)]
    }
}
