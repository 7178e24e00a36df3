//! One client connection: handshake, then requests answered in order, each
//! one decided by [`crate::access`] under the rule its handler declares
//! ([`super::handlers`]), answered, and audited.
//!
//! - The peer is identified by the kernel when the connection is accepted
//!   ([`Peer`]); every request is decided against the policy in force at
//!   that moment. A denied request — wrong socket, missing role, a second
//!   `Hello` — gets an error naming the reason and is audited; the
//!   connection stays usable for what the peer may do. Only a request
//!   [`Granted`] by the decision reaches a handler.
//! - The first frame must be `Hello` with our protocol version, within the
//!   handshake timeout; otherwise the client gets a typed error and the
//!   connection is closed.
//! - A project socket admits a bounded number of connections; past it a
//!   new connection gets `limit_reached` and is closed, so one project's
//!   clients cannot starve another's.
//! - A frame that does not decode gets a `bad_request` answer and the
//!   connection stays usable (framing is intact). A frame whose length
//!   prefix exceeds the request limit gets a `too_large` answer and the
//!   connection is closed (the stream can no longer be trusted). Answers
//!   have their own, larger limit; one that would exceed it is replaced by
//!   a `too_large` error — never a silent close.
//! - A client that starts a frame and does not finish it within the frame
//!   timeout is cut off; so is one that does not take an answer within the
//!   write timeout; an idle client is cut off after the idle timeout. A
//!   connection over its request rate gets `limit_reached` answers.
//! - Shutdown is checked between requests only: a request in flight is
//!   always answered.
//! - Answers to requests that arrived together (a pipelining client) are
//!   written out together, once no whole request is left to read (or 64
//!   KiB of answers wait): one `writev` for the batch, not one per answer.
//! - After `Subscribe`, the project's change events are written between
//!   answers; a subscriber that falls behind gets one event with no names
//!   ("anything may have changed") instead of the ones it missed.
//! - Audit: writes and project or host changes are one entry each; reads,
//!   and a connection's denials past the first [`DENIALS_IN_FULL`], are
//!   counted into summaries ([`ReadSummaries`]) handed to the log when the
//!   connection ends, every `[audit] summary_interval`, or when too many are
//!   pending; the log folds denials and summaries again per peer across
//!   connections ([`crate::access::audit::fold`]). Writes are refused with
//!   `unavailable` while the audit log cannot be written.
//!
//! Request frames are wiped once decoded, since a `Set` carries a value.
//! Nothing here logs or audits a value: requests are recorded by operation
//! and name.

mod bucket;
mod record;

use super::Services;
use super::handlers::{self, Ctx, Reply};
use crate::access::audit::{ReadSummaries, bounded_name};
use crate::access::peer::Peer;
use crate::access::{self, Denial, Denied, Effect, Granted, Socket, SocketKind};
use crate::error::{Error, Limit, Result, Unavailable};
use crate::metrics::{ConnectionGauge, Outcome, op_index};
use crate::project::Project;
use bucket::Bucket;
use bytes::Bytes;
use flux_protocol::codec::{ServerCodec, decode, encode};
use flux_protocol::limits::MAX_RESPONSE_FRAME_LEN;
use flux_protocol::message::{ErrorReply, Event, EventKind, Request, Response, Scope, Welcome};
use flux_protocol::{ErrorCode, PROTOCOL_VERSION};
use futures_util::{SinkExt, StreamExt};
use record::audit_names;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::net::UnixStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast};
use tokio::time::Sleep;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};
use zeroize::Zeroize;

/// What a socket serves.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Control {
        /// Control connections open, by peer uid.
        peers: Arc<PeerSlots>,
    },
    Project {
        project: Arc<Project>,
        /// Connection slots of this project's socket.
        slots: Arc<Semaphore>,
    },
}

impl Target {
    pub(crate) fn label(&self) -> String {
        match self {
            Self::Control { .. } => "control".into(),
            Self::Project { project, .. } => format!("project:{}", project.name()),
        }
    }

    fn scope(&self) -> Scope {
        match self {
            Self::Control { .. } => Scope::Control,
            Self::Project { project, .. } => Scope::Project(project.name().to_owned()),
        }
    }

