//! A command run under a supervisor that restarts it (or signals it) when
//! a secret it was started with changes: what `fluxctl run --watch` and
//! `fluxd dev --watch` share.
//!
//! The two supervisors differ in where they learn of a change — `fluxctl`
//! is a client of the project socket (it reconnects, re-reads over the
//! protocol, masks output), `fluxd dev` follows its own project in
//! process — and in how they start the command, so each keeps its own
//! loop. What they have in common lives here once: the `--watch` options
//! and their parsers ([`Watch`], [`OnDelete`], [`parse_duration`],
//! [`parse_signal`]), the burst bound ([`MAX_DEBOUNCES`]), the stop of a
//! child — SIGTERM, then SIGKILL after the grace period — and what follows
//! it ([`Phase`], [`Then`]), and how an exit status is reported
//! ([`exit_code`]).
//!
//! Nothing here sees a value: messages name secrets ([`list`]), never show
//! them.

#![forbid(unsafe_code)]

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::process::{Child, ExitStatus};
use std::time::Duration;
use tokio::time::Instant;

/// A burst of change events ends at the latest this many debounce times
/// after its first event, so changes that never stop still get through.
pub const MAX_DEBOUNCES: u32 = 10;

/// The exit status after `--on-delete stop` stopped the command: a value
/// it was started with was deleted.
pub const EXIT_DELETED: u8 = 3;

/// `--on-delete`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnDelete {
    /// Stop the command (SIGTERM, then SIGKILL after --grace) and exit 3
    Stop,
    /// Say so and keep the command running with the value it has
    Keep,
}

/// `--watch` and its options.
#[derive(Debug, Clone, Copy)]
pub struct Watch {
    /// How long changes must stay quiet before one restart takes them in.
    pub debounce: Duration,
    /// How long a stop waits after SIGTERM before it sends SIGKILL.
    pub grace: Duration,
    /// Sent instead of a restart, for a command that reloads on it.
    pub signal: Option<Signal>,
    pub on_delete: OnDelete,
}

/// `--debounce` and `--grace`: `300ms`, `10s`, `1m`…
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{e} (write a duration such as 300ms or 10s)"))
}

/// `--signal`: a signal's name with or without `SIG`, in any case; not
/// one that cannot be caught.
pub fn parse_signal(text: &str) -> Result<Signal, String> {
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    match name.parse::<Signal>() {
        Ok(Signal::SIGKILL | Signal::SIGSTOP) => Err(format!(
            "{name} cannot be caught: leave out --signal to restart the command"
        )),
        Ok(signal) => Ok(signal),
        Err(_) => Err(format!("not a signal name: {text} (e.g. HUP, USR1)")),
    }
}

/// What a stop leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Start the command again with the newest values.
    Restart,
    /// Exit with this status.
    Exit(u8),
}

/// Where the supervised child is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Running,
    /// SIGTERM was sent; SIGKILL follows at `kill_at` (`None`: sent).
    Stopping {
        kill_at: Option<Instant>,
        then: Then,
    },
}

impl Phase {
    /// Stops `child`: SIGTERM now and SIGKILL after `grace`, or SIGKILL at
    /// once without one. Returns the phase that follows.
    pub fn stop(child: &mut Child, grace: Duration, then: Then) -> Self {
        let kill_at = if grace.is_zero() {
            let _ = child.kill();
            None
        } else {
            let _ = kill(pid(child), Signal::SIGTERM);
            Some(Instant::now() + grace)
        };
        Self::Stopping { kill_at, then }
    }

    /// When SIGKILL is due, if it is still to be sent.
    pub fn kill_at(&self) -> Option<Instant> {
        match self {
            Self::Stopping {
                kill_at: Some(at), ..
            } => Some(*at),
            _ => None,
        }
    }

    /// SIGKILL was sent: nothing more is due.
    pub fn killed(&mut self) {
        if let Self::Stopping { kill_at, .. } = self {
            *kill_at = None;
        }
    }
}

/// The child's pid, for signals. The child is reaped only by the
/// supervisor's loop, which then stops signalling it, so the pid is never
/// another process's.
pub fn pid(child: &Child) -> Pid {
    Pid::from_raw(i32::try_from(child.id()).expect("pids fit in an i32"))
}

/// A status as a shell reports it: the exit code, or 128+N for signal N.
pub fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code & 0xff).unwrap_or(1),
        (None, Some(sig)) => u8::try_from(128 + sig).unwrap_or(255),
        (None, None) => 1,
    }
}

/// Resolves at `at`; never without one.
pub async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Names as a message lists them.
pub fn list<'a>(names: impl IntoIterator<Item = &'a String>) -> String {
    names
        .into_iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn exit_codes_as_a_shell_shows_them() {
        // Raw wait statuses: the code in the second byte, or the signal.
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(ExitStatus::from_raw(7 << 8)), 7);
        assert_eq!(exit_code(ExitStatus::from_raw(255 << 8)), 255);
        assert_eq!(exit_code(ExitStatus::from_raw(Signal::SIGTERM as i32)), 143);
        assert_eq!(exit_code(ExitStatus::from_raw(Signal::SIGKILL as i32)), 137);
    }

    #[test]
    fn signals_by_name_in_any_case_but_not_uncatchable_ones() {
        assert_eq!(parse_signal("HUP"), Ok(Signal::SIGHUP));
        assert_eq!(parse_signal("sighup"), Ok(Signal::SIGHUP));
        assert_eq!(parse_signal("usr1"), Ok(Signal::SIGUSR1));
        assert_eq!(parse_signal("sigusr1"), Ok(Signal::SIGUSR1));
        assert!(
            parse_signal("KILL")
                .unwrap_err()
                .contains("cannot be caught")
        );
        assert!(parse_signal("STOP").is_err());
        assert!(
            parse_signal("NOPE")
                .unwrap_err()
                .contains("not a signal name")
        );
        assert!(parse_signal("1").is_err());
    }

    #[test]
    fn durations_as_humans_write_them() {
        assert!(parse_duration("soon").unwrap_err().contains("300ms or 10s"));
        assert_eq!(parse_duration("50ms"), Ok(Duration::from_millis(50)));
    }

    #[tokio::test]
    async fn a_stop_terms_the_child_then_kills_it_after_the_grace_period() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let mut phase = Phase::stop(&mut child, Duration::from_secs(60), Then::Restart);
        assert!(phase.kill_at().is_some(), "SIGKILL is due after the grace");
        let status = child.wait().unwrap();
        assert_eq!(exit_code(status), 143, "SIGTERM came first");
        phase.killed();
        assert_eq!(
            phase,
            Phase::Stopping {
                kill_at: None,
                then: Then::Restart
            }
        );
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let phase = Phase::stop(&mut child, Duration::ZERO, Then::Exit(EXIT_DELETED));
        assert_eq!(phase.kill_at(), None, "no grace: SIGKILL at once");
        assert_eq!(exit_code(child.wait().unwrap()), 137);
    }
}
