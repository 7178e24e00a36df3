//! The operator key and the signed host list as the local fluxd holds it:
//! reading the key (a private file), fetching the held list and checking
//! it against the key, publishing the next one, and the fleet as fluxd
//! reports it. Every host command goes through these.

use crate::failure::{Failure, Result};
use crate::target::Target;
use flux_protocol::message::{FleetInfo, HostsReport, Request, RequestKind, Response, SignedHosts};
use flux_vault::files::read_regular;
use flux_vault::membership::{Envelope, HostsDoc, OperatorKey, open_hosts};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The fleet as the local fluxd sees it.
pub(super) fn fleet_info(target: &Target) -> Result<FleetInfo> {
    let Response::Fleet(fleet) = target.control()?.call(&Request::Fleet)? else {
        return Err(Failure::unexpected(RequestKind::Fleet));
    };
    Ok(fleet)
}

/// The signed host list the local fluxd holds (empty when it holds none),
/// not yet checked.
pub(super) fn held_list(target: &Target) -> Result<Vec<u8>> {
    let Response::HostsHead(head) = target.control()?.call(&Request::HostsHead)? else {
        return Err(Failure::unexpected(RequestKind::HostsHead));
    };
    Ok(head.list)
}

/// The recipient part of a join token (`age1…:signing-key`).
pub(super) fn recipient_of(token: &str) -> &str {
    token.split_once(':').map_or(token, |(r, _)| r)
}

/// Reads the operator key at `path`: a regular file no one else may read.
pub(super) fn read_operator_key(path: &Path) -> Result<OperatorKey> {
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
pub(super) fn head(target: &Target, op: &OperatorKey) -> Result<(HostsDoc, Vec<u8>)> {
    let list = held_list(target)?;
    if list.is_empty() {
        return Err(Failure::general(
            "this fluxd holds no host list: found the fleet first (`fluxctl fleet init --operator-key FILE` on its first host), or wait until this host has read it from etcd",
        ));
    }
    let version = Envelope::peek_version(&list).map_err(Failure::general)?;
    let doc = open_hosts(&list, version, &op.verifying_key()).map_err(|e| {
        Failure::general(format!(
            "the host list this fluxd holds does not check against the operator key of {} ({e}): the wrong key, or a host of another fleet",
            op.fleet_id()
        ))
    })?;
    Ok((doc, list))
}

pub(super) fn publish(target: &Target, list: Vec<u8>, id: Vec<u8>) -> Result<HostsReport> {
    let req = Request::PublishHosts(SignedHosts { list, id });
    let Response::HostsChanged(report) = target.control()?.call(&req)? else {
        return Err(Failure::unexpected(RequestKind::PublishHosts));
    };
    Ok(report)
}