    fn socket(&self) -> Socket<'_> {
        match self {
            Self::Control { .. } => Socket::Control,
            Self::Project { project, .. } => Socket::Project(project.name()),
        }
    }

    fn project_name(&self) -> Option<&str> {
        match self {
            Self::Control { .. } => None,
            Self::Project { project, .. } => Some(project.name()),
        }
    }
}

static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// Control connections open per peer uid, so that one user holding many
/// cannot keep other operators out ([`crate::config::Limits`]'s
/// `max_control_connections_per_peer`).
#[derive(Debug, Default)]
pub(crate) struct PeerSlots {
    open: std::sync::Mutex<std::collections::HashMap<u32, usize>>,
}

impl PeerSlots {
    /// One more connection for `uid`, unless it holds `limit` already.
    fn take(self: &Arc<Self>, uid: u32, limit: usize) -> Option<PeerSlot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let held = open.entry(uid).or_insert(0);
        if *held >= limit {
            return None;
        }
        *held += 1;
        Some(PeerSlot {
            slots: self.clone(),
            uid,
        })
    }
}

/// One control connection of one peer, given back when dropped.
#[derive(Debug)]
pub(crate) struct PeerSlot {
    slots: Arc<PeerSlots>,
    uid: u32,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = open.get_mut(&self.uid) {
            *held -= 1;
            if *held == 0 {
                open.remove(&self.uid);
            }
        }
    }
}

/// What a connection holds of its socket's budget while it is open.
#[derive(Debug)]
#[allow(dead_code)] // held for its drop
enum Slot {
    Project(OwnedSemaphorePermit),
    Peer(PeerSlot),
}

/// Most bytes of answers held back while pipelined requests are answered.
const PIPELINED_ANSWERS: usize = 64 * 1024;

/// Serves one connection until the client closes, misbehaves, idles out, or
/// `cancel` fires.
pub(crate) async fn serve(
    stream: UnixStream,
    target: Target,
    services: Arc<Services>,
    cancel: CancellationToken,
) {
    let id = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
    let peer = match Peer::of(&stream) {
        Ok(peer) => peer,
        Err(e) => {
            warn!(error = %e, "cannot read the peer's credentials; closing");
            return;
        }
    };
    let _counted = ConnectionGauge::open(
        services.metrics.clone(),
        match &target {
            Target::Control { .. } => None,
            Target::Project { project, .. } => Some(project.metrics().clone()),
        },
    );
    let span =
        info_span!("conn", id, socket = %target.label(), peer_uid = peer.uid, peer_pid = peer.pid);
    let max_frame = services.config.limits.max_request_bytes;
    // Taken before the handshake: a reload from then on is seen.
    let reloads = services.access.reloads();
    let mut session = Session {
        framed: Framed::new(stream, ServerCodec::new(max_frame)),
        target,
        services,
        peer,
        bucket: None,
        summaries: ReadSummaries::default(),
        summary_due: None,
        denials: 0,
    };
    async move {
        match session.run(&cancel, reloads).await {
            Ok(()) => debug!("connection closed"),
            Err(e) => debug!(reason = %e, "connection ended"),
        }
        session.summaries.flush(session.services.access.audit());
        session.wipe_buffers();
    }
    .instrument(span)
    .await
}

/// One connection's state.
pub(super) struct Session {
    pub(super) framed: Framed<UnixStream, ServerCodec>,
    pub(super) target: Target,
    pub(super) services: Arc<Services>,
    pub(super) peer: Peer,
    pub(super) bucket: Option<Bucket>,
    /// Reads (and repeated denials) counted but not yet in the audit log.
    pub(super) summaries: ReadSummaries,
    /// When the pending summaries must be written.
    pub(super) summary_due: Option<Pin<Box<Sleep>>>,
    /// Denials on this connection so far.
    pub(super) denials: u32,
}

/// Why a connection was ended by the daemon.
#[derive(Debug, thiserror::Error)]
enum End {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Protocol(String),
}

