//! Test harness for the end-to-end tests: runs the real `fluxd` and
//! `fluxctl` binaries on temp dirs.
//!
//! The binaries are found next to the test executable's `deps/` folder
//! (`target/<profile>/`), where `cargo test --workspace` builds them: the
//! `fluxd` and `fluxctl` packages have integration tests of their own, so
//! cargo builds their binaries before any test runs.
//!
//! [`TestDaemon`] starts `fluxd` through [`launch`] — the launcher the
//! benchmarks use too — which waits until its control socket completes a
//! handshake (never a fixed sleep); it stops the daemon on drop.

#![forbid(unsafe_code)]

pub mod launch;

use flux_protocol::blocking::Client;
use flux_protocol::paths;
use flux_vault::layout::StateDir;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Path of a workspace binary built by `cargo test --workspace`.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run the tests with `cargo test --workspace`",
        path.display()
    );
    path
}

/// A `fluxd` process on its own temp dirs.
#[derive(Debug)]
pub struct TestDaemon {
    dir: tempfile::TempDir,
    child: Option<Child>,
    extra_args: Vec<String>,
    envs: Vec<(String, PathBuf)>,
}

impl TestDaemon {
    /// Starts fluxd on fresh temp dirs and waits until it is ready.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Like [`TestDaemon::start`], with a config file (written to
    /// `<dir>/fluxd.toml` and passed with `--config`).
    pub fn start_with_config(toml: &str) -> Self {
        let mut daemon = Self::unstarted(&[]);
        daemon.write_config(toml);
        let config = daemon.config_path();
        daemon
            .extra_args
            .extend(["--config".to_owned(), config.display().to_string()]);
        daemon.restart();
        daemon
    }

    /// Like [`TestDaemon::start`], with extra `fluxd` arguments.
    pub fn start_with(args: &[&str]) -> Self {
        let mut daemon = Self::unstarted(args);
        daemon.restart();
        daemon
    }

    /// Temp dirs and arguments, no process yet.
    pub fn unstarted(args: &[&str]) -> Self {
        let dir = launch::short_tempdir("fx").expect("temp dir");
        Self {
            dir,
            child: None,
            extra_args: args.iter().map(|s| s.to_string()).collect(),
            envs: Vec::new(),
        }
    }

    /// Replaces the extra `fluxd` arguments for every later start.
    pub fn set_args(&mut self, args: &[&str]) {
        self.extra_args = args.iter().map(|s| s.to_string()).collect();
    }

    /// Sets an environment variable for every later start of fluxd.
    pub fn set_env(&mut self, key: &str, value: impl Into<PathBuf>) {
        self.envs.push((key.to_owned(), value.into()));
    }

