//! Project sockets' connections: one thread each, reading and answering
//! `Get` and `GetAll` with blocking calls — read the request, look the
//! value up in the project's snapshot, write the answer — the way the
//! fastest server this machine can run a `get` with does it. The kernel
//! wakes the thread that waits on the connection directly when a request
//! arrives; no hand-off to another thread (on a small VM, a wake-up that
//! crosses to an idle CPU costs tens of microseconds) and no event loop
//! between them.
//!
//! Everything a connection is decided by is [`Conn`]'s, shared with the
//! async [`Session`]: the connection slot, the handshake, each request's
//! access decision, its metrics and audit record, a policy reload. What
//! differs is only how the stream is waited on:
//!
//! - The thread waits for a request in a read with no timeout (a timed
//!   wait costs a kernel timer per request); the [`Watchdog`] wakes it when
//!   a deadline passes — the handshake timeout, a frame started and not
//!   finished within the frame timeout, the idle timeout — or when a
//!   policy reload leaves its peer no role, by shutting the connection's
//!   reading side, and hands its pending audit summaries over when they are
//!   due. So an idle connection sees a reload within a tick of the
//!   watchdog (a second at most); a busy one at its next request.
//! - Answers are written with the socket's send timeout; the client must
//!   take them within the write timeout, counted from the first write that
//!   could not finish at once.
//! - Requests that arrived together are answered together: one `write` for
//!   every whole request read (or for [`PIPELINED_ANSWERS`] bytes).
//! - At shutdown, [`Watchdog::stop`] shuts every connection's reading
//!   side: a thread waiting for a request wakes at once and ends; a request
//!   in flight is still answered.
//! - Any other request — `Set`, `List`, `Subscribe`, … — hands the
//!   connection, with its slot, its budget, its audit tally and the bytes
//!   already read, over to the async [`Session`], which answers that
//!   request first and serves the connection from then on; the thread ends.
//!   Reads are what functions make all day; the rest can wait on the
//!   event loop.
//!
//! A thread costs its stack's touched pages ([`STACK`] is reserved, a few
//! KiB are used) and a 4 KiB read buffer while the connection is idle; the
//! connection budgets (`[limits] max_connections`,
//! `max_connections_per_project`) bound how many there are.

use super::Session;
use super::conn::{Conn, Slot, Tally, error_response, payload};
use super::frames::{End, PIPELINED_ANSWERS, too_large, whole_frame_len, wipe, write_timed_out};
use super::opened::{Opened, Start};
use super::target::Target;
use super::watchdog::{Ended, NEVER, WAKE, Watchdog, Watched, at_us, now_us};
use crate::access::policy::Hidden;
use crate::metrics::ConnectionGauge;
use crate::server::Services;
use crate::server::handlers::{self, Ctx, Reply};
use bytes::{BufMut, BytesMut};
use flux_protocol::ErrorCode;
use flux_protocol::codec::decode;
use flux_protocol::message::{Request, Response};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::OwnedSemaphorePermit;
use tracing::{Instrument, debug, warn};
use zeroize::Zeroize;

/// Stack reserved for a connection's thread.
pub const STACK: usize = 256 * 1024;

/// Bytes read at a time; the buffer grows for a longer request.
const READ_CHUNK: usize = 4096;

/// Serves a project socket's connection on a thread of its own; `permit`
/// is its place in the daemon's connection budget, given back when the
/// connection ends.
pub(crate) fn start(
    stream: tokio::net::UnixStream,
    target: Target,
    services: Arc<Services>,
    permit: OwnedSemaphorePermit,
    watchdog: Arc<Watchdog>,
) {
    let stream = match stream
        .into_std()
        .and_then(|s| s.set_nonblocking(false).map(|()| s))
    {
        Ok(stream) => stream,
        Err(e) => {
            warn!(error = %e, "cannot take the connection off the event loop; closing");
            return;
        }
    };
    let handle = tokio::runtime::Handle::current();
    let token = services.runtime.tracker().token();
    let spawned = std::thread::Builder::new()
        .name("fluxd-conn".into())
        .stack_size(STACK)
        .spawn(move || {
            run(stream, target, services, permit, &watchdog, &handle);
            drop(token);
        });
    if let Err(e) = spawned {
        warn!(error = %e, "cannot start a thread for the connection; closing it");
    }
}

/// Why [`Direct::serve`] returned without an error.
enum Next {
    /// The client closed, or the daemon is stopping.
    Closed,
    /// A request this path does not serve: the async session takes over.
    Handover { slot: Slot, first: Request },
}

