//! One client connection: handshake, then requests answered in order, each
//! one decided by [`crate::access`] under the rule its handler declares
//! ([`super::handlers`]), answered, and audited.
//!
//! Two ways serve a connection, with one set of rules ([`conn::Conn`] makes
//! every decision: the slot, the handshake, each request's access, its
//! metrics and audit record, a policy reload):
//!
//! - a project socket's connection starts on a thread of its own
//!   ([`direct`]), which answers `Get` and `GetAll` with blocking reads and
//!   writes — the reads functions make all day, at the machine's speed;
//! - the control socket's connections, and a project connection from its
//!   first other request on (`Set`, `List`, `Subscribe`, …), are served by
//!   [`Session`] on the async runtime. A connection handed over keeps its
//!   slot, request budget, audit tally and the bytes already read.
//!
//! What follows holds for both.
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
//!
//! Files: the async session ([`Session`], here), the connection thread
//! ([`direct`]), the rules both apply ([`conn`]), what a socket serves
//! (`target.rs`), a connection just accepted (`opened.rs`), frames and
//! how a connection ends (`frames.rs`), the request budget (`bucket.rs`),
//! the names a request is recorded by (`names.rs`) and its record
//! (`record.rs`).

mod bucket;
mod conn;
pub(crate) mod direct;
mod frames;
mod names;
mod opened;
mod record;
mod target;
pub(crate) mod watchdog;

pub(crate) use target::{PeerSlots, Target};

use super::Services;
use super::handlers::{self, Ctx, Reply};
use crate::access::policy::Hidden;
use crate::metrics::ConnectionGauge;
use bytes::Bytes;
use conn::{Conn, Tally, error_response, payload};
use flux_protocol::ErrorCode;
use flux_protocol::codec::{ServerCodec, decode};
use flux_protocol::message::{Event, EventKind, Request, Response};
use frames::{End, PIPELINED_ANSWERS, too_large, whole_frame_len, wipe, write_timed_out};
use futures_util::{SinkExt, StreamExt};
use opened::{Opened, Start};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::UnixStream;
use tokio::sync::broadcast;
use tokio::time::Sleep;
use tokio_util::codec::{Framed, FramedParts};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, warn};
use zeroize::Zeroize;

/// Serves one connection on the async runtime until the client closes,
/// misbehaves, idles out, or `cancel` fires.
pub(crate) async fn serve(
    stream: UnixStream,
    target: Target,
    services: Arc<Services>,
    cancel: CancellationToken,
) {
    let Some(opened) = Opened::of(&stream, &target, &services) else {
        return;
    };
    let Opened {
        peer,
        gauge,
        span,
        reloads,
        ..
    } = opened;
    let conn = Conn::new(target, services, peer);
    let session = Session::new(stream, conn, bytes::BytesMut::new());
    session
        .run_to_end(cancel, reloads, Start::Fresh, gauge)
        .instrument(span)
        .await;
}

/// One connection on the async runtime.
pub(super) struct Session {
    pub(super) framed: Framed<UnixStream, ServerCodec>,
    pub(super) conn: Conn,
    /// When the pending summaries must be written.
    summary_due: Option<Pin<Box<Sleep>>>,
    /// Names left out of the change events (secrets this subscriber may
    /// not read).
    event_hidden: Hidden,
}

impl Session {
    /// A session on `stream`, whose first bytes (read before it came here)
    /// are `read`.
    pub(super) fn new(stream: UnixStream, conn: Conn, read: bytes::BytesMut) -> Self {
        let max_frame = conn.services.config.limits.max_request_bytes;
        // From parts, so that bytes already read are decoded before the
        // stream is waited on.
        let mut parts = FramedParts::new::<Bytes>(stream, ServerCodec::new(max_frame));
        parts.read_buf = read;
        let framed = Framed::from_parts(parts);
        Self {
            framed,
            conn,
            summary_due: None,
            event_hidden: Hidden::default(),
        }
    }

    /// Runs the session, then hands its summaries over and wipes its
    /// buffers.
    pub(super) async fn run_to_end(
        mut self,
        cancel: CancellationToken,
        reloads: tokio::sync::watch::Receiver<u64>,
        start: Start,
        gauge: ConnectionGauge,
    ) {
        match self.run(&cancel, reloads, start).await {
            Ok(()) => debug!("connection closed"),
            Err(e) => debug!(reason = %e, "connection ended"),
        }
        self.conn.flush_summaries();
        self.wipe_buffers();
        drop(gauge);
    }

