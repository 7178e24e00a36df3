//! The hosts of a fleet: `fluxctl hosts list / add / remove`, as the
//! [`Hosts`] of the etcd store.
//!
//! The host list is versioned (`/flux/v3/fleet/hosts/<v>`) and every
//! version is signed by the fleet's **operator key**, which no host holds:
//! `fluxctl` signs the next version with it and hands the envelope to this
//! host, which checks it exactly as every other host will (the operator's
//! signature, the fleet, the predecessor's digest — [`super::cache`]) and
//! writes it only where no version v exists yet. A host key — stolen or
//! not — can add no host, remove none, and fork nothing.
//!
//! After publishing, this host does the work the change implies, past any
//! project that fails:
//!
//! - for each **added** host, every project key this host holds that the
//!   list lets it serve is wrapped for it (at the key's own generation and
//!   epoch); so is every project newly **assigned** to a listed host;
//! - a list that **removes** hosts is the removal's signed intent, and one
//!   that assigns a project to fewer hosts takes it away from the others:
//!   every project that lost a host and whose key is older than that list
//!   (its epoch) gets a new key — the vault, current and kept versions,
//!   re-sealed with it in the same transaction as the first wrapped keys
//!   (for the hosts serving it only), the wrapped keys of the hosts it lost
//!   deleted. A host removal re-keys only the projects that host served:
//!   this host the ones it holds, and each assigned project's first host
//!   its own, unasked ([`rekey_designated`]); this host waits for those.
//!   [`HostsReport::pending`] names what is left, and `ResumeRemoval`
//!   (`fluxctl hosts remove --resume`, on a host serving it) finishes it;
//!   it is idempotent.

use super::MAX_TXN_OPS;
use super::cache::HostList;
use super::envelope::Kind;

use super::identity::{HostRecord, parse_recipient, wrap_for};
use super::kv::{Compare, Op};
use super::layout::FleetKey;
use super::store::FleetStore;
use crate::error::{Error, Result, Unavailable};
use crate::metrics::FleetGauges;
use crate::store::{FleetInfo, Hosts, HostsReport, SignedHosts, Store};
use flux_protocol::message::HostList as HostListMessage;
use flux_vault::keys::ProjectKey;
use flux_vault::vault;
use std::sync::Arc;
use tracing::{info, warn};

/// Wrapped keys written per transaction when a host gains projects (each
/// about 1 KiB: far below etcd's request limit and its op limit).
const WRAP_BATCH: usize = 64;
/// Projects re-keyed at the same time by one host.
const REKEY_WORKERS: usize = 8;
/// Tries of one project's transaction before giving up on a busy project.
const TRIES: usize = 20;
/// How long the host publishing a removal leaves the other hosts to
/// re-key their share of the projects it holds too, before it re-keys
/// what is left itself.
const HANDOFF: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a removal waits for the other hosts to re-key the projects
/// they were given to re-key ([`rekey_designated`]) before it reports
/// them as pending.
const FLEET_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// Re-keys `projects`, [`REKEY_WORKERS`] at a time: each is its own etcd
/// transaction, and etcd commits transactions that arrive together in one
/// write to its disk. Once etcd is unreachable the rest are not tried
/// (each would wait out its own deadline): they stay pending, unreported.
fn rekey_all(store: &FleetStore, projects: Vec<String>) -> Vec<(String, Result<()>)> {
    let queue = std::sync::Mutex::new(projects.into_iter());
    let done = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..REKEY_WORKERS {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                    let Some(project) = next else { break };
                    if store.has_outage() {
                        break;
                    }
                    let result = rekey_one(store, &project);
                    done.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((project, result));
                }
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    done.sort_by(|a, b| a.0.cmp(&b.0));
    done
}

/// Re-keys `project` (retried while the vault changes under it); done
/// when it is re-keyed here or by another host meanwhile.
fn rekey_one(store: &FleetStore, project: &str) -> Result<()> {
    for _ in 0..TRIES {
        if rotate(store, project)? || !store.pending_rekeys().iter().any(|p| p == project) {
            return Ok(());
        }
    }
    Err(Error::Unavailable(Unavailable::Contended {
        project: project.to_owned(),
    }))
}

