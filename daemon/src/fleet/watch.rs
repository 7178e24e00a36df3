//! The etcd watch: the change feed of fleet mode. Each host follows three
//! ranges, one thread each ([`FleetStore::watched`]): the fleet id, host
//! lists and deletions; the vaults; and `/flux/v3/keys/<its recipient>/`
//! (its own wrapped keys and notices), never another host's. Once the host
//! list turns notices on (projects are assigned), the vaults' watch is
//! sent their deletions only, and a set reaches a host as a notice under
//! its own prefix — only the project's hosts are sent anything — whose
//! vault it then reads ([`FleetStore::apply`]). The vaults' thread
//! switches at its next message after the list that turns them on, and a
//! write under an older list fails and is decided again
//! ([`FleetStore::no_newer_list`]), so no set goes unseen in between.
//! Everything received is verified before it is held ([`super::cache`]):
//! new vaults are swapped in exactly as the folder watcher's are.
//!
//! After each batch, a thread sends the projects that changed, and those a
//! signed deletion removed as [`Change::Gone`]. When a stream breaks, the
//! thread reconnects from the last revision it applied; it reads
//! everything again when etcd compacted past that revision, or when an
//! answer showed etcd's history going backwards or its cluster changing
//! (a restore from an older snapshot): the verified versions then keep
//! this host from moving backwards with it. While etcd is unreachable it
//! backs off, and the reason shows in each project's `last_error` until a
//! third thread's probe (every 250 ms while it lasts) gets an answer. That
//! thread also re-keys, unasked, the assigned projects a host list took a
//! host away from and of which this host is the first host
//! ([`super::hosts::rekey_designated`]). The threads stop when the feed is
//! dropped.

use super::cache::Applied;
use super::kv::WatchMessage;
use super::store::FleetStore;
use crate::error::{Error, Result};
use crate::store::{Change, ChangeFeed};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{debug, warn};

const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// While etcd is unreachable, how often it is asked again, so `fluxctl
/// status` clears within this of it answering (an open watch on a member
/// that lost quorum sees nothing change).
const PROBE_EVERY: Duration = Duration::from_millis(250);
/// How long the prober waits to re-key again after a project failed.
const REKEY_RETRY: Duration = Duration::from_secs(10);

/// The change feed, and its sender for [`spawn`].
pub fn channel(store: &Arc<FleetStore>) -> (mpsc::UnboundedSender<Change>, ChangeFeed) {
    let (tx, rx) = mpsc::unbounded_channel::<Change>();
    store.set_feed(tx.clone());
    (tx, ChangeFeed::new(rx, None))
}

/// Starts following etcd from `revision` (0: read everything first), on
/// the feed `tx` of [`channel`].
pub fn spawn(
    store: &Arc<FleetStore>,
    tx: &mpsc::UnboundedSender<Change>,
    revision: i64,
) -> Result<()> {
    for which in 0..store.watched().len() {
        let (store, tx) = (store.clone(), tx.clone());
        std::thread::Builder::new()
            .name("fluxd-etcd-watch".into())
            .spawn(move || run(&store, which, revision, &tx))
            .map_err(|e| Error::Internal(format!("cannot start the etcd watcher: {e}")))?;
    }
    let (probe, tx) = (store.clone(), tx.clone());
    std::thread::Builder::new()
        .name("fluxd-etcd-probe".into())
        .spawn(move || {
            let mut ticks = 0u32;
            let mut rekey_after = std::time::Instant::now();
            while !tx.is_closed() {
                std::thread::sleep(PROBE_EVERY);
                ticks = ticks.wrapping_add(1);
                if probe.has_outage() {
                    probe.probe();
                    continue;
                }
                if std::time::Instant::now() >= rekey_after
                    && !super::hosts::rekey_designated(&probe)
                {
                    rekey_after = std::time::Instant::now() + REKEY_RETRY;
                }
                if ticks % 40 == 0 && probe.has_remains() {
                    // Every 10 s: has anyone compacted etcd since?
                    probe.check_remains();
                }
            }
        })
        .map_err(|e| Error::Internal(format!("cannot start the etcd prober: {e}")))?;
    Ok(())
}

/// Sends what `applied` says changed; false once the feed is gone.
fn send(tx: &mpsc::UnboundedSender<Change>, applied: Applied) -> bool {
    if !applied.gone.is_empty() && tx.send(Change::Gone(applied.gone)).is_err() {
        return false;
    }
    if !applied.changed.is_empty() {
        debug!(projects = ?applied.changed, "etcd changed");
        return tx.send(Change::Projects(applied.changed)).is_ok();
    }
    !tx.is_closed()
}

/// Follows the range `which` of [`FleetStore::watched`], as it is now: it
/// starts again from where it was when the range changes.
fn run(store: &FleetStore, which: usize, revision: i64, tx: &mpsc::UnboundedSender<Change>) {
    let mut start = revision + 1;
    let mut need_resync = revision == 0;
    let mut backoff = BACKOFF_MIN;
    while !tx.is_closed() {
        if need_resync || store.take_reset() {
            match store.resync() {
                Ok((applied, revision)) => {
                    need_resync = false;
                    backoff = BACKOFF_MIN;
                    start = revision + 1;
                    if !send(tx, applied) {
                        return;
                    }
                    if let Err(e) = store.repair(false) {
                        warn!(error = %e, "cannot write back what etcd lost; trying again with the next write");
                    }
                }
                Err(e) => {
                    store.set_outage(Some(e.to_string()));
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            }
        }
        let watched = store.watched()[which].clone();
        let result = store.watch(&watched, start, |message| {
            if tx.is_closed() {
                return false;
            }
            match message {
                WatchMessage::Created { revision } => {
                    store.set_outage(None);
                    backoff = BACKOFF_MIN;
                    if revision + 1 < start || store.take_reset() {
                        // etcd is behind what this host saw (restored from
                        // an older snapshot): a watch from the future would
                        // wait silently for revisions that are not the
                        // ones it missed.
                        warn!(
                            etcd = revision,
                            seen = start - 1,
                            "etcd's revision went backwards; reading everything again"
                        );
                        need_resync = true;
                        return false;
                    }
                }
                WatchMessage::Events { revision, events } => {
                    let applied = store.apply(events);
                    let (lost, unread) = (applied.lost, applied.unread);
                    if !send(tx, applied) {
                        return false;
                    }
                    if unread {
                        // Back to these events: what a notice named is
                        // read again (what was applied stays applied).
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        return false;
                    }
                    store.note_applied(revision);
                    start = revision + 1;
                    store.flush();
                    if lost && let Err(e) = store.repair(false) {
                        warn!(error = %e, "cannot write back what etcd lost; trying again with the next write");
                    }
                    if store.watched()[which] != watched {
                        // The host list turned notices on: follow the
                        // range as it is now, from here.
                        return false;
                    }
                }
                WatchMessage::Compacted { compact_revision } => {
                    warn!(
                        compact_revision,
                        "etcd compacted past the last revision seen; reading everything again"
                    );
                    need_resync = true;
                    return false;
                }
                WatchMessage::Other => {}
            }
            true
        });
        match result {
            Ok(()) => {}
            Err(e) => {
                debug!(error = %e, "etcd watch ended");
                if e.to_string().contains("future revision") {
                    // etcd is behind what this host saw: restored.
                    need_resync = true;
                } else if e.is_unreachable() {
                    store.set_outage(Some(e.to_string()));
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                } else {
                    std::thread::sleep(BACKOFF_MIN);
                }
            }
        }
    }
}
