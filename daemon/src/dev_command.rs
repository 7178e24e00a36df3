//! `fluxd dev -- CMD`: the command `fluxd dev` runs against its `.env`
//! file, and `--watch`, which restarts it when a value in the file really
//! changes.
//!
//! The command gets `FLUX_SECRETS_SOCKET` (never values in its
//! environment) and the umask fluxd was started with. fluxd serves while
//! it runs and exits with its status (128+N when signal N ended it).
//! SIGTERM is passed on to it; SIGINT is not, since Ctrl-C at a terminal
//! reaches the command itself (it is in fluxd's process group) and the
//! command decides when to stop; SIGHUP reloads fluxd.
//!
//! With `--watch`, what the command "was started with" is every value of
//! the project: it reads them through the socket, and may have read any
//! of them at start and kept it (a client built with a key, a config
//! object). So after each burst of change events — quiet for `--debounce`,
//! or at the latest [`MAX_DEBOUNCES`] times that after its first event —
//! fluxd reads the file's values again and compares them, value against
//! value, with those served when the command started:
//!
//! - a value that differs, or a name added to the file, restarts the
//!   command (SIGTERM, SIGKILL after `--grace`, then the command again), or
//!   sends it `--signal` instead;
//! - a name the command started with that is gone stops it (fluxd then
//!   exits with [`EXIT_DELETED`]), unless `--on-delete keep`;
//! - a save that changes no value restarts nothing: a `touch`, the same
//!   bytes written again, a comment or the order of lines changed. The
//!   project's change events already leave such saves out, and since a
//!   burst is compared by value, a file that was briefly unreadable or
//!   missing while an editor saved it and came back the same restarts
//!   nothing either;
//! - while the file cannot be served (not UTF-8) the command keeps
//!   running, and the comparison waits for a good file.
//!
//! These are `fluxctl run --watch`'s options, defaults and messages, and
//! what the two supervisors share — the options and their parsers, the
//! stop with its grace period, the exit status — is one crate both use
//! (`flux-supervise`). The loops stay apart: that supervisor is a client
//! of the socket (it reconnects, re-reads over the protocol, masks output)
//! inside the CLI crate; fluxd follows its own project in process instead
//! ([`crate::project::Project::subscribe`] and its snapshot), and the CLI
//! crate is not linked into the daemon.
//!
//! The comparison keeps a SHA-256 digest of each value, not the value: no
//! copy of an old value outlives the snapshot that served it. Messages
//! name secrets, never show them.

pub use flux_supervise::{
    EXIT_DELETED, MAX_DEBOUNCES, OnDelete, Watch, parse_duration, parse_signal,
};

use crate::daemon::DaemonHandle;
use crate::project::Project;
use flux_supervise::{Phase, Then, exit_code, list, pid, sleep_until};
use nix::sys::signal::{Signal, kill};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::SignalKind;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tracing::error;

/// What to run, and how.
#[derive(Debug)]
pub struct Plan {
    /// The project `fluxd dev` serves.
    pub project: String,
    /// The `.env` file, as messages name it.
    pub env_file: PathBuf,
    /// The project socket, for `FLUX_SECRETS_SOCKET`.
    pub socket: PathBuf,
    /// The command and its arguments: not empty.
    pub command: Vec<OsString>,
    /// The umask the command gets (fluxd's own is 077).
    pub umask: nix::sys::stat::Mode,
    pub watch: Option<Watch>,
}

/// The signals fluxd caught from its start, handed to the supervisor.
#[derive(Debug)]
pub struct Signals {
    pub term: tokio::signal::unix::Signal,
    pub int: tokio::signal::unix::Signal,
    pub hup: tokio::signal::unix::Signal,
}

