//! What a connection is apart from its stream, shared by both ways of
//! serving one ([`super::Session`] on the async runtime, [`super::direct`]
//! on a thread of its own): the socket it came to, the peer, its request
//! budget, its audit tally — and every decision made about it: the
//! connection slot, the handshake, each request's access decision, its
//! metrics and audit record, the answer to a policy reload. Nothing here
//! reads or writes the stream, so the two paths cannot drift apart in what
//! they allow.

use super::bucket::Bucket;
use super::names::audit_names_into;
use super::target::Target;
use crate::access::audit::{ReadSummaries, bounded_name};
use crate::access::peer::Peer;
use crate::access::{self, Denial, Denied, Effect, Granted, SocketKind};
use crate::error::{Error, Limit, Result, Unavailable};
use crate::metrics::{Outcome, op_index};
use crate::server::Services;
use crate::server::handlers::{self, Reply};
use flux_protocol::codec::{decode, encode};
use flux_protocol::limits::MAX_RESPONSE_FRAME_LEN;
use flux_protocol::message::{ErrorReply, Request, Response, Welcome};
use flux_protocol::{ErrorCode, PROTOCOL_VERSION};
use std::sync::{Arc, Mutex};
use tokio::sync::OwnedSemaphorePermit;
use tracing::{debug, warn};
use zeroize::Zeroize;

/// One connection's state, whichever path serves it.
pub(crate) struct Conn {
    pub(super) target: Target,
    pub(super) services: Arc<Services>,
    pub(super) peer: Peer,
    pub(super) bucket: Option<Bucket>,
    /// Reads (and repeated denials) counted but not yet in the audit log;
    /// shared with the watchdog on a connection's own thread
    /// ([`super::watchdog`]), which hands them over when they are due.
    pub(super) summaries: Arc<Mutex<ReadSummaries>>,
    /// Denials on this connection so far.
    pub(super) denials: u32,
    /// The buffer of the last request's audit name, reused by the next
    /// (see [`crate::access::audit::bounded_name_into`]).
    spare_name: String,
}

/// What a connection holds of its socket's budget while it is open.
#[derive(Debug)]
#[allow(dead_code)] // held for its drop
pub(crate) enum Slot {
    Project(OwnedSemaphorePermit),
    Peer(super::target::PeerSlot),
}

/// A request decided, not yet run: what its metrics and audit record say
/// of it.
pub(super) struct Decided {
    op: &'static str,
    op_slot: usize,
    name: Option<String>,
    detail: Option<String>,
    allowed: bool,
    effect: Effect,
}

/// What became of pending read summaries after a request was recorded.
pub(super) enum Tally {
    /// Nothing pending, or pending with their timer already running.
    Quiet,
    /// Too many pending: hand them to the log now.
    Full,
    /// The first pending one: hand them over after this long.
    Started(std::time::Duration),
}

impl Conn {
    pub(super) fn new(target: Target, services: Arc<Services>, peer: Peer) -> Self {
        let rate = services.config.limits.requests_per_second;
        Self {
            target,
            services,
            peer,
            bucket: (rate > 0).then(|| Bucket::new(rate)),
            summaries: Arc::default(),
            denials: 0,
            spare_name: String::new(),
        }
    }

    /// Takes one of the project socket's connection slots, or one of the
    /// control socket's slots of this peer; else the error to refuse the
    /// connection with.
    pub(super) fn take_slot(&self) -> Result<Slot, String> {
        let limits = &self.services.config.limits;
        let msg = match &self.target {
            Target::Control { peers } => {
                let limit = limits.max_control_connections_per_peer;
                match peers.take(self.peer.uid, limit) {
                    Some(held) => return Ok(Slot::Peer(held)),
                    None => format!(
                        "uid {} holds {limit} connections to the control socket, the most one user may hold ([limits] max_control_connections_per_peer): close idle ones",
                        self.peer.uid
                    ),
                }
            }
            Target::Project { project, slots } => match slots.clone().try_acquire_owned() {
                Ok(permit) => return Ok(Slot::Project(permit)),
                Err(_) => format!(
                    "too many connections to project {} (the limit is {}); close idle ones or raise [limits] max_connections_per_project",
                    project.name(),
                    limits.max_connections_per_project
                ),
            },
        };
        warn!("{msg}");
        Err(msg)
    }

