//! `fluxctl secrets set / list / delete / history / rollback`.
//!
//! `set` takes the value from the argument, else `--from-file` (bytes
//! exact), else stdin when it is not a terminal (one trailing newline
//! stripped, as `echo` and here-strings add one), else a prompt that does
//! not echo. The value is held in a zeroizing buffer and never printed.
//! An empty value — Enter at the prompt, `</dev/null`, `echo $UNSET |`, an
//! empty file — is refused as a usage error unless `--allow-empty` says it
//! is meant. It says whether the secret was created, updated, or left
//! unchanged — the value given was already the current one, so fluxd kept
//! no new version — as fluxd's answer (`Write`) says.
//!
//! `list` and `history` show each value as its keyed digest (12 hex
//! digits the daemon computes with the project key): equal digests, equal
//! values; nothing about a value can be learned from one.

use crate::failure::{Failure, Result};
use crate::style::done;
use crate::target::Target;
use crate::timefmt::ago;
use crate::{SecretsCmd, columns, out, out_json};
use flux_protocol::SecretValue;
use flux_protocol::client::io_reason;
use flux_protocol::limits::{validate_secret_name, validate_value_len};
use flux_protocol::message::WriteOutcome;
use flux_vault::time::{format_time_ms, now_ms};
use std::io::{IsTerminal, Read};
use std::path::Path;
use zeroize::Zeroizing;

/// Runs a `secrets` command; returns the exit status.
pub(crate) fn run(target: &Target, cmd: SecretsCmd) -> Result<u8> {
    let ok = |r: Result<()>| r.map(|()| 0);
    match cmd {
        SecretsCmd::Set {
            name,
            value,
            from_file,
            allow_empty,
            json,
        } => ok(set(
            target,
            &name,
            value,
            from_file.as_deref(),
            SetFlags { allow_empty, json },
        )),
        SecretsCmd::List { json } => ok(list(target, json)),
        SecretsCmd::Delete { name, json } => ok(delete(target, &name, json)),
        SecretsCmd::History { name, json } => ok(history(target, &name, json)),
        SecretsCmd::Rollback { name, to, json } => ok(rollback(target, &name, to, json)),
        SecretsCmd::Diff {
            file,
            skip_invalid,
            expand,
            json,
        } => crate::diff::run(
            target,
            &file,
            crate::diff::Flags {
                skip_invalid,
                expand,
                json,
            },
        ),
        SecretsCmd::Import {
            file,
            dry_run,
            skip_invalid,
            expand,
            allow_empty,
            json,
        } => ok(crate::import::run(
            target,
            &file,
            crate::import::Flags {
                dry_run,
                skip_invalid,
                expand,
                allow_empty,
                json,
            },
        )),
    }
}

fn check_name(name: &str) -> Result<()> {
    validate_secret_name(name).map_err(|e| Failure::usage(e.to_string()))
}

/// `secrets set`'s flags.
#[derive(Debug, Clone, Copy)]
struct SetFlags {
    allow_empty: bool,
    json: bool,
}

fn set(
    target: &Target,
    name: &str,
    value: Option<String>,
    from_file: Option<&Path>,
    flags: SetFlags,
) -> Result<()> {
    check_name(name)?;
    let from_argument = value.is_some();
    let value = read_value(name, value, from_file)?;
    if value.is_empty() && !flags.allow_empty {
        let source = match (from_argument, from_file) {
            (true, _) => "the value argument is empty".to_owned(),
            (false, Some(path)) => format!("{} is empty", path.display()),
            (false, None) if !std::io::stdin().is_terminal() => {
                "stdin was empty (`</dev/null`, or `echo $VAR |` with VAR unset?)".to_owned()
            }
            (false, None) => "nothing was typed".to_owned(),
        };
        return Err(Failure::usage(format!(
            "refusing to set {name} to an empty value: {source}; nothing was changed. Pass --allow-empty if an empty value is what you mean"
        )));
    }
    validate_value_len(value.len()).map_err(|e| Failure::usage(format!("secret {name}: {e}")))?;
    let (project, mut client) = target.project_client()?;
    let written = client.write(name, value)?;
    if flags.json {
        return out_json(&serde_json::json!({
            "project": project,
            "name": name,
            "created": written.outcome == WriteOutcome::Created,
            "outcome": match written.outcome {
                WriteOutcome::Created => "created",
                WriteOutcome::Updated => "updated",
                WriteOutcome::Unchanged => "unchanged",
            },
            "generation": written.generation,
        }));
    }
    match written.outcome {
        WriteOutcome::Created => out(&format!("{}\n", done(&format!("Secret set: {name}")))),
        WriteOutcome::Updated => out(&format!(
            "{}\nNew value is live immediately — no redeploy needed.\n",
            done(&format!("Secret updated: {name}"))
        )),
        WriteOutcome::Unchanged => out(&format!(
            "{}\n",
            done(&format!(
                "Secret unchanged: {name} already holds this value (no new version)"
            ))
        )),
    }
}

fn read_value(name: &str, value: Option<String>, from_file: Option<&Path>) -> Result<SecretValue> {
    let value = read_value_from(name, value, from_file)?;
    if value.expose().contains('\0') {
        return Err(Failure::usage(format!(
            "the value for {name} contains a NUL byte, which no environment variable can hold: store binary data encoded, e.g. as base64"
        )));
    }
    Ok(value)
}