/// Runs the command until it exits (restarting it under `--watch`);
/// returns the status `fluxd dev` exits with. A command that cannot be
/// started is logged and gives 127 (not found) or 126.
pub async fn run(plan: Plan, daemon: DaemonHandle, signals: Signals) -> u8 {
    // Caught before the first child exists, so no exit is missed.
    let sigchld = match tokio::signal::unix::signal(SignalKind::child()) {
        Ok(s) => s,
        Err(e) => {
            error!("cannot watch the command: {e}");
            return 1;
        }
    };
    let project = match plan.watch {
        Some(_) => match daemon.project(&plan.project) {
            Some(p) => Some(p),
            None => {
                error!(
                    "cannot follow {}: project {} is not served",
                    plan.env_file.display(),
                    plan.project
                );
                return 1;
            }
        },
        None => None,
    };
    // Subscribed before the first read, so no change after it is missed.
    let events = match &project {
        Some(p) => match p.subscribe() {
            Ok((rx, _)) => Some(rx),
            Err(e) => {
                error!("cannot follow {}: {e}", plan.env_file.display());
                return 1;
            }
        },
        None => None,
    };
    let shown = format!("`{}`", plan.command[0].to_string_lossy());
    let mut supervisor = Supervisor {
        plan,
        shown,
        project,
        given: BTreeMap::new(),
        latest: BTreeMap::new(),
        deleted: BTreeSet::new(),
        unservable: false,
        phase: Phase::Running,
        leaving: false,
    };
    supervisor.run(daemon, signals, sigchld, events).await
}

/// Each value's digest, by name.
type Digests = BTreeMap<String, [u8; 32]>;

#[derive(Debug)]
struct Supervisor {
    plan: Plan,
    /// The command as messages show it.
    shown: String,
    /// The project followed under `--watch`.
    project: Option<Arc<Project>>,
    /// The values the running command was started with (after
    /// `--signal`, those it was last signalled for).
    given: Digests,
    /// The values last read: a restart that cannot read the file starts
    /// with these.
    latest: Digests,
    /// Names in `given` reported deleted that the command keeps
    /// (`--on-delete keep`).
    deleted: BTreeSet<String>,
    /// The file could not be served at the last read (said once).
    unservable: bool,
    phase: Phase,
    /// fluxd got SIGTERM or SIGINT: the command's exit ends the run, and
    /// nothing restarts it.
    leaving: bool,
}

impl Supervisor {
    async fn run(
        &mut self,
        daemon: DaemonHandle,
        mut signals: Signals,
        mut sigchld: tokio::signal::unix::Signal,
        events: Option<broadcast::Receiver<flux_protocol::message::Event>>,
    ) -> u8 {
        let mut child = match self.spawn().await {
            Ok(child) => child,
            Err(status) => return status,
        };
        let (burst_tx, mut bursts) = mpsc::unbounded_channel();
        let follower = match (events, self.plan.watch) {
            (Some(events), Some(w)) => Some(tokio::spawn(follow(events, w.debounce, burst_tx))),
            _ => {
                drop(burst_tx);
                None
            }
        };
        let status = loop {
            let kill_at = self.phase.kill_at();
            tokio::select! {
                _ = sigchld.recv() => {
                    let status = match child.try_wait() {
                        Ok(Some(status)) => status,
                        Ok(None) => continue,
                        Err(e) => {
                            error!("cannot wait for {}: {e}", self.shown);
                            break 1;
                        }
                    };
                    match self.phase {
                        Phase::Stopping { then: Then::Restart, .. } if !self.leaving => {
                            child = match self.spawn().await {
                                Ok(child) => child,
                                Err(status) => break status,
                            };
                            eprintln!("fluxd dev: restarted {} (pid {})", self.shown, child.id());
                            self.phase = Phase::Running;
                        }
                        Phase::Stopping { then: Then::Exit(code), .. } => break code,
                        _ => break exit_code(status),
                    }
                }
                _ = signals.term.recv() => {
                    let _ = kill(pid(&child), Signal::SIGTERM);
                    self.leaving = true;
                }
                _ = signals.int.recv() => self.leaving = true,
                _ = signals.hup.recv() => daemon.reload().await,
                Some(()) = bursts.recv() => self.update(&mut child).await,
                () = sleep_until(kill_at), if kill_at.is_some() => {
                    self.phase.killed();
                    eprintln!(
                        "fluxd dev: {} (pid {}) did not exit within {} of SIGTERM: sending SIGKILL",
                        self.shown,
                        child.id(),
                        humantime::format_duration(self.grace())
                    );
                    let _ = child.kill();
                }
            }
        };
        if let Some(follower) = follower {
            follower.abort();
        }
        status
    }

