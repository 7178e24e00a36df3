//! `fluxctl hosts list / add / remove`: the hosts of a fleet (fluxd
//! `--store etcd`, see `docs/FLEET.md`), through the local daemon, which
//! holds the project keys it wraps for a new host and signs the host list.

use crate::failure::{Failure, Result};
use crate::style::{caution, done};
use crate::target::Target;
use crate::{HostsCmd, out, out_json};
use flux_protocol::message::{HostRecipient, Request, Response};

pub(crate) fn run(target: &Target, cmd: HostsCmd) -> Result<()> {
    match cmd {
        HostsCmd::List { json } => list(target, json),
        HostsCmd::Add { token, json } => add(target, token, json),
        HostsCmd::Remove { recipient, json } => remove(target, recipient, json),
    }
}

fn unexpected(what: &str) -> Failure {
    Failure::general(format!("fluxd answered {what} with an unexpected message"))
}

/// The recipient part of a join token (`age1…:signing-key`).
fn recipient_of(token: &str) -> &str {
    token.split_once(':').map_or(token, |(r, _)| r)
}

fn list(target: &Target, json: bool) -> Result<()> {
    let Response::Fleet(fleet) = target.control()?.call(&Request::Fleet)? else {
        return Err(unexpected("fleet"));
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
    } else {
        text.push_str(&format!(
            "  not in the fleet yet: on a host of the fleet, run\n    fluxctl hosts add {me}\n"
        ));
    }
    text.push_str(&format!("Hosts (list version {}):\n", fleet.hosts_version));
    for h in &fleet.hosts {
        let mark = if *h == me { "  (this host)" } else { "" };
        text.push_str(&format!("  {}{mark}\n", recipient_of(h)));
    }
    for p in &fleet.problems {
        text.push_str(&format!("{}\n", caution(p)));
    }
    out(&text)
}

fn add(target: &Target, token: String, json: bool) -> Result<()> {
    let req = Request::AddHost(HostRecipient { recipient: token });
    let Response::HostUpdated(update) = target.control()?.call(&req)? else {
        return Err(unexpected("add_host"));
    };
    if json {
        return out_json(&serde_json::json!({
            "recipient": update.recipient,
            "added": true,
            "projects": update.projects,
        }));
    }
    out(&format!(
        "{}\nIt may now serve {} project(s){}{}\n",
        done(&format!("Host added: {}", update.recipient)),
        update.projects.len(),
        if update.projects.is_empty() { "" } else { ": " },
        update.projects.join(", ")
    ))
}

fn remove(target: &Target, recipient: String, json: bool) -> Result<()> {
    let req = Request::RemoveHost(HostRecipient { recipient });
    let Response::HostUpdated(update) = target.control()?.call(&req)? else {
        return Err(unexpected("remove_host"));
    };
    if json {
        return out_json(&serde_json::json!({
            "recipient": update.recipient,
            "removed": true,
            "rekeyed_projects": update.projects,
        }));
    }
    let mut text = format!("{}\n", done(&format!("Host removed: {}", update.recipient)));
    if !update.projects.is_empty() {
        text.push_str(&format!(
            "Projects re-keyed so it cannot read new vaults: {}\n{}\n",
            update.projects.join(", "),
            caution(
                "That host already saw the values of these projects: rotate them (`fluxctl secrets set NAME` on each, with a new value at the provider)."
            )
        ));
    }
    out(&text)
}