impl Session {
    async fn run(
        &mut self,
        cancel: &CancellationToken,
        reloads: tokio::sync::watch::Receiver<u64>,
    ) -> Result<(), End> {
        let _slot = self.take_slot().await?;
        let limits = self.services.config.limits.clone();
        if limits.requests_per_second > 0 {
            self.bucket = Some(Bucket::new(limits.requests_per_second));
        }
        let first = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Ok(()),
            first = tokio::time::timeout(limits.handshake_timeout, self.framed.next()) => first,
        };
        let first = match first {
            Err(_) => {
                let msg = format!(
                    "no handshake within {:?}: send Hello first (see PROTOCOL.md)",
                    limits.handshake_timeout
                );
                self.reply_error(ErrorCode::BadRequest, &msg).await?;
                return Err(End::Protocol(msg));
            }
            Ok(None) => return Ok(()),
            Ok(Some(frame)) => self.frame_or_close(frame).await?,
        };
        self.handshake(first).await?;
        let mut events: Option<broadcast::Receiver<Event>> = None;
        // The futures below live as long as the connection, so each
        // registers its waker once, not once per request.
        let cancelled = cancel.cancelled();
        tokio::pin!(cancelled);
        let mut reload = Box::pin(policy_reloaded(reloads));
        // One timer for the frame and idle timeouts, re-armed only when it
        // fires (see `Waiting`), never per request.
        let mut waiting = Waiting::new(&limits);
        let deadline = tokio::time::sleep_until(waiting.due().into());
        tokio::pin!(deadline);
        loop {
            let frame = tokio::select! {
                biased;
                event = next_event(&mut events) => {
                    waiting.restart();
                    if self.forward(event, &mut events).await? {
                        return Ok(());
                    }
                    continue;
                }
                () = &mut cancelled => return Ok(()),
                () = summaries_due(&mut self.summary_due) => {
                    waiting.restart();
                    self.flush_summaries();
                    continue;
                }
                rx = &mut reload => {
                    reload = Box::pin(policy_reloaded(rx));
                    waiting.restart();
                    if self.lost_access().await {
                        return Err(End::Protocol("no role left after a policy reload".into()));
                    }
                    continue;
                }
                () = &mut deadline => {
                    let partial = self.framed.codec().mid_frame()
                        || !self.framed.read_buffer().is_empty();
                    let next = waiting.expired(partial)?;
                    deadline.as_mut().reset(next.into());
                    continue;
                }
                frame = self.framed.next() => frame,
            };
            waiting.restart();
            let Some(frame) = frame else { return Ok(()) };
            let mut frame = self.frame_or_close(frame).await?;
            let request = decode::<Request>(&frame);
            frame.as_mut().zeroize();
            let reply = match request {
                Ok(req) => self.decide(req, &mut events).await,
                Err(e) => Reply::Message(error_response(ErrorCode::BadRequest, e.to_string())),
            };
            if let Reply::Message(response) = reply {
                self.queue(&response).await?;
            }
            // Answers to requests the client sent together (pipelined)
            // leave in one write: flushed once no complete request is
            // waiting in the read buffer, or once they fill
            // `PIPELINED_ANSWERS` bytes.
            if !self.request_buffered() || self.framed.write_buffer().len() >= PIPELINED_ANSWERS {
                self.flush().await?;
            }
        }
    }

    /// Wipes what the connection's buffers held (values in replies, a
    /// `Set` in a request) once it ends.
    fn wipe_buffers(&mut self) {
        fn wipe(buf: &mut bytes::BytesMut) {
            let cap = buf.capacity();
            buf.clear();
            buf.resize(cap, 0);
            buf.as_mut().zeroize();
            buf.clear();
        }
        wipe(self.framed.write_buffer_mut());
        wipe(self.framed.read_buffer_mut());
    }

    /// Takes one of the project socket's connection slots, or one of the
    /// control socket's slots of this peer, or refuses the connection with
    /// `limit_reached`.
    async fn take_slot(&mut self) -> Result<Slot, End> {
        let (project, slots) = match &self.target {
            Target::Project { project, slots } => (project, slots),
            Target::Control { peers } => {
                let limit = self.services.config.limits.max_control_connections_per_peer;
                return match peers.take(self.peer.uid, limit) {
                    Some(held) => Ok(Slot::Peer(held)),
                    None => {
                        let msg = format!(
                            "uid {} holds {limit} connections to the control socket, the most one user may hold ([limits] max_control_connections_per_peer): close idle ones",
                            self.peer.uid
                        );
                        warn!("{msg}");
                        self.reply_error(ErrorCode::LimitReached, &msg).await?;
                        Err(End::Protocol(msg))
                    }
                };
            }
        };
        match slots.clone().try_acquire_owned() {
            Ok(permit) => Ok(Slot::Project(permit)),
            Err(_) => {
                let msg = format!(
                    "too many connections to project {} (the limit is {}); close idle ones or raise [limits] max_connections_per_project",
                    project.name(),
                    self.services.config.limits.max_connections_per_project
                );
                warn!("{msg}");
                self.reply_error(ErrorCode::LimitReached, &msg).await?;
                Err(End::Protocol(msg))
            }
        }
    }

    /// Unwraps a frame; on a framing error (oversized length prefix, broken
    /// stream) answers when possible and ends the connection.
    async fn frame_or_close(
        &mut self,
        frame: Result<bytes::BytesMut, io::Error>,
    ) -> Result<bytes::BytesMut, End> {
        match frame {
            Ok(frame) => Ok(frame),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                let msg = format!(
                    "frame exceeds the limit of {} bytes; closing the connection",
                    self.services.config.limits.max_request_bytes
                );
                warn!("{msg}");
                let _ = self.reply_error(ErrorCode::TooLarge, &msg).await;
                Err(End::Protocol(msg))
            }
            Err(e) => Err(End::Io(e)),
        }
    }

    async fn handshake(&mut self, mut frame: bytes::BytesMut) -> Result<(), End> {
        let request = decode::<Request>(&frame);
        // A `Hello` of another version may be laid out differently after
        // its version field; the variant and the version never move, so a
        // client of another version is told so even when the rest does not
        // decode as this version's `Hello`.
        let version = hello_version(&frame);
        frame.as_mut().zeroize();
        let (code, msg) = match request {
            Ok(Request::Hello(hello)) if hello.version == PROTOCOL_VERSION => {
                if let Target::Project { project, .. } = &self.target
                    && project.is_deleted()
                {
                    let msg = Error::UnknownProject(project.name().to_owned()).to_string();
                    self.reply_error(ErrorCode::UnknownProject, &msg).await?;
                    return Err(End::Protocol(msg));
                }
                debug!(client = %hello.client.escape_debug(), "handshake");
                let welcome = Response::Welcome(Welcome {
                    version: PROTOCOL_VERSION,
                    server: format!("fluxd/{}", env!("CARGO_PKG_VERSION")),
                    scope: self.target.scope(),
                });
                return self.send(&welcome).await;
            }
            Ok(Request::Hello(hello)) => (
                ErrorCode::VersionMismatch,
                format!(
                    "the client speaks protocol version {}, this fluxd speaks version {PROTOCOL_VERSION}: upgrade the older of the two",
                    hello.version
                ),
            ),
            Ok(other) => (
                ErrorCode::BadRequest,
                format!(
                    "the first request must be Hello (the handshake), not {}",
                    other.op()
                ),
            ),
            Err(_) if version.is_some_and(|v| v != PROTOCOL_VERSION) => (
                ErrorCode::VersionMismatch,
                format!(
                    "the client speaks protocol version {}, this fluxd speaks version {PROTOCOL_VERSION}: upgrade the older of the two",
                    version.unwrap_or_default()
                ),
            ),
            Err(e) => (ErrorCode::BadRequest, format!("handshake: {e}")),
        };
        self.reply_error(code, &msg).await?;
        Err(End::Protocol(msg))
    }

    /// After a policy reload: looks the peer's groups up again (a member
    /// removed from a group loses what the group gave) and says whether the
    /// peer now holds no role on this socket, so the connection must close.
    async fn lost_access(&mut self) -> bool {
        let (uid, gid) = (self.peer.uid, self.peer.gid);
        if let Ok(identity) =
            tokio::task::spawn_blocking(move || access::policy::PeerIdentity::lookup(uid, gid))
                .await
        {
            self.peer.identity = identity;
        }
        let policy = self.services.access.policy();
        let keep = access::holds_a_role(&policy, &self.peer.identity, self.target.socket());
        if !keep {
            warn!("the reloaded policy gives this peer no role here: closing its connection");
        }
        !keep
    }

    /// Decides, runs (when granted), answers and audits one request.
    async fn decide(
        &mut self,
        req: Request,
        events: &mut Option<broadcast::Receiver<Event>>,
    ) -> Reply {
        let op = req.op();
        let op_slot = op_index(&req);
        let (name, detail) = audit_names(&req);
        let rule = handlers::rule(&req);
        let decision =
            self.services
                .access
                .decide(&self.peer.identity, self.target.socket(), req, rule);
        let (allowed, effect, outcome) = match decision {
            Ok(granted) => {
                let effect = granted.effect();
                (true, effect, self.run_granted(granted, events).await)
            }
            Err(denied) => {
                let effect = denied.effect;
                (false, effect, Err(self.denial_error(&denied)))
            }
        };
        let (reply, result) = match outcome {
            Ok(reply) => {
                debug!(op, "ok");
                (reply, "ok")
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
            (true, _) => Outcome::Error,
        };
        match &self.target {
            Target::Project { project, .. } => project.metrics().requests.count(op_slot, outcome),
            Target::Control { .. } => self.services.metrics.control.count(op_slot, outcome),
        }
        self.audit(op, name, detail, allowed, effect, result);
        reply
    }

    /// Runs a granted request, within the connection's request rate and
    /// while writes can be audited.
    async fn run_granted(
        &mut self,
        granted: Granted,
        events: &mut Option<broadcast::Receiver<Event>>,
    ) -> Result<Reply> {
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
        let project = match &self.target {
            Target::Project { project, .. } => Some(project.clone()),
            Target::Control { .. } => None,
        };
        let mut ctx = Ctx {
            services: &self.services,
            project: project.as_ref(),
            peer: &self.peer,
            out: self.framed.write_buffer_mut(),
            events,
        };
        handlers::run(&mut ctx, granted).await
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

    /// Sends an event to the client; true when the connection should end
    /// (the project was deleted).
    async fn forward(
        &mut self,
        event: Result<Event, broadcast::error::RecvError>,
        events: &mut Option<broadcast::Receiver<Event>>,
    ) -> Result<bool, End> {
        let event = match event {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                debug!(missed, "subscriber fell behind");
                let generation = match &self.target {
                    Target::Project { project, .. } => project.snapshot().generation,
                    Target::Control { .. } => 0,
                };
                Event {
                    generation,
                    kind: EventKind::Reloaded,
                    names: Vec::new(),
                }
            }
            Err(broadcast::error::RecvError::Closed) => {
                *events = None;
                return Ok(false);
            }
        };
        let last = event.kind == EventKind::ProjectDeleted;
        self.send(&Response::Event(event)).await?;
        Ok(last)
    }

    async fn reply_error(&mut self, code: ErrorCode, msg: &str) -> Result<(), End> {
        self.send(&error_response(code, msg.to_owned())).await
    }

    /// Sends one answer; one over the answer limit is replaced by a
    /// `too_large` error, so the client always gets a reply.
    async fn send(&mut self, response: &Response) -> Result<(), End> {
        let payload = self.payload(response)?;
        let timeout = self.services.config.limits.write_timeout;
        match tokio::time::timeout(timeout, self.framed.send(Bytes::from(payload))).await {
            Ok(sent) => Ok(sent?),
            Err(_) => Err(self.write_timed_out()),
        }
    }

    /// True when the read buffer holds another whole request frame (the
    /// codec is between frames right after it yielded one).
    fn request_buffered(&self) -> bool {
        let buf = self.framed.read_buffer();
        buf.len() >= 4 && {
            let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            buf.len() - 4 >= len
        }
    }

    /// Encodes one answer into the write buffer without flushing it (the
    /// sink writes it out by itself when the buffer grows past its
    /// boundary); one over the answer limit is replaced by a `too_large`
    /// error.
    async fn queue(&mut self, response: &Response) -> Result<(), End> {
        let payload = self.payload(response)?;
        let timeout = self.services.config.limits.write_timeout;
        match tokio::time::timeout(timeout, self.framed.feed(Bytes::from(payload))).await {
            Ok(fed) => Ok(fed?),
            Err(_) => Err(self.write_timed_out()),
        }
    }

    /// An answer's payload; one over the answer limit is replaced by a
    /// `too_large` error.
    fn payload(&self, response: &Response) -> Result<Vec<u8>, End> {
        let mut payload = encode(response).map_err(|e| End::Protocol(e.to_string()))?;
        if payload.len() > MAX_RESPONSE_FRAME_LEN {
            let msg = format!(
                "the answer is {} bytes, over the {MAX_RESPONSE_FRAME_LEN}-byte answer limit: ask for fewer or smaller secrets",
                payload.len()
            );
            warn!("{msg}");
            payload.zeroize();
            payload = encode(&error_response(ErrorCode::TooLarge, msg))
                .map_err(|e| End::Protocol(e.to_string()))?;
        }
        Ok(payload)
    }

    /// Writes out what is in the write buffer.
    async fn flush(&mut self) -> Result<(), End> {
        let timeout = self.services.config.limits.write_timeout;
        match tokio::time::timeout(timeout, SinkExt::<Bytes>::flush(&mut self.framed)).await {
            Ok(flushed) => Ok(flushed?),
            Err(_) => Err(self.write_timed_out()),
        }
    }

    fn write_timed_out(&self) -> End {
        let msg = format!(
            "the client took no answer for {:?}; closing",
            self.services.config.limits.write_timeout
        );
        warn!("{msg}");
        End::Protocol(msg)
    }
}

