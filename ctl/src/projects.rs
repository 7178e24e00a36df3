//! `fluxctl projects create / list / rekey / delete`.
//!
//! Deleting a project destroys its key first, so it is confirmed: at a
//! terminal by typing the project's name, in scripts with `--yes`.

use crate::failure::{Failure, Result};
use crate::style::{caution, done};
use crate::target::Target;
use crate::{ProjectsCmd, columns, out, out_json};
use flux_protocol::limits::validate_project_name;
use flux_protocol::message::{Request, RequestKind, Response};
use flux_protocol::paths::SOCKET_ENV;
use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};

pub(crate) fn run(target: &Target, cmd: ProjectsCmd) -> Result<()> {
    match cmd {
        ProjectsCmd::Create {
            name,
            hosts,
            operator_key,
            json,
        } => {
            if !hosts.is_empty() {
                check_name(name.as_str())?;
                let key = operator_key.ok_or_else(|| {
                    Failure::usage(
                        "assigning a project to hosts is signed with the fleet's operator key: pass --operator-key FILE (or set FLUX_OPERATOR_KEY)",
                    )
                })?;
                crate::hosts::assign_new(target, &name, &hosts, &key)?;
            }
            create(target, &name, json)
        }
        ProjectsCmd::List { json } => list(target, json),
        ProjectsCmd::Rekey { name, json } => rekey(target, &name, json),
        ProjectsCmd::Delete { name, yes, json } => delete(target, &name, yes, json),
    }
}

fn rekey(target: &Target, name: &str, json: bool) -> Result<()> {
    check_name(name)?;
    let req = Request::RekeyProject(flux_protocol::message::ProjectName {
        name: name.to_owned(),
    });
    let Response::Rekeyed(done_) = target.control()?.call(&req)? else {
        return Err(Failure::unexpected(RequestKind::RekeyProject));
    };
    if json {
        return out_json(&serde_json::json!({
            "name": done_.name,
            "revision": done_.revision,
            "generation": done_.generation,
        }));
    }
    out(&format!(
        "{}\nIts old key is destroyed: the vault written now opens only with the new one. Copies of the old vault (backups) still open with copies of the old key, if any were kept.\nValue digests (secrets list, history) change with the key.\n",
        done(&format!(
            "Project re-keyed: {name} (vault revision {})",
            done_.revision
        ))
    ))
}

fn check_name(name: &str) -> Result<()> {
    validate_project_name(name).map_err(|e| Failure::usage(e.to_string()))
}

fn create(target: &Target, name: &str, json: bool) -> Result<()> {
    check_name(name)?;
    let info = target.control()?.create_project(name)?;
    if json {
        return out_json(&crate::project_json(&info));
    }
    out(&format!(
        "{}\nFunctions read its secrets through {SOCKET_ENV}={}\n",
        done(&format!("Project created: {name}")),
        info.socket
    ))
}

/// In fleet mode, which hosts serve which project (`None` in local mode,
/// or when the daemon cannot say: the list is shown without them).
fn fleet_assignments(target: &Target) -> Option<BTreeMap<String, Vec<String>>> {
    let Ok(Response::Fleet(fleet)) = target.control().ok()?.call(&Request::Fleet) else {
        return None;
    };
    fleet.this_host.as_ref()?;
    crate::hosts::assignments(target, fleet.fleet_id.as_deref()).ok()
}

/// `age1qyqszqgp…3290gq`: a recipient short enough for a column.
fn short(recipient: &str) -> String {
    match (
        recipient.get(..12),
        recipient.get(recipient.len().saturating_sub(6)..),
    ) {
        (Some(head), Some(tail)) if recipient.len() > 20 => format!("{head}…{tail}"),
        _ => recipient.to_owned(),
    }
}

fn list(target: &Target, json: bool) -> Result<()> {
    let projects = target.control()?.list_projects()?;
    let assigned = fleet_assignments(target);
    let hosts_of = |name: &str| assigned.as_ref().and_then(|a| a.get(name));
    if json {
        let items: Vec<serde_json::Value> = projects
            .iter()
            .map(|p| {
                let mut item = crate::project_json(p);
                if assigned.is_some() {
                    // Fleet mode: null when every host serves it.
                    item["hosts"] = serde_json::json!(hosts_of(&p.name));
                }
                item
            })
            .collect();
        return out_json(&serde_json::Value::Array(items));
    }
    if projects.is_empty() {
        eprintln!("No projects yet. Create one with `fluxctl projects create NAME`.");
        return Ok(());
    }
    let mut header = vec!["NAME".into(), "SECRETS".into(), "SOCKET".into()];
    if assigned.is_some() {
        header.push("HOSTS".into());
    }
    let mut rows = vec![header];
    rows.extend(projects.iter().map(|p| {
        let mut row = vec![p.name.clone(), p.secrets.to_string(), p.socket.clone()];
        if assigned.is_some() {
            row.push(match hosts_of(&p.name) {
                Some(on) => on.iter().map(|r| short(r)).collect::<Vec<_>>().join(", "),
                None => "every host".into(),
            });
        }
        row
    }));
    out(&columns(&rows))
}

fn delete(target: &Target, name: &str, yes: bool, json: bool) -> Result<()> {
    check_name(name)?;
    let mut control = target.control()?;
    if !yes {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Err(Failure::usage(format!(
                "refusing to delete project {name} without confirmation: pass --yes"
            )));
        }
        let secrets = control
            .list_projects()?
            .into_iter()
            .find(|p| p.name == name)
            .map(|p| p.secrets)
            .unwrap_or(0);
        eprint!(
            "Delete project {name} and its {secrets} secrets? Its key is destroyed; this cannot be undone.\nType the project name to confirm: "
        );
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| Failure::general(format!("cannot read the confirmation: {e}")))?;
        if line.trim() != name {
            return Err(Failure::usage("not confirmed; nothing was deleted"));
        }
    }
    control.delete_project(name)?;
    // In fleet mode, what etcd's history still holds is among the fleet's
    // problems (a daemon admin may read them).
    let marker = format!("project {name} was deleted, but ");
    let remains: Vec<String> = match control.call(&Request::Fleet) {
        Ok(Response::Fleet(fleet)) => fleet
            .problems
            .into_iter()
            .filter_map(|p| p.strip_prefix(&marker).map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    if json {
        return out_json(&serde_json::json!({ "name": name, "deleted": true, "remains": remains }));
    }
    if remains.is_empty() {
        return out(&format!(
            "{}\n",
            done(&format!(
                "Project deleted: {name} (its key, vault and socket are gone)"
            ))
        ));
    }
    let mut text = format!(
        "{}\n",
        done(&format!(
            "Project deleted: {name} (no host serves it any more)"
        ))
    );
    for r in remains {
        text.push_str(&format!("{}\n", caution(&r)));
    }
    out(&text)
}
