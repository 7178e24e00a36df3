//! `fluxctl hosts list / add / remove` and `fluxctl fleet init`: the hosts
//! of a fleet (fluxd `--store etcd`, see `docs/FLEET.md`).
//!
//! The host list is signed by the fleet's **operator key**, which lives
//! with the operator and never reaches a daemon: this process reads it,
//! checks the host list the local fluxd holds against it (a fluxd that
//! lies about the current list cannot get the operator to sign over a
//! list the operator never signed), signs the next version — naming the
//! digest of the one before — and hands the envelope to fluxd, which
//! publishes it, wraps keys for added hosts and re-keys projects away from
//! removed ones.

use crate::failure::{EXIT_UNAVAILABLE, Failure, Result};
use crate::style::{caution, done};
use crate::target::Target;
use crate::{HostsCmd, out, out_json};
use flux_protocol::limits::validate_project_name;
use flux_protocol::message::{HostsReport, Request, Response, SignedHosts};
use flux_vault::files::{read_regular, write_new};
use flux_vault::membership::{
    Envelope, HostRecord, HostsDoc, OperatorKey, open_hosts, parse_fleet_id,
};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

pub(crate) fn run(target: &Target, cmd: HostsCmd) -> Result<()> {
    match cmd {
        HostsCmd::List { json } => list(target, json),
        HostsCmd::Add {
            token,
            operator_key,
            json,
        } => add(target, &token, &operator_key, json),
        HostsCmd::RotateKey { operator_key, json } => rotate_key(target, &operator_key, json),
        HostsCmd::Assign {
            project,
            hosts,
            all,
            operator_key,
            json,
        } => {
            let on = (!all).then_some(hosts.as_slice());
            let projects: Vec<String> = project.split(',').map(|p| p.trim().to_owned()).collect();
            let change = assign(target, &projects, on, &operator_key, false)?;
            assigned(&change, json)
        }
        HostsCmd::Remove {
            resume: true, json, ..
        } => {
            let Response::HostsChanged(report) = target.control()?.call(&Request::ResumeRemoval)?
            else {
                return Err(unexpected("resume_removal"));
            };
            removed(&report, None, json)
        }
        HostsCmd::Remove {
            recipient,
            operator_key,
            json,
            ..
        } => {
            let recipient = recipient.ok_or_else(|| Failure::usage("name the host to remove"))?;
            let key = operator_key.ok_or_else(|| {
                Failure::usage(
                    "removing a host is signed with the fleet's operator key: pass --operator-key FILE (or set FLUX_OPERATOR_KEY)",
                )
            })?;
            remove(target, &recipient, &key, json)
        }
    }
}

fn unexpected(what: &str) -> Failure {
    Failure::general(format!("fluxd answered {what} with an unexpected message"))
}

/// The recipient part of a join token (`age1…:signing-key`).
fn recipient_of(token: &str) -> &str {
    token.split_once(':').map_or(token, |(r, _)| r)
}

/// Reads the operator key at `path`: a regular file no one else may read.
pub(crate) fn read_operator_key(path: &Path) -> Result<OperatorKey> {
    let bytes = read_regular(path, 64 * 1024)
        .map_err(|e| Failure::general(e.to_string()))?
        .ok_or_else(|| {
            Failure::usage(format!(
                "no operator key at {}: `fluxctl fleet init --operator-key {}` creates one for a new fleet",
                path.display(),
                path.display()
            ))
        })?;
    let mode = std::fs::metadata(path)
        .map_err(|e| Failure::general(format!("cannot read {}: {e}", path.display())))?
        .mode();
    if mode & 0o077 != 0 {
        return Err(Failure::general(format!(
            "{} is readable or writable by others (mode {:o}): an operator key must be private (chmod 600 {})",
            path.display(),
            mode & 0o777,
            path.display()
        )));
    }
    let text = zeroize::Zeroizing::new(String::from_utf8_lossy(&bytes).into_owned());
    OperatorKey::parse(&text).map_err(|e| Failure::usage(format!("{}: {e}", path.display())))
}

