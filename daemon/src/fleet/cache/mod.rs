//! What this host holds of the fleet — every piece verified before it is
//! held. No I/O here: [`super::store`] feeds it what etcd (or the local
//! copy) holds and writes back what it says to keep.
//!
//! The rules, for each key of [`super::layout`] (every envelope must also
//! be signed for this host's fleet: [`flux_vault::membership`]):
//!
//! | key | accepted when |
//! |---|---|
//! | `fleet/id` | it names the fleet this host pinned, signed by that fleet's operator key |
//! | `fleet/hosts/<v>` | signed by the operator key; v = 1 names no predecessor, v = held + 1 names the SHA-256 of the held version's envelope, and a list that retires version held + 1 (its `oldest` is above it) is a new starting point; any other list at a version already held is a fork, refused and reported (one below the held version that this host passed over decides nothing) |
//! | `fleet/vaults/<p>` | signed by a host of the held list, a version above the held vault's and any deletion of `p`, at most [`MAX_STEP`] above them; of a project the held list does not let this host serve, dropped unread |
//! | `keys/<me>/<p>` | signed by a host of the held list, for a project the held list lets this host serve; it unwraps with this host's identity; a generation at least the held key's (the same generation only with the same key), an epoch no later than the held list |
//! | `fleet/deleted/<p>` | signed by a host of the held list, a version above the held vault's, at most [`MAX_STEP`] above it |
//!
//! Anything else — unsigned, signed by an unknown or removed host or for
//! another fleet, written for another key, older than what is held — is
//! refused: the held copy keeps serving and the reason is kept for
//! `fluxctl status`. A key that disappears from etcd changes nothing held
//! (its refusal, if any, is forgotten): only a signed deletion makes a
//! host stop serving a project — or a host list that names this host and
//! assigns the project to other hosts only: its key and vault are then
//! dropped ([`Cache::drop_unserved`]). A host list without this host is
//! held like any other — this host then writes nothing and reports it —
//! but nothing is dropped or deleted for it. Each host list that takes a
//! host away from a project (a removal, a narrower assignment) is noted
//! ([`Cache::revoked_at`]): a project keyed before it is re-keyed. An object refused because its
//! signer is not (yet) in the held list is dropped at once — only its etcd
//! key is kept (up to 4096 keys), and read from etcd again when the list
//! changes ([`Applied::reread`]): an etcd writer who fills etcd with
//! stranger-signed envelopes costs this host no memory. An envelope over
//! the envelope cap arrives unread ([`super::kv::Kv::oversize`]) and is
//! refused as such. Every refusal is counted ([`Cache::refused_total`]).
//! The mod_revision of whatever etcd holds under each key, accepted or
//! not, is remembered: a write compares with it, so it goes over a
//! refused object.
//!
//! Its parts: `held` (what is held, and what applying reports), `host_list`
//! (one version of the host list, and a project's designated host),
//! `accept` (the rules above, enforced) and `revocations` (what the host
//! lists took away, and the re-keys it calls for); this file holds the
//! cache's state and what it answers about it.

mod accept;
mod held;
mod host_list;
mod revocations;

use super::envelope::{self, Kind};
use super::identity::{HostIdentity, fleet_id};
use super::layout::FleetKey;
use ed25519_dalek::VerifyingKey;
use flux_vault::layout::fleet_copy;
use flux_vault::membership::open_hosts;
pub use held::{Applied, Held, Persist};
pub use host_list::{HostList, designated_host};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Keys of objects to read again when the host list changes, at most.
const MAX_WAITING: usize = 4096;
/// Refusal reasons kept for `fluxctl status`, at most.
const MAX_REFUSED: usize = 4096;
/// How far above the version held a vault or deletion may jump: a host
/// offline for a long time sees a bounded number of versions pass, while
/// a version near 2^64 — which would leave honest writes nowhere to go —
/// is refused.
pub const MAX_STEP: u64 = 1 << 32;

/// The held state (see the module docs).
#[derive(Debug)]
pub struct Cache {
    /// The fleet's operator key, once known.
    pub pin: Option<VerifyingKey>,
    /// This host's recipient.
    me: String,
    /// This host's identity, which every wrapped key must open with.
    identity: Option<Arc<HostIdentity>>,
    pub hosts: Option<(HostList, Vec<u8>)>,
    /// Every host list version accepted, as etcd held it: the chain a
    /// joining host checks from the fleet id, and what this host writes
    /// back when etcd lost it.
    pub chain: BTreeMap<u64, Vec<u8>>,
    /// The newest host list version that removed a host, and whom: every
    /// project assigned to no host in particular and keyed before it is
    /// re-keyed (`fluxctl hosts remove --resume` finishes an interrupted
    /// removal).
    pub removal: Option<(u64, Vec<String>)>,
    /// Assigned projects whose hosts lost one: the newest host list
    /// version that took one away, and every host taken away. A project
    /// keyed before that version is re-keyed, as after a removal.
    pub revoked: BTreeMap<String, (u64, BTreeSet<String>)>,
    /// The fleet id's envelope, once accepted.
    pub id: Option<Vec<u8>>,
    pub vaults: BTreeMap<String, Held>,
    pub keys: BTreeMap<String, Held>,
    pub deleted: BTreeMap<String, Held>,
    /// Why the last object seen under a key was refused, by etcd key.
    pub refused: BTreeMap<String, String>,
    /// The mod_revision of what etcd holds under a key, as last seen,
    /// accepted or not (0: deleted): what a write compares against, so a
    /// refused object (a forgery, a replayed old version) is written over.
    pub seen: BTreeMap<String, i64>,
    /// Keys of objects refused for an unknown signer (the objects are
    /// dropped): read again when the host list changes.
    waiting: BTreeMap<String, FleetKey>,
    /// Envelopes refused since the start (each refusal of each one).
    pub refused_total: u64,
    /// A fleet-wide problem (the fleet id, the host list).
    pub problem: Option<String>,
    /// Why etcd cannot be reached, while it cannot.
    pub outage: Option<String>,
    /// Why the last full read of etcd did not finish, until one does: the
    /// host serves what it holds and keeps trying.
    pub unsynced: Option<String>,
    /// The last etcd revision read in full.
    pub revision: i64,
}

