//! One version of the fleet's host list as the cache holds it
//! ([`HostList`]): who is listed, who serves which project, and which host
//! re-keys a project a list took a host away from ([`designated_host`]).

use crate::fleet::identity::HostRecord;
use ed25519_dalek::VerifyingKey;
use flux_vault::membership::{HostsDoc, serves};
use std::collections::{BTreeMap, BTreeSet};

/// The fleet's hosts at one version of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostList {
    pub version: u64,
    pub hosts: Vec<HostRecord>,
    /// The recipients this version removed (empty for most versions).
    pub removed: Vec<String>,
    /// Projects served by some hosts only (see [`HostsDoc::assigned`]).
    pub assigned: BTreeMap<String, Vec<String>>,
    /// The oldest version kept ([`HostsDoc::oldest`]).
    pub oldest: u64,
    /// Sets reach a project's other hosts as notices
    /// ([`HostsDoc::notices`]; on wherever projects are assigned).
    pub notices: bool,
}

impl HostList {
    pub fn from_doc(doc: HostsDoc) -> Self {
        Self {
            assigned: doc.assignments(),
            oldest: doc.oldest,
            notices: doc.notices || !doc.assigned.is_empty(),
            version: doc.version,
            hosts: doc.hosts,
            removed: doc.removed,
        }
    }

    /// True when `recipient` serves `project` under this list.
    pub fn serves(&self, recipient: &str, project: &str) -> bool {
        serves(&self.hosts, &self.assigned, recipient, project)
    }

    /// The hosts that serve `project` under this list, in list order.
    pub(super) fn serving_iter<'a>(
        &'a self,
        project: &'a str,
    ) -> impl Iterator<Item = &'a HostRecord> {
        self.hosts
            .iter()
            .filter(move |h| self.serves(&h.recipient, project))
    }

    /// The hosts that serve `project` under this list.
    pub fn serving(&self, project: &str) -> Vec<HostRecord> {
        self.serving_iter(project).cloned().collect()
    }

    /// The recipients of the hosts that serve `project`.
    pub(super) fn recipients_of(&self, project: &str) -> BTreeSet<String> {
        self.serving_iter(project)
            .map(|h| h.recipient.clone())
            .collect()
    }

    /// The signing key of the host with this recipient.
    pub fn key_of(&self, recipient: &str) -> Option<VerifyingKey> {
        self.hosts
            .iter()
            .find(|h| h.recipient == recipient)
            .and_then(|h| h.verifying_key().ok())
    }

    /// True when the host is listed.
    pub fn contains(&self, recipient: &str) -> bool {
        self.hosts.iter().any(|h| h.recipient == recipient)
    }
}

/// The host that re-keys `project` when a host list takes a host away
/// from it: an assigned project's first host in the list; for a project
/// every host serves, one picked by the project's name (the first eight
/// bytes of its SHA-256, modulo the hosts), so that the projects spread
/// evenly over the hosts.
pub fn designated_host<'a>(project: &'a str, list: &'a HostList) -> Option<&'a str> {
    let serving: Vec<&HostRecord> = list.serving_iter(project).collect();
    if serving.is_empty() {
        return None;
    }
    let at = if list.assigned.contains_key(project) {
        0
    } else {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(project.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        (u64::from_be_bytes(first) % serving.len() as u64) as usize
    };
    Some(serving[at].recipient.as_str())
}
