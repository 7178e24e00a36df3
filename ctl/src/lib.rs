//! `fluxctl`, the operator CLI for Flux Secrets, as a library: `main.rs`
//! parses the command line with [`Cli`] and calls [`run`].
//!
//! Every command talks to the daemon through the blocking client in
//! `flux-protocol`: project commands on the project's own socket, the rest
//! on the control socket. Values are read from an argument, a file, stdin
//! or a hidden prompt, and are never printed: listings show names and when
//! each was set. Errors name what failed and what to do next, and map to
//! the exit statuses documented in [`failure`].

#![forbid(unsafe_code)]

mod argv;
mod audit;
mod diff;
pub mod failure;
mod fleet;
mod hosts;
mod import;
mod init;
mod projects;
mod prompt;
mod run;
mod secrets;
mod status;
pub mod target;
pub mod timefmt;
mod vault;

use clap::{Parser, Subcommand};
use failure::Result;
use std::io::Write;
use std::path::PathBuf;
use target::Target;

/// Manage Flux Secrets: per-project encrypted secrets served to functions.
#[derive(Debug, Parser)]
#[command(name = "fluxctl", version, about, long_about = None)]
pub struct Cli {
    /// Folder holding fluxd's sockets [env: FLUX_RUNTIME_DIR; default as fluxd]
    #[arg(long, global = true, value_name = "DIR")]
    pub runtime_dir: Option<PathBuf>,
    /// Project to act on [default: "name" in ./flux.json]
    #[arg(
        long,
        short = 'p',
        global = true,
        env = "FLUX_PROJECT",
        value_name = "NAME"
    )]
    pub project: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Set, list and delete a project's secrets
    #[command(subcommand)]
    Secrets(SecretsCmd),
    /// Create, list and delete projects
    #[command(subcommand)]
    Projects(ProjectsCmd),
    /// Run a command with the project's secrets in its environment
    Run {
        /// The command and its arguments (put them after `--`)
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "CMD"
        )]
        command: Vec<std::ffi::OsString>,
    },
    /// Name this folder's project in flux.json and keep .env out of git
    Init {
        /// Project name [default: this folder's name]
        name: Option<String>,
        /// Replace the name flux.json already has
        #[arg(long)]
        force: bool,
    },
    /// Show the audit log of access decisions (admins only); --project
    /// narrows it to one project
    Audit {
        /// Only records newer than this, e.g. 1h, 30m, 7d
        #[arg(long, value_name = "DURATION")]
        since: Option<String>,
        /// At most this many records, the newest
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        /// Print JSON lines
        #[arg(long)]
        json: bool,
    },
    /// Offline break-glass: open or seal a vault file with a project key
    #[command(subcommand)]
    Vault(VaultCmd),
    /// Show the daemon's state and each project's health
    Status {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Fleet mode: this host's recipient and the hosts that may serve
    /// this daemon's projects
    #[command(subcommand)]
    Hosts(HostsCmd),
    /// Fleet mode: move a single host's projects into the fleet
    #[command(subcommand)]
    Fleet(FleetCmd),
}

/// `fluxctl fleet …`.
#[derive(Debug, Subcommand)]
pub enum FleetCmd {
    /// Copy every project of a single-host state folder (its keys and
    /// vaults) into the fleet this fluxd belongs to
    Import {
        /// The state folder [default: this fluxd's own]
        #[arg(long, value_name = "DIR")]
        from: Option<std::path::PathBuf>,
        /// Say what would be imported; write nothing
        #[arg(long)]
        dry_run: bool,
    },
}

