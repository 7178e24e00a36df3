//! What this host holds of the fleet — every piece verified before it is
//! held. No I/O here: [`super::store`] feeds it what etcd (or the local
//! copy) holds and writes back what it says to keep.
//!
//! The rules, for each key of [`super::layout`]:
//!
//! | key | accepted when |
//! |---|---|
//! | `fleet/id` | it names the fleet this host pinned (`[store] fleet_id`, or the one it founded), signed by that fleet's key |
//! | `fleet/hosts/<v>` | v = 1: signed by the pinned key and listing its host; v = held + 1: signed by a host of the held list |
//! | `fleet/vaults/<p>` | signed by a host of the held list, a version above the held vault's and above any deletion of `p` |
//! | `keys/<me>/<p>` | signed by a host of the held list, a generation at least the held key's |
//! | `fleet/deleted/<p>` | signed by a host of the held list, a version above the held vault's |
//!
//! Anything else — unsigned, signed by an unknown or removed host, written
//! for another key, older than what is held — is refused: the held copy
//! keeps serving and the reason is kept for `fluxctl status`. A key that
//! disappears from etcd changes nothing held: only a signed deletion makes
//! a host stop serving a project, and only a signed host list without this
//! host makes it drop every project. An object refused because its signer
//! is not (yet) in the held list is tried again when the list changes (up
//! to 256 such objects are kept). The mod_revision of whatever etcd holds
//! under each key, accepted or not, is remembered: a write compares with
//! it, so it goes over a refused object.

use super::envelope::{Envelope, Kind};
use super::identity::{HostRecord, fleet_id};
use super::layout::EtcdKey;
use ed25519_dalek::VerifyingKey;
use std::collections::{BTreeMap, BTreeSet};

/// Objects kept to be tried again when the host list changes, at most.
const MAX_WAITING: usize = 256;
/// Refusal reasons kept for `fluxctl status`, at most.
const MAX_REFUSED: usize = 4096;

/// One verified envelope held.
#[derive(Debug, Clone)]
pub struct Held {
    pub version: u64,
    pub payload: Vec<u8>,
    /// The envelope as etcd holds it (what the local copy keeps).
    pub raw: Vec<u8>,
    /// Its etcd mod_revision (0: read from the local copy, unknown).
    pub mod_revision: i64,
}

/// The fleet's hosts at one version of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostList {
    pub version: u64,
    pub hosts: Vec<HostRecord>,
}

impl HostList {
    /// The signing key of the host with this recipient.
    pub fn key_of(&self, recipient: &str) -> Option<VerifyingKey> {
        self.hosts
            .iter()
            .find(|h| h.recipient == recipient)
            .and_then(|h| h.verifying_key().ok())
    }

    /// True when the host is listed.
    pub fn contains(&self, recipient: &str) -> bool {
        self.hosts.iter().any(|h| h.recipient == recipient)
    }
}

/// A change to the local copy, relative to `<state>/fleet/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Persist {
    Write(String, Vec<u8>),
    Remove(String),
}

/// What applying something changed.
#[derive(Debug, Default)]
pub struct Applied {
    /// Projects whose vault or key changed.
    pub changed: BTreeSet<String>,
    /// Projects deleted (by a signed deletion).
    pub gone: BTreeSet<String>,
    /// What the local copy must now hold.
    pub persist: Vec<Persist>,
    /// etcd deleted something without a signed deletion: see
    /// [`super::store::EtcdStore::repair`].
    pub lost: bool,
}

/// The held state (see the module docs).
#[derive(Debug)]
pub struct Cache {
    /// The fleet's root key, once known.
    pub pin: Option<VerifyingKey>,
    /// This host's recipient.
    me: String,
    pub hosts: Option<(HostList, Vec<u8>)>,
    /// Every host list version accepted, as etcd held it: the chain a
    /// joining host checks from the fleet id, and what this host writes
    /// back when etcd lost it.
    pub chain: BTreeMap<u64, Vec<u8>>,
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
    /// Objects refused for an unknown signer: tried again when the host
    /// list changes.
    waiting: BTreeMap<String, (EtcdKey, Vec<u8>, i64)>,
    /// A fleet-wide problem (the fleet id, the host list).
    pub problem: Option<String>,
    /// Why etcd cannot be reached, while it cannot.
    pub outage: Option<String>,
    /// The last etcd revision read in full.
    pub revision: i64,
}