    /// The answer to the first frame: `Welcome`, or the error that ends the
    /// connection. The frame is wiped once decoded.
    pub(super) fn handshake(&self, frame: &mut [u8]) -> Result<Response, (ErrorCode, String)> {
        let request = decode::<Request>(frame);
        // A `Hello` of another version may be laid out differently after
        // its version field; the variant and the version never move, so a
        // client of another version is told so even when the rest does not
        // decode as this version's `Hello`.
        let version = hello_version(frame);
        frame.zeroize();
        let mismatch = |theirs: u32| {
            (
                ErrorCode::VersionMismatch,
                format!(
                    "the client speaks protocol version {theirs}, this fluxd speaks version {PROTOCOL_VERSION}: upgrade the older of the two"
                ),
            )
        };
        match request {
            Ok(Request::Hello(hello)) if hello.version == PROTOCOL_VERSION => {
                if let Target::Project { project, .. } = &self.target
                    && project.is_deleted()
                {
                    let msg = Error::UnknownProject(project.name().to_owned()).to_string();
                    return Err((ErrorCode::UnknownProject, msg));
                }
                debug!(client = %hello.client.escape_debug(), "handshake");
                Ok(Response::Welcome(Welcome {
                    version: PROTOCOL_VERSION,
                    server: format!("fluxd/{}", env!("CARGO_PKG_VERSION")),
                    scope: self.target.scope(),
                }))
            }
            Ok(Request::Hello(hello)) => Err(mismatch(hello.version)),
            Ok(other) => Err((
                ErrorCode::BadRequest,
                format!(
                    "the first request must be Hello (the handshake), not {}",
                    other.op()
                ),
            )),
            Err(_) if version.is_some_and(|v| v != PROTOCOL_VERSION) => {
                Err(mismatch(version.unwrap_or_default()))
            }
            Err(e) => Err((ErrorCode::BadRequest, format!("handshake: {e}"))),
        }
    }

    /// After a policy reload, with the peer's groups looked up again (a
    /// member removed from a group loses what the group gave): true when the
    /// peer still holds a role on this socket; when not, the connection
    /// must close.
    pub(super) fn keeps_access(&mut self, peer: Peer) -> bool {
        self.peer = peer;
        let policy = self.services.access.policy();
        let keep = access::holds_a_role(&policy, &self.peer.identity, self.target.socket());
        if !keep {
            warn!("the reloaded policy gives this peer no role here: closing its connection");
        }
        keep
    }

    /// Decides one request under the policy in force: the grant, or the
    /// error that answers it.
    pub(super) fn decide(&mut self, req: Request) -> (Decided, Result<Granted>) {
        let policy = self.services.access.policy_guard();
        // A peer that called `exec` since it connected is decided as the
        // program it runs now (only read when some rule names programs).
        if policy.names_executables() {
            self.peer.recheck_program(&policy);
        }
        let op = req.op();
        let op_slot = op_index(&req);
        let (name, detail) = audit_names_into(&req, &mut self.spare_name);
        let rule = handlers::rule(&req);
        let decision = access::decide(
            &policy,
            &self.peer.identity,
            self.target.socket(),
            req,
            rule,
        );
        let (allowed, effect, grant) = match decision {
            Ok(granted) => (true, granted.effect(), Ok(granted)),
            Err(denied) => (false, denied.effect, Err(self.denial_error(&denied))),
        };
        let decided = Decided {
            op,
            op_slot,
            name,
            detail,
            allowed,
            effect,
        };
        (decided, grant)
    }

    /// What a granted request must pass before it runs: the connection's
    /// request rate, and for a write, an audit log that can be written.
    pub(super) fn admit(&mut self, granted: &Granted) -> Result<()> {
        if self.bucket.as_mut().is_some_and(|b| !b.take()) {
            return Err(Error::LimitReached(Limit::Rate {
                per_second: self.services.config.limits.requests_per_second,
            }));
        }
        let audit = self.services.access.audit();
        if granted.effect() == Effect::Write && !audit.writable() {
            let why = audit
                .health()
                .error
                .unwrap_or_else(|| "the audit log cannot be written".into());
            return Err(Error::Unavailable(Unavailable::Audit(why)));
        }
        Ok(())
    }