/// The host list the local fluxd holds, checked against `op`.
fn head(target: &Target, op: &OperatorKey) -> Result<(HostsDoc, Vec<u8>)> {
    let Response::HostsHead(head) = target.control()?.call(&Request::HostsHead)? else {
        return Err(unexpected("hosts_head"));
    };
    if head.list.is_empty() {
        return Err(Failure::general(
            "this fluxd holds no host list: found the fleet first (`fluxctl fleet init --operator-key FILE` on its first host), or wait until this host has read it from etcd",
        ));
    }
    let version = Envelope::peek_version(&head.list).map_err(Failure::general)?;
    let doc = open_hosts(&head.list, version, &op.verifying_key()).map_err(|e| {
        Failure::general(format!(
            "the host list this fluxd holds does not check against the operator key of {} ({e}): the wrong key, or a host of another fleet",
            op.fleet_id()
        ))
    })?;
    Ok((doc, head.list))
}

fn publish(target: &Target, list: Vec<u8>, id: Vec<u8>) -> Result<HostsReport> {
    let req = Request::PublishHosts(SignedHosts { list, id });
    let Response::HostsChanged(report) = target.control()?.call(&req)? else {
        return Err(unexpected("publish_hosts"));
    };
    Ok(report)
}

/// The assignments of the signed host list `list` (project → the
/// recipients serving it), checked against `fleet_id`.
pub(crate) fn assignments_in(
    fleet_id: &str,
    list: &[u8],
) -> std::result::Result<BTreeMap<String, Vec<String>>, String> {
    let pin = parse_fleet_id(fleet_id)?;
    let version = Envelope::peek_version(list)?;
    let doc = open_hosts(list, version, &pin).map_err(|e| {
        format!("the host list this fluxd holds does not check against its fleet id: {e}")
    })?;
    Ok(doc.assignments())
}

/// The assignments of the host list the local fluxd holds (empty when it
/// holds none).
pub(crate) fn assignments(
    target: &Target,
    fleet_id: Option<&str>,
) -> Result<BTreeMap<String, Vec<String>>> {
    let Some(id) = fleet_id else {
        return Ok(Default::default());
    };
    let Response::HostsHead(head) = target.control()?.call(&Request::HostsHead)? else {
        return Err(unexpected("hosts_head"));
    };
    if head.list.is_empty() {
        return Ok(Default::default());
    }
    assignments_in(id, &head.list).map_err(Failure::general)
}

