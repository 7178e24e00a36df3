//! The dashboard's only way to talk to fluxd: a read-only wrapper that
//! can ask for names, status, the audit log, metrics and change events —
//! and for nothing that answers a value.
//!
//! The rest of the dashboard never sees a [`flux_protocol::Client`] or a
//! [`Request`]: it calls the methods below. Every request this file sends
//! is built by [`Ask::request`], whose `match` has one arm per question
//! the dashboard may ask; none of them reads a value (or writes), so there
//! is no code path from the dashboard to a request that returns a value. An answer of an unexpected kind is an error naming its kind
//! only (see `ClientError::Unexpected`). The connections use the
//! operator's own kernel credentials, so the dashboard sees exactly what
//! that operator may see. A test (`mod.rs`) checks that no dashboard
//! source names a value-carrying message or call.

use flux_protocol::message::{
    AuditQuery, AuditTrailEntry, AuditTrailQuery, Event, FleetInfo, Health, ProjectInfo, Request,
    Response, SecretDigest,
};
use flux_protocol::{Client, ClientError, ErrorCode, paths};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// The questions the dashboard may ask. None answers a value.
#[derive(Debug, Clone)]
enum Ask {
    /// Control socket: status, audit health, problems.
    Health,
    /// Control socket: the fleet as this host sees it.
    Fleet,
    /// Control socket: the signed host list this host holds (its
    /// assignments of projects to hosts).
    HostsHead,
    /// Control socket: every project.
    Projects,
    /// Control socket: audit entries with each peer's workload.
    Audit(AuditTrailQuery),
    /// Control socket: audit entries without workloads, from a fluxd that
    /// predates them.
    AuditWithoutWorkloads(AuditQuery),
    /// Control socket: counters and gauges.
    Metrics,
    /// Project socket: names, set times and keyed digests.
    Names,
    /// Project socket: change events from now on.
    Subscribe,
}

impl Ask {
    /// The request for this question: the only place a request is built.
    fn request(&self) -> Request {
        match self {
            Self::Health => Request::Health,
            Self::Fleet => Request::Fleet,
            Self::HostsHead => Request::HostsHead,
            Self::Projects => Request::ListProjects,
            Self::Audit(q) => Request::AuditTrail(q.clone()),
            Self::AuditWithoutWorkloads(q) => Request::AuditLog(q.clone()),
            Self::Metrics => Request::Metrics,
            Self::Names => Request::ListDigests,
            Self::Subscribe => Request::Subscribe,
        }
    }

    fn op(&self) -> &'static str {
        self.request().op()
    }
}

/// A failed question: the daemon's error code when it answered one, and a
/// message (the daemon's messages never hold a value).
#[derive(Debug, Clone)]
pub struct ReadError {
    pub code: Option<ErrorCode>,
    pub message: String,
    /// The socket could not be reached at all (fluxd is not running).
    pub unreachable: bool,
    /// The socket's own mode or group kept the operator out.
    socket_denied: bool,
}