/// The next event of a subscribed connection; never resolves otherwise.
async fn next_event(
    events: &mut Option<broadcast::Receiver<Event>>,
) -> Result<Event, broadcast::error::RecvError> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The version a `Hello` payload claims: variant 0 (u32, little-endian),
/// then the version (u32, little-endian), whatever follows in that
/// version's layout. `None` for anything else.
fn hello_version(payload: &[u8]) -> Option<u32> {
    let variant = u32::from_le_bytes(payload.get(0..4)?.try_into().ok()?);
    let version = u32::from_le_bytes(payload.get(4..8)?.try_into().ok()?);
    (variant == 0).then_some(version)
}

/// The frame and idle timeouts of a connection waiting for its next
/// request, kept with one timer: a request answered only moves
/// `since`; the timer, when it fires, is re-armed for what is left.
struct Waiting {
    since: Instant,
    frame_timeout: std::time::Duration,
    idle_timeout: std::time::Duration,
}

impl Waiting {
    fn new(limits: &crate::config::Limits) -> Self {
        Self {
            since: Instant::now(),
            frame_timeout: limits.frame_timeout,
            idle_timeout: limits.idle_timeout,
        }
    }

    /// The connection did something: waiting starts again.
    fn restart(&mut self) {
        self.since = Instant::now();
    }

