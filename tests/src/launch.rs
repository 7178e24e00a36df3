//! Starting the real `fluxd`: the one launcher behind [`crate::TestDaemon`]
//! (which panics on failure, as tests do) and the benchmarks' daemon (which
//! reports failure as an error and times start-up).
//!
//! [`spawn_ready`] spawns a prepared command with stderr appended to a log
//! file, then polls the control socket with a raw [`handshake`] — the
//! cheapest readiness probe, no client library or runtime per attempt —
//! until fluxd answers `Welcome`, it exits, or the deadline passes. Never a
//! fixed sleep.

use flux_protocol::codec::{self, read_frame, write_frame};
use flux_protocol::limits::MAX_RESPONSE_FRAME_LEN;
use flux_protocol::message::{Hello, PROTOCOL_VERSION, Request, Response};
use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How often [`spawn_ready`] probes the control socket.
const POLL: Duration = Duration::from_millis(1);

/// A temp dir under `/tmp` named `<prefix>…`: short, because Unix socket
/// paths are limited to 107 bytes.
pub fn short_tempdir(prefix: &str) -> io::Result<tempfile::TempDir> {
    tempfile::Builder::new().prefix(prefix).tempdir_in("/tmp")
}

/// A `fluxd` command on a state and a runtime folder, logging at `level`
/// with `RUST_LOG` removed so the caller's environment cannot change it.
pub fn fluxd_command(bin: &Path, state_dir: &Path, runtime_dir: &Path, level: &str) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("--state-dir")
        .arg(state_dir)
        .arg("--runtime-dir")
        .arg(runtime_dir)
        .arg("--log-level")
        .arg(level)
        .env_remove("RUST_LOG");
    cmd
}

/// Why fluxd did not become ready.
#[derive(Debug)]
pub enum LaunchError {
    /// The log file could not be opened.
    Log { path: PathBuf, source: io::Error },
    /// The executable could not be started.
    Spawn { bin: PathBuf, source: io::Error },
    /// fluxd exited before its control socket answered.
    Exited { status: ExitStatus, log: String },
    /// fluxd still ran but had not answered within the deadline (it is
    /// killed).
    NotReady { after: Duration, log: String },
}

impl fmt::Display for LaunchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Log { path, source } => write!(f, "cannot open {}: {source}", path.display()),
            Self::Spawn { bin, source } => write!(f, "cannot start {}: {source}", bin.display()),
            Self::Exited { status, log } => {
                write!(
                    f,
                    "fluxd exited with {status} before it was ready; its log:\n{log}"
                )
            }
            Self::NotReady { after, log } => {
                write!(f, "fluxd not ready after {after:?}; its log:\n{log}")
            }
        }
    }
}

impl std::error::Error for LaunchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Log { source, .. } | Self::Spawn { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Spawns `cmd` (stdin and stdout null, stderr appended to `log`) and waits
/// until `control` completes a handshake. Returns the process and the
/// start-up time, spawn to first `Welcome`. On failure the process is
/// reaped and the error carries the last `log_lines` lines of the log
/// (fluxd never logs values).
pub fn spawn_ready(
    cmd: &mut Command,
    log: &Path,
    control: &Path,
    timeout: Duration,
    log_lines: usize,
) -> Result<(Child, Duration), LaunchError> {
    let log_file = File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|source| LaunchError::Log {
            path: log.to_path_buf(),
            source,
        })?;
    let spawned = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .map_err(|source| LaunchError::Spawn {
            bin: PathBuf::from(cmd.get_program()),
            source,
        })?;
    loop {
        if handshake(control).is_ok() {
            return Ok((child, spawned.elapsed()));
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(LaunchError::Exited {
                status,
                log: tail(log, log_lines),
            });
        }
        if spawned.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(LaunchError::NotReady {
                after: timeout,
                log: tail(log, log_lines),
            });
        }
        std::thread::sleep(POLL);
    }
}

/// The last `lines` lines of a log file (all of it for `usize::MAX`).
pub fn tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Opens a raw connection and completes the handshake; the stream is left
/// with no read timeout, ready for requests.
pub fn handshake(socket: &Path) -> io::Result<UnixStream> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write_frame(&mut stream, &hello_payload())?;
    let frame = read_frame(&mut stream, MAX_RESPONSE_FRAME_LEN)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "closed before Welcome"))?;
    match codec::decode::<Response>(&frame) {
        Ok(Response::Welcome(_)) => {
            stream.set_read_timeout(None)?;
            Ok(stream)
        }
        Ok(_) => Err(io::Error::new(io::ErrorKind::InvalidData, "no Welcome")),
        Err(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e)),
    }
}

/// The payload of a `Hello` frame from this harness.
pub fn hello_payload() -> Vec<u8> {
    codec::encode(&Request::Hello(Hello {
        version: PROTOCOL_VERSION,
        client: format!("flux-e2e/{}", env!("CARGO_PKG_VERSION")),
    }))
    .expect("Hello encodes")
}
