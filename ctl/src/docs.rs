//! `fluxctl completions SHELL` and `fluxctl man [--out-dir DIR]`: shell
//! completions (clap_complete, calling the binary back for names: see
//! [`crate::complete`]) and man pages (clap_mangen) rendered from [`Cli`]
//! at run time, under the name the program runs as (`fluxctl` or `flux`).
//! The top page gets EXIT STATUS, ENVIRONMENT and EXAMPLES sections of
//! its own (the help's closing notes, as real man page sections).
//!
//! Rendering from the binary, rather than from a build script that
//! `include!`s the clap definitions, keeps one source of truth: the pages
//! and scripts describe exactly the parser that prints them, the clap
//! definitions stay free to use the crate's own types, and nothing is
//! written outside cargo's `OUT_DIR` at build time. The Debian package is
//! built from these right after `cargo build` (`packaging/build-deb.sh`).

use crate::entry::{command, program};
use crate::failure::{Failure, Result};
use std::path::Path;

pub(crate) fn completions(shell: clap_complete::Shell) -> Result<()> {
    crate::out(&crate::complete::script(shell, program()))
}

/// The exit statuses, for the top page's EXIT STATUS.
const EXIT_STATUS: &[(&str, &str)] = &[
    ("0", "Success."),
    (
        "1",
        "Failure: a daemon error, or a file or stream that cannot be read or written. `secrets diff` and `audit verify`: a difference, a broken chain.",
    ),
    (
        "2",
        "Usage: bad arguments, an invalid name, a value too large or empty, input that does not parse, a missing --yes; `secrets get` (values are never shown).",
    ),
    ("3", "Not found: no such secret or project."),
    (
        "4",
        "fluxd is not reachable (the message names every socket tried).",
    ),
    ("5", "Permission denied."),
    ("6", "Unavailable: nothing was changed, retry later."),
    (
        "7",
        "`status`: a project cannot be served as stored (its last load error is shown), or fluxd reports a daemon-wide problem. For health checks.",
    ),
    (
        "126, 127",
        "`run`: the command could not be run / was not found; `dev`: fluxd could not be run / was not found. Otherwise `run` and `dev` exit with the command's status.",
    ),
];

/// The environment, for the top page's ENVIRONMENT.
const ENVIRONMENT: &[(&str, &str)] = &[
    ("FLUX_PROJECT", "The project, when --project is not given."),
    (
        "FLUX_RUNTIME_DIR",
        "fluxd's socket folder, when --runtime-dir is not given.",
    ),
    ("NO_COLOR", "Plain text output, no marks."),
];

/// (what, command) for the top page's EXAMPLES; `{p}` is the program.
const EXAMPLES: &[(&str, &str)] = &[
    (
        "Name this folder's project and create it:",
        "{p} init my-app && {p} projects create my-app",
    ),
    (
        "Set a secret, typing the value at a hidden prompt:",
        "{p} secrets set OPENAI_API_KEY",
    ),
    (
        "Set one from a file, bytes exact:",
        "{p} secrets set TLS_KEY --from-file key.pem",
    ),
    (
        "List names, when each was set and a digest (never values):",
        "{p} secrets list",
    ),
    ("Delete a secret:", "{p} secrets delete OPENAI_API_KEY"),
    (
        "Import a .env file in one write, after a look at what would change:",
        "{p} secrets import .env --dry-run && {p} secrets import .env",
    ),
    (
        "Run a program with the project's secrets in its environment:",
        "{p} run -- node server.js",
    ),
    (
        "Develop against ./.env instead of the vault:",
        "{p} dev -- node server.js",
    ),
    (
        "A health check: exit 0 only when every project is served:",
        "{p} status >/dev/null || echo unhealthy",
    ),
    ("Who read what in the last hour:", "{p} audit --since 1h"),
    (
        "What the functions' units read today:",
        "{p} audit --since 24h --unit 'fn-*.service'",
    ),
];

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

