//! The etcd watch: every host follows `/flux/v1/projects/` and swaps new
//! vaults in exactly as the folder watcher does (seal verified, the last
//! good snapshot kept on a bad one, change events announced).
//!
//! A blocking thread holds the watch stream and applies each batch of
//! events to the store's cache; an async task turns the projects that
//! changed into a rescan, and projects whose key for this host disappeared
//! (deleted, or this host removed) into projects no longer served. When the
//! stream breaks, the thread reconnects from the last revision it applied
//! (a full re-read when etcd compacted past it), backing off while etcd is
//! unreachable, which is reported in each project's `last_error`.

use super::etcd::WatchMessage;
use super::store::{Applied, EtcdStore, PROJECTS};
use crate::daemon::Shared;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{debug, warn};

const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Starts following etcd. `synced` tells whether the store was just read
/// in full (else the thread starts with a full read).
pub(crate) fn spawn(shared: Arc<Shared>, store: Arc<EtcdStore>, synced: bool) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Applied>();
    let stop = Arc::new(AtomicBool::new(false));
    let thread_stop = stop.clone();
    let spawned = std::thread::Builder::new()
        .name("fluxd-etcd-watch".into())
        .spawn(move || follow(&store, synced, &tx, &thread_stop));
    if let Err(e) = spawned {
        warn!(error = %e, "cannot start the etcd watcher; changes from other hosts are not seen");
        return;
    }
    let shutdown = shared.shutdown.clone();
    shared.tracker.clone().spawn(async move {
        loop {
            let applied = tokio::select! {
                _ = shutdown.cancelled() => break,
                a = rx.recv() => match a { Some(a) => a, None => break },
            };
            for name in &applied.gone {
                shared.forget_project(name).await;
            }
            if applied.changed.is_empty() {
                continue;
            }
            debug!(projects = ?applied.changed, "etcd changed");
            let scope = crate::watch::Scope {
                all: false,
                projects: applied.changed,
            };
            shared.rescan(scope, false).await;
        }
        stop.store(true, Ordering::Release);
    });
}

fn follow(store: &EtcdStore, synced: bool, tx: &mpsc::UnboundedSender<Applied>, stop: &AtomicBool) {
    let mut need_resync = !synced;
    let mut backoff = BACKOFF_MIN;
    while !stop.load(Ordering::Acquire) && !tx.is_closed() {
        if need_resync {
            match store.resync() {
                Ok(applied) => {
                    store.set_outage(None);
                    need_resync = false;
                    backoff = BACKOFF_MIN;
                    if tx.send(applied).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    store.set_outage(Some(e.0));
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            }
        }
        let start = store.revision() + 1;
        let result = store.etcd.watch(PROJECTS, start, |message| {
            if stop.load(Ordering::Acquire) {
                return false;
            }
            match message {
                WatchMessage::Created { .. } => {
                    store.set_outage(None);
                    backoff = BACKOFF_MIN;
                }
                WatchMessage::Events { revision, events } => {
                    let applied = store.apply(revision, events);
                    if (!applied.changed.is_empty() || !applied.gone.is_empty())
                        && tx.send(applied).is_err()
                    {
                        return false;
                    }
                    store.flush();
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
        if let Err(e) = result {
            debug!(error = %e, "etcd watch ended");
            if e.0.contains("unreachable") {
                store.set_outage(Some(e.0));
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX);
            } else {
                std::thread::sleep(BACKOFF_MIN);
            }
        }
    }
}
