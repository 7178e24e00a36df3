//! `fluxctl render TEMPLATE -o FILE [--watch]`: fills a template with the
//! project's secrets and writes the result — a config file holding secret
//! values in the clear, for a program that reads only files (the Vault
//! Agent template habit).
//!
//! The template language is in `template`; how the file reaches disk —
//! atomically, with its final mode and owner before its first byte — in
//! `write`. `--watch` follows the project's change events through the
//! same subscription as `fluxctl run --watch` (`run::watch`): after each
//! burst, every value is read again and the values the template names are
//! compared with those last rendered; only a real difference re-renders,
//! and then runs `--exec`, sends `--signal` to the pid in `--pid-file`,
//! and/or reloads `--reload-unit`.
//!
//! Rendered bytes live in buffers wiped when dropped; messages name
//! secrets and places in the template, never a value.

mod template;
mod write;

use crate::failure::{EXIT_NOT_FOUND, Failure, Result};
use crate::run::watch::{self, Update};
use crate::run::{parse_duration, parse_signal};
use crate::target::Target;
use flux_protocol::SecretValue;
use flux_protocol::message::NamedValue;
use flux_supervise::list;
use nix::sys::signal::Signal;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;
use template::Template;
use tokio::signal::unix::SignalKind;
use write::Output;

/// Largest template read.
const MAX_TEMPLATE: u64 = 16 * 1024 * 1024;

/// `fluxctl render`'s arguments.
#[derive(Debug, clap::Args)]
#[command(after_long_help = AFTER_LONG_HELP)]
pub struct RenderArgs {
    /// The template: text with {{ secret "NAME" }} tags
    #[arg(value_name = "TEMPLATE")]
    pub template: PathBuf,
    /// The file to write (replaced atomically)
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: PathBuf,
    /// The output's permissions, in octal; none for others
    #[arg(long, value_name = "MODE", default_value = "0600", value_parser = parse_mode)]
    pub mode: u32,
    /// Give the output to this user (and group), by name or number — as
    /// root [default: whoever runs fluxctl]
    #[arg(long, value_name = "USER[:GROUP]")]
    pub owner: Option<String>,
    /// Keep running, and render again whenever a value the template names
    /// changes (until SIGINT or SIGTERM)
    #[arg(long)]
    pub watch: bool,
    /// With --watch: how long changes must stay quiet before one render
    /// takes them all in (e.g. 300ms, 2s)
    #[arg(long, value_name = "DURATION", default_value = "300ms",
          value_parser = parse_duration, requires = "watch")]
    pub debounce: Duration,
    /// With --watch: run this shell command after each re-render
    #[arg(long, value_name = "CMD", requires = "watch")]
    pub exec: Option<String>,
    /// With --watch: send this signal (e.g. HUP) to the process whose pid
    /// is in --pid-file after each re-render
    #[arg(long, value_name = "SIGNAL", value_parser = parse_signal,
          requires_all = ["watch", "pid_file"])]
    pub signal: Option<Signal>,
    /// The file holding the pid --signal goes to (read at each re-render)
    #[arg(long, value_name = "FILE", requires = "signal")]
    pub pid_file: Option<PathBuf>,
    /// With --watch: `systemctl reload UNIT` after each re-render
    #[arg(long, value_name = "UNIT", requires = "watch")]
    pub reload_unit: Option<String>,
}

