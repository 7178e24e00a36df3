//! The hosts of a fleet: start-up in fleet mode, and `fluxctl hosts
//! list / add / remove` on the control socket.
//!
//! Adding a host wraps every project key this host holds for the new
//! host's recipient. Removing one deletes its wrapped copies and rotates
//! each of its projects to a new key — the vault re-sealed with the new key
//! in the same transaction — so vaults written after the removal are
//! unreadable to it. Values it already saw stay known to it: rotate them.

use super::etcd::{self, Kv};
use super::store::{
    EtcdStore, HOSTS, KeyKind, PROJECTS, parse_key, parse_recipient, project_prefix, vault_key,
    wrap_for, wrapped_key,
};
use crate::audit::Audit;
use crate::config::Config;
use crate::daemon::{Daemon, Shared, Startup};
use crate::error::{Error, Result};
use crate::keys::ProjectKey;
use crate::store::Store;
use crate::vault;
use flux_protocol::message::{HostList, HostUpdate, Request, Response};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Tries of one project's transaction before giving up on a busy project.
const TRIES: usize = 20;

/// Starts the daemon on the etcd store: this host's identity, a full read
/// of etcd (or, when etcd is unreachable, the local sealed copy), then the
/// sockets and the watch.
pub(crate) async fn start(
    config: Config,
    shutdown: CancellationToken,
    startup: Startup,
    endpoints: Vec<String>,
    lock: nix::fcntl::Flock<std::fs::File>,
    audit: Audit,
) -> Result<Daemon> {
    let state = config.state_dir.clone();
    let store = tokio::task::spawn_blocking(move || -> Result<(EtcdStore, bool)> {
        let store = EtcdStore::open(&state, endpoints)?;
        let synced = match store.bootstrap().and_then(|first| {
            if first {
                info!(recipient = %store.recipient(), "first host of a new fleet: registered this host");
            }
            store.resync()
        }) {
            Ok(_) => true,
            Err(e) => {
                warn!(error = %e, "etcd is unreachable at start; serving the local sealed copies until it is back");
                store.set_outage(Some(e.0));
                false
            }
        };
        Ok((store, synced))
    })
    .await
    .map_err(|e| Error::Internal(format!("fleet start task failed: {e}")))??;
    let (store, synced) = store;
    info!(recipient = %store.recipient(), endpoints = %store.etcd.endpoints(), "fleet mode: vaults are kept in etcd");
    let store = Arc::new(store);
    let dyn_store: Arc<dyn Store> = store.clone();
    let daemon =
        Daemon::serve_store(config, shutdown, startup, dyn_store, Some(lock), audit).await?;
    super::spawn_watch(daemon.shared(), store, synced);
    Ok(daemon)
}

/// Answers the hosts requests of the control socket.
pub(crate) async fn handle(shared: &Arc<Shared>, req: Request) -> Result<Response> {
    let store = shared.store.clone();
    if store.fleet().is_none() {
        return match req {
            Request::ListHosts => Ok(Response::Hosts(HostList {
                this_host: None,
                hosts: Vec::new(),
            })),
            _ => Err(Error::BadRequest(
                "this fluxd keeps its vaults in a local folder: hosts are managed in fleet mode only (fluxd --store etcd, see docs/FLEET.md)".into(),
            )),
        };
    }
    tokio::task::spawn_blocking(move || {
        let fleet = store.fleet().expect("checked above");
        match req {
            Request::ListHosts => Ok(Response::Hosts(HostList {
                this_host: Some(fleet.recipient().to_owned()),
                hosts: fleet.hosts()?,
            })),
            Request::AddHost(h) => {
                let projects = add(fleet, &h.recipient)?;
                Ok(Response::HostUpdated(HostUpdate {
                    recipient: h.recipient,
                    projects,
                }))
            }
            Request::RemoveHost(h) => {
                let projects = remove(fleet, &h.recipient)?;
                Ok(Response::HostUpdated(HostUpdate {
                    recipient: h.recipient,
                    projects,
                }))
            }
            other => Err(Error::BadRequest(format!(
                "{} is not a hosts request",
                other.op()
            ))),
        }
    })
    .await
    .map_err(|e| Error::Internal(format!("hosts task failed: {e}")))?
}

/// Every project's keys (by host) and vault, as etcd holds them now.
#[derive(Debug, Default)]
struct ProjectKvs {
    keys: BTreeMap<String, Kv>,
    vault: Option<Kv>,
}

fn read_projects(fleet: &EtcdStore) -> Result<BTreeMap<String, ProjectKvs>> {
    let (_, kvs) = fleet
        .etcd
        .range_prefix(PROJECTS)
        .map_err(|e| fleet.fail(e))?;
    Ok(group(kvs))
}

fn group(kvs: Vec<Kv>) -> BTreeMap<String, ProjectKvs> {
    let mut out: BTreeMap<String, ProjectKvs> = BTreeMap::new();
    for kv in kvs {
        match parse_key(&kv.key) {
            KeyKind::Vault(p) => out.entry(p).or_default().vault = Some(kv),
            KeyKind::Key { project, host } => {
                out.entry(project).or_default().keys.insert(host, kv);
            }
            _ => {}
        }
    }
    out
}

fn read_project(fleet: &EtcdStore, name: &str) -> Result<ProjectKvs> {
    let (_, kvs) = fleet
        .etcd
        .range_prefix(&project_prefix(name))
        .map_err(|e| fleet.fail(e))?;
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
            let (ok, _, _) = fleet
                .etcd
                .txn(
                    vec![
                        etcd::cmp_mod(&wrapped_key(&name, fleet.recipient()), mine.mod_revision),
                        etcd::cmp_mod(
                            &vault_key(&name),
                            kvs.vault.as_ref().map_or(0, |v| v.mod_revision),
                        ),
                    ],
                    vec![etcd::op_put(&wrapped_key(&name, &recipient), &wrapped)],
                    vec![],
                )
                .map_err(|e| fleet.fail(e))?;
            if ok {
                done.push(name.clone());
                break;
            }
            tries += 1;
            if tries >= TRIES {
                return Err(Error::Unavailable(format!(
                    "project {name} kept changing; run `fluxctl hosts add {recipient}` again"
                )));
            }
            kvs = read_project(fleet, &name)?;
        }
    }
    fleet
        .etcd
        .txn(
            vec![],
            vec![etcd::op_put(&format!("{HOSTS}{recipient}"), b"")],
            vec![],
        )
        .map_err(|e| fleet.fail(e))?;
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
                return Err(Error::Unavailable(format!(
                    "project {name} kept changing; run `fluxctl hosts remove {recipient}` again"
                )));
            }
            kvs = read_project(fleet, &name)?;
        }
    }
    fleet
        .etcd
        .txn(
            vec![],
            vec![etcd::op_delete(&format!("{HOSTS}{recipient}"))],
            vec![],
        )
        .map_err(|e| fleet.fail(e))?;
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
            path: fleet.key_location(name),
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
                path: fleet.vault_location(name),
                reason: e.0,
            })?;
            let sealed =
                vault::seal(name, &opened.secrets, opened.revision + 1, &new).map_err(|e| {
                    Error::Vault {
                        path: fleet.vault_location(name),
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
    let (ok, _, _) = fleet
        .etcd
        .txn(compare, success, vec![])
        .map_err(|e| fleet.fail(e))?;
    Ok(ok)
}