    /// `<dir>/fluxd.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("fluxd.toml")
    }

    /// (Re)writes the config file; send [`TestDaemon::sighup`] to apply it.
    pub fn write_config(&self, toml: &str) {
        std::fs::write(self.config_path(), toml).expect("write config");
    }

    /// Writes `toml` as the config file and runs `fluxd --check-config` on
    /// it (no daemon starts): exit 0 when valid, 78 with the reason on
    /// stderr when not.
    pub fn check_config(&self, toml: &str) -> Output {
        self.write_config(toml);
        self.fluxd_command()
            .arg("--config")
            .arg(self.config_path())
            .arg("--check-config")
            .output()
            .expect("run fluxd --check-config")
    }

    /// Sends SIGHUP (reload).
    pub fn sighup(&self) {
        kill(Pid::from_raw(self.pid() as i32), Signal::SIGHUP).expect("SIGHUP");
    }

    /// The temp dir holding `state/`, `run/` and `fluxd.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
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

    /// The layout of [`Self::state_dir`].
    pub fn layout(&self) -> StateDir {
        StateDir::new(self.state_dir())
    }

    pub fn key_path(&self, project: &str) -> PathBuf {
        self.layout().key(project)
    }

    pub fn vault_path(&self, project: &str) -> PathBuf {
        self.layout().vault(project)
    }

    /// Everything fluxd wrote to stderr so far (all runs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("fluxd.log")).unwrap_or_default()
    }

    /// The running fluxd's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("fluxd is running").id()
    }

    /// A `fluxd` command on this daemon's folders (not started).
    pub fn fluxd_command(&self) -> Command {
        let mut cmd = launch::fluxd_command(
            &bin("fluxd"),
            &self.state_dir(),
            &self.runtime_dir(),
            "trace",
        );
        cmd.args(&self.extra_args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Starts fluxd (again) on the same folders and waits until it is ready.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "fluxd is already running");
        let log = self.dir.path().join("fluxd.log");
        let control = self.control_socket();
        let started = launch::spawn_ready(
            &mut self.fluxd_command(),
            &log,
            &control,
            Duration::from_secs(20),
            usize::MAX,
        );
        match started {
            Ok((child, _)) => self.child = Some(child),
            Err(e) => panic!("{e}"),
        }
    }

    /// SIGTERM, then waits for the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("fluxd is running");
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        child.wait().expect("wait for fluxd")
    }

    /// SIGKILL: a crash.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("fluxd is running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// A `fluxctl` command pointed at this daemon, with no project set.
    pub fn ctl(&self) -> Command {
        let mut cmd = Command::new(bin("fluxctl"));
        cmd.env("FLUX_RUNTIME_DIR", self.runtime_dir())
            .env_remove("FLUX_PROJECT")
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `fluxctl ARGS` and returns its output.
    pub fn run_ctl(&self, args: &[&str]) -> Output {
        self.ctl().args(args).output().expect("run fluxctl")
    }

    /// Runs `fluxctl ARGS`, asserting success; returns stdout.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let out = self.run_ctl(args);
        assert!(
            out.status.success(),
            "fluxctl {args:?} failed with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 stdout")
    }

    /// Creates a project through fluxctl.
    pub fn create_project(&self, project: &str) {
        self.ctl_ok(&["projects", "create", project]);
    }

    /// A connected client on a project's socket.
    pub fn client(&self, project: &str) -> Client {
        Client::connect(self.project_socket(project)).expect("connect to project socket")
    }

    /// A connected client on the control socket.
    pub fn control(&self) -> Client {
        Client::connect(self.control_socket()).expect("connect to control socket")
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(5));
        }
    }
}

/// Context switches (voluntary and not) of every thread of process `pid`
/// so far, from `/proc/<pid>/task/*/status`: how often its threads woke.
/// A thread that ends while it is read is left out.
pub fn context_switches(pid: u32) -> std::io::Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let Ok(status) = std::fs::read_to_string(task?.path().join("status")) else {
            continue;
        };
        total += status
            .lines()
            .filter_map(|l| {
                l.strip_prefix("voluntary_ctxt_switches:")
                    .or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
            })
            .filter_map(|v| v.trim().parse::<u64>().ok())
            .sum::<u64>();
    }
    Ok(total)
}

/// Stops a process: SIGTERM, then SIGKILL if it has not exited within
/// `grace`; reaps it either way.
pub fn terminate(child: &mut Child, grace: Duration) {
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// True when `tool` is on PATH; otherwise prints a loud SKIPPED line for
/// `test` and returns false.
pub fn have_tool(tool: &str, test: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    if !found {
        eprintln!("SKIPPED: {test}: `{tool}` is not installed (.ci/run installs it)");
    }
    found
}

/// Polls `cond` every 10 ms until it holds; fails after 10 s, naming
/// `what`. For state that settles asynchronously (a reload, a summary
/// written when a connection closes), never as a sleep.
pub fn eventually(what: &str, cond: impl FnMut() -> bool) {
    eventually_within(Duration::from_secs(10), what, cond)
}

/// [`eventually`] with a deadline of `limit`.
pub fn eventually_within(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Asserts that `haystack` does not contain `secret`, without printing it.
pub fn assert_no_secret(haystack: &[u8], secret: &str, what: &str) {
    let found = haystack
        .windows(secret.len())
        .any(|w| w == secret.as_bytes());
    assert!(
        !found,
        "{what} contains a secret value ({} bytes long)",
        secret.len()
    );
}
