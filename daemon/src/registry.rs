//! The registry: the projects this daemon serves, and those it cannot.
//!
//! It loads, creates and deletes projects in the store and hands out
//! [`Project`]s (with their snapshots). It knows nothing of sockets:
//! [`crate::lifecycle::Lifecycle`] pairs each project with its listener.
//!
//! The map is a read-mostly `RwLock` that no request holds across an
//! await; creations, deletions and re-reads are serialized by one async
//! mutex ([`Registry::exclusive`]). A project that could not be served —
//! a key that cannot be used, a vault that cannot be read, a socket path
//! taken — is kept with the reason, so `fluxctl status` shows it while the
//! others are served.

use crate::error::{Error, Result};
use crate::project::Project;
use crate::store::Store;
use flux_protocol::limits::validate_project_name;
use flux_protocol::message::ProjectInfo;
use flux_protocol::paths;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// The projects of one store.
#[derive(Debug)]
pub struct Registry {
    store: Arc<dyn Store>,
    runtime_dir: PathBuf,
    shutdown: CancellationToken,
    projects: RwLock<BTreeMap<String, Arc<Project>>>,
    /// Projects with a key that are not served, and why.
    unserved: Mutex<BTreeMap<String, String>>,
    exclusive: Arc<tokio::sync::Mutex<()>>,
}

impl Registry {
    /// The registry of `store`'s projects, whose sockets are under
    /// `runtime_dir`; projects stop with `shutdown`.
    pub fn new(store: Arc<dyn Store>, runtime_dir: PathBuf, shutdown: CancellationToken) -> Self {
        Self {
            store,
            runtime_dir,
            shutdown,
            projects: RwLock::new(BTreeMap::new()),
            unserved: Mutex::new(BTreeMap::new()),
            exclusive: Arc::default(),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Held while projects are created, deleted or re-read.
    pub async fn exclusive(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.exclusive.lock().await
    }

    /// [`Self::exclusive`], held by a task of its own (the projects
    /// loaded in the background at start).
    pub async fn exclusive_owned(&self) -> tokio::sync::OwnedMutexGuard<()> {
        self.exclusive.clone().lock_owned().await
    }

    fn map(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Project>>> {
        self.projects.read().unwrap_or_else(|e| e.into_inner())
    }

    fn unserved(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.unserved.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `<runtime>/projects/<name>.sock`.
    pub fn socket_path(&self, name: &str) -> PathBuf {
        paths::project_socket(&self.runtime_dir, name)
    }

    /// A served project.
    pub fn get(&self, name: &str) -> Option<Arc<Project>> {
        self.map().get(name).cloned()
    }

    /// Every served project, by name.
    pub fn all(&self) -> Vec<Arc<Project>> {
        self.map().values().cloned().collect()
    }

    /// Loads a project from the store (not yet served). Fails when its key
    /// cannot be used; a broken vault makes it unreadable instead.
    pub fn load(&self, name: &str) -> Result<Arc<Project>> {
        self.store.check_key_private(name)?;
        let project = Project::load(
            name,
            self.socket_path(name),
            self.store.clone(),
            self.shutdown.child_token(),
        )?;
        if let Some(e) = project.info().last_error {
            warn!(project = %name, error = %e, "project loaded with an error");
        }
        Ok(Arc::new(project))
    }

    /// Creates a project in the store: a new key and an empty vault.
    pub async fn create(&self, name: &str) -> Result<Arc<Project>> {
        validate_project_name(name)?;
        if self.get(name).is_some() {
            return Err(Error::AlreadyExists(name.to_owned()));
        }
        let (store, socket, cancel) = (
            self.store.clone(),
            self.socket_path(name),
            self.shutdown.child_token(),
        );
        let owned = name.to_owned();
        let project =
            tokio::task::spawn_blocking(move || Project::create(&owned, socket, store, cancel))
                .await
                .map_err(|e| Error::Internal(format!("project create task failed: {e}")))??;
        Ok(Arc::new(project))
    }

    /// Adds a project that now has a listener.
    pub fn insert(&self, project: Arc<Project>) {
        self.unserved().remove(project.name());
        self.projects
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(project.name().to_owned(), project);
    }

    /// Removes a project from the served ones.
    pub fn remove(&self, name: &str) -> Option<Arc<Project>> {
        self.projects
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
    }

    /// Records that a project with a key is not served, and why.
    pub fn not_served(&self, name: &str, reason: String) {
        self.unserved().insert(name.to_owned(), reason);
    }

    /// Every project with a key: those served, and those that could not be
    /// (with the reason as their last error), sorted by name.
    pub fn infos(&self) -> Vec<ProjectInfo> {
        let mut infos: BTreeMap<String, ProjectInfo> = self
            .map()
            .values()
            .map(|p| (p.name().to_owned(), p.info()))
            .collect();
        for (name, reason) in self.unserved().iter() {
            infos.entry(name.clone()).or_insert_with(|| ProjectInfo {
                name: name.clone(),
                socket: self.socket_path(name).display().to_string(),
                secrets: 0,
                generation: 0,
                loaded_at_ms: 0,
                last_error: Some(format!("not served: {reason}")),
            });
        }
        infos.into_values().collect()
    }
}
