//! The project lifecycle, pairing the [`Registry`] (projects in
//! the store) with the [`Listeners`] (their sockets).
//!
//! - creating a project makes its key and vault, then its listener — and
//!   deletes the project again when no listener can be made: no socket
//!   means no project;
//! - deleting one destroys key and vault (key first), then its listener;
//! - a [`Change`] from the store's feed re-reads the projects it names,
//!   serves those that appeared, and stops serving those this host may no
//!   longer serve;
//! - at start, each project is served as soon as it is loaded; a store
//!   holding much ([`crate::store::Store::serves_before_loading`]) has
//!   every socket bound first and the projects loaded in the background,
//!   a client's connection loading its project ahead of its turn
//!   ([`Pending`]).
//!
//! All of these are serialized ([`Registry::exclusive`]; the background
//! loading holds it until every project is loaded). The listeners are
//! a trait so this module does not depend on the server, which depends on
//! it (its handlers create and delete projects).

use crate::error::{Error, Result};
use crate::project::Project;
use crate::registry::Registry;
use crate::store::Change;
use flux_protocol::limits::validate_project_name;
use flux_protocol::message::ProjectInfo;
use std::sync::Arc;
use tracing::{error, info};

/// Whatever serves a project's socket.
pub trait Listeners: Send + Sync + std::fmt::Debug {
    /// Starts serving `project` on its socket.
    fn serve(&self, project: &Arc<Project>) -> Result<()>;
    /// Binds the socket of a project not loaded yet, and serves it once
    /// [`Pending::settled`]: a client's connection loads it at once
    /// ([`Pending::get`]); if it cannot be loaded, the socket is retired.
    fn serve_pending(&self, pending: Pending) -> Result<()>;
    /// Stops serving `project` and removes its socket file.
    fn retire(&self, project: &Project);
    /// Removes a socket file bound for a project that was never served.
    fn retire_socket(&self, socket: &std::path::Path);
}

/// A project whose socket is bound before it is loaded (a store holding
/// much: [`crate::store::Store::serves_before_loading`]): loaded once, by
/// the first of its first client and the loader in the background.
#[derive(Clone)]
pub struct Pending {
    name: String,
    socket: std::path::PathBuf,
    loaded: Arc<tokio::sync::OnceCell<Option<Arc<Project>>>>,
    settled: tokio::sync::watch::Sender<bool>,
    load: Arc<dyn Fn() -> Option<Arc<Project>> + Send + Sync>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Pending {
    /// The project's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its socket path.
    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    /// The project, loaded now unless it was already (`None`: it cannot be
    /// served; the registry says why).
    pub async fn get(&self) -> Option<Arc<Project>> {
        let load = self.load.clone();
        let project = self
            .loaded
            .get_or_init(|| async move {
                tokio::task::spawn_blocking(move || load())
                    .await
                    .ok()
                    .flatten()
            })
            .await
            .clone();
        self.settled.send_replace(true);
        project
    }

    /// Resolves once the project was loaded, or could not be.
    pub async fn settled(&self) {
        let mut rx = self.settled.subscribe();
        let _ = rx.wait_for(|done| *done).await;
    }
}

/// The project lifecycle (see the module docs).
#[derive(Debug)]
pub struct Lifecycle {
    registry: Arc<Registry>,
    listeners: Arc<dyn Listeners>,
}

impl Lifecycle {
    /// Lifecycle of `registry`'s projects, served by `listeners`.
    pub fn new(registry: Registry, listeners: Arc<dyn Listeners>) -> Self {
        Self {
            registry: Arc::new(registry),
            listeners,
        }
    }

    /// The projects.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Loads and serves every project of the store (at start). One that
    /// cannot be served is recorded and the others are. Loading — reading,
    /// decrypting and checking each vault — is spread over the CPUs, and
    /// each project is served as soon as it is loaded.
    pub async fn serve_all(&self) -> Result<()> {
        let exclusive = self.registry.exclusive_owned().await;
        let names = self.registry.store().projects()?;
        if self.registry.store().serves_before_loading() {
            return self.serve_before_loading(names, exclusive);
        }
        self.load_all(&names, |name, loaded| self.serve_loaded(name, loaded));
        Ok(())
    }

