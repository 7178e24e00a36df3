//! Serving: the sockets, their accept loops, one session per connection,
//! and one handler per request kind.
//!
//! - [`sockets`]: socket files — binding, modes, systemd's sockets;
//! - [`session`]: one connection — handshake, frames, timers, the access
//!   decision, the audit; a project socket's connection on a thread of its
//!   own for its reads, the rest on the async runtime;
//! - [`handlers`]: what each request kind does, and the rule it declares;
//! - [`exposition`]: the metrics in the Prometheus text format, for the
//!   `Metrics` request and the optional scrape listener ([`scrape`]).
//!
//! [`Services`] is what a session and its handlers use; [`Server`] is the
//! [`Listeners`] the project lifecycle calls to open and close project
//! sockets.
//!
//! Each accept loop takes a permit from its connection budget *before*
//! accepting — the control socket has one of its own, the project sockets
//! share the other, so neither kind can crowd out the other — so past the
//! limit new clients wait in the kernel's backlog instead of costing the
//! daemon memory (or file descriptors), and returns when its token is
//! cancelled. Socket files are removed by whoever retires the socket
//! (project delete, shutdown), never by the loop, so a loop that stops late
//! cannot remove a socket re-created at the same path.

pub mod exposition;
pub mod handlers;
pub mod scrape;
pub mod session;
pub mod sockets;

use crate::access::Access;
use crate::config::Config;
use crate::error::Result;
use crate::lifecycle::{Lifecycle, Listeners, Pending};
use crate::metrics::DaemonMetrics;
use crate::project::Project;
use crate::runtime::Runtime;
use crate::store::Hosts;
use session::Target;
use sockets::Sockets;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;
use tokio::net::UnixListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info_span};

/// What sessions and handlers work with.
#[derive(Debug)]
pub struct Services {
    pub config: Config,
    pub access: Access,
    pub lifecycle: Lifecycle,
    pub hosts: Arc<dyn Hosts>,
    pub runtime: Runtime,
    /// Daemon-wide counters (each project keeps its own).
    pub metrics: Arc<DaemonMetrics>,
}

/// The listeners: socket files and accept loops.
#[derive(Debug)]
pub struct Server {
    sockets: Sockets,
    /// Connection budgets: the project sockets', and the control socket's.
    projects: Arc<Semaphore>,
    control: Arc<Semaphore>,
    /// The control socket's connections by peer.
    control_peers: Arc<session::PeerSlots>,
    /// Set once the services exist (they hold this server, through
    /// [`Lifecycle`]).
    services: OnceLock<Weak<Services>>,
    /// Watches the project sockets' connection threads, and ends them at
    /// shutdown.
    stopping: Arc<session::watchdog::Watchdog>,
}

impl Server {
    /// A server with `sockets` and `config`'s connection budgets.
    pub fn new(sockets: Sockets, config: &Config) -> Self {
        Self {
            sockets,
            projects: Arc::new(Semaphore::new(config.limits.max_connections)),
            control: Arc::new(Semaphore::new(config.limits.max_control_connections)),
            control_peers: Arc::default(),
            services: OnceLock::new(),
            stopping: Arc::default(),
        }
    }

    /// Connects the server to the services its sessions use.
    pub fn attach(&self, services: &Arc<Services>) {
        let _ = self.services.set(Arc::downgrade(services));
    }

    /// The socket files.
    pub fn sockets(&self) -> &Sockets {
        &self.sockets
    }

    fn services(&self) -> Option<Arc<Services>> {
        self.services.get().and_then(Weak::upgrade)
    }

    /// Opens the control socket and serves it.
    pub fn serve_control(&self) -> Result<()> {
        let services = self.services().expect("attached before serving");
        let path = services.config.control_socket();
        let group = services.access.policy().control_group();
        let listener = self.sockets.listen(&path, "control", group)?;
        let cancel = services.runtime.shutdown().clone();
        let target = Target::Control {
            peers: self.control_peers.clone(),
        };
        self.spawn(&services, listener, target, cancel.clone());
        let stopping = self.stopping.clone();
        services.runtime.tracker().spawn(async move {
            cancel.cancelled().await;
            stopping.stop();
        });
        Ok(())
    }

