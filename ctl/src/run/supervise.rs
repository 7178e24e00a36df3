//! `fluxctl run --watch` / `--mask`: fluxctl stays as the command's
//! supervisor instead of `exec`ing it.
//!
//! One current-thread runtime drives it all: the signals fluxctl passes
//! on, SIGCHLD (the child is reaped only here, so a pid fluxctl signals is
//! always its own child's), the updates of the `watch` task, and the
//! SIGKILL deadline of a stop. The masked output runs on plain threads
//! (`output`), so a slow reader of fluxctl's stdout never delays a signal.
//!
//! What is compared on an update is the set of values the running child
//! was started with (`given`): those names only, value against value. A
//! name added to the project is not a change to the child's environment
//! (it would restart every command sharing a project whenever anyone adds
//! a secret); it is in the environment from the next restart on. A name
//! `--no-override` kept from fluxctl's own environment is not the child's
//! secret and is not watched.
//!
//! Values stay in [`SecretValue`]s (wiped when dropped) and never reach a
//! message: messages name secrets, never show them.
//!
//! What this supervisor shares with `fluxd dev --watch` — the `--watch`
//! options and their parsers, the stop with its grace period, how an exit
//! status is reported — is the `flux-supervise` crate; the loop, the
//! socket it follows and the messages are fluxctl's own.

use super::mask::{Added, MIN_MASKED_LEN, Patterns};
use super::output::Filter;
use super::watch::{self, Update};
use super::{OnDelete, SOCKET_ENV, cannot_run, keep, secret_vars};
use flux_supervise::{Phase, Then, exit_code, list, pid, sleep_until};

use crate::failure::{EXIT_NOT_FOUND, Failure, Result};
use crate::style::clean;
use flux_protocol::SecretValue;
use flux_protocol::message::NamedValue;
pub(crate) use flux_supervise::Watch;
use nix::sys::signal::{Signal, kill};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::signal::unix::SignalKind;
use tokio::sync::mpsc;

/// What to run and how.
#[derive(Debug)]
pub(crate) struct Plan {
    pub project: String,
    /// The project socket, absolute.
    pub socket: PathBuf,
    pub program: OsString,
    pub args: Vec<OsString>,
    pub no_override: bool,
    pub mask: bool,
    pub watch: Option<Watch>,
}

/// The signals passed on to the child.
const FORWARDED: [Signal; 7] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Runs the command under supervision until it exits; returns its exit
/// status.
pub(crate) fn run(plan: Plan, values: Vec<NamedValue>) -> Result<u8> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::general(format!("cannot start the supervisor: {e}")))?;
    rt.block_on(Supervisor::new(plan).run(values))
}