    /// When the frame timeout runs out, counted from the last restart.
    fn due(&self) -> Instant {
        self.since + self.frame_timeout
    }

    /// The timer fired: ends the connection when a frame was started and
    /// not finished within the frame timeout, or nothing came for the idle
    /// timeout; else says when to look again.
    fn expired(&self, partial_frame: bool) -> Result<Instant, End> {
        let now = Instant::now();
        if now < self.due() {
            // Requests came since the timer was armed.
            return Ok(self.due());
        }
        if partial_frame {
            let msg = format!("incomplete frame for {:?}", self.frame_timeout);
            warn!("{msg}: closing");
            return Err(End::Protocol(msg));
        }
        if now.duration_since(self.since) >= self.idle_timeout {
            return Err(End::Protocol("idle timeout".into()));
        }
        Ok(now + self.frame_timeout)
    }
}

/// Resolves with the receiver when the policy is reloaded; never when the
/// policy can no longer change.
async fn policy_reloaded(
    mut rx: tokio::sync::watch::Receiver<u64>,
) -> tokio::sync::watch::Receiver<u64> {
    if rx.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
    rx
}

/// Resolves when pending summaries are due; never when none are pending.
async fn summaries_due(due: &mut Option<Pin<Box<Sleep>>>) {
    match due {
        Some(sleep) => sleep.as_mut().await,
        None => std::future::pending().await,
    }
}

fn error_response(code: ErrorCode, message: String) -> Response {
    Response::Error(ErrorReply { code, message })
}