fn local_name(key: &FleetKey) -> Option<String> {
    match key {
        FleetKey::Id => Some(fleet_copy::ID.into()),
        FleetKey::Hosts(v) => Some(fleet_copy::hosts(*v)),
        FleetKey::Vault(p) => Some(fleet_copy::file(fleet_copy::VAULTS, p)),
        FleetKey::Deleted(p) => Some(fleet_copy::file(fleet_copy::DELETED, p)),
        FleetKey::Key { project, .. } => Some(fleet_copy::file(fleet_copy::KEYS, project)),
    }
}

impl Cache {
    /// An empty cache for the host `me`, trusting the fleet `pin` when
    /// known.
    pub fn new(me: String, pin: Option<VerifyingKey>) -> Self {
        Self {
            pin,
            me,
            identity: None,
            hosts: None,
            chain: BTreeMap::new(),
            removal: None,
            revoked: BTreeMap::new(),
            id: None,
            vaults: BTreeMap::new(),
            keys: BTreeMap::new(),
            deleted: BTreeMap::new(),
            refused: BTreeMap::new(),
            seen: BTreeMap::new(),
            waiting: BTreeMap::new(),
            refused_total: 0,
            problem: None,
            outage: None,
            unsynced: None,
            revision: 0,
        }
    }

    /// Checks every wrapped key this host accepts against `identity`.
    pub fn with_identity(mut self, identity: Arc<HostIdentity>) -> Self {
        self.identity = Some(identity);
        self
    }

    /// The pinned fleet's id.
    pub fn fleet(&self) -> Option<String> {
        self.pin.map(|k| fleet_id(&k))
    }

    /// The held host list.
    pub fn host_list(&self) -> Option<&HostList> {
        self.hosts.as_ref().map(|(l, _)| l)
    }

    /// The version of the held host list (0: none).
    pub fn hosts_version(&self) -> u64 {
        self.host_list().map_or(0, |l| l.version)
    }

    /// The projects this host serves: a key and no later deletion.
    pub fn projects(&self) -> Vec<String> {
        self.keys.keys().cloned().collect()
    }

    /// A host list version above the one held that this host refused for
    /// good (a forged or forked list): writes wait until the operator's
    /// own version is back, so that nothing is sealed with a key a host
    /// removed by that version may hold.
    pub fn refused_newer_list(&self) -> Option<String> {
        let held = self.hosts_version();
        self.refused
            .iter()
            .find_map(|(name, why)| match FleetKey::parse(name) {
                Some(FleetKey::Hosts(v)) if v > held && !self.waiting.contains_key(name) => {
                    Some(format!("host list version {v} in etcd is refused ({why})"))
                }
                _ => None,
            })
    }

    /// Drops every project the held list no longer lets this host serve —
    /// its key and vault, here and in the local copy — while the list
    /// names this host and gives the project another host (a list without
    /// this host, or one that leaves a project no host, drops nothing).
    pub fn drop_unserved(&mut self, out: &mut Applied) {
        let Some(list) = self.host_list().filter(|l| l.contains(&self.me)) else {
            return;
        };
        let unserved: Vec<String> = self
            .keys
            .keys()
            .chain(self.vaults.keys())
            .filter(|p| !list.serves(&self.me, p) && list.serving_iter(p).next().is_some())
            .cloned()
            .collect();
        for p in unserved {
            if self.keys.remove(&p).is_some() {
                out.gone.insert(p.clone());
                out.persist
                    .push(Persist::Remove(fleet_copy::file(fleet_copy::KEYS, &p)));
            }
            if self.vaults.remove(&p).is_some() {
                out.persist
                    .push(Persist::Remove(fleet_copy::file(fleet_copy::VAULTS, &p)));
            }
        }
    }

    /// Forgets the host list versions the held list retires
    /// ([`HostsDoc::oldest`](flux_vault::membership::HostsDoc::oldest)),
    /// here and in the local copy: they are never written back to etcd.
    pub fn retire_lists(&mut self, out: &mut Applied) {
        let oldest = self.host_list().map_or(0, |l| l.oldest);
        let retired: Vec<u64> = self.chain.range(..oldest).map(|(v, _)| *v).collect();
        for v in retired {
            self.chain.remove(&v);
            out.persist.push(Persist::Remove(fleet_copy::hosts(v)));
        }
    }

    /// True when the held list lets this host serve `project`.
    pub fn serves_here(&self, project: &str) -> bool {
        self.host_list()
            .is_some_and(|l| l.serves(&self.me, project))
    }

