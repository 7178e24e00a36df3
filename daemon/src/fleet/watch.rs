//! The etcd watch: the change feed of fleet mode. Every host follows
//! `/flux/v1/projects/`, so new vaults are swapped in exactly as the folder
//! watcher's are (seal verified, the last good snapshot kept on a bad one,
//! change events announced).
//!
//! A blocking thread holds the watch stream and applies each batch of
//! events to the store's cache, then sends the projects that changed, and
//! those whose key for this host disappeared (deleted, or this host
//! removed) as [`Change::Gone`]. When the stream breaks, the thread
//! reconnects from the last revision it applied (a full re-read when etcd
//! compacted past it), backing off while etcd is unreachable, which is
//! reported in each project's `last_error`. It stops when the feed is
//! dropped.

use super::etcd::WatchMessage;
use super::layout::PROJECTS;
use super::store::{Applied, EtcdStore};
use crate::error::{Error, Result};
use crate::store::{Change, ChangeFeed};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{debug, warn};

const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Starts following etcd. `synced` tells whether the store was just read
/// in full (else the thread starts with a full read).
pub fn follow(store: Arc<EtcdStore>, synced: bool) -> Result<ChangeFeed> {
    let (tx, rx) = mpsc::unbounded_channel::<Change>();
    std::thread::Builder::new()
        .name("fluxd-etcd-watch".into())
        .spawn(move || run(&store, synced, &tx))
        .map_err(|e| Error::Internal(format!("cannot start the etcd watcher: {e}")))?;
    Ok(ChangeFeed::new(rx, None))
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

fn run(store: &EtcdStore, synced: bool, tx: &mpsc::UnboundedSender<Change>) {
    let mut need_resync = !synced;
    let mut backoff = BACKOFF_MIN;
    while !tx.is_closed() {
        if need_resync {
            match store.resync() {
                Ok(applied) => {
                    store.set_outage(None);
                    need_resync = false;
                    backoff = BACKOFF_MIN;
                    if !send(tx, applied) {
                        return;
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
        let start = store.revision() + 1;
        let result = store.watch(PROJECTS, start, |message| {
            if tx.is_closed() {
                return false;
            }
            match message {
                WatchMessage::Created { .. } => {
                    store.set_outage(None);
                    backoff = BACKOFF_MIN;
                }
                WatchMessage::Events { revision, events } => {
                    let applied = store.apply(revision, events);
                    if !send(tx, applied) {
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
            if e.is_unreachable() {
                store.set_outage(Some(e.to_string()));
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX);
            } else {
                std::thread::sleep(BACKOFF_MIN);
            }
        }
    }
}
