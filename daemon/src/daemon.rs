//! Start-up and shutdown: the one place that picks the store and wires the
//! owners together.
//!
//! [`Daemon::start`] prepares the folders ([`crate::folders`]), takes the
//! state folder's lock (two daemons must never write one vault), opens the
//! audit log, picks the store once — the local folder, etcd (fleet mode) or
//! a `.env` file (`fluxd dev`) — with its change feed and its host
//! administration, then builds:
//!
//! ```text
//!  Services ─┬─ Config
//!            ├─ Access   (policy + audit)
//!            ├─ Lifecycle ─┬─ Registry (projects in the store)
//!            │             └─ Listeners = Server (sockets, accept loops)
//!            ├─ Hosts    (fleet administration, or NoFleet)
//!            └─ Runtime  (shutdown, tasks, systemd)
//! ```
//!
//! It serves every project, follows the change feed, and opens the control
//! socket last — so a connectable control socket means every project
//! socket is already listening. [`Daemon::wait`] returns after the
//! shutdown token fires and the daemon has drained: accept loops stopped,
//! in-flight requests answered (within the grace period), socket files
//! removed, what the store owes its disk written ([`Store::finish`]: fleet
//! mode's local copy), the audit log flushed.
//!
//! Socket files carry the access policy: a project socket is mode 0660 and
//! group-owned by the project's `socket_group` when the config names one,
//! else 0600; likewise the control socket with `control_group`. When any
//! socket is opened to a group, the runtime folder is 0711 (others may
//! reach a socket whose path they know, but not list the projects);
//! otherwise it is 0700.

use crate::access::Access;
use crate::access::audit::Audit;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::folders::{check_private, chmod_own_dir, lock_state_dir, own_dir};
use crate::lifecycle::{Lifecycle, Listeners};
use crate::registry::Registry;
use crate::runtime::Runtime;
use crate::server::sockets::Sockets;
use crate::server::{Server, Services};
use crate::store::{Change, ChangeFeed, DevStore, LocalStore, NoFleet, Opened, Store};
use crate::systemd::{Inherited, Notifier};
use flux_protocol::paths;
use nix::fcntl::Flock;
use std::fs::File;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// What the daemon is handed at start besides its configuration.
#[derive(Debug, Default)]
pub struct Startup {
    /// Listening sockets from socket activation, by name.
    pub inherited: Inherited,
    /// Where to send readiness and watchdog notifications.
    pub notifier: Notifier,
}

/// A running daemon.
#[derive(Debug)]
pub struct Daemon {
    services: Arc<Services>,
    server: Arc<Server>,
    _lock: Option<Flock<File>>,
    /// `fluxd dev`: the folders it created for its sockets, deepest first,
    /// removed when it stops (those that are empty by then).
    created: Vec<std::path::PathBuf>,
}

impl Daemon {
    /// Starts serving (see the module docs). Returns once every socket is
    /// listening.
    pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Self> {
        Self::start_with(config, shutdown, Startup::default()).await
    }

    /// [`Daemon::start`] with sockets from systemd and a notifier: sends
    /// `READY=1` once every socket listens.
    pub async fn start_with(
        config: Config,
        shutdown: CancellationToken,
        startup: Startup,
    ) -> Result<Self> {
        own_dir(&config.state_dir, "the state folder")?;
        check_private(&config.state_dir, "the state folder", 0o700)?;
        prepare_runtime_dir(&config)?;
        let lock = lock_state_dir(&config.state_dir)?;
        let audit_key = if config.audit.path.is_some() {
            Some(audit_key(&config.state_dir)?)
        } else {
            None
        };
        let audit = Audit::open(&config.audit, audit_key)?;
        let opened = match &config.store {
            crate::fleet::StoreChoice::Etcd(options) => {
                let state = config.state_dir.clone();
                let options = options
                    .clone()
                    .with_project_limit(config.limits.max_project_bytes);
                tokio::task::spawn_blocking(move || crate::fleet::open(&state, &options))
                    .await
                    .map_err(|e| Error::Internal(format!("fleet start task failed: {e}")))??
            }
            crate::fleet::StoreChoice::Local => open_local(&config)?,
        };
        Self::serve(config, shutdown, startup, opened, Some(lock), audit).await
    }

    /// `fluxd dev`: serves the one project of `store` (a `.env` file) with
    /// no state folder, no audit log and the default policy, following the
    /// file's folder for edits.
    pub async fn start_dev(
        config: Config,
        shutdown: CancellationToken,
        store: DevStore,
    ) -> Result<Self> {
        // A file that cannot be read at all is refused before anything is
        // created.
        store.check()?;
        let created = missing_folders(&config.runtime_dir.join(paths::PROJECTS_DIR));
        let started = async {
            prepare_runtime_dir(&config)?;
            let feed = store.changes()?;
            let opened = Opened {
                store: Arc::new(store),
                feed,
                hosts: Arc::new(NoFleet),
            };
            let startup = Startup::default();
            Self::serve(config, shutdown, startup, opened, None, Audit::disabled()).await
        };
        match started.await {
            Ok(mut daemon) => {
                daemon.created = created;
                Ok(daemon)
            }
            Err(e) => {
                remove_empty(&created);
                Err(e)
            }
        }
    }

