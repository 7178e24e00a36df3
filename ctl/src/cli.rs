//! The command line: [`Cli`] and its subcommands as clap parses them, and
//! the long help texts. `fluxctl completions` and `fluxctl man` render
//! from these same declarations ([`crate::docs`]); [`crate::run`]
//! dispatches what they parse.

use crate::complete;
use clap::{Parser, Subcommand};
use clap_complete::ArgValueCompleter;
use std::path::PathBuf;

/// Manage Flux Secrets: per-project encrypted secrets served to functions.
#[derive(Debug, Parser)]
#[command(
    name = "fluxctl",
    version,
    about,
    long_about = None,
    after_long_help = AFTER_LONG_HELP
)]
pub struct Cli {
    /// Folder holding fluxd's sockets [env: FLUX_RUNTIME_DIR; default: your
    /// own fluxd's folder, then the system service's /run/flux]
    #[arg(long, global = true, value_name = "DIR")]
    pub runtime_dir: Option<PathBuf>,
    /// Project to act on [env: FLUX_PROJECT; default: "name" in ./flux.json]
    #[arg(long, short = 'p', global = true, value_name = "NAME",
          add = ArgValueCompleter::new(complete::projects))]
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
    ///
    /// The command also gets FLUX_SECRETS_SOCKET, the project's socket, so
    /// a Flux client library in it reads the same project live. A secret
    /// replaces a variable of the same name unless --no-override. With
    /// --watch it is restarted (or signalled) when a value it was started
    /// with changes; with --mask values are redacted from its output. The
    /// exit status is the command's.
    Run(crate::run::RunArgs),
    /// Develop locally: `fluxd dev`, serving ./.env as the project
    ///
    /// Every argument after `dev` goes to `fluxd dev` as it is (see
    /// fluxd-dev(8)): `dev -- node app.js` runs the command with
    /// FLUX_SECRETS_SOCKET set, so ctx.secrets.get reads the .env file's
    /// values. The fluxd beside this program is run, else the one on PATH.
    #[command(disable_help_flag = true)]
    Dev {
        /// fluxd dev's arguments: [--env-file PATH] [--expand] [--watch [--signal SIG] [--grace D] [--debounce D] [--on-delete keep|stop]] [-- CMD…]
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "ARGS"
        )]
        args: Vec<std::ffi::OsString>,
    },
    /// Fill a template with the project's secrets and write the file
    ///
    /// {{ secret "NAME" }} tags name secrets; the file is written
    /// atomically with --mode (0600) and --owner from its first byte. With
    /// --watch it is rendered again when a value it names changes, and
    /// --exec, --signal or --reload-unit tell the program it feeds.
    Render(crate::render::RenderArgs),
    /// Name this folder's project in flux.json and keep .env files out of git
    ///
    /// Adds what is missing of .env, .env.* and *.env to .gitignore, and
    /// !.env.example after them, so the template stays committable.
    Init {
        /// Project name [default: this folder's name]
        name: Option<String>,
        /// Replace the name flux.json already has
        #[arg(long)]
        force: bool,
        /// Print the result as one JSON document
        #[arg(long)]
        json: bool,
    },
    /// Show the audit log of access decisions (daemon admins only)
    ///
    /// Every project's records; --project narrows it to one project
    /// (FLUX_PROJECT and flux.json do not).
    #[command(args_conflicts_with_subcommands = true)]
    Audit {
        #[command(subcommand)]
        cmd: Option<AuditCmd>,
        /// Only records newer than this, e.g. 1h, 30m, 7d
        #[arg(long, value_name = "DURATION")]
        since: Option<String>,
        /// Only records of peers in a systemd unit this pattern matches
        /// (* matches any run of characters: fn-*.service)
        #[arg(long, value_name = "PATTERN")]
        unit: Option<String>,
        /// At most this many records, the newest
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        /// Print JSON Lines: one JSON object per record, one record per
        /// line (not one document)
        #[arg(long)]
        json: bool,
    },
    /// Offline break-glass: open or seal a vault file with a project key
    #[command(subcommand)]
    Vault(VaultCmd),
    /// Show the daemon's state and each project's health; exit 7 when a
    /// project cannot be served as stored or the daemon reports a problem
    Status {
        /// Print the status as one JSON document
        #[arg(long)]
        json: bool,
    },
    /// Fleet mode: this host's recipient and the hosts that may serve
    /// this daemon's projects
    #[command(subcommand)]
    Hosts(HostsCmd),
    /// Fleet mode: found a fleet (its operator key), move a single host's
    /// projects into it
    #[command(subcommand)]
    Fleet(FleetCmd),
    /// Print a shell completion script: bash, zsh or fish
    #[command(after_long_help = COMPLETIONS_HELP)]
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
    /// Print fluxctl's man page, or write one page per command into a
    /// folder
    Man {
        /// Write fluxctl.1 and a page per command (fluxctl-secrets-set.1,
        /// …) into this folder instead
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// Serve a read-only web page of projects, names, audit and activity
    /// on 127.0.0.1, updated live (never a value; writes stay here)
    Dashboard {
        /// Port to listen on [default: a random free port]
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Print the link without opening a browser
        #[arg(long)]
        no_open: bool,
        /// Seconds the printed link may be used in (once, by one browser
        /// tab)
        #[arg(long, value_name = "SECONDS", default_value_t = 60,
              value_parser = clap::value_parser!(u64).range(1..=600))]
        link_ttl: u64,
    },
    /// Print the daemon's counters and gauges in the Prometheus text
    /// format (daemon admins; names and numbers, never values)
    Metrics,
}