fn list(target: &Target, json: bool) -> Result<()> {
    let Response::Fleet(fleet) = target.control()?.call(&Request::Fleet)? else {
        return Err(unexpected("fleet"));
    };
    let assigned = assignments(target, fleet.fleet_id.as_deref())?;
    let assigned_to = |r: &str| -> Vec<&String> {
        assigned
            .iter()
            .filter(|(_, on)| on.iter().any(|h| h == r))
            .map(|(p, _)| p)
            .collect()
    };
    if json {
        let me = fleet.this_host.as_deref();
        let hosts: Vec<_> = fleet
            .hosts
            .iter()
            .map(|t| {
                serde_json::json!({
                    "recipient": recipient_of(t),
                    "join_token": t,
                    "this_host": Some(t.as_str()) == me,
                    "assigned_projects": assigned_to(recipient_of(t)),
                })
            })
            .collect();
        return out_json(&serde_json::json!({
            "fleet_id": fleet.fleet_id,
            "this_host": me.map(recipient_of),
            "join_token": me,
            "member": fleet.member,
            "hosts_version": fleet.hosts_version,
            "hosts": hosts,
            "assigned": assigned,
            "problems": fleet.problems,
        }));
    }
    let Some(me) = fleet.this_host else {
        return out(
            "This fluxd keeps its vaults in a local folder: there is no fleet (see docs/FLEET.md to run with --store etcd).\n",
        );
    };
    let mut text = format!(
        "Fleet: {}\nThis host: {}\n",
        fleet.fleet_id.as_deref().unwrap_or("(not known yet)"),
        recipient_of(&me)
    );
    if fleet.member {
        text.push_str(&format!("  join token: {me}\n"));
    } else if fleet.fleet_id.is_none() {
        text.push_str(&format!(
            "  no fleet yet: found one here with\n    fluxctl fleet init --operator-key FILE\n  or join one: start fluxd with --fleet-id, then with the fleet's operator key run\n    fluxctl hosts add {me} --operator-key FILE\n"
        ));
    } else {
        text.push_str(&format!(
            "  not in the fleet's host list: with the fleet's operator key, run\n    fluxctl hosts add {me} --operator-key FILE\n"
        ));
    }
    text.push_str(&format!("Hosts (list version {}):\n", fleet.hosts_version));
    for h in &fleet.hosts {
        let mark = if *h == me { "  (this host)" } else { "" };
        let only = assigned_to(recipient_of(h));
        let also = if only.is_empty() {
            String::new()
        } else {
            format!(
                "  assigned: {}",
                only.iter()
                    .map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        text.push_str(&format!("  {}{mark}{also}\n", recipient_of(h)));
    }
    if !assigned.is_empty() {
        text.push_str("Projects served by some hosts only (every other project: by every host):\n");
        for (project, on) in &assigned {
            text.push_str(&format!("  {project}: {}\n", on.join(", ")));
        }
    }
    for p in &fleet.problems {
        text.push_str(&format!("{}\n", caution(p)));
    }
    out(&text)
}

fn add(target: &Target, token: &str, key: &Path, json: bool) -> Result<()> {
    let op = read_operator_key(key)?;
    let host = HostRecord::parse_join_token(token).map_err(Failure::usage)?;
    let (doc, raw) = head(target, &op)?;
    let list = match doc.hosts.iter().find(|h| h.recipient == host.recipient) {
        Some(listed) if listed.signing_key != host.signing_key => {
            return Err(Failure::usage(format!(
                "host {} is listed with another signing key: remove it first if that host's identity changed",
                host.recipient
            )));
        }
        // Listed already: publishing the held version again finishes the
        // wrapping, should an earlier `hosts add` have stopped half-way.
        Some(_) => raw,
        None => {
            let mut hosts = doc.hosts.clone();
            hosts.push(host.clone());
            op.sign_hosts(&doc.next(&raw, hosts, vec![]).map_err(Failure::general)?)
        }
    };
    let report = publish(target, list, Vec::new())?;
    if json {
        out_json(&serde_json::json!({
            "recipient": host.recipient,
            "added": true,
            "hosts_version": report.version,
            "projects": report.projects,
            "failures": report.failures,
        }))?;
    } else {
        let mut text = format!(
            "{}\nIt may now serve {} project(s){}{}\n",
            done(&format!(
                "Host added: {} (host list version {})",
                host.recipient, report.version
            )),
            report.projects.len(),
            if report.projects.is_empty() { "" } else { ": " },
            report.projects.join(", ")
        );
        for f in &report.failures {
            text.push_str(&format!("{}\n", caution(f)));
        }
        out(&text)?;
    }
    if report.failures.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(
            EXIT_UNAVAILABLE,
            format!(
                "{} project(s) were not wrapped for {}: run the same `fluxctl hosts add` again to finish",
                report.failures.len(),
                host.recipient
            ),
        ))
    }
}