const AFTER_LONG_HELP: &str = "\
Template: {{ secret \"NAME\" }} is the value of NAME; {{ secret \"NAME\"
default \"TEXT\" }} is TEXT when the project has no NAME (without a
default that is an error, exit status 3); \\{{ is a literal {{. Errors
name TEMPLATE:LINE:COL and the secret, never a value.

The output is written atomically: a temp file in the same folder, created
with --mode (0600) and --owner before its first byte, fsync, rename. It is
never readable by more than --mode allows, and a crash leaves the previous
file whole.

--watch: after each burst of changes (--debounce) fluxctl reads the values
again; only a real change to a value the template names renders again, and
then --exec, --signal and --reload-unit run, in that order. A value set
again unchanged renders nothing. A name deleted from the project (without a
default) keeps the last rendering in place until it is back. fluxctl exits
with 0 on SIGINT or SIGTERM.";

/// `--mode`: octal permission bits with nothing for others.
fn parse_mode(text: &str) -> std::result::Result<u32, String> {
    let mode = u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .map_err(|_| format!("not an octal mode: {text} (e.g. 0600, 0640)"))?;
    if mode & !0o777 != 0 {
        return Err(format!(
            "{text}: only permission bits (0–0777) may be given"
        ));
    }
    if mode & 0o007 != 0 {
        return Err(format!(
            "{text} lets others read or write the file, which holds secret values in the clear: give others nothing (e.g. 0600, 0640)"
        ));
    }
    Ok(mode)
}

/// `--owner USER[:GROUP]` as a uid and gid.
fn parse_owner(text: &str) -> Result<(Option<u32>, Option<u32>)> {
    use nix::unistd::{Group, User};
    let (user, group) = match text.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (text, None),
    };
    let uid = match user {
        "" => None,
        u => Some(match u.parse::<u32>() {
            Ok(n) => n,
            Err(_) => User::from_name(u)
                .ok()
                .flatten()
                .ok_or_else(|| Failure::usage(format!("--owner: no user named {u}")))?
                .uid
                .as_raw(),
        }),
    };
    let gid = match group {
        None | Some("") => None,
        Some(g) => Some(match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => Group::from_name(g)
                .ok()
                .flatten()
                .ok_or_else(|| Failure::usage(format!("--owner: no group named {g}")))?
                .gid
                .as_raw(),
        }),
    };
    if uid.is_none() && gid.is_none() {
        return Err(Failure::usage("--owner: give USER, USER:GROUP or :GROUP"));
    }
    Ok((uid, gid))
}

pub(crate) fn run(target: &Target, args: RenderArgs) -> Result<u8> {
    let shown_template = args.template.display().to_string();
    let bytes = flux_vault::files::read_regular(&args.template, MAX_TEMPLATE)
        .map_err(|e| Failure::general(e.to_string()))?
        .ok_or_else(|| Failure::new(EXIT_NOT_FOUND, format!("no template at {shown_template}")))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Failure::usage(format!("{shown_template}: the template is not UTF-8")))?;
    let template = Template::parse(&text).map_err(|e| {
        Failure::usage(format!(
            "{shown_template}:{}: {} (the template does not parse; nothing was written)",
            e.at, e.what
        ))
    })?;
    let (uid, gid) = match &args.owner {
        Some(owner) => parse_owner(owner)?,
        None => (None, None),
    };
    let output = Output {
        path: args.output.clone(),
        mode: args.mode,
        uid,
        gid,
    };
    let (project, mut client) = target.project_client()?;
    let socket = std::path::absolute(client.path()).unwrap_or_else(|_| client.path().to_owned());
    let values = client.get_all()?;
    drop(client);
    let mut renderer = Renderer {
        shown_template,
        template,
        output,
        project,
        rendered: BTreeMap::new(),
        reported_missing: BTreeSet::new(),
        exec: args.exec,
        signal: args.signal.zip(args.pid_file),
        reload_unit: args.reload_unit,
    };
    renderer.output.remove_stale();
    let previous = read_previous(&renderer.output.path);
    let rendered = renderer.render(values)?;
    renderer.output.write(&rendered.bytes)?;
    let replaced_other = previous.is_some_and(|p| *p != *rendered.bytes);
    renderer.rendered = rendered.used;
    if !args.watch {
        return Ok(0);
    }
    eprintln!(
        "fluxctl: rendered {}; watching project {} for changes to {}",
        renderer.shown_output(),
        renderer.project,
        list(renderer.template.names().keys())
    );
    if replaced_other {
        // The program may be running with an older file: tell it.
        renderer.after_render();
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::general(format!("cannot start watching: {e}")))?;
    rt.block_on(renderer.watch(socket, args.debounce))
}

/// The file as it was before the first render (to tell, with `--watch`,
/// whether the program it feeds has to hear of it).
fn read_previous(path: &std::path::Path) -> Option<zeroize::Zeroizing<Vec<u8>>> {
    std::fs::read(path).ok().map(zeroize::Zeroizing::new)
}

/// A rendering and the values it used.
struct Rendered {
    bytes: zeroize::Zeroizing<Vec<u8>>,
    /// The value of each name the template names (`None`: not in the
    /// project, its default used).
    used: BTreeMap<String, Option<SecretValue>>,
}

struct Renderer {
    shown_template: String,
    template: Template,
    output: Output,
    project: String,
    /// The values of the rendering on disk.
    rendered: BTreeMap<String, Option<SecretValue>>,
    /// Names reported missing since the last rendering.
    reported_missing: BTreeSet<String>,
    exec: Option<String>,
    signal: Option<(Signal, PathBuf)>,
    reload_unit: Option<String>,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("template", &self.shown_template)
            .field("output", &self.output.path)
            .finish_non_exhaustive()
    }
}