    /// Builds the owners around `opened` and serves (the part every mode
    /// shares).
    async fn serve(
        config: Config,
        shutdown: CancellationToken,
        startup: Startup,
        opened: Opened,
        lock: Option<Flock<File>>,
        audit: Audit,
    ) -> Result<Self> {
        let runtime = Runtime::new(shutdown.clone(), startup.notifier);
        let server = Arc::new(Server::new(Sockets::new(startup.inherited), &config));
        let registry = Registry::new(opened.store, config.runtime_dir.clone(), shutdown);
        let listeners: Arc<dyn Listeners> = server.clone();
        let services = Arc::new(Services {
            access: Access::new(config.policy.clone(), audit),
            lifecycle: Lifecycle::new(registry, listeners),
            hosts: opened.hosts,
            runtime,
            config,
            metrics: Default::default(),
        });
        server.attach(&services);
        apply_runtime_mode(&services)?;
        services.lifecycle.serve_all().await?;
        follow(&services, opened.feed);
        // The control socket opens last: once it answers, every other
        // listener (project sockets, the metrics listener) is open too.
        server.serve_metrics();
        server.serve_control()?;
        let leftover = server.sockets().leftover();
        if !leftover.is_empty() {
            warn!(sockets = ?leftover, "sockets passed by systemd match no project yet; kept for when they are created");
        }
        services.runtime.spawn_watchdog();
        services.runtime.notifier().ready();
        info!(
            control = %services.config.control_socket().display(),
            state = %services.config.state_dir.display(),
            projects = services.lifecycle.registry().all().len(),
            "fluxd ready"
        );
        Ok(Self {
            services,
            server,
            _lock: lock,
            created: Vec::new(),
        })
    }

    /// The control socket's path.
    pub fn control_socket(&self) -> std::path::PathBuf {
        self.services.config.control_socket()
    }

    /// A handle for reloads (SIGHUP) while the daemon runs.
    pub fn handle(&self) -> DaemonHandle {
        DaemonHandle {
            services: self.services.clone(),
            server: self.server.clone(),
        }
    }

    /// Waits for the shutdown token, then drains (see the module docs).
    pub async fn wait(self) {
        let services = &self.services;
        services
            .runtime
            .drain(services.config.limits.shutdown_grace)
            .await;
        self.server
            .sockets()
            .retire(&services.config.control_socket());
        if let Some(crate::config::MetricsListen::Unix(path)) = &services.config.metrics_listen {
            self.server.sockets().retire(path);
        }
        services.lifecycle.retire_all();
        services.lifecycle.registry().store().finish();
        services.access.audit().flush().await;
        remove_empty(&self.created);
        info!("stopped");
    }
}

/// `dir` and those of its parents that do not exist yet, deepest first:
/// the folders creating `dir` makes.
fn missing_folders(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    dir.ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && std::fs::symlink_metadata(d).is_err())
        .map(std::path::Path::to_path_buf)
        .collect()
}

/// Removes `folders` (deepest first) that are empty: what fluxd dev
/// created, never a folder that holds something another process put there.
fn remove_empty(folders: &[std::path::PathBuf]) {
    for dir in folders {
        if std::fs::remove_dir(dir).is_err() {
            return;
        }
    }
}

/// Asks a running daemon to do things from outside its sockets.
#[derive(Debug, Clone)]
pub struct DaemonHandle {
    services: Arc<Services>,
    server: Arc<Server>,
}

impl DaemonHandle {
    /// The project `name` as served now (`fluxd dev --watch` follows it).
    pub(crate) fn project(&self, name: &str) -> Option<Arc<crate::project::Project>> {
        self.services.lifecycle.registry().get(name)
    }

    /// Re-reads the access policy, then re-scans the store and re-reads
    /// every vault and key (what SIGHUP does): new projects get sockets,
    /// changed vaults are swapped in, broken ones are reported and the last
    /// good snapshot kept.
    pub async fn reload(&self) {
        info!("reloading");
        let services = &self.services;
        services.runtime.notifier().reloading();
        self.reload_policy();
        services.lifecycle.apply(Change::All, true).await;
        services.runtime.notifier().ready();
    }

