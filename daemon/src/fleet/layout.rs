//! Where fleet mode keeps things in etcd, as typed keys. Everything a host
//! acts on is a signed envelope ([`super::envelope`]) bound to its key.
//!
//! ```text
//! /flux/v3/fleet/id                      the fleet's id, signed by the operator key
//! /flux/v3/fleet/hosts/<version>         the host list, each version signed by the operator key
//! /flux/v3/fleet/vaults/<project>        the project's sealed age vault
//! /flux/v3/fleet/deleted/<project>       a project's deletion
//! /flux/v3/keys/<host>/<project>         the project's key, age-encrypted to that host
//! /flux/v3/keys/<host>/<project>/changed a notice: the vault's version, written with each
//!                                        set for the project's other hosts (once projects
//!                                        are assigned)
//! ```
//!
//! A host watches `/flux/v3/fleet/` (what every host needs; once projects
//! are assigned, vaults' deletions only) and `/flux/v3/keys/<its
//! recipient>/` (its own keys and notices only), so it never receives
//! another host's key writes, nor — once projects are assigned — a set on
//! a project it does not serve ([`Notice`]).

use flux_protocol::limits::validate_project_name;
use std::fmt;

pub use flux_vault::membership::{FLEET, HOSTS, ID, ROOT};
/// The vaults.
pub const VAULTS: &str = "/flux/v3/fleet/vaults/";
/// The deletions.
pub const DELETED: &str = "/flux/v3/fleet/deleted/";
/// The wrapped keys, by host.
pub const KEYS: &str = "/flux/v3/keys/";

/// A key of the layout above.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum FleetKey {
    /// The fleet's id.
    Id,
    /// The host list at one version.
    Hosts(u64),
    /// A project's vault.
    Vault(String),
    /// A project's deletion.
    Deleted(String),
    /// A project's key, wrapped for one host.
    Key { host: String, project: String },
}

impl fmt::Display for FleetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id => f.write_str(ID),
            Self::Hosts(v) => f.write_str(&flux_vault::membership::hosts_key(*v)),
            Self::Vault(p) => write!(f, "{VAULTS}{p}"),
            Self::Deleted(p) => write!(f, "{DELETED}{p}"),
            Self::Key { host, project } => write!(f, "{KEYS}{host}/{project}"),
        }
    }
}

fn project(name: &str) -> Option<String> {
    validate_project_name(name).ok().map(|()| name.to_owned())
}

impl FleetKey {
    /// Parses a key; `None` for one outside the layout.
    pub fn parse(key: &str) -> Option<Self> {
        if key == ID {
            return Some(Self::Id);
        }
        if let Some(v) = key.strip_prefix(HOSTS) {
            return (v.len() == 20 && v.bytes().all(|b| b.is_ascii_digit()))
                .then(|| v.parse().ok().map(Self::Hosts))
                .flatten();
        }
        if let Some(p) = key.strip_prefix(VAULTS) {
            return project(p).map(Self::Vault);
        }
        if let Some(p) = key.strip_prefix(DELETED) {
            return project(p).map(Self::Deleted);
        }
        let (host, name) = key.strip_prefix(KEYS)?.split_once('/')?;
        if host.is_empty() {
            return None;
        }
        Some(Self::Key {
            host: host.to_owned(),
            project: project(name)?,
        })
    }

    /// A project's vault key.
    pub fn vault(name: &str) -> Self {
        Self::Vault(name.to_owned())
    }

    /// A project's key for `host`.
    pub fn key(host: &str, name: &str) -> Self {
        Self::Key {
            host: host.to_owned(),
            project: name.to_owned(),
        }
    }
}

/// `/flux/v3/keys/<host>/`: the keys wrapped for one host, and its
/// notices.
pub fn keys_of(host: &str) -> String {
    format!("{KEYS}{host}/")
}

/// What a notice's key ends with.
const CHANGED: &str = "/changed";

/// A notice: `project`'s vault changed, for `host`, one of the project's
/// hosts. Its value is the new vault's version (decimal). It is not signed
/// and carries nothing to trust: it only tells the host which vault to
/// read, and the vault read is verified like any other
/// ([`super::cache`]). [`FleetKey::parse`] sees no key in it, so a fluxd
/// that does not know notices passes over them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub host: String,
    pub project: String,
}

impl Notice {
    /// The notice of `project` for `host`.
    pub fn new(host: &str, project: &str) -> Self {
        Self {
            host: host.to_owned(),
            project: project.to_owned(),
        }
    }

    /// Parses a notice's key; `None` for any other key.
    pub fn parse(key: &str) -> Option<Self> {
        let (host, rest) = key.strip_prefix(KEYS)?.split_once('/')?;
        let name = rest.strip_suffix(CHANGED)?;
        (!host.is_empty())
            .then(|| project(name).map(|project| Self::new(host, &project)))
            .flatten()
    }

    /// The version a notice's value names (`None`: not a number).
    pub fn version(value: &[u8]) -> Option<u64> {
        std::str::from_utf8(value).ok()?.parse().ok()
    }
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{KEYS}{}/{}{CHANGED}", self.host, self.project)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_print_back() {
        for key in [
            FleetKey::Id,
            FleetKey::Hosts(7),
            FleetKey::vault("app"),
            FleetKey::Deleted("app".into()),
            FleetKey::key("age1x", "app"),
        ] {
            assert_eq!(FleetKey::parse(&key.to_string()), Some(key));
        }
        assert_eq!(FleetKey::parse("/flux/v3/fleet/vaults/-bad"), None);
        assert_eq!(FleetKey::parse("/flux/v3/fleet/hosts/7"), None);
        assert_eq!(FleetKey::parse("/flux/v3/keys//app"), None);
        assert_eq!(FleetKey::parse("/elsewhere"), None);
    }

    #[test]
    fn notices_parse_and_print_back_and_are_no_key() {
        let notice = Notice::new("age1x", "app");
        assert_eq!(notice.to_string(), "/flux/v3/keys/age1x/app/changed");
        assert_eq!(Notice::parse(&notice.to_string()), Some(notice.clone()));
        assert_eq!(FleetKey::parse(&notice.to_string()), None);
        assert_eq!(
            Notice::parse(&FleetKey::key("age1x", "app").to_string()),
            None
        );
        assert_eq!(Notice::parse("/flux/v3/keys/age1x/a/b/changed"), None);
        assert_eq!(Notice::parse("/flux/v3/keys//app/changed"), None);
        assert_eq!(Notice::version(b"17"), Some(17));
        assert_eq!(Notice::version(b"x"), None);
    }
}
