//! `fluxctl hosts add / rotate-key / remove`: the next host list signed
//! with a host added, this host's next key listed beside its current one,
//! or a host removed — and what fluxd reports of the wrapping and re-keying
//! that follows.

use super::signed::{fleet_info, head, publish, read_operator_key, recipient_of};
use crate::failure::{EXIT_UNAVAILABLE, Failure, Result};
use crate::style::{caution, done};
use crate::target::Target;
use crate::{out, out_json};
use flux_protocol::message::{HostsReport, Request, RequestKind, Response};
use flux_vault::membership::HostRecord;
use std::path::Path;

pub(super) fn add(target: &Target, token: &str, key: &Path, json: bool) -> Result<()> {
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
pub(super) fn rotate_key(target: &Target, key: &Path, json: bool) -> Result<()> {
    let op = read_operator_key(key)?;
    let fleet = fleet_info(target)?;
    let current = fleet
        .this_host
        .as_deref()
        .map(recipient_of)
        .ok_or_else(|| Failure::usage("this fluxd is not in fleet mode: there is no host key"))?
        .to_owned();
    let Response::HostKey(next) = target.control()?.call(&Request::PrepareHostKey)? else {
        return Err(Failure::unexpected(RequestKind::PrepareHostKey));
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

pub(super) fn remove(target: &Target, recipient: &str, key: &Path, json: bool) -> Result<()> {
    let op = read_operator_key(key)?;
    let recipient = recipient_of(recipient.trim()).to_owned();
    let fleet = fleet_info(target)?;
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
pub(super) fn removed(report: &HostsReport, recipient: Option<&str>, json: bool) -> Result<()> {
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