/// `fluxctl hosts rotate-key`: the next host key of this host, listed
/// beside the current one (its project keys wrapped for it); fluxd takes
/// it at its next start and destroys the old one; removing the old one
/// then re-keys every project away from it.
fn rotate_key(target: &Target, key: &Path, json: bool) -> Result<()> {
    let op = read_operator_key(key)?;
    let Response::Fleet(fleet) = target.control()?.call(&Request::Fleet)? else {
        return Err(unexpected("fleet"));
    };
    let current = fleet
        .this_host
        .as_deref()
        .map(recipient_of)
        .ok_or_else(|| Failure::usage("this fluxd is not in fleet mode: there is no host key"))?
        .to_owned();
    let Response::HostKey(next) = target.control()?.call(&Request::PrepareHostKey)? else {
        return Err(unexpected("prepare_host_key"));
    };
    let host = HostRecord::parse_join_token(&next.join_token).map_err(Failure::general)?;
    let (doc, raw) = head(target, &op)?;
    let version = if doc.contains(&host.recipient) {
        doc.version
    } else {
        let mut hosts = doc.hosts.clone();
        hosts.push(host.clone());
        let mut next = doc.next(&raw, hosts, vec![]).map_err(Failure::general)?;
        // The new key serves what the current one serves.
        for (project, mut on) in next.assignments() {
            if on.contains(&current) {
                on.push(host.recipient.clone());
                next.assign(&project, &on).map_err(Failure::general)?;
            }
        }
        let report = publish(target, op.sign_hosts(&next), Vec::new())?;
        if !report.failures.is_empty() {
            return Err(Failure::new(
                EXIT_UNAVAILABLE,
                format!(
                    "the new key is listed, but {} project(s) were not wrapped for it: run `fluxctl hosts rotate-key` again",
                    report.failures.len()
                ),
            ));
        }
        report.version
    };
    if json {
        return out_json(&serde_json::json!({
            "old_recipient": current,
            "new_recipient": host.recipient,
            "hosts_version": version,
        }));
    }
    out(&format!(
        "{}\nNext, on this host:\n  1. restart fluxd (systemctl restart fluxd): it takes the new key and destroys the old one;\n  2. fluxctl hosts remove {current} --operator-key {}\n     re-keys every project away from the old key, so no copy of it opens a value set afterwards.\n",
        done(&format!(
            "New host key listed: {} (host list version {version}); this host's project keys are wrapped for it",
            host.recipient
        )),
        key.display()
    ))
}

fn remove(target: &Target, recipient: &str, key: &Path, json: bool) -> Result<()> {
    let op = read_operator_key(key)?;
    let recipient = recipient_of(recipient.trim()).to_owned();
    let Response::Fleet(fleet) = target.control()?.call(&Request::Fleet)? else {
        return Err(unexpected("fleet"));
    };
    if fleet.this_host.as_deref().map(recipient_of) == Some(recipient.as_str()) {
        return Err(Failure::usage(
            "this is this host's own recipient: remove a host from another host of the fleet (this one re-keys the projects, so it must stay listed)",
        ));
    }
    let (doc, raw) = head(target, &op)?;
    if !doc.contains(&recipient) {
        return Err(Failure::usage(format!(
            "{recipient} is not in the fleet's host list (version {}){}",
            doc.version,
            if doc.removed.contains(&recipient) {
                "; it was removed by that version: `fluxctl hosts remove --resume` finishes re-keying if it was interrupted"
            } else {
                ""
            }
        )));
    }
    let hosts = doc
        .hosts
        .iter()
        .filter(|h| h.recipient != recipient)
        .cloned()
        .collect();
    let next = doc
        .next(&raw, hosts, vec![recipient.clone()])
        .map_err(Failure::general)?;
    next.check()
        .map_err(|e| Failure::usage(format!("{recipient} cannot be removed yet: {e}")))?;
    // The same host list signs to the same bytes: a removal whose answer
    // was lost is finished by --resume, or written again by running this.
    let report = publish(target, op.sign_hosts(&next), Vec::new()).map_err(|mut f| {
        if f.exit == EXIT_UNAVAILABLE {
            f.message.push_str(&format!(
                "\nOnce etcd answers: `fluxctl hosts remove --resume` finishes the removal if its host list (version {}) landed; otherwise run this command again",
                next.version
            ));
        }
        f
    })?;
    removed(&report, Some(&recipient), json)
}

