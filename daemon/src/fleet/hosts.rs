//! The hosts of a fleet: `fluxctl hosts list / add / remove`, as the
//! [`Hosts`] of the etcd store.
//!
//! The host list is versioned: `/flux/v2/fleet/hosts/<v>` holds version v,
//! signed by a host of version v − 1 (version 1 by the fleet's own key),
//! and written only where no version v exists yet — so two hosts changing
//! the list at once cannot both win, and every host can check the whole
//! chain from the fleet id it pinned.
//!
//! Adding a host (by its join token, which carries its signing key) signs
//! the next list version with it, then wraps every project key this host
//! holds for it. Removing one signs the next version without it, then
//! rotates each project to a new key — the vault re-sealed with the new key
//! in the same transaction as the first wrapped keys — so vaults written
//! after the removal are unreadable to it, and its signature no longer
//! counts. Values it already saw stay known to it: rotate them.

use super::MAX_TXN_OPS;
use super::cache::HostList;
use super::envelope::Kind;
use super::etcd;
use super::identity::{HostRecord, parse_recipient};
use super::layout::EtcdKey;
use super::store::EtcdStore;
use crate::error::{Error, Result, Unavailable};
use crate::metrics::FleetGauges;
use crate::store::{FleetInfo, Hosts, Store};
use flux_protocol::message::HostList as HostListMessage;
use flux_vault::keys::ProjectKey;
use flux_vault::vault;
use std::sync::Arc;
use tracing::{info, warn};

/// Tries of one project's transaction before giving up on a busy project.
const TRIES: usize = 20;

/// Fleet host administration on the etcd store.
#[derive(Debug)]
pub struct FleetHosts {
    store: Arc<EtcdStore>,
}

impl FleetHosts {
    /// Administration of `store`'s hosts.
    pub fn new(store: Arc<EtcdStore>) -> Self {
        Self { store }
    }

    /// Signs and writes the next host list version with `hosts`; fails
    /// when another version was written first.
    fn publish(&self, held: &HostList, hosts: Vec<HostRecord>) -> Result<()> {
        let version = held.version + 1;
        let key = EtcdKey::Hosts(version);
        let payload = serde_json::to_vec(&hosts).expect("JSON of strings");
        let env = self.store.sign(Kind::Hosts, &key, version, &payload);
        // A refused object in that slot (a forged list) is written over; a
        // version not seen yet, or accepted, is not.
        let base = self.store.refused_revision(&key);
        let (ok, revision, _) = self.store.txn(
            vec![etcd::cmp_mod(&key.to_string(), base)],
            vec![etcd::op_put(&key.to_string(), &env)],
            vec![],
        )?;
        if !ok {
            return Err(Error::Unavailable(Unavailable::Store(format!(
                "another host changed the host list (version {version}) at the same moment; run the command again"
            ))));
        }
        self.store.keep_written(&key, env, revision);
        Ok(())
    }
}

impl Hosts for FleetHosts {
    fn list(&self) -> Result<HostListMessage> {
        Ok(HostListMessage {
            this_host: Some(self.store.recipient().to_owned()),
            hosts: self
                .store
                .host_list()
                .map(|l| l.hosts.into_iter().map(|h| h.recipient).collect())
                .unwrap_or_default(),
        })
    }

    fn fleet(&self) -> FleetInfo {
        let list = self.store.host_list();
        FleetInfo {
            fleet_id: self.store.fleet_id(),
            this_host: Some(self.store.identity().record().join_token()),
            member: list
                .as_ref()
                .is_some_and(|l| l.contains(self.store.recipient())),
            hosts_version: list.as_ref().map_or(0, |l| l.version),
            hosts: list
                .map(|l| l.hosts.into_iter().map(|h| h.join_token()).collect())
                .unwrap_or_default(),
            problems: self.store.problems(),
        }
    }

    fn problems(&self) -> Vec<String> {
        self.store.problems()
    }

    fn gauges(&self) -> Option<FleetGauges> {
        Some(FleetGauges {
            outage: self.store.has_outage(),
            applied_revision: self.store.applied_revision(),
            problems: self.store.problems().len(),
        })
    }

