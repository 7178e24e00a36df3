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
//! `fluxd dev --expand` does. `--dry-run` lists the same lines and what
//! would be created and replaced, and writes nothing. The last line of a
//! successful run is always the summary, `N created, M replaced (values
//! not compared)`.
//!
//! "Replaced", not "updated" or "unchanged": an admin may not read values
//! back (only readers get values, and root is never one), and fluxd's
//! answer to an import names the new and the existing names without
//! comparing values. So fluxctl cannot tell an unchanged value from a
//! changed one, and says so rather than guess; every imported name gets a
//! new set time either way.

use crate::failure::{Failure, Result};
use crate::style::done;
use crate::target::Target;
use crate::{out, out_json};
use flux_protocol::client::io_reason;
use flux_protocol::message::NamedValue;
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

/// The summary's note on what "replaced" means.
const NOT_COMPARED: &str = "values not compared";

pub(crate) fn run(target: &Target, file: &Path, flags: Flags) -> Result<()> {
    let options = Options {
        expand: flags.expand,
    };
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
        // A file that cannot be read is an I/O failure (1); one that reads
        // but does not parse is bad input (2).
        let bytes =
            Zeroizing::new(std::fs::read(file).map_err(|e| {
                Failure::general(format!("cannot read {label}: {}", io_reason(&e)))
            })?);
        let parsed = flux_vault::dotenv::parse(&bytes, &label, &options)
            .map_err(|e| Failure::usage(e.to_string()))?;
        (label, parsed)
    };
    let Parsed { entries, issues } = parsed;
    if !issues.is_empty() && !flags.skip_invalid {
        let list = issue_list(&issues);
        let refused = format!(
            "{label}: {} {} need attention; {}:\n{list}Fix {}, or pass --skip-invalid to import the rest (lines Flux cannot hold are left out; the others are imported as fluxd dev serves them)",
            issues.len(),
            plural(issues.len(), "line", "lines"),
            if flags.dry_run {
                "an import would write nothing"
            } else {
                "nothing was imported"
            },
            plural(issues.len(), "it", "them"),
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
            "{label}: {} {} an empty value: {}; {}. Give {} a value, or pass --allow-empty to import empty values",
            empty.len(),
            plural(empty.len(), "name has", "names have"),
            empty.join(", "),
            if flags.dry_run {
                "an import would write nothing"
            } else {
                "nothing was imported"
            },
            plural(empty.len(), "it", "them"),
        )));
    }
    let (project, mut client) = target.project_client()?;
    let mut text = String::new();
    let (created, replaced, generation) = if flags.dry_run {
        let existing: std::collections::HashSet<String> =
            client.list()?.into_iter().map(|s| s.name).collect();
        let (mut created, mut replaced): (Vec<String>, Vec<String>) = entries
            .iter()
            .map(|(n, _)| n.clone())
            .partition(|n| !existing.contains(n));
        created.sort();
        replaced.sort();
        text.push_str(&format!(
            "Dry run: nothing was written to project {project}.\n"
        ));
        (created, replaced, None)
    } else {
        let stored = client.set_many(
            entries
                .into_iter()
                .map(|(name, value)| NamedValue { name, value })
                .collect(),
        )?;
        text.push_str(&done(&format!(
            "Imported {} secrets into project {project} (live now)\n",
            stored.created.len() + stored.updated.len()
        )));
        (stored.created, stored.updated, Some(stored.generation))
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
        return out_json(&serde_json::json!({
            "project": project,
            "dry_run": flags.dry_run,
            "created": created,
            "replaced": replaced,
            "values_compared": false,
            "skipped": skipped,
            "generation": generation,
        }));
    }
    let verb = |done: &str, would: &str| {
        if flags.dry_run {
            would.to_owned()
        } else {
            done.to_owned()
        }
    };
    if !created.is_empty() {
        text.push_str(&format!(
            "{}: {}\n",
            verb("created", "would create"),
            created.join(", ")
        ));
    }
    if !replaced.is_empty() {
        text.push_str(&format!(
            "{}: {}\n",
            verb("replaced", "would replace"),
            replaced.join(", ")
        ));
    }
    if !skipped.is_empty() {
        text.push_str(&format!(
            "{}: {} {} (listed above)\n",
            verb("skipped", "would skip"),
            skipped.len(),
            plural(skipped.len(), "line", "lines")
        ));
    }
    text.push_str(&format!(
        "{} created, {} replaced{}\n",
        created.len(),
        replaced.len(),
        if replaced.is_empty() {
            String::new()
        } else {
            format!(" ({NOT_COMPARED})")
        }
    ));
    out(&text)
}

fn issue_list(issues: &[Issue]) -> String {
    issues.iter().map(|i| format!("  {i}\n")).collect()
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}
