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
//! `--expand` expands `${NAME}` and friends from the lines above, as
//! `fluxd dev --expand` does. `--dry-run` lists the same lines and what
//! would be created and updated, and writes nothing. The last line of a
//! successful run is always the summary, `N created, M updated`.

use crate::failure::{Failure, Result};
use crate::out;
use crate::target::Target;
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
}

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
        let parsed =
            flux_vault::dotenv::read(file, &options).map_err(|e| Failure::usage(e.to_string()))?;
        (file.display().to_string(), parsed)
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
    let (project, mut client) = target.project_client()?;
    let mut text = String::new();
    let (created, updated) = if flags.dry_run {
        let existing: std::collections::HashSet<String> =
            client.list()?.into_iter().map(|s| s.name).collect();
        let (mut created, mut updated): (Vec<String>, Vec<String>) = entries
            .iter()
            .map(|(n, _)| n.clone())
            .partition(|n| !existing.contains(n));
        created.sort();
        updated.sort();
        text.push_str(&format!(
            "Dry run: nothing was written to project {project}.\n"
        ));
        (created, updated)
    } else {
        let stored = client.set_many(
            entries
                .into_iter()
                .map(|(name, value)| NamedValue { name, value })
                .collect(),
        )?;
        text.push_str(&format!(
            "✔ Imported {} secrets into project {project} (live now)\n",
            stored.created.len() + stored.updated.len()
        ));
        (stored.created, stored.updated)
    };
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
    if !updated.is_empty() {
        text.push_str(&format!(
            "{}: {}\n",
            verb("updated", "would update"),
            updated.join(", ")
        ));
    }
    let skipped = issues.iter().filter(|i| i.skipped).count();
    if skipped > 0 {
        text.push_str(&format!(
            "{}: {skipped} {} (listed above)\n",
            verb("skipped", "would skip"),
            plural(skipped, "line", "lines")
        ));
    }
    text.push_str(&format!(
        "{} created, {} updated\n",
        created.len(),
        updated.len()
    ));
    out(&text)
}

fn issue_list(issues: &[Issue]) -> String {
    issues.iter().map(|i| format!("  {i}\n")).collect()
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}
