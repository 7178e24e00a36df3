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

use crate::failure::{Failure, Result};
use crate::target::Target;
use flux_protocol::paths::SOCKET_ENV;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// `fluxctl run`'s arguments.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Keep variables already set in the environment: a secret of the
    /// same name (FLUX_SECRETS_SOCKET included) does not replace them
    #[arg(long)]
    pub no_override: bool,
    /// The command and its arguments (put them after `--`)
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<OsString>,
}

pub(crate) fn run(target: &Target, args: RunArgs) -> Result<u8> {
    let RunArgs {
        no_override,
        command,
    } = args;
    let (program, args) = command
        .split_first()
        .ok_or_else(|| Failure::usage("no command given: fluxctl run -- CMD ARGS…"))?;
    let (_, mut client) = target.project_client()?;
    let socket = std::path::absolute(client.path()).unwrap_or_else(|_| client.path().to_owned());
    let values = client.get_all()?;
    let keep = |name: &str| no_override && std::env::var_os(name).is_some();
    let mut cmd = Command::new(program);
    cmd.args(args);
    if !keep(SOCKET_ENV) {
        cmd.env(SOCKET_ENV, &socket);
    }
    for entry in &values {
        if keep(&entry.name) {
            continue;
        }
        if entry.value.expose().contains('\0') {
            return Err(Failure::general(format!(
                "secret {} contains a NUL byte, which an environment variable cannot hold",
                entry.name
            )));
        }
        cmd.env(&entry.name, entry.value.expose());
    }
    drop(values);
    drop(client);
    let err = cmd.exec();
    let status = if err.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    };
    Err(Failure::new(
        status,
        format!("cannot run {}: {err}", program.to_string_lossy()),
    ))
}
