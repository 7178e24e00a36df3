//! The comparison point: `redis-server` on a Unix socket, spoken to in RESP.
//!
//! [`RedisServer::start`] runs `redis-server` with only a Unix socket
//! (`--port 0`) in a temp dir, no persistence (`--save '' --appendonly
//! no`), and waits for `PING` to answer. [`RedisTarget`] is a minimal RESP
//! client: `GET` is sent as an array of bulk strings and the answer parsed
//! as one bulk string. Like `flux_protocol::blocking::Client`, each
//! connection drives a tokio `UnixStream` on its own current-thread
//! runtime, so both servers are measured through the same client I/O model
//! (non-blocking socket, epoll) and the ratio is about the servers.

use crate::fluxd::short_tempdir;
use crate::load::{Conn, Target};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// A `redis-server` process serving a Unix socket only.
#[derive(Debug)]
pub struct RedisServer {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    child: Child,
}

impl RedisServer {
    /// The binary to run: `explicit`, else `redis-server` on PATH or in
    /// /usr/bin. `None` when it is not installed.
    pub fn find(explicit: Option<&Path>) -> Option<PathBuf> {
        if let Some(p) = explicit {
            return p.is_file().then(|| p.to_path_buf());
        }
        let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        dirs.push("/usr/bin".into());
        dirs.into_iter()
            .map(|d| d.join("redis-server"))
            .find(|p| p.is_file())
    }

    /// Starts `bin` on a temp Unix socket and waits until it answers.
    pub fn start(bin: &Path) -> Result<Self> {
        let dir = short_tempdir("fxr")?;
        let socket = dir.path().join("redis.sock");
        let child = Command::new(bin)
            .arg("--port")
            .arg("0")
            .arg("--unixsocket")
            .arg(&socket)
            .arg("--unixsocketperm")
            .arg("700")
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("no")
            .arg("--dir")
            .arg(dir.path())
            .arg("--daemonize")
            .arg("no")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let mut server = Self {
            _dir: dir,
            socket,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut c) = RespConn::connect(&server.socket)
                && c.command(&[b"PING"]).is_ok()
            {
                return Ok(server);
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                bail!("redis-server exited with {status} before it was ready");
            }
            if Instant::now() > deadline {
                bail!("redis-server not ready after 20 s");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stores `value` under `key`.
    pub fn set(&self, key: &str, value: &[u8]) -> Result<()> {
        let mut c = RespConn::connect(&self.socket)?;
        c.command(&[b"SET", key.as_bytes(), value])?;
        Ok(())
    }

    /// A load target on this server.
    pub fn target(&self) -> RedisTarget {
        RedisTarget {
            socket: self.socket.clone(),
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connections to a [`RedisServer`].
#[derive(Debug)]
pub struct RedisTarget {
    socket: PathBuf,
}

impl Target for RedisTarget {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn connect(&self) -> Result<Box<dyn Conn>> {
        Ok(Box::new(RespConn::connect(&self.socket)?))
    }
}

/// One RESP connection (see the module docs).
struct RespConn {
    rt: tokio::runtime::Runtime,
    stream: BufReader<UnixStream>,
    request: Vec<u8>,
    line: Vec<u8>,
}

impl RespConn {
    fn connect(socket: &Path) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let stream = rt
            .block_on(UnixStream::connect(socket))
            .with_context(|| format!("cannot connect to {}", socket.display()))?;
        Ok(Self {
            rt,
            stream: BufReader::with_capacity(16 * 1024, stream),
            request: Vec::with_capacity(256),
            line: Vec::with_capacity(64),
        })
    }

    /// Sends one command; returns the answer as bytes (bulk string) or an
    /// empty vector for a simple string. `out` receives bulk data.
    fn command(&mut self, args: &[&[u8]]) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.call(args, &mut out)?;
        Ok(out)
    }

    fn call(&mut self, args: &[&[u8]], out: &mut Vec<u8>) -> Result<()> {
        self.request.clear();
        self.request
            .extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            self.request
                .extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            self.request.extend_from_slice(a);
            self.request.extend_from_slice(b"\r\n");
        }
        let Self {
            rt,
            stream,
            request,
            line,
        } = self;
        rt.block_on(async {
            stream.get_mut().write_all(request).await?;
            line.clear();
            if stream.read_until(b'\n', line).await? == 0 {
                bail!("redis closed the connection");
            }
            let text = std::str::from_utf8(line)
                .context("non-UTF-8 RESP header")?
                .trim_end();
            out.clear();
            match text.as_bytes().first() {
                Some(b'+') => Ok(()),
                Some(b'-') => bail!("redis error: {}", &text[1..]),
                Some(b'$') => {
                    let len: i64 = text[1..].parse().context("bad bulk length")?;
                    if len < 0 {
                        bail!("redis: no such key");
                    }
                    out.resize(len as usize + 2, 0);
                    stream.read_exact(out).await?;
                    out.truncate(len as usize);
                    Ok(())
                }
                _ => bail!("unexpected RESP answer type"),
            }
        })
    }
}

impl Conn for RespConn {
    fn get(&mut self, key: &str, out: &mut Vec<u8>) -> Result<()> {
        self.call(&[b"GET", key.as_bytes()], out)
    }
}
