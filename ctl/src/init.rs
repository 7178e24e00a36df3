//! `fluxctl init [NAME]`: names the project for this folder in `flux.json`
//! and makes sure `.gitignore` lists `.env`, the local-development file
//! that must never be committed. Existing files are kept: other keys of
//! `flux.json` and every line of `.gitignore` stay as they are.

use crate::failure::{Failure, Result};
use crate::out;
use flux_protocol::limits::validate_project_name;
use std::path::Path;

/// A project name from a folder name: invalid characters become `-`.
fn name_from_folder(dir: &Path) -> Option<String> {
    let raw = dir.file_name()?.to_str()?;
    let name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = name
        .trim_start_matches(['-', '_'])
        .chars()
        .take(64)
        .collect::<String>();
    validate_project_name(&name).ok().map(|()| name)
}

pub(crate) fn run(name: Option<String>, force: bool) -> Result<()> {
    let cwd = std::env::current_dir()
        .map_err(|e| Failure::general(format!("cannot read the current folder: {e}")))?;
    let name = match name {
        Some(n) => n,
        None => name_from_folder(&cwd).ok_or_else(|| {
            Failure::usage(
                "cannot make a project name from this folder's name: pass one, fluxctl init NAME",
            )
        })?,
    };
    validate_project_name(&name).map_err(|e| Failure::usage(e.to_string()))?;

    let mut text = String::new();
    let manifest = Path::new("flux.json");
    let mut json = match std::fs::read_to_string(manifest) {
        Ok(t) => serde_json::from_str::<serde_json::Value>(&t)
            .map_err(|e| Failure::usage(format!("flux.json is not valid JSON: {e}")))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({}),
        Err(e) => return Err(Failure::general(format!("cannot read flux.json: {e}"))),
    };
    let obj = json
        .as_object_mut()
        .ok_or_else(|| Failure::usage("flux.json is not a JSON object"))?;
    match obj.get("name").and_then(|n| n.as_str()) {
        Some(existing) if existing == name => {
            text.push_str(&format!("✔ flux.json already names project {name}\n"));
        }
        Some(existing) if !force => {
            return Err(Failure::usage(format!(
                "flux.json names project {existing}; pass --force to rename it to {name}"
            )));
        }
        _ => {
            obj.insert("name".into(), name.clone().into());
            let mut body = serde_json::to_string_pretty(&json).expect("JSON");
            body.push('\n');
            std::fs::write(manifest, body)
                .map_err(|e| Failure::general(format!("cannot write flux.json: {e}")))?;
            text.push_str(&format!("✔ Wrote flux.json: project {name}\n"));
        }
    }

    let ignore = Path::new(".gitignore");
    let existing = match std::fs::read_to_string(ignore) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Failure::general(format!("cannot read .gitignore: {e}"))),
    };
    let listed = existing
        .lines()
        .map(str::trim)
        .any(|l| l == ".env" || l == "/.env");
    if listed {
        text.push_str("✔ .gitignore already lists .env\n");
    } else {
        let mut updated = existing.clone();
        if !updated.is_empty() && !updated.ends_with('\n') {
            updated.push('\n');
        }
        updated.push_str("# Local development secrets (fluxd dev): never commit\n.env\n");
        std::fs::write(ignore, updated)
            .map_err(|e| Failure::general(format!("cannot write .gitignore: {e}")))?;
        text.push_str("✔ .gitignore lists .env\n");
    }
    text.push_str(&format!(
        "Next: fluxctl projects create {name}, or put local values in .env and run `fluxd dev`\n"
    ));
    out(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names_become_project_names() {
        assert_eq!(
            name_from_folder(Path::new("/x/my-app")).as_deref(),
            Some("my-app")
        );
        assert_eq!(
            name_from_folder(Path::new("/x/My App.v2")).as_deref(),
            Some("My-App-v2")
        );
        assert_eq!(
            name_from_folder(Path::new("/x/_.hidden")).as_deref(),
            Some("hidden")
        );
        assert_eq!(name_from_folder(Path::new("/x/...")), None);
    }
}
