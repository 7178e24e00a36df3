//! `fluxd`: parses flags, sets up logging and signals, runs the daemon, and
//! maps the outcome to an exit status: 0 after a clean shutdown, 78
//! (EX_CONFIG) for bad configuration so systemd does not restart-loop, 1 for
//! any other failure. `fluxd dev -- CMD` exits with CMD's status instead
//! (running CMD, and restarting it under `--watch`, is
//! [`fluxd::dev_command`]'s).

use clap::{CommandFactory, Parser, Subcommand};
use fluxd::dev_command::{OnDelete, parse_duration, parse_signal};
use fluxd::{Config, Error};
use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

const EX_CONFIG: u8 = 78;

/// Flux Secrets daemon: serves per-project encrypted secrets to function
/// processes over Unix sockets.
#[derive(Debug, Parser)]
#[command(name = "fluxd", version, about, long_about = None)]
struct Args {
    /// Folder for keys and vaults [env: FLUX_STATE_DIR, STATE_DIRECTORY;
    /// default: $XDG_STATE_HOME/flux or ~/.local/state/flux]
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Folder for sockets [env: FLUX_RUNTIME_DIR, RUNTIME_DIRECTORY;
    /// default: $XDG_RUNTIME_DIR/flux or /tmp/flux-$UID]
    #[arg(long, value_name = "DIR")]
    runtime_dir: Option<PathBuf>,
    /// Config file (TOML): access policy, limits, audit [env: FLUX_CONFIG;
    /// default: $CONFIGURATION_DIRECTORY/fluxd.toml when it exists]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Check the configuration and exit: 0 when valid, 78 when not
    #[arg(long)]
    check_config: bool,
    /// Log filter: error, warn, info, debug, trace, or a tracing directive
    /// such as `fluxd=debug` [default: RUST_LOG, else info; warn under
    /// `fluxd dev -- CMD`, which shares CMD's terminal]
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Where keys and vaults are kept: `local` (the state folder) or `etcd`
    /// (fleet mode, see docs/FLEET.md) [default: [store] kind, else local]
    #[arg(long, value_name = "KIND", value_parser = ["local", "etcd"])]
    store: Option<String>,
    /// etcd client URLs for `--store etcd`, comma-separated
    /// [default: [store] endpoints]
    #[arg(long, value_name = "URLS", value_delimiter = ',')]
    etcd_endpoints: Vec<String>,
    /// The fleet this host joins (fleet:…, as `fluxctl hosts list` shows
    /// it on a host of the fleet) [default: [store] fleet_id, else the one
    /// this host joined before]
    #[arg(long, value_name = "ID")]
    fleet_id: Option<String>,
    /// Write this host's fleet (its id, host lists and projects) back to
    /// an etcd that holds no fleet: a rebuilt or emptied cluster. Without
    /// it such a host serves its sealed copies and writes nothing
    #[arg(long)]
    publish_fleet: bool,
    /// Write fluxd's man pages (fluxd.8, fluxd-dev.8) into DIR and exit
    /// (the Debian package is built with it)
    #[arg(long, value_name = "DIR")]
    write_man_pages: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve one project from a .env file for local development, on the
    /// same socket protocol as production (never reads a vault)
    Dev {
        /// Project name [env: FLUX_PROJECT; default: "name" in ./flux.json]
        #[arg(long, short = 'p', value_name = "NAME")]
        project: Option<String>,
        /// The .env file to serve; a request that starts after a save
        /// returned sees the save. A file that is not UTF-8 is refused
        #[arg(long, value_name = "PATH", default_value = ".env")]
        env_file: PathBuf,
        /// Expand $NAME, ${NAME} and ${NAME:-default} from the lines above
        /// (never the environment, never a command; see docs/DOTENV.md)
        #[arg(long)]
        expand: bool,
        /// Restart CMD when a value in the file really changes: a changed
        /// or added value after a burst of saves (--debounce) restarts it
        /// (SIGTERM, SIGKILL after --grace, CMD again); a save that changes
        /// no value restarts nothing
        #[arg(long, requires = "command")]
        watch: bool,
        /// With --watch: how long saves must stay quiet before one restart
        /// takes them all in (e.g. 300ms, 2s)
        #[arg(long, value_name = "DURATION", default_value = "300ms",
              value_parser = parse_duration, requires = "watch")]
        debounce: std::time::Duration,
        /// With --watch: how long a restart waits after SIGTERM before it
        /// sends SIGKILL
        #[arg(long, value_name = "DURATION", default_value = "10s",
              value_parser = parse_duration, requires = "watch")]
        grace: std::time::Duration,
        /// With --watch: send this signal (e.g. HUP, USR1) instead of
        /// restarting, for a command that reloads on it
        #[arg(long, value_name = "SIGNAL", value_parser = parse_signal, requires = "watch")]
        signal: Option<nix::sys::signal::Signal>,
        /// With --watch: what a value the command started with does when
        /// it is deleted from the file: stop the command (fluxd then exits
        /// with 3), or keep it running
        #[arg(long, value_name = "WHAT", value_enum, default_value_t = OnDelete::Stop,
              requires = "watch")]
        on_delete: OnDelete,
        /// Run this command with FLUX_SECRETS_SOCKET set, serve while it
        /// runs, and exit with its status (put it after `--`); fluxd then
        /// logs only warnings and errors unless --log-level or RUST_LOG says
        /// otherwise
        #[arg(last = true, value_name = "CMD")]
        command: Vec<OsString>,
    },
}