fn local_name(key: &EtcdKey) -> Option<String> {
    match key {
        EtcdKey::Id => Some("id".into()),
        EtcdKey::Hosts(v) => Some(format!("hosts/{v:020}")),
        EtcdKey::Vault(p) => Some(format!("vaults/{p}")),
        EtcdKey::Deleted(p) => Some(format!("deleted/{p}")),
        EtcdKey::Key { project, .. } => Some(format!("keys/{project}")),
    }
}

impl Cache {
    /// An empty cache for the host `me`, trusting the fleet `pin` when
    /// known.
    pub fn new(me: String, pin: Option<VerifyingKey>) -> Self {
        Self {
            pin,
            me,
            hosts: None,
            chain: BTreeMap::new(),
            id: None,
            vaults: BTreeMap::new(),
            keys: BTreeMap::new(),
            deleted: BTreeMap::new(),
            refused: BTreeMap::new(),
            seen: BTreeMap::new(),
            waiting: BTreeMap::new(),
            problem: None,
            outage: None,
            revision: 0,
        }
    }

    /// The held host list.
    pub fn host_list(&self) -> Option<&HostList> {
        self.hosts.as_ref().map(|(l, _)| l)
    }

    /// The projects this host serves: a key and no later deletion.
    pub fn projects(&self) -> Vec<String> {
        self.keys.keys().cloned().collect()
    }

    /// The version the next vault write of `project` gets.
    pub fn next_version(&self, project: &str) -> u64 {
        let vault = self.vaults.get(project).map_or(0, |h| h.version);
        let deleted = self.deleted.get(project).map_or(0, |h| h.version);
        vault.max(deleted) + 1
    }

    /// Checks an envelope's signer against the held list.
    fn check_signer(&self, env: &Envelope) -> Result<(), Refusal> {
        let Some(list) = self.host_list() else {
            return Err(Refusal::Waiting(
                "this host holds no verified host list yet".into(),
            ));
        };
        let Some(key) = list.key_of(&env.signer) else {
            return Err(Refusal::Waiting(format!(
                "signed by {}, which is not a host of the fleet (host list version {})",
                env.signer, list.version
            )));
        };
        if !env.signed_by(&key) {
            return Err(Refusal::Final(format!(
                "the signature does not match {}'s key: forged or altered",
                env.signer
            )));
        }
        Ok(())
    }

    /// Loads what the local copy holds (verified when it was accepted).
    pub fn load_local(&mut self, key: &EtcdKey, raw: Vec<u8>) -> Result<(), String> {
        let kind = kind_of(key);
        let env = Envelope::parse(&raw, kind, key)?;
        let held = Held {
            version: env.version,
            payload: env.payload,
            raw,
            mod_revision: 0,
        };
        match key {
            EtcdKey::Id | EtcdKey::Hosts(_) => unreachable!("loaded by the caller"),
            EtcdKey::Vault(p) => {
                self.vaults.insert(p.clone(), held);
            }
            EtcdKey::Deleted(p) => {
                self.deleted.insert(p.clone(), held);
            }
            EtcdKey::Key { project, .. } => {
                self.keys.insert(project.clone(), held);
            }
        }
        Ok(())
    }