/// Prints what a removal (or its resumption) did; fails (exit 6) while a
/// removed host may still open some project's key.
fn removed(report: &HostsReport, recipient: Option<&str>, json: bool) -> Result<()> {
    let who = match recipient {
        Some(r) => r.to_owned(),
        None if report.removed.is_empty() => "no host".to_owned(),
        None => report.removed.join(", "),
    };
    let total = report.projects.len() + report.pending.len();
    let complete = report.pending.is_empty();
    if json {
        out_json(&serde_json::json!({
            "removed": report.removed,
            "hosts_version": report.version,
            "rekeyed_projects": report.projects,
            "pending_projects": report.pending,
            "failures": report.failures,
            "complete": complete,
        }))?;
    } else {
        let mut text = String::new();
        if let Some(r) = recipient {
            text.push_str(&format!(
                "{}\n",
                done(&format!(
                    "Host removed from the host list: {r} (version {})",
                    report.version
                ))
            ));
        }
        if complete {
            if !report.projects.is_empty() {
                text.push_str(&format!(
                    "Re-keyed {} project(s): {}\n",
                    report.projects.len(),
                    report.projects.join(", ")
                ));
            }
            text.push_str(&format!(
                "{who} is locked out: no project key it holds opens a value set from now on.\n{}\n{}\n",
                caution(
                    "It saw the values it served before its removal: rotate them at their provider (`fluxctl secrets set NAME` with the new value)."
                ),
                caution(
                    "Revoke its etcd access too: `etcdctl user delete <its etcd user>` (each host its own etcd user: docs/FLEET.md), and its client certificate at your CA."
                )
            ));
        } else {
            for f in &report.failures {
                text.push_str(&format!("{}\n", caution(f)));
            }
        }
        out(&text)?;
    }
    if complete {
        return Ok(());
    }
    Err(Failure::new(
        EXIT_UNAVAILABLE,
        format!(
            "{} of {total} project(s) re-keyed; {} still have a key {who} can open ({}): `fluxctl hosts remove --resume` finishes",
            report.projects.len(),
            report.pending.len(),
            report.pending.join(", ")
        ),
    ))
}

/// `fluxctl fleet init`: the operator key (created, or the one at `path`
/// reused), and — unless `key_only` — a new fleet founded with this host as
/// its first host.
pub(crate) fn init(target: &Target, path: &Path, key_only: bool, json: bool) -> Result<()> {
    let (op, created) = if path.exists() {
        (read_operator_key(path)?, false)
    } else {
        let op = OperatorKey::generate();
        let stamp = flux_vault::time::created_stamp();
        write_new(path, op.to_file_contents(&stamp).as_bytes(), 0o600)
            .map_err(|e| Failure::general(e.to_string()))?;
        (op, true)
    };
    let fleet = op.fleet_id();
    let mut founded = false;
    if !key_only {
        let Response::Fleet(info) = target.control()?.call(&Request::Fleet)? else {
            return Err(unexpected("fleet"));
        };
        let Some(token) = info.this_host else {
            return Err(Failure::usage(format!(
                "this fluxd keeps its vaults in a local folder: start it in fleet mode (--store etcd --etcd-endpoints …) and run this again (the operator key {} is kept)",
                path.display()
            )));
        };
        if info.hosts_version > 0 {
            return Err(Failure::usage(format!(
                "this host already belongs to fleet {} (host list version {}): a fleet is founded once",
                info.fleet_id.unwrap_or_default(),
                info.hosts_version
            )));
        }
        let me = HostRecord::parse_join_token(&token).map_err(Failure::general)?;
        let v1 = HostsDoc {
            fleet: fleet.clone(),
            version: 1,
            previous: String::new(),
            hosts: vec![me],
            removed: Vec::new(),
            assigned: Default::default(),
            oldest: 0,
            notices: false,
        };
        publish(target, op.sign_hosts(&v1), op.sign_id())?;
        founded = true;
    }
    if json {
        return out_json(&serde_json::json!({
            "fleet_id": fleet,
            "operator_key": path.display().to_string(),
            "created": created,
            "founded": founded,
        }));
    }
    let mut text = String::new();
    text.push_str(&format!(
        "{} {}\n",
        if created {
            "Operator key written to"
        } else {
            "Operator key read from"
        },
        path.display()
    ));
    if founded {
        text.push_str(&format!("{}\n", done(&format!("Fleet founded: {fleet}"))));
    } else {
        text.push_str(&format!("Fleet id: {fleet}\n"));
    }
    text.push_str(&format!(
        "Start every other host with --fleet-id {fleet}, then add it with\n  fluxctl hosts add <its join token> --operator-key {}\n{}\n",
        path.display(),
        caution(
            "The operator key alone adds and removes hosts: keep it off the fleet's hosts (bring it for a membership change, then take it away)."
        )
    ));
    out(&text)
}