/// Re-keys, unasked, the pending projects this host is the first host of
/// ([`super::cache::Cache::designated_rekeys`]): a removal of a host of
/// assigned projects is re-keyed by their own hosts, in parallel. Called
/// by the watch's prober; false when a project could not be re-keyed (the
/// prober then waits before trying again).
pub(super) fn rekey_designated(store: &FleetStore) -> bool {
    if store.designated_rekeys().is_empty() {
        return true;
    }
    let _one = store.rekeying();
    let (mut done, mut all) = (0, true);
    for (project, result) in rekey_all(store, store.designated_rekeys()) {
        match result {
            Ok(()) => done += 1,
            Err(e) => {
                all = false;
                warn!(project, error = %e, "cannot re-key the project after a host list took a host away from it");
            }
        }
    }
    info!(
        rekeyed = done,
        "re-keyed the assigned projects this host is first host of"
    );
    all
}

/// Fleet host administration on the etcd store.
#[derive(Debug)]
pub struct FleetHosts {
    store: Arc<FleetStore>,
}

impl FleetHosts {
    /// Administration of `store`'s hosts.
    pub fn new(store: Arc<FleetStore>) -> Self {
        Self { store }
    }

    /// Wraps for `host` every project key this host holds that `after`
    /// lets it serve and `before` did not.
    fn wrap_for_new(
        &self,
        host: &HostRecord,
        before: Option<&HostList>,
        after: &HostList,
        report: &mut HostsReport,
    ) -> Result<()> {
        let recipient = parse_recipient(&host.recipient)?;
        let new = self.store.projects()?.into_iter().filter(|p| {
            after.serves(&host.recipient, p)
                && !before.is_some_and(|b| b.serves(&host.recipient, p))
        });
        // Wrapped one by one, written in batches: a join of a thousand
        // projects is a few transactions, not a thousand.
        let mut batch: Vec<(String, Op)> = Vec::new();
        let flush = |batch: &mut Vec<(String, Op)>, report: &mut HostsReport| {
            if batch.is_empty() {
                return;
            }
            let (names, ops): (Vec<String>, Vec<Op>) = batch.drain(..).unzip();
            match self.store.put_all(ops) {
                Ok(_) => report.projects.extend(names),
                Err(e) => report.failures.extend(
                    names
                        .into_iter()
                        .map(|p| format!("{p}: not wrapped for {}: {e}", host.recipient)),
                ),
            }
        };
        for project in new {
            let op = (|| {
                let (generation, epoch) = self.store.key_generation(&project);
                let plain = self.store.plain_key(&project)?;
                let key = FleetKey::key(&host.recipient, &project);
                let wrapped = wrap_for(plain.as_bytes(), &recipient)?;
                let env = self
                    .store
                    .sign_at(Kind::Key, &key, generation, epoch, &wrapped);
                Ok::<_, Error>(Op::put(&key.to_string(), &env))
            })();
            match op {
                Ok(op) => batch.push((project, op)),
                Err(e) => report.failures.push(format!(
                    "{project}: not wrapped for {}: {e}",
                    host.recipient
                )),
            }
            if batch.len() >= WRAP_BATCH {
                flush(&mut batch, report);
            }
        }
        flush(&mut batch, report);
        Ok(())
    }

