//! The daemon's lifecycle and its registry of projects.
//!
//! [`Daemon::start`] prepares the folders (mode 0700), takes an exclusive
//! lock on the state folder (two daemons must never write one vault), loads
//! every project that has a key, opens each project's socket, and opens the
//! control socket last — so a connectable control socket means every
//! project socket is already listening. [`Daemon::wait`] returns after the
//! shutdown token fires and the daemon has drained: accept loops stopped,
//! in-flight requests answered (within the grace period), socket files
//! removed.
//!
//! Project creation and deletion are serialized by one async mutex; the
//! registry itself is a read-mostly `RwLock` that no request holds across
//! an await.
//!
//! Like ssh with its keys, fluxd refuses to start (exit 78) when the state
//! folder or a key file is open to group or others. Socket files carry the
//! access policy: a project socket is mode 0660 and group-owned by the
//! project's `socket_group` when the config names one, else 0600; likewise
//! the control socket with `control_group`. When any socket is opened to a
//! group, the runtime folder is 0711 (others may reach a socket whose path
//! they know, but not list the projects); otherwise it is 0700.

use crate::audit::{self, Audit};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::fsutil::{check_private, chmod_own_dir, own_dir};
use crate::policy::Policy;
use crate::project::Project;
use crate::server::spawn_accept_loop;
use crate::session::Target;
use crate::sockets::Sockets;
use crate::store::{LocalStore, Store};
use crate::systemd::{Inherited, Notifier};
use crate::vault::now_ms;
use arc_swap::ArcSwap;
use flux_protocol::limits::validate_project_name;
use flux_protocol::message::{AuditEntry, AuditQuery, Health};
use flux_protocol::message::{DaemonStatus, ProjectInfo};
use flux_protocol::paths;
use nix::fcntl::{Flock, FlockArg};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::{Arc, RwLock};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

