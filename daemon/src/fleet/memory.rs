//! A key-value store in memory ([`Backend`]), for tests: fleet mode's
//! store, cache, host administration and watch run on it exactly as on
//! etcd — ranges, revisions, compared transactions, a watch from a
//! revision — without an etcd process. It keeps no history of values (a
//! read at an older revision reads the newest); the watch replays every
//! change since the revision asked for.

use super::kv::KvError;
use super::kv::{Backend, Compare, Kv, Op, WatchEvent, WatchMessage, Watched};
use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// The revision counter, and each key with its value and the revision
/// that last changed it.
type State = (i64, BTreeMap<String, (Vec<u8>, i64)>);

/// The store.
#[derive(Debug, Default)]
pub struct Memory {
    state: Mutex<State>,
    /// Every change, with its revision, for watches.
    log: Mutex<Vec<(i64, WatchEvent)>>,
    changed: Condvar,
    /// Events sent to watches, by the first key they follow.
    delivered: Mutex<BTreeMap<String, usize>>,
}

impl Memory {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Events sent so far to the watches that follow keys from `start`
    /// (a host's own prefix: what it was sent).
    pub fn delivered(&self, start: &str) -> usize {
        self.delivered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(start)
            .copied()
            .unwrap_or(0)
    }

    /// True once a watch follows keys from `start`.
    pub fn watching(&self, start: &str) -> bool {
        self.delivered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(start)
    }

    /// The keys it holds under `prefix`.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.state()
            .1
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    }
}

fn kv(key: &str, (value, revision): &(Vec<u8>, i64)) -> Kv {
    Kv {
        key: key.to_owned(),
        value: value.clone(),
        mod_revision: *revision,
        oversize: None,
    }
}

/// Shared by every host of a test fleet.
impl Backend for Arc<Memory> {
    fn endpoints(&self) -> String {
        "memory".into()
    }

    fn range_between(
        &self,
        start: &[u8],
        end: &[u8],
        _revision: i64,
        each: &mut dyn FnMut(Vec<Kv>),
    ) -> Result<i64, KvError> {
        let (revision, page) = {
            let state = self.state();
            let page: Vec<Kv> = state
                .1
                .iter()
                .filter(|(k, _)| k.as_bytes() >= start && (end == [0] || k.as_bytes() < end))
                .map(|(k, v)| kv(k, v))
                .collect();
            (state.0, page)
        };
        for chunk in page.chunks(16) {
            each(chunk.to_vec());
        }
        Ok(revision)
    }

    fn get_at(&self, key: &str, _revision: i64) -> Result<Option<Kv>, KvError> {
        Ok(self.state().1.get(key).map(|v| kv(key, v)))
    }