fn run(
    stream: UnixStream,
    target: Target,
    services: Arc<Services>,
    permit: OwnedSemaphorePermit,
    watchdog: &Arc<Watchdog>,
    handle: &tokio::runtime::Handle,
) {
    let Some(Opened {
        id,
        peer,
        gauge,
        span,
        reloads,
    }) = Opened::of(&stream, &target, &services)
    else {
        return;
    };
    let entered = span.enter();
    let project = target.project_name().unwrap_or_default().to_owned();
    let conn = Conn::new(target, services.clone(), peer);
    let watch = Arc::new(Watched::new(
        stream.as_raw_fd(),
        conn.peer.clone(),
        project,
        *reloads.borrow(),
        conn.summaries.clone(),
    ));
    if !watchdog.enter(id, watch.clone(), &services) {
        return;
    }
    let mut direct = Direct {
        read: vec![0; READ_CHUNK],
        start: 0,
        filled: 0,
        out: BytesMut::new(),
        since: Instant::now(),
        partial_since: None,
        stream,
        conn,
        watch,
        reloads,
        watchdog,
        handle,
    };
    let next = direct.serve();
    watchdog.leave(id);
    match next {
        Ok(Next::Closed) => debug!("connection closed"),
        Err(e) => debug!(reason = %e, "connection ended"),
        Ok(Next::Handover { slot, first }) => {
            drop(entered);
            direct.hand_over(slot, first, gauge, permit, span);
            return;
        }
    }
    direct.conn.flush_summaries();
    wipe(&mut direct.out);
    direct.read.zeroize();
}

/// What one read brought.
enum Filled {
    Data,
    /// Nothing: the read was interrupted.
    Nothing,
    /// The client closed its side, or the watchdog or the daemon's stop
    /// shut the reading side ([`Watched::ended`] says which).
    End,
}

/// One connection served on its thread.
struct Direct<'a> {
    stream: UnixStream,
    conn: Conn,
    /// Bytes read: `start..filled` are not yet answered.
    read: Vec<u8>,
    start: usize,
    filled: usize,
    /// Answers not yet written.
    out: BytesMut,
    /// The last request answered (or the connection's start): the idle
    /// timeout counts from it.
    since: Instant,
    /// When the frame now waiting for its rest was first seen in part: the
    /// frame timeout counts from it (a frame that starts after a long idle
    /// time gets the whole frame timeout).
    partial_since: Option<Instant>,
    /// What the watchdog knows of this connection: its next deadline, its
    /// summaries' due time, why it shut the connection.
    watch: Arc<Watched>,
    reloads: tokio::sync::watch::Receiver<u64>,
    watchdog: &'a Watchdog,
    /// The async runtime, for the rare read that has to wait on it.
    handle: &'a tokio::runtime::Handle,
}