    /// The version the next vault write of `project` gets (saturating: a
    /// version that high was refused before it was held).
    pub fn next_version(&self, project: &str) -> u64 {
        let vault = self.vaults.get(project).map_or(0, |h| h.version);
        let deleted = self.deleted.get(project).map_or(0, |h| h.version);
        vault.max(deleted).saturating_add(1)
    }

    /// Loads what the local copy holds (verified when it was accepted).
    pub fn load_local(&mut self, key: &FleetKey, raw: Vec<u8>) -> Result<(), String> {
        let held = Self::parse_local(key, &raw)?;
        self.insert_local(key, held);
        Ok(())
    }

    /// Parses one envelope of the local copy (needs no held state: copies
    /// are parsed on several threads at start).
    pub fn parse_local(key: &FleetKey, raw: &[u8]) -> Result<Held, String> {
        let env = envelope::parse(raw, kind_of(key), key)?;
        Ok(Held::from(key, env, raw, 0))
    }

    /// Holds what [`Self::parse_local`] parsed.
    pub fn insert_local(&mut self, key: &FleetKey, held: Held) {
        match key {
            FleetKey::Id | FleetKey::Hosts(_) => unreachable!("loaded by the caller"),
            FleetKey::Vault(p) => {
                self.vaults.insert(p.clone(), held);
            }
            FleetKey::Deleted(p) => {
                self.deleted.insert(p.clone(), held);
            }
            FleetKey::Key { project, .. } => {
                self.keys.insert(project.clone(), held);
            }
        }
    }

    /// Loads one host list version of the local copy, checked against the
    /// pinned operator key; the highest loaded is the held list.
    pub fn load_local_hosts(&mut self, version: u64, raw: Vec<u8>) -> Result<(), String> {
        let pin = self
            .pin
            .ok_or("a host list is kept, but no fleet id: the local copy is incomplete")?;
        let doc = open_hosts(&raw, version, &pin)?;
        let list = HostList::from_doc(doc);
        let prev = self.host_list().cloned();
        self.note_list(prev.as_ref(), &list);
        if prev.is_none_or(|l| l.version < version) {
            self.hosts = Some((list, raw.clone()));
        }
        self.chain.insert(version, raw);
        Ok(())
    }

    /// Loads the local copy's fleet id envelope (checked by the caller).
    pub fn load_local_id(&mut self, raw: Vec<u8>) {
        self.id = Some(raw);
    }

    /// True when the object under `name` waits for a host list that may
    /// trust its signer.
    pub fn is_waiting(&self, name: &str) -> bool {
        self.waiting.contains_key(name)
    }

    /// Notes that etcd no longer holds `key` (a deletion seen by the
    /// watch). Nothing held changes: see the module docs. A refusal of
    /// what was there is forgotten with it.
    pub fn gone_from_etcd(&mut self, key: &FleetKey) {
        let name = key.to_string();
        self.refused.remove(&name);
        self.waiting.remove(&name);
        self.seen.insert(name, 0);
    }

    /// The mod_revision a write of `key` compares against: what etcd was
    /// last seen holding, else what this host holds (0: nothing).
    pub fn etcd_revision(&self, key: &FleetKey, held: i64) -> i64 {
        self.seen.get(&key.to_string()).copied().unwrap_or(held)
    }

    /// Bytes of envelopes held (vaults, keys, deletions, host lists, the
    /// fleet id), each counted as etcd holds it and as opened — a vault as
    /// opened only ([`Held::raw`]): what the fleet costs this host's
    /// memory.
    pub fn held_bytes(&self) -> u64 {
        let held = self
            .vaults
            .values()
            .chain(self.keys.values())
            .chain(self.deleted.values())
            .map(|h| h.raw.len() + h.payload.len())
            .sum::<usize>();
        let lists = self.chain.values().map(Vec::len).sum::<usize>()
            + self.hosts.as_ref().map_or(0, |(_, raw)| raw.len())
            + self.id.as_ref().map_or(0, Vec::len);
        (held + lists) as u64
    }

    /// Waits again for a host list change to read `key` (it could not be
    /// read now).
    pub fn wait_again(&mut self, key: FleetKey) {
        if self.waiting.len() < MAX_WAITING {
            self.waiting.insert(key.to_string(), key);
        }
    }

    /// How many refused objects wait for a host list change (their keys
    /// only).
    pub fn waiting_len(&self) -> usize {
        self.waiting.len()
    }

    /// Why `project`'s newest data in etcd was refused, if it was.
    pub fn refusal(&self, project: &str) -> Option<String> {
        [
            FleetKey::vault(project),
            FleetKey::key(&self.me, project),
            FleetKey::Deleted(project.to_owned()),
        ]
        .iter()
        .find_map(|k| {
            self.refused
                .get(&k.to_string())
                .map(|r| format!("{k} refused: {r}; serving this host's last good copy"))
        })
    }

    /// Keeps what this host itself just wrote (already signed by it, or a
    /// host list checked by [`Self::check_next_hosts`]).
    pub fn held_written(
        &mut self,
        key: &FleetKey,
        raw: Vec<u8>,
        mod_revision: i64,
    ) -> Option<Persist> {
        let kind = kind_of(key);
        let env = envelope::parse(&raw, kind, key).ok()?;
        let held = Held::from(key, env, &raw, mod_revision);
        let local = local_name(key)?;
        match key {
            FleetKey::Vault(p) => {
                self.vaults.insert(p.clone(), held);
            }
            FleetKey::Key { host, project } if *host == self.me => {
                self.keys.insert(project.clone(), held);
            }
            FleetKey::Deleted(p) => {
                self.vaults.remove(p);
                self.keys.remove(p);
                self.deleted.insert(p.clone(), held);
            }
            _ => return None,
        }
        self.refused.remove(&key.to_string());
        if mod_revision != 0 {
            self.seen.insert(key.to_string(), mod_revision);
        }
        Some(Persist::Write(local, raw))
    }
}