fn read_value_from(
    name: &str,
    value: Option<String>,
    from_file: Option<&Path>,
) -> Result<SecretValue> {
    if let Some(v) = value {
        // Other local users can read a process's arguments: hide it now,
        // and say so where someone is watching.
        crate::argv::hide(&v);
        if std::io::stderr().is_terminal() {
            eprintln!(
                "fluxctl: warning: a value on the command line is visible to other local users while it runs and stays in your shell history; leave it out to type it at a hidden prompt, or pipe it in (or --from-file PATH)"
            );
        }
        return Ok(SecretValue::new(v));
    }
    if let Some(path) = from_file {
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| {
            Failure::general(format!("cannot read {}: {}", path.display(), io_reason(&e)))
        })?);
        let text = std::str::from_utf8(&bytes).map_err(|_| {
            Failure::usage(format!(
                "{} is not UTF-8 text; secret values must be UTF-8 (base64-encode binary values)",
                path.display()
            ))
        })?;
        return Ok(SecretValue::from(text));
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut bytes = Zeroizing::new(Vec::new());
        stdin
            .lock()
            .read_to_end(&mut bytes)
            .map_err(|e| Failure::general(format!("cannot read the value from stdin: {e}")))?;
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| {
            Failure::usage("the value on stdin is not UTF-8 text; secret values must be UTF-8")
        })?;
        return Ok(SecretValue::from(text));
    }
    let typed = crate::prompt::hidden(&format!("Value for {name} (input hidden): "))
        .map_err(|e| Failure::general(format!("cannot read the value from the terminal: {e}")))?;
    Ok(SecretValue::from(typed.as_str()))
}

fn list(target: &Target, json: bool) -> Result<()> {
    let (project, mut client) = target.project_client()?;
    let secrets = client.list_digests()?;
    if json {
        let items: Vec<serde_json::Value> = secrets
            .iter()
            .map(|s| {
                serde_json::json!({
                    "name": s.name,
                    "set_at": format_time_ms(s.set_at_ms),
                    "digest": s.digest,
                })
            })
            .collect();
        return out_json(&serde_json::Value::Array(items));
    }
    if secrets.is_empty() {
        eprintln!(
            "No secrets in project {project}. Set one with `fluxctl secrets set NAME --project {project}`."
        );
        return Ok(());
    }
    let now = now_ms();
    let rows: Vec<Vec<String>> = secrets
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.digest.clone(),
                format!("set {}", ago(s.set_at_ms, now)),
            ]
        })
        .collect();
    out(&columns(&rows))
}

fn history(target: &Target, name: &str, json: bool) -> Result<()> {
    check_name(name)?;
    let (project, mut client) = target.project_client()?;
    let history = client.history(name)?;
    if json {
        let items: Vec<serde_json::Value> = history
            .versions
            .iter()
            .enumerate()
            .map(|(i, v)| {
                serde_json::json!({
                    "version": v.version,
                    "current": i == 0,
                    "set_at": format_time_ms(v.set_at_ms),
                    "uid": v.uid,
                    "exe": v.exe,
                    "digest": v.digest,
                })
            })
            .collect();
        return out_json(&serde_json::Value::Array(items));
    }
    let now = now_ms();
    let mut rows = vec![vec![
        "VERSION".to_owned(),
        "SET".to_owned(),
        "BY".to_owned(),
        "DIGEST".to_owned(),
        String::new(),
    ]];
    for (i, v) in history.versions.iter().enumerate() {
        let by = match (v.uid, &v.exe) {
            (Some(uid), Some(exe)) => format!("uid {uid} {exe}"),
            (Some(uid), None) => format!("uid {uid}"),
            (None, _) => "unknown".to_owned(),
        };
        rows.push(vec![
            v.version.to_string(),
            format!(
                "{} ({})",
                format_time_ms(v.set_at_ms),
                ago(v.set_at_ms, now)
            ),
            by,
            v.digest.clone(),
            if i == 0 { "current" } else { "" }.to_owned(),
        ]);
    }
    let mut text = columns(&rows);
    if history.versions.len() == 1 {
        text.push_str(&format!(
            "No earlier version of {name} is kept in project {project} (fluxd keeps [vaults] keep_versions earlier values, 5 by default).\n"
        ));
    }
    out(&text)
}

fn rollback(target: &Target, name: &str, to: Option<u64>, json: bool) -> Result<()> {
    check_name(name)?;
    if to == Some(0) {
        return Err(Failure::usage("--to: version numbers start at 1"));
    }
    let (project, mut client) = target.project_client()?;
    let rolled = client.rollback(name, to)?;
    if json {
        return out_json(&serde_json::json!({
            "project": project,
            "name": name,
            "from": rolled.from,
            "version": rolled.version,
            "generation": rolled.generation,
        }));
    }
    out(&format!(
        "{}\nLive immediately — no redeploy needed.\n",
        done(&format!(
            "Secret rolled back: {name} in project {project} holds the value of version {} again, as version {}",
            rolled.from, rolled.version
        ))
    ))
}

fn delete(target: &Target, name: &str, json: bool) -> Result<()> {
    check_name(name)?;
    let (project, mut client) = target.project_client()?;
    let deleted = client.delete(name)?;
    if json {
        return out_json(&serde_json::json!({
            "project": project,
            "name": name,
            "deleted": true,
            "generation": deleted.generation,
        }));
    }
    out(&format!(
        "{}\nIts earlier versions were deleted with it.\n",
        done(&format!("Secret deleted: {name}"))
    ))
}