    fn grace(&self) -> Duration {
        self.plan.watch.map_or(Duration::ZERO, |w| w.grace)
    }

    /// The file's values now (re-read first when it may have changed), or
    /// `None` when it cannot be served.
    async fn read(&self) -> Option<Digests> {
        let project = self.project.as_ref()?;
        project.refresh().await;
        let values = project.get_all().ok()?;
        Some(
            values
                .iter()
                .map(|v| (v.name.clone(), Sha256::digest(v.value.expose()).into()))
                .collect(),
        )
    }

    /// Starts the command; under `--watch`, `given` becomes the values
    /// served now. Err: the status to exit with.
    async fn spawn(&mut self) -> Result<Child, u8> {
        if self.project.is_some() {
            if let Some(now) = self.read().await {
                self.latest = now;
            }
            self.given = self.latest.clone();
            if !self.deleted.is_empty() {
                eprintln!(
                    "fluxd dev: {} starts without {}, deleted from {}",
                    self.shown,
                    list(&self.deleted),
                    self.plan.env_file.display()
                );
            }
            self.deleted.clear();
        }
        spawn_command(&self.plan.command, &self.plan.socket, self.plan.umask).map_err(|e| {
            error!("cannot run {}: {e}", self.plan.command[0].to_string_lossy());
            if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            }
        })
    }

    /// After a burst of events: compares the values now with those the
    /// command was started with, and restarts, signals or stops it.
    async fn update(&mut self, child: &mut Child) {
        let Some(w) = self.plan.watch else { return };
        let file = self.plan.env_file.display().to_string();
        let Some(now) = self.read().await else {
            if !self.unservable {
                eprintln!(
                    "fluxd dev: {file} cannot be served (see the error above): {} keeps running until it is fixed",
                    self.shown
                );
            }
            self.unservable = true;
            return;
        };
        self.unservable = false;
        let mut changed = BTreeSet::new();
        let mut deleted = BTreeSet::new();
        for (name, old) in &self.given {
            match now.get(name) {
                Some(new) if new != old => {
                    changed.insert(name.clone());
                }
                Some(_) => {
                    self.deleted.remove(name);
                }
                None if !self.deleted.contains(name) => {
                    deleted.insert(name.clone());
                }
                None => {}
            }
        }
        // A name the command could not have read at start.
        changed.extend(now.keys().filter(|n| !self.given.contains_key(*n)).cloned());
        for name in &changed {
            self.deleted.remove(name);
        }
        self.latest = now;
        if changed.is_empty() && deleted.is_empty() {
            return;
        }
        if self.leaving {
            eprintln!(
                "fluxd dev: {} changed in {file}, but {} is not restarted: fluxd was told to stop",
                list(changed.union(&deleted)),
                self.shown
            );
            return;
        }
        if !deleted.is_empty() {
            let what = format!("{} deleted from {file}", list(&deleted));
            match w.on_delete {
                OnDelete::Stop => {
                    let stopping = format!(
                        "fluxd dev: {what}: stopping {} (pid {}), which was started with it (--on-delete keep keeps it running)",
                        self.shown,
                        child.id()
                    );
                    match &mut self.phase {
                        Phase::Running => {
                            eprintln!("{stopping}");
                            self.stop(child, Then::Exit(EXIT_DELETED));
                        }
                        // A restart under way ends the run instead.
                        Phase::Stopping { then, .. } => {
                            if matches!(then, Then::Restart) {
                                eprintln!("{stopping}");
                                *then = Then::Exit(EXIT_DELETED);
                            }
                        }
                    }
                    return;
                }
                OnDelete::Keep => {
                    eprintln!(
                        "fluxd dev: {what}: {} keeps running with what it read (--on-delete keep)",
                        self.shown
                    );
                    self.deleted.extend(deleted);
                }
            }
        }
        if changed.is_empty() || !matches!(self.phase, Phase::Running) {
            // A restart under way starts with the newest values anyway.
            return;
        }
        match w.signal {
            Some(sig) => {
                eprintln!(
                    "fluxd dev: {} changed in {file}: sending {sig} to {} (pid {})",
                    list(&changed),
                    self.shown,
                    child.id()
                );
                let _ = kill(pid(child), sig);
                // Signalled for these values: only a further change
                // signals again.
                for name in &changed {
                    if let Some(digest) = self.latest.get(name) {
                        self.given.insert(name.clone(), *digest);
                    }
                }
            }
            None => {
                eprintln!(
                    "fluxd dev: {} changed in {file}: restarting {} (pid {})",
                    list(&changed),
                    self.shown,
                    child.id()
                );
                self.stop(child, Then::Restart);
            }
        }
    }

    /// SIGTERM now, SIGKILL after the grace period (at once without one).
    fn stop(&mut self, child: &mut Child, then: Then) {
        self.phase = Phase::stop(child, self.grace(), then);
    }
}

