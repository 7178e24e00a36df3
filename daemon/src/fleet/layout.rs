//! Where fleet mode keeps things in etcd, as typed keys:
//!
//! ```text
//! /flux/v1/fleet                                    marker: this etcd holds a fleet
//! /flux/v1/hosts/<recipient>                        the hosts of the fleet
//! /flux/v1/projects/<name>/vault                    the sealed age vault
//! /flux/v1/projects/<name>/keys/<host-recipient>    the project key, age-encrypted to that host
//! ```
//!
//! Every key fluxd reads is parsed into an [`EtcdKey`]; one it does not
//! recognize is passed over.

use flux_protocol::limits::validate_project_name;
use std::fmt;

/// The prefix of every key fluxd writes.
pub const PREFIX: &str = "/flux/v1/";
/// The prefix of the host registry.
pub const HOSTS: &str = "/flux/v1/hosts/";
/// The prefix of the projects.
pub const PROJECTS: &str = "/flux/v1/projects/";

/// A key of the layout above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtcdKey {
    /// The marker written with the first host.
    Marker,
    /// A registered host.
    Host(String),
    /// A project's vault.
    Vault(String),
    /// A project's key, wrapped for one host.
    Key { project: String, host: String },
}

impl fmt::Display for EtcdKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Marker => write!(f, "{PREFIX}fleet"),
            Self::Host(h) => write!(f, "{HOSTS}{h}"),
            Self::Vault(p) => write!(f, "{PROJECTS}{p}/vault"),
            Self::Key { project, host } => write!(f, "{PROJECTS}{project}/keys/{host}"),
        }
    }
}

impl EtcdKey {
    /// Parses a key; `None` for one outside the layout.
    pub fn parse(key: &str) -> Option<Self> {
        if key == format!("{PREFIX}fleet") {
            return Some(Self::Marker);
        }
        if let Some(host) = key.strip_prefix(HOSTS) {
            return Some(Self::Host(host.to_owned()));
        }
        let (project, tail) = key.strip_prefix(PROJECTS)?.split_once('/')?;
        validate_project_name(project).ok()?;
        if tail == "vault" {
            return Some(Self::Vault(project.to_owned()));
        }
        match tail.strip_prefix("keys/") {
            Some(host) if !host.is_empty() => Some(Self::Key {
                project: project.to_owned(),
                host: host.to_owned(),
            }),
            _ => None,
        }
    }
}

/// `/flux/v1/projects/<name>/`: everything of one project.
pub fn project_prefix(name: &str) -> String {
    format!("{PROJECTS}{name}/")
}

/// `/flux/v1/projects/<name>/vault`.
pub fn vault_key(name: &str) -> String {
    EtcdKey::Vault(name.to_owned()).to_string()
}

/// `/flux/v1/projects/<name>/keys/<recipient>`.
pub fn wrapped_key(name: &str, recipient: &str) -> String {
    EtcdKey::Key {
        project: name.to_owned(),
        host: recipient.to_owned(),
    }
    .to_string()
}

/// `/flux/v1/hosts/<recipient>`.
pub fn host_key(recipient: &str) -> String {
    EtcdKey::Host(recipient.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_print_back() {
        for key in [
            EtcdKey::Marker,
            EtcdKey::Host("age1x".into()),
            EtcdKey::Vault("app".into()),
            EtcdKey::Key {
                project: "app".into(),
                host: "age1x".into(),
            },
        ] {
            assert_eq!(EtcdKey::parse(&key.to_string()), Some(key));
        }
        assert_eq!(EtcdKey::parse("/flux/v1/projects/-bad/vault"), None);
        assert_eq!(EtcdKey::parse("/flux/v1/projects/app/other"), None);
        assert_eq!(EtcdKey::parse("/elsewhere"), None);
    }
}
