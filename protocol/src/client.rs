//! The async client: one connection to one socket, a handshake on connect,
//! then one request and one response at a time.
//!
//! Typed helpers (`get`, `set`, …) turn a [`Response::Error`] into
//! [`ClientError::Remote`] carrying the daemon's [`ErrorCode`], and an
//! answer of the wrong kind into [`ClientError::Unexpected`].

use crate::codec::{self, CodecError};
use crate::error::ErrorCode;
use crate::limits::MAX_RESPONSE_FRAME_LEN;
use crate::message::*;
use crate::secret::SecretValue;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use tokio::net::UnixStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// What can go wrong talking to `fluxd`. No variant ever holds a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The socket could not be reached: fluxd is not running, or the path is
    /// wrong.
    #[error(
        "cannot connect to {} ({}): is fluxd running? start it with `fluxd`, or check `systemctl status fluxd`",
        path.display(),
        io_reason(source)
    )]
    Connect { path: PathBuf, source: io::Error },
    /// Reading or writing the connection failed.
    #[error("connection to {} failed: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    /// fluxd closed the connection before answering.
    #[error("fluxd closed the connection on {} before answering", path.display())]
    Closed { path: PathBuf },
    /// A message could not be encoded or decoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// fluxd answered with an error.
    #[error("{message}")]
    Remote { code: ErrorCode, message: String },
    /// No socket was given and `FLUX_SECRETS_SOCKET` is not set.
    #[error(
        "FLUX_SECRETS_SOCKET is not set: run the function under fluxd (or `fluxd dev`), which prints the socket to export"
    )]
    NotConfigured,
    /// The socket, or a folder above it, could have been planted by another
    /// user: nothing was sent (see [`crate::trust`]).
    #[error(transparent)]
    Untrusted(#[from] crate::trust::Untrusted),
    /// fluxd answered with a message that does not fit the request.
    #[error("unexpected answer to {op}: a {got} message")]
    Unexpected { op: &'static str, got: &'static str },
}

impl ClientError {
    /// True when the daemon answered that the secret is not set.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(ErrorCode::NotFound)
    }

    /// The daemon's error code, when the daemon answered with an error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Remote { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// True when the socket could not be reached or the connection broke,
    /// as opposed to the daemon refusing the request.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            Self::Connect { .. } | Self::Io { .. } | Self::Closed { .. }
        )
    }
}

/// An I/O error's description without the "(os error N)" suffix.
pub fn io_reason(e: &io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_owned(),
        _ => text,
    }
}

/// The variant's name, for [`ClientError::Unexpected`].
fn kind(resp: &Response) -> &'static str {
    match resp {
        Response::Welcome(_) => "welcome",
        Response::Error(_) => "error",
        Response::Value(_) => "value",
        Response::Secrets(_) => "secrets",
        Response::Stored(_) => "stored",
        Response::Deleted(_) => "deleted",
        Response::Values(_) => "values",
        Response::ProjectCreated(_) => "project created",
        Response::ProjectDeleted(_) => "project deleted",
        Response::Projects(_) => "projects",
        Response::Status(_) => "status",
        Response::Subscribed(_) => "subscribed",
        Response::Event(_) => "event",
        Response::AuditRecords(_) => "audit records",
        Response::StoredMany(_) => "stored many",
        Response::Hosts(_) => "hosts",
        Response::HostUpdated(_) => "host updated",
        Response::AuditLog(_) => "audit log",
        Response::Health(_) => "health",
        Response::Restored(_) => "restored",
        Response::Fleet(_) => "fleet",
        Response::History(_) => "history",
        Response::RolledBack(_) => "rolled back",
        Response::Diff(_) => "diff",
        Response::SecretDigests(_) => "secret digests",
        Response::Metrics(_) => "metrics",
        Response::HostsHead(_) => "hosts head",
        Response::HostsChanged(_) => "hosts changed",
        Response::Rekeyed(_) => "rekeyed",
        Response::HostKey(_) => "host key",
        Response::Written(_) => "written",
        Response::WrittenMany(_) => "written many",
        Response::AuditTrail(_) => "audit trail",
    }
}

/// A connection to a fluxd socket.
#[derive(Debug)]
pub struct Client {
    framed: Framed<UnixStream, LengthDelimitedCodec>,
    path: PathBuf,
    welcome: Welcome,
    /// Events that arrived while an answer was awaited.
    events: VecDeque<Event>,
}

/// Turns an answer into `Ok(payload)` for the expected variant.
macro_rules! expect {
    ($resp:expr, $op:expr, $variant:path) => {
        match $resp {
            $variant(inner) => Ok(inner),
            other => Err(ClientError::Unexpected {
                op: $op,
                got: kind(&other),
            }),
        }
    };
}

/// Sends a request and turns its answer into `Ok(payload)` for the
/// expected variant; any other answer is [`ClientError::Unexpected`], named
/// by the request's [`Request::op`].
macro_rules! ask {
    ($client:expr, $req:expr, $variant:path) => {{
        let req: Request = $req;
        expect!($client.call(&req).await?, req.op(), $variant)
    }};
}

