//! One client connection: handshake, then requests answered in order.
//!
//! - The first frame must be `Hello` with our protocol version, within the
//!   handshake timeout; otherwise the client gets a typed error and the
//!   connection is closed.
//! - A frame that does not decode gets a `bad_request` answer and the
//!   connection stays usable (framing is intact). A frame whose length
//!   prefix exceeds the limit gets a `too_large` answer and the connection
//!   is closed (the stream can no longer be trusted).
//! - A client that starts a frame and does not finish it within the frame
//!   timeout is cut off; an idle client is cut off after the idle timeout.
//! - Shutdown is checked between requests only: a request in flight is
//!   always answered.
//! - After `Subscribe`, the project's change events are written between
//!   answers; a subscriber that falls behind gets one event with no names
//!   ("anything may have changed") instead of the ones it missed.
//!
//! Request frames are wiped once decoded, since a `Set` carries a value.
//! Nothing here logs a value: requests are logged by operation and name.

use crate::daemon::Shared;
use crate::error::{Error, Result};
use crate::project::Project;
use bytes::Bytes;
use flux_protocol::codec::{self, decode, encode};
use flux_protocol::limits::{MAX_REQUEST_FRAME_LEN, MAX_RESPONSE_FRAME_LEN};
use flux_protocol::message::{
    ErrorReply, Event, EventKind, Request, Response, Scope, Subscribed, Welcome,
};
use flux_protocol::{ErrorCode, PROTOCOL_VERSION};
use futures_util::{SinkExt, StreamExt};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::net::UnixStream;
use tokio::sync::broadcast;
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};
use zeroize::Zeroize;

/// What a socket serves.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Control,
    Project(Arc<Project>),
}

impl Target {
    pub(crate) fn label(&self) -> String {
        match self {
            Self::Control => "control".into(),
            Self::Project(p) => format!("project:{}", p.name()),
        }
    }

    fn scope(&self) -> Scope {
        match self {
            Self::Control => Scope::Control,
            Self::Project(p) => Scope::Project(p.name().to_owned()),
        }
    }
}

static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// Serves one connection until the client closes, misbehaves, idles out, or
/// `cancel` fires.
pub(crate) async fn serve(
    stream: UnixStream,
    target: Target,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    let id = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
    let (uid, pid) = match stream.peer_cred() {
        Ok(c) => (Some(c.uid()), c.pid()),
        Err(_) => (None, None),
    };
    let span = info_span!("conn", id, socket = %target.label(), peer_uid = uid, peer_pid = pid);
    let mut session = Session {
        framed: Framed::new(stream, codec::framing(MAX_REQUEST_FRAME_LEN)),
        target,
        shared,
    };
    async move {
        match session.run(&cancel).await {
            Ok(()) => debug!("connection closed"),
            Err(e) => debug!(reason = %e, "connection ended"),
        }
    }
    .instrument(span)
    .await
}