    /// Re-reads the access policy from the config file and re-applies it to
    /// the socket files; a bad file is logged and the current policy kept.
    fn reload_policy(&self) {
        let services = &self.services;
        let policy = match services.config.reload_policy() {
            Ok(p) => p,
            Err(e) => {
                error!(error = %e, "config not reloaded; the current policy stays in force");
                return;
            }
        };
        services.access.replace_policy(policy);
        let policy = services.access.policy();
        if let Err(e) = apply_runtime_mode(services) {
            error!(error = %e, "cannot apply the runtime folder's mode");
        }
        let sockets = self.server.sockets();
        if let Err(e) =
            sockets.apply_policy(&services.config.control_socket(), policy.control_group())
        {
            error!(error = %e, "cannot apply the policy to the control socket");
        }
        for project in services.lifecycle.registry().all() {
            if let Err(e) =
                sockets.apply_policy(project.socket(), policy.socket_group(project.name()))
            {
                error!(project = %project.name(), error = %e, "cannot apply the policy to the socket");
            }
        }
        info!("access policy reloaded");
    }
}

/// Starts the daemon and serves until `shutdown` fires.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    Daemon::start(config, shutdown).await?.wait().await;
    Ok(())
}

/// The runtime folder and its `projects/` folder, created or checked
/// ([`own_dir`]).
fn prepare_runtime_dir(config: &Config) -> Result<()> {
    own_dir(&config.runtime_dir, "the runtime folder")?;
    own_dir(
        &config.runtime_dir.join(paths::PROJECTS_DIR),
        "the project sockets' folder",
    )
}

/// The local store: keys wrapped with the host key when one is given,
/// leftovers of an interrupted write removed, every key file checked.
/// The audit log's chain key: the `fluxd-audit-key` systemd credential
/// when fluxd has one, else `<state>/audit.key` (32 random bytes as hex,
/// mode 0600), created at the first start.
fn audit_key(state_dir: &std::path::Path) -> Result<flux_vault::chain::AuditKey> {
    let from = |path: &std::path::Path| -> Result<Option<flux_vault::chain::AuditKey>> {
        match flux_vault::files::read_regular(path, 4096)? {
            Some(bytes) => flux_vault::chain::AuditKey::from_file_bytes(&bytes)
                .map(Some)
                .map_err(|e| Error::Config(format!("{}: {e}", path.display()))),
            None => Ok(None),
        }
    };
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY")
        && let Some(key) = from(&std::path::Path::new(&dir).join("fluxd-audit-key"))?
    {
        return Ok(key);
    }
    let path = flux_vault::layout::StateDir::new(state_dir).audit_key();
    if let Some(key) = from(&path)? {
        check_private(&path, "audit key", 0o600)?;
        return Ok(key);
    }
    let hex = flux_vault::chain::AuditKey::generate_hex();
    match flux_vault::files::write_new(&path, hex.as_bytes(), 0o600) {
        Ok(()) => {}
        Err(e) if e.already_exists() => {}
        Err(e) => return Err(e.into()),
    }
    from(&path)?.ok_or_else(|| Error::Internal("the audit key vanished".into()))
}

fn open_local(config: &Config) -> Result<Opened> {
    let local = LocalStore::open(&config.state_dir)?.with_host_key(config.host_key.clone())?;
    if local.wraps_keys() {
        info!("project keys are wrapped with the host key credential");
        for name in local.wrap_plain_keys()? {
            info!(project = %name, "key file re-written wrapped with the host key");
        }
    }
    for dir in [local.keys_dir(), local.vaults_dir()] {
        check_private(dir, "the folder", 0o700)?;
    }
    local.finish_rekeys()?;
    let stale = local.remove_stale_temp_files()?;
    if stale > 0 {
        info!(
            files = stale,
            "removed temp files left by an interrupted write"
        );
    }
    for name in local.projects()? {
        local.check_key_private(&name)?;
    }
    let feed = local.changes()?;
    Ok(Opened {
        store: Arc::new(local),
        feed,
        hosts: Arc::new(NoFleet),
    })
}

/// Applies the store's changes as they come, until shutdown.
fn follow(services: &Arc<Services>, mut feed: ChangeFeed) {
    let (services2, shutdown) = (services.clone(), services.runtime.shutdown().clone());
    services.runtime.tracker().spawn(async move {
        loop {
            let change = tokio::select! {
                _ = shutdown.cancelled() => return,
                change = feed.next() => match change {
                    Some(c) => c,
                    None => return,
                },
            };
            services2.lifecycle.apply(change, false).await;
        }
    });
}

/// The runtime folder's mode follows the policy (see the module docs).
fn apply_runtime_mode(services: &Services) -> Result<()> {
    let mode = if services.access.policy().opens_sockets() {
        0o711
    } else {
        0o700
    };
    let dir = &services.config.runtime_dir;
    for d in [dir.clone(), dir.join(paths::PROJECTS_DIR)] {
        chmod_own_dir(&d, mode)?;
    }
    Ok(())
}
