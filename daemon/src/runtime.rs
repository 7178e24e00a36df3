//! The daemon's life: the shutdown token, the tracker of every task it
//! spawns, systemd's notifications and watchdog, and the drain at the end.
//!
//! The library never installs signal handlers (`main` turns SIGTERM and
//! SIGINT into the token and SIGHUP into [`crate::DaemonHandle::reload`]).
//! Everything long-lived — accept loops, sessions, watchers — runs on the
//! [`TaskTracker`], so shutdown can wait for in-flight requests under a
//! grace deadline.
//!
//! Connections run on their own threads, one per CPU, each with a
//! single-threaded runtime of its own ([`Runtime::spawn_connection`]): a
//! connection's socket, timers and task stay on one thread, so answering a
//! request wakes no other thread (a shared work-stealing pool wakes idle
//! workers to look for work; docs/BENCHMARKS.md has the before and after).
//! Accepting, the watchers and the project loads stay on the main runtime;
//! a connection's blocking file work runs on its thread's small pool.

use crate::systemd::Notifier;
use flux_vault::vault::now_ms;
use std::future::Future;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// Stack of a connection thread and of its blocking threads (fluxd locks
/// its memory, so every thread's stack counts).
const CONNECTION_STACK: usize = 1 << 20;

/// Shutdown, tasks and systemd.
#[derive(Debug)]
pub struct Runtime {
    shutdown: CancellationToken,
    tracker: TaskTracker,
    notifier: Notifier,
    started_at_ms: u64,
    /// The connection threads' runtimes, started on first use.
    connections: OnceLock<Vec<tokio::runtime::Handle>>,
    next_connection: AtomicUsize,
}

impl Runtime {
    /// The runtime of a daemon stopped by `shutdown`.
    pub fn new(shutdown: CancellationToken, notifier: Notifier) -> Self {
        Self {
            shutdown,
            tracker: TaskTracker::new(),
            notifier,
            started_at_ms: now_ms(),
            connections: OnceLock::new(),
            next_connection: AtomicUsize::new(0),
        }
    }

    /// Runs a connection's task on one of the connection threads (round
    /// robin), tracked like every other task. Falls back to the calling
    /// runtime when the threads cannot be started.
    pub fn spawn_connection<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let handles = self
            .connections
            .get_or_init(|| self.start_connection_threads());
        let task = self.tracker.track_future(task);
        if handles.is_empty() {
            tokio::spawn(task);
            return;
        }
        let n = self.next_connection.fetch_add(1, Ordering::Relaxed) % handles.len();
        handles[n].spawn(task);
    }

    /// One thread per CPU, each driving a single-threaded runtime until the
    /// daemon stops and its tasks are done.
    fn start_connection_threads(&self) -> Vec<tokio::runtime::Handle> {
        let count = std::thread::available_parallelism().map_or(1, |n| n.get().min(16));
        let mut handles = Vec::with_capacity(count);
        for i in 0..count {
            let (tx, rx) = std::sync::mpsc::channel();
            let (shutdown, tracker) = (self.shutdown.clone(), self.tracker.clone());
            let started = std::thread::Builder::new()
                .name(format!("fluxd-conn-{i}"))
                .stack_size(CONNECTION_STACK)
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        // Few and small: locked memory stays bounded.
                        .max_blocking_threads(2)
                        .thread_stack_size(CONNECTION_STACK)
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            warn!(error = %e, "cannot start a connection thread's runtime");
                            return;
                        }
                    };
                    let _ = tx.send(rt.handle().clone());
                    // Until the daemon stops and the drain is over: the
                    // connections answer what they are answering.
                    rt.block_on(async move {
                        shutdown.cancelled().await;
                        tracker.wait().await;
                    });
                });
            if let Err(e) = started {
                warn!(error = %e, "cannot start a connection thread");
                continue;
            }
            if let Ok(handle) = rx.recv() {
                handles.push(handle);
            }
        }
        handles
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
