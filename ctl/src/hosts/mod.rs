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
//!
//! One file per concern: the operator key and the signed host list as the
//! local fluxd holds and publishes it (`signed.rs`), `hosts list`
//! (`list.rs`), adding, re-keying and removing hosts (`members.rs`),
//! assigning projects to hosts (`assign.rs`) and founding the fleet
//! (`init.rs`).

mod assign;
mod init;
mod list;
mod members;
mod signed;

pub(crate) use assign::{assign_new, assignments, assignments_in};
pub(crate) use init::init;

use crate::HostsCmd;
use crate::failure::{Failure, Result};
use crate::target::Target;
use flux_protocol::message::{Request, RequestKind, Response};

pub(crate) fn run(target: &Target, cmd: HostsCmd) -> Result<()> {
    match cmd {
        HostsCmd::List { json } => list::list(target, json),
        HostsCmd::Add {
            token,
            operator_key,
            json,
        } => members::add(target, &token, &operator_key, json),
        HostsCmd::RotateKey { operator_key, json } => {
            members::rotate_key(target, &operator_key, json)
        }
        HostsCmd::Assign {
            project,
            hosts,
            all,
            operator_key,
            json,
        } => {
            let on = (!all).then_some(hosts.as_slice());
            let projects: Vec<String> = project.split(',').map(|p| p.trim().to_owned()).collect();
            let change = assign::assign(target, &projects, on, &operator_key, false)?;
            assign::assigned(&change, json)
        }
        HostsCmd::Remove {
            resume: true, json, ..
        } => {
            let Response::HostsChanged(report) = target.control()?.call(&Request::ResumeRemoval)?
            else {
                return Err(Failure::unexpected(RequestKind::ResumeRemoval));
            };
            members::removed(&report, None, json)
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
            members::remove(target, &recipient, &key, json)
        }
    }
}
