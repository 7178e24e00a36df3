//! Projects assigned to hosts: `fluxctl hosts assign` and
//! `projects create --hosts` sign the next host list with a project served
//! by some hosts only (or by every host again), and the assignments of a
//! held list are read back for `hosts list`, `projects list` and the
//! dashboard.

use super::signed::{fleet_info, head, held_list, publish, read_operator_key, recipient_of};
use crate::failure::{EXIT_UNAVAILABLE, Failure, Result};
use crate::style::{caution, done};
use crate::target::Target;
use crate::{out, out_json};
use flux_protocol::limits::validate_project_name;
use flux_protocol::message::HostsReport;
use flux_vault::membership::{Envelope, HostsDoc, open_hosts, parse_fleet_id};
use std::collections::BTreeMap;
use std::path::Path;

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
    let list = held_list(target)?;
    if list.is_empty() {
        return Ok(Default::default());
    }
    assignments_in(id, &list).map_err(Failure::general)
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
pub(super) fn assign(
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
    let fleet = fleet_info(target)?;
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
pub(super) fn assigned(change: &Assigned, json: bool) -> Result<()> {
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
    use flux_vault::membership::{HostRecord, OperatorKey, key_text};

    #[test]
    fn assignments_are_read_from_a_list_only_under_its_fleet_id() {
        let op = OperatorKey::generate();
        let host = |r: &str| HostRecord {
            recipient: r.into(),
            signing_key: key_text(&OperatorKey::generate().verifying_key()),
        };
        let mut doc = HostsDoc::first(op.fleet_id(), vec![host("age1a"), host("age1b")]);
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
