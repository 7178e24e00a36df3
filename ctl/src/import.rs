//! `fluxctl secrets import FILE|-`: every name of a `.env` file set in one
//! vault write — all of them or none. The parser is `fluxd dev`'s
//! ([`flux_vault::dotenv`]).
//!
//! A file with lines the parser flags (a name Flux cannot hold, a line that
//! is not an assignment, a value other tools read differently, an
//! expansion-looking `${…}`) is refused: the error lists every such line as
//! `file:line:col` and why, never a value, and nothing is written.
//! `--skip-invalid` imports the rest: the lines Flux cannot serve are left
//! out and the flagged lines that have a value are imported as `fluxd dev`
//! serves them (as Node's dotenv reads them); each is listed as a warning.
//! Names with an empty value (`KEY=`, often a template's placeholder) are
//! refused the same way unless `--allow-empty`.
//! `--expand` expands `${NAME}` and friends from the lines above, as
//! `fluxd dev --expand` does.
//!
//! `--dry-run` lists the same lines and what would be created, updated (a
//! changed value) and left unchanged — the daemon compares the values, as
//! for `fluxctl secrets diff`, and none is printed — and writes nothing.
//! An import itself reports the same three lists from fluxd's answer to
//! the write (`WriteMany`): a name set again to the value it held is
//! unchanged, as fluxd keeps no new version of it. The last line of a
//! successful run is always the summary.
//!
//! The whole file goes to fluxd as one request, which is what makes an
//! import all or nothing; a file over fluxd's request limit
//! (`[limits] max_request_bytes`, 256 KiB by default) is refused with a
//! message that says so and what to do ([`one_request`]). (A value over
//! the protocol's limit is one of the parser's flagged lines.)

use crate::failure::{Failure, Result};
use crate::style::done;
use crate::target::Target;
use crate::{out, out_json};
use flux_protocol::client::io_reason;
use flux_protocol::message::{DiffState, NamedValue};
use flux_protocol::{ClientError, ErrorCode};
use flux_vault::dotenv::{Issue, Options, Parsed};
use std::io::Read;
use std::path::Path;
use zeroize::Zeroizing;

/// `fluxctl secrets import`'s flags.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Flags {
    pub dry_run: bool,
    pub skip_invalid: bool,
    pub expand: bool,
    pub allow_empty: bool,
    pub json: bool,
}

/// A `.env` file read as `import` and `diff` read it.
pub(crate) struct EnvFile {
    /// The file's name for messages (`<stdin>` for `-`).
    pub label: String,
    pub entries: Vec<(String, flux_protocol::SecretValue)>,
    pub issues: Vec<Issue>,
}

impl EnvFile {
    /// Names and bytes of names and values: what the one request carries.
    pub(crate) fn size(&self) -> (usize, usize) {
        let bytes = self.entries.iter().map(|(n, v)| n.len() + v.len()).sum();
        (self.entries.len(), bytes)
    }
}

/// A file's entries as the one request that carries them.
pub(crate) fn request(entries: Vec<(String, flux_protocol::SecretValue)>) -> Vec<NamedValue> {
    entries
        .into_iter()
        .map(|(name, value)| NamedValue { name, value })
        .collect()
}

/// fluxd's answer to the one request that carries a whole file, with what
/// to do when the request was too large for it. Every value already fits
/// the protocol (the parser flags one that does not), so `too_large` means
/// the request or a value went over a limit fluxd's config sets.
pub(crate) fn one_request(e: ClientError, label: &str, (names, bytes): (usize, usize)) -> Failure {
    let too_large = e.code() == Some(ErrorCode::TooLarge);
    let mut failure = Failure::from(e);
    if too_large {
        failure.message = format!(
            "{}\n{label} goes to fluxd as one request ({names} secrets, {} KiB of names and values), so that it is taken whole or not at all: raise [limits] max_request_bytes (256 KiB by default, at most 16 MiB) or max_value_bytes in fluxd's config, or split the file",
            failure.message,
            bytes.div_ceil(1024)
        );
    }
    failure
}

/// What a command does with a `.env` file, for its refusal: what did not
/// happen, and what `--skip-invalid` does instead.
pub(crate) struct Refusal<'a> {
    pub nothing: &'a str,
    pub skip_invalid: &'a str,
}

/// Reads and parses `file` (`-`: stdin), then refuses it when lines need
/// attention unless `skip_invalid`, in which case they are printed as
/// warnings. A file that cannot be read is a failure (exit 1); one that
/// reads but does not parse is bad input (2).
pub(crate) fn read_env(
    file: &Path,
    expand: bool,
    skip_invalid: bool,
    refusal: &Refusal<'_>,
) -> Result<EnvFile> {
    let options = Options { expand };
    let (label, parsed) = if file == Path::new("-") {
        let mut bytes = Zeroizing::new(Vec::new());
        std::io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .map_err(|e| Failure::general(format!("cannot read stdin: {e}")))?;
        let parsed = flux_vault::dotenv::parse(&bytes, "<stdin>", &options)
            .map_err(|e| Failure::usage(e.to_string()))?;
        ("<stdin>".to_owned(), parsed)
    } else {
        let label = file.display().to_string();
        let bytes =
            Zeroizing::new(std::fs::read(file).map_err(|e| {
                Failure::general(format!("cannot read {label}: {}", io_reason(&e)))
            })?);
        let parsed = flux_vault::dotenv::parse(&bytes, &label, &options)
            .map_err(|e| Failure::usage(e.to_string()))?;
        (label, parsed)
    };
    let Parsed { entries, issues } = parsed;
    if !issues.is_empty() && !skip_invalid {
        let list = issue_list(&issues);
        let refused = format!(
            "{label}: {} {} need attention; {}:\n{list}Fix {}, or pass --skip-invalid to {}",
            issues.len(),
            plural(issues.len(), "line", "lines"),
            refusal.nothing,
            plural(issues.len(), "it", "them"),
            refusal.skip_invalid,
        );
        return Err(Failure::usage(refused));
    }
    if !issues.is_empty() {
        let mut text = String::new();
        for issue in &issues {
            text.push_str(&format!("fluxctl: warning: {issue}\n"));
        }
        eprint!("{text}");
    }
    Ok(EnvFile {
        label,
        entries,
        issues,
    })
}