    /// Binds every project's socket first, then loads the projects in the
    /// background, one task per CPU, in name order — a client's connection
    /// loads its project at once, ahead of its turn — holding `exclusive`
    /// until all are loaded, so no change from the store's feed and no
    /// creation or deletion runs meanwhile. A project that cannot be loaded
    /// is recorded, and its socket retired.
    fn serve_before_loading(
        &self,
        names: Vec<String>,
        exclusive: tokio::sync::OwnedMutexGuard<()>,
    ) -> Result<()> {
        info!(
            projects = names.len(),
            "the store holds much: every project's socket is served first, and the projects load in the background"
        );
        let mut pending = Vec::with_capacity(names.len());
        for name in names {
            let (registry, owned) = (self.registry.clone(), name.clone());
            let load = move || match registry.load(&owned) {
                Ok(project) => {
                    registry.insert(project.clone());
                    Some(project)
                }
                Err(e) => {
                    error!(project = %owned, error = %e, "project not served; the others are");
                    registry.not_served(&owned, e.to_string());
                    None
                }
            };
            let p = Pending {
                socket: self.registry.socket_path(&name),
                name,
                loaded: Arc::default(),
                settled: tokio::sync::watch::Sender::new(false),
                load: Arc::new(load),
            };
            if let Err(e) = self.listeners.serve_pending(p.clone()) {
                error!(project = %p.name, error = %e, "project not served; the others are");
                self.registry.not_served(&p.name, e.to_string());
                continue;
            }
            pending.push(p);
        }
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let pending = Arc::new(pending);
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (pending, next) = (pending.clone(), next.clone());
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(p) = pending.get(i) else {
                            return;
                        };
                        p.get().await;
                    }
                })
            })
            .collect();
        tokio::spawn(async move {
            for w in workers {
                let _ = w.await;
            }
            info!(projects = pending.len(), "every project is loaded");
            drop(exclusive);
        });
        Ok(())
    }

    /// Loads `names` on one thread per CPU (at most one per project), and
    /// hands each to `serve` on this thread as soon as it is loaded: with
    /// many big vaults the first projects are served long before the last
    /// is decrypted.
    fn load_all(&self, names: &[String], mut serve: impl FnMut(&str, Result<Arc<Project>>)) {
        let threads = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(names.len());
        if threads <= 1 {
            for name in names {
                serve(name, self.registry.load(name));
            }
            return;
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            for _ in 0..threads {
                let (tx, next) = (tx.clone(), &next);
                scope.spawn(move || {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(name) = names.get(i) else {
                            return;
                        };
                        if tx.send((name, self.registry.load(name))).is_err() {
                            return;
                        }
                    }
                });
            }
            drop(tx);
            for (name, loaded) in rx {
                serve(name, loaded);
            }
        });
    }

    fn load_and_serve(&self, name: &str) {
        self.serve_loaded(name, self.registry.load(name));
    }

    fn serve_loaded(&self, name: &str, loaded: Result<Arc<Project>>) {
        let served = loaded.and_then(|project| {
            self.listeners.serve(&project)?;
            self.registry.insert(project);
            Ok(())
        });
        if let Err(e) = served {
            error!(project = %name, error = %e, "project not served; the others are");
            self.registry.not_served(name, e.to_string());
        }
    }

    /// Creates a project: key, empty vault, socket.
    pub async fn create_project(&self, name: &str) -> Result<ProjectInfo> {
        let _exclusive = self.registry.exclusive().await;
        let project = self.registry.create(name).await?;
        if let Err(e) = self.listeners.serve(&project) {
            // Roll back: no socket means no project.
            let _ = project.destroy().await;
            return Err(e);
        }
        self.registry.insert(project.clone());
        info!(project = %name, "project created");
        Ok(project.info())
    }

    /// Deletes a project: key first, then vault, then socket.
    pub async fn delete_project(&self, name: &str) -> Result<()> {
        validate_project_name(name)?;
        let _exclusive = self.registry.exclusive().await;
        let project = self
            .registry
            .get(name)
            .ok_or_else(|| Error::UnknownProject(name.to_owned()))?;
        project.destroy().await?;
        self.registry.remove(name);
        self.listeners.retire(&project);
        info!(project = %name, "project deleted");
        Ok(())
    }

    /// Gives a project a new key ([`Project::rekey`]).
    pub async fn rekey_project(&self, name: &str) -> Result<flux_protocol::message::Rekeyed> {
        validate_project_name(name)?;
        let project = {
            let _shared = self.registry.exclusive().await;
            self.registry
                .get(name)
                .ok_or_else(|| Error::UnknownProject(name.to_owned()))?
        };
        project.rekey().await
    }

    /// Applies a change from the store's feed (see the module docs);
    /// `force` re-reads files even when their fingerprints match (SIGHUP).
    pub async fn apply(&self, change: Change, force: bool) {
        let _exclusive = self.registry.exclusive().await;
        let wanted = |name: &str| match &change {
            Change::All => true,
            Change::Projects(names) => names.contains(name),
            Change::Gone(_) => false,
        };
        if let Change::Gone(names) = &change {
            for name in names {
                if let Some(project) = self.registry.remove(name) {
                    project.forget().await;
                    self.listeners.retire(&project);
                    info!(project = %name, "project no longer served by this host");
                }
            }
            return;
        }
        let store = self.registry.store();
        match store.projects() {
            Ok(names) => {
                for name in names.iter().filter(|n| wanted(n) && store.vault_exists(n)) {
                    if self.registry.get(name).is_none() {
                        info!(project = %name, "project appeared in the store");
                        self.load_and_serve(name);
                    }
                }
            }
            Err(e) => error!(error = %e, "cannot list the store's projects"),
        }
        for project in self.registry.all().into_iter().filter(|p| wanted(p.name())) {
            project.reload(force).await;
        }
    }

    /// Removes the socket file of a project bound before it loaded, which
    /// could not be loaded ([`Listeners::serve_pending`]).
    pub fn retire_socket(&self, socket: &std::path::Path) {
        self.listeners.retire_socket(socket);
    }

    /// Stops serving every project's socket (at shutdown).
    pub fn retire_all(&self) {
        for project in self.registry.all() {
            self.listeners.retire(&project);
        }
    }
}
