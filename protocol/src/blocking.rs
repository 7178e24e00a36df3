//! A blocking wrapper around [`crate::Client`] for programs without an async
//! runtime (`fluxctl`, scripts, tests). Each client owns a small
//! current-thread runtime, so there is one implementation of the protocol.
//! Do not use it from inside an async runtime; use [`crate::Client`] there.

use crate::client::ClientError;
use crate::message::*;
use crate::secret::SecretValue;
use std::path::Path;

/// A blocking connection to a fluxd socket.
#[derive(Debug)]
pub struct Client {
    rt: tokio::runtime::Runtime,
    inner: crate::Client,
}

impl Client {
    /// Connects to `path` and performs the handshake.
    pub fn connect(path: impl AsRef<Path>) -> Result<Self, ClientError> {
        Self::connect_with(path, &crate::trust::Trust::for_client())
    }

    /// See [`crate::Client::connect_with`].
    pub fn connect_with(
        path: impl AsRef<Path>,
        trust: &crate::trust::Trust,
    ) -> Result<Self, ClientError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| ClientError::Io {
                path: path.as_ref().to_path_buf(),
                source,
            })?;
        let inner = rt.block_on(crate::Client::connect_with(path, trust))?;
        Ok(Self { rt, inner })
    }

    /// The socket this client is connected to.
    pub fn path(&self) -> &Path {
        self.inner.path()
    }

    /// The daemon's handshake answer.
    pub fn welcome(&self) -> &Welcome {
        self.inner.welcome()
    }

    /// See [`crate::Client::call`].
    pub fn call(&mut self, req: &Request) -> Result<Response, ClientError> {
        self.rt.block_on(self.inner.call(req))
    }

    /// See [`crate::Client::get`].
    pub fn get(&mut self, name: &str) -> Result<SecretValue, ClientError> {
        self.rt.block_on(self.inner.get(name))
    }

    /// See [`crate::Client::get_all`].
    pub fn get_all(&mut self) -> Result<Vec<NamedValue>, ClientError> {
        self.rt.block_on(self.inner.get_all())
    }

    /// See [`crate::Client::list`].
    pub fn list(&mut self) -> Result<Vec<SecretInfo>, ClientError> {
        self.rt.block_on(self.inner.list())
    }

    /// See [`crate::Client::set`].
    pub fn set(&mut self, name: &str, value: SecretValue) -> Result<Stored, ClientError> {
        self.rt.block_on(self.inner.set(name, value))
    }

    /// See [`crate::Client::write`].
    pub fn write(&mut self, name: &str, value: SecretValue) -> Result<Written, ClientError> {
        self.rt.block_on(self.inner.write(name, value))
    }

    /// See [`crate::Client::write_many`].
    pub fn write_many(&mut self, entries: Vec<NamedValue>) -> Result<WrittenMany, ClientError> {
        self.rt.block_on(self.inner.write_many(entries))
    }

    /// See [`crate::Client::set_many`].
    pub fn set_many(&mut self, entries: Vec<NamedValue>) -> Result<StoredMany, ClientError> {
        self.rt.block_on(self.inner.set_many(entries))
    }

    /// See [`crate::Client::delete`].
    pub fn delete(&mut self, name: &str) -> Result<Deleted, ClientError> {
        self.rt.block_on(self.inner.delete(name))
    }

    /// See [`crate::Client::create_project`].
    pub fn create_project(&mut self, name: &str) -> Result<ProjectInfo, ClientError> {
        self.rt.block_on(self.inner.create_project(name))
    }

    /// See [`crate::Client::delete_project`].
    pub fn delete_project(&mut self, name: &str) -> Result<ProjectName, ClientError> {
        self.rt.block_on(self.inner.delete_project(name))
    }

    /// See [`crate::Client::list_projects`].
    pub fn list_projects(&mut self) -> Result<Vec<ProjectInfo>, ClientError> {
        self.rt.block_on(self.inner.list_projects())
    }

    /// See [`crate::Client::subscribe`].
    pub fn subscribe(&mut self) -> Result<u64, ClientError> {
        self.rt.block_on(self.inner.subscribe())
    }

    /// See [`crate::Client::next_event`], waiting at most `timeout`;
    /// `Ok(None)` when none arrived in time.
    pub fn next_event(
        &mut self,
        timeout: std::time::Duration,
    ) -> Result<Option<Event>, ClientError> {
        self.rt
            .block_on(async { tokio::time::timeout(timeout, self.inner.next_event()).await })
            .map_or(Ok(None), |r| r.map(Some))
    }

    /// See [`crate::Client::audit`].
    pub fn audit(&mut self, query: AuditQuery) -> Result<Vec<AuditRecord>, ClientError> {
        self.rt.block_on(self.inner.audit(query))
    }

    /// See [`crate::Client::audit_log`].
    pub fn audit_log(&mut self, query: AuditQuery) -> Result<Vec<AuditEntry>, ClientError> {
        self.rt.block_on(self.inner.audit_log(query))
    }

    /// See [`crate::Client::audit_trail`].
    pub fn audit_trail(
        &mut self,
        query: AuditTrailQuery,
    ) -> Result<Vec<AuditTrailEntry>, ClientError> {
        self.rt.block_on(self.inner.audit_trail(query))
    }

    /// See [`crate::Client::health`].
    pub fn health(&mut self) -> Result<Health, ClientError> {
        self.rt.block_on(self.inner.health())
    }

    /// See [`crate::Client::restore_vault`].
    pub fn restore_vault(&mut self) -> Result<Restored, ClientError> {
        self.rt.block_on(self.inner.restore_vault())
    }

    /// See [`crate::Client::history`].
    pub fn history(&mut self, name: &str) -> Result<SecretHistory, ClientError> {
        self.rt.block_on(self.inner.history(name))
    }

    /// See [`crate::Client::rollback`].
    pub fn rollback(&mut self, name: &str, to: Option<u64>) -> Result<RolledBack, ClientError> {
        self.rt.block_on(self.inner.rollback(name, to))
    }

    /// See [`crate::Client::diff`].
    pub fn diff(&mut self, entries: Vec<NamedValue>) -> Result<Vec<Difference>, ClientError> {
        self.rt.block_on(self.inner.diff(entries))
    }

    /// See [`crate::Client::list_digests`].
    pub fn list_digests(&mut self) -> Result<Vec<SecretDigest>, ClientError> {
        self.rt.block_on(self.inner.list_digests())
    }

    /// See [`crate::Client::metrics`].
    pub fn metrics(&mut self) -> Result<String, ClientError> {
        self.rt.block_on(self.inner.metrics())
    }

    /// See [`crate::Client::status`].
    pub fn status(&mut self) -> Result<DaemonStatus, ClientError> {
        self.rt.block_on(self.inner.status())
    }
}