/// A man page's EXIT STATUS and EXAMPLES: (status, meaning) and (what,
/// command line).
struct Closing {
    exit: &'static [(&'static str, &'static str)],
    examples: &'static [(&'static str, &'static str)],
}

const FLUXD_CLOSING: Closing = Closing {
    exit: &[
        (
            "0",
            "A clean shutdown (SIGTERM or SIGINT), or --check-config found the configuration valid.",
        ),
        (
            "1",
            "Any other failure: the state or runtime folder cannot be used, a socket cannot be bound, a store cannot be reached.",
        ),
        (
            "78",
            "EX_CONFIG: the configuration or a flag is invalid (systemd does not restart fluxd for it).",
        ),
    ],
    examples: &[
        ("Run your own fluxd, on your user's folders:", "fluxd"),
        (
            "Check a configuration before reloading with it:",
            "fluxd --config /etc/flux/fluxd.toml --check-config",
        ),
        (
            "The system service, as the Debian package installs it:",
            "systemctl enable --now fluxd",
        ),
        (
            "Write these pages into a folder:",
            "fluxd --write-man-pages ./man",
        ),
    ],
};

const DEV_CLOSING: Closing = Closing {
    exit: &[
        (
            "CMD's",
            "With -- CMD: CMD's exit status (128+N when a signal N ended it).",
        ),
        (
            "0",
            "Without a command: a clean shutdown (SIGTERM or SIGINT).",
        ),
        (
            "1",
            "A failure: the .env file cannot be read, the socket cannot be bound.",
        ),
        (
            "3",
            "With --watch: a value CMD was started with was deleted from the file, so CMD was stopped (not with --on-delete keep).",
        ),
        (
            "126, 127",
            "CMD could not be run / was not found (also when a restart under --watch cannot start it).",
        ),
        (
            "78",
            "EX_CONFIG: no project named (--project, FLUX_PROJECT or flux.json), or an invalid flag.",
        ),
    ],
    examples: &[
        (
            "Serve ./.env as the project flux.json names, until stopped:",
            "fluxd dev",
        ),
        (
            "Run a program against it (it gets FLUX_SECRETS_SOCKET):",
            "fluxd dev -- node server.js",
        ),
        (
            "Another file, with ${NAME} expanded, for project my-app:",
            "fluxd dev -p my-app --env-file .env.local --expand -- npm start",
        ),
        ("The same through the CLI:", "flux dev -- node server.js"),
        (
            "Restart it when a value in .env really changes:",
            "fluxd dev --watch -- node server.js",
        ),
    ],
};

/// `text` as roff body text: backslashes and hyphens escaped, a leading
/// control character neutralised.
fn roff(text: &str) -> String {
    let text = text.replace('\\', "\\e").replace('-', "\\-");
    if text.starts_with(['.', '\'']) {
        format!("\\&{text}")
    } else {
        text
    }
}

impl Closing {
    fn roff(&self) -> String {
        let mut out = String::from(".SH \"EXIT STATUS\"\n");
        for (code, meaning) in self.exit {
            out.push_str(&format!(".TP\n\\fB{}\\fR\n{}\n", roff(code), roff(meaning)));
        }
        out.push_str(".SH EXAMPLES\n");
        for (what, example) in self.examples {
            out.push_str(&format!(
                ".PP\n{}\n.PP\n.RS 4\n.EX\n{}\n.EE\n.RE\n",
                roff(what),
                roff(example)
            ));
        }
        out
    }
}

/// A page: clap_mangen's sections, then EXIT STATUS and EXAMPLES before
/// the version.
fn render_page(
    cmd: &clap::Command,
    page: &clap_mangen::Man,
    closing: &Closing,
) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    page.render_title(&mut out)?;
    page.render_name_section(&mut out)?;
    page.render_synopsis_section(&mut out)?;
    page.render_description_section(&mut out)?;
    // As clap_mangen's own render: each section only when it has content.
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        page.render_options_section(&mut out)?;
    }
    if cmd.get_subcommands().any(|c| !c.is_hide_set()) {
        page.render_subcommands_section(&mut out)?;
    }
    out.extend_from_slice(closing.roff().as_bytes());
    if cmd.get_version().is_some() {
        page.render_version_section(&mut out)?;
    }
    Ok(out)
}