/// What `hosts assign` changed.
pub(crate) struct Assigned {
    projects: Vec<String>,
    /// The hosts that serve them now (`None`: every host).
    on: Option<Vec<String>>,
    /// The hosts that stopped serving each project.
    lost: BTreeMap<String, Vec<String>>,
    report: HostsReport,
}

/// `fluxctl projects create P --hosts …`: assigns a project that does not
/// exist yet, before it is created (so its key is wrapped for its hosts
/// only from the start).
pub(crate) fn assign_new(
    target: &Target,
    project: &str,
    hosts: &[String],
    key: &Path,
) -> Result<()> {
    let change = assign(target, &[project.to_owned()], Some(hosts), key, true)?;
    if change.report.failures.is_empty() {
        return Ok(());
    }
    Err(Failure::new(
        EXIT_UNAVAILABLE,
        format!(
            "the assignment of {project} was published, but: {}",
            change.report.failures.join("; ")
        ),
    ))
}

/// Signs the next host list with `projects` served by `hosts` (`None`:
/// every host) and publishes it through the local fluxd. A project the
/// local fluxd holds must stay on it (it wraps the key for the hosts that
/// gain the project and re-keys it away from those that lose it); one it
/// does not hold must exist nowhere yet (assigned to no host, or to this
/// one), or `new` (`projects create --hosts`) be given with this host
/// among `hosts`.
fn assign(
    target: &Target,
    projects: &[String],
    hosts: Option<&[String]>,
    key: &Path,
    new: bool,
) -> Result<Assigned> {
    if projects.is_empty() {
        return Err(Failure::usage("name the project(s) to assign"));
    }
    for p in projects {
        validate_project_name(p).map_err(|e| Failure::usage(e.to_string()))?;
    }
    let op = read_operator_key(key)?;
    let Response::Fleet(fleet) = target.control()?.call(&Request::Fleet)? else {
        return Err(unexpected("fleet"));
    };
    let me = fleet
        .this_host
        .as_deref()
        .map(recipient_of)
        .ok_or_else(|| {
            Failure::usage(
                "this fluxd keeps its vaults in a local folder: projects are assigned to hosts in fleet mode only",
            )
        })?
        .to_owned();
    let held: Vec<String> = target
        .control()?
        .list_projects()?
        .into_iter()
        .map(|p| p.name)
        .collect();
    let (doc, raw) = head(target, &op)?;
    let serving = |d: &HostsDoc, project: &str| -> Vec<String> {
        d.hosts
            .iter()
            .filter(|h| d.serves(&h.recipient, project))
            .map(|h| h.recipient.clone())
            .collect()
    };
    let on = match hosts {
        None => None,
        Some([]) => {
            return Err(Failure::usage(
                "name the hosts that serve the project(s), or pass --all for every host",
            ));
        }
        Some(names) => {
            let mut on: Vec<String> = Vec::new();
            for name in names {
                let r = recipient_of(name.trim()).to_owned();
                if !doc.contains(&r) {
                    return Err(Failure::usage(format!(
                        "{r} is not in the fleet's host list (version {}): add it first with `fluxctl hosts add`",
                        doc.version
                    )));
                }
                if !on.contains(&r) {
                    on.push(r);
                }
            }
            Some(on)
        }
    };
    let keeps_me = on.as_ref().is_none_or(|on| on.contains(&me));
    let mut next = doc
        .next(&raw, doc.hosts.clone(), vec![])
        .map_err(Failure::general)?;
    let mut lost = BTreeMap::new();
    for project in projects {
        let before = serving(&doc, project);
        if new && (doc.assigned.contains_key(project) || held.contains(project)) {
            return Err(Failure::usage(format!(
                "project {project} exists already: choose its hosts with `fluxctl hosts assign {project} HOST…`"
            )));
        }
        if (new || held.contains(project)) && !keeps_me {
            return Err(Failure::usage(format!(
                "this host ({me}) would not serve {project}: run this on a host that keeps it{}, which wraps its key for the others and re-keys it",
                on.as_ref()
                    .map(|on| format!(" ({})", on.join(", ")))
                    .unwrap_or_default()
            )));
        }
        if !new && !held.contains(project) && !before.contains(&me) {
            return Err(Failure::usage(format!(
                "this host ({me}) does not serve {project}: run this on one of its hosts ({}), which holds its key",
                before.join(", ")
            )));
        }
        match &on {
            Some(on) => next.assign(project, on).map_err(Failure::general)?,
            None => {
                next.assigned.remove(project);
            }
        }
        let after = serving(&next, project);
        let gone: Vec<String> = before.into_iter().filter(|r| !after.contains(r)).collect();
        if !gone.is_empty() {
            lost.insert(project.clone(), gone);
        }
    }
    next.check().map_err(Failure::usage)?;
    // Unchanged: publishing the held version again finishes its wrapping
    // and re-keying, should an earlier run have stopped half-way.
    let list = if next.assigned == doc.assigned {
        raw
    } else {
        op.sign_hosts(&next)
    };
    let report = publish(target, list, Vec::new())?;
    Ok(Assigned {
        projects: projects.to_vec(),
        on,
        lost,
        report,
    })
}