/// State shared by the listeners and sessions.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) projects: RwLock<BTreeMap<String, Arc<Project>>>,
    admin: tokio::sync::Mutex<()>,
    /// Connection budgets: the project sockets', and the control socket's.
    pub(crate) connections: Arc<Semaphore>,
    pub(crate) control_connections: Arc<Semaphore>,
    /// Raised on every policy reload: open connections check again.
    pub(crate) policy_epoch: tokio::sync::watch::Sender<u64>,
    pub(crate) policy: ArcSwap<Policy>,
    pub(crate) audit: Audit,
    pub(crate) tracker: TaskTracker,
    pub(crate) shutdown: CancellationToken,
    started_at_ms: u64,
    notifier: Notifier,
    sockets: Sockets,
    /// Projects with a key that are not served, and why (for status).
    unserved: Mutex<BTreeMap<String, String>>,
    _lock: Option<Flock<File>>,
}

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
    shared: Arc<Shared>,
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
        own_dir(&config.runtime_dir, "the runtime folder")?;
        own_dir(
            &config.runtime_dir.join(paths::PROJECTS_DIR),
            "the project sockets' folder",
        )?;
        let lock = lock_state_dir(&config)?;
        let audit = Audit::open(&config.audit)?;
        if let crate::fleet::StoreChoice::Etcd { endpoints } = &config.store {
            let endpoints = endpoints.clone();
            return crate::fleet::hosts::start(config, shutdown, startup, endpoints, lock, audit)
                .await;
        }
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
        let watch = [local.vaults_dir().to_owned(), local.keys_dir().to_owned()];
        let store: Arc<dyn Store> = Arc::new(local);
        Self::serve(config, shutdown, startup, store, &watch, Some(lock), audit).await
    }

    /// `fluxd dev`: serves the one project of `store` (a `.env` file) with
    /// no state folder, no audit log and the default policy, watching the
    /// file's folder for edits.
    pub async fn start_dev(
        config: Config,
        shutdown: CancellationToken,
        store: crate::dev::DevStore,
    ) -> Result<Self> {
        own_dir(&config.runtime_dir, "the runtime folder")?;
        own_dir(
            &config.runtime_dir.join(paths::PROJECTS_DIR),
            "the project sockets' folder",
        )?;
        let folder = store
            .env_file()
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let store: Arc<dyn Store> = Arc::new(store);
        let startup = Startup::default();
        Self::serve(
            config,
            shutdown,
            startup,
            store,
            &[folder],
            None,
            Audit::disabled(),
        )
        .await
    }

    /// Serves `store`'s projects with no folder to watch (fleet mode: the
    /// etcd watch follows changes).
    pub(crate) async fn serve_store(
        config: Config,
        shutdown: CancellationToken,
        startup: Startup,
        store: Arc<dyn Store>,
        lock: Option<Flock<File>>,
        audit: Audit,
    ) -> Result<Self> {
        Self::serve(config, shutdown, startup, store, &[], lock, audit).await
    }

    /// The state shared with listeners and watchers.
    pub(crate) fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Serves `store`'s projects: the part of start-up both modes share.
    async fn serve(
        config: Config,
        shutdown: CancellationToken,
        startup: Startup,
        store: Arc<dyn Store>,
        watch: &[PathBuf],
        lock: Option<Flock<File>>,
        audit: Audit,
    ) -> Result<Self> {
        let shared = Arc::new(Shared {
            connections: Arc::new(Semaphore::new(config.limits.max_connections)),
            control_connections: Arc::new(Semaphore::new(config.limits.max_control_connections)),
            policy_epoch: tokio::sync::watch::Sender::new(0),
            policy: ArcSwap::from_pointee(config.policy.clone()),
            audit,
            config,
            store,
            projects: RwLock::new(BTreeMap::new()),
            admin: tokio::sync::Mutex::new(()),
            tracker: TaskTracker::new(),
            shutdown,
            started_at_ms: now_ms(),
            notifier: startup.notifier,
            sockets: Sockets::new(startup.inherited),
            unserved: Mutex::new(BTreeMap::new()),
            _lock: lock,
        });
        for warning in shared.policy.load().warnings() {
            warn!("{warning}");
        }
        for name in shared.store.projects()? {
            shared.load_project(&name);
        }
        crate::watch::spawn(shared.clone(), watch)?;
        shared.apply_runtime_mode()?;
        let control_group = shared.policy.load().control_group();
        let control = shared
            .sockets
            .listen(&shared.control_socket(), "control", control_group)?;
        spawn_accept_loop(
            shared.clone(),
            control,
            Target::Control,
            shared.shutdown.clone(),
        );
        let leftover = shared.sockets.leftover();
        if !leftover.is_empty() {
            warn!(sockets = ?leftover, "sockets passed by systemd match no project yet; kept for when they are created");
        }
        shared.spawn_watchdog();
        shared.notifier.ready();
        info!(
            control = %shared.control_socket().display(),
            state = %shared.config.state_dir.display(),
            projects = shared.projects.read().unwrap_or_else(|e| e.into_inner()).len(),
            "fluxd ready"
        );
        Ok(Self { shared })
    }

    /// The control socket's path.
    pub fn control_socket(&self) -> PathBuf {
        self.shared.control_socket()
    }

    /// A handle for reloads (SIGHUP) while the daemon runs.
    pub fn handle(&self) -> DaemonHandle {
        DaemonHandle {
            shared: self.shared.clone(),
        }
    }

    /// Waits for the shutdown token, then drains (see the module docs).
    pub async fn wait(self) {
        let shared = self.shared;
        shared.shutdown.cancelled().await;
        info!("shutting down");
        shared.notifier.stopping();
        shared.tracker.close();
        let grace = shared.config.limits.shutdown_grace;
        if tokio::time::timeout(grace, shared.tracker.wait())
            .await
            .is_err()
        {
            warn!("requests still running after {grace:?}; exiting without them");
        }
        shared.sockets.retire(&shared.control_socket());
        for project in shared
            .projects
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            shared.sockets.retire(project.socket());
        }
        shared.audit.flush().await;
        info!("stopped");
    }
}

/// Asks a running daemon to do things from outside its sockets.
#[derive(Debug, Clone)]
pub struct DaemonHandle {
    shared: Arc<Shared>,
}

impl DaemonHandle {
    /// Re-scans the state folder and re-reads every vault and key (what
    /// SIGHUP does): new projects get sockets, changed vaults are swapped
    /// in, broken ones are reported and the last good snapshot kept.
    pub async fn reload(&self) {
        info!("reloading");
        self.shared.notifier.reloading();
        self.shared.reload_policy();
        let scope = crate::watch::Scope {
            all: true,
            ..Default::default()
        };
        self.shared.rescan(scope, true).await;
        self.shared.notifier.ready();
    }
}

/// Starts the daemon and serves until `shutdown` fires.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    Daemon::start(config, shutdown).await?.wait().await;
    Ok(())
}

fn lock_state_dir(config: &Config) -> Result<Flock<File>> {
    let path = config.state_dir.join("fluxd.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| Error::io("open lock file", &path, e))?;
    let mut lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        Error::Config(format!(
            "another fluxd is using the state folder {} ({}: {errno}); stop it, or pass another --state-dir",
            config.state_dir.display(),
            path.display()
        ))
    })?;
    let _ = lock.set_len(0);
    let _ = writeln!(&mut *lock, "{}", std::process::id());
    Ok(lock)
}