/// `fluxctl fleet …`.
#[derive(Debug, Subcommand)]
pub enum FleetCmd {
    /// Create the fleet's operator key (the one key that signs the host
    /// list; keep it off the hosts) and found the fleet with this host
    Init {
        /// Where to write the new operator key (mode 0600; refused if it
        /// exists)
        #[arg(long, value_name = "FILE", env = "FLUX_OPERATOR_KEY")]
        operator_key: PathBuf,
        /// Only create the key; found nothing
        #[arg(long)]
        key_only: bool,
        /// Print the result as one JSON document
        #[arg(long)]
        json: bool,
    },
    /// Copy every project of a single-host state folder (its keys and
    /// vaults) into the fleet this fluxd belongs to
    Import {
        /// The state folder [default: this fluxd's own]
        #[arg(long, value_name = "DIR")]
        from: Option<std::path::PathBuf>,
        /// Say what would be imported; write nothing
        #[arg(long)]
        dry_run: bool,
        /// Print the result as one JSON document
        #[arg(long)]
        json: bool,
    },
}

pub(crate) const AFTER_LONG_HELP: &str = "\
Output:
  With --json, a command prints exactly one JSON document on stdout;
  `fluxctl audit --json` prints JSON Lines, one object per record. Text
  output carries a check mark only on a terminal and never when NO_COLOR
  is set. Errors go to stderr as `fluxctl: error: …`.

Exit status:
  0  success
  1  failure: a daemon error, or a file or stream that cannot be read or written
  2  usage: bad arguments, an invalid name, a value too large or empty,
     a missing --yes
  3  not found: no such secret or project
  4  fluxd is not reachable (the message names every socket tried)
  5  permission denied
  6  unavailable: nothing was changed, retry later
  7  `fluxctl status`: a project cannot be served as stored (its last load
     error is shown), or fluxd reports a daemon-wide problem
  126, 127  `fluxctl run`: the command could not be run / was not found

Environment:
  FLUX_PROJECT      the project, when --project is not given
  FLUX_RUNTIME_DIR  fluxd's socket folder, when --runtime-dir is not given
  NO_COLOR          plain text output, no marks";

pub(crate) const COMPLETIONS_HELP: &str = "\
Install for your user:
  bash  fluxctl completions bash > ~/.local/share/bash-completion/completions/fluxctl
  zsh   fluxctl completions zsh > ~/.zfunc/_fluxctl   (with fpath+=~/.zfunc before compinit)
  fish  fluxctl completions fish > ~/.config/fish/completions/fluxctl.fish
The scripts call fluxctl back on each TAB, so subcommands and flags match
the installed fluxctl, --project offers the projects fluxd serves and a
secret name the project's names (never a value). No answer from fluxd
within a second: no names, and no error.
The Debian package installs all three.";