pub(crate) fn run(target: &Target, file: &Path, flags: Flags) -> Result<()> {
    let nothing = if flags.dry_run {
        "an import would write nothing"
    } else {
        "nothing was imported"
    };
    let refusal = Refusal {
        nothing,
        skip_invalid: "import the rest (lines Flux cannot hold are left out; the others are imported as fluxd dev serves them)",
    };
    let env = read_env(file, flags.expand, flags.skip_invalid, &refusal)?;
    let size = env.size();
    let EnvFile {
        label,
        entries,
        issues,
    } = env;
    if entries.is_empty() {
        return Err(Failure::usage(format!(
            "{label} holds no secrets to import"
        )));
    }
    let mut empty: Vec<&str> = entries
        .iter()
        .filter(|(_, v)| v.is_empty())
        .map(|(n, _)| n.as_str())
        .collect();
    if !empty.is_empty() && !flags.allow_empty {
        empty.sort_unstable();
        return Err(Failure::usage(format!(
            "{label}: {} {} an empty value: {}; {nothing}. Give {} a value, or pass --allow-empty to import empty values",
            empty.len(),
            plural(empty.len(), "name has", "names have"),
            empty.join(", "),
            plural(empty.len(), "it", "them"),
        )));
    }
    let (project, mut client) = target.project_client()?;
    let mut text = String::new();
    let mut kept = 0;
    let (created, changed, unchanged, generation) = if flags.dry_run {
        // The daemon compares the values; none is printed.
        let differences = client
            .diff(request(entries))
            .map_err(|e| one_request(e, &label, size))?;
        let (mut created, mut updated, mut unchanged) = (Vec::new(), Vec::new(), Vec::new());
        for d in differences {
            match d.state {
                DiffState::OnlyInRequest => created.push(d.name),
                DiffState::Changed => updated.push(d.name),
                DiffState::Same => unchanged.push(d.name),
                DiffState::OnlyInProject => kept += 1,
            }
        }
        text.push_str(&format!(
            "Dry run: nothing was written to project {project}.\n"
        ));
        (created, updated, unchanged, None)
    } else {
        let written = client
            .write_many(request(entries))
            .map_err(|e| one_request(e, &label, size))?;
        let changed = written.created.len() + written.updated.len();
        text.push_str(&done(&if changed == 0 {
            format!("Project {project} already holds every value in {label}: nothing changed\n")
        } else {
            format!("Imported {changed} secrets into project {project} (live now)\n")
        }));
        (
            written.created,
            written.updated,
            written.unchanged,
            Some(written.generation),
        )
    };
    let skipped: Vec<&Issue> = issues.iter().filter(|i| i.skipped).collect();
    if flags.json {
        let skipped: Vec<serde_json::Value> = skipped
            .iter()
            .map(|i| {
                serde_json::json!({
                    "file": i.file,
                    "line": i.line,
                    "column": i.column,
                    "name": i.name,
                    "reason": i.reason,
                })
            })
            .collect();
        let mut doc = serde_json::json!({
            "project": project,
            "dry_run": flags.dry_run,
            "created": created,
            "updated": changed,
            "unchanged": unchanged,
            "values_compared": true,
            "skipped": skipped,
            "generation": generation,
        });
        if flags.dry_run {
            doc["kept"] = serde_json::json!(kept);
        } else {
            // Every name that was already set, as earlier versions named it.
            let mut replaced: Vec<&String> = changed.iter().chain(&unchanged).collect();
            replaced.sort();
            doc["replaced"] = serde_json::json!(replaced);
        }
        return out_json(&doc);
    }
    if !created.is_empty() {
        let verb = if flags.dry_run {
            "would create"
        } else {
            "created"
        };
        text.push_str(&format!("{verb}: {}\n", created.join(", ")));
    }
    if !changed.is_empty() {
        let verb = if flags.dry_run {
            "would update"
        } else {
            "updated"
        };
        text.push_str(&format!("{verb}: {}\n", changed.join(", ")));
    }
    if !unchanged.is_empty() {
        text.push_str(&format!(
            "unchanged (same value, no new version): {}\n",
            unchanged.join(", ")
        ));
    }
    if kept > 0 {
        text.push_str(&format!(
            "kept: {kept} {} of the project not in the file (an import never deletes)\n",
            plural(kept, "secret", "secrets")
        ));
    }
    if !skipped.is_empty() {
        text.push_str(&format!(
            "{}: {} {} (listed above)\n",
            if flags.dry_run {
                "would skip"
            } else {
                "skipped"
            },
            skipped.len(),
            plural(skipped.len(), "line", "lines")
        ));
    }
    text.push_str(&format!(
        "{} created, {} updated, {} unchanged\n",
        created.len(),
        changed.len(),
        unchanged.len()
    ));
    out(&text)
}

fn issue_list(issues: &[Issue]) -> String {
    issues.iter().map(|i| format!("  {i}\n")).collect()
}

pub(crate) fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}