/// The blocking `ctx.secrets`: see [`crate::Secrets`].
///
/// ```no_run
/// let secrets = flux_protocol::blocking::Secrets::from_env()?;
/// let api_key = secrets.get("OPENAI_API_KEY")?;
/// let region = secrets.get_or("AWS_REGION", "us-east-1")?;
/// # let _ = (api_key, region);
/// # Ok::<(), flux_protocol::ClientError>(())
/// ```
#[derive(Debug)]
pub struct Secrets {
    rt: tokio::runtime::Runtime,
    inner: crate::Secrets,
}

impl Secrets {
    /// Secrets served on the socket at `path`.
    pub fn new(path: impl Into<std::path::PathBuf>) -> Result<Self, ClientError> {
        Self::wrap(crate::Secrets::new(path))
    }

    /// Secrets served on the socket named by `FLUX_SECRETS_SOCKET`.
    pub fn from_env() -> Result<Self, ClientError> {
        Self::wrap(crate::Secrets::from_env()?)
    }

    fn wrap(inner: crate::Secrets) -> Result<Self, ClientError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| ClientError::Io {
                path: inner.socket().to_path_buf(),
                source,
            })?;
        Ok(Self { rt, inner })
    }

    /// See [`crate::Secrets::get`].
    pub fn get(&self, key: &str) -> Result<String, ClientError> {
        self.rt.block_on(self.inner.get(key))
    }

    /// See [`crate::Secrets::get_or`].
    pub fn get_or(&self, key: &str, fallback: &str) -> Result<String, ClientError> {
        self.rt.block_on(self.inner.get_or(key, fallback))
    }
}
