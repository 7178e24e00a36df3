//! The floor: what a `get` costs when the server does no work at all, and
//! the framed target shared by fluxd and the floor.
//!
//! The floor is the cheapest server this machine can run for the protocol:
//! a blocking, thread-per-connection server (std only, no async runtime)
//! that speaks the same length-prefixed frames as fluxd but never decodes
//! them. It answers the first frame of a connection with a pre-encoded
//! `Welcome` and every later frame with the pre-encoded `Value` frame — the
//! exact bytes fluxd sends for the benchmark's value. Each `read` takes
//! whatever the socket holds; the answers to every complete frame in it go
//! out in one `write` (one frame in, one frame out in the closed loop; up to
//! a whole batch in the pipelined mode). Nothing is allocated per request.
//!
//! It runs as a child process (`flux-bench floor-server --socket PATH
//! --value-len N`, a hidden subcommand), like fluxd and redis-server: its
//! CPU time is read from `/proc` the same way, and it does not share the
//! load client's process or scheduler. It exits when its standard input
//! closes, so it never outlives the benchmark.
//!
//! fluxd / floor, both measured with the same [`FramedTarget`] client, is
//! the daemon's own cost (decode, access check, lookup, encode, runtime,
//! audit) over the bare socket round trip.
//!
//! The same do-nothing server also comes in the other shapes a server of
//! this protocol could take ([`Design`], `--design`): one event loop
//! (epoll, level-triggered, every connection non-blocking, like Redis), and
//! one event loop per CPU with the connections dealt out in turn and each
//! loop's thread pinned to its CPU. `flux-bench floors`
//! ([`crate::bench_floors`]) measures them beside the thread per
//! connection and Redis: what any server design reaches on this machine.

use crate::fixture::{bench_value, describe};
use crate::fluxd_process::short_tempdir;
use crate::load::{Exchange, Target};
use anyhow::{Context, Result, bail};
use flux_protocol::codec;
use flux_protocol::limits::MAX_REQUEST_FRAME_LEN;
use flux_protocol::message::{Get, PROTOCOL_VERSION, Request, Response, Scope, Welcome};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Answers written with one `write`, at most: more complete frames in one
/// read are answered in several writes of this many.
const BATCH: usize = 64;

/// How a floor server waits on its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Design {
    /// A blocking thread per connection: the `get` benchmark's floor.
    Threads,
    /// One event loop for every connection.
    EventLoop,
    /// One event loop per CPU, each pinned to its CPU; connections dealt
    /// out in turn.
    LoopPerCpu,
}

impl Design {
    pub const ALL: [Design; 3] = [Design::Threads, Design::EventLoop, Design::LoopPerCpu];

    pub fn name(self) -> &'static str {
        match self {
            Design::Threads => "threads",
            Design::EventLoop => "event-loop",
            Design::LoopPerCpu => "loop-per-cpu",
        }
    }
}

/// A floor server process; killed when dropped.
#[derive(Debug)]
pub struct Floor {
    child: Child,
    _dir: tempfile::TempDir,
    socket: PathBuf,
    design: Design,
}

impl Floor {
    /// Starts `flux-bench floor-server` for values of `value_len` bytes
    /// and waits until it completes a handshake.
    pub fn start(value_len: usize) -> Result<Self> {
        Self::start_design(value_len, Design::Threads)
    }

