//! The program's entry, shared by its two names: `fluxctl` and `flux` (the
//! product page's name, e.g. `flux secrets set`). Both are the same CLI;
//! the name a process was started as is the one its help, usage lines,
//! errors, man pages and completion scripts say ([`program`]).
//!
//! Before clap parses anything, [`main`]:
//! - answers a shell's completion request (`FLUX_COMPLETE=bash fluxctl -- …`,
//!   sent by the scripts `fluxctl completions SHELL` prints; see
//!   [`crate::complete`]);
//! - hands `dev` to the daemon: `flux dev ARGS…` runs `fluxd dev ARGS…`
//!   verbatim (the `fluxd` next to this executable, else on `PATH`), with
//!   a `--project` or `--runtime-dir` given before `dev` passed on too.

use crate::failure::Failure;
use crate::{Cli, clean_error};
use clap::{CommandFactory, FromArgMatches};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::OnceLock;

static PROGRAM: OnceLock<&'static str> = OnceLock::new();

/// The name this process runs as: `fluxctl` or `flux`.
pub fn program() -> &'static str {
    PROGRAM.get().copied().unwrap_or("fluxctl")
}

/// The command-line definition under this process's name.
pub fn command() -> clap::Command {
    let name = program();
    let own = |text: &str| text.replace("fluxctl", name);
    Cli::command()
        .name(name)
        .bin_name(name)
        .after_long_help(own(crate::AFTER_LONG_HELP))
        .mut_subcommand("completions", |c| {
            c.after_long_help(own(crate::COMPLETIONS_HELP))
        })
}

/// Runs the CLI as `name`; returns the process's exit status.
pub fn main(name: &'static str) -> ExitCode {
    let _ = PROGRAM.set(name);
    clap_complete::CompleteEnv::with_factory(command)
        .var(crate::complete::VAR)
        .bin(name)
        .completer(name)
        .complete();
    let args: Vec<OsString> = std::env::args_os().collect();
    if let Some(dev) = dev_args(&args[1..]) {
        return ExitCode::from(exec_fluxd(dev));
    }
    let matches = match command().try_get_matches_from(&args) {
        Ok(m) => m,
        Err(e) => {
            if let Some(rest) = secrets_get(&e, &args) {
                let failure = no_get(&rest);
                eprintln!("{name}: error: {failure}");
                return ExitCode::from(failure.exit);
            }
            e.exit()
        }
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match crate::run(cli) {
        Ok(status) => ExitCode::from(status),
        Err(failure) => {
            eprintln!("{name}: error: {}", in_own_name(&failure.to_string()));
            ExitCode::from(failure.exit)
        }
    }
}

/// An error message as printed: clean (see [`clean_error`]), and naming
/// commands to try with the name this process runs as.
fn in_own_name(message: &str) -> String {
    let text = clean_error(message);
    if program() == "fluxctl" {
        text
    } else {
        text.replace("`fluxctl ", &format!("`{} ", program()))
    }
}

/// The global options that take a value, as they may come before `dev`.
const VALUED: [&str; 3] = ["--runtime-dir", "--project", "-p"];

/// When the command is `dev`: the arguments for fluxd (`[--runtime-dir
/// DIR] dev [--project P] ARGS…`).
fn dev_args(args: &[OsString]) -> Option<Vec<OsString>> {
    let mut runtime_dir = None;
    let mut project = None;
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].to_str()?;
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ if arg.starts_with("-p") && arg.len() > 2 => ("-p", Some(arg[2..].to_owned())),
            _ => (arg, None),
        };
        if VALUED.contains(&flag) {
            let value = match inline {
                Some(v) => OsString::from(v),
                None => {
                    i += 1;
                    args.get(i)?.clone()
                }
            };
            if flag == "--runtime-dir" {
                runtime_dir = Some(value);
            } else {
                project = Some(value);
            }
            i += 1;
            continue;
        }
        if arg != "dev" {
            return None;
        }
        let mut out = Vec::new();
        if let Some(dir) = runtime_dir {
            out.extend([OsString::from("--runtime-dir"), dir]);
        }
        out.push("dev".into());
        if let Some(p) = project {
            out.extend([OsString::from("--project"), p]);
        }
        out.extend(args[i + 1..].iter().cloned());
        return Some(out);
    }
    None
}

