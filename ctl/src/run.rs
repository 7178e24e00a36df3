//! `fluxctl run [--no-override] -- CMD ARGS…`: runs CMD with the project's
//! secrets added to its environment, for programs that read environment
//! variables (the `doppler run` / `op run` habit).
//!
//! fluxctl fetches every value in one request and then `exec`s CMD in its
//! place: CMD gets fluxctl's pid, signals and stdio, its exit status is the
//! status, and no fluxctl process lingers holding values in memory.
//!
//! CMD also gets `FLUX_SECRETS_SOCKET`, the project socket fluxctl read
//! from, so a program that uses a Flux client library (`ctx.secrets`) reads
//! the same project, and sees rotations that the environment, fixed at
//! start, cannot. The path is no secret: the socket's own permissions
//! decide who may read through it.
//!
//! By default a secret replaces a variable of the same name already in the
//! environment (the secret store is the source of truth, as with `doppler
//! run`). `--no-override` keeps the variables already set — a local
//! override for one run, `OPENAI_API_KEY=sk-test fluxctl run
//! --no-override -- …` — and applies to `FLUX_SECRETS_SOCKET` too.
//!
//! `--watch` and `--mask` keep fluxctl running as the command's supervisor
//! instead (the `supervise` module): `--watch` restarts the command, or
//! signals it, when a value it was started with changes (`watch` follows
//! the project's change events); `--mask` passes its stdout and stderr
//! through a filter that replaces every secret value with
//! `<redacted:NAME>` (the `mask` and `output` modules).

mod mask;
mod output;
mod supervise;
pub(crate) mod watch;

pub(crate) use flux_supervise::{OnDelete, parse_duration, parse_signal};

use crate::failure::{Failure, Result};
use crate::target::Target;
use flux_protocol::SecretValue;
use flux_protocol::message::NamedValue;
use flux_protocol::paths::SOCKET_ENV;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

/// `fluxctl run`'s arguments.
#[derive(Debug, clap::Args)]
#[command(after_long_help = AFTER_LONG_HELP)]
pub struct RunArgs {
    /// Keep variables already set in the environment: a secret of the
    /// same name (FLUX_SECRETS_SOCKET included) does not replace them
    #[arg(long)]
    pub no_override: bool,
    /// Stay as the command's supervisor and restart it when a value it was
    /// started with changes (a value set again unchanged restarts nothing)
    #[arg(long)]
    pub watch: bool,
    /// Pass the command's stdout and stderr through a filter that replaces
    /// every secret value with <redacted:NAME> (values shorter than 4
    /// bytes excepted)
    #[arg(long)]
    pub mask: bool,
    /// With --watch: how long changes must stay quiet before one restart
    /// takes them all in (e.g. 300ms, 2s)
    #[arg(long, value_name = "DURATION", default_value = "300ms",
          value_parser = parse_duration, requires = "watch")]
    pub debounce: Duration,
    /// With --watch: how long a restart waits after SIGTERM before it
    /// sends SIGKILL
    #[arg(long, value_name = "DURATION", default_value = "10s",
          value_parser = parse_duration, requires = "watch")]
    pub grace: Duration,
    /// With --watch: send this signal (e.g. HUP, USR1) instead of
    /// restarting, for a command that reloads on it
    #[arg(long, value_name = "SIGNAL", value_parser = parse_signal, requires = "watch")]
    pub signal: Option<nix::sys::signal::Signal>,
    /// With --watch: what a deleted secret the command was started with
    /// does: stop the command (fluxctl then exits with 3), or keep it
    /// running
    #[arg(long, value_name = "WHAT", value_enum, default_value_t = OnDelete::Stop,
          requires = "watch")]
    pub on_delete: OnDelete,
    /// The command and its arguments (put them after `--`)
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<OsString>,
}

const AFTER_LONG_HELP: &str = "\
Without --watch or --mask, fluxctl reads every value once and replaces
itself with the command (exec): the command gets fluxctl's pid, signals
and stdio, and no fluxctl process stays behind holding values.

With --watch or --mask, fluxctl stays as the command's supervisor: stdin
is the command's, the signals HUP, INT, QUIT, TERM, USR1, USR2 and WINCH
are passed on to it, and fluxctl exits with its status (128+N when
signal N killed it).

--watch: after each burst of changes (--debounce) fluxctl reads every
value again and compares the ones the command was started with. A real
change restarts it: SIGTERM, SIGKILL after --grace, then the command
again with the new values (or --signal sends it a signal instead). A
name added to the project is no change to the command's environment: it
restarts nothing and is in the environment from the next restart on. A
deleted secret the command was started with stops it (exit status 3),
unless --on-delete keep. When fluxd cannot be reached the command keeps
running; fluxctl reconnects and catches up.

--mask: the command's stdout and stderr become pipes (it no longer sees a
terminal), and every value of the project, as fluxctl has read it,
becomes <redacted:NAME> — also when a value is split across writes. A
value cut off where the output pauses for 200 ms is let go as it is.";