impl Direct<'_> {
    fn serve(&mut self) -> Result<Next, End> {
        let limits = self.conn.services.config.limits.clone();
        // Reads wait with no timeout: the watchdog wakes the thread.
        self.stream.set_read_timeout(None)?;
        self.stream.set_write_timeout(Some(
            limits.write_timeout.clamp(Duration::from_millis(1), WAKE),
        ))?;
        let slot = match self.conn.take_slot() {
            Ok(slot) => slot,
            Err(msg) => {
                self.reply_now(ErrorCode::LimitReached, &msg)?;
                return Err(End::Protocol(msg));
            }
        };

        // The handshake.
        let hello_by = self.since + limits.handshake_timeout;
        self.watch
            .deadline
            .store(at_us(hello_by), Ordering::Release);
        let len = loop {
            if let Some(len) = self.whole_frame()? {
                break len;
            }
            if self.watchdog.stopped() {
                return Ok(Next::Closed);
            }
            if let Filled::End = self.fill()? {
                if self.watch.ended() != Ended::Deadline {
                    return Ok(Next::Closed);
                }
                let msg = format!(
                    "no handshake within {:?}: send Hello first (see PROTOCOL.md)",
                    limits.handshake_timeout
                );
                self.reply_now(ErrorCode::BadRequest, &msg)?;
                return Err(End::Protocol(msg));
            }
        };
        let frame = self.start + 4..self.start + len;
        self.start += len;
        let hello = self.conn.handshake(&mut self.read[frame]);
        match hello {
            Ok(welcome) => self.queue(&welcome)?,
            Err((code, msg)) => {
                self.reply_now(code, &msg)?;
                return Err(End::Protocol(msg));
            }
        }
        self.since = Instant::now();

        loop {
            // Every whole request read so far, answered in order.
            let mut answered = false;
            while let Some(len) = self.whole_frame()? {
                let frame = self.start + 4..self.start + len;
                self.start += len;
                let request = decode::<Request>(&self.read[frame.clone()]);
                self.read[frame].zeroize();
                answered = true;
                match request {
                    Ok(req @ (Request::Get(_) | Request::GetAll)) => self.answer(req)?,
                    Ok(other) => {
                        self.write_out()?;
                        return Ok(Next::Handover { slot, first: other });
                    }
                    Err(e) => {
                        self.queue(&error_response(ErrorCode::BadRequest, e.to_string()))?;
                    }
                }
                if self.out.len() >= PIPELINED_ANSWERS {
                    self.write_out()?;
                }
            }
            self.write_out()?;
            if answered {
                self.since = Instant::now();
                self.partial_since = None;
            }
            self.between_requests()?;
            self.publish_deadline(&limits);
            if let Filled::End = self.fill()? {
                return self.ended(&limits);
            }
        }
    }

    /// Tells the watchdog when to wake this connection: the frame timeout
    /// after a frame was first seen in part, else the idle timeout after
    /// the last answer.
    fn publish_deadline(&mut self, limits: &crate::config::Limits) {
        let deadline = if self.filled > self.start {
            *self.partial_since.get_or_insert_with(Instant::now) + limits.frame_timeout
        } else {
            self.since + limits.idle_timeout
        };
        self.watch
            .deadline
            .store(at_us(deadline), Ordering::Release);
    }

    /// The reading side is closed: by the client, by the daemon's stop, or
    /// by the watchdog — the connection ends, and says why.
    fn ended(&mut self, limits: &crate::config::Limits) -> Result<Next, End> {
        match self.watch.ended() {
            Ended::No => Ok(Next::Closed),
            Ended::NoRole => Err(End::Protocol("no role left after a policy reload".into())),
            Ended::Deadline if self.filled > self.start => {
                let msg = format!("incomplete frame for {:?}", limits.frame_timeout);
                warn!("{msg}: closing");
                Err(End::Protocol(msg))
            }
            Ended::Deadline => Err(End::Protocol("idle timeout".into())),
        }
    }

    /// Decides, runs, counts and audits one `Get` or `GetAll`; the answer
    /// joins the write buffer.
    fn answer(&mut self, req: Request) -> Result<(), End> {
        let (decided, grant) = self.conn.decide(req);
        let outcome = grant.and_then(|granted| {
            self.conn.admit(&granted)?;
            // Borrowed, not cloned: no shared reference count to bump per
            // request.
            let project = self.conn.target.project();
            // `fluxd dev`'s `.env` saved a moment ago: re-read first.
            if let Some(p) = project.filter(|p| p.may_have_changed()) {
                self.handle.block_on(p.refresh());
            }
            let mut no_events = None;
            let mut ctx = Ctx {
                services: &self.conn.services,
                project,
                peer: &self.conn.peer,
                out: &mut self.out,
                events: &mut no_events,
                hidden: Hidden::default(),
            };
            handlers::run_read(&mut ctx, granted)
        });
        let (reply, tally) = self.conn.conclude(decided, outcome);
        match tally {
            Tally::Quiet => {}
            Tally::Full => self.flush_summaries(),
            Tally::Started(after) => {
                let due = now_us().saturating_add(after.as_micros() as u64);
                self.watch.summary_due.fetch_min(due, Ordering::Relaxed);
            }
        }
        match reply {
            Reply::Message(response) => self.queue(&response),
            Reply::Written => Ok(()),
        }
    }

    fn flush_summaries(&mut self) {
        self.watch.summary_due.store(NEVER, Ordering::Relaxed);
        self.conn.flush_summaries();
    }

    /// Between requests: the daemon stopping, a policy reload, summaries
    /// due.
    fn between_requests(&mut self) -> Result<(), End> {
        if self.watchdog.stopped() {
            return Err(End::Protocol("the daemon is stopping".into()));
        }
        if self.reloads.has_changed().unwrap_or(false) {
            self.reloads.borrow_and_update();
            let mut peer = self.conn.peer.clone();
            peer.refresh_groups();
            if !self.conn.keeps_access(peer) {
                return Err(End::Protocol("no role left after a policy reload".into()));
            }
        }
        // `since` is the time of the last answer: no clock read here.
        if self.watch.summary_due.load(Ordering::Relaxed) <= at_us(self.since) {
            self.flush_summaries();
        }
        Ok(())
    }

    /// The length of the whole frame at `start`, when it is all read; a
    /// length prefix over the request limit is answered and ends the
    /// connection.
    fn whole_frame(&mut self) -> Result<Option<usize>, End> {
        let pending = &self.read[self.start..self.filled];
        if let Some(prefix) = pending.get(..4) {
            let len = u32::from_be_bytes(prefix.try_into().expect("four bytes")) as usize;
            if len > self.conn.services.config.limits.max_request_bytes {
                let msg = too_large(&self.conn);
                let _ = self.reply_now(ErrorCode::TooLarge, &msg);
                return Err(End::Protocol(msg));
            }
        }
        Ok(whole_frame_len(pending))
    }

    /// Reads what the client sent, waiting until something comes or the
    /// reading side is shut.
    fn fill(&mut self) -> Result<Filled, End> {
        if self.start == self.filled {
            self.start = 0;
            self.filled = 0;
        }
        if self.filled == self.read.len() {
            if self.start > 0 {
                // A started frame moves to the front; what it leaves
                // behind is wiped.
                self.read.copy_within(self.start..self.filled, 0);
                self.filled -= self.start;
                self.start = 0;
                self.read[self.filled..].zeroize();
            } else {
                let grown = (self.read.len() * 2)
                    .min(self.conn.services.config.limits.max_request_bytes + 4)
                    .max(self.read.len() + 1);
                let mut bigger = vec![0; grown];
                bigger[..self.filled].copy_from_slice(&self.read[..self.filled]);
                self.read.zeroize();
                self.read = bigger;
            }
        }
        match self.stream.read(&mut self.read[self.filled..]) {
            Ok(0) => Ok(Filled::End),
            Ok(n) => {
                self.filled += n;
                Ok(Filled::Data)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(Filled::Nothing)
            }
            Err(e) => Err(End::Io(e)),
        }
    }

    /// Encodes one answer into the write buffer.
    fn queue(&mut self, response: &Response) -> Result<(), End> {
        let mut payload = payload(response).map_err(End::Protocol)?;
        self.out.reserve(4 + payload.len());
        self.out.put_u32(payload.len() as u32);
        self.out.put_slice(&payload);
        payload.zeroize();
        Ok(())
    }

    /// Answers with an error at once.
    fn reply_now(&mut self, code: ErrorCode, msg: &str) -> Result<(), End> {
        self.queue(&error_response(code, msg.to_owned()))?;
        self.write_out()
    }

    /// Writes out the write buffer; the client must take it within the
    /// write timeout.
    fn write_out(&mut self) -> Result<(), End> {
        let mut done = 0;
        let mut blocked_since: Option<Instant> = None;
        while done < self.out.len() {
            match self.stream.write(&self.out[done..]) {
                Ok(0) => return Err(End::Io(io::ErrorKind::WriteZero.into())),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(End::Io(e)),
            }
            if done < self.out.len() {
                let since = *blocked_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= self.conn.services.config.limits.write_timeout {
                    return Err(write_timed_out(&self.conn));
                }
            }
        }
        self.out.clear();
        Ok(())
    }

    /// Gives the connection to the async session, which answers `first`
    /// and serves the connection from then on.
    fn hand_over(
        self,
        slot: Slot,
        first: Request,
        gauge: ConnectionGauge,
        permit: OwnedSemaphorePermit,
        span: tracing::Span,
    ) {
        let Direct {
            stream,
            conn,
            read,
            start,
            filled,
            mut out,
            reloads,
            handle,
            ..
        } = self;
        wipe(&mut out);
        let mut rest = BytesMut::from(&read[start..filled]);
        let mut read = read;
        read.zeroize();
        let _runtime = handle.enter();
        let stream = match stream
            .set_nonblocking(true)
            .and_then(|()| tokio::net::UnixStream::from_std(stream))
        {
            Ok(stream) => stream,
            Err(e) => {
                let _entered = span.enter();
                warn!(error = %e, "cannot hand the connection to the event loop; closing");
                let mut conn = conn;
                conn.flush_summaries();
                wipe(&mut rest);
                return;
            }
        };
        let cancel = conn.services.runtime.shutdown().clone();
        let tracker = conn.services.runtime.tracker().clone();
        let session = Session::new(stream, conn, rest);
        tracker.spawn_on(
            async move {
                session
                    .run_to_end(cancel, reloads, Start::Resumed { slot, first }, gauge)
                    .await;
                drop(permit);
            }
            .instrument(span),
            handle,
        );
    }
}
