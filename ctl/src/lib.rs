//! `fluxctl`, the operator CLI for Flux Secrets, as a library: `main.rs`
//! (`fluxctl`) and `flux.rs` (`flux`, the product page's name) call
//! [`entry::main`], which parses the command line with [`Cli`] under the
//! name it runs as and calls [`run()`]. The command line's grammar is
//! declared in `cli.rs`; what goes to stdout (JSON, text, columns) is
//! written by `output.rs`; each command lives in its own module.
//!
//! Every command talks to the daemon through the blocking client in
//! `flux-protocol`: project commands on the project's own socket, the rest
//! on the control socket. Values are read from an argument, a file, stdin
//! or a hidden prompt, and are never printed: listings show names and when
//! each was set. Errors name what failed and what to do next, and map to
//! the exit statuses documented in [`failure`].
//!
//! Output: every command that prints a result takes `--json` and then
//! prints exactly one JSON document on stdout (`audit --json` prints JSON
//! Lines, one object per record). Plain text carries a ✔ mark only on a
//! terminal, and never with `NO_COLOR` set (the `style` module).
//!
//! `fluxctl completions SHELL` and `fluxctl man` render the shell
//! completions and man pages from [`Cli`] itself, so they always describe
//! the binary that prints them; the Debian package is built from them.
//! The completion scripts call the binary back, which asks fluxd for
//! project and secret names (the `complete` module).

#![forbid(unsafe_code)]

mod argv;
mod audit;
mod cli;
mod complete;
pub mod dashboard;
mod diff;
mod docs;
pub mod entry;
pub mod failure;
mod fleet;
mod hosts;
mod import;
mod init;
mod metrics;
mod output;
mod projects;
mod prompt;
mod render;
pub mod run;
mod secrets;
mod status;
mod style;
pub mod target;
pub mod timefmt;
mod vault;
pub(crate) use cli::{AFTER_LONG_HELP, COMPLETIONS_HELP};
pub use cli::{AuditCmd, Cli, Command, FleetCmd, HostsCmd, ProjectsCmd, SecretsCmd, VaultCmd};
pub use output::clean_error;
pub(crate) use output::{columns, out, out_json, project_json};

use failure::Result;
use target::Target;

/// Runs a parsed command line; returns the exit status.
pub fn run(cli: Cli) -> Result<u8> {
    let runtime_dir = cli.runtime_dir.clone();
    let target = Target::new(cli.runtime_dir.as_deref(), cli.project);
    match cli.command {
        Command::Secrets(cmd) => secrets::run(&target, cmd),
        Command::Projects(cmd) => projects::run(&target, cmd).map(|()| 0),
        Command::Run(args) => run::run(&target, args),
        Command::Render(args) => render::run(&target, args),
        Command::Status { json } => status::run(&target, json),
        Command::Dev { args } => Ok(entry::dev(target.project_flag(), runtime_dir, args)),
        Command::Hosts(cmd) => hosts::run(&target, cmd).map(|()| 0),
        Command::Fleet(cmd) => fleet::run(&target, cmd).map(|()| 0),
        Command::Metrics => metrics::run(&target).map(|()| 0),
        Command::Dashboard {
            port,
            no_open,
            link_ttl,
        } => dashboard::run(
            &target,
            port,
            no_open,
            std::time::Duration::from_secs(link_ttl),
        ),
        Command::Init { name, force, json } => init::run(name, force, json).map(|()| 0),
        Command::Audit {
            cmd: Some(AuditCmd::Verify { files, key, json }),
            ..
        } => audit::verify(&target, files, key, json),
        Command::Audit {
            since,
            unit,
            limit,
            json,
            ..
        } => {
            // Only --project narrows the log: a FLUX_PROJECT exported for
            // project work (or a flux.json) must not hide other projects'
            // records from a daemon admin without a word.
            let project = target.project_flag().map(str::to_owned);
            audit::run(&target, project, since.as_deref(), unit, limit, json).map(|()| 0)
        }
        Command::Vault(VaultCmd::Open { identity, vault }) => {
            vault::open(&identity, &vault).map(|()| 0)
        }
        Command::Vault(VaultCmd::Restore { json }) => vault::restore(&target, json).map(|()| 0),
        Command::Vault(VaultCmd::Seal { identity, output }) => {
            vault::seal(&identity, output.as_deref()).map(|()| 0)
        }
        Command::Completions { shell } => docs::completions(shell).map(|()| 0),
        Command::Man { out_dir } => docs::man(out_dir.as_deref()).map(|()| 0),
    }
}