impl Renderer {
    fn shown_output(&self) -> String {
        crate::style::clean(&self.output.path.display().to_string()).into_owned()
    }

    /// The values the template names, out of all the project's.
    fn used(&self, values: Vec<NamedValue>) -> BTreeMap<String, Option<SecretValue>> {
        let mut all: BTreeMap<String, SecretValue> =
            values.into_iter().map(|e| (e.name, e.value)).collect();
        self.template
            .names()
            .into_keys()
            .map(|name| {
                let value = all.remove(&name);
                (name, value)
            })
            .collect()
    }

    /// Renders with `values`; a name missing without a default fails
    /// with exit status 3, naming it and where the template uses it.
    fn render(&self, values: Vec<NamedValue>) -> Result<Rendered> {
        let used = self.used(values);
        let present: BTreeMap<String, SecretValue> = used
            .iter()
            .filter_map(|(n, v)| v.clone().map(|v| (n.clone(), v)))
            .collect();
        match self.template.render(&present) {
            Ok(bytes) => Ok(Rendered { bytes, used }),
            Err(missing) => {
                let lines: Vec<String> = missing
                    .iter()
                    .map(|m| {
                        format!(
                            "{}:{}: no secret {} in project {} (give a default: {{{{ secret \"{}\" default \"\" }}}})",
                            self.shown_template, m.at, m.name, self.project, m.name
                        )
                    })
                    .collect();
                Err(Failure::new(
                    EXIT_NOT_FOUND,
                    format!("{}\nnothing was written", lines.join("\n")),
                ))
            }
        }
    }

    async fn watch(mut self, socket: PathBuf, debounce: Duration) -> Result<u8> {
        let signal = |kind: SignalKind| {
            tokio::signal::unix::signal(kind)
                .map_err(|e| Failure::general(format!("cannot catch signals: {e}")))
        };
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let (tx, mut updates) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(watch::watch(
            socket,
            self.project.clone(),
            debounce,
            format!("{} keeps its last rendering", self.shown_output()),
            tx,
        ));
        loop {
            tokio::select! {
                _ = term.recv() => return Ok(0),
                _ = int.recv() => return Ok(0),
                Some(update) = updates.recv() => self.update(update),
            }
        }
    }

    /// Compares the values the template names with those last rendered;
    /// renders again on a real change.
    fn update(&mut self, update: Update) {
        let project = self.project.clone();
        let (values, named) = match update {
            Update::Values { values, named } => (values, named),
            Update::ProjectDeleted => (Vec::new(), None),
        };
        let now = self.used(values);
        let changed: BTreeSet<&String> = now
            .iter()
            .filter(|(name, value)| self.rendered.get(*name) != Some(value))
            .map(|(name, _)| name)
            .collect();
        if changed.is_empty() {
            let same: Vec<&String> = now
                .keys()
                .filter(|n| named.as_ref().is_some_and(|named| named.contains(*n)))
                .collect();
            if !same.is_empty() {
                eprintln!(
                    "fluxctl: {} set again with the same value in project {project}: {} is not rendered again",
                    list(same),
                    self.shown_output()
                );
            }
            return;
        }
        let changed = list(changed);
        let names = self.template.names();
        let gone: BTreeSet<String> = now
            .iter()
            .filter(|(name, value)| value.is_none() && names.get(*name) == Some(&false))
            .map(|(name, _)| name.clone())
            .collect();
        if !gone.is_empty() {
            let new: Vec<&String> = gone.difference(&self.reported_missing).collect();
            if !new.is_empty() {
                eprintln!(
                    "fluxctl: {} missing from project {project}: {} keeps its last rendering until it is back",
                    list(new),
                    self.shown_output()
                );
            }
            self.reported_missing = gone;
            return;
        }
        let values = now
            .into_iter()
            .filter_map(|(name, value)| value.map(|value| NamedValue { name, value }))
            .collect();
        let rendered = match self.render(values) {
            Ok(rendered) => rendered,
            Err(e) => {
                eprintln!("fluxctl: {}", crate::clean_error(&e.message));
                return;
            }
        };
        if let Err(e) = self.output.write(&rendered.bytes) {
            eprintln!(
                "fluxctl: {changed} changed in project {project}, but {}: {} keeps its last rendering (the next change tries again)",
                crate::clean_error(&e.message),
                self.shown_output()
            );
            return;
        }
        self.rendered = rendered.used;
        self.reported_missing.clear();
        eprintln!(
            "fluxctl: {changed} changed in project {project}: rendered {} again",
            self.shown_output()
        );
        self.after_render();
    }

