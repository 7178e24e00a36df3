//! The daemon's life: the shutdown token, the tracker of every task it
//! spawns, systemd's notifications and watchdog, and the drain at the end.
//!
//! The library never installs signal handlers (`main` turns SIGTERM and
//! SIGINT into the token and SIGHUP into [`crate::DaemonHandle::reload`]).
//! Everything long-lived — accept loops, sessions, watchers — runs on the
//! [`TaskTracker`], so shutdown can wait for in-flight requests under a
//! grace deadline.

use crate::systemd::Notifier;
use flux_vault::time::now_ms;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// Shutdown, tasks and systemd.
#[derive(Debug)]
pub struct Runtime {
    shutdown: CancellationToken,
    tracker: TaskTracker,
    notifier: Notifier,
    started_at_ms: u64,
}

impl Runtime {
    /// The runtime of a daemon stopped by `shutdown`.
    pub fn new(shutdown: CancellationToken, notifier: Notifier) -> Self {
        Self {
            shutdown,
            tracker: TaskTracker::new(),
            notifier,
            started_at_ms: now_ms(),
        }
    }

    /// Cancelled when the daemon stops.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Where long-lived tasks are spawned.
    pub fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    /// systemd's notification socket (silent outside systemd).
    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    /// When the daemon started, ms since the epoch.
    pub fn started_at_ms(&self) -> u64 {
        self.started_at_ms
    }

    /// Pings systemd's watchdog at half its timeout, until shutdown.
    pub fn spawn_watchdog(&self) {
        let Some(every) = self.notifier.watchdog_interval() else {
            return;
        };
        info!(every = ?every, "watchdog enabled");
        let (notifier, shutdown) = (self.notifier.clone(), self.shutdown.clone());
        self.tracker.spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => notifier.notify("WATCHDOG=1"),
                }
            }
        });
    }

    /// After the token fired: tells systemd, stops taking tasks, and waits
    /// up to `grace` for the running ones (requests in flight) to finish.
    pub async fn drain(&self, grace: Duration) {
        self.shutdown.cancelled().await;
        info!("shutting down");
        self.notifier.stopping();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            warn!("requests still running after {grace:?}; exiting without them");
        }
    }
}
