//! `fluxctl hosts list / add / remove`: the hosts of a fleet (fluxd
//! `--store etcd`, see `docs/FLEET.md`), through the local daemon, which
//! holds the project keys it wraps for a new host.

use crate::failure::{Failure, Result};
use crate::style::{caution, done};
use crate::target::Target;
use crate::{HostsCmd, out, out_json};
use flux_protocol::message::{HostRecipient, Request, Response};

pub(crate) fn run(target: &Target, cmd: HostsCmd) -> Result<()> {
    match cmd {
        HostsCmd::List { json } => list(target, json),
        HostsCmd::Add { recipient, json } => add(target, recipient, json),
        HostsCmd::Remove { recipient, json } => remove(target, recipient, json),
    }
}

fn unexpected(what: &str) -> Failure {
    Failure::general(format!("fluxd answered {what} with an unexpected message"))
}

fn list(target: &Target, json: bool) -> Result<()> {
    let Response::Hosts(list) = target.control()?.call(&Request::ListHosts)? else {
        return Err(unexpected("list_hosts"));
    };
    if json {
        return out_json(&serde_json::json!({ "this_host": list.this_host, "hosts": list.hosts }));
    }
    let Some(me) = list.this_host else {
        return out(
            "This fluxd keeps its vaults in a local folder: there is no fleet (see docs/FLEET.md to run with --store etcd).\n",
        );
    };
    let mut text = format!("This host: {me}\n");
    if !list.hosts.contains(&me) {
        text.push_str(&format!(
            "  not in the fleet yet: on a host that serves the projects, run `fluxctl hosts add {me}`\n"
        ));
    }
    text.push_str("Hosts:\n");
    for h in &list.hosts {
        let mark = if *h == me { "  (this host)" } else { "" };
        text.push_str(&format!("  {h}{mark}\n"));
    }
    out(&text)
}

fn add(target: &Target, recipient: String, json: bool) -> Result<()> {
    let req = Request::AddHost(HostRecipient { recipient });
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
