//! Running the real `fluxd` binary on short temp folders.
//!
//! [`FluxdBinary::locate`] finds the daemon: `--fluxd PATH`, else the
//! `fluxd` next to this executable (`target/<profile>/`). When the bench was
//! launched by `cargo run`, it first runs `cargo build -p fluxd` for the same
//! profile, a no-op when the binary is fresh, so `cargo run -p flux-bench`
//! never measures a stale daemon (cargo does not build a dependency's
//! binaries for us).
//!
//! [`Fluxd`] owns one temp dir (`/tmp/fxb…`, short enough for Unix socket
//! paths) with `state/`, `run/` and `fluxd.log`, starts the daemon, and
//! measures start-up as *spawn → the control socket completes a
//! handshake*, polling with a raw `Hello` every millisecond. It reads the
//! daemon's resident memory from `/proc/<pid>/status` (`VmRSS`), and stops
//! it with SIGTERM, or SIGKILL for crash tests. Dropping it stops the daemon.

use anyhow::{Context, Result, bail};
use flux_protocol::codec::{self, read_frame, write_frame};
use flux_protocol::limits::MAX_RESPONSE_FRAME_LEN;
use flux_protocol::message::{Hello, PROTOCOL_VERSION, Request, Response};
use flux_protocol::paths;
use std::fs::File;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the `fluxd` executable is.
#[derive(Debug, Clone)]
pub struct FluxdBinary(pub PathBuf);

impl FluxdBinary {
    /// `explicit`, else `fluxd` beside this executable, built first when we
    /// run under cargo (see the module docs).
    pub fn locate(explicit: Option<&Path>) -> Result<Self> {
        if let Some(path) = explicit {
            if !path.is_file() {
                bail!("--fluxd {}: no such file", path.display());
            }
            return Ok(Self(path.to_path_buf()));
        }
        let exe = std::env::current_exe().context("cannot find this executable's path")?;
        let dir = exe.parent().context("executable has no folder")?;
        let path = dir.join("fluxd");
        if let Some(cargo) = std::env::var_os("CARGO") {
            let release = dir.file_name().is_some_and(|n| n == "release");
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "--quiet", "-p", "fluxd"]);
            if release {
                cmd.arg("--release");
            }
            eprintln!(
                "building fluxd ({} profile) so the bench runs the current daemon",
                if release { "release" } else { "dev" }
            );
            let status = cmd
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .context("cannot run cargo build -p fluxd")?;
            if !status.success() {
                bail!("cargo build -p fluxd failed ({status})");
            }
        }
        if !path.is_file() {
            bail!(
                "{} is not built: run `cargo build --release -p fluxd`, or pass --fluxd PATH",
                path.display()
            );
        }
        Ok(Self(path))
    }
}

/// A short temp dir under /tmp (socket paths must stay under ~100 bytes).
pub fn short_tempdir(prefix: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .context("cannot create a temp dir in /tmp")
}

/// One `fluxd` process on its own folders.
#[derive(Debug)]
pub struct Fluxd {
    bin: FluxdBinary,
    dir: tempfile::TempDir,
    state_dir: PathBuf,
    child: Option<Child>,
}

impl Fluxd {
    /// A daemon on a fresh temp dir, not started yet.
    pub fn new(bin: &FluxdBinary) -> Result<Self> {
        let dir = short_tempdir("fxb")?;
        let state_dir = dir.path().join("state");
        Ok(Self {
            bin: bin.clone(),
            dir,
            state_dir,
            child: None,
        })
    }

    /// Like [`Fluxd::new`] with the state folder somewhere else (a small
    /// tmpfs for the disk-full suite).
    pub fn with_state_dir(bin: &FluxdBinary, state_dir: &Path) -> Result<Self> {
        let mut daemon = Self::new(bin)?;
        daemon.state_dir = state_dir.to_path_buf();
        Ok(daemon)
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    pub fn runtime_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    pub fn control_socket(&self) -> PathBuf {
        paths::control_socket(&self.runtime_dir())
    }

    pub fn project_socket(&self, project: &str) -> PathBuf {
        paths::project_socket(&self.runtime_dir(), project)
    }

    /// The daemon's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The last `lines` lines fluxd logged (for failure messages; fluxd
    /// never logs values).
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("fluxd.log")).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Starts fluxd and waits until the control socket answers a
    /// handshake. Returns the start-up time: spawn to first `Welcome`.
    pub fn start(&mut self) -> Result<Duration> {
        if self.child.is_some() {
            bail!("fluxd is already running");
        }
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("fluxd.log"))
            .context("cannot open fluxd.log")?;
        let spawned = Instant::now();
        let child = Command::new(&self.bin.0)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--runtime-dir")
            .arg(self.runtime_dir())
            .arg("--log-level")
            .arg("info")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", self.bin.0.display()))?;
        self.child = Some(child);
        let control = self.control_socket();
        let deadline = spawned + Duration::from_secs(60);
        loop {
            if handshake(&control).is_ok() {
                return Ok(spawned.elapsed());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                bail!(
                    "fluxd exited with {status} before it was ready; its log ends:\n{}",
                    self.log_tail(20)
                );
            }
            if Instant::now() > deadline {
                bail!("fluxd not ready after 60 s:\n{}", self.log_tail(20));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Resident memory of the running daemon, in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> Result<u64> {
        let pid = self.pid().context("fluxd is not running")?;
        rss_kib(pid)
    }

    /// SIGTERM, then waits (SIGKILL after 10 s).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            flux_e2e::terminate(&mut child, Duration::from_secs(10));
        }
    }

    /// SIGKILL: a crash, with no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// A blocking protocol client on the control socket.
    pub fn control(&self) -> Result<flux_protocol::blocking::Client> {
        flux_protocol::blocking::Client::connect(self.control_socket())
            .context("cannot connect to the control socket")
    }

    /// A blocking protocol client on a project's socket.
    pub fn client(&self, project: &str) -> Result<flux_protocol::blocking::Client> {
        flux_protocol::blocking::Client::connect(self.project_socket(project))
            .with_context(|| format!("cannot connect to project {project}'s socket"))
    }
}

impl Drop for Fluxd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `VmRSS` of a process, in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS line in /proc/<pid>/status")
}

/// Opens a raw connection and completes the handshake: the cheapest
/// readiness probe (no async runtime per attempt).
pub fn handshake(socket: &Path) -> Result<UnixStream> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write_frame(&mut stream, &hello_payload())?;
    let frame = read_frame(&mut stream, MAX_RESPONSE_FRAME_LEN)?.context("closed")?;
    match codec::decode::<Response>(&frame)? {
        Response::Welcome(_) => {
            stream.set_read_timeout(None)?;
            Ok(stream)
        }
        _ => bail!("no Welcome"),
    }
}

/// The payload of a `Hello` frame.
pub fn hello_payload() -> Vec<u8> {
    codec::encode(&Request::Hello(Hello {
        version: PROTOCOL_VERSION,
        client: format!("flux-bench/{}", env!("CARGO_PKG_VERSION")),
    }))
    .expect("Hello encodes")
}