/// `--write-man-pages DIR`: fluxd.8 and one page per subcommand.
fn write_man_pages(dir: &Path) -> ExitCode {
    let mut cmd = Args::command().disable_help_subcommand(true);
    cmd.build();
    let mut pages = vec![cmd.clone()];
    pages.extend(cmd.get_subcommands().filter(|c| !c.is_hide_set()).cloned());
    // The page date: SOURCE_DATE_EPOCH for reproducible packages, else now.
    let when = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or_else(std::time::SystemTime::now, |secs| {
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)
        });
    let date = humantime::format_rfc3339_seconds(when).to_string()[..10].to_owned();
    let written = std::fs::create_dir_all(dir).and_then(|()| {
        pages.into_iter().try_for_each(|page| {
            let closing = if page.get_name() == "dev" {
                &DEV_CLOSING
            } else {
                &FLUXD_CLOSING
            };
            let man = clap_mangen::Man::new(page.clone())
                .section("8")
                .date(&date)
                .source(concat!("fluxd ", env!("CARGO_PKG_VERSION")))
                .manual("Flux Secrets");
            std::fs::write(
                dir.join(man.get_filename()),
                render_page(&page, &man, closing)?,
            )
        })
    });
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fluxd: cannot write man pages into {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}

/// `path` as one shell word: as it is when it needs no quoting, else in
/// single quotes.
fn shell_word(path: &Path) -> String {
    let text = path.display().to_string();
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+,:@%".contains(c));
    if plain {
        text
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// The project for `fluxd dev`: the flag, `FLUX_PROJECT`, or the `name` in
/// `./flux.json`.
fn dev_project(flag: Option<String>) -> Result<String, Error> {
    if let Some(p) = flag.or_else(|| std::env::var("FLUX_PROJECT").ok().filter(|p| !p.is_empty())) {
        return Ok(p);
    }
    flux_protocol::paths::project_in_manifest(std::path::Path::new(flux_protocol::paths::MANIFEST))
        .map_err(|e| Error::Config(e.to_string()))?
        .ok_or_else(|| {
            Error::Config(
                "no project given: pass --project NAME, set FLUX_PROJECT, or run where flux.json names it (`fluxctl init NAME` writes one)".into(),
            )
        })
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(dir) = &args.write_man_pages {
        return write_man_pages(dir);
    }
    // Before any thread starts: this reads and clears LISTEN_FDS.
    let inherited = fluxd::systemd::inherited_listeners();
    // `fluxd dev -- CMD` shares its terminal with CMD: only warnings and
    // errors, unless --log-level or RUST_LOG asks for more.
    let runs_command =
        matches!(&args.command, Some(Command::Dev { command, .. }) if !command.is_empty());
    let default_level = if runs_command { "warn" } else { "info" };
    let filter = match &args.log_level {
        Some(level) => EnvFilter::try_new(level),
        None => EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(default_level)),
    };
    let filter = match filter {
        Ok(f) => f,
        Err(e) => {
            eprintln!("fluxd: invalid --log-level: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(log_colours(std::io::stderr().is_terminal()))
        .init();
    // Files and sockets are private unless fluxd widens them explicitly.
    let started_umask = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));

    let mut dev_command = Vec::new();
    let mut dev_watch = None;
    let dev = match args.command {
        Some(Command::Dev {
            project,
            env_file,
            expand,
            watch,
            debounce,
            grace,
            signal,
            on_delete,
            command,
        }) => match dev_project(project) {
            Ok(project) => {
                dev_command = command;
                dev_watch = watch.then_some(fluxd::dev_command::Watch {
                    debounce,
                    grace,
                    signal,
                    on_delete,
                });
                Some((project, env_file, flux_vault::dotenv::Options { expand }))
            }
            Err(e) => return fail(&e),
        },
        None => None,
    };
    let config = match &dev {
        Some((project, _, _)) => Config::dev(args.runtime_dir.as_deref(), project),
        None => Config::resolve(
            args.state_dir.as_deref(),
            args.runtime_dir.as_deref(),
            args.config.as_deref(),
        ),
    };
    let config = config.and_then(|mut c| {
        if dev.is_none() {
            c.store = c.store.with_flags(
                args.store.as_deref(),
                &args.etcd_endpoints,
                args.fleet_id.as_deref(),
                args.publish_fleet,
            )?;
        }
        Ok(c)
    });
    let config = match config {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    if args.check_config {
        let source = match &config.config_file {
            Some(path) => path.display().to_string(),
            None => "no config file (built-in defaults)".into(),
        };
        println!("fluxd: configuration is valid: {source}");
        for warning in config.policy.warnings() {
            println!("fluxd: warning: {warning}");
        }
        return ExitCode::SUCCESS;
    }
    // Before any thread starts, so locked memory covers them all.
    let hardening = fluxd::hardening::harden();
    for warning in &hardening.warnings {
        warn!("{warning}");
    }
    let needed =
        (config.limits.max_connections + config.limits.max_control_connections + 256) as u64;
    let files = fluxd::hardening::open_file_limit();
    if files < needed {
        warn!(
            limit = files,
            needed,
            "the open-file limit is below what [limits] max_connections and max_control_connections allow; raise LimitNOFILE= (or `ulimit -n`), or lower the limits"
        );
    }
    info!(memory_locked = ?hardening.lock, "process hardened");
    let inherited = match inherited {
        Ok(i) => i,
        Err(e) => {
            error!("cannot use the sockets passed by systemd (LISTEN_FDS): {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let startup = fluxd::Startup {
        inherited,
        notifier: fluxd::systemd::Notifier::from_env(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(config.workers)
        .thread_name("fluxd")
        // Bounded, so locked memory (thread stacks included) stays bounded.
        .max_blocking_threads(16)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let signals = Signals::install()
            .map_err(|e| Error::Internal(format!("cannot install signal handlers: {e}")))?;
        let mut plan = None;
        let daemon = match dev {
            Some((project, env_file, options)) => {
                let socket = flux_protocol::paths::project_socket(&config.runtime_dir, &project);
                let store = fluxd::store::DevStore::new(&project, &env_file, options);
                let daemon = fluxd::Daemon::start_dev(config, shutdown.clone(), store).await?;
                if !env_file.exists() {
                    warn!(file = %env_file.display(), "no such file yet: serving no secrets until it appears");
                }
                if dev_command.is_empty() {
                    info!(project = %project, file = %env_file.display(), "fluxd dev: serving the .env file; run the `export` line on stdout in the shell that runs your function, or start it with `fluxd dev -- CMD`");
                    println!(
                        "export {}={}",
                        flux_protocol::paths::SOCKET_ENV,
                        shell_word(&socket)
                    );
                } else {
                    info!(project = %project, file = %env_file.display(), "fluxd dev: serving the .env file to the command");
                    plan = Some(fluxd::dev_command::Plan {
                        project,
                        env_file,
                        socket,
                        command: dev_command,
                        umask: started_umask,
                        watch: dev_watch,
                    });
                }
                daemon
            }
            None => fluxd::Daemon::start_with(config, shutdown.clone(), startup).await?,
        };
        let Some(plan) = plan else {
            let signals = signals.spawn(shutdown.clone(), daemon.handle());
            daemon.wait().await;
            signals.abort();
            return Ok(None);
        };
        // Serve until the command exits, then stop and take its status.
        let status = fluxd::dev_command::run(plan, daemon.handle(), signals.into_dev()).await;
        shutdown.cancel();
        daemon.wait().await;
        Ok(Some(status))
    });
    match result {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(status)) => ExitCode::from(status),
        Err(e) => fail(&e),
    }
}

/// Colours in the log only on a terminal, and never with `NO_COLOR` set
/// and not empty (<https://no-color.org>) or `TERM=dumb`: fluxctl's rule.
fn log_colours(is_terminal: bool) -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
    is_terminal && !no_color && !dumb
}

fn fail(e: &Error) -> ExitCode {
    error!("{e}");
    if e.is_config() {
        ExitCode::from(EX_CONFIG)
    } else {
        ExitCode::FAILURE
    }
}

/// SIGTERM, SIGINT and SIGHUP, caught from before the daemon starts (so a
/// reload or stop sent right after `READY=1` is never lost to the default
/// action, which would kill the process). Under `fluxd dev -- CMD` they are
/// the command's supervisor's ([`Signals::into_dev`]).
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Turns SIGTERM and SIGINT into a cancelled token, and SIGHUP into a
    /// reload.
    fn spawn(
        mut self,
        token: CancellationToken,
        daemon: fluxd::DaemonHandle,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let name = tokio::select! {
                    _ = self.term.recv() => "SIGTERM",
                    _ = self.int.recv() => "SIGINT",
                    _ = self.hup.recv() => {
                        daemon.reload().await;
                        continue;
                    }
                };
                info!(signal = name, "stopping");
                token.cancel();
                return;
            }
        })
    }

    /// `fluxd dev -- CMD`: the signals, for the command's supervisor
    /// ([`fluxd::dev_command`] passes SIGTERM on and reloads on SIGHUP).
    fn into_dev(self) -> fluxd::dev_command::Signals {
        fluxd::dev_command::Signals {
            term: self.term,
            int: self.int,
            hup: self.hup,
        }
    }
}
