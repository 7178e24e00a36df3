//! What the host lists took away, project by project: each list that
//! removes a host or narrows a project's assignment is noted
//! ([`Cache::revoked_at`]), and a project keyed before it waits to be
//! re-keyed ([`Cache::pending_rekeys`]) — by its designated host unasked
//! ([`Cache::designated_rekeys`]).

use super::Cache;
use super::host_list::{HostList, designated_host};
use std::collections::BTreeSet;

impl Cache {
    /// Projects whose key is older than the last host list that took a
    /// host away from them (a removal, or an assignment without it): that
    /// host may hold their key until they are re-keyed.
    pub fn pending_rekeys(&self) -> Vec<String> {
        self.keys
            .iter()
            .filter(|(p, h)| h.epoch < self.revoked_version(p))
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// The pending re-keys this host takes on by itself, without being
    /// asked: the projects it is the designated host of
    /// ([`designated_host`]), so that every host re-keys its share of a
    /// removal at once and no two race for one project.
    pub fn designated_rekeys(&self) -> Vec<String> {
        let Some(list) = self.host_list().filter(|l| l.contains(&self.me)) else {
            return Vec::new();
        };
        self.pending_rekeys()
            .into_iter()
            .filter(|p| designated_host(p, list).is_some_and(|h| h == self.me))
            .collect()
    }

    /// The newest host list version that took a host away from `project`
    /// (0: none), and the hosts it took away since.
    pub fn revoked_at(&self, project: &str) -> (u64, BTreeSet<String>) {
        let (version, hosts) = self.revocations(project);
        let hosts: BTreeSet<String> = hosts.cloned().collect();
        if hosts.is_empty() {
            return (0, hosts);
        }
        (version, hosts)
    }

    /// [`Self::revoked_at`]'s version alone, without collecting the hosts:
    /// what [`Self::pending_rekeys`] compares every key's epoch with.
    fn revoked_version(&self, project: &str) -> u64 {
        let (version, mut hosts) = self.revocations(project);
        if hosts.next().is_some() { version } else { 0 }
    }

    /// The newest host list version that took a host away from `project`,
    /// and the hosts taken away since that do not serve it again (a host
    /// given the project back is owed no new key; they may repeat).
    fn revocations<'a>(&'a self, project: &'a str) -> (u64, impl Iterator<Item = &'a String>) {
        let list = self.host_list();
        let assigned = list.is_some_and(|l| l.assigned.contains_key(project));
        let removal = self.removal.as_ref().filter(|_| !assigned);
        let revoked = self.revoked.get(project);
        let version = removal
            .map_or(0, |(v, _)| *v)
            .max(revoked.map_or(0, |(v, _)| *v));
        let hosts = removal
            .into_iter()
            .flat_map(|(_, hosts)| hosts.iter())
            .chain(revoked.into_iter().flat_map(|(_, hosts)| hosts.iter()))
            .filter(move |r| !list.is_some_and(|l| l.serves(r, project)));
        (version, hosts)
    }

    /// Notes what the host list `new` takes away from the one before it,
    /// `prev`, project by project ([`Self::revoked`]; a removal of a host
    /// is [`Self::removal`] for the projects assigned to no host in
    /// particular).
    pub(super) fn note_list(&mut self, prev: Option<&HostList>, new: &HostList) {
        if !new.removed.is_empty() && self.removal.as_ref().is_none_or(|(v, _)| *v < new.version) {
            self.removal = Some((new.version, new.removed.clone()));
        }
        // Against the list held before: the one before it, or — after a
        // starting point past retired versions — an older one, whose hosts
        // missing from the new list were removed in between.
        let Some(prev) = prev.filter(|p| p.version < new.version) else {
            return;
        };
        let gone: Vec<String> = prev
            .hosts
            .iter()
            .filter(|h| !new.contains(&h.recipient))
            .map(|h| h.recipient.clone())
            .collect();
        if prev.version.saturating_add(1) < new.version
            && !gone.is_empty()
            && self.removal.as_ref().is_none_or(|(v, _)| *v < new.version)
        {
            self.removal = Some((new.version, gone));
        }
        let named: BTreeSet<&String> = prev.assigned.keys().chain(new.assigned.keys()).collect();
        for project in named {
            let lost: BTreeSet<String> = prev
                .recipients_of(project)
                .difference(&new.recipients_of(project))
                .cloned()
                .collect();
            let entry = self.revoked.entry(project.clone()).or_default();
            // Assigned from now on: a removal while it was not still
            // applies to its key.
            if !prev.assigned.contains_key(project)
                && let Some((v, hosts)) = &self.removal
                && *v < new.version
            {
                entry.0 = entry.0.max(*v);
                entry.1.extend(hosts.iter().cloned());
            }
            if !lost.is_empty() {
                entry.0 = new.version;
                entry.1.extend(lost);
            }
            if entry.0 == 0 {
                self.revoked.remove(project);
            }
        }
    }
}
