//! The comparison point: `redis-server` on a Unix socket, spoken to in RESP.
//!
//! [`RedisServer::start`] runs `redis-server` with only a Unix socket
//! (`--port 0`) in a temp dir, no persistence (`--save '' --appendonly
//! no`), and waits for `PING` to answer. [`RedisTarget`] gives the load
//! client ([`crate::load`]) a pre-encoded `GET` (an array of two bulk
//! strings) and the exact bulk-string answer, so Redis is read by the same
//! blocking client, with the same system calls per request, as fluxd and
//! the floor. Set-up commands (`PING`, `SET`) go through a minimal blocking
//! RESP client.

use crate::fixture::describe;
use crate::fluxd_process::short_tempdir;
use crate::load::{Exchange, Target};
use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

    /// Redis holding the `get` benchmark's value of each size under
    /// [`crate::bench_get::key`]; without a `redis-server` binary, `None`,
    /// said on stderr (SKIPPED) and in the report's notes as `skipped`.
    pub fn start_with_values(
        bin: Option<&Path>,
        sizes: &[usize],
        report: &mut crate::report::Report,
        skipped: &str,
    ) -> Result<Option<Self>> {
        let Some(bin) = bin else {
            eprintln!("SKIPPED: redis-server not found: {skipped}");
            report
                .notes
                .push(format!("redis-server not found: {skipped}"));
            return Ok(None);
        };
        let redis = Self::start(bin)?;
        for &size in sizes {
            let value = crate::fixture::bench_value(size);
            redis.set(&crate::bench_get::key(size), value.as_bytes())?;
        }
        Ok(Some(redis))
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
            pid: self.child.id(),
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
    pid: u32,
}

impl Target for RedisTarget {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn connect(&self) -> Result<UnixStream> {
        UnixStream::connect(&self.socket)
            .with_context(|| format!("cannot connect to {}", self.socket.display()))
    }

    fn exchange(&self, key: &str, value: &str) -> Result<Exchange> {
        let mut reply = format!("${}\r\n", value.len()).into_bytes();
        reply.extend_from_slice(value.as_bytes());
        reply.extend_from_slice(b"\r\n");
        Ok(Exchange {
            request: command_bytes(&[b"GET", key.as_bytes()]),
            reply,
            what: format!("bulk string ({})", describe(value)),
        })
    }

    fn pid(&self) -> Option<u32> {
        Some(self.pid)
    }

    fn explain(&self, got: &[u8]) -> String {
        explain_resp(got)
    }
}

/// A command as a RESP array of bulk strings.
fn command_bytes(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Describes the RESP answer at the start of `got`: an error line in full
/// (Redis errors carry no value), a bulk string by length and hash.
fn explain_resp(got: &[u8]) -> String {
    let Some(eol) = got.windows(2).position(|w| w == b"\r\n") else {
        return format!("{} bytes without a complete RESP header", got.len());
    };
    let header = String::from_utf8_lossy(&got[..eol]);
    match header.as_bytes().first() {
        Some(b'-') | Some(b'+') | Some(b':') => format!("the answer {header:?}"),
        Some(b'$') => match header[1..].parse::<i64>() {
            Ok(n) if n < 0 => "a nil bulk string (no such key)".into(),
            Ok(n) => {
                let body = &got[eol + 2..];
                match body.get(..n as usize) {
                    Some(b) => format!("a bulk string ({})", describe(&String::from_utf8_lossy(b))),
                    None => format!(
                        "a bulk string announcing {n} bytes of which {} arrived",
                        body.len()
                    ),
                }
            }
            Err(_) => "a malformed bulk string header".into(),
        },
        _ => format!("an unexpected RESP answer of {} bytes", got.len()),
    }
}

/// A blocking RESP connection for set-up commands.
struct RespConn {
    stream: BufReader<UnixStream>,
    line: Vec<u8>,
}

impl RespConn {
    fn connect(socket: &Path) -> Result<Self> {
        let stream = UnixStream::connect(socket)
            .with_context(|| format!("cannot connect to {}", socket.display()))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Self {
            stream: BufReader::new(stream),
            line: Vec::with_capacity(64),
        })
    }

    /// Sends one command; returns a bulk string's bytes, or nothing for a
    /// simple string.
    fn command(&mut self, args: &[&[u8]]) -> Result<Vec<u8>> {
        self.stream.get_mut().write_all(&command_bytes(args))?;
        self.line.clear();
        if self.stream.read_until(b'\n', &mut self.line)? == 0 {
            bail!("redis closed the connection");
        }
        let text = std::str::from_utf8(&self.line)
            .context("non-UTF-8 RESP header")?
            .trim_end();
        match text.as_bytes().first() {
            Some(b'+') => Ok(Vec::new()),
            Some(b'-') => bail!("redis error: {}", &text[1..]),
            Some(b'$') => {
                let len: i64 = text[1..].parse().context("bad bulk length")?;
                if len < 0 {
                    bail!("redis: no such key");
                }
                let mut out = vec![0u8; len as usize + 2];
                self.stream.read_exact(&mut out)?;
                out.truncate(len as usize);
                Ok(out)
            }
            _ => bail!("unexpected RESP answer type"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_get_and_explains_answers_without_values() {
        assert_eq!(
            command_bytes(&[b"GET", b"BENCH_40"]),
            b"*2\r\n$3\r\nGET\r\n$8\r\nBENCH_40\r\n"
        );
        assert_eq!(explain_resp(b"-ERR wrong\r\n"), "the answer \"-ERR wrong\"");
        assert!(explain_resp(b"$-1\r\n").contains("nil"));
        let text = explain_resp(b"$5\r\nhello\r\n");
        assert!(text.starts_with("a bulk string (5 bytes") && !text.contains("hello"));
        assert!(explain_resp(b"$9\r\nhel").contains("announcing 9"));
    }
}