impl Shared {
    pub(crate) fn control_socket(&self) -> PathBuf {
        paths::control_socket(&self.config.runtime_dir)
    }

    fn project_socket(&self, name: &str) -> PathBuf {
        paths::project_socket(&self.config.runtime_dir, name)
    }

    /// Loads a project from the state folder and serves it. A key that
    /// cannot be used is logged and the project skipped, so one broken
    /// project never keeps the others from being served.
    fn load_project(self: &Arc<Self>, name: &str) {
        let served = self
            .store
            .check_key_private(name)
            .and_then(|()| {
                Project::load(
                    name,
                    self.project_socket(name),
                    self.store.clone(),
                    self.shutdown.child_token(),
                )
            })
            .and_then(|project| {
                if let Some(e) = project.info().last_error {
                    warn!(project = %name, error = %e, "project loaded with an error");
                }
                self.serve_project(Arc::new(project))
            });
        let mut unserved = self.unserved.lock().unwrap_or_else(|e| e.into_inner());
        match served {
            Ok(()) => {
                unserved.remove(name);
            }
            Err(e) => {
                error!(project = %name, error = %e, "project not served; the others are");
                unserved.insert(name.to_owned(), e.to_string());
            }
        }
    }

    /// Reacts to changed files: projects that appeared (key and vault both
    /// present) get a socket; served projects in `scope` re-read their files.
    pub(crate) async fn rescan(self: &Arc<Self>, scope: crate::watch::Scope, force: bool) {
        let _admin = self.admin.lock().await;
        match self.store.projects() {
            Ok(names) => {
                let appeared = names.iter().filter(|n| {
                    (scope.all || scope.projects.contains(*n)) && self.store.vault_exists(n)
                });
                for name in appeared {
                    if self.project(name).is_none() {
                        info!(project = %name, "project appeared in the state folder");
                        self.load_project(name);
                    }
                }
            }
            Err(e) => error!(error = %e, "cannot scan the state folder"),
        }
        let projects: Vec<Arc<Project>> = {
            let map = self.projects.read().unwrap_or_else(|e| e.into_inner());
            map.values()
                .filter(|p| scope.all || scope.projects.contains(p.name()))
                .cloned()
                .collect()
        };
        for project in projects {
            project.reload(force).await;
        }
    }

    /// Binds a project's socket and adds it to the registry.
    fn serve_project(self: &Arc<Self>, project: Arc<Project>) -> Result<()> {
        let group = self.policy.load().socket_group(project.name());
        let listener = self.sockets.listen(
            project.socket(),
            &format!("project.{}", project.name()),
            group,
        )?;
        self.projects
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(project.name().to_owned(), project.clone());
        let cancel = project.cancel_token().clone();
        let slots = Arc::new(Semaphore::new(
            self.config.limits.max_connections_per_project,
        ));
        spawn_accept_loop(
            self.clone(),
            listener,
            Target::Project { project, slots },
            cancel,
        );
        Ok(())
    }