    fn add(&self, token: &str) -> Result<Vec<String>> {
        let host = HostRecord::parse_join_token(token)?;
        let held = self.store.my_host_list()?;
        if let Some(listed) = held.hosts.iter().find(|h| h.recipient == host.recipient) {
            if listed.signing_key != host.signing_key {
                return Err(Error::BadRequest(format!(
                    "host {} is listed with another signing key: remove it first if that host's identity changed",
                    host.recipient
                )));
            }
        } else {
            let mut hosts = held.hosts.clone();
            hosts.push(host.clone());
            self.publish(&held, hosts)?;
        }
        let recipient = parse_recipient(&host.recipient)?;
        let mut done = Vec::new();
        for project in self.store.projects()? {
            let generation = self.store.key_generation(&project);
            let plain = self.store.plain_key(&project)?;
            let key = EtcdKey::key(&host.recipient, &project);
            let wrapped = super::identity::wrap_for(plain.as_bytes(), &recipient)?;
            let env = self.store.sign(Kind::Key, &key, generation, &wrapped);
            self.store
                .put_all(vec![etcd::op_put(&key.to_string(), &env)])?;
            done.push(project);
        }
        info!(host = %host.recipient, projects = done.len(), "host added to the fleet");
        Ok(done)
    }

    fn remove(&self, recipient: &str) -> Result<Vec<String>> {
        let recipient = recipient
            .split_once(':')
            .map_or(recipient, |(r, _)| r)
            .trim()
            .to_owned();
        parse_recipient(&recipient)?;
        if recipient == self.store.recipient() {
            return Err(Error::BadRequest(
                "this is this host's own recipient: remove a host from another host of the fleet"
                    .into(),
            ));
        }
        let held = self.store.my_host_list()?;
        if !held.contains(&recipient) {
            return Err(Error::BadRequest(format!(
                "{recipient} is not a host of the fleet (host list version {})",
                held.version
            )));
        }
        let hosts: Vec<HostRecord> = held
            .hosts
            .iter()
            .filter(|h| h.recipient != recipient)
            .cloned()
            .collect();
        self.publish(&held, hosts.clone())?;
        let mut done = Vec::new();
        for project in self.store.projects()? {
            let mut tries = 0;
            while !rotate(&self.store, &project, &recipient, &hosts)? {
                tries += 1;
                if tries >= TRIES {
                    return Err(Error::Unavailable(Unavailable::Contended { project }));
                }
            }
            done.push(project);
        }
        info!(host = %recipient, projects = done.len(), "host removed from the fleet; its projects have new keys");
        Ok(done)
    }
}

/// One rotation of `project` to a new key for `hosts` (the removed host's
/// key deleted); false when the vault changed meanwhile.
fn rotate(store: &EtcdStore, project: &str, removed: &str, hosts: &[HostRecord]) -> Result<bool> {
    let Some((held_vault, mod_revision)) = store.held_vault(project) else {
        warn!(project, "no vault held: nothing to re-seal");
        return Ok(true);
    };
    let old = ProjectKey::parse(&store.plain_key(project)?).map_err(|reason| Error::Key {
        location: store.key_location(project),
        reason,
    })?;
    let opened = vault::open(&held_vault, project, &old).map_err(|e| Error::Vault {
        location: store.vault_location(project),
        reason: e.0,
    })?;
    let new = ProjectKey::generate();
    let version = store.next_version(project);
    let sealed = vault::seal(project, &opened.secrets, opened.revision + 1, &new).map_err(|e| {
        Error::Vault {
            location: store.vault_location(project),
            reason: e.0,
        }
    })?;
    let vault_key = EtcdKey::vault(project);
    let vault_env = store.sign(Kind::Vault, &vault_key, version, &sealed);
    let created = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let plain = new.to_file_contents(&created);
    let (mut keys, mine) = store.key_puts(project, plain.as_bytes(), version, hosts)?;
    let rest = keys.split_off(keys.len().min(MAX_TXN_OPS - 3));
    let mut ops = vec![
        etcd::op_put(&vault_key.to_string(), &vault_env),
        etcd::op_delete(&EtcdKey::key(removed, project).to_string()),
    ];
    ops.extend(keys);
    let compare = if mod_revision == 0 {
        vec![]
    } else {
        vec![etcd::cmp_mod(&vault_key.to_string(), mod_revision)]
    };
    let (ok, _, _) = store.txn(compare, ops, vec![])?;
    if !ok {
        store.refresh_held(project)?;
        return Ok(false);
    }
    store.put_all(rest)?;
    // This host takes the new key and vault from its watch, like every
    // other host, and reloads the project then.
    drop(mine);
    Ok(true)
}
