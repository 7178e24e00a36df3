//! [`FleetStore`]: project keys and sealed vaults kept in etcd as signed
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
//! request path ([`FleetStore::flush`]), in the order the changes were
//! accepted.
//!
//! A full read ([`FleetStore::resync`]) goes in pages at one revision and
//! applies each page as it arrives; one that cannot finish is reported
//! (`unsynced`, shown by `fluxctl hosts list` and `status`) while the host
//! serves what it holds and the watch tries again. Objects refused for an
//! unknown signer are not kept: their keys are read from etcd again when
//! the host list changes ([`super::cache::Applied::reread`]).
//!
//! Here: the store's state and what the rest of fleet mode asks of it.
//! Beside it: `open` (opening the store and reading the local copy back),
//! `sync` (reading etcd: at start, in full, the watch's events),
//! `notices` (what this host watches, and the notices a set sends),
//! `publish` (the host list), `writes` (the [`Store`] implementation),
//! `sign` (signing envelopes, wrapping and unwrapping project keys),
//! `repair` (writing back what etcd lost) and `local_copy` (the sealed
//! copy on disk). etcd itself is behind [`super::kv::Backend`].

use super::cache::{Applied, Cache, Persist};
use super::envelope::{self, Kind, Signing};
use super::etcd::{self, Etcd};
use super::identity::{HostIdentity, fleet_id, parse_fleet_id, parse_recipient, wrap_for};
use super::kv::{Backend, Compare, Kv, KvError, Op, WatchEvent, Watched};
use super::layout::{DELETED, FLEET, FleetKey, HOSTS, ID, Notice, VAULTS, keys_of};
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
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tracing::{debug, info, warn};
use zeroize::Zeroizing;

mod local_copy;
mod notices;
mod open;
mod publish;
mod repair;
mod sign;
mod sync;
mod writes;

/// The etcd store. See the module docs.
#[derive(Debug)]
pub struct FleetStore {
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
    /// Bytes of local copies above which this host serves them without
    /// waiting for etcd and loads its projects in the background
    /// ([`Self::holds_much`]).
    load_in_background_above: u64,
    /// The change feed, once the watch runs: what a write's or a repair's
    /// read of etcd changed is announced on it too.
    feed: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<crate::store::Change>>,
    /// Deleted projects etcd's history still holds, with the revision of
    /// the deletion, until etcd is compacted past it.
    remains: Mutex<std::collections::BTreeMap<String, (i64, String)>>,
    /// The newest etcd revision applied from a watch or a full read, for
    /// the `flux_fleet_applied_revision` gauge.
    applied: std::sync::atomic::AtomicI64,
    /// Held while re-keying ([`FleetStore::rekeying`]).
    rekeying: Mutex<()>,
}

impl FleetStore {
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

    /// True when this host holds more than `[store]
    /// load_in_background_above` of envelopes: it serves its copies
    /// without waiting for etcd, and binds every project's socket before
    /// loading the projects.
    pub fn holds_much(&self) -> bool {
        self.cache().held_bytes() > self.load_in_background_above
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
        let _ = self.range_prefix(&FleetKey::Id.to_string());
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
    pub(super) fn fail(&self, e: KvError) -> Error {
        if e.is_unreachable() {
            self.set_outage(Some(e.to_string()));
        }
        match e {
            KvError::Unknown(reason) => Error::Unavailable(Unavailable::Unknown(reason)),
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

    /// The mod_revision of what etcd holds under `key` when this host
    /// refused it for good (a forgery), else 0.
    pub(super) fn refused_revision(&self, key: &FleetKey) -> i64 {
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

    /// The projects etcd still holds a key of wrapped for any of `hosts`.
    pub(super) fn keys_left_for(&self, hosts: &[String]) -> Result<BTreeSet<String>> {
        let mut left = BTreeSet::new();
        for host in hosts {
            let keys = self
                .etcd
                .keys_prefix(&keys_of(host))
                .map_err(|e| self.fail(e))?;
            left.extend(
                keys.into_iter()
                    .filter_map(|(k, _)| match FleetKey::parse(&k) {
                        Some(FleetKey::Key { project, .. }) => Some(project),
                        _ => None,
                    }),
            );
        }
        Ok(left)
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
        written: Vec<(FleetKey, Vec<u8>)>,
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
    fn held(&self, key: &FleetKey, raw: Vec<u8>, revision: i64) {
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
