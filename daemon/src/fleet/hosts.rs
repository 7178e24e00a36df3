//! The hosts of a fleet: `fluxctl hosts list / add / remove`, as the
//! [`Hosts`] of the etcd store.
//!
//! Adding a host wraps every project key this host holds for the new
//! host's recipient. Removing one deletes its wrapped copies and rotates
//! each of its projects to a new key — the vault re-sealed with the new key
//! in the same transaction — so vaults written after the removal are
//! unreadable to it. Values it already saw stay known to it: rotate them.

use super::etcd::{self, Kv};
use super::identity::{parse_recipient, wrap_for};
use super::layout::{EtcdKey, PROJECTS, host_key, project_prefix, vault_key, wrapped_key};
use super::store::EtcdStore;
use crate::error::{Error, Result, Unavailable};
use crate::store::{Hosts, Store};
use flux_protocol::message::HostList;
use flux_vault::keys::ProjectKey;
use flux_vault::vault;
use std::collections::BTreeMap;
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
}

impl Hosts for FleetHosts {
    fn list(&self) -> Result<HostList> {
        Ok(HostList {
            this_host: Some(self.store.recipient().to_owned()),
            hosts: self.store.hosts()?,
        })
    }

    fn add(&self, recipient: &str) -> Result<Vec<String>> {
        add(&self.store, recipient)
    }

    fn remove(&self, recipient: &str) -> Result<Vec<String>> {
        remove(&self.store, recipient)
    }
}

/// Every project's keys (by host) and vault, as etcd holds them now.
#[derive(Debug, Default)]
struct ProjectKvs {
    keys: BTreeMap<String, Kv>,
    vault: Option<Kv>,
}

fn read_projects(fleet: &EtcdStore) -> Result<BTreeMap<String, ProjectKvs>> {
    let (_, kvs) = fleet.range_prefix(PROJECTS)?;
    Ok(group(kvs))
}

fn group(kvs: Vec<Kv>) -> BTreeMap<String, ProjectKvs> {
    let mut out: BTreeMap<String, ProjectKvs> = BTreeMap::new();
    for kv in kvs {
        match EtcdKey::parse(&kv.key) {
            Some(EtcdKey::Vault(p)) => out.entry(p).or_default().vault = Some(kv),
            Some(EtcdKey::Key { project, host }) => {
                out.entry(project).or_default().keys.insert(host, kv);
            }
            _ => {}
        }
    }
    out
}

fn read_project(fleet: &EtcdStore, name: &str) -> Result<ProjectKvs> {
    let (_, kvs) = fleet.range_prefix(&project_prefix(name))?;
    Ok(group(kvs).remove(name).unwrap_or_default())
}

/// Registers `recipient` and wraps every project key this host holds for
/// it. Returns the projects it may now serve.
pub fn add(fleet: &EtcdStore, recipient: &str) -> Result<Vec<String>> {
    let r = parse_recipient(recipient)?;
    let recipient = r.to_string();
    let mut done = Vec::new();
    for (name, mut kvs) in read_projects(fleet)? {
        let mut tries = 0;
        loop {
            let Some(mine) = kvs.keys.get(fleet.recipient()).cloned() else {
                warn!(project = %name, "this host holds no key for the project; not wrapped for the new host");
                break;
            };
            let plain = fleet.unwrap_key(&name, &mine.value)?;
            let wrapped = wrap_for(plain.as_bytes(), &r)?;
            let (ok, _, _) = fleet.txn(
                vec![
                    etcd::cmp_mod(&wrapped_key(&name, fleet.recipient()), mine.mod_revision),
                    etcd::cmp_mod(
                        &vault_key(&name),
                        kvs.vault.as_ref().map_or(0, |v| v.mod_revision),
                    ),
                ],
                vec![etcd::op_put(&wrapped_key(&name, &recipient), &wrapped)],
                vec![],
            )?;
            if ok {
                done.push(name.clone());
                break;
            }
            tries += 1;
            if tries >= TRIES {
                return Err(Error::Unavailable(Unavailable::Contended {
                    project: name.clone(),
                }));
            }
            kvs = read_project(fleet, &name)?;
        }
    }
    fleet.txn(
        vec![],
        vec![etcd::op_put(&host_key(&recipient), b"")],
        vec![],
    )?;
    info!(host = %recipient, projects = done.len(), "host added to the fleet");
    Ok(done)
}