    /// Re-keys every project this host holds whose key predates the last
    /// host list that took a host away from it; then, after a removal,
    /// waits (up to [`FLEET_WAIT`]) for the other hosts to re-key theirs
    /// ([`rekey_designated`]), and reports as pending every project etcd
    /// still holds a key of wrapped for a removed host.
    /// `had`: the projects etcd held a key of for the removed hosts before
    /// the removal was published — re-keyed by this host or by the
    /// projects' own hosts, all of them are reported.
    fn rekey_pending(
        &self,
        report: &mut HostsReport,
        had: std::collections::BTreeSet<String>,
    ) -> Result<()> {
        let version = self.store.host_list().map_or(0, |l| l.version);
        let rekey = |projects: Vec<String>, report: &mut HostsReport| {
            let _one = self.store.rekeying();
            for (project, result) in rekey_all(&self.store, projects) {
                match result {
                    Ok(()) => report.projects.push(project),
                    Err(e) => {
                        warn!(project, error = %e, "cannot re-key the project after a host removal");
                        report.failures.push(format!("{project}: {e}"));
                    }
                }
            }
        };
        if !report.removed.is_empty() && !self.store.has_outage() {
            // A removal: this host's share first, while every other host
            // re-keys its own; what they have not done by HANDOFF, this
            // host does (a host may be down).
            rekey(self.store.designated_rekeys(), report);
            let waited = std::time::Instant::now();
            while !self.store.pending_rekeys().is_empty()
                && waited.elapsed() < HANDOFF
                && !self.store.has_outage()
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        rekey(self.store.pending_rekeys(), report);
        report.pending = self.store.pending_rekeys();
        if !report.removed.is_empty() && !self.store.has_outage() {
            let waited = std::time::Instant::now();
            loop {
                let mut left = self.store.keys_left_for(&report.removed)?;
                left.extend(report.pending.iter().cloned());
                if left.is_empty() || waited.elapsed() >= FLEET_WAIT {
                    report.projects.extend(
                        had.difference(&left)
                            .filter(|p| !report.projects.contains(p))
                            .cloned()
                            .collect::<Vec<_>>(),
                    );
                    report.projects.sort();
                    report.pending = left.into_iter().collect();
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        info!(
            version,
            rekeyed = report.projects.len(),
            pending = report.pending.len(),
            "re-keyed projects after a host list took hosts away"
        );
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
        let (read_pages, read_pages_shrunk) = self.store.page_counts();
        let (unsynced, refused_envelopes, held_bytes) = self.store.memory_gauges();
        Some(FleetGauges {
            outage: self.store.has_outage(),
            applied_revision: self.store.applied_revision(),
            problems: self.store.problems().len(),
            unsynced,
            refused_envelopes,
            held_bytes,
            read_pages,
            read_pages_shrunk,
        })
    }

    fn head(&self) -> Result<SignedHosts> {
        let (list, id) = self.store.head();
        Ok(SignedHosts { list, id })
    }

    fn publish(&self, signed: SignedHosts) -> Result<HostsReport> {
        let held = self.store.host_list();
        // What the hosts this list removes could open, read before it is
        // published: their co-hosts start re-keying the moment it lands.
        let leaving: Vec<String> = match (&held, self.store.incoming_hosts(&signed.list)) {
            (Some(h), Some(next)) => h
                .hosts
                .iter()
                .filter(|x| !next.contains(&x.recipient))
                .map(|x| x.recipient.clone())
                .collect(),
            _ => Vec::new(),
        };
        let had = self.store.keys_left_for(&leaving).unwrap_or_default();
        let after = self.store.publish_hosts(&signed.list, &signed.id)?;
        // What changed is against the version before the one published (the
        // held one, unless the held version itself was published again).
        let before = match held {
            Some(h) if h.version == after.version => after
                .version
                .checked_sub(1)
                .and_then(|v| self.store.host_list_at(v)),
            other => other,
        };
        let was = |r: &str| before.as_ref().is_some_and(|l| l.contains(r));
        let mut report = HostsReport {
            version: after.version,
            added: after
                .hosts
                .iter()
                .filter(|h| !was(&h.recipient))
                .map(|h| h.recipient.clone())
                .collect(),
            removed: before
                .iter()
                .flat_map(|l| &l.hosts)
                .filter(|h| !after.contains(&h.recipient))
                .map(|h| h.recipient.clone())
                .collect(),
            ..HostsReport::default()
        };
        info!(version = after.version, added = ?report.added, removed = ?report.removed, "host list published");
        if !after.contains(self.store.recipient()) {
            // This host is off the list: it writes nothing more.
            return Ok(report);
        }
        // Added hosts get every project they serve; listed ones, the
        // projects newly assigned to them.
        for host in after
            .hosts
            .iter()
            .filter(|h| h.recipient != self.store.recipient())
        {
            let before = before.as_ref().filter(|_| was(&host.recipient));
            self.wrap_for_new(host, before, &after, &mut report)?;
        }
        self.rekey_pending(&mut report, had)?;
        report.projects.sort();
        report.projects.dedup();
        Ok(report)
    }

    fn prepare_key(&self) -> Result<String> {
        let next = super::identity::HostIdentity::load_or_create(&self.store.next_key_path())?;
        Ok(next.record().join_token())
    }

    fn resume(&self) -> Result<HostsReport> {
        let list = self.store.my_host_list()?;
        let mut report = HostsReport {
            version: list.version,
            removed: self.store.removal().map(|(_, r)| r).unwrap_or_default(),
            ..HostsReport::default()
        };
        let had = self
            .store
            .keys_left_for(&report.removed)
            .unwrap_or_default();
        self.rekey_pending(&mut report, had)?;
        Ok(report)
    }
}

/// One rotation of `project` to a new key for the hosts serving it (the
/// wrapped keys of the hosts taken away from it deleted); false when the
/// vault changed meanwhile.
fn rotate(store: &FleetStore, project: &str) -> Result<bool> {
    let list = store.my_host_list()?;
    // A host given the project back since gets the new key instead.
    let removed: Vec<String> = store
        .revoked_hosts(project)
        .into_iter()
        .filter(|r| !list.serves(r, project))
        .collect();
    let old = ProjectKey::parse(&store.plain_key(project)?).map_err(|reason| Error::Key {
        location: store.key_location(project),
        reason,
    })?;
    let new = ProjectKey::generate();
    let version = store.next_version(project);
    let mut ops = Vec::new();
    let mut compare = Vec::new();
    let vault_key = FleetKey::vault(project);
    let mut vault_env = None;
    if let Some((held_vault, mod_revision)) = store.held_vault(project) {
        let opened = vault::open(&held_vault, project, &old).map_err(|e| Error::Vault {
            location: store.vault_location(project),
            reason: e.to_string(),
        })?;
        let sealed =
            vault::seal(project, &opened.secrets, opened.revision + 1, &new).map_err(|e| {
                Error::Vault {
                    location: store.vault_location(project),
                    reason: e.to_string(),
                }
            })?;
        let env = store.sign(Kind::Vault, &vault_key, version, &sealed);
        ops.push(Op::put(&vault_key.to_string(), &env));
        vault_env = Some(env);
        if mod_revision != 0 {
            compare.push(Compare::mod_revision(&vault_key.to_string(), mod_revision));
        }
    }
    let created = flux_vault::time::created_stamp();
    let plain = new.to_file_contents(&created);
    // This host first, so that its new key is in the first transaction,
    // with the vault it opens.
    let mut hosts = list.serving(project);
    hosts.sort_by_key(|h| h.recipient != store.recipient());
    let (keys, mine) = store.key_puts(project, plain.as_bytes(), version, list.version, &hosts)?;
    let mine = mine.expect("this host is listed");
    ops.extend(keys);
    for r in &removed {
        ops.push(Op::delete(&FleetKey::key(r, project).to_string()));
    }
    ops.extend(FleetStore::notice_deletes(
        &list,
        removed.iter().map(String::as_str),
        project,
    ));
    if vault_env.is_some() {
        ops.extend(store.notice_puts(&list, project, version));
    }
    let rest = ops.split_off(ops.len().min(MAX_TXN_OPS));
    compare.extend(store.no_newer_list(&list));
    let (ok, revision) = store.txn(compare, ops)?;
    if !ok {
        store.refresh_held(project)?;
        return Ok(false);
    }
    store.put_all(rest)?;
    // Held and served here at once (the project reloads with the new key),
    // so that this host's next write is sealed with it.
    let mut written = vec![(FleetKey::key(store.recipient(), project), mine)];
    if let Some(env) = vault_env {
        written.push((vault_key, env));
    }
    store.keep_and_announce(project, written, revision);
    Ok(true)
}
