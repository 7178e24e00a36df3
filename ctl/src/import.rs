//! `fluxctl secrets import FILE|-`: every name of a `.env` file set in one
//! vault write — all of them or none. The parser is `fluxd dev`'s
//! ([`fluxd::dotenv`]). `--dry-run` lists what would be created and
//! updated and writes nothing. The last line is always the summary,
//! `N created, M updated`.

use crate::failure::{Failure, Result};
use crate::out;
use crate::target::Target;
use flux_protocol::message::NamedValue;
use std::io::Read;
use std::path::Path;
use zeroize::Zeroizing;

pub(crate) fn run(target: &Target, file: &Path, dry_run: bool) -> Result<()> {
    let (label, entries) = if file == Path::new("-") {
        let mut bytes = Zeroizing::new(Vec::new());
        std::io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .map_err(|e| Failure::general(format!("cannot read stdin: {e}")))?;
        let entries =
            fluxd::dotenv::parse(&bytes, "<stdin>").map_err(|e| Failure::usage(e.to_string()))?;
        ("<stdin>".to_owned(), entries)
    } else {
        let entries = fluxd::dotenv::read(file).map_err(|e| Failure::usage(e.to_string()))?;
        (file.display().to_string(), entries)
    };
    if entries.is_empty() {
        return Err(Failure::usage(format!(
            "{label} holds no secrets to import"
        )));
    }
    let (project, mut client) = target.project_client()?;
    let mut text = String::new();
    let (created, updated) = if dry_run {
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
        if dry_run {
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
    text.push_str(&format!(
        "{} created, {} updated\n",
        created.len(),
        updated.len()
    ));
    out(&text)
}
