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
//! paths) with `state/`, `run/` and `fluxd.log`, and starts the daemon with
//! the end-to-end tests' launcher ([`flux_e2e::launch`]), reporting a
//! failure as an error instead of a panic. Start-up is *spawn → the control
//! socket completes a handshake*, polled with a raw `Hello` every
//! millisecond. It reads the daemon's resident memory from
//! `/proc/<pid>/status` (`VmRSS`), and stops it with SIGTERM, or SIGKILL for
//! crash tests. Dropping it stops the daemon.

use anyhow::{Context, Result, bail};
use flux_e2e::launch;
pub use flux_e2e::launch::{handshake, hello_payload, short_tempdir};
use flux_protocol::paths;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

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

/// One `fluxd` process on its own folders.
#[derive(Debug)]
pub struct Fluxd {
    bin: FluxdBinary,
    dir: tempfile::TempDir,
    state_dir: PathBuf,
    /// `--config FILE`, when set ([`Fluxd::set_config`]).
    config: Option<PathBuf>,
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
            config: None,
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

    /// The layout of [`Self::state_dir`].
    pub fn layout(&self) -> flux_vault::layout::StateDir {
        flux_vault::layout::StateDir::new(&self.state_dir)
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

    /// Runs the daemon with `toml` as its configuration file (written into
    /// the daemon's temp dir) from the next start on.
    pub fn set_config(&mut self, toml: &str) -> Result<()> {
        let path = self.dir.path().join("fluxd.toml");
        std::fs::write(&path, toml).with_context(|| format!("cannot write {}", path.display()))?;
        self.config = Some(path);
        Ok(())
    }

    /// The daemon's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The last `lines` lines fluxd logged (for failure messages; fluxd
    /// never logs values).
    pub fn log_tail(&self, lines: usize) -> String {
        launch::tail(&self.dir.path().join("fluxd.log"), lines)
    }

    /// Starts fluxd and waits until the control socket answers a
    /// handshake. Returns the start-up time: spawn to first `Welcome`.
    pub fn start(&mut self) -> Result<Duration> {
        if self.child.is_some() {
            bail!("fluxd is already running");
        }
        let mut cmd =
            launch::fluxd_command(&self.bin.0, &self.state_dir, &self.runtime_dir(), "info");
        if let Some(config) = &self.config {
            cmd.arg("--config").arg(config);
        }
        let (child, startup) = launch::spawn_ready(
            &mut cmd,
            &self.dir.path().join("fluxd.log"),
            &self.control_socket(),
            Duration::from_secs(60),
            20,
        )?;
        self.child = Some(child);
        Ok(startup)
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