/// Sends one `()` after each burst of the project's events: when none has
/// come for `debounce`, or [`MAX_DEBOUNCES`] times that after its first.
/// Events falling behind count as events (the comparison reads values).
async fn follow(
    mut events: broadcast::Receiver<flux_protocol::message::Event>,
    debounce: Duration,
    tx: mpsc::UnboundedSender<()>,
) {
    use broadcast::error::RecvError;
    loop {
        match events.recv().await {
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return,
        }
        let latest = Instant::now() + debounce * MAX_DEBOUNCES;
        loop {
            let until = (Instant::now() + debounce).min(latest);
            match tokio::time::timeout_at(until, events.recv()).await {
                Ok(Ok(_) | Err(RecvError::Lagged(_))) => {}
                Ok(Err(RecvError::Closed)) | Err(_) => break,
            }
        }
        if tx.send(()).is_err() {
            return;
        }
    }
}

/// Starts `command` with `FLUX_SECRETS_SOCKET` set and `umask`.
fn spawn_command(
    command: &[OsString],
    socket: &Path,
    umask: nix::sys::stat::Mode,
) -> std::io::Result<Child> {
    let (program, args) = command.split_first().expect("a command");
    let socket = std::path::absolute(socket)?;
    let mut cmd = std::process::Command::new(program);
    cmd.args(args).env(flux_protocol::paths::SOCKET_ENV, socket);
    // The umask is per process: restored just around the spawn, when the
    // dev daemon has bound its socket and creates no files.
    let ours = nix::sys::stat::umask(umask);
    let child = cmd.spawn();
    nix::sys::stat::umask(ours);
    child
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> flux_protocol::message::Event {
        flux_protocol::message::Event {
            generation: 1,
            kind: flux_protocol::message::EventKind::Reloaded,
            names: vec!["A".into()],
        }
    }

    #[tokio::test]
    async fn a_burst_of_events_is_one_update_after_the_quiet_time() {
        let (events, rx) = broadcast::channel(16);
        let (tx, mut bursts) = mpsc::unbounded_channel();
        let debounce = Duration::from_millis(300);
        tokio::spawn(follow(rx, debounce, tx));
        for _ in 0..5 {
            events.send(event()).unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(bursts.try_recv().is_err(), "not before the quiet time");
        let one = tokio::time::timeout(Duration::from_secs(10), bursts.recv()).await;
        assert!(matches!(one, Ok(Some(()))), "one update");
        tokio::time::sleep(debounce * 2).await;
        assert!(bursts.try_recv().is_err(), "only one");
    }

    #[tokio::test]
    async fn events_that_never_stop_still_get_through() {
        let (events, rx) = broadcast::channel(16);
        let (tx, mut bursts) = mpsc::unbounded_channel();
        let debounce = Duration::from_millis(50);
        tokio::spawn(follow(rx, debounce, tx));
        // Far beyond MAX_DEBOUNCES debounce times (0.5 s), events 10 ms apart.
        let deadline = Instant::now() + Duration::from_secs(10);
        while bursts.try_recv().is_err() {
            assert!(
                Instant::now() < deadline,
                "no update while events kept coming"
            );
            events.send(event()).unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
