//! `fluxctl fleet init`: the fleet's operator key, created or reused, and
//! the fleet founded with this host as the only host of version 1 of its
//! host list.

use super::signed::{fleet_info, publish, read_operator_key};
use crate::failure::{Failure, Result};
use crate::style::{caution, done};
use crate::target::Target;
use crate::{out, out_json};
use flux_vault::files::write_new;
use flux_vault::membership::{HostRecord, HostsDoc, OperatorKey};
use std::path::Path;

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
        let info = fleet_info(target)?;
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
        let v1 = HostsDoc::first(fleet.clone(), vec![me]);
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