    /// Loads one host list version of the local copy (accepted when it
    /// was written there); the highest loaded is the held list.
    pub fn load_local_hosts(&mut self, version: u64, raw: Vec<u8>) -> Result<(), String> {
        let env = Envelope::parse(&raw, Kind::Hosts, &EtcdKey::Hosts(version))?;
        let hosts: Vec<HostRecord> = serde_json::from_slice(&env.payload)
            .map_err(|_| "the host list is not a list of hosts".to_owned())?;
        if self.host_list().is_none_or(|l| l.version < version) {
            self.hosts = Some((HostList { version, hosts }, raw.clone()));
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
    /// watch). Nothing held changes: see the module docs.
    pub fn gone_from_etcd(&mut self, key: &EtcdKey) {
        self.seen.insert(key.to_string(), 0);
    }

    /// The mod_revision a write of `key` compares against: what etcd was
    /// last seen holding, else what this host holds (0: nothing).
    pub fn etcd_revision(&self, key: &EtcdKey, held: i64) -> i64 {
        self.seen.get(&key.to_string()).copied().unwrap_or(held)
    }

    /// Applies what etcd holds under `key`. Deletions are not applied:
    /// see the module docs.
    pub fn apply(&mut self, key: &EtcdKey, raw: &[u8], mod_revision: i64, out: &mut Applied) {
        let name = key.to_string();
        if mod_revision != 0 {
            self.seen.insert(name.clone(), mod_revision);
        }
        match self.accept(key, raw, mod_revision, out) {
            Ok(()) => {
                self.refused.remove(&name);
                self.waiting.remove(&name);
            }
            Err(Refusal::Ignore) => {}
            Err(Refusal::Waiting(reason)) => {
                // Bounded: an etcd writer could fill etcd with objects
                // signed by strangers.
                if self.waiting.len() < MAX_WAITING || self.waiting.contains_key(&name) {
                    self.waiting
                        .insert(name.clone(), (key.clone(), raw.to_vec(), mod_revision));
                }
                self.note_refused(name, reason);
            }
            Err(Refusal::Final(reason)) => {
                self.waiting.remove(&name);
                self.note_refused(name, reason);
            }
        }
    }

    fn accept(
        &mut self,
        key: &EtcdKey,
        raw: &[u8],
        mod_revision: i64,
        out: &mut Applied,
    ) -> Result<(), Refusal> {
        let kind = kind_of(key);
        let env = Envelope::parse(raw, kind, key).map_err(Refusal::Final)?;
        let held = |env: Envelope| Held {
            version: env.version,
            payload: env.payload,
            raw: raw.to_vec(),
            mod_revision,
        };
        match key {
            EtcdKey::Id => {
                let Some(pin) = self.pin else {
                    return Err(Refusal::Final(
                        "this host pinned no fleet: start it with the fleet id".into(),
                    ));
                };
                let named = String::from_utf8_lossy(&env.payload).into_owned();
                if named != fleet_id(&pin) || !env.signed_by(&pin) {
                    let problem = format!(
                        "etcd holds fleet {named}, but this host belongs to fleet {}: check [store] endpoints",
                        fleet_id(&pin)
                    );
                    self.problem = Some(problem.clone());
                    return Err(Refusal::Final(problem));
                }
                if self.problem.as_deref().is_some_and(|p| {
                    p.starts_with("etcd holds fleet") || p.starts_with("etcd holds no fleet")
                }) {
                    self.problem = None;
                }
                if self.id.as_deref() != Some(raw) {
                    out.persist.push(Persist::Write("id".into(), raw.to_vec()));
                    self.id = Some(raw.to_vec());
                }
                Ok(())
            }
            EtcdKey::Hosts(version) => {
                let held_version = self.host_list().map_or(0, |l| l.version);
                if *version <= held_version {
                    return Err(Refusal::Ignore);
                }
                if *version != held_version + 1 {
                    return Err(Refusal::Waiting(format!(
                        "host list version {version} follows {held_version} with versions missing"
                    )));
                }
                let hosts: Vec<HostRecord> = serde_json::from_slice(&env.payload)
                    .map_err(|_| Refusal::Final("the host list is not a list of hosts".into()))?;
                match (&self.hosts, self.pin) {
                    (None, Some(pin)) => {
                        let root_listed = hosts.iter().any(|h| h.verifying_key().ok() == Some(pin));
                        if *version != 1 || !env.signed_by(&pin) || !root_listed {
                            return Err(Refusal::Final(
                                "the first host list is not signed by the fleet's own key".into(),
                            ));
                        }
                    }
                    (None, None) => {
                        return Err(Refusal::Final(
                            "this host pinned no fleet: start it with the fleet id".into(),
                        ));
                    }
                    // The list before it is the authority: a signer not
                    // in it never will be.
                    (Some(_), _) => self.check_signer(&env).map_err(|r| match r {
                        Refusal::Waiting(reason) => Refusal::Final(reason),
                        other => other,
                    })?,
                }
                let list = HostList {
                    version: *version,
                    hosts,
                };
                let was_member = self.host_list().is_some_and(|l| l.contains(&self.me));
                if was_member && !list.contains(&self.me) {
                    // Removed from the fleet, by a signed list: stop
                    // serving every project and drop the copies.
                    for p in std::mem::take(&mut self.keys).into_keys() {
                        out.persist.push(Persist::Remove(format!("keys/{p}")));
                        out.persist.push(Persist::Remove(format!("vaults/{p}")));
                        out.gone.insert(p);
                    }
                    self.vaults.clear();
                }
                out.persist
                    .push(Persist::Write(format!("hosts/{version:020}"), raw.to_vec()));
                self.chain.insert(*version, raw.to_vec());
                self.hosts = Some((list, raw.to_vec()));
                self.retry_waiting(out);
                Ok(())
            }
            EtcdKey::Vault(p) => {
                self.check_signer(&env)?;
                let floor = self.next_version(p) - 1;
                if let Some(h) = self.vaults.get_mut(p)
                    && h.version == env.version
                    && h.raw == raw
                {
                    h.mod_revision = mod_revision;
                    return Ok(());
                }
                if env.version <= floor {
                    return Err(Refusal::Final(format!(
                        "version {} is not newer than version {floor}, which this host already served: refused as a rollback",
                        env.version
                    )));
                }
                out.changed.insert(p.clone());
                out.persist
                    .push(Persist::Write(format!("vaults/{p}"), raw.to_vec()));
                self.vaults.insert(p.clone(), held(env));
                Ok(())
            }
            EtcdKey::Deleted(p) => {
                self.check_signer(&env)?;
                let vault = self.vaults.get(p).map_or(0, |h| h.version);
                let known = self.deleted.get(p).map_or(0, |h| h.version);
                if env.version <= vault || env.version <= known {
                    return Err(Refusal::Ignore);
                }
                self.vaults.remove(p);
                if self.keys.remove(p).is_some() {
                    out.gone.insert(p.clone());
                }
                out.persist.push(Persist::Remove(format!("vaults/{p}")));
                out.persist.push(Persist::Remove(format!("keys/{p}")));
                out.persist
                    .push(Persist::Write(format!("deleted/{p}"), raw.to_vec()));
                self.deleted.insert(p.clone(), held(env));
                Ok(())
            }
            EtcdKey::Key { host, project } => {
                if *host != self.me {
                    return Err(Refusal::Ignore);
                }
                self.check_signer(&env)?;
                let deleted = self.deleted.get(project).map_or(0, |h| h.version);
                if env.version <= deleted {
                    return Err(Refusal::Final(format!(
                        "generation {} is from before project {project} was deleted",
                        env.version
                    )));
                }
                match self.keys.get_mut(project) {
                    Some(h) if h.version > env.version => {
                        return Err(Refusal::Final(format!(
                            "generation {} is older than generation {}, which this host holds: refused as a rollback",
                            env.version, h.version
                        )));
                    }
                    Some(h) if h.payload == env.payload => {
                        h.mod_revision = mod_revision;
                        return Ok(());
                    }
                    _ => {}
                }
                out.changed.insert(project.clone());
                out.persist
                    .push(Persist::Write(format!("keys/{project}"), raw.to_vec()));
                self.keys.insert(project.clone(), held(env));
                Ok(())
            }
        }
    }

    fn note_refused(&mut self, name: String, reason: String) {
        if self.refused.len() < MAX_REFUSED || self.refused.contains_key(&name) {
            self.refused.insert(name, reason);
        }
    }

    fn retry_waiting(&mut self, out: &mut Applied) {
        let waiting = std::mem::take(&mut self.waiting);
        for (_, (key, raw, rev)) in waiting {
            self.apply(&key, &raw, rev, out);
        }
    }

    /// Why `project`'s newest data in etcd was refused, if it was.
    pub fn refusal(&self, project: &str) -> Option<String> {
        [
            EtcdKey::vault(project),
            EtcdKey::key(&self.me, project),
            EtcdKey::Deleted(project.to_owned()),
        ]
        .iter()
        .find_map(|k| {
            self.refused
                .get(&k.to_string())
                .map(|r| format!("{k} refused: {r}; serving this host's last good copy"))
        })
    }

    /// Keeps what this host itself just wrote (already signed by it).
    pub fn held_written(
        &mut self,
        key: &EtcdKey,
        raw: Vec<u8>,
        mod_revision: i64,
    ) -> Option<Persist> {
        let kind = kind_of(key);
        let env = Envelope::parse(&raw, kind, key).ok()?;
        let held = Held {
            version: env.version,
            payload: env.payload,
            raw: raw.clone(),
            mod_revision,
        };
        let local = local_name(key)?;
        match key {
            EtcdKey::Vault(p) => {
                self.vaults.insert(p.clone(), held);
            }
            EtcdKey::Key { host, project } if *host == self.me => {
                self.keys.insert(project.clone(), held);
            }
            EtcdKey::Deleted(p) => {
                self.vaults.remove(p);
                self.keys.remove(p);
                self.deleted.insert(p.clone(), held);
            }
            EtcdKey::Hosts(version) => {
                let hosts = serde_json::from_slice(&held.payload).ok()?;
                self.chain.insert(*version, raw.clone());
                self.hosts = Some((
                    HostList {
                        version: *version,
                        hosts,
                    },
                    raw.clone(),
                ));
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
pub fn kind_of(key: &EtcdKey) -> Kind {
    match key {
        EtcdKey::Id => Kind::Fleet,
        EtcdKey::Hosts(_) => Kind::Hosts,
        EtcdKey::Vault(_) => Kind::Vault,
        EtcdKey::Deleted(_) => Kind::Deleted,
        EtcdKey::Key { .. } => Kind::Key,
    }
}

/// Why something was not accepted.
enum Refusal {
    /// Nothing to do (already held, or older than a deletion).
    Ignore,
    /// Not acceptable now; may be once the host list changes.
    Waiting(String),
    /// Not acceptable.
    Final(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::envelope::seal;
    use crate::fleet::identity::HostIdentity;

    struct Fleet {
        root: HostIdentity,
        other: HostIdentity,
        cache: Cache,
    }

    fn hosts_list(list: &[&HostIdentity]) -> Vec<u8> {
        serde_json::to_vec(&list.iter().map(|h| h.record()).collect::<Vec<_>>()).unwrap()
    }

    fn fleet() -> Fleet {
        let root = HostIdentity::generate();
        let other = HostIdentity::generate();
        let mut cache = Cache::new(other.recipient(), Some(root.signing_key().verifying_key()));
        let mut out = Applied::default();
        let v1 = seal(
            Kind::Hosts,
            &EtcdKey::Hosts(1),
            1,
            &hosts_list(&[&root]),
            &root,
        );
        cache.apply(&EtcdKey::Hosts(1), &v1, 1, &mut out);
        let v2 = seal(
            Kind::Hosts,
            &EtcdKey::Hosts(2),
            2,
            &hosts_list(&[&root, &other]),
            &root,
        );
        cache.apply(&EtcdKey::Hosts(2), &v2, 2, &mut out);
        assert_eq!(cache.host_list().unwrap().version, 2);
        Fleet { root, other, cache }
    }

    #[test]
    fn vaults_signed_by_a_host_are_held_and_older_ones_refused() {
        let mut f = fleet();
        let key = EtcdKey::vault("app");
        let mut out = Applied::default();
        let v5 = seal(Kind::Vault, &key, 5, b"five", &f.root);
        f.cache.apply(&key, &v5, 10, &mut out);
        assert_eq!(f.cache.vaults["app"].payload, b"five");
        assert!(out.changed.contains("app"));
        let v4 = seal(Kind::Vault, &key, 4, b"four", &f.other);
        f.cache.apply(&key, &v4, 11, &mut Applied::default());
        assert_eq!(
            f.cache.vaults["app"].payload, b"five",
            "a rollback is refused"
        );
        assert!(f.cache.refusal("app").unwrap().contains("rollback"));
    }

    #[test]
    fn forged_moved_and_unknown_signers_are_refused() {
        let mut f = fleet();
        let key = EtcdKey::vault("app");
        let stranger = HostIdentity::generate();
        let forged = seal(Kind::Vault, &key, 9, b"evil", &stranger);
        f.cache.apply(&key, &forged, 1, &mut Applied::default());
        assert!(!f.cache.vaults.contains_key("app"));
        assert!(
            f.cache
                .refusal("app")
                .unwrap()
                .contains("not a host of the fleet")
        );
        let other = seal(Kind::Vault, &EtcdKey::vault("other"), 9, b"x", &f.root);
        f.cache.apply(&key, &other, 1, &mut Applied::default());
        assert!(!f.cache.vaults.contains_key("app"), "bound to another key");
        // A host list the attacker signs is refused too.
        let rogue = seal(
            Kind::Hosts,
            &EtcdKey::Hosts(3),
            3,
            &hosts_list(&[&f.root, &f.other, &stranger]),
            &stranger,
        );
        f.cache
            .apply(&EtcdKey::Hosts(3), &rogue, 3, &mut Applied::default());
        assert_eq!(f.cache.host_list().unwrap().version, 2);
    }

    #[test]
    fn only_a_signed_deletion_stops_a_project() {
        let mut f = fleet();
        let me = f.other.recipient();
        let key = EtcdKey::key(&me, "app");
        let wrapped = seal(Kind::Key, &key, 1, b"wrapped", &f.root);
        f.cache.apply(&key, &wrapped, 1, &mut Applied::default());
        let vault = seal(Kind::Vault, &EtcdKey::vault("app"), 1, b"v", &f.root);
        f.cache
            .apply(&EtcdKey::vault("app"), &vault, 1, &mut Applied::default());
        assert_eq!(f.cache.projects(), ["app"]);
        let forged = seal(
            Kind::Deleted,
            &EtcdKey::Deleted("app".into()),
            2,
            b"",
            &HostIdentity::generate(),
        );
        f.cache.apply(
            &EtcdKey::Deleted("app".into()),
            &forged,
            2,
            &mut Applied::default(),
        );
        assert_eq!(f.cache.projects(), ["app"]);
        let real = seal(
            Kind::Deleted,
            &EtcdKey::Deleted("app".into()),
            2,
            b"",
            &f.root,
        );
        let mut out = Applied::default();
        f.cache
            .apply(&EtcdKey::Deleted("app".into()), &real, 3, &mut out);
        assert!(out.gone.contains("app"));
        assert!(f.cache.projects().is_empty());
        // The key from before the deletion cannot be put back.
        f.cache.apply(&key, &wrapped, 4, &mut Applied::default());
        assert!(f.cache.projects().is_empty());
        assert_eq!(f.cache.next_version("app"), 3);
    }

    #[test]
    fn a_host_added_later_is_trusted_once_the_list_arrives() {
        let mut f = fleet();
        let late = HostIdentity::generate();
        let key = EtcdKey::vault("app");
        let v1 = seal(Kind::Vault, &key, 1, b"by the late host", &late);
        f.cache.apply(&key, &v1, 5, &mut Applied::default());
        assert!(!f.cache.vaults.contains_key("app"));
        let v3 = seal(
            Kind::Hosts,
            &EtcdKey::Hosts(3),
            3,
            &hosts_list(&[&f.root, &f.other, &late]),
            &f.other,
        );
        f.cache
            .apply(&EtcdKey::Hosts(3), &v3, 6, &mut Applied::default());
        assert_eq!(f.cache.vaults["app"].payload, b"by the late host");
    }

    #[test]
    fn a_signed_list_without_this_host_drops_every_project() {
        let mut f = fleet();
        let me = f.other.recipient();
        let key = EtcdKey::key(&me, "app");
        let wrapped = seal(Kind::Key, &key, 1, b"wrapped", &f.root);
        f.cache.apply(&key, &wrapped, 1, &mut Applied::default());
        let vault = seal(Kind::Vault, &EtcdKey::vault("app"), 1, b"v", &f.root);
        f.cache
            .apply(&EtcdKey::vault("app"), &vault, 2, &mut Applied::default());
        assert_eq!(f.cache.projects(), ["app"]);
        // A forged list without this host changes nothing...
        let stranger = HostIdentity::generate();
        let forged = seal(
            Kind::Hosts,
            &EtcdKey::Hosts(3),
            3,
            &hosts_list(&[&f.root]),
            &stranger,
        );
        f.cache
            .apply(&EtcdKey::Hosts(3), &forged, 3, &mut Applied::default());
        assert_eq!(f.cache.projects(), ["app"]);
        assert!(
            !f.cache.is_waiting(&EtcdKey::Hosts(3).to_string()),
            "refused for good"
        );
        // ...a list signed by a host of the fleet removes it.
        let signed = seal(
            Kind::Hosts,
            &EtcdKey::Hosts(3),
            3,
            &hosts_list(&[&f.root]),
            &f.root,
        );
        let mut out = Applied::default();
        f.cache.apply(&EtcdKey::Hosts(3), &signed, 4, &mut out);
        assert!(out.gone.contains("app"));
        assert!(f.cache.projects().is_empty());
        assert!(out.persist.contains(&Persist::Remove("keys/app".into())));
    }
}
