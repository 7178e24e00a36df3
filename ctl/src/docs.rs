//! `fluxctl completions SHELL` and `fluxctl man [--out-dir DIR]`: shell
//! completions (clap_complete) and man pages (clap_mangen) rendered from
//! [`Cli`] at run time.
//!
//! Rendering from the binary, rather than from a build script that
//! `include!`s the clap definitions, keeps one source of truth: the pages
//! and scripts describe exactly the parser that prints them, the clap
//! definitions stay free to use the crate's own types, and nothing is
//! written outside cargo's `OUT_DIR` at build time. The Debian package is
//! built from these right after `cargo build` (`packaging/build-deb.sh`).

use crate::Cli;
use crate::failure::{Failure, Result};
use clap::CommandFactory;
use std::path::Path;

pub(crate) fn completions(shell: clap_complete::Shell) -> Result<()> {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "fluxctl", &mut script);
    crate::out(&String::from_utf8_lossy(&script))
}

/// The manual every page names in its header.
const MANUAL: &str = "Flux Secrets";

/// A page with the header fields set: the manual, `fluxctl VERSION` as
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
        .source(concat!("fluxctl ", env!("CARGO_PKG_VERSION")))
        .date(&date[..10])
}

/// `cmd`'s page and, depth first, one per visible subcommand
/// (`fluxctl-secrets-set.1`, …), as clap_mangen names them.
fn pages(cmd: clap::Command, into: &mut Vec<clap_mangen::Man>) {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
        pages(sub, into);
    }
    into.push(page(cmd));
}

pub(crate) fn man(out_dir: Option<&Path>) -> Result<()> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let Some(dir) = out_dir else {
        let mut roff = Vec::new();
        page(cmd)
            .render(&mut roff)
            .map_err(|e| Failure::general(format!("cannot render the man page: {e}")))?;
        return crate::out(&String::from_utf8_lossy(&roff));
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| Failure::general(format!("cannot create {}: {e}", dir.display())))?;
    let mut all = Vec::new();
    pages(cmd, &mut all);
    for page in &all {
        page.generate_to(dir).map_err(|e| {
            Failure::general(format!(
                "cannot write {} into {}: {e}",
                page.get_filename(),
                dir.display()
            ))
        })?;
    }
    Ok(())
}