/// `fluxd`: beside this executable, else the first on `PATH`.
fn find_fluxd() -> Option<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("fluxd")))
        .filter(|p| is_executable(p));
    beside.or_else(|| {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|d| d.join("fluxd"))
            .find(|p| is_executable(p))
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `dev ARGS` as parsed by clap (when [`main`] did not see it first):
/// runs `fluxd dev` the same way.
pub(crate) fn dev(project: Option<&str>, runtime_dir: Option<PathBuf>, args: Vec<OsString>) -> u8 {
    let mut all = Vec::new();
    if let Some(dir) = runtime_dir {
        all.extend([OsString::from("--runtime-dir"), dir.into_os_string()]);
    }
    all.push("dev".into());
    if let Some(p) = project {
        all.extend([OsString::from("--project"), OsString::from(p)]);
    }
    all.extend(args);
    exec_fluxd(all)
}

/// Replaces this process with `fluxd ARGS`; returns only on failure, with
/// the exit status: 127 when no fluxd is found, 126 when it cannot run.
fn exec_fluxd(args: Vec<OsString>) -> u8 {
    use std::os::unix::process::CommandExt;
    let name = program();
    let Some(fluxd) = find_fluxd() else {
        let here = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.display().to_string()))
            .unwrap_or_else(|| "this executable's folder".into());
        eprintln!(
            "{name}: error: `{name} dev` runs `fluxd dev`, and no fluxd was found in {here} or on PATH: install fluxd (it comes with {name}), or put its folder on PATH"
        );
        return 127;
    };
    let error = std::process::Command::new(&fluxd)
        .arg0(OsStr::new("fluxd"))
        .args(args)
        .exec();
    eprintln!(
        "{name}: error: cannot run {}: {}",
        fluxd.display(),
        flux_protocol::client::io_reason(&error)
    );
    126
}

/// When clap refused `secrets get …` (there is no such command): the
/// words after `get`.
fn secrets_get(e: &clap::Error, args: &[OsString]) -> Option<Vec<String>> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::InvalidSubcommand {
        return None;
    }
    let Some(ContextValue::String(word)) = e.get(ContextKind::InvalidSubcommand) else {
        return None;
    };
    if word != "get" {
        return None;
    }
    let at = args.iter().position(|a| a == "get")?;
    if !args[..at].iter().any(|a| a == "secrets") {
        return None;
    }
    Some(
        args[at + 1..]
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
    )
}

/// The answer to `secrets get`: fluxctl never shows a value.
fn no_get(args: &[String]) -> Failure {
    let p = program();
    // The name asked for: the first word that is neither an option nor
    // the value of -p/--project.
    let mut key = "NAME";
    let mut skip = false;
    for arg in args {
        if skip {
            skip = false;
        } else if arg == "-p" || arg == "--project" || arg == "--runtime-dir" {
            skip = true;
        } else if !arg.starts_with('-') {
            if flux_protocol::limits::validate_secret_name(arg).is_ok() {
                key = arg;
            }
            break;
        }
    }
    Failure::usage(format!(
        "`{p} secrets get` does not exist, on purpose: {p} never shows a secret's value (`{p} secrets list` shows names and digests only). Hand the value to the program that uses it instead:\n  - `{p} run -- CMD` runs CMD with the project's secrets in its environment;\n  - `{p} dev -- CMD` (`fluxd dev`) does the same from a local .env file, for development;\n  - in code, a Flux client reads it: `await ctx.secrets.get(\"{key}\")` (Node, Python, Rust)."
    ))
}

#[cfg(test)]
mod tests {
    use super::dev_args;
    use std::ffi::OsString;

    fn args(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn dev_is_handed_to_fluxd_with_the_options_before_it() {
        assert_eq!(
            dev_args(&args(&["dev", "--", "node", "app.js"])),
            Some(args(&["dev", "--", "node", "app.js"]))
        );
        assert_eq!(
            dev_args(&args(&["-p", "app", "--runtime-dir=/r", "dev", "--expand"])),
            Some(args(&[
                "--runtime-dir",
                "/r",
                "dev",
                "--project",
                "app",
                "--expand"
            ]))
        );
        assert_eq!(
            dev_args(&args(&["-papp", "dev"])),
            Some(args(&["dev", "--project", "app"]))
        );
        assert_eq!(dev_args(&args(&["secrets", "list", "dev"])), None);
        assert_eq!(dev_args(&args(&["--project"])), None);
        assert_eq!(dev_args(&args(&[])), None);
    }
}
