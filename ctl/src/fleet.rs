//! `fluxctl fleet import`: moves the projects of a single-host state folder
//! (`<state>/keys`, `<state>/vaults`) into the fleet the local fluxd
//! belongs to (docs/FLEET.md, "Moving a single host into a fleet").
//!
//! Each vault is opened here with its key, and its values written to the
//! fleet through the project's socket in one `SetMany`: the fleet gives the
//! project its own key, signs and replicates it like any write. Values
//! pass through this process's memory only; the folder is left as it was.

use crate::failure::{Failure, Result};
use crate::style::done;
use crate::target::Target;
use crate::{FleetCmd, out, out_json};
use flux_protocol::message::{NamedValue, Request, RequestKind, Response};
use flux_vault::files::read_regular;
use flux_vault::keys::ProjectKey;
use flux_vault::layout::{MAX_KEY_FILE, MAX_VAULT_FILE, StateDir};
use flux_vault::vault::{self, Secrets};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub(crate) fn run(target: &Target, cmd: FleetCmd) -> Result<()> {
    match cmd {
        FleetCmd::Init {
            operator_key,
            key_only,
            json,
        } => crate::hosts::init(target, &operator_key, key_only, json),
        FleetCmd::Import {
            from,
            dry_run,
            json,
        } => import(target, from, dry_run, json),
    }
}

/// One project of the folder, opened.
struct Local {
    name: String,
    secrets: Secrets,
}

/// Every project of the folder `from`: its key opens its vault (a project
/// with no vault has no secrets yet).
fn read_folder(from: &Path) -> Result<Vec<Local>> {
    let state = StateDir::new(from);
    let names = state.projects().map_err(|e| {
        Failure::general(format!(
            "cannot read {}: {} (is {} a fluxd state folder, and may you read it?)",
            e.path.display(),
            e.source,
            from.display()
        ))
    })?;
    let mut projects = Vec::new();
    for name in names {
        let key_path = state.key(&name);
        let unreadable =
            |path: &Path, why: String| Failure::general(format!("{}: {why}", path.display()));
        let text = read_regular(&key_path, MAX_KEY_FILE)
            .map_err(|e| unreadable(&key_path, e.to_string()))?
            .ok_or_else(|| unreadable(&key_path, "disappeared while reading".into()))?;
        let text = zeroize::Zeroizing::new(
            String::from_utf8(text).map_err(|_| unreadable(&key_path, "not a key file".into()))?,
        );
        let key = ProjectKey::parse(&text).map_err(|e| unreadable(&key_path, e))?;
        let vault_path = state.vault(&name);
        let secrets = match read_regular(&vault_path, MAX_VAULT_FILE)
            .map_err(|e| unreadable(&vault_path, e.to_string()))?
        {
            Some(bytes) => {
                vault::open(&bytes, &name, &key)
                    .map_err(|e| unreadable(&vault_path, e.to_string()))?
                    .secrets
            }
            None => Secrets::new(),
        };
        projects.push(Local { name, secrets });
    }
    Ok(projects)
}

fn import(target: &Target, from: Option<PathBuf>, dry_run: bool, json: bool) -> Result<()> {
    let mut control = target.control()?;
    let Response::Fleet(fleet) = control.call(&Request::Fleet)? else {
        return Err(Failure::unexpected(RequestKind::Fleet));
    };
    let Some(fleet_id) = fleet.fleet_id.filter(|_| fleet.member) else {
        return Err(Failure::usage(
            "this fluxd is not a member of a fleet: start it with --store etcd (docs/FLEET.md), and check `fluxctl hosts list`",
        ));
    };
    let from = match from {
        Some(path) => path,
        None => PathBuf::from(control.status()?.state_dir),
    };
    let projects = read_folder(&from)?;
    if projects.is_empty() && !json {
        return out(&format!(
            "No projects in {}: nothing to import.\n",
            StateDir::new(&from).keys_dir().display()
        ));
    }
    let existing: BTreeSet<String> = control
        .list_projects()?
        .into_iter()
        .map(|p| p.name)
        .collect();
    let mut report = Vec::new();
    let mut text = if dry_run {
        format!("Dry run: nothing was written to fleet {fleet_id}.\n")
    } else {
        String::new()
    };
    for local in projects {
        let (name, count) = (local.name.clone(), local.secrets.len());
        report.push(serde_json::json!({
            "project": name,
            "secrets": count,
            "created": !existing.contains(&name),
        }));
        let how = if existing.contains(&name) {
            "into the fleet's existing project"
        } else {
            "created in the fleet"
        };
        if dry_run {
            text.push_str(&format!("would import {name}: {count} secret(s), {how}\n"));
            continue;
        }
        if !existing.contains(&name) {
            control.create_project(&name)?;
        }
        if count > 0 {
            let mut client = target.client_of(&name)?;
            client.set_many(
                local
                    .secrets
                    .into_iter()
                    .map(|(name, entry)| NamedValue {
                        name,
                        value: entry.value,
                    })
                    .collect(),
            )?;
        }
        text.push_str(&format!(
            "{}\n",
            done(&format!("Imported {name}: {count} secret(s), {how}"))
        ));
    }
    if json {
        return out_json(&serde_json::json!({
            "fleet_id": fleet_id,
            "from": from.display().to_string(),
            "dry_run": dry_run,
            "projects": report,
        }));
    }
    if !dry_run {
        text.push_str(&format!(
            "The fleet serves them now. {} is unchanged: once every host serves the values, remove its keys and vaults.\n",
            from.display()
        ));
    }
    out(&text)
}
