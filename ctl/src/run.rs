//! `fluxctl run -- CMD ARGS…`: runs CMD with the project's secrets added to
//! its environment, for programs that read environment variables (the
//! `doppler run` / `op run` habit).
//!
//! fluxctl fetches every value in one request and then `exec`s CMD in its
//! place: CMD gets fluxctl's pid, signals and stdio, its exit status is the
//! status, and no fluxctl process lingers holding values in memory.

use crate::failure::{Failure, Result};
use crate::target::Target;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;

pub(crate) fn run(target: &Target, command: Vec<OsString>) -> Result<u8> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| Failure::usage("no command given: fluxctl run -- CMD ARGS…"))?;
    let (_, mut client) = target.project_client()?;
    let values = client.get_all()?;
    let mut cmd = Command::new(program);
    cmd.args(args);
    for entry in &values {
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
