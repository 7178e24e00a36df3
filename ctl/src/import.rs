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
//! would be created, updated (a changed value) and left unchanged — the
//! daemon compares the values, as for `fluxctl secrets diff`, and none is
//! printed — and writes nothing. The last line of a successful run is
//! always the summary, `N created, M updated`.

use crate::failure::{Failure, Result};
use crate::out;
use crate::target::Target;
use flux_protocol::message::{DiffState, NamedValue};
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

/// A `.env` file read as `import` and `diff` read it.
pub(crate) struct EnvFile {
    /// The file's name for messages (`<stdin>` for `-`).
    pub label: String,
    pub entries: Vec<(String, flux_protocol::SecretValue)>,
    pub issues: Vec<Issue>,
}

/// What a command does with a `.env` file, for its refusal: what did not
/// happen, and what `--skip-invalid` does instead.
pub(crate) struct Refusal<'a> {
    pub nothing: &'a str,
    pub skip_invalid: &'a str,
}

/// Reads and parses `file` (`-`: stdin), then refuses it when lines need
/// attention unless `skip_invalid`, in which case they are printed as
/// warnings.
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
        let parsed =
            flux_vault::dotenv::read(file, &options).map_err(|e| Failure::usage(e.to_string()))?;
        (file.display().to_string(), parsed)
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
    let refusal = Refusal {
        nothing: if flags.dry_run {
            "an import would write nothing"
        } else {
            "nothing was imported"
        },
        skip_invalid: "import the rest (lines Flux cannot hold are left out; the others are imported as fluxd dev serves them)",
    };
    let EnvFile {
        label,
        entries,
        issues,
    } = read_env(file, flags.expand, flags.skip_invalid, &refusal)?;
    if entries.is_empty() {
        return Err(Failure::usage(format!(
            "{label} holds no secrets to import"
        )));
    }
    let (project, mut client) = target.project_client()?;
    let mut text = String::new();
    let mut unchanged = Vec::new();
    let mut kept = 0;
    let (created, updated) = if flags.dry_run {
        // The daemon compares the values; none is printed.
        let differences = client.diff(
            entries
                .into_iter()
                .map(|(name, value)| NamedValue { name, value })
                .collect(),
        )?;
        let (mut created, mut updated) = (Vec::new(), Vec::new());
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

pub(crate) fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}