impl ReadError {
    /// True when the policy, or the socket's mode, refused the operator.
    pub fn is_denied(&self) -> bool {
        self.code == Some(ErrorCode::PermissionDenied) || self.socket_denied
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<ClientError> for ReadError {
    fn from(e: ClientError) -> Self {
        let socket_denied = matches!(&e, ClientError::Connect { source, .. }
            if source.kind() == std::io::ErrorKind::PermissionDenied);
        Self {
            code: e.code(),
            message: e.to_string(),
            unreachable: e.is_unreachable() && !socket_denied,
            socket_denied,
        }
    }
}

/// An answer of the wrong kind: dropped unread, named by nothing but the
/// question it answered.
fn unexpected(ask: &Ask, _got: &Response) -> ReadError {
    ReadError {
        code: None,
        message: format!("fluxd answered {} with a message of another kind", ask.op()),
        unreachable: false,
        socket_denied: false,
    }
}

/// Read-only access to one fluxd, through its control socket and its
/// project sockets.
#[derive(Debug)]
pub struct ReadOnly {
    runtime_dir: PathBuf,
    control: Mutex<Option<Client>>,
    projects: Mutex<HashMap<String, Client>>,
    /// The control socket's last refusal, kept for [`REFUSAL_KEPT`]: every
    /// refusal is an audited denial, so a user who is not a daemon admin
    /// is not asked again on every page refresh.
    refused: std::sync::Mutex<Option<(Instant, ReadError)>>,
}

/// How long a refusal on the control socket is answered from memory.
const REFUSAL_KEPT: Duration = Duration::from_secs(60);

impl ReadOnly {
    /// Access to the fluxd whose sockets are under `runtime_dir`.
    pub fn new(runtime_dir: PathBuf) -> Self {
        Self {
            runtime_dir,
            control: Mutex::new(None),
            projects: Mutex::new(HashMap::new()),
            refused: std::sync::Mutex::new(None),
        }
    }

    /// The control socket's path.
    pub fn control_socket(&self) -> PathBuf {
        paths::control_socket(&self.runtime_dir)
    }

    /// A project socket's path.
    pub fn project_socket(&self, project: &str) -> PathBuf {
        paths::project_socket(&self.runtime_dir, project)
    }

    /// Asks on the control socket, connecting (once more after a broken
    /// connection) as needed; one connection is kept, so a page view costs
    /// the audit log no new line.
    async fn control(&self, ask: Ask) -> Result<Response, ReadError> {
        if let Some((at, e)) = &*self.refused.lock().unwrap_or_else(|e| e.into_inner())
            && at.elapsed() < REFUSAL_KEPT
        {
            return Err(e.clone());
        }
        let answer = self.ask_control(ask).await;
        if let Err(e) = &answer
            && e.is_denied()
        {
            *self.refused.lock().unwrap_or_else(|e| e.into_inner()) =
                Some((Instant::now(), e.clone()));
        }
        answer
    }

    async fn ask_control(&self, ask: Ask) -> Result<Response, ReadError> {
        let mut slot = self.control.lock().await;
        for attempt in 0..2 {
            if slot.is_none() {
                *slot = Some(Client::connect(self.control_socket()).await?);
            }
            let client = slot.as_mut().expect("connected above");
            match client.call(&ask.request()).await {
                Ok(r) => return Ok(r),
                Err(e) if e.is_unreachable() && attempt == 0 => *slot = None,
                Err(e) => {
                    if e.is_unreachable() {
                        *slot = None;
                    }
                    return Err(e.into());
                }
            }
        }
        unreachable!("the second attempt returns")
    }

    /// Asks on `project`'s socket, likewise.
    async fn project(&self, project: &str, ask: Ask) -> Result<Response, ReadError> {
        let mut map = self.projects.lock().await;
        for attempt in 0..2 {
            if !map.contains_key(project) {
                let socket = paths::project_socket(&self.runtime_dir, project);
                map.insert(project.to_owned(), Client::connect(socket).await?);
            }
            let client = map.get_mut(project).expect("connected above");
            match client.call(&ask.request()).await {
                Ok(r) => return Ok(r),
                Err(e) if e.is_unreachable() && attempt == 0 => {
                    map.remove(project);
                }
                Err(e) => {
                    if e.is_unreachable() || e.code() == Some(ErrorCode::UnknownProject) {
                        map.remove(project);
                    }
                    return Err(e.into());
                }
            }
        }
        unreachable!("the second attempt returns")
    }

    /// Status, audit health and problems (daemon admins).
    pub async fn health(&self) -> Result<Health, ReadError> {
        let ask = Ask::Health;
        match self.control(ask.clone()).await? {
            Response::Health(h) => Ok(*h),
            other => Err(unexpected(&ask, &other)),
        }
    }

    /// The fleet (daemon admins).
    pub async fn fleet(&self) -> Result<FleetInfo, ReadError> {
        let ask = Ask::Fleet;
        match self.control(ask.clone()).await? {
            Response::Fleet(f) => Ok(f),
            other => Err(unexpected(&ask, &other)),
        }
    }

    /// The signed host list this host holds (daemon admins; empty when it
    /// holds none).
    pub async fn hosts_head(&self) -> Result<Vec<u8>, ReadError> {
        let ask = Ask::HostsHead;
        match self.control(ask.clone()).await? {
            Response::HostsHead(h) => Ok(h.list),
            other => Err(unexpected(&ask, &other)),
        }
    }

    /// Every project (daemon admins).
    pub async fn projects(&self) -> Result<Vec<ProjectInfo>, ReadError> {
        let ask = Ask::Projects;
        match self.control(ask.clone()).await? {
            Response::Projects(p) => Ok(p),
            other => Err(unexpected(&ask, &other)),
        }
    }

    /// Audit entries with each peer's workload (daemon admins); from a
    /// fluxd that predates workloads (it answers `bad_request`), the
    /// entries without them.
    pub async fn audit(&self, query: AuditTrailQuery) -> Result<Vec<AuditTrailEntry>, ReadError> {
        let ask = Ask::Audit(query.clone());
        match self.control(ask.clone()).await {
            Ok(Response::AuditTrail(entries)) => Ok(entries),
            Ok(other) => Err(unexpected(&ask, &other)),
            Err(e) if e.code == Some(ErrorCode::BadRequest) => {
                let ask = Ask::AuditWithoutWorkloads(AuditQuery {
                    project: query.project,
                    since_ms: query.since_ms,
                    limit: query.limit,
                });
                match self.control(ask.clone()).await? {
                    Response::AuditLog(entries) => {
                        Ok(entries.into_iter().map(AuditTrailEntry::from).collect())
                    }
                    other => Err(unexpected(&ask, &other)),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// The metrics text (daemon admins).
    pub async fn metrics(&self) -> Result<String, ReadError> {
        let ask = Ask::Metrics;
        match self.control(ask.clone()).await? {
            Response::Metrics(text) => Ok(text),
            other => Err(unexpected(&ask, &other)),
        }
    }

    /// A project's names, set times and digests (its admins).
    pub async fn names(&self, project: &str) -> Result<Vec<SecretDigest>, ReadError> {
        let ask = Ask::Names;
        match self.project(project, ask.clone()).await? {
            Response::SecretDigests(s) => Ok(s),
            other => Err(unexpected(&ask, &other)),
        }
    }

    /// A new connection to `project`'s socket subscribed to its change
    /// events (its readers and admins).
    pub async fn subscribe(&self, project: &str) -> Result<Subscription, ReadError> {
        let socket = paths::project_socket(&self.runtime_dir, project);
        let mut client = Client::connect(socket).await?;
        let ask = Ask::Subscribe;
        match client.call(&ask.request()).await? {
            Response::Subscribed(s) => Ok(Subscription {
                client,
                generation: s.generation,
            }),
            other => Err(unexpected(&ask, &other)),
        }
    }
}

/// A subscribed connection: it only ever yields events (names and
/// generations).
#[derive(Debug)]
pub struct Subscription {
    client: Client,
    /// The generation served when the subscription began.
    pub generation: u64,
}

impl Subscription {
    /// The next change event.
    pub async fn next(&mut self) -> Result<Event, ReadError> {
        Ok(self.client.next_event().await?)
    }
}