struct Session {
    framed: Framed<UnixStream, LengthDelimitedCodec>,
    target: Target,
    shared: Arc<Shared>,
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
    async fn run(&mut self, cancel: &CancellationToken) -> Result<(), End> {
        let limits = &self.shared.config.limits;
        let first = match tokio::time::timeout(limits.handshake_timeout, self.framed.next()).await {
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
        loop {
            let frame = tokio::select! {
                biased;
                event = next_event(&mut events) => {
                    if self.forward(event, &mut events).await? {
                        return Ok(());
                    }
                    continue;
                }
                _ = cancel.cancelled() => return Ok(()),
                frame = self.next_frame() => frame?,
            };
            let Some(frame) = frame else { return Ok(()) };
            let mut frame = self.frame_or_close(frame).await?;
            let request = decode::<Request>(&frame);
            frame.as_mut().zeroize();
            let response = match request {
                Ok(Request::Subscribe) => self.subscribe(&mut events),
                Ok(req) => self.handle(req).await,
                Err(e) => error_response(ErrorCode::BadRequest, e.to_string()),
            };
            self.send(&response).await?;
        }
    }

    /// Starts pushing the project's events on this connection.
    fn subscribe(&self, events: &mut Option<broadcast::Receiver<Event>>) -> Response {
        match &self.target {
            Target::Project(project) => {
                let (rx, generation) = project.subscribe();
                *events = Some(rx);
                debug!(generation, "subscribed");
                Response::Subscribed(Subscribed { generation })
            }
            Target::Control => error_response(
                ErrorCode::BadRequest,
                "subscribe is a project request: send it to the project's socket".into(),
            ),
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
                    Target::Project(p) => p.snapshot().generation,
                    Target::Control => 0,
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

    /// The next frame, enforcing the frame and idle timeouts. `Ok(None)` on
    /// a clean close.
    async fn next_frame(&mut self) -> Result<Option<Result<bytes::BytesMut, io::Error>>, End> {
        let limits = &self.shared.config.limits;
        let idle_since = Instant::now();
        loop {
            match tokio::time::timeout(limits.frame_timeout, self.framed.next()).await {
                Ok(frame) => return Ok(frame),
                Err(_) if !self.framed.read_buffer().is_empty() => {
                    let msg = format!("incomplete frame for {:?}", limits.frame_timeout);
                    warn!("{msg}: closing");
                    return Err(End::Protocol(msg));
                }
                Err(_) if idle_since.elapsed() >= limits.idle_timeout => {
                    return Err(End::Protocol("idle timeout".into()));
                }
                Err(_) => {}
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
                    "frame exceeds the limit of {MAX_REQUEST_FRAME_LEN} bytes; closing the connection"
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
        frame.as_mut().zeroize();
        let (code, msg) = match request {
            Ok(Request::Hello(hello)) if hello.version == PROTOCOL_VERSION => {
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
            Err(e) => (ErrorCode::BadRequest, format!("handshake: {e}")),
        };
        self.reply_error(code, &msg).await?;
        Err(End::Protocol(msg))
    }

    async fn handle(&self, req: Request) -> Response {
        let op = req.op();
        let outcome = match &self.target {
            Target::Project(project) => self.handle_project(project, req).await,
            Target::Control => self.handle_control(req).await,
        };
        match outcome {
            Ok(response) => {
                debug!(op, "ok");
                response
            }
            Err(e) => {
                debug!(op, code = %e.code(), error = %e, "refused");
                error_response(e.code(), e.to_string())
            }
        }
    }

    async fn handle_project(&self, project: &Project, req: Request) -> Result<Response> {
        Ok(match req {
            Request::Get(get) => Response::Value(project.get(&get.name)?),
            Request::GetAll => Response::Values(project.get_all()?),
            Request::List => Response::Secrets(project.list()?),
            Request::Set(set) => Response::Stored(project.set(&set.name, set.value).await?),
            Request::Delete(del) => Response::Deleted(project.delete(&del.name).await?),
            Request::Hello(_) => {
                return Err(Error::BadRequest("the handshake is already done".into()));
            }
            other => {
                return Err(Error::BadRequest(format!(
                    "{} is a control request: send it to {}",
                    other.op(),
                    self.shared.control_socket().display()
                )));
            }
        })
    }

    async fn handle_control(&self, req: Request) -> Result<Response> {
        let shared = &self.shared;
        Ok(match req {
            Request::CreateProject(p) => {
                Response::ProjectCreated(shared.create_project(&p.name).await?)
            }
            Request::DeleteProject(p) => {
                shared.delete_project(&p.name).await?;
                Response::ProjectDeleted(p)
            }
            Request::ListProjects => Response::Projects(shared.project_infos()),
            Request::Status => Response::Status(shared.status()),
            Request::Hello(_) => {
                return Err(Error::BadRequest("the handshake is already done".into()));
            }
            other => {
                return Err(Error::BadRequest(format!(
                    "{} is a project request: send it to the project's socket, {}",
                    other.op(),
                    flux_protocol::paths::project_socket(&shared.config.runtime_dir, "<project>")
                        .display()
                )));
            }
        })
    }

    async fn reply_error(&mut self, code: ErrorCode, msg: &str) -> Result<(), End> {
        self.send(&error_response(code, msg.to_owned())).await
    }

    async fn send(&mut self, response: &Response) -> Result<(), End> {
        let mut payload = encode(response).map_err(|e| End::Protocol(e.to_string()))?;
        if payload.len() > MAX_RESPONSE_FRAME_LEN {
            let msg = format!(
                "the answer is {} bytes, over the {MAX_RESPONSE_FRAME_LEN}-byte frame limit: ask for fewer or smaller secrets",
                payload.len()
            );
            payload.zeroize();
            payload = encode(&error_response(ErrorCode::TooLarge, msg))
                .map_err(|e| End::Protocol(e.to_string()))?;
        }
        self.framed.send(Bytes::from(payload)).await?;
        Ok(())
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

fn error_response(code: ErrorCode, message: String) -> Response {
    Response::Error(ErrorReply { code, message })
}