    /// `--exec`, `--signal`, `--reload-unit`, in that order; a failure is
    /// reported and the watch goes on.
    fn after_render(&self) {
        if let Some(cmd) = &self.exec {
            run_quietly("--exec", Command::new("sh").args(["-c", cmd]));
        }
        if let Some((sig, pid_file)) = &self.signal {
            match read_pid(pid_file) {
                Ok(pid) => match nix::sys::signal::kill(pid, *sig) {
                    Ok(()) => eprintln!("fluxctl: sent {sig} to pid {pid}"),
                    Err(e) => eprintln!("fluxctl: --signal: cannot send {sig} to pid {pid}: {e}"),
                },
                Err(e) => eprintln!("fluxctl: --signal: {e}: {sig} not sent"),
            }
        }
        if let Some(unit) = &self.reload_unit {
            run_quietly(
                "--reload-unit",
                Command::new("systemctl").args(["reload", "--", unit]),
            );
        }
    }
}

/// Runs a command to its end, reporting a failure on stderr.
fn run_quietly(what: &str, cmd: &mut Command) {
    match cmd.stdin(Stdio::null()).status() {
        Ok(status) if status.success() => {}
        Ok(status) => eprintln!("fluxctl: {what}: the command failed ({status})"),
        Err(e) => eprintln!("fluxctl: {what}: cannot run the command: {e}"),
    }
}

/// The pid in a pid file.
fn read_pid(path: &std::path::Path) -> std::result::Result<nix::unistd::Pid, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    match text.trim().parse::<i32>() {
        Ok(pid) if pid > 1 => Ok(nix::unistd::Pid::from_raw(pid)),
        _ => Err(format!("{} does not hold a pid", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn modes_never_let_others_in() {
        assert_eq!(parse_mode("0600"), Ok(0o600));
        assert_eq!(parse_mode("640"), Ok(0o640));
        assert_eq!(parse_mode("0o440"), Ok(0o440));
        assert!(parse_mode("0644").unwrap_err().contains("others"));
        assert!(parse_mode("0602").is_err());
        assert!(parse_mode("4600").is_err());
        assert!(parse_mode("rw").is_err());
    }

    #[test]
    fn owners_by_name_and_number() {
        assert_eq!(parse_owner("0").unwrap(), (Some(0), None));
        assert_eq!(parse_owner("0:0").unwrap(), (Some(0), Some(0)));
        assert_eq!(parse_owner(":5").unwrap(), (None, Some(5)));
        assert_eq!(parse_owner("root").unwrap(), (Some(0), None));
        assert!(parse_owner("no-such-user-surely").is_err());
        assert!(parse_owner(":").is_err());
    }

    #[test]
    fn flags_and_what_they_need() {
        let cli = crate::Cli::try_parse_from(["fluxctl", "render", "t", "-o", "f"]).unwrap();
        let crate::Command::Render(args) = cli.command else {
            panic!("not render")
        };
        assert_eq!(args.mode, 0o600);
        assert!(!args.watch);
        assert_eq!(args.debounce, Duration::from_millis(300));
        for bad in [
            vec!["--exec", "true"],
            vec!["--signal", "HUP", "--pid-file", "p"],
            vec!["--watch", "--signal", "HUP"],
            vec!["--watch", "--pid-file", "p"],
            vec!["--reload-unit", "nginx.service"],
            vec!["--debounce", "1s"],
        ] {
            let mut argv = vec!["fluxctl", "render", "t", "-o", "f"];
            argv.extend(bad.iter().copied());
            assert!(crate::Cli::try_parse_from(&argv).is_err(), "{bad:?}");
        }
        let cli = crate::Cli::try_parse_from([
            "fluxctl",
            "render",
            "t",
            "-o",
            "f",
            "--watch",
            "--signal",
            "hup",
            "--pid-file",
            "p",
            "--exec",
            "true",
            "--reload-unit",
            "nginx.service",
            "--mode",
            "0640",
        ])
        .unwrap();
        let crate::Command::Render(args) = cli.command else {
            panic!("not render")
        };
        assert_eq!(args.signal, Some(Signal::SIGHUP));
        assert_eq!(args.mode, 0o640);
    }
}
