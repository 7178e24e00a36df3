//! `fluxctl init [NAME]`: names the project for this folder in `flux.json`
//! and makes sure `.gitignore` keeps `.env` files out of git: `.env` (what
//! `fluxd dev` serves), `.env.*` (`.env.local`, `.env.production`) and
//! `*.env` (`prod.env`, as `fluxctl secrets import` takes), while
//! `!.env.example` keeps the template that documents the names and holds
//! no values committable. Existing files are kept: other keys of
//! `flux.json` and every line of `.gitignore` stay as they are; missing
//! patterns are appended.

use crate::failure::{Failure, Result};
use crate::style::done;
use crate::{out, out_json};

/// The `.gitignore` patterns `init` makes sure of, in this order (a `!`
/// line must come after the patterns it excepts from).
const IGNORED: [&str; 3] = [".env", ".env.*", "*.env"];
const KEPT: &str = "!.env.example";

/// The lines to append to `.gitignore` so that it holds [`IGNORED`] and,
/// after them, [`KEPT`]; empty when nothing is missing.
fn missing_patterns(gitignore: &str) -> Vec<&'static str> {
    let lines: Vec<&str> = gitignore.lines().map(str::trim).collect();
    let has = |pattern: &str| {
        lines
            .iter()
            .any(|l| *l == pattern || l.strip_prefix('/') == Some(pattern))
    };
    let mut add: Vec<&'static str> = IGNORED.into_iter().filter(|p| !has(p)).collect();
    // The exception must follow the patterns: appended again when any of
    // them is appended after it.
    if !add.is_empty() || !has(KEPT) {
        add.push(KEPT);
    }
    add
}
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

pub(crate) fn run(name: Option<String>, force: bool, json: bool) -> Result<()> {
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
    let mut doc = match std::fs::read_to_string(manifest) {
        Ok(t) => serde_json::from_str::<serde_json::Value>(&t)
            .map_err(|e| Failure::usage(format!("flux.json is not valid JSON: {e}")))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({}),
        Err(e) => return Err(Failure::general(format!("cannot read flux.json: {e}"))),
    };
    let obj = doc
        .as_object_mut()
        .ok_or_else(|| Failure::usage("flux.json is not a JSON object"))?;
    let manifest_written = match obj.get("name").and_then(|n| n.as_str()) {
        Some(existing) if existing == name => {
            text.push_str(&done(&format!("flux.json already names project {name}\n")));
            false
        }
        Some(existing) if !force => {
            return Err(Failure::usage(format!(
                "flux.json names project {existing}; pass --force to rename it to {name}"
            )));
        }
        _ => {
            obj.insert("name".into(), name.clone().into());
            let mut body = serde_json::to_string_pretty(&doc).expect("JSON");
            body.push('\n');
            std::fs::write(manifest, body)
                .map_err(|e| Failure::general(format!("cannot write flux.json: {e}")))?;
            text.push_str(&done(&format!("Wrote flux.json: project {name}\n")));
            true
        }
    };

    let ignore = Path::new(".gitignore");
    let existing = match std::fs::read_to_string(ignore) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Failure::general(format!("cannot read .gitignore: {e}"))),
    };
    let add = missing_patterns(&existing);
    if add.is_empty() {
        text.push_str(&done(
            ".gitignore already keeps .env, .env.* and *.env out of git (not .env.example)\n",
        ));
    } else {
        let mut updated = existing.clone();
        if !updated.is_empty() && !updated.ends_with('\n') {
            updated.push('\n');
        }
        updated.push_str(
            "# Local development secrets (fluxd dev, fluxctl secrets import): never commit\n",
        );
        for pattern in &add {
            updated.push_str(pattern);
            updated.push('\n');
        }
        std::fs::write(ignore, updated)
            .map_err(|e| Failure::general(format!("cannot write .gitignore: {e}")))?;
        text.push_str(&done(&format!(".gitignore: added {}\n", add.join(" "))));
    }
    if json {
        return out_json(&serde_json::json!({
            "project": name,
            "flux_json_written": manifest_written,
            "gitignore_added": add,
        }));
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

    #[test]
    fn gitignore_patterns_are_completed_in_order() {
        assert_eq!(
            missing_patterns(""),
            [".env", ".env.*", "*.env", "!.env.example"]
        );
        assert_eq!(
            missing_patterns("target/\n.env\n"),
            [".env.*", "*.env", "!.env.example"]
        );
        // Complete already: nothing to add.
        assert!(missing_patterns("/.env\n.env.*\n*.env\n!.env.example\n").is_empty());
        // An exception that came first is repeated after the new patterns.
        assert_eq!(
            missing_patterns("!.env.example\n.env\n"),
            [".env.*", "*.env", "!.env.example"]
        );
        // Only the exception missing.
        assert_eq!(missing_patterns(".env\n.env.*\n*.env\n"), ["!.env.example"]);
    }
}
