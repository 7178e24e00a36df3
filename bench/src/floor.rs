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

/// A floor server process; killed when dropped.
#[derive(Debug)]
pub struct Floor {
    child: Child,
    _dir: tempfile::TempDir,
    socket: PathBuf,
}

impl Floor {
    /// Starts `flux-bench floor-server` for values of `value_len` bytes
    /// and waits until it completes a handshake.
    pub fn start(value_len: usize) -> Result<Self> {
        let dir = short_tempdir("fxf")?;
        let socket = dir.path().join("floor.sock");
        let exe = std::env::current_exe().context("cannot find this executable's path")?;
        let child = Command::new(exe)
            .arg("floor-server")
            .arg("--socket")
            .arg(&socket)
            .arg("--value-len")
            .arg(value_len.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start the floor server")?;
        let mut floor = Self {
            child,
            _dir: dir,
            socket,
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
            name: "floor",
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
pub fn serve(socket: &Path, value_len: usize) -> Result<()> {
    let listener =
        UnixListener::bind(socket).with_context(|| format!("cannot bind {}", socket.display()))?;
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        std::process::exit(0);
    });
    accept_loop(listener, value_len)
}

/// Accepts connections forever, one thread each.
fn accept_loop(listener: UnixListener, value_len: usize) -> Result<()> {
    let welcome: Arc<[u8]> = frame(&Response::Welcome(Welcome {
        version: PROTOCOL_VERSION,
        server: "floor/0".into(),
        scope: Scope::Project("floor".into()),
    }))?
    .into();
    let reply = frame(&Response::Value(bench_value(value_len).into()))?;
    let reply_len = reply.len();
    let replies: Arc<[u8]> = reply.repeat(BATCH).into();
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of file descriptors or similar: back off.
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
        };
        let (welcome, replies) = (welcome.clone(), replies.clone());
        let spawned = std::thread::Builder::new()
            .name("floor-conn".into())
            .stack_size(128 * 1024)
            .spawn(move || serve_connection(stream, &welcome, &replies, reply_len));
        if spawned.is_err() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Answers every complete frame: the first with `welcome`, the others with
/// one reply each (`replies` holds [`BATCH`] of them back to back).
fn serve_connection(mut stream: UnixStream, welcome: &[u8], replies: &[u8], reply_len: usize) {
    let mut buf = vec![0u8; 64 * 1024];
    let (mut start, mut end) = (0usize, 0usize);
    let mut greeted = false;
    loop {
        match stream.read(&mut buf[end..]) {
            Ok(0) => return,
            Ok(n) => end += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
        let mut frames = 0usize;
        while end - start >= 4 {
            let len =
                u32::from_be_bytes([buf[start], buf[start + 1], buf[start + 2], buf[start + 3]])
                    as usize;
            if len > MAX_REQUEST_FRAME_LEN {
                return;
            }
            if end - start < 4 + len {
                break;
            }
            start += 4 + len;
            frames += 1;
        }
        if frames > 0 && !greeted {
            if stream.write_all(welcome).is_err() {
                return;
            }
            greeted = true;
            frames -= 1;
        }
        while frames > 0 {
            let k = frames.min(BATCH);
            if stream.write_all(&replies[..k * reply_len]).is_err() {
                return;
            }
            frames -= k;
        }
        // Keep a partial frame at the front; grow when it does not fit.
        if start == end {
            (start, end) = (0, 0);
        } else if start > 0 {
            buf.copy_within(start..end, 0);
            (start, end) = (0, end - start);
        }
        if end == buf.len() {
            buf.resize(buf.len() * 2, 0);
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

    #[test]
    fn the_floor_answers_like_fluxd() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("f.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        // In a thread here (a test has no floor-server subcommand to run);
        // it ends with the test process.
        std::thread::spawn(move || accept_loop(listener, 40));
        let target = FramedTarget {
            name: "floor",
            socket,
            pid: None,
        };
        let ex = target.exchange("BENCH_40", &bench_value(40)).unwrap();
        for depth in [1, 16] {
            let spec = crate::load::LoadSpec {
                clients: 2,
                depth,
                warmup: 3,
                duration: Duration::from_millis(50),
            };
            let r = crate::load::run(&target, spec, &ex).unwrap();
            assert_eq!(r.errors + r.wrong_values, 0, "{:?}", r.first_problem);
            assert!(r.requests >= depth as u64 * 2, "{}", r.requests);
            assert_eq!(r.client_rps.len(), 2);
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
        let listener = UnixListener::bind(&socket).unwrap();
        std::thread::spawn(move || accept_loop(listener, 40));
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