impl Client {
    /// Checks that the socket can be trusted ([`crate::trust`]), connects
    /// to it and performs the handshake. Nothing is sent to a socket that
    /// fails the check.
    pub async fn connect(path: impl AsRef<Path>) -> Result<Self, ClientError> {
        Self::connect_with(path, &crate::trust::Trust::for_client()).await
    }

    /// [`Client::connect`] with the uids to trust given by the caller
    /// rather than found from `FLUX_DAEMON_USER` (say, a daemon run as a
    /// user known to the program).
    pub async fn connect_with(
        path: impl AsRef<Path>,
        trust: &crate::trust::Trust,
    ) -> Result<Self, ClientError> {
        let path = path.as_ref().to_path_buf();
        let resolved = trust.check_socket(&path)?;
        let stream =
            UnixStream::connect(&resolved)
                .await
                .map_err(|source| ClientError::Connect {
                    path: path.clone(),
                    source,
                })?;
        let peer = stream.peer_cred().map_err(|source| ClientError::Io {
            path: path.clone(),
            source,
        })?;
        trust.check_peer(&path, peer.uid())?;
        let framed = Framed::new(stream, codec::framing(MAX_RESPONSE_FRAME_LEN));
        let mut client = Self {
            framed,
            path,
            events: VecDeque::new(),
            welcome: Welcome {
                version: 0,
                server: String::new(),
                scope: Scope::Control,
            },
        };
        let hello = Request::Hello(Hello {
            version: PROTOCOL_VERSION,
            client: format!("flux-protocol/{}", env!("CARGO_PKG_VERSION")),
        });
        client.welcome = ask!(client, hello, Response::Welcome)?;
        Ok(client)
    }

    /// The socket this client is connected to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The daemon's handshake answer.
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// Sends a request and returns the answer; an error answer becomes
    /// [`ClientError::Remote`]. Events pushed meanwhile are kept for
    /// [`Client::next_event`].
    pub async fn call(&mut self, req: &Request) -> Result<Response, ClientError> {
        if let Err(e) = self.send(req).await {
            // The daemon may have refused the connection (a limit) with an
            // error and closed it before reading: that error is the answer.
            if let Ok(Response::Error(err)) = self.recv().await {
                return Err(ClientError::Remote {
                    code: err.code,
                    message: err.message,
                });
            }
            return Err(e);
        }
        loop {
            match self.recv().await? {
                Response::Event(event) => self.events.push_back(event),
                Response::Error(e) => {
                    return Err(ClientError::Remote {
                        code: e.code,
                        message: e.message,
                    });
                }
                other => return Ok(other),
            }
        }
    }

    /// Subscribes this connection to the project's change events; returns
    /// the generation served at that moment.
    pub async fn subscribe(&mut self) -> Result<u64, ClientError> {
        let sub = ask!(self, Request::Subscribe, Response::Subscribed)?;
        Ok(sub.generation)
    }

    /// The next change event (after [`Client::subscribe`]), waiting for one
    /// if none is queued.
    pub async fn next_event(&mut self) -> Result<Event, ClientError> {
        if let Some(event) = self.events.pop_front() {
            return Ok(event);
        }
        expect!(
            self.recv().await?,
            RequestKind::Subscribe.op(),
            Response::Event
        )
    }

    /// Sends one request without waiting for the answer.
    pub async fn send(&mut self, req: &Request) -> Result<(), ClientError> {
        let payload = codec::encode(req)?;
        self.framed
            .send(Bytes::from(payload))
            .await
            .map_err(|source| self.io(source))
    }

    /// Receives the next message from the daemon.
    pub async fn recv(&mut self) -> Result<Response, ClientError> {
        match self.framed.next().await {
            Some(Ok(frame)) => Ok(codec::decode(&frame)?),
            Some(Err(source)) => Err(self.io(source)),
            None => Err(ClientError::Closed {
                path: self.path.clone(),
            }),
        }
    }