/// Unregisters `recipient`, deletes its wrapped keys and rotates each of
/// its projects to a new key. Returns the projects it could serve.
pub fn remove(fleet: &EtcdStore, recipient: &str) -> Result<Vec<String>> {
    let recipient = parse_recipient(recipient)?.to_string();
    if recipient == fleet.recipient() {
        return Err(Error::BadRequest(
            "this is this host's own recipient: remove a host from another host of the fleet"
                .into(),
        ));
    }
    let mut done = Vec::new();
    for (name, mut kvs) in read_projects(fleet)? {
        let mut tries = 0;
        while kvs.keys.contains_key(&recipient) {
            let Some(mine) = kvs.keys.get(fleet.recipient()).cloned() else {
                return Err(Error::BadRequest(format!(
                    "this host holds no key for project {name}, so it cannot rotate it: remove {recipient} from a host that serves {name}"
                )));
            };
            if rotate(fleet, &name, &recipient, &kvs, &mine)? {
                done.push(name.clone());
                break;
            }
            tries += 1;
            if tries >= TRIES {
                return Err(Error::Unavailable(Unavailable::Contended {
                    project: name.clone(),
                }));
            }
            kvs = read_project(fleet, &name)?;
        }
    }
    fleet.txn(vec![], vec![etcd::op_delete(&host_key(&recipient))], vec![])?;
    info!(host = %recipient, projects = done.len(), "host removed from the fleet; its projects have new keys");
    Ok(done)
}

/// One rotation transaction; false when the project changed meanwhile.
fn rotate(
    fleet: &EtcdStore,
    name: &str,
    removed: &str,
    kvs: &ProjectKvs,
    mine: &Kv,
) -> Result<bool> {
    let old =
        ProjectKey::parse(&fleet.unwrap_key(name, &mine.value)?).map_err(|reason| Error::Key {
            location: fleet.key_location(name),
            reason,
        })?;
    let new = ProjectKey::generate();
    // etcd refuses a txn that deletes a key range it also writes into: the
    // removed host's key is deleted, every other host's is overwritten.
    let mut success = vec![etcd::op_delete(&wrapped_key(name, removed))];
    let mut compare = vec![etcd::cmp_mod(
        &wrapped_key(name, fleet.recipient()),
        mine.mod_revision,
    )];
    match &kvs.vault {
        Some(v) => {
            let opened = vault::open(&v.value, name, &old).map_err(|e| Error::Vault {
                location: fleet.vault_location(name),
                reason: e.0,
            })?;
            let sealed =
                vault::seal(name, &opened.secrets, opened.revision + 1, &new).map_err(|e| {
                    Error::Vault {
                        location: fleet.vault_location(name),
                        reason: e.0,
                    }
                })?;
            compare.push(etcd::cmp_mod(&vault_key(name), v.mod_revision));
            success.push(etcd::op_put(&vault_key(name), &sealed));
        }
        None => compare.push(etcd::cmp_mod(&vault_key(name), 0)),
    }
    let created = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let plain = new.to_file_contents(&created);
    for host in kvs.keys.keys().filter(|h| *h != removed) {
        match parse_recipient(host) {
            Ok(r) => success.push(etcd::op_put(
                &wrapped_key(name, host),
                &wrap_for(plain.as_bytes(), &r)?,
            )),
            Err(_) => {
                warn!(project = %name, host = %host, "dropping a wrapped key for something that is not an age recipient")
            }
        }
    }
    let (ok, _, _) = fleet.txn(compare, success, vec![])?;
    Ok(ok)
}