    fn keys_at(&self, prefix: &str, _revision: i64) -> Result<Vec<(String, i64)>, KvError> {
        Ok(self
            .state()
            .1
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, (_, r))| (k.clone(), *r))
            .collect())
    }

    fn txn(&self, compare: &[Compare], success: &[Op]) -> Result<(bool, i64), KvError> {
        let mut state = self.state();
        let holds = compare
            .iter()
            .all(|c| state.1.get(&c.key).map_or(0, |(_, r)| *r) == c.mod_revision);
        if !holds {
            return Ok((false, state.0));
        }
        state.0 += 1;
        let revision = state.0;
        let mut events = Vec::new();
        for op in success {
            match op {
                Op::Put { key, value } => {
                    state.1.insert(key.clone(), (value.clone(), revision));
                    events.push(WatchEvent::Put(kv(key, &(value.clone(), revision))));
                }
                Op::Delete { key } => {
                    if state.1.remove(key).is_some() {
                        events.push(WatchEvent::Delete {
                            key: key.clone(),
                            mod_revision: revision,
                        });
                    }
                }
                Op::DeleteRange { start, end } => {
                    let gone: Vec<String> = state
                        .1
                        .keys()
                        .filter(|k| *k >= start && k.as_bytes() < end.as_slice())
                        .cloned()
                        .collect();
                    for key in gone {
                        state.1.remove(&key);
                        events.push(WatchEvent::Delete {
                            key,
                            mod_revision: revision,
                        });
                    }
                }
            }
        }
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.extend(events.into_iter().map(|e| (revision, e)));
        self.changed.notify_all();
        Ok((true, revision))
    }

    fn compact(&self, _revision: i64) -> Result<(), KvError> {
        Ok(())
    }

    fn compacted_past(&self, _revision: i64) -> Option<bool> {
        Some(true)
    }

    fn watch(
        &self,
        watched: &Watched,
        start: i64,
        on_message: &mut dyn FnMut(WatchMessage) -> bool,
    ) -> Result<(), KvError> {
        let revision = self.state().0;
        if !on_message(WatchMessage::Created { revision }) {
            return Ok(());
        }
        let mut next = start;
        loop {
            let events: Vec<(i64, WatchEvent)> = {
                let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
                let log = if log.iter().any(|(r, _)| *r >= next) {
                    log
                } else {
                    // Nothing new: wait a moment, then let the watcher say
                    // whether it still wants to watch.
                    self.changed
                        .wait_timeout(log, Duration::from_millis(50))
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                };
                log.iter()
                    .filter(|(r, e)| *r >= next && watched.sends(e))
                    .cloned()
                    .collect()
            };
            *self
                .delivered
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(watched.start.clone())
                .or_default() += events.len();
            if events.is_empty() {
                if !on_message(WatchMessage::Other) {
                    return Ok(());
                }
                continue;
            }
            let last = events.last().map_or(next, |(r, _)| *r);
            let message = WatchMessage::Events {
                revision: last,
                events: events.into_iter().map(|(_, e)| e).collect(),
            };
            next = last + 1;
            if !on_message(message) {
                return Ok(());
            }
        }
    }

    fn take_reset(&self) -> bool {
        false
    }

    fn page_counts(&self) -> (u64, u64) {
        (0, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::FleetOptions;
    use crate::fleet::hosts::FleetHosts;
    use crate::fleet::layout::{VAULTS, keys_of};
    use crate::fleet::store::FleetStore;
    use crate::store::{Hosts, SignedHosts, Store};
    use flux_vault::ProjectKey;
    use flux_vault::membership::{HostsDoc, OperatorKey};
    use flux_vault::vault::{Secrets, seal};
    use sha2::Digest;

    /// A host of the fleet on `kv`, pinned to `op`'s fleet.
    fn host(kv: &Arc<Memory>, op: &OperatorKey) -> (tempfile::TempDir, Arc<FleetStore>) {
        let dir = tempfile::tempdir().unwrap();
        let options = FleetOptions {
            fleet_id: Some(op.fleet_id()),
            compact_on_delete: true,
            ..FleetOptions::default()
        };
        let store = FleetStore::with_backend(dir.path(), &options, Box::new(kv.clone())).unwrap();
        (dir, Arc::new(store))
    }

    fn publish(on: &Arc<FleetStore>, list: Vec<u8>, id: Vec<u8>) {
        let report = FleetHosts::new(on.clone())
            .publish(SignedHosts { list, id })
            .unwrap();
        assert!(report.failures.is_empty(), "{:?}", report.failures);
    }

    /// Founds a fleet on `founder` (version 1: it alone), then adds
    /// `others` (version 2), each list signed by the operator; returns
    /// version 2 and its envelope.
    fn found(
        op: &OperatorKey,
        founder: &Arc<FleetStore>,
        others: &[&Arc<FleetStore>],
    ) -> (HostsDoc, Vec<u8>) {
        let doc = HostsDoc::first(op.fleet_id(), vec![founder.identity().record()]);
        let v1 = op.sign_hosts(&doc);
        publish(founder, v1.clone(), op.sign_id());
        let all = std::iter::once(founder)
            .chain(others.iter().copied())
            .map(|h| h.identity().record())
            .collect();
        let doc = doc.next(&v1, all, vec![]).unwrap();
        let v2 = op.sign_hosts(&doc);
        publish(founder, v2.clone(), Vec::new());
        (doc, v2)
    }

    /// Waits (up to 10 s) until `done` holds.
    fn eventually(what: &str, mut done: impl FnMut() -> bool) {
        let started = std::time::Instant::now();
        while !done() {
            assert!(started.elapsed() < Duration::from_secs(10), "{what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_set_on_one_host_reaches_another_through_the_watch() {
        let kv = Arc::new(Memory::default());
        let op = OperatorKey::generate();
        let (_a_dir, a) = host(&kv, &op);
        let (_b_dir, b) = host(&kv, &op);
        let doc = HostsDoc::first(
            op.fleet_id(),
            vec![a.identity().record(), b.identity().record()],
        );
        publish(&a, op.sign_hosts(&doc), op.sign_id());
        // B follows the store: a full read, then the watch.
        let (tx, _feed) = crate::fleet::watch::channel(&b);
        crate::fleet::watch::spawn(&b, &tx, 0).unwrap();
        let key = ProjectKey::generate();
        a.create_key("app", &key).unwrap();
        let first = seal("app", &Secrets::new(), 1, &key).unwrap();
        a.store_vault("app", &first).unwrap();
        eventually("the new project on B", || {
            b.load_vault("app").ok().flatten().as_deref() == Some(first.as_slice())
        });
        let second = seal("app", &Secrets::new(), 2, &key).unwrap();
        let held: [u8; 32] = sha2::Sha256::digest(&first).into();
        assert!(a.store_vault_if("app", Some(&held), &second).unwrap());
        eventually("the rotated vault on B", || {
            b.load_vault("app").ok().flatten().as_deref() == Some(second.as_slice())
        });
        // A vault deleted behind the hosts' backs is written back.
        kv.txn(&[], &[Op::delete("/flux/v3/fleet/vaults/app")])
            .unwrap();
        eventually("the vault written back", || {
            kv.get_at("/flux/v3/fleet/vaults/app", 0).unwrap().is_some()
        });
    }

    #[test]
    fn a_fleet_runs_on_the_memory_store_and_keeps_assigned_projects_to_their_hosts() {
        let kv = Arc::new(Memory::default());
        let op = OperatorKey::generate();
        let (_a_dir, a) = host(&kv, &op);
        let (_b_dir, b) = host(&kv, &op);
        // Founded on A, then B added: each list signed by the operator.
        let (doc, v2) = found(&op, &a, &[&b]);
        // "app" on every host, "solo" on A alone.
        let mut next = doc.next(&v2, doc.hosts.clone(), vec![]).unwrap();
        next.assign("solo", &[a.recipient().to_owned()]).unwrap();
        publish(&a, op.sign_hosts(&next), Vec::new());
        for project in ["app", "solo"] {
            let key = ProjectKey::generate();
            a.create_key(project, &key).unwrap();
            a.store_vault(project, &seal(project, &Secrets::new(), 1, &key).unwrap())
                .unwrap();
        }
        // B reads the store in full: it serves "app", and holds nothing
        // of "solo" — no key, no vault; the store holds no key of it
        // wrapped for B.
        b.resync().unwrap();
        assert_eq!(b.projects().unwrap(), ["app"]);
        assert!(b.load_vault("app").unwrap().is_some());
        assert!(b.load_vault("solo").unwrap().is_none());
        assert!(b.load_key("solo").is_err());
        // What B is sent: its key of "app" and the notice of its vault (the
        // list assigns projects: notices are on), nothing of "solo".
        assert_eq!(
            kv.keys(&format!("/flux/v3/keys/{}/", b.recipient())),
            [
                format!("/flux/v3/keys/{}/app", b.recipient()),
                format!("/flux/v3/keys/{}/app/changed", b.recipient())
            ]
        );
        assert_eq!(a.projects().unwrap(), ["app", "solo"]);
    }

    #[test]
    fn once_projects_are_assigned_a_set_is_sent_to_the_projects_hosts_only() {
        let kv = Arc::new(Memory::default());
        let op = OperatorKey::generate();
        let (_a_dir, a) = host(&kv, &op);
        let (_b_dir, b) = host(&kv, &op);
        let (_c_dir, c) = host(&kv, &op);
        let (doc, v2) = found(&op, &a, &[&b, &c]);
        // Sealing is randomized: each vault sealed once.
        let (app_key, duo_key) = (ProjectKey::generate(), ProjectKey::generate());
        let vaults = |project: &str, key: &ProjectKey| -> Vec<Vec<u8>> {
            (1..=3)
                .map(|revision| seal(project, &Secrets::new(), revision, key).unwrap())
                .collect()
        };
        let (app, duo) = (vaults("app", &app_key), vaults("duo", &duo_key));
        let digest = |vault: &[u8]| -> [u8; 32] { sha2::Sha256::digest(vault).into() };
        a.create_key("app", &app_key).unwrap();
        a.store_vault("app", &app[0]).unwrap();
        b.resync().unwrap();
        c.resync().unwrap();
        // Without assignments every host watches the vaults: no notices.
        let notices = || -> Vec<String> {
            kv.keys("/flux/v3/keys/")
                .into_iter()
                .filter(|k| k.ends_with("/changed"))
                .collect()
        };
        assert!(notices().is_empty());
        // "duo" (not created yet) goes to A and B: notices are on from
        // this list on; "app" stays on every host.
        let mut next = doc.next(&v2, doc.hosts.clone(), vec![]).unwrap();
        next.assign("duo", &[a.recipient().to_owned(), b.recipient().to_owned()])
            .unwrap();
        publish(&a, op.sign_hosts(&next), Vec::new());
        // B, still holding the list before, writes "app": the newer list
        // fails the write, B reads it, and its next try tells A and C.
        assert!(!b.notices());
        assert!(
            !b.store_vault_if("app", Some(&digest(&app[0])), &app[1])
                .unwrap()
        );
        assert!(b.notices());
        assert!(
            b.store_vault_if("app", Some(&digest(&app[0])), &app[1])
                .unwrap()
        );
        let mut told =
            [a.recipient(), c.recipient()].map(|h| format!("/flux/v3/keys/{h}/app/changed"));
        told.sort();
        assert_eq!(notices(), told);
        // B and C follow the store; sets of "duo" on A reach B by its
        // notice alone, and C is sent nothing.
        for host in [&b, &c] {
            let (tx, feed) = crate::fleet::watch::channel(host);
            crate::fleet::watch::spawn(host, &tx, 0).unwrap();
            std::mem::forget(feed);
        }
        eventually("B and C watching", || {
            [&b, &c]
                .iter()
                .all(|h| kv.watching(&keys_of(h.recipient())))
        });
        a.create_key("duo", &duo_key).unwrap();
        let on_b = |vault: &Vec<u8>| {
            let (b, vault) = (b.clone(), vault.clone());
            move || b.load_vault("duo").ok().flatten() == Some(vault.clone())
        };
        a.store_vault("duo", &duo[0]).unwrap();
        eventually("duo on B", on_b(&duo[0]));
        // B is sent duo's key and the notice of its vault: two events.
        let sent = |h: &Arc<FleetStore>| kv.delivered(&keys_of(h.recipient()));
        eventually("B sent duo's key and notice", || sent(&b) == 2);
        assert!(
            a.store_vault_if("duo", Some(&digest(&duo[0])), &duo[1])
                .unwrap()
        );
        eventually("duo's next vault on B", on_b(&duo[1]));
        eventually("B sent one more notice", || sent(&b) == 3);
        assert_eq!(sent(&c), 0, "C is sent nothing of duo");
        assert_eq!(kv.delivered(VAULTS), 0, "no host is sent a vault");
        assert_eq!(sent(&b), 3, "B is sent nothing more");
        assert!(c.load_vault("duo").unwrap().is_none() && c.load_key("duo").is_err());

        // Notices are not signed: anyone who can write the store can write
        // one. A notice for C of a project it does not serve is passed
        // over; one for B makes it read the vault — verified like any:
        // junk there is refused, and B keeps serving what it held.
        let notice = |h: &Arc<FleetStore>| format!("{}duo/changed", keys_of(h.recipient()));
        kv.txn(
            &[],
            &[
                Op::put(&format!("{VAULTS}duo"), b"junk"),
                Op::put(&notice(&c), b"999"),
                Op::put(&notice(&b), b"not a version"),
            ],
        )
        .unwrap();
        eventually("B refuses the junk the notice pointed at", || {
            b.health("duo").is_some_and(|h| h.contains("refused"))
        });
        assert!(b.load_vault("duo").unwrap().as_deref() == Some(duo[1].as_slice()));
        assert!(c.load_vault("duo").unwrap().is_none() && c.load_key("duo").is_err());
    }
}