/// Prints what `hosts assign` did; fails (exit 6) while a host that lost
/// a project may still open its key, or a host that gained one has none.
fn assigned(change: &Assigned, json: bool) -> Result<()> {
    let Assigned {
        projects,
        on,
        lost,
        report,
    } = change;
    let pending: Vec<&String> = projects
        .iter()
        .filter(|p| report.pending.contains(p))
        .collect();
    if json {
        out_json(&serde_json::json!({
            "projects": projects,
            "hosts": on,
            "hosts_version": report.version,
            "lost": lost,
            "pending": pending,
            "failures": report.failures,
            "complete": pending.is_empty() && report.failures.is_empty(),
        }))?;
    } else {
        let names = projects.join(", ");
        let mut text = format!(
            "{}\n",
            done(&match on {
                Some(on) => format!(
                    "{names}: served by {} host(s) (host list version {}): {}",
                    on.len(),
                    report.version,
                    on.join(", ")
                ),
                None => format!(
                    "{names}: served by every host (host list version {})",
                    report.version
                ),
            })
        );
        for (project, gone) in lost.iter().filter(|(p, _)| !pending.contains(p)) {
            text.push_str(&format!(
                "Re-keyed {project}: {} dropped it, and no key they hold opens a value set from now on.\n",
                gone.join(", ")
            ));
        }
        for f in &report.failures {
            text.push_str(&format!("{}\n", caution(f)));
        }
        out(&text)?;
    }
    if !pending.is_empty() {
        return Err(Failure::new(
            EXIT_UNAVAILABLE,
            format!(
                "not re-keyed yet: {} (a host that lost it may still open its key); `fluxctl hosts remove --resume` finishes",
                pending
                    .iter()
                    .map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    if !report.failures.is_empty() {
        return Err(Failure::new(
            EXIT_UNAVAILABLE,
            "not every host that gained a project got its key: run the same `fluxctl hosts assign` again to finish",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flux_vault::membership::key_text;

    #[test]
    fn assignments_are_read_from_a_list_only_under_its_fleet_id() {
        let op = OperatorKey::generate();
        let host = |r: &str| HostRecord {
            recipient: r.into(),
            signing_key: key_text(&OperatorKey::generate().verifying_key()),
        };
        let mut doc = HostsDoc {
            fleet: op.fleet_id(),
            version: 1,
            previous: String::new(),
            hosts: vec![host("age1a"), host("age1b")],
            removed: vec![],
            assigned: Default::default(),
            oldest: 0,
            notices: false,
        };
        doc.assign("api", &["age1b".into()]).unwrap();
        let raw = op.sign_hosts(&doc);
        let got = assignments_in(&op.fleet_id(), &raw).unwrap();
        assert_eq!(got["api"], ["age1b"]);
        let other = OperatorKey::generate().fleet_id();
        assert!(
            assignments_in(&other, &raw)
                .unwrap_err()
                .contains("does not check")
        );
    }
}