    /// Opens the optional metrics listener (`[metrics] listen`). A
    /// listener that cannot be opened is logged and the daemon serves on:
    /// secrets matter more than their metrics.
    pub fn serve_metrics(&self) {
        let services = self.services().expect("attached before serving");
        let Some(listen) = services.config.metrics_listen.clone() else {
            return;
        };
        let cancel = services.runtime.shutdown().clone();
        if let Err(e) = scrape::start(&services, &self.sockets, &listen, cancel) {
            error!(error = %e, "the metrics listener is not running; fluxctl metrics still works");
        }
    }

    fn spawn(
        &self,
        services: &Arc<Services>,
        listener: UnixListener,
        target: Target,
        cancel: CancellationToken,
    ) {
        let span = info_span!("listener", socket = %target.label());
        let slots = match &target {
            Target::Control { .. } => self.control.clone(),
            Target::Project { .. } => self.projects.clone(),
        };
        let weak = Arc::downgrade(services);
        let stopping = self.stopping.clone();
        services.runtime.tracker().spawn(
            accept_loop(weak, listener, target, slots, cancel, stopping, None).instrument(span),
        );
    }
}

impl Listeners for Server {
    fn serve(&self, project: &Arc<Project>) -> Result<()> {
        let services = self.services().expect("attached before serving");
        let group = services.access.policy().socket_group(project.name());
        let listener = self.sockets.listen(
            project.socket(),
            &format!("project.{}", project.name()),
            group,
        )?;
        let slots = Arc::new(Semaphore::new(
            services.config.limits.max_connections_per_project,
        ));
        let target = Target::Project {
            project: project.clone(),
            slots,
        };
        self.spawn(&services, listener, target, project.cancel_token().clone());
        Ok(())
    }

    fn serve_pending(&self, pending: Pending) -> Result<()> {
        let services = self.services().expect("attached before serving");
        let group = services.access.policy().socket_group(pending.name());
        let listener = self.sockets.listen(
            pending.socket(),
            &format!("project.{}", pending.name()),
            group,
        )?;
        let (budget, stopping) = (self.projects.clone(), self.stopping.clone());
        let per_project = services.config.limits.max_connections_per_project;
        let weak = Arc::downgrade(&services);
        let cancel = services.runtime.shutdown().clone();
        let span = info_span!("listener", socket = %format!("project:{}", pending.name()));
        services.runtime.tracker().spawn(
            async move {
                // Until a client connects or the project is loaded anyway;
                // that first client is served once it is.
                let first = tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return,
                    accepted = listener.accept() => accepted.ok().map(|(stream, _)| stream),
                    _ = pending.settled() => None,
                };
                let project = pending.get().await;
                let Some(project) = project else {
                    // Not loaded (the registry says why): its clients are
                    // refused rather than left waiting.
                    drop((first, listener));
                    if let Some(services) = weak.upgrade() {
                        services.lifecycle.retire_socket(pending.socket());
                    }
                    return;
                };
                let target = Target::Project {
                    project: project.clone(),
                    slots: Arc::new(Semaphore::new(per_project)),
                };
                let cancel = project.cancel_token().clone();
                accept_loop(weak, listener, target, budget, cancel, stopping, first).await;
            }
            .instrument(span),
        );
        Ok(())
    }

    fn retire(&self, project: &Project) {
        self.sockets.retire(project.socket());
    }

    fn retire_socket(&self, socket: &std::path::Path) {
        self.sockets.retire(socket);
    }
}

async fn accept_loop(
    services: Weak<Services>,
    listener: UnixListener,
    target: Target,
    slots: Arc<Semaphore>,
    cancel: CancellationToken,
    stopping: Arc<session::watchdog::Watchdog>,
    mut first: Option<tokio::net::UnixStream>,
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
        let stream = if let Some(stream) = first.take() {
            stream
        } else {
            tokio::select! {
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
            }
        };
        let Some(services) = services.upgrade() else {
            return;
        };
        // Sessions end with the daemon, not with their listener: after a
        // project is deleted, its open connections answer `unknown_project`
        // (and subscribers get the deletion event) instead of just closing.
        // A project socket's connection gets a thread of its own.
        if let Target::Project { .. } = &target {
            session::direct::start(stream, target.clone(), services, permit, stopping.clone());
            continue;
        }
        let (target2, cancel2) = (target.clone(), services.runtime.shutdown().clone());
        let tracker = services.runtime.tracker().clone();
        tracker.spawn(async move {
            session::serve(stream, target2, services, cancel2).await;
            drop(permit);
        });
    }
}
