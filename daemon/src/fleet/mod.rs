//! Fleet mode: etcd as a replicated store, so a secret set on one host is
//! served by every host within milliseconds (`docs/FLEET.md`).
//!
//! - [`etcd`]: a small blocking client for etcd's v3 JSON gateway;
//! - [`layout`]: where things are in etcd, as typed keys;
//! - [`identity`]: this host's key, and the wrapping of project keys;
//! - [`store`]: [`EtcdStore`], the [`crate::store::Store`] kept in etcd with
//!   a sealed local copy;
//! - [`hosts`]: adding and removing the hosts that may serve projects
//!   ([`crate::store::Hosts`]);
//! - `watch`: the etcd watch, fleet mode's change feed.
//!
//! The local folder store stays the default; `--store etcd` (or `[store]
//! kind = "etcd"`) selects this one, through [`open`].

pub mod etcd;
pub mod hosts;
pub mod identity;
pub mod layout;
pub mod store;
mod watch;

use crate::error::{Error, Result};
use crate::store::Opened;
use serde::Deserialize;
use std::path::Path;
use std::sync::Arc;
pub use store::EtcdStore;
use tracing::{info, warn};

/// Opens fleet mode (blocking): this host's identity, a full read of etcd
/// — or, when etcd is unreachable, the local sealed copy, served until it
/// is back — the watch, and host administration.
pub fn open(state_dir: &Path, endpoints: Vec<String>) -> Result<Opened> {
    let store = Arc::new(EtcdStore::open(state_dir, endpoints)?);
    let synced = match store.bootstrap().and_then(|first| {
        if first {
            info!(recipient = %store.recipient(), "first host of a new fleet: registered this host");
        }
        store.resync()
    }) {
        Ok(_) => true,
        Err(e) => {
            warn!(error = %e, "etcd is unreachable at start; serving the local sealed copies until it is back");
            store.set_outage(Some(e.to_string()));
            false
        }
    };
    info!(recipient = %store.recipient(), endpoints = %store.endpoints(), "fleet mode: vaults are kept in etcd");
    let feed = watch::follow(store.clone(), synced)?;
    let hosts = Arc::new(hosts::FleetHosts::new(store.clone()));
    Ok(Opened { store, feed, hosts })
}

/// `[store]` in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreFile {
    /// `"local"` (the default) or `"etcd"`.
    pub kind: Option<String>,
    /// etcd client URLs, `http://host:port`.
    #[serde(default)]
    pub endpoints: Vec<String>,
}

/// Where keys and vaults are kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StoreChoice {
    /// `<state>/keys` and `<state>/vaults`.
    #[default]
    Local,
    /// etcd at these endpoints.
    Etcd { endpoints: Vec<String> },
}

impl StoreChoice {
    /// Resolves the flags (`--store`, `--etcd-endpoints`, which win) and the
    /// config file's `[store]` section.
    pub fn resolve(kind: Option<&str>, endpoints: &[String], file: &StoreFile) -> Result<Self> {
        let kind = kind.or(file.kind.as_deref()).unwrap_or("local");
        let endpoints: Vec<String> = if endpoints.is_empty() {
            file.endpoints.clone()
        } else {
            endpoints.to_vec()
        };
        match kind {
            "local" => {
                if !endpoints.is_empty() {
                    return Err(Error::Config(
                        "etcd endpoints are given but the store is local: add --store etcd (or [store] kind = \"etcd\")".into(),
                    ));
                }
                Ok(Self::Local)
            }
            "etcd" => {
                if endpoints.is_empty() {
                    return Err(Error::Config(
                        "the etcd store needs endpoints: --etcd-endpoints http://127.0.0.1:2379,… or [store] endpoints = [\"http://…\"]".into(),
                    ));
                }
                for e in &endpoints {
                    if e.starts_with("https://") {
                        return Err(Error::Config(format!(
                            "etcd endpoint {e}: TLS to etcd is not supported yet (see docs/FLEET.md); use http:// on a trusted network or a local TLS proxy"
                        )));
                    }
                    if !e.starts_with("http://") {
                        return Err(Error::Config(format!(
                            "etcd endpoint {e:?} must be a URL like http://127.0.0.1:2379"
                        )));
                    }
                }
                Ok(Self::Etcd { endpoints })
            }
            other => Err(Error::Config(format!(
                "unknown store {other:?}: use \"local\" or \"etcd\""
            ))),
        }
    }
}

impl StoreChoice {
    /// Applies `--store` and `--etcd-endpoints` over what the config file
    /// chose.
    pub fn with_flags(self, kind: Option<&str>, endpoints: &[String]) -> Result<Self> {
        if kind.is_none() && endpoints.is_empty() {
            return Ok(self);
        }
        if kind == Some("local") && endpoints.is_empty() {
            return Ok(Self::Local);
        }
        let file = match self {
            Self::Local => StoreFile::default(),
            Self::Etcd { endpoints } => StoreFile {
                kind: Some("etcd".into()),
                endpoints,
            },
        };
        Self::resolve(kind, endpoints, &file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_choice() {
        let f = StoreFile::default();
        assert_eq!(
            StoreChoice::resolve(None, &[], &f).unwrap(),
            StoreChoice::Local
        );
        assert!(StoreChoice::resolve(Some("etcd"), &[], &f).is_err());
        let e = vec!["http://127.0.0.1:2379".to_owned()];
        assert_eq!(
            StoreChoice::resolve(Some("etcd"), &e, &f).unwrap(),
            StoreChoice::Etcd {
                endpoints: e.clone()
            }
        );
        let file: StoreFile =
            toml::from_str("kind = \"etcd\"\nendpoints = [\"http://127.0.0.1:1\"]\n").unwrap();
        assert!(matches!(
            StoreChoice::resolve(None, &[], &file).unwrap(),
            StoreChoice::Etcd { .. }
        ));
        assert!(StoreChoice::resolve(Some("etcd"), &["https://x:1".into()], &f).is_err());
        assert!(toml::from_str::<StoreFile>("kinds = 1").is_err());
    }

    #[test]
    fn the_config_file_has_a_store_section() {
        let f: crate::config::FileConfig = toml::from_str(
            "[store]\nkind = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\", \"http://127.0.0.1:22379\"]\n",
        )
        .unwrap();
        let choice = StoreChoice::resolve(None, &[], &f.store).unwrap();
        assert!(matches!(choice, StoreChoice::Etcd { ref endpoints } if endpoints.len() == 2));
        // Flags win over the file.
        assert_eq!(
            choice.clone().with_flags(Some("local"), &[]).unwrap(),
            StoreChoice::Local
        );
        let flag = vec!["http://127.0.0.1:3".to_owned()];
        assert_eq!(
            choice.with_flags(None, &flag).unwrap(),
            StoreChoice::Etcd { endpoints: flag }
        );
        assert!(toml::from_str::<crate::config::FileConfig>("[store]\nendpoint = []\n").is_err());
    }
}