/// `fluxctl hosts …`.
#[derive(Debug, Subcommand)]
pub enum HostsCmd {
    /// The fleet's id, this host's join token and the fleet's hosts
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Let a host serve every project this host serves: signs it into the
    /// host list and wraps the project keys for it
    Add {
        /// The host's join token (age1…:…), as `fluxctl hosts list` shows it
        /// on that host
        token: String,
    },
    /// Remove a host: signs it out of the host list and re-keys its projects
    Remove {
        /// The host's recipient (age1…) or join token
        recipient: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretsCmd {
    /// Create or rotate a secret; the new value is live immediately
    Set {
        /// Secret name, e.g. OPENAI_API_KEY
        name: String,
        /// The value; omit it to read stdin or be prompted (keeps it out of shell history)
        value: Option<String>,
        /// Read the value from a file, bytes exact (no newline stripped)
        #[arg(long, value_name = "PATH", conflicts_with = "value")]
        from_file: Option<PathBuf>,
    },
    /// List secret names, when each was set and a short digest of each
    /// value (never values): equal digests, equal values
    List {
        /// Print JSON: names, RFC 3339 times and digests
        #[arg(long)]
        json: bool,
    },
    /// Delete a secret, and every earlier version kept of it
    Delete {
        /// Secret name
        name: String,
    },
    /// List the versions kept of a secret: number, when, who set it and a
    /// digest of each value (never values)
    History {
        /// Secret name
        name: String,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Make an earlier version of a secret current again, as a new
    /// version; live immediately
    Rollback {
        /// Secret name
        name: String,
        /// The version to make current again [default: the one before the
        /// current one]
        #[arg(long, value_name = "N")]
        to: Option<u64>,
    },
    /// Compare a .env file with the project, name by name (never
    /// printing a value): exit 0 when they match, 1 when they differ
    Diff {
        /// The .env file, or - for stdin
        file: PathBuf,
        /// Compare the rest when lines need attention: leave out the lines
        /// Flux cannot hold, compare the others as `fluxd dev` serves them
        #[arg(long)]
        skip_invalid: bool,
        /// Expand $NAME, ${NAME} and ${NAME:-default} from the lines above
        /// (never the environment, never a command; see docs/DOTENV.md)
        #[arg(long)]
        expand: bool,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Set every secret of a .env file in one write, all or nothing
    Import {
        /// The .env file, or - for stdin
        file: PathBuf,
        /// List what would be created, updated and left unchanged (values
        /// compared by the daemon, never printed), and the lines that need
        /// attention; write nothing
        #[arg(long)]
        dry_run: bool,
        /// Import the rest when lines need attention: leave out the lines
        /// Flux cannot hold, import the others as `fluxd dev` serves them
        #[arg(long)]
        skip_invalid: bool,
        /// Expand $NAME, ${NAME} and ${NAME:-default} from the lines above
        /// (never the environment, never a command; see docs/DOTENV.md)
        #[arg(long)]
        expand: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum VaultCmd {
    /// Decrypt a vault and print its plaintext document (values included)
    Open {
        /// The project's key file (keys/<project>.key)
        #[arg(long, short = 'i', value_name = "KEY")]
        identity: PathBuf,
        /// The vault file (vaults/<project>.age)
        vault: PathBuf,
    },
    /// Serve the project's vault file although it is older than the one
    /// fluxd served: after putting a backup in place on purpose (fluxd
    /// refuses an older vault as a rollback until told so)
    Restore,
    /// Seal and encrypt a plaintext document read from stdin into a vault,
    /// at the revision after the document's
    Seal {
        /// The project's key file (keys/<project>.key)
        #[arg(long, short = 'i', value_name = "KEY")]
        identity: PathBuf,
        /// Write the vault here, atomically (default: stdout)
        #[arg(long, short = 'o', value_name = "VAULT")]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProjectsCmd {
    /// Create a project with its own key and an empty vault
    Create {
        /// Project name, e.g. my-app
        name: String,
    },
    /// List projects
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Delete a project and all its secrets, permanently
    Delete {
        /// Project name
        name: String,
        /// Do not ask for confirmation (required when stdin is not a terminal)
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

/// Runs a parsed command line; returns the exit status.
pub fn run(cli: Cli) -> Result<u8> {
    let target = Target::new(cli.runtime_dir.as_deref(), cli.project);
    match cli.command {
        Command::Secrets(cmd) => secrets::run(&target, cmd),
        Command::Projects(cmd) => projects::run(&target, cmd).map(|()| 0),
        Command::Run { command } => run::run(&target, command),
        Command::Status { json } => status::run(&target, json).map(|()| 0),
        Command::Hosts(cmd) => hosts::run(&target, cmd).map(|()| 0),
        Command::Fleet(cmd) => fleet::run(&target, cmd).map(|()| 0),
        Command::Init { name, force } => init::run(name, force).map(|()| 0),
        Command::Audit { since, limit, json } => {
            let project = target.project.clone();
            audit::run(&target, project, since.as_deref(), limit, json).map(|()| 0)
        }
        Command::Vault(VaultCmd::Open { identity, vault }) => {
            vault::open(&identity, &vault).map(|()| 0)
        }
        Command::Vault(VaultCmd::Restore) => vault::restore(&target).map(|()| 0),
        Command::Vault(VaultCmd::Seal { identity, output }) => {
            vault::seal(&identity, output.as_deref()).map(|()| 0)
        }
    }
}

/// Writes to stdout; a closed pipe (`fluxctl secrets list | head`) is not
/// an error.
pub(crate) fn out(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(failure::Failure::general(
            format!("cannot write to stdout: {e}"),
        )),
        _ => Ok(()),
    }
}

/// A project as `--json` output shows it (never a value).
pub(crate) fn project_json(p: &flux_protocol::message::ProjectInfo) -> serde_json::Value {
    serde_json::json!({
        "name": p.name,
        "socket": p.socket,
        "secrets": p.secrets,
        "generation": p.generation,
        "loaded_at": timefmt::rfc3339_ms(p.loaded_at_ms),
        "last_error": p.last_error,
    })
}

/// Pads `rows` into aligned columns separated by two spaces.
pub(crate) fn columns(rows: &[Vec<String>]) -> String {
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..width)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}