    fn project(&self, name: &str) -> Option<Arc<Project>> {
        self.projects
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Creates a project: key, empty vault, socket.
    pub(crate) async fn create_project(self: &Arc<Self>, name: &str) -> Result<ProjectInfo> {
        validate_project_name(name).map_err(|e| Error::InvalidName(e.to_string()))?;
        let _admin = self.admin.lock().await;
        if self.project(name).is_some() {
            return Err(Error::AlreadyExists(name.to_owned()));
        }
        let (store, socket, cancel) = (
            self.store.clone(),
            self.project_socket(name),
            self.shutdown.child_token(),
        );
        let owned = name.to_owned();
        let project =
            tokio::task::spawn_blocking(move || Project::create(&owned, socket, store, cancel))
                .await
                .map_err(|e| Error::Internal(format!("project create task failed: {e}")))??;
        let project = Arc::new(project);
        if let Err(e) = self.serve_project(project.clone()) {
            // Roll back: no socket means no project.
            let _ = project.destroy().await;
            return Err(e);
        }
        info!(project = %name, "project created");
        Ok(project.info())
    }

    /// Stops serving a project deleted elsewhere (fleet mode), or whose key
    /// this host no longer holds; the store is not touched.
    pub(crate) async fn forget_project(&self, name: &str) {
        let _admin = self.admin.lock().await;
        let project = self
            .projects
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        if let Some(project) = project {
            project.forget().await;
            self.sockets.retire(project.socket());
            info!(project = %name, "project no longer served by this host");
        }
    }

    /// Deletes a project: key first, then vault, then socket.
    pub(crate) async fn delete_project(&self, name: &str) -> Result<()> {
        validate_project_name(name).map_err(|e| Error::InvalidName(e.to_string()))?;
        let _admin = self.admin.lock().await;
        let project = self
            .project(name)
            .ok_or_else(|| Error::UnknownProject(name.to_owned()))?;
        project.destroy().await?;
        self.projects
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        self.sockets.retire(project.socket());
        info!(project = %name, "project deleted");
        Ok(())
    }

    /// Pings systemd's watchdog at half its timeout, until shutdown.
    fn spawn_watchdog(&self) {
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

    /// The runtime folder's mode follows the policy (see the module docs).
    fn apply_runtime_mode(&self) -> Result<()> {
        let mode = if self.policy.load().opens_sockets() {
            0o711
        } else {
            0o700
        };
        for dir in [
            self.config.runtime_dir.clone(),
            self.config.runtime_dir.join(paths::PROJECTS_DIR),
        ] {
            chmod_own_dir(&dir, mode)?;
        }
        Ok(())
    }

    /// Re-reads the access policy from the config file and re-applies it to
    /// the socket files; a bad file is logged and the current policy kept.
    fn reload_policy(&self) {
        let policy = match self.config.reload_policy() {
            Ok(p) => p,
            Err(e) => {
                error!(error = %e, "config not reloaded; the current policy stays in force");
                return;
            }
        };
        for warning in policy.warnings() {
            warn!("{warning}");
        }
        self.policy.store(Arc::new(policy));
        self.policy_epoch.send_modify(|epoch| *epoch += 1);
        let policy = self.policy.load();
        if let Err(e) = self.apply_runtime_mode() {
            error!(error = %e, "cannot apply the runtime folder's mode");
        }
        if let Err(e) = self
            .sockets
            .apply_policy(&self.control_socket(), policy.control_group())
        {
            error!(error = %e, "cannot apply the policy to the control socket");
        }
        for project in self
            .projects
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            if let Err(e) = self
                .sockets
                .apply_policy(project.socket(), policy.socket_group(project.name()))
            {
                error!(project = %project.name(), error = %e, "cannot apply the policy to the socket");
            }
        }
        info!("access policy reloaded");
    }

    /// Audit entries for `fluxctl audit`: the newest `limit` (0: the
    /// default) of `project`'s (all when none), at or after `since_ms`.
    pub(crate) async fn audit_entries(&self, query: AuditQuery) -> Result<Vec<AuditEntry>> {
        let Some(path) = self.audit.path().map(Path::to_path_buf) else {
            return Err(Error::BadRequest(
                "the audit log is disabled ([audit] enabled = false)".into(),
            ));
        };
        self.audit.flush().await;
        let limit = match query.limit {
            0 => audit::DEFAULT_LIMIT,
            n => n as usize,
        };
        let keep = self.audit.config().keep;
        tokio::task::spawn_blocking(move || {
            audit::read(&path, keep, query.project.as_deref(), query.since_ms, limit)
        })
        .await
        .map_err(|e| Error::Internal(format!("audit read task failed: {e}")))?
    }

    /// Status with the health of the audit log.
    pub(crate) fn health(&self) -> Health {
        let audit = self.audit.health();
        let mut problems = Vec::new();
        if let Some(e) = &audit.error {
            problems.push(format!(
                "{e}: writes are refused until it can be written; free space or fix the file system"
            ));
        }
        Health {
            status: self.status(),
            audit,
            problems,
        }
    }

    /// Every project with a key: those served, and those that could not
    /// be (with the reason as their last error), sorted by name.
    pub(crate) fn project_infos(&self) -> Vec<ProjectInfo> {
        let mut infos: BTreeMap<String, ProjectInfo> = self
            .projects
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|p| (p.name().to_owned(), p.info()))
            .collect();
        for (name, reason) in self
            .unserved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            infos.entry(name.clone()).or_insert_with(|| ProjectInfo {
                name: name.clone(),
                socket: self.project_socket(name).display().to_string(),
                secrets: 0,
                generation: 0,
                loaded_at_ms: 0,
                last_error: Some(format!("not served: {reason}")),
            });
        }
        infos.into_values().collect()
    }

    pub(crate) fn status(&self) -> DaemonStatus {
        DaemonStatus {
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            started_at_ms: self.started_at_ms,
            state_dir: self.config.state_dir.display().to_string(),
            runtime_dir: self.config.runtime_dir.display().to_string(),
            projects: self.project_infos(),
        }
    }
}