/// `fluxctl hosts …`.
#[derive(Debug, Subcommand)]
pub enum HostsCmd {
    /// The fleet's id, this host's join token and the fleet's hosts
    List {
        /// Print the hosts as one JSON document
        #[arg(long)]
        json: bool,
    },
    /// Let a host serve every project this host serves: signs it into the
    /// host list with the operator key and wraps the project keys for it
    Add {
        /// The host's join token (age1…:…), as `fluxctl hosts list` shows it
        /// on that host
        token: String,
        /// The fleet's operator key (`fluxctl fleet init` wrote it)
        #[arg(long, value_name = "FILE", env = "FLUX_OPERATOR_KEY")]
        operator_key: PathBuf,
        /// Print the result as one JSON document
        #[arg(long)]
        json: bool,
    },
    /// Choose the hosts that serve a project (by default every host does):
    /// signs the assignment into the host list with the operator key, wraps
    /// the project's key for hosts that gain it and re-keys it away from
    /// hosts that lose it, which drop their copies. Run it on a host that
    /// serves the project before and after (any host, for a project that
    /// exists nowhere yet)
    Assign {
        /// The project, or several, comma-separated (one host list version
        /// for all of them)
        project: String,
        /// The hosts that serve it: recipients (age1…) or join tokens
        #[arg(required_unless_present = "all")]
        hosts: Vec<String>,
        /// Every host of the fleet serves it (the default for a project)
        #[arg(long, conflicts_with = "hosts")]
        all: bool,
        /// The fleet's operator key (`fluxctl fleet init` wrote it)
        #[arg(long, value_name = "FILE", env = "FLUX_OPERATOR_KEY")]
        operator_key: PathBuf,
        /// Print the result as one JSON document
        #[arg(long)]
        json: bool,
    },
    /// Give this host a new host key: its project keys are wrapped for it
    /// now; a restart of fluxd switches to it and destroys the old one;
    /// then `hosts remove OLD` re-keys every project away from the old one
    RotateKey {
        /// The fleet's operator key (`fluxctl fleet init` wrote it)
        #[arg(long, value_name = "FILE", env = "FLUX_OPERATOR_KEY")]
        operator_key: PathBuf,
        /// Print the result as one JSON document
        #[arg(long)]
        json: bool,
    },
    /// Remove a host: signs it out of the host list with the operator key
    /// and re-keys every project it could open
    Remove {
        /// The host's recipient (age1…) or join token
        #[arg(required_unless_present = "resume")]
        recipient: Option<String>,
        /// The fleet's operator key (`fluxctl fleet init` wrote it)
        #[arg(long, value_name = "FILE", env = "FLUX_OPERATOR_KEY")]
        operator_key: Option<PathBuf>,
        /// Finish an interrupted removal: re-key the projects still keyed
        /// from before it (no operator key needed: the removal is signed)
        #[arg(long, conflicts_with = "recipient")]
        resume: bool,
        /// Print the result as one JSON document
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Check that no line of the audit log was removed, changed, reordered
    /// or inserted: its MAC chain, keyed with the daemon's audit key.
    /// Exit 0 when whole, 1 at the first broken line
    Verify {
        /// The log files, oldest first [default: the daemon's log and its
        /// rotated files, as fluxd reports them]
        files: Vec<PathBuf>,
        /// The audit key [default: audit.key in fluxd's state folder]
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// Print the result as one JSON document
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretsCmd {
    /// Create or rotate a secret; the new value is live immediately
    Set {
        /// Secret name, e.g. OPENAI_API_KEY
        #[arg(add = ArgValueCompleter::new(complete::secret_names))]
        name: String,
        /// The value; omit it to read stdin or be prompted (keeps it out of shell history)
        value: Option<String>,
        /// Read the value from a file, bytes exact (no newline stripped)
        #[arg(long, value_name = "PATH", conflicts_with = "value")]
        from_file: Option<PathBuf>,
        /// Store an empty value (refused otherwise: an empty prompt, an
        /// empty stdin or `echo $UNSET |` is almost always a mistake)
        #[arg(long)]
        allow_empty: bool,
        /// Print the result as one JSON document
        #[arg(long)]
        json: bool,
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
        #[arg(add = ArgValueCompleter::new(complete::secret_names))]
        name: String,
        /// Print the result as one JSON document
        #[arg(long)]
        json: bool,
    },
    /// List the versions kept of a secret: number, when, who set it and a
    /// digest of each value (never values)
    History {
        /// Secret name
        #[arg(add = ArgValueCompleter::new(complete::secret_names))]
        name: String,
        /// Print the versions as one JSON document
        #[arg(long)]
        json: bool,
    },
    /// Make an earlier version of a secret current again, as a new
    /// version; live immediately
    Rollback {
        /// Secret name
        #[arg(add = ArgValueCompleter::new(complete::secret_names))]
        name: String,
        /// The version to make current again [default: the one before the
        /// current one]
        #[arg(long, value_name = "N")]
        to: Option<u64>,
        /// Print the result as one JSON document
        #[arg(long)]
        json: bool,
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
        /// Import names whose value is empty (`KEY=`) as empty values
        /// (refused otherwise)
        #[arg(long)]
        allow_empty: bool,
        /// Print the result as one JSON document
        #[arg(long)]
        json: bool,
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
    Restore {
        /// Print the result as one JSON document
        #[arg(long)]
        json: bool,
    },
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
        /// Fleet mode: the hosts that serve it, recipients (age1…) or join
        /// tokens, comma-separated, this host among them [default: every
        /// host]; needs --operator-key
        #[arg(long, value_delimiter = ',', value_name = "HOSTS")]
        hosts: Vec<String>,
        /// The fleet's operator key, which signs the assignment of --hosts
        #[arg(long, value_name = "FILE", env = "FLUX_OPERATOR_KEY")]
        operator_key: Option<PathBuf>,
        /// Print the project as one JSON document
        #[arg(long)]
        json: bool,
    },
    /// List projects
    List {
        /// Print the projects as one JSON document
        #[arg(long)]
        json: bool,
    },
    /// Give a project a new key: its vault, current values and kept
    /// versions, re-sealed with it, and the old key destroyed
    Rekey {
        /// Project name
        name: String,
        /// Print the result as one JSON document
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
        /// Print the result as one JSON document
        #[arg(long)]
        json: bool,
    },
}