    /// Counts and audits a request that ran (or was refused), and turns its
    /// outcome into the reply.
    pub(super) fn conclude(&mut self, d: Decided, outcome: Result<Reply>) -> (Reply, Tally) {
        let Decided {
            op,
            op_slot,
            name,
            mut detail,
            mut allowed,
            effect,
        } = d;
        let (reply, result) = match outcome {
            Ok(reply) => {
                debug!(op, "ok");
                (reply, "ok")
            }
            Err(e @ Error::Hidden { .. }) => {
                // Answered as not set; recorded as what it is, a denial.
                debug!(op, "a secret this peer may not read: answered as not set");
                allowed = false;
                detail = Some(
                    "the secret's own readers leave this peer out; answered as not set".into(),
                );
                (
                    Reply::Message(error_response(e.code(), e.to_string())),
                    "permission_denied",
                )
            }
            Err(e) => {
                debug!(op, code = %e.code(), error = %e, "refused");
                (
                    Reply::Message(error_response(e.code(), e.to_string())),
                    e.code().name(),
                )
            }
        };
        let outcome = match (allowed, result) {
            (false, _) => Outcome::Denied,
            (true, "ok") => Outcome::Ok,
            (true, "not_found") => Outcome::NotFound,
            (true, _) => Outcome::Error,
        };
        match &self.target {
            Target::Project { project, .. } => project.metrics().requests.count(op_slot, outcome),
            Target::Control { .. } => self.services.metrics.control.count(op_slot, outcome),
        }
        let tally = self.audit(op, name.as_deref(), detail, allowed, effect, result);
        if let Some(name) = name {
            self.spare_name = name;
        }
        (reply, tally)
    }

    /// Hands the pending summaries to the audit log.
    pub(super) fn flush_summaries(&mut self) {
        self.summaries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .flush(self.services.access.audit());
    }

    /// The error a denied request is answered with.
    fn denial_error(&self, denied: &Denied) -> Error {
        let op = denied.request.op();
        match denied.denial {
            Denial::Handshake => Error::BadRequest("the handshake is already done".into()),
            Denial::WrongSocket {
                belongs: SocketKind::Control,
            } => Error::BadRequest(format!(
                "{op} is a control request: send it to {}",
                self.services.config.control_socket().display()
            )),
            Denial::WrongSocket {
                belongs: SocketKind::Project,
            } => Error::BadRequest(format!(
                "{op} is a project request: send it to the project's socket, {}",
                flux_protocol::paths::project_socket(
                    &self.services.config.runtime_dir,
                    "<project>"
                )
                .display()
            )),
            Denial::Role { .. } => Error::PermissionDenied {
                op,
                project: self.target.project_name().map(str::to_owned).or_else(|| {
                    match &denied.request {
                        Request::DeleteProject(p) => Some(bounded_name(&p.name).0),
                        _ => None,
                    }
                }),
            },
        }
    }
}

/// An answer's payload; one over the answer limit is replaced by a
/// `too_large` error, so the client always gets a reply.
pub(super) fn payload(response: &Response) -> Result<Vec<u8>, String> {
    let mut payload = encode(response).map_err(|e| e.to_string())?;
    if payload.len() > MAX_RESPONSE_FRAME_LEN {
        let msg = format!(
            "the answer is {} bytes, over the {MAX_RESPONSE_FRAME_LEN}-byte answer limit: ask for fewer or smaller secrets",
            payload.len()
        );
        warn!("{msg}");
        payload.zeroize();
        payload = encode(&error_response(ErrorCode::TooLarge, msg)).map_err(|e| e.to_string())?;
    }
    Ok(payload)
}

pub(super) fn error_response(code: ErrorCode, message: String) -> Response {
    Response::Error(ErrorReply { code, message })
}

/// The version a `Hello` payload claims: variant 0 (u32, little-endian),
/// then the version (u32, little-endian), whatever follows in that
/// version's layout. `None` for anything else.
fn hello_version(payload: &[u8]) -> Option<u32> {
    let variant = u32::from_le_bytes(payload.get(0..4)?.try_into().ok()?);
    let version = u32::from_le_bytes(payload.get(4..8)?.try_into().ok()?);
    (variant == 0).then_some(version)
}