/// The EXIT STATUS, ENVIRONMENT and EXAMPLES sections, as roff.
fn closing_sections() -> String {
    let p = program();
    let mut out = String::from(".SH \"EXIT STATUS\"\n");
    for (code, meaning) in EXIT_STATUS {
        out.push_str(&format!(".TP\n\\fB{}\\fR\n{}\n", roff(code), roff(meaning)));
    }
    out.push_str(".SH ENVIRONMENT\n");
    for (name, meaning) in ENVIRONMENT {
        out.push_str(&format!(".TP\n\\fB{}\\fR\n{}\n", roff(name), roff(meaning)));
    }
    out.push_str(".SH EXAMPLES\n");
    for (what, example) in EXAMPLES {
        out.push_str(&format!(
            ".PP\n{}\n.PP\n.RS 4\n.EX\n{}\n.EE\n.RE\n",
            roff(what),
            roff(&example.replace("{p}", p))
        ));
    }
    out
}

/// The top page: clap_mangen's sections up to the subcommands, then
/// [`closing_sections`] in place of its EXTRA, then the version.
fn render_top(
    cmd: &clap::Command,
    page: &clap_mangen::Man,
    into: &mut Vec<u8>,
) -> std::io::Result<()> {
    page.render_title(into)?;
    page.render_name_section(into)?;
    page.render_synopsis_section(into)?;
    page.render_description_section(into)?;
    // As clap_mangen's own render: each section only when it has content.
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        page.render_options_section(into)?;
    }
    if cmd.get_subcommands().any(|c| !c.is_hide_set()) {
        page.render_subcommands_section(into)?;
    }
    into.extend_from_slice(closing_sections().as_bytes());
    if cmd.get_version().is_some() {
        page.render_version_section(into)?;
    }
    Ok(())
}

/// The manual every page names in its header.
const MANUAL: &str = "Flux Secrets";

/// A page with the header fields set: the manual, `PROGRAM VERSION` as
/// the source, and the date (`SOURCE_DATE_EPOCH` when set, for
/// reproducible packages; else today).
fn page(cmd: clap::Command) -> clap_mangen::Man {
    let when = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or_else(std::time::SystemTime::now, |secs| {
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)
        });
    let date = humantime::format_rfc3339_seconds(when).to_string();
    clap_mangen::Man::new(cmd)
        .manual(MANUAL)
        .source(format!("{} {}", program(), env!("CARGO_PKG_VERSION")))
        .date(&date[..10])
}

/// One page per visible subcommand of `cmd`, depth first
/// (`fluxctl-secrets-set.1`, …), as clap_mangen names them.
fn sub_pages(cmd: &clap::Command, into: &mut Vec<clap_mangen::Man>) {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        sub_pages(sub, into);
        into.push(page(sub.clone()));
    }
}

pub(crate) fn man(out_dir: Option<&Path>) -> Result<()> {
    let mut cmd = command().disable_help_subcommand(true);
    cmd.build();
    let mut top = Vec::new();
    render_top(&cmd, &page(cmd.clone()), &mut top)
        .map_err(|e| Failure::general(format!("cannot render the man page: {e}")))?;
    let Some(dir) = out_dir else {
        return crate::out(&String::from_utf8_lossy(&top));
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| Failure::general(format!("cannot create {}: {e}", dir.display())))?;
    let write_failed = |file: &str, e: std::io::Error| {
        Failure::general(format!("cannot write {file} into {}: {e}", dir.display()))
    };
    let top_file = format!("{}.1", program());
    std::fs::write(dir.join(&top_file), &top).map_err(|e| write_failed(&top_file, e))?;
    let mut all = Vec::new();
    sub_pages(&cmd, &mut all);
    for page in &all {
        page.generate_to(dir)
            .map_err(|e| write_failed(&page.get_filename(), e))?;
    }
    Ok(())
}
