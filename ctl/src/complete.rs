//! Shell completion that asks the daemon: `--project <TAB>` offers the
//! projects fluxd serves, and a secret name argument (`secrets delete
//! <TAB>`, `set`, `history`, `rollback`) the project's secret names —
//! names only, the listing never carries a value.
//!
//! The scripts `fluxctl completions SHELL` prints (bash, zsh, fish) call
//! the binary back on every TAB (`FLUX_COMPLETE=SHELL fluxctl -- WORDS…`,
//! clap_complete's dynamic completion), so subcommands and flags always
//! match the installed binary and names come from the running daemon.
//! The project and the daemon's folder are read from the words typed so
//! far (`-p`/`--project`, `--runtime-dir`), else found as any command
//! finds them (`FLUX_PROJECT`, flux.json, the default folders).
//!
//! A daemon that is not running, refuses the user or does not answer
//! within [`PATIENCE`] gives no candidates and prints nothing: a TAB never
//! hangs and never writes an error over the prompt.

use crate::target::Target;
use clap_complete::CompletionCandidate;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// The variable that makes the program answer a completion request
/// (named for Flux, so that a `COMPLETE` set for something else does not).
pub(crate) const VAR: &str = "FLUX_COMPLETE";

/// How long a TAB waits for the daemon.
pub(crate) const PATIENCE: Duration = Duration::from_millis(800);

/// `--runtime-dir` and `--project` as typed on the line being completed
/// (the words after clap_complete's `--`).
fn typed_options() -> (Option<PathBuf>, Option<String>) {
    let words: Vec<OsString> = std::env::args_os()
        .skip_while(|a| a != "--")
        .skip(1)
        .collect();
    let mut runtime_dir = None;
    let mut project = None;
    let mut i = 0;
    while i < words.len() {
        let word = words[i].to_string_lossy().into_owned();
        let next = || words.get(i + 1).map(|w| w.to_string_lossy().into_owned());
        match word.as_str() {
            "--" => break,
            "--runtime-dir" => runtime_dir = next().map(PathBuf::from),
            "-p" | "--project" => project = next(),
            _ => {
                if let Some(v) = word.strip_prefix("--runtime-dir=") {
                    runtime_dir = Some(PathBuf::from(v));
                } else if let Some(v) = word.strip_prefix("--project=") {
                    project = Some(v.to_owned());
                } else if let Some(v) = word.strip_prefix("-p").filter(|v| !v.is_empty()) {
                    project = Some(v.to_owned());
                }
            }
        }
        i += 1;
    }
    // The word being completed is not a choice made yet.
    (runtime_dir, project.filter(|p| !p.is_empty()))
}

/// Runs `ask` on another thread and waits for it at most [`PATIENCE`];
/// nothing on any failure.
fn ask_daemon(ask: impl FnOnce(Target) -> Option<Vec<String>> + Send + 'static) -> Vec<String> {
    let (runtime_dir, project) = typed_options();
    let target = Target::new(runtime_dir.as_deref(), project);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(ask(target));
    });
    rx.recv_timeout(PATIENCE).ok().flatten().unwrap_or_default()
}

fn candidates(names: Vec<String>, current: &std::ffi::OsStr) -> Vec<CompletionCandidate> {
    let current = current.to_string_lossy();
    names
        .into_iter()
        .filter(|n| n.starts_with(current.as_ref()))
        .map(CompletionCandidate::new)
        .collect()
}

/// Candidates for `--project`: the projects fluxd serves.
pub(crate) fn projects(current: &std::ffi::OsStr) -> Vec<CompletionCandidate> {
    let names = ask_daemon(|target| {
        let list = target.control().ok()?.list_projects().ok()?;
        Some(list.into_iter().map(|p| p.name).collect())
    });
    candidates(names, current)
}

/// Candidates for a secret name: the project's secret names.
pub(crate) fn secret_names(current: &std::ffi::OsStr) -> Vec<CompletionCandidate> {
    let names = ask_daemon(|target| {
        let (_, mut client) = target.project_client().ok()?;
        let list = client.list().ok()?;
        Some(list.into_iter().map(|s| s.name).collect())
    });
    candidates(names, current)
}

/// The script `completions SHELL` prints for the program `name`.
pub(crate) fn script(shell: clap_complete::Shell, name: &str) -> String {
    let shells = clap_complete::env::Shells::builtins();
    let Some(completer) = shells.completer(&shell.to_string()) else {
        return format!("# {name}: no completion for {shell}\n");
    };
    let mut buf = Vec::new();
    completer
        .write_registration(VAR, name, name, name, &mut buf)
        .expect("writing to memory");
    let mut text = String::from_utf8_lossy(&buf).into_owned();
    if shell == clap_complete::Shell::Zsh {
        // Installed as an autoloaded `_NAME` in fpath, the file runs on the
        // first TAB: complete that TAB too, not only the later ones.
        text.push_str(&format!(
            "if [[ \"${{zsh_eval_context[-1]}}\" == loadautofunc ]]; then\n    _clap_dynamic_completer_{} \"$@\"\nfi\n",
            name.replace('-', "_")
        ));
    }
    text
}
