//! `fluxctl hosts list`: the fleet's id, this host's join token, the hosts
//! of the held list and the projects assigned to some of them.

use super::assign::assignments;
use super::signed::{fleet_info, recipient_of};
use crate::failure::Result;
use crate::style::caution;
use crate::target::Target;
use crate::{out, out_json};

pub(super) fn list(target: &Target, json: bool) -> Result<()> {
    let fleet = fleet_info(target)?;
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