/// The kind of envelope a key holds.
pub fn kind_of(key: &FleetKey) -> Kind {
    match key {
        FleetKey::Id => Kind::Fleet,
        FleetKey::Hosts(_) => Kind::Hosts,
        FleetKey::Vault(_) => Kind::Vault,
        FleetKey::Deleted(_) => Kind::Deleted,
        FleetKey::Key { .. } => Kind::Key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::envelope::{Signing, seal};
    use flux_vault::membership::OperatorKey;
    use flux_vault::membership::{HostsDoc, digest_hex};

    const FLEET_V: u64 = 2;

    struct Fleet {
        op: OperatorKey,
        root: HostIdentity,
        other: Arc<HostIdentity>,
        cache: Cache,
    }

    fn signed(
        f: &Fleet,
        kind: Kind,
        key: &FleetKey,
        version: u64,
        payload: &[u8],
        by: &HostIdentity,
    ) -> Vec<u8> {
        let fleet = f.op.fleet_id();
        let s = Signing {
            fleet: &fleet,
            kind,
            version,
            epoch: FLEET_V,
        };
        seal(s, key, payload, by)
    }

    fn list(
        op: &OperatorKey,
        version: u64,
        previous: Option<&[u8]>,
        hosts: &[&HostIdentity],
    ) -> Vec<u8> {
        op.sign_hosts(&HostsDoc {
            version,
            previous: previous.map(digest_hex).unwrap_or_default(),
            ..HostsDoc::first(op.fleet_id(), hosts.iter().map(|h| h.record()).collect())
        })
    }

    /// Host list v1 = [root], v2 = [root, other], held by `other`.
    fn fleet() -> Fleet {
        let op = OperatorKey::generate();
        let root = HostIdentity::generate();
        let other = Arc::new(HostIdentity::generate());
        let mut cache =
            Cache::new(other.recipient(), Some(op.verifying_key())).with_identity(other.clone());
        let mut out = Applied::default();
        let v1 = list(&op, 1, None, &[&root]);
        cache.apply(&FleetKey::Hosts(1), &v1, 1, &mut out);
        let v2 = list(&op, 2, Some(&v1), &[&root, &other]);
        cache.apply(&FleetKey::Hosts(2), &v2, 2, &mut out);
        assert_eq!(cache.hosts_version(), 2, "{:?}", cache.refused);
        Fleet {
            op,
            root,
            other,
            cache,
        }
    }

    fn wrapped_for(f: &Fleet, key: &flux_vault::ProjectKey) -> Vec<u8> {
        let plain = key.to_file_contents("now");
        crate::fleet::identity::wrap_for(plain.as_bytes(), f.other.age().recipient()).unwrap()
    }

    #[test]
    fn vaults_signed_by_a_host_are_held_and_older_ones_refused() {
        let mut f = fleet();
        let key = FleetKey::vault("app");
        let mut out = Applied::default();
        let v5 = signed(&f, Kind::Vault, &key, 5, b"five", &f.root);
        f.cache.apply(&key, &v5, 10, &mut out);
        assert_eq!(f.cache.vaults["app"].payload, b"five");
        assert!(out.changed.contains("app"));
        let v4 = signed(&f, Kind::Vault, &key, 4, b"four", &f.other);
        f.cache.apply(&key, &v4, 11, &mut Applied::default());
        assert_eq!(
            f.cache.vaults["app"].payload, b"five",
            "a rollback is refused"
        );
        assert!(f.cache.refusal("app").unwrap().contains("rollback"));
    }

    #[test]
    fn a_vault_is_held_once_as_its_payload_and_read_again_changes_nothing() {
        let mut f = fleet();
        let key = FleetKey::vault("app");
        let v1 = signed(&f, Kind::Vault, &key, 1, &[7u8; 4096], &f.root);
        f.cache.apply(&key, &v1, 10, &mut Applied::default());
        let held = &f.cache.vaults["app"];
        assert!(held.raw.is_empty(), "the envelope is not kept beside it");
        assert_eq!(
            f.cache.held_bytes() as usize,
            held.payload.len()
                + f.cache.chain.values().map(Vec::len).sum::<usize>()
                + f.cache.hosts.as_ref().map_or(0, |(_, r)| r.len())
        );
        // The same envelope again (the watch after a full read, etcd after
        // a restart): nothing changes, its revision is taken.
        let mut again = Applied::default();
        f.cache.apply(&key, &v1, 12, &mut again);
        assert!(again.changed.is_empty() && again.persist.is_empty());
        assert_eq!(f.cache.vaults["app"].mod_revision, 12);
        assert!(f.cache.refusal("app").is_none());
        // The local copy still gets the whole envelope.
        let mut out = Applied::default();
        let v2 = signed(&f, Kind::Vault, &key, 2, b"two", &f.root);
        f.cache.apply(&key, &v2, 13, &mut out);
        assert!(out.persist.contains(&Persist::Write(
            fleet_copy::file(fleet_copy::VAULTS, "app"),
            v2.clone()
        )));
    }

    #[test]
    fn a_version_that_would_exhaust_the_counter_is_refused() {
        let mut f = fleet();
        let key = FleetKey::vault("app");
        let v1 = signed(&f, Kind::Vault, &key, 1, b"one", &f.root);
        f.cache.apply(&key, &v1, 1, &mut Applied::default());
        let max = signed(&f, Kind::Vault, &key, u64::MAX, b"evil", &f.root);
        f.cache.apply(&key, &max, 2, &mut Applied::default());
        assert_eq!(f.cache.vaults["app"].version, 1);
        assert!(f.cache.refusal("app").unwrap().contains("jumps more than"));
        assert_eq!(f.cache.next_version("app"), 2, "honest writes go on");
        let tomb = FleetKey::Deleted("app".into());
        let del = signed(&f, Kind::Deleted, &tomb, u64::MAX - 1, b"", &f.root);
        f.cache.apply(&tomb, &del, 3, &mut Applied::default());
        assert!(
            f.cache.vaults.contains_key("app"),
            "nor a deletion that far up"
        );
    }

    #[test]
    fn forged_moved_foreign_and_unknown_signers_are_refused() {
        let mut f = fleet();
        let key = FleetKey::vault("app");
        let stranger = HostIdentity::generate();
        let forged = signed(&f, Kind::Vault, &key, 9, b"evil", &stranger);
        f.cache.apply(&key, &forged, 1, &mut Applied::default());
        assert!(!f.cache.vaults.contains_key("app"));
        assert!(
            f.cache
                .refusal("app")
                .unwrap()
                .contains("not a host of the fleet")
        );
        let other = signed(&f, Kind::Vault, &FleetKey::vault("other"), 9, b"x", &f.root);
        f.cache.apply(&key, &other, 1, &mut Applied::default());
        assert!(!f.cache.vaults.contains_key("app"), "bound to another key");
        // The same host's envelope from another fleet (a host moved
        // between fleets keeping its key) does not count here.
        let elsewhere = OperatorKey::generate().fleet_id();
        let s = Signing {
            fleet: &elsewhere,
            kind: Kind::Vault,
            version: 9,
            epoch: 1,
        };
        f.cache.apply(
            &key,
            &seal(s, &key, b"x", &f.root),
            2,
            &mut Applied::default(),
        );
        assert!(!f.cache.vaults.contains_key("app"));
        assert!(f.cache.refusal("app").unwrap().contains("signed for fleet"));
    }

    #[test]
    fn only_the_operator_key_changes_the_host_list() {
        let mut f = fleet();
        let rogue = HostIdentity::generate();
        let (_, held) = f.cache.hosts.clone().unwrap();
        // A listed host signs the next version with a rogue host in it,
        // and one that lists only itself: both refused, reported, and
        // nothing is dropped.
        for hosts in [vec![&f.root, &*f.other, &rogue], vec![&f.root]] {
            let doc = HostsDoc {
                version: 3,
                previous: digest_hex(&held),
                ..HostsDoc::first(f.op.fleet_id(), hosts.iter().map(|h| h.record()).collect())
            };
            let payload = serde_json::to_vec(&doc).unwrap();
            let by_host = signed(&f, Kind::Hosts, &FleetKey::Hosts(3), 3, &payload, &f.root);
            f.cache
                .apply(&FleetKey::Hosts(3), &by_host, 3, &mut Applied::default());
            assert_eq!(f.cache.hosts_version(), 2);
            let why = &f.cache.refused[&FleetKey::Hosts(3).to_string()];
            assert!(
                why.contains("not signed by the fleet's operator key"),
                "{why}"
            );
        }
    }

    #[test]
    fn a_fork_or_a_gap_in_the_host_list_is_refused_and_reported() {
        let mut f = fleet();
        let v1 = f.cache.chain[&1].clone();
        // Version 2 again, different: a fork.
        let fork = list(&f.op, 2, Some(&v1), &[&f.root]);
        f.cache
            .apply(&FleetKey::Hosts(2), &fork, 5, &mut Applied::default());
        assert!(f.cache.host_list().unwrap().contains(&f.other.recipient()));
        assert!(f.cache.refused[&FleetKey::Hosts(2).to_string()].contains("fork"));
        // Version 3 that does not name version 2 as its predecessor.
        let off = list(&f.op, 3, Some(&fork), &[&f.root]);
        f.cache
            .apply(&FleetKey::Hosts(3), &off, 6, &mut Applied::default());
        assert_eq!(f.cache.hosts_version(), 2);
        assert!(f.cache.refused[&FleetKey::Hosts(3).to_string()].contains("does not follow"));
        // Version 5 after 2: waits, reported as a gap.
        let gap = list(&f.op, 5, Some(&v1), &[&f.root]);
        f.cache
            .apply(&FleetKey::Hosts(5), &gap, 7, &mut Applied::default());
        assert!(f.cache.refused[&FleetKey::Hosts(5).to_string()].contains("missing"));
        // The forged object gone from etcd: its refusal goes too.
        f.cache.gone_from_etcd(&FleetKey::Hosts(3));
        assert!(
            !f.cache
                .refused
                .contains_key(&FleetKey::Hosts(3).to_string())
        );
    }

    #[test]
    fn a_list_without_this_host_drops_nothing_and_records_the_removal() {
        let mut f = fleet();
        let me = f.other.recipient();
        let key = FleetKey::key(&me, "app");
        let pk = flux_vault::ProjectKey::generate();
        let wrapped = signed(&f, Kind::Key, &key, 1, &wrapped_for(&f, &pk), &f.root);
        f.cache.apply(&key, &wrapped, 1, &mut Applied::default());
        assert_eq!(f.cache.projects(), ["app"]);
        let v2 = f.cache.chain[&2].clone();
        let doc = HostsDoc {
            version: 3,
            previous: digest_hex(&v2),
            removed: vec![me.clone()],
            ..HostsDoc::first(f.op.fleet_id(), vec![f.root.record()])
        };
        let mut out = Applied::default();
        f.cache
            .apply(&FleetKey::Hosts(3), &f.op.sign_hosts(&doc), 4, &mut out);
        assert_eq!(f.cache.hosts_version(), 3);
        assert!(
            out.gone.is_empty() && !out.persist.iter().any(|p| matches!(p, Persist::Remove(_)))
        );
        assert_eq!(f.cache.projects(), ["app"], "still served from the copy");
        assert_eq!(f.cache.removal, Some((3, vec![me])));
        assert_eq!(f.cache.pending_rekeys(), ["app"], "keyed at epoch 2 < 3");
    }

    /// The next host list after the held one, with `assigned`.
    fn assigning(f: &Fleet, assigned: &[(&str, &[&HostIdentity])]) -> (u64, Vec<u8>) {
        let (held, raw) = f.cache.hosts.clone().unwrap();
        let mut doc = HostsDoc {
            version: held.version + 1,
            previous: digest_hex(&raw),
            ..HostsDoc::first(f.op.fleet_id(), held.hosts.clone())
        };
        for (p, on) in assigned {
            let on: Vec<String> = on.iter().map(|h| h.recipient()).collect();
            doc.assign(p, &on).unwrap();
        }
        (doc.version, f.op.sign_hosts(&doc))
    }

    #[test]
    fn a_project_assigned_to_other_hosts_is_not_held_and_one_taken_away_is_dropped() {
        let mut f = fleet();
        let me = f.other.recipient();
        // "api" on root only: this host keeps neither its vault nor its key.
        let (v3, list3) = assigning(&f, &[("api", &[&f.root])]);
        f.cache
            .apply(&FleetKey::Hosts(v3), &list3, 3, &mut Applied::default());
        assert_eq!(f.cache.hosts_version(), 3, "{:?}", f.cache.refused);
        let vault = FleetKey::vault("api");
        let sealed = signed(&f, Kind::Vault, &vault, 1, b"ciphertext", &f.root);
        let mut out = Applied::default();
        f.cache.apply(&vault, &sealed, 4, &mut out);
        assert!(!f.cache.vaults.contains_key("api") && out.persist.is_empty());
        let key = FleetKey::key(&me, "api");
        let pk = flux_vault::ProjectKey::generate();
        let wrapped = signed(&f, Kind::Key, &key, 1, &wrapped_for(&f, &pk), &f.root);
        f.cache.apply(&key, &wrapped, 5, &mut out);
        assert!(f.cache.projects().is_empty() && out.persist.is_empty());
        assert!(
            f.cache.is_waiting(&key.to_string()),
            "read again when assigned"
        );
        // Assigned to both: the key is read again, and its arrival fetches
        // the vault.
        let (v4, list4) = assigning(&f, &[("api", &[&f.root, &*f.other])]);
        let mut out = Applied::default();
        f.cache.apply(&FleetKey::Hosts(v4), &list4, 6, &mut out);
        assert_eq!(out.reread, std::slice::from_ref(&key));
        let mut out = Applied::default();
        f.cache.apply(&key, &wrapped, 5, &mut out);
        assert_eq!(f.cache.projects(), ["api"]);
        assert_eq!(out.reread, std::slice::from_ref(&vault));
        f.cache.apply(&vault, &sealed, 4, &mut out);
        assert!(f.cache.vaults.contains_key("api"));
        assert!(f.cache.pending_rekeys().is_empty());
        // Taken away from this host again: dropped, here and on disk.
        let (v5, list5) = assigning(&f, &[("api", &[&f.root])]);
        let mut out = Applied::default();
        f.cache.apply(&FleetKey::Hosts(v5), &list5, 7, &mut out);
        assert!(out.gone.contains("api") && f.cache.projects().is_empty());
        assert!(!f.cache.vaults.contains_key("api"));
        for file in ["keys/api", "vaults/api"] {
            assert!(
                out.persist.contains(&Persist::Remove(file.into())),
                "{file}"
            );
        }
        // The host that keeps it sees the loss: its key is re-keyed, and
        // the wrapped key of the host taken away is what it deletes.
        assert_eq!(f.cache.revoked_at("api"), (v5, [me.clone()].into()));
        assert_eq!(f.cache.revoked_at("web"), (0, BTreeSet::new()));
    }

    #[test]
    fn a_removal_re_keys_only_the_projects_the_removed_host_served() {
        let mut f = fleet();
        let me = f.other.recipient();
        let third = HostIdentity::generate();
        let (held, raw) = f.cache.hosts.clone().unwrap();
        let mut doc = HostsDoc {
            version: 3,
            previous: digest_hex(&raw),
            ..HostsDoc::first(
                f.op.fleet_id(),
                vec![f.root.record(), f.other.record(), third.record()],
            )
        };
        doc.assign("api", &[me.clone(), f.root.recipient()])
            .unwrap();
        doc.assign("web", &[me.clone(), third.recipient()]).unwrap();
        assert_eq!(held.version, 2);
        let raw3 = f.op.sign_hosts(&doc);
        f.cache
            .apply(&FleetKey::Hosts(3), &raw3, 3, &mut Applied::default());
        for p in ["api", "web", "all"] {
            let key = FleetKey::key(&me, p);
            let pk = flux_vault::ProjectKey::generate();
            let wrapped = signed(&f, Kind::Key, &key, 1, &wrapped_for(&f, &pk), &f.root);
            f.cache.apply(&key, &wrapped, 4, &mut Applied::default());
        }
        assert_eq!(f.cache.projects(), ["all", "api", "web"]);
        // The third host goes: "web" (its project) and "all" (every
        // host's) are re-keyed; "api" never was on it.
        doc = doc
            .next(
                &raw3,
                vec![f.root.record(), f.other.record()],
                vec![third.recipient()],
            )
            .unwrap();
        f.cache.apply(
            &FleetKey::Hosts(4),
            &f.op.sign_hosts(&doc),
            5,
            &mut Applied::default(),
        );
        assert_eq!(f.cache.hosts_version(), 4, "{:?}", f.cache.refused);
        assert_eq!(f.cache.pending_rekeys(), ["all", "web"]);
        // "web" left root when it was first assigned (version 3), and now
        // the third host.
        assert_eq!(
            f.cache.revoked_at("web"),
            (4, [f.root.recipient(), third.recipient()].into())
        );
    }

    #[test]
    fn a_host_that_missed_retired_versions_starts_again_from_a_list_that_retires_them() {
        let mut f = fleet();
        let (held, raw) = f.cache.hosts.clone().unwrap();
        let mut doc = HostsDoc {
            version: held.version,
            previous: String::new(),
            ..HostsDoc::first(f.op.fleet_id(), held.hosts.clone())
        };
        // Versions 3 to 20, signed by the operator while this host was away;
        // version 6 removes the root host.
        let (mut lists, mut prev) = (BTreeMap::new(), raw);
        for v in 3..=20 {
            let (hosts, removed) = if v == 6 {
                (vec![f.other.record()], vec![f.root.recipient()])
            } else {
                (doc.hosts.clone(), vec![])
            };
            doc = doc.next(&prev, hosts, removed).unwrap();
            prev = f.op.sign_hosts(&doc);
            lists.insert(doc.version, prev.clone());
        }
        // Version 3 is retired by version 18 on: a gap before that waits.
        let mut out = Applied::default();
        f.cache
            .apply(&FleetKey::Hosts(10), &lists[&10], 10, &mut out);
        assert_eq!(f.cache.hosts_version(), 2);
        assert!(f.cache.is_waiting(&FleetKey::Hosts(10).to_string()));
        // Version 19 retires everything before 4: it is a starting point.
        f.cache
            .apply(&FleetKey::Hosts(19), &lists[&19], 19, &mut out);
        assert_eq!(f.cache.hosts_version(), 19, "{:?}", f.cache.refused);
        // The version that waited is passed over: its refusal goes at once,
        // not when it is read again.
        assert!(f.cache.refused.is_empty(), "{:?}", f.cache.refused);
        assert!(!f.cache.is_waiting(&FleetKey::Hosts(10).to_string()));
        // The removal it passed over is known all the same.
        assert_eq!(f.cache.removal, Some((19, vec![f.root.recipient()])));
        // What it passed over is older, and no fork.
        f.cache
            .apply(&FleetKey::Hosts(10), &lists[&10], 10, &mut out);
        assert!(
            !f.cache
                .refused
                .contains_key(&FleetKey::Hosts(10).to_string())
        );
        f.cache
            .apply(&FleetKey::Hosts(20), &lists[&20], 20, &mut out);
        assert_eq!(f.cache.hosts_version(), 20);
        // Only the kept versions are held; the retired ones leave the copy.
        assert_eq!(f.cache.chain.keys().copied().collect::<Vec<_>>(), [19, 20]);
        for v in [1, 2] {
            assert!(
                out.persist.contains(&Persist::Remove(fleet_copy::hosts(v))),
                "version {v} kept"
            );
        }
        // Another list at a version held is still a fork.
        let mut other = doc.clone();
        other.removed = vec!["age1someone".into()];
        let forged = f.op.sign_hosts(&other);
        f.cache
            .apply(&FleetKey::Hosts(20), &forged, 21, &mut Applied::default());
        assert!(
            f.cache.refused[&FleetKey::Hosts(20).to_string()].contains("fork"),
            "{:?}",
            f.cache.refused
        );
    }

    #[test]
    fn a_swapped_or_unopenable_wrapped_key_is_refused() {
        let mut f = fleet();
        let me = f.other.recipient();
        let key = FleetKey::key(&me, "app");
        let pk = flux_vault::ProjectKey::generate();
        let good = signed(&f, Kind::Key, &key, 4, &wrapped_for(&f, &pk), &f.root);
        f.cache.apply(&key, &good, 1, &mut Applied::default());
        // The same key wrapped again at the same generation: fine.
        let again = signed(&f, Kind::Key, &key, 4, &wrapped_for(&f, &pk), &f.other);
        f.cache.apply(&key, &again, 2, &mut Applied::default());
        assert!(f.cache.refusal("app").is_none());
        // Another key at the same generation: refused.
        let swapped = signed(
            &f,
            Kind::Key,
            &key,
            4,
            &wrapped_for(&f, &flux_vault::ProjectKey::generate()),
            &f.root,
        );
        f.cache.apply(&key, &swapped, 3, &mut Applied::default());
        assert!(
            f.cache
                .refusal("app")
                .unwrap()
                .contains("different key at generation 4")
        );
        // Garbage at a later generation: refused, the held key serves.
        let junk = signed(&f, Kind::Key, &key, 5, b"not an age file", &f.root);
        f.cache.apply(&key, &junk, 4, &mut Applied::default());
        assert!(f.cache.refusal("app").unwrap().contains("does not open"));
        assert_eq!(f.cache.keys["app"].raw, good);
        // An epoch from a host list that does not exist yet: refused.
        let fleet = f.op.fleet_id();
        let s = Signing {
            fleet: &fleet,
            kind: Kind::Key,
            version: 6,
            epoch: 99,
        };
        let future = seal(s, &key, &wrapped_for(&f, &pk), &f.root);
        f.cache.apply(&key, &future, 5, &mut Applied::default());
        assert!(
            f.cache
                .refusal("app")
                .unwrap()
                .contains("does not exist yet")
        );
    }

    #[test]
    fn only_a_signed_deletion_stops_a_project() {
        let mut f = fleet();
        let me = f.other.recipient();
        let key = FleetKey::key(&me, "app");
        let pk = flux_vault::ProjectKey::generate();
        let wrapped = signed(&f, Kind::Key, &key, 1, &wrapped_for(&f, &pk), &f.root);
        f.cache.apply(&key, &wrapped, 1, &mut Applied::default());
        let tomb = FleetKey::Deleted("app".into());
        let forged = signed(&f, Kind::Deleted, &tomb, 2, b"", &HostIdentity::generate());
        f.cache.apply(&tomb, &forged, 2, &mut Applied::default());
        assert_eq!(f.cache.projects(), ["app"]);
        let real = signed(&f, Kind::Deleted, &tomb, 2, b"", &f.root);
        let mut out = Applied::default();
        f.cache.apply(&tomb, &real, 3, &mut out);
        assert!(out.gone.contains("app"));
        assert!(f.cache.projects().is_empty());
        f.cache.apply(&key, &wrapped, 4, &mut Applied::default());
        assert!(
            f.cache.projects().is_empty(),
            "the key from before cannot come back"
        );
        assert_eq!(f.cache.next_version("app"), 3);
    }

    #[test]
    fn a_host_added_later_is_trusted_once_the_list_arrives() {
        let mut f = fleet();
        let late = HostIdentity::generate();
        let key = FleetKey::vault("app");
        let v1 = signed(&f, Kind::Vault, &key, 1, b"by the late host", &late);
        f.cache.apply(&key, &v1, 5, &mut Applied::default());
        assert!(!f.cache.vaults.contains_key("app"));
        let v2 = f.cache.chain[&2].clone();
        let v3 = list(&f.op, 3, Some(&v2), &[&f.root, &f.other, &late]);
        let mut out = Applied::default();
        f.cache.apply(&FleetKey::Hosts(3), &v3, 6, &mut out);
        // The store reads what waited from etcd again, and applies it.
        assert_eq!(out.reread, std::slice::from_ref(&key));
        f.cache.apply(&key, &v1, 5, &mut Applied::default());
        assert_eq!(f.cache.vaults["app"].payload, b"by the late host");
    }

    #[test]
    fn stranger_signed_envelopes_are_dropped_and_only_their_keys_kept() {
        let mut f = fleet();
        let held = f.cache.held_bytes();
        let junk = vec![b'x'; 256 * 1024];
        for i in 0..100 {
            let key = FleetKey::vault(&format!("junk{i}"));
            let env = signed(&f, Kind::Vault, &key, 1, &junk, &HostIdentity::generate());
            f.cache.apply(&key, &env, 10 + i, &mut Applied::default());
        }
        assert_eq!(f.cache.refused_total, 100);
        assert_eq!(f.cache.held_bytes(), held, "nothing of the junk is held");
        assert_eq!(f.cache.waiting_len(), 100, "their keys only");
        assert!(f.cache.projects().is_empty());
        // A new host list asks for them to be read again, by key.
        let v2 = f.cache.chain[&2].clone();
        let v3 = list(&f.op, 3, Some(&v2), &[&f.root, &f.other]);
        let mut out = Applied::default();
        f.cache.apply(&FleetKey::Hosts(3), &v3, 200, &mut out);
        assert_eq!(out.reread.len(), 100);
        assert_eq!(f.cache.waiting_len(), 0);
    }

    #[test]
    fn an_oversize_envelope_is_refused_unread_and_written_over() {
        let mut f = fleet();
        let key = FleetKey::vault("app");
        let kv = crate::fleet::kv::Kv {
            key: key.to_string(),
            value: Vec::new(),
            mod_revision: 9,
            oversize: Some(5_000_000),
        };
        f.cache.apply_kv(&key, &kv, &mut Applied::default());
        assert_eq!(f.cache.refused_total, 1);
        assert!(
            f.cache.refused[&key.to_string()]
                .contains("over this host's [store] max_envelope_bytes")
        );
        assert_eq!(f.cache.etcd_revision(&key, 0), 9, "a write goes over it");
        assert!(f.cache.projects().is_empty());
    }
}