    async fn run(
        &mut self,
        cancel: &CancellationToken,
        reloads: tokio::sync::watch::Receiver<u64>,
        start: Start,
    ) -> Result<(), End> {
        let limits = self.conn.services.config.limits.clone();
        let mut events: Option<broadcast::Receiver<Event>> = None;
        let _slot = match start {
            Start::Fresh => {
                let slot = match self.conn.take_slot() {
                    Ok(slot) => slot,
                    Err(msg) => {
                        self.reply_error(ErrorCode::LimitReached, &msg).await?;
                        return Err(End::Protocol(msg));
                    }
                };
                let first = tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return Ok(()),
                    first = tokio::time::timeout(limits.handshake_timeout, self.framed.next()) => first,
                };
                let mut first = match first {
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
                match self.conn.handshake(&mut first) {
                    Ok(welcome) => self.send(&welcome).await?,
                    Err((code, msg)) => {
                        self.reply_error(code, &msg).await?;
                        return Err(End::Protocol(msg));
                    }
                }
                slot
            }
            Start::Resumed { slot, first } => {
                self.answer(first, &mut events).await?;
                slot
            }
        };
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
            match request {
                Ok(req) => self.answer(req, &mut events).await?,
                Err(e) => {
                    let reply = error_response(ErrorCode::BadRequest, e.to_string());
                    self.queue(&reply).await?;
                    self.flush_if_done().await?;
                }
            }
        }
    }

    /// Decides, runs, answers and audits one request; the answer leaves
    /// with those of requests that came with it (see `flush_if_done`).
    async fn answer(
        &mut self,
        req: Request,
        events: &mut Option<broadcast::Receiver<Event>>,
    ) -> Result<(), End> {
        if let Reply::Message(response) = self.decide(req, events).await {
            self.queue(&response).await?;
        }
        self.flush_if_done().await
    }

    /// Answers to requests the client sent together (pipelined) leave in
    /// one write: flushed once no complete request is waiting in the read
    /// buffer, or once they fill `PIPELINED_ANSWERS` bytes.
    async fn flush_if_done(&mut self) -> Result<(), End> {
        if !self.request_buffered() || self.framed.write_buffer().len() >= PIPELINED_ANSWERS {
            self.flush().await?;
        }
        Ok(())
    }

    /// Wipes what the connection's buffers held (values in replies, a
    /// `Set` in a request) once it ends.
    fn wipe_buffers(&mut self) {
        wipe(self.framed.write_buffer_mut());
        wipe(self.framed.read_buffer_mut());
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
                let msg = too_large(&self.conn);
                let _ = self.reply_error(ErrorCode::TooLarge, &msg).await;
                Err(End::Protocol(msg))
            }
            Err(e) => Err(End::Io(e)),
        }
    }

    /// After a policy reload: true when the peer holds no role here any
    /// more, so the connection must close.
    async fn lost_access(&mut self) -> bool {
        let mut peer = self.conn.peer.clone();
        match tokio::task::spawn_blocking(move || {
            peer.refresh_groups();
            peer
        })
        .await
        {
            Ok(peer) => !self.conn.keeps_access(peer),
            Err(_) => {
                let peer = self.conn.peer.clone();
                !self.conn.keeps_access(peer)
            }
        }
    }

    /// Decides, runs (when granted), counts and audits one request.
    async fn decide(
        &mut self,
        req: Request,
        events: &mut Option<broadcast::Receiver<Event>>,
    ) -> Reply {
        let (decided, grant) = self.conn.decide(req);
        let outcome = match grant {
            Ok(granted) => match self.conn.admit(&granted) {
                Ok(()) => {
                    let project = self.conn.target.project().cloned();
                    let subscribed = events.is_some();
                    let hidden = granted.hidden().clone();
                    let mut ctx = Ctx {
                        services: &self.conn.services,
                        project: project.as_ref(),
                        peer: &self.conn.peer,
                        out: self.framed.write_buffer_mut(),
                        events,
                        hidden: Hidden::default(),
                    };
                    let ran = handlers::run(&mut ctx, granted).await;
                    if !subscribed && events.is_some() {
                        self.event_hidden = hidden;
                    }
                    ran
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        let (reply, tally) = self.conn.conclude(decided, outcome);
        match tally {
            Tally::Quiet => {}
            Tally::Full => self.flush_summaries(),
            Tally::Started(after) => {
                if self.summary_due.is_none() {
                    self.summary_due = Some(Box::pin(tokio::time::sleep(after)));
                }
            }
        }
        reply
    }

    /// Hands the pending summaries to the audit log.
    fn flush_summaries(&mut self) {
        self.conn.flush_summaries();
        self.summary_due = None;
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
                let generation = match &self.conn.target {
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
        let mut event = event;
        if !self.event_hidden.is_empty() && !event.names.is_empty() {
            // A change of secrets this subscriber may not read only: no
            // event at all, so that their names do not leak.
            event.names.retain(|n| !self.event_hidden.contains(n));
            if event.names.is_empty() {
                return Ok(false);
            }
        }
        self.send(&Response::Event(event)).await?;
        Ok(last)
    }

    async fn reply_error(&mut self, code: ErrorCode, msg: &str) -> Result<(), End> {
        self.send(&error_response(code, msg.to_owned())).await
    }

    /// Sends one answer; one over the answer limit is replaced by a
    /// `too_large` error, so the client always gets a reply.
    async fn send(&mut self, response: &Response) -> Result<(), End> {
        let payload = payload(response).map_err(End::Protocol)?;
        let timeout = self.conn.services.config.limits.write_timeout;
        match tokio::time::timeout(timeout, self.framed.send(Bytes::from(payload))).await {
            Ok(sent) => Ok(sent?),
            Err(_) => Err(write_timed_out(&self.conn)),
        }
    }

    /// True when the read buffer holds another whole request frame (the
    /// codec is between frames right after it yielded one).
    fn request_buffered(&self) -> bool {
        whole_frame_len(self.framed.read_buffer()).is_some()
    }

    /// Encodes one answer into the write buffer without flushing it (the
    /// sink writes it out by itself when the buffer grows past its
    /// boundary); one over the answer limit is replaced by a `too_large`
    /// error.
    async fn queue(&mut self, response: &Response) -> Result<(), End> {
        let payload = payload(response).map_err(End::Protocol)?;
        let timeout = self.conn.services.config.limits.write_timeout;
        match tokio::time::timeout(timeout, self.framed.feed(Bytes::from(payload))).await {
            Ok(fed) => Ok(fed?),
            Err(_) => Err(write_timed_out(&self.conn)),
        }
    }

    /// Writes out what is in the write buffer.
    async fn flush(&mut self) -> Result<(), End> {
        let timeout = self.conn.services.config.limits.write_timeout;
        match tokio::time::timeout(timeout, SinkExt::<Bytes>::flush(&mut self.framed)).await {
            Ok(flushed) => Ok(flushed?),
            Err(_) => Err(write_timed_out(&self.conn)),
        }
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

/// The frame and idle timeouts of a connection waiting for its next
/// request, kept with one timer: a request answered only moves
/// `since`; the timer, when it fires, is re-armed for what is left.
struct Waiting {
    since: Instant,
    /// When the timer first found a frame waiting for its rest.
    partial_since: Option<Instant>,
    frame_timeout: std::time::Duration,
    idle_timeout: std::time::Duration,
}

impl Waiting {
    fn new(limits: &crate::config::Limits) -> Self {
        Self {
            since: Instant::now(),
            partial_since: None,
            frame_timeout: limits.frame_timeout,
            idle_timeout: limits.idle_timeout,
        }
    }

    /// The connection did something: waiting starts again.
    fn restart(&mut self) {
        self.since = Instant::now();
        self.partial_since = None;
    }

    /// When the frame timeout runs out, counted from the last restart.
    fn due(&self) -> Instant {
        self.since + self.frame_timeout
    }

    /// The timer fired: ends the connection when a frame was started and
    /// not finished within the frame timeout, or nothing came for the idle
    /// timeout; else says when to look again.
    fn expired(&mut self, partial_frame: bool) -> Result<Instant, End> {
        let now = Instant::now();
        if now < self.due() {
            // Requests came since the timer was armed.
            return Ok(self.due());
        }
        if partial_frame {
            // A frame that started after a long idle time still gets the
            // whole frame timeout, counted from when it was first seen.
            let started = *self.partial_since.get_or_insert(now);
            if now.duration_since(started) >= self.frame_timeout {
                let msg = format!("incomplete frame for {:?}", self.frame_timeout);
                warn!("{msg}: closing");
                return Err(End::Protocol(msg));
            }
            return Ok(started + self.frame_timeout);
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