    fn io(&self, source: io::Error) -> ClientError {
        ClientError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// A secret's value.
    pub async fn get(&mut self, name: &str) -> Result<SecretValue, ClientError> {
        let req = Request::Get(Get { name: name.into() });
        ask!(self, req, Response::Value)
    }

    /// Every secret with its value, sorted by name.
    pub async fn get_all(&mut self) -> Result<Vec<NamedValue>, ClientError> {
        ask!(self, Request::GetAll, Response::Values)
    }

    /// Names and set times, sorted by name.
    pub async fn list(&mut self) -> Result<Vec<SecretInfo>, ClientError> {
        ask!(self, Request::List, Response::Secrets)
    }

    /// Creates or replaces a secret.
    pub async fn set(&mut self, name: &str, value: SecretValue) -> Result<Stored, ClientError> {
        let req = Request::Set(Set {
            name: name.into(),
            value,
        });
        ask!(self, req, Response::Stored)
    }

    /// Creates or replaces a secret, and says whether it was created,
    /// updated or already held this value (no new version).
    pub async fn write(&mut self, name: &str, value: SecretValue) -> Result<Written, ClientError> {
        let req = Request::Write(Set {
            name: name.into(),
            value,
        });
        ask!(self, req, Response::Written)
    }

    /// Sets several secrets in one vault write, all or none, and says which
    /// were created, updated or already held their value.
    pub async fn write_many(
        &mut self,
        entries: Vec<NamedValue>,
    ) -> Result<WrittenMany, ClientError> {
        ask!(self, Request::WriteMany(entries), Response::WrittenMany)
    }

    /// Sets several secrets in one vault write: all or none.
    pub async fn set_many(&mut self, entries: Vec<NamedValue>) -> Result<StoredMany, ClientError> {
        ask!(self, Request::SetMany(entries), Response::StoredMany)
    }

    /// Removes a secret.
    pub async fn delete(&mut self, name: &str) -> Result<Deleted, ClientError> {
        let req = Request::Delete(Delete { name: name.into() });
        ask!(self, req, Response::Deleted)
    }

    /// Creates a project (control socket).
    pub async fn create_project(&mut self, name: &str) -> Result<ProjectInfo, ClientError> {
        let req = Request::CreateProject(ProjectName { name: name.into() });
        ask!(self, req, Response::ProjectCreated)
    }

    /// Deletes a project with all its secrets (control socket).
    pub async fn delete_project(&mut self, name: &str) -> Result<ProjectName, ClientError> {
        let req = Request::DeleteProject(ProjectName { name: name.into() });
        ask!(self, req, Response::ProjectDeleted)
    }

    /// The projects served, sorted by name (control socket).
    pub async fn list_projects(&mut self) -> Result<Vec<ProjectInfo>, ClientError> {
        ask!(self, Request::ListProjects, Response::Projects)
    }

    /// Audit records (control socket).
    pub async fn audit(&mut self, query: AuditQuery) -> Result<Vec<AuditRecord>, ClientError> {
        ask!(self, Request::Audit(query), Response::AuditRecords)
    }

    /// Audit entries, read summaries included (control socket).
    pub async fn audit_log(&mut self, query: AuditQuery) -> Result<Vec<AuditEntry>, ClientError> {
        ask!(self, Request::AuditLog(query), Response::AuditLog)
    }

    /// Audit entries with each peer's workload, read summaries included
    /// (control socket). A fluxd that predates it answers
    /// [`ErrorCode::BadRequest`].
    pub async fn audit_trail(
        &mut self,
        query: AuditTrailQuery,
    ) -> Result<Vec<AuditTrailEntry>, ClientError> {
        ask!(self, Request::AuditTrail(query), Response::AuditTrail)
    }

    /// Daemon status with the health of the audit log and the store
    /// (control socket).
    pub async fn health(&mut self) -> Result<Health, ClientError> {
        ask!(self, Request::Health, Response::Health).map(|h| *h)
    }

    /// Serves the vault now in the store although it is older than the one
    /// served (project socket).
    pub async fn restore_vault(&mut self) -> Result<Restored, ClientError> {
        ask!(self, Request::RestoreVault, Response::Restored)
    }

    /// Every version kept of a secret, the current one first; never a
    /// value.
    pub async fn history(&mut self, name: &str) -> Result<SecretHistory, ClientError> {
        let req = Request::History(SecretName { name: name.into() });
        ask!(self, req, Response::History)
    }

    /// Makes earlier version `to` of a secret (the newest earlier one when
    /// `None`) current again, as a new version.
    pub async fn rollback(
        &mut self,
        name: &str,
        to: Option<u64>,
    ) -> Result<RolledBack, ClientError> {
        let req = Request::Rollback(Rollback {
            name: name.into(),
            to,
        });
        ask!(self, req, Response::RolledBack)
    }

    /// Compares names and values with the project's, sorted by name.
    pub async fn diff(&mut self, entries: Vec<NamedValue>) -> Result<Vec<Difference>, ClientError> {
        ask!(self, Request::Diff(entries), Response::Diff)
    }

    /// Names, set times and keyed value digests, sorted by name.
    pub async fn list_digests(&mut self) -> Result<Vec<SecretDigest>, ClientError> {
        ask!(self, Request::ListDigests, Response::SecretDigests)
    }

    /// The fleet as this host sees it (control socket).
    pub async fn fleet(&mut self) -> Result<FleetInfo, ClientError> {
        ask!(self, Request::Fleet, Response::Fleet)
    }

    /// The daemon's counters and gauges, Prometheus text format (control
    /// socket).
    pub async fn metrics(&mut self) -> Result<String, ClientError> {
        ask!(self, Request::Metrics, Response::Metrics)
    }

    /// Daemon status (control socket).
    pub async fn status(&mut self) -> Result<DaemonStatus, ClientError> {
        ask!(self, Request::Status, Response::Status)
    }
}
