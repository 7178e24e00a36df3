//! Listening: socket files and accept loops.
//!
//! A socket is created as stale-check → bind → chmod 0600: an existing file
//! that accepts a connection belongs to a running daemon and is left alone
//! (startup fails with a clear message); one that refuses is a leftover from
//! a crash and is replaced. The runtime folder is 0700, so there is no
//! window in which another user could reach a socket before its chmod.
//!
//! Each accept loop takes a permit from the daemon-wide connection
//! semaphore *before* accepting, so past the limit new clients wait in the
//! kernel's backlog instead of costing the daemon memory, and returns when
//! its token is cancelled. Socket files are removed by whoever retires the
//! socket (project delete, shutdown), never by the loop, so a loop that
//! stops late cannot remove a socket re-created at the same path.

use crate::daemon::Shared;
use crate::error::{Error, Result};
use crate::session::{self, Target};
use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info_span, warn};

/// Binds a Unix socket at `path` with mode `mode`, replacing a stale file.
pub fn bind(path: &Path, mode: u32) -> Result<UnixListener> {
    let bind_err = |reason: String| Error::Bind {
        path: path.to_path_buf(),
        reason,
    };
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(bind_err(
                    "another fluxd is already listening there; stop it first, or use another --runtime-dir".into(),
                ));
            }
            fs::remove_file(path)
                .map_err(|e| bind_err(format!("cannot remove the stale socket: {e}")))?;
        }
        Ok(_) => {
            return Err(bind_err(
                "a file that is not a socket is in the way; move it away".into(),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(bind_err(e.to_string())),
    }
    let listener = UnixListener::bind(path).map_err(|e| bind_err(e.to_string()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| bind_err(format!("cannot set mode {mode:o}: {e}")))?;
    Ok(listener)
}

/// Spawns the accept loop for `listener` on the daemon's task tracker.
pub(crate) fn spawn_accept_loop(
    shared: Arc<Shared>,
    listener: UnixListener,
    target: Target,
    cancel: CancellationToken,
) {
    let span = info_span!("listener", socket = %target.label());
    let tracker = shared.tracker.clone();
    tracker.spawn(accept_loop(shared, listener, target, cancel).instrument(span));
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: UnixListener,
    target: Target,
    cancel: CancellationToken,
) {
    loop {
        let permit = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            permit = shared.connections.clone().acquire_owned() => match permit {
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

/// Removes a socket file, logging (not failing) when that is impossible.
pub fn remove_socket(path: &Path) {
    if let Err(e) = fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        warn!(path = %path.display(), error = %e, "cannot remove socket file");
    }
}
