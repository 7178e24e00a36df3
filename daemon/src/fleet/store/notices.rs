//! What this host watches, and the notices that tell a project's other
//! hosts of a set once the host list turns them on
//! ([`FleetStore::notice_puts`]), with the compare that keeps a write from
//! going out under an older host list ([`FleetStore::no_newer_list`]).

use super::*;

impl FleetStore {
    /// What this host watches, one watch each: the fleet id, host lists and
    /// deletions (every key of `/flux/v3/fleet/` before the vaults); the
    /// vaults (their deletions only once the host list turned notices on);
    /// and its own prefix under `/flux/v3/keys/` (its keys and notices).
    pub fn watched(&self) -> [Watched; 3] {
        let vaults = Watched::prefix(VAULTS);
        [
            Watched::between(FLEET, VAULTS),
            if self.notices() {
                vaults.deletions()
            } else {
                vaults
            },
            Watched::prefix(&keys_of(&self.me)),
        ]
    }

    /// True when sets reach this host as notices (the held host list turned
    /// them on: [`crate::fleet::cache::HostList::notices`]): its watch of
    /// the vaults is sent their deletions only.
    pub fn notices(&self) -> bool {
        self.cache().host_list().is_some_and(|l| l.notices)
    }

    /// The notices of a write of `project`'s vault at `version`, for the
    /// project's hosts under `list` but this one — when `list` turned
    /// notices on; none otherwise (every host watches the vaults).
    pub(in crate::fleet) fn notice_puts(
        &self,
        list: &crate::fleet::cache::HostList,
        project: &str,
        version: u64,
    ) -> Vec<Op> {
        if !list.notices {
            return Vec::new();
        }
        list.serving(project)
            .iter()
            .filter(|h| h.recipient != self.me)
            .map(|h| {
                Op::put(
                    &Notice::new(&h.recipient, project).to_string(),
                    version.to_string().as_bytes(),
                )
            })
            .collect()
    }

    /// Deletes `project`'s notices for `hosts` (when `list` turned notices
    /// on): a deleted project, or hosts it was taken from.
    pub(in crate::fleet) fn notice_deletes<'a>(
        list: &crate::fleet::cache::HostList,
        hosts: impl IntoIterator<Item = &'a str>,
        project: &str,
    ) -> Vec<Op> {
        if !list.notices {
            return Vec::new();
        }
        hosts
            .into_iter()
            .map(|h| Op::delete(&Notice::new(h, project).to_string()))
            .collect()
    }

    /// The compare that fails when the store holds a host list newer than
    /// `list` that this host has not read: a write decided under an older
    /// list (whom to wrap keys for, whom to send notices) is decided again
    /// after reading it. `None` when this host saw something there and
    /// refused it (that refusal already holds writes back:
    /// [`Self::my_host_list`]).
    pub(in crate::fleet) fn no_newer_list(
        &self,
        list: &crate::fleet::cache::HostList,
    ) -> Option<Compare> {
        let next = FleetKey::Hosts(list.version.saturating_add(1));
        (self.cache().etcd_revision(&next, 0) == 0)
            .then(|| Compare::mod_revision(&next.to_string(), 0))
    }
}
