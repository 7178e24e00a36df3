//! Accept loops. (Socket files are [`crate::sockets`]'.)
//!
//! Each accept loop takes a permit from its connection budget *before*
//! accepting — the control socket has one of its own, the project sockets
//! share the other, so neither kind can crowd out the other — so past the
//! limit new clients wait in the kernel's backlog instead of costing the
//! daemon memory (or file descriptors), and returns when
//! its token is cancelled. Socket files are removed by whoever retires the
//! socket (project delete, shutdown), never by the loop, so a loop that
//! stops late cannot remove a socket re-created at the same path.

use crate::daemon::Shared;
use crate::session::{self, Target};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info_span};

/// Spawns the accept loop for `listener` on the daemon's task tracker.
pub(crate) fn spawn_accept_loop(
    shared: Arc<Shared>,
    listener: UnixListener,
    target: Target,
    cancel: CancellationToken,
) {
    let span = info_span!("listener", socket = %target.label());
    let tracker = shared.tracker.clone();
    let slots = match &target {
        Target::Control => shared.control_connections.clone(),
        Target::Project { .. } => shared.connections.clone(),
    };
    tracker.spawn(accept_loop(shared, listener, target, slots, cancel).instrument(span));
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: UnixListener,
    target: Target,
    slots: Arc<tokio::sync::Semaphore>,
    cancel: CancellationToken,
) {
    loop {
        let permit = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let stream = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning, keep
                    // serving the connections already open.
                    error!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Sessions end with the daemon, not with their listener: after a
        // project is deleted, its open connections answer `unknown_project`
        // (and subscribers get the deletion event) instead of just closing.
        let (shared2, target2, cancel2) = (shared.clone(), target.clone(), shared.shutdown.clone());
        shared.tracker.spawn(async move {
            session::serve(stream, target2, shared2, cancel2).await;
            drop(permit);
        });
    }
}