pub(crate) fn run(target: &Target, args: RunArgs) -> Result<u8> {
    let RunArgs {
        no_override,
        watch,
        mask,
        debounce,
        grace,
        signal,
        on_delete,
        command,
    } = args;
    let (program, args) = command
        .split_first()
        .ok_or_else(|| Failure::usage("no command given: fluxctl run -- CMD ARGS…"))?;
    let (project, mut client) = target.project_client()?;
    let socket = std::path::absolute(client.path()).unwrap_or_else(|_| client.path().to_owned());
    let values = client.get_all()?;
    if watch || mask {
        drop(client);
        let plan = supervise::Plan {
            project,
            socket,
            program: program.clone(),
            args: args.to_vec(),
            no_override,
            mask,
            watch: watch.then_some(supervise::Watch {
                debounce,
                grace,
                signal,
                on_delete,
            }),
        };
        return supervise::run(plan, values);
    }
    let secrets = secret_vars(&values, no_override)?;
    let mut cmd = Command::new(program);
    cmd.args(args);
    if !keep(no_override, SOCKET_ENV) {
        cmd.env(SOCKET_ENV, &socket);
    }
    for (name, value) in &secrets {
        cmd.env(name, value.expose());
    }
    drop(secrets);
    drop(values);
    drop(client);
    Err(cannot_run(program, cmd.exec()))
}

/// True when `--no-override` keeps the variable `name` already set.
fn keep(no_override: bool, name: &str) -> bool {
    no_override && std::env::var_os(name).is_some()
}

/// The variables the command gets from the project: every secret but
/// those `--no-override` keeps from the environment.
fn secret_vars(values: &[NamedValue], no_override: bool) -> Result<BTreeMap<String, SecretValue>> {
    let mut vars = BTreeMap::new();
    for entry in values {
        if keep(no_override, &entry.name) {
            continue;
        }
        if entry.value.expose().contains('\0') {
            return Err(Failure::general(format!(
                "secret {} contains a NUL byte, which an environment variable cannot hold",
                entry.name
            )));
        }
        vars.insert(entry.name.clone(), entry.value.clone());
    }
    Ok(vars)
}

/// The failure for a command that could not be started.
fn cannot_run(program: &std::ffi::OsStr, err: std::io::Error) -> Failure {
    let status = if err.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    };
    Failure::new(
        status,
        format!("cannot run {}: {err}", program.to_string_lossy()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use nix::sys::signal::Signal;

    #[test]
    fn watch_flags_and_their_defaults() {
        let cli = crate::Cli::try_parse_from(["fluxctl", "run", "--", "node", "--watch"]).unwrap();
        let crate::Command::Run(args) = cli.command else {
            panic!("not run")
        };
        // After `--`, --watch is the command's argument.
        assert!(!args.watch && !args.mask);
        assert_eq!(args.command, ["node", "--watch"]);
        assert_eq!(args.debounce, Duration::from_millis(300));
        assert_eq!(args.grace, Duration::from_secs(10));
        assert_eq!(args.on_delete, OnDelete::Stop);
        let cli = crate::Cli::try_parse_from([
            "fluxctl",
            "run",
            "--watch",
            "--mask",
            "--grace",
            "2s",
            "--debounce",
            "1s",
            "--signal",
            "USR1",
            "--on-delete",
            "keep",
            "--",
            "x",
        ])
        .unwrap();
        let crate::Command::Run(args) = cli.command else {
            panic!("not run")
        };
        assert!(args.watch && args.mask);
        assert_eq!(args.grace, Duration::from_secs(2));
        assert_eq!(args.debounce, Duration::from_secs(1));
        assert_eq!(args.signal, Some(Signal::SIGUSR1));
        assert_eq!(args.on_delete, OnDelete::Keep);
        for without_watch in [
            ["--grace", "1s"],
            ["--signal", "HUP"],
            ["--on-delete", "keep"],
        ] {
            let mut argv = vec!["fluxctl", "run"];
            argv.extend(without_watch);
            argv.extend(["--", "x"]);
            assert!(
                crate::Cli::try_parse_from(argv).is_err(),
                "{without_watch:?}"
            );
        }
    }

    #[test]
    fn no_override_keeps_only_what_is_set() {
        let values = vec![
            NamedValue {
                name: "FLUX_TEST_SURELY_UNSET_42".into(),
                value: "a".into(),
            },
            NamedValue {
                name: "PATH".into(),
                value: "b".into(),
            },
        ];
        let all = secret_vars(&values, false).unwrap();
        assert_eq!(all.len(), 2);
        let kept = secret_vars(&values, true).unwrap();
        assert_eq!(
            kept.keys().collect::<Vec<_>>(),
            ["FLUX_TEST_SURELY_UNSET_42"]
        );
        let nul = vec![NamedValue {
            name: "BAD".into(),
            value: "a\0b".into(),
        }];
        let err = secret_vars(&nul, false).unwrap_err();
        assert!(err.message.contains("BAD") && !err.message.contains("a\0b"));
    }
}
