//! The project lifecycle, pairing the [`Registry`] (projects in
//! the store) with the [`Listeners`] (their sockets).
//!
//! - creating a project makes its key and vault, then its listener — and
//!   deletes the project again when no listener can be made: no socket
//!   means no project;
//! - deleting one destroys key and vault (key first), then its listener;
//! - a [`Change`] from the store's feed re-reads the projects it names,
//!   serves those that appeared, and stops serving those this host may no
//!   longer serve.
//!
//! All of these are serialized ([`Registry::exclusive`]). The listeners are
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
    /// Stops serving `project` and removes its socket file.
    fn retire(&self, project: &Project);
}

/// The project lifecycle (see the module docs).
#[derive(Debug)]
pub struct Lifecycle {
    registry: Registry,
    listeners: Arc<dyn Listeners>,
}

impl Lifecycle {
    /// Lifecycle of `registry`'s projects, served by `listeners`.
    pub fn new(registry: Registry, listeners: Arc<dyn Listeners>) -> Self {
        Self {
            registry,
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
        let _exclusive = self.registry.exclusive().await;
        let names = self.registry.store().projects()?;
        self.load_all(&names, |name, loaded| self.serve_loaded(name, loaded));
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

    /// Stops serving every project's socket (at shutdown).
    pub fn retire_all(&self) {
        for project in self.registry.all() {
            self.listeners.retire(&project);
        }
    }
}