struct Supervisor {
    plan: Plan,
    /// The command as messages show it.
    shown: String,
    patterns: Arc<Mutex<Patterns>>,
    /// Names whose values are too short to mask, already reported.
    unmasked: BTreeSet<String>,
    filter: Option<Filter>,
    /// The project's values as last read: the next start uses them.
    latest: Vec<NamedValue>,
    /// The secrets the running child was started with (after `--signal`,
    /// the values it was last signalled for).
    given: BTreeMap<String, SecretValue>,
    /// Names in `given` reported deleted that the child keeps
    /// (`--on-delete keep`).
    deleted: BTreeSet<String>,
    phase: Phase,
    /// fluxctl got SIGINT, SIGQUIT or SIGTERM: the child's exit ends the
    /// run, and nothing restarts it.
    leaving: bool,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("shown", &self.shown)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl Supervisor {
    fn new(plan: Plan) -> Self {
        let shown = format!("`{}`", clean(&plan.program.to_string_lossy()));
        Self {
            plan,
            shown,
            patterns: Arc::default(),
            unmasked: BTreeSet::new(),
            filter: None,
            latest: Vec::new(),
            given: BTreeMap::new(),
            deleted: BTreeSet::new(),
            phase: Phase::Running,
            leaving: false,
        }
    }

    async fn run(mut self, values: Vec<NamedValue>) -> Result<u8> {
        // Signals are caught before the first child exists, so none of
        // them, SIGCHLD included, can be missed.
        let mut sigchld = tokio::signal::unix::signal(SignalKind::child())
            .map_err(|e| Failure::general(format!("cannot watch the command: {e}")))?;
        let (sig_tx, mut signals) = mpsc::unbounded_channel();
        for sig in FORWARDED {
            let mut stream = tokio::signal::unix::signal(SignalKind::from_raw(sig as i32))
                .map_err(|e| Failure::general(format!("cannot catch {sig}: {e}")))?;
            let tx = sig_tx.clone();
            tokio::spawn(async move {
                while stream.recv().await.is_some() {
                    if tx.send(sig).is_err() {
                        return;
                    }
                }
            });
        }
        if self.plan.mask {
            let filter = Filter::start(self.patterns.clone())
                .map_err(|e| Failure::general(format!("cannot set up --mask: {e}")))?;
            self.filter = Some(filter);
        }
        self.latest = values;
        let mut child = match self.spawn() {
            Ok(child) => child,
            Err(e) => return Err(self.finish_with(e)),
        };
        let (update_tx, mut updates) = mpsc::unbounded_channel();
        if let Some(w) = self.plan.watch {
            tokio::spawn(watch::watch(
                self.plan.socket.clone(),
                self.plan.project.clone(),
                w.debounce,
                "the command keeps running".to_owned(),
                update_tx,
            ));
        } else {
            drop(update_tx);
        }
        loop {
            let kill_at = self.phase.kill_at();
            tokio::select! {
                _ = sigchld.recv() => {
                    let status = match child.try_wait() {
                        Ok(Some(status)) => status,
                        Ok(None) => continue,
                        Err(e) => {
                            let e = Failure::general(format!("cannot wait for {}: {e}", self.shown));
                            return Err(self.finish_with(e));
                        }
                    };
                    match self.phase {
                        Phase::Stopping { then: Then::Restart, .. } if !self.leaving => {
                            child = match self.spawn() {
                                Ok(child) => child,
                                Err(e) => return Err(self.finish_with(e)),
                            };
                            eprintln!("fluxctl: restarted {} (pid {})", self.shown, child.id());
                            self.phase = Phase::Running;
                        }
                        Phase::Stopping { then: Then::Exit(code), .. } => {
                            return Ok(self.finish(code));
                        }
                        _ => return Ok(self.finish(exit_code(status))),
                    }
                }
                Some(sig) = signals.recv() => self.forward(&child, sig),
                Some(update) = updates.recv() => self.update(&mut child, update),
                () = sleep_until(kill_at), if kill_at.is_some() => {
                    self.phase.killed();
                    eprintln!(
                        "fluxctl: {} (pid {}) did not exit within {} of SIGTERM: sending SIGKILL",
                        self.shown,
                        child.id(),
                        humantime::format_duration(self.grace())
                    );
                    let _ = child.kill();
                }
            }
        }
    }

    fn grace(&self) -> Duration {
        self.plan.watch.map_or(Duration::ZERO, |w| w.grace)
    }

    /// Starts the command with the newest values; `given` becomes them.
    fn spawn(&mut self) -> Result<Child> {
        let vars = secret_vars(&self.latest, self.plan.no_override)?;
        self.mask(&self.latest.clone());
        let mut cmd = Command::new(&self.plan.program);
        cmd.args(&self.plan.args);
        if !keep(self.plan.no_override, SOCKET_ENV) {
            cmd.env(SOCKET_ENV, &self.plan.socket);
        }
        for (name, value) in &vars {
            cmd.env(name, value.expose());
        }
        if let Some(filter) = &self.filter {
            let (stdout, stderr) = filter
                .stdio()
                .map_err(|e| Failure::general(format!("cannot set up --mask: {e}")))?;
            cmd.stdout(stdout).stderr(stderr);
        }
        let child = cmd.spawn().map_err(|e| cannot_run(&self.plan.program, e))?;
        // A name reported deleted is not in the new environment.
        if !self.deleted.is_empty() {
            eprintln!(
                "fluxctl: {} starts without {}, deleted from project {}",
                self.shown,
                list(&self.deleted),
                self.plan.project
            );
        }
        self.deleted.clear();
        self.given = vars;
        Ok(child)
    }

    /// Masks every value read from the project — the child could read
    /// any of them through FLUX_SECRETS_SOCKET, not only those in its
    /// environment — and says which are too short to mask.
    fn mask(&mut self, values: &[NamedValue]) {
        if !self.plan.mask {
            return;
        }
        let mut short = Vec::new();
        {
            let mut patterns = self.patterns.lock().unwrap_or_else(|e| e.into_inner());
            for entry in values {
                if patterns.add(&entry.name, &entry.value) == Added::TooShort
                    && self.unmasked.insert(entry.name.clone())
                {
                    short.push(entry.name.clone());
                }
            }
        }
        if !short.is_empty() {
            eprintln!(
                "fluxctl: --mask leaves the value of {} as it is: values shorter than {MIN_MASKED_LEN} bytes are not masked",
                short.join(", ")
            );
        }
    }

    /// Passes a signal fluxctl got on to the child.
    fn forward(&mut self, child: &Child, sig: Signal) {
        // A key (Ctrl-C, Ctrl-\) or a resized window signals the whole
        // foreground process group, the child included: a second copy
        // would make many programs skip their clean shutdown.
        let from_terminal =
            matches!(sig, Signal::SIGINT | Signal::SIGQUIT | Signal::SIGWINCH) && in_foreground();
        if !from_terminal {
            let _ = kill(pid(child), sig);
        }
        if matches!(sig, Signal::SIGINT | Signal::SIGQUIT | Signal::SIGTERM) {
            self.leaving = true;
        }
    }

    /// Compares what the project holds now with what the child was
    /// started with, and restarts, signals or stops it.
    fn update(&mut self, child: &mut Child, update: Update) {
        let Some(w) = self.plan.watch else { return };
        let project = self.plan.project.clone();
        let (values, named, project_deleted) = match update {
            Update::Values { values, named } => (values, named, false),
            Update::ProjectDeleted => (Vec::new(), None, true),
        };
        self.mask(&values);
        let now: BTreeMap<&str, &SecretValue> =
            values.iter().map(|e| (e.name.as_str(), &e.value)).collect();
        let mut changed = BTreeSet::new();
        let mut deleted = BTreeSet::new();
        let mut same = BTreeSet::new();
        for (name, old) in &self.given {
            match now.get(name.as_str()) {
                Some(new) if *new != old => {
                    changed.insert(name.clone());
                }
                Some(_) => {
                    let back = self.deleted.remove(name);
                    if back || named.as_ref().is_some_and(|n| n.contains(name)) {
                        same.insert(name.clone());
                    }
                }
                None if !self.deleted.contains(name) => {
                    deleted.insert(name.clone());
                }
                None => {}
            }
        }
        // The child started with a name reported deleted that is set
        // again with a new value: that is a change like any other.
        for name in &changed {
            self.deleted.remove(name);
        }
        drop(now);
        self.latest = values;
        if changed.is_empty() && deleted.is_empty() {
            if !same.is_empty() && matches!(self.phase, Phase::Running) && !self.leaving {
                eprintln!(
                    "fluxctl: {} set again with the same value in project {project}: {} keeps running",
                    list(&same),
                    self.shown
                );
            }
            return;
        }
        if self.leaving {
            eprintln!(
                "fluxctl: {} changed in project {project}, but {} is not restarted: fluxctl was told to stop",
                list(changed.union(&deleted)),
                self.shown
            );
            return;
        }
        if !deleted.is_empty() {
            let what = if project_deleted {
                format!(
                    "project {project} was deleted, and with it {}",
                    list(&deleted)
                )
            } else {
                format!("{} deleted from project {project}", list(&deleted))
            };
            match w.on_delete {
                OnDelete::Stop => {
                    let stopping = format!(
                        "fluxctl: {what}: stopping {} (pid {}), which was started with it (--on-delete keep keeps it running)",
                        self.shown,
                        child.id()
                    );
                    match &mut self.phase {
                        Phase::Running => {
                            eprintln!("{stopping}");
                            self.stop(child, Then::Exit(EXIT_NOT_FOUND));
                        }
                        // A restart under way ends the run instead.
                        Phase::Stopping { then, .. } => {
                            if matches!(then, Then::Restart) {
                                eprintln!("{stopping}");
                                *then = Then::Exit(EXIT_NOT_FOUND);
                            }
                        }
                    }
                    return;
                }
                OnDelete::Keep => {
                    eprintln!(
                        "fluxctl: {what}: {} keeps running with the value it was started with (--on-delete keep)",
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
                    "fluxctl: {} changed in project {project}: sending {sig} to {} (pid {})",
                    list(&changed),
                    self.shown,
                    child.id()
                );
                let _ = kill(pid(child), sig);
                // Signalled for these values: only a further change
                // signals again.
                for entry in &self.latest {
                    if changed.contains(&entry.name) {
                        self.given.insert(entry.name.clone(), entry.value.clone());
                    }
                }
            }
            None => {
                eprintln!(
                    "fluxctl: {} changed in project {project}: restarting {} (pid {})",
                    list(&changed),
                    self.shown,
                    child.id()
                );
                self.stop(child, Then::Restart);
            }
        }
    }

    /// SIGTERM now, SIGKILL after the grace period.
    fn stop(&mut self, child: &mut Child, then: Then) {
        self.phase = Phase::stop(child, self.grace(), then);
    }

    /// Lets the masked output drain; returns `code`.
    fn finish(&mut self, code: u8) -> u8 {
        if let Some(filter) = self.filter.take() {
            filter.finish();
        }
        code
    }

    fn finish_with(&mut self, failure: Failure) -> Failure {
        self.finish(0);
        failure
    }
}

/// True when fluxctl is in the foreground process group of the terminal
/// on its stdin, stdout or stderr: then a key's signal reached the child
/// directly.
fn in_foreground() -> bool {
    let me = nix::unistd::getpgrp();
    [
        std::io::stdin().as_fd(),
        std::io::stdout().as_fd(),
        std::io::stderr().as_fd(),
    ]
    .into_iter()
    .any(|fd| nix::unistd::tcgetpgrp(fd) == Ok(me))
}