    /// [`Floor::start`] for a floor server of another [`Design`].
    pub fn start_design(value_len: usize, design: Design) -> Result<Self> {
        let dir = short_tempdir("fxf")?;
        let socket = dir.path().join("floor.sock");
        let exe = std::env::current_exe().context("cannot find this executable's path")?;
        let child = Command::new(exe)
            .arg("floor-server")
            .arg("--socket")
            .arg(&socket)
            .arg("--value-len")
            .arg(value_len.to_string())
            .arg("--design")
            .arg(design.name())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start the floor server")?;
        let mut floor = Self {
            child,
            _dir: dir,
            socket,
            design,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if crate::fluxd_process::handshake(&floor.socket).is_ok() {
                return Ok(floor);
            }
            if let Ok(Some(status)) = floor.child.try_wait() {
                bail!("the floor server exited with {status} before it was ready");
            }
            if Instant::now() > deadline {
                bail!("the floor server is not ready after 20 s");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// A load target on this server.
    pub fn target(&self) -> FramedTarget {
        FramedTarget {
            name: match self.design {
                Design::Threads => "floor",
                Design::EventLoop => "floor (event loop)",
                Design::LoopPerCpu => "floor (loop per CPU)",
            },
            socket: self.socket.clone(),
            pid: Some(self.child.id()),
        }
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A whole frame (prefix and payload) for a message.
fn frame<T: serde::Serialize>(msg: &T) -> Result<Vec<u8>> {
    let payload = codec::encode(msg)?;
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&payload);
    Ok(out)
}

/// The floor server itself (`flux-bench floor-server`): serves `socket`
/// until standard input closes.
pub fn serve(socket: &Path, value_len: usize, design: Design) -> Result<()> {
    let listener =
        UnixListener::bind(socket).with_context(|| format!("cannot bind {}", socket.display()))?;
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        std::process::exit(0);
    });
    let answers = Answers::new(value_len)?;
    match design {
        Design::Threads => accept_loop(listener, &answers),
        Design::EventLoop => event_loop::serve(listener, answers, 1, false),
        Design::LoopPerCpu => {
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            event_loop::serve(listener, answers, cpus, true)
        }
    }
}

/// What a floor server answers, encoded once.
#[derive(Debug, Clone)]
struct Answers {
    welcome: Arc<[u8]>,
    /// [`BATCH`] `Value` frames back to back.
    replies: Arc<[u8]>,
    reply_len: usize,
}

impl Answers {
    fn new(value_len: usize) -> Result<Self> {
        let welcome = frame(&Response::Welcome(Welcome {
            version: PROTOCOL_VERSION,
            server: "floor/0".into(),
            scope: Scope::Project("floor".into()),
        }))?;
        let reply = frame(&Response::Value(bench_value(value_len).into()))?;
        Ok(Self {
            welcome: welcome.into(),
            reply_len: reply.len(),
            replies: reply.repeat(BATCH).into(),
        })
    }
}

/// Accepts connections forever, one thread each.
fn accept_loop(listener: UnixListener, answers: &Answers) -> Result<()> {
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of file descriptors or similar: back off.
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
        };
        let answers = answers.clone();
        let spawned = std::thread::Builder::new()
            .name("floor-conn".into())
            .stack_size(128 * 1024)
            .spawn(move || serve_connection(stream, &answers));
        if spawned.is_err() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Answers every complete frame: the first with `welcome`, the others with
/// one reply each (`replies` holds [`BATCH`] of them back to back).
fn serve_connection(mut stream: UnixStream, answers: &Answers) {
    let mut conn = Framed::default();
    loop {
        match stream.read(conn.unfilled()) {
            Ok(0) => return,
            Ok(n) => conn.filled(n),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
        if conn.answer(&mut stream, answers).is_err() {
            return;
        }
    }
}

/// One connection's bytes read and not yet answered.
#[derive(Debug)]
struct Framed {
    buf: Vec<u8>,
    end: usize,
    greeted: bool,
}

impl Default for Framed {
    fn default() -> Self {
        Self {
            buf: vec![0u8; 64 * 1024],
            end: 0,
            greeted: false,
        }
    }
}

impl Framed {
    /// Where the next read goes.
    fn unfilled(&mut self) -> &mut [u8] {
        &mut self.buf[self.end..]
    }

    fn filled(&mut self, n: usize) {
        self.end += n;
    }

    /// Answers every complete frame read so far: the first of the
    /// connection with the `Welcome`, the others with a `Value` each, up to
    /// [`BATCH`] answers per `write`. An error ends the connection (a
    /// frame over the limit, or a failed write).
    fn answer(&mut self, stream: &mut UnixStream, answers: &Answers) -> std::io::Result<()> {
        let (buf, end) = (&mut self.buf, &mut self.end);
        let mut start = 0;
        let mut frames = 0usize;
        while *end - start >= 4 {
            let len =
                u32::from_be_bytes([buf[start], buf[start + 1], buf[start + 2], buf[start + 3]])
                    as usize;
            if len > MAX_REQUEST_FRAME_LEN {
                return Err(ErrorKind::InvalidData.into());
            }
            if *end - start < 4 + len {
                break;
            }
            start += 4 + len;
            frames += 1;
        }
        if frames > 0 && !self.greeted {
            write_all(stream, &answers.welcome)?;
            self.greeted = true;
            frames -= 1;
        }
        while frames > 0 {
            let k = frames.min(BATCH);
            write_all(stream, &answers.replies[..k * answers.reply_len])?;
            frames -= k;
        }
        // Keep a partial frame at the front; grow when it does not fit.
        buf.copy_within(start..*end, 0);
        *end -= start;
        if *end == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        Ok(())
    }
}

/// `write_all` that also works on a non-blocking socket (an event loop's):
/// a full socket buffer is waited out by yielding. The load client always
/// reads its answers, so the wait is short; a server for real clients
/// would keep the rest and wait for the socket to be writable.
fn write_all(stream: &mut UnixStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        match stream.write(bytes) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::yield_now(),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The event-loop designs: each loop waits on its connections with
/// `epoll_wait`, reads whatever a ready socket holds and answers it at
/// once; the accepting thread deals new connections out to the loops in
/// turn and wakes the loop through an eventfd.
mod event_loop {
    use super::{Answers, Framed};
    use anyhow::{Context, Result};
    use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
    use nix::sys::eventfd::{EfdFlags, EventFd};
    use std::io::{ErrorKind, Read};
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::sync::Arc;
    use std::sync::mpsc::{Receiver, Sender, channel};

    /// The eventfd's token; a connection's is its index in the loop's slab.
    const WAKE: u64 = u64::MAX;

    struct Loop {
        wake: Arc<EventFd>,
        new: Sender<UnixStream>,
    }

    pub(super) fn serve(
        listener: UnixListener,
        answers: Answers,
        loops: usize,
        pin: bool,
    ) -> Result<()> {
        let cpus = allowed_cpus();
        let mut started = Vec::new();
        for i in 0..loops.max(1) {
            let epoll = Arc::new(Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?);
            let wake = Arc::new(EventFd::from_flags(
                EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK,
            )?);
            epoll.add(&*wake, EpollEvent::new(EpollFlags::EPOLLIN, WAKE))?;
            let (new, arrived) = channel();
            let cpu = (pin && !cpus.is_empty()).then(|| cpus[i % cpus.len()]);
            let (e, w, a) = (epoll.clone(), wake.clone(), answers.clone());
            std::thread::Builder::new()
                .name("floor-loop".into())
                .spawn(move || run(&e, &w, &arrived, &a, cpu))
                .context("cannot start an event loop")?;
            started.push(Loop { wake, new });
        }
        let mut next = 0;
        loop {
            let Ok((stream, _)) = listener.accept() else {
                std::thread::sleep(std::time::Duration::from_millis(1));
                continue;
            };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let l = &started[next % started.len()];
            next += 1;
            if l.new.send(stream).is_ok() {
                l.wake.write(1)?;
            }
        }
    }

    fn allowed_cpus() -> Vec<usize> {
        let Ok(set) = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) else {
            return Vec::new();
        };
        (0..nix::sched::CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .collect()
    }

    fn run(
        epoll: &Epoll,
        wake: &EventFd,
        arrived: &Receiver<UnixStream>,
        answers: &Answers,
        cpu: Option<usize>,
    ) {
        if let Some(cpu) = cpu {
            let mut set = nix::sched::CpuSet::new();
            if set.set(cpu).is_ok() {
                let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
            }
        }
        let mut conns: Vec<Option<(UnixStream, Framed)>> = Vec::new();
        let mut free: Vec<usize> = Vec::new();
        let mut events = vec![EpollEvent::empty(); 256];
        loop {
            let n = match epoll.wait(&mut events, EpollTimeout::NONE) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return,
            };
            for ev in &events[..n] {
                let token = ev.data();
                if token == WAKE {
                    let _ = wake.read();
                    while let Ok(stream) = arrived.try_recv() {
                        let slot = free.pop().unwrap_or_else(|| {
                            conns.push(None);
                            conns.len() - 1
                        });
                        let event = EpollEvent::new(EpollFlags::EPOLLIN, slot as u64);
                        if epoll.add(&stream, event).is_ok() {
                            conns[slot] = Some((stream, Framed::default()));
                        } else {
                            free.push(slot);
                        }
                    }
                    continue;
                }
                let slot = token as usize;
                let Some(Some((stream, conn))) = conns.get_mut(slot) else {
                    continue;
                };
                let alive = match stream.read(conn.unfilled()) {
                    Ok(0) => false,
                    Ok(n) => {
                        conn.filled(n);
                        conn.answer(stream, answers).is_ok()
                    }
                    Err(e) => matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted),
                };
                if !alive {
                    if let Some((stream, _)) = conns[slot].take() {
                        let _ = epoll.delete(&stream);
                    }
                    free.push(slot);
                }
            }
        }
    }
}

/// fluxd or the floor: the same frames, read by the same client.
#[derive(Debug)]
pub struct FramedTarget {
    pub name: &'static str,
    pub socket: PathBuf,
    /// The server process, for its CPU time.
    pub pid: Option<u32>,
}

impl Target for FramedTarget {
    fn name(&self) -> &'static str {
        self.name
    }

    fn connect(&self) -> Result<UnixStream> {
        crate::fluxd_process::handshake(&self.socket)
            .with_context(|| format!("{}: cannot connect and complete a handshake", self.name))
    }

    fn exchange(&self, key: &str, value: &str) -> Result<Exchange> {
        Ok(Exchange {
            request: frame(&Request::Get(Get { name: key.into() }))?,
            reply: frame(&Response::Value(value.into()))?,
            what: format!("Value frame ({})", describe(value)),
        })
    }

    fn pid(&self) -> Option<u32> {
        self.pid
    }

    fn explain(&self, got: &[u8]) -> String {
        explain_frame(got)
    }
}

/// Describes the frame at the start of `got`: its kind, and for a value
/// its length and hash; an error's code and message (never a value).
fn explain_frame(got: &[u8]) -> String {
    let Some(prefix) = got.get(..4) else {
        return format!("{} bytes, less than a frame's length prefix", got.len());
    };
    let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    let Some(payload) = got.get(4..4 + len) else {
        return format!(
            "a frame announcing {len} bytes of which {} arrived",
            got.len() - 4
        );
    };
    match codec::decode::<Response>(payload) {
        Ok(Response::Value(v)) => format!("a Value frame ({})", describe(v.expose())),
        Ok(Response::Error(e)) => format!("an Error frame: {:?}: {}", e.code, e.message),
        Ok(other) => {
            let kind = format!("{other:?}");
            let kind = kind.split(['(', ' ', '{']).next().unwrap_or("").to_owned();
            format!("a {kind} frame")
        }
        Err(e) => format!("a {len}-byte frame that does not decode as a response: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flux_protocol::ErrorCode;
    use flux_protocol::message::ErrorReply;

    #[test]
    fn explains_frames_without_showing_values() {
        let v = bench_value(40);
        let got = frame(&Response::Value(v.clone().into())).unwrap();
        let text = explain_frame(&got);
        assert!(text.starts_with("a Value frame (40 bytes"), "{text}");
        assert!(!text.contains(&v[..12]), "{text}");
        let err = frame(&Response::Error(ErrorReply {
            code: ErrorCode::NotFound,
            message: "no secret BENCH_40".into(),
        }))
        .unwrap();
        assert!(explain_frame(&err).contains("no secret BENCH_40"));
        assert!(explain_frame(&got[..10]).contains("announcing"));
        assert!(explain_frame(&[0, 0]).contains("less than"));
    }

    /// Serves `listener` as a floor of `design` on threads of this test
    /// process (a test has no floor-server subcommand to run); they end
    /// with the test process.
    fn serve_here(listener: UnixListener, design: Design) {
        let answers = Answers::new(40).unwrap();
        std::thread::spawn(move || match design {
            Design::Threads => accept_loop(listener, &answers),
            Design::EventLoop => event_loop::serve(listener, answers, 1, false),
            Design::LoopPerCpu => event_loop::serve(listener, answers, 2, true),
        });
    }

    #[test]
    fn every_floor_design_answers_like_fluxd() {
        for design in Design::ALL {
            let dir = tempfile::tempdir().unwrap();
            let socket = dir.path().join("f.sock");
            serve_here(UnixListener::bind(&socket).unwrap(), design);
            let target = FramedTarget {
                name: "floor",
                socket,
                pid: None,
            };
            let ex = target.exchange("BENCH_40", &bench_value(40)).unwrap();
            // Closed loop and pipelined, on more connections than loops,
            // twice (connections closed and their slots reused).
            for depth in [1, 16, 1] {
                let spec = crate::load::LoadSpec {
                    clients: 3,
                    depth,
                    warmup: 3,
                    duration: Duration::from_millis(50),
                };
                let r = crate::load::run(&target, spec, &ex).unwrap();
                assert_eq!(
                    r.errors + r.wrong_values,
                    0,
                    "{design:?}: {:?}",
                    r.first_problem
                );
                assert!(r.requests >= depth as u64 * 3, "{design:?}: {}", r.requests);
                assert_eq!(r.client_rps.len(), 3);
            }
        }
    }

    #[test]
    fn the_c_client_reads_the_floor_and_refuses_a_wrong_value() {
        let c = match crate::cload::CClient::build() {
            Ok(c) => c,
            Err(why) => {
                eprintln!("SKIPPED: {why}");
                return;
            }
        };
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("f.sock");
        serve_here(UnixListener::bind(&socket).unwrap(), Design::Threads);
        let value = bench_value(40);
        let r = c
            .run(&socket, "BENCH_40", &value, 2, Duration::from_millis(50), 3)
            .unwrap();
        assert!(r.requests > 0 && r.wall_secs >= 0.05, "{r:?}");
        assert_eq!(r.client_rps.len(), 2);
        assert_eq!(r.samples.len() as u64, r.requests);
        let mut wrong = value.clone().into_bytes();
        wrong[39] ^= 1;
        let wrong = String::from_utf8(wrong).unwrap();
        let e = c
            .run(&socket, "BENCH_40", &wrong, 1, Duration::from_millis(50), 0)
            .unwrap_err();
        assert!(format!("{e:#}").contains("differs from byte"), "{e:#}");
    }
}
