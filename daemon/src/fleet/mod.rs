//! Fleet mode: etcd as a replicated store, so a secret set on one host is
//! served by every host within milliseconds (`docs/FLEET.md`) — and an
//! attacker who can write etcd but holds no host's key can change nothing
//! any host serves.
//!
//! - [`etcd`]: a small blocking client for etcd's v3 JSON gateway (TLS,
//!   authentication, deadlines, member retries, paged reads, the envelope
//!   cap);
//! - [`kv`]: the key-value store fleet mode runs on, as one trait
//!   (`Backend`: ranges, compared transactions, a watch); [`etcd`] is its
//!   implementation, and a store in memory is the tests' (`memory`);
//! - [`layout`]: where things are in etcd, as typed keys;
//! - [`identity`]: this host's keys (age for wrapping, Ed25519 for
//!   signing), join tokens and the fleet id;
//! - [`envelope`]: the signed envelope every etcd value is;
//! - [`cache`]: what this host holds, every piece verified against the
//!   fleet's host list and the versions it already accepted;
//! - [`store`]: [`FleetStore`], the [`crate::store::Store`] kept in etcd with
//!   a sealed local copy;
//! - [`hosts`]: adding and removing the hosts that may serve projects
//!   ([`crate::store::Hosts`]);
//! - `watch`: the etcd watch, fleet mode's change feed.
//!
//! The local folder store stays the default; `--store etcd` (or `[store]
//! kind = "etcd"`) selects this one, through [`open`].

pub mod cache;
pub mod envelope;
pub mod etcd;
pub mod hosts;
pub mod identity;
pub mod kv;
pub mod layout;
#[cfg(test)]
mod memory;
pub mod store;
mod watch;

use crate::error::{Error, Result};
use crate::store::Opened;
pub use etcd::EtcdConfig;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
pub use store::FleetStore;
use tracing::{info, warn};

/// Operations per etcd transaction fluxd sends at most: etcd refuses more
/// than `--max-txn-ops` (128 by default), so larger writes (a project
/// wrapped for many hosts) are split.
pub const MAX_TXN_OPS: usize = 100;

/// Opens fleet mode (blocking): this host's identity, the fleet it
/// pinned, a full read of etcd — or, when etcd is unreachable, the local
/// sealed copy, served until it is back — the watch, and host
/// administration.
///
/// etcd is read on a thread of its own: when it answers within
/// [`START_WAIT`], the projects load from what it holds; otherwise fluxd
/// serves the local copies at once and takes etcd's changes when it
/// answers — an unreachable or slow etcd never delays the sockets.
pub fn open(state_dir: &Path, options: &FleetOptions) -> Result<Opened> {
    let store = Arc::new(FleetStore::open(state_dir, options)?);
    info!(
        recipient = %store.recipient(),
        endpoints = %store.endpoints(),
        fleet = store.fleet_id().as_deref().unwrap_or("(none yet)"),
        join_token = %store.identity().record().join_token(),
        "fleet mode: vaults are kept in etcd"
    );
    let (tx, feed) = watch::channel(&store);
    let (started, wait) = std::sync::mpsc::channel();
    let (bg, publish) = (store.clone(), options.publish_fleet);
    std::thread::Builder::new()
        .name("fluxd-etcd-start".into())
        .spawn(move || {
            let synced = match bg.start(publish) {
                Ok(synced) => synced,
                Err(e) => {
                    warn!(error = %e, "cannot read etcd at start; serving the local sealed copies and trying again");
                    bg.set_outage(Some(e.to_string()));
                    false
                }
            };
            let revision = if synced { bg.revision() } else { 0 };
            if let Err(e) = watch::spawn(&bg, &tx, revision) {
                tracing::error!(error = %e, "the etcd watch did not start: this host serves its local copies only");
            }
            let _ = started.send(());
        })
        .map_err(|e| Error::Internal(format!("cannot start reading etcd: {e}")))?;
    // A host holding many copies serves them at once: a full read of as
    // much would not finish within the wait anyway.
    let wait_for = if store.holds_much() {
        std::time::Duration::ZERO
    } else {
        START_WAIT
    };
    if wait.recv_timeout(wait_for).is_err() {
        warn!(
            waited = ?START_WAIT,
            "etcd has not answered yet: serving the local sealed copies; changes follow when it does"
        );
    }
    let hosts = Arc::new(hosts::FleetHosts::new(store.clone()));
    Ok(Opened { store, feed, hosts })
}

/// How long start-up waits for etcd before serving the local copies.
pub const START_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// `[store] load_in_background_above` by default: above this many bytes of
/// local copies, start-up does not wait for etcd ([`START_WAIT`]) before
/// serving them, and binds every project's socket before loading the
/// projects ([`crate::store::Store::serves_before_loading`]).
pub const LOAD_IN_BACKGROUND_ABOVE: u64 = 64 * 1024 * 1024;

/// `[store]` in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreFile {
    /// `"local"` (the default) or `"etcd"`.
    pub kind: Option<String>,
    /// etcd client URLs, `http://host:port` or `https://host:port`.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// CA certificates (PEM) for `https://` endpoints.
    pub ca_file: Option<PathBuf>,
    /// This host's client certificate and key (PEM).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// etcd user (clusters with `auth enable`), and its password's file.
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    /// The fleet this host belongs to (`fleet:…`), as a host of the fleet
    /// shows it (`fluxctl hosts list`).
    pub fleet_id: Option<String>,
    /// Discard etcd's history past a project deletion (default true).
    pub compact_on_delete: Option<bool>,
    /// The largest envelope (etcd value) this host reads; larger ones are
    /// refused before they are read whole (default: from `[limits]
    /// max_project_bytes`, [`etcd::default_max_envelope_bytes`]).
    pub max_envelope_bytes: Option<u64>,
    /// Keys per etcd range request at most (default 16).
    pub read_page_keys: Option<usize>,
    /// How long one page of a read may take (default "2s").
    pub read_page_timeout: Option<String>,
    /// Bytes of local copies above which a starting host serves them
    /// without waiting for etcd, and loads its projects after binding
    /// their sockets (default 64 MiB).
    pub load_in_background_above: Option<u64>,
}

/// How to run fleet mode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetOptions {
    pub etcd: EtcdConfig,
    pub fleet_id: Option<String>,
    /// Write this host's fleet back to an etcd that holds none
    /// (`--publish-fleet`).
    pub publish_fleet: bool,
    pub compact_on_delete: bool,
    /// `[store] max_envelope_bytes` was given (else it follows `[limits]
    /// max_project_bytes`: [`FleetOptions::with_project_limit`]).
    pub max_envelope_set: bool,
    /// `[store] load_in_background_above` (`None`:
    /// [`LOAD_IN_BACKGROUND_ABOVE`]).
    pub load_in_background_above: Option<u64>,
}

impl FleetOptions {
    /// Derives the envelope cap from `[limits] max_project_bytes` unless
    /// `[store] max_envelope_bytes` set it.
    pub fn with_project_limit(mut self, max_project_bytes: usize) -> Self {
        if !self.max_envelope_set {
            self.etcd.reads.max_envelope_bytes =
                etcd::default_max_envelope_bytes(max_project_bytes);
        }
        self
    }
}

/// The smallest `[store] max_envelope_bytes`: a host list or wrapped key
/// must always fit.
pub const MIN_ENVELOPE_BYTES: u64 = 64 * 1024;

impl StoreFile {
    /// `read_page_keys`, `read_page_timeout` and `max_envelope_bytes`,
    /// checked.
    fn reads(&self) -> Result<etcd::Reads> {
        let mut reads = etcd::Reads::default();
        if let Some(keys) = self.read_page_keys {
            if !(1..=10_000).contains(&keys) {
                return Err(Error::Config(format!(
                    "[store] read_page_keys = {keys}: give 1 to 10000 keys per page"
                )));
            }
            reads.page_keys = keys;
        }
        if let Some(text) = &self.read_page_timeout {
            reads.page_timeout = match humantime::parse_duration(text) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => {
                    return Err(Error::Config(
                        "[store] read_page_timeout must be more than zero".into(),
                    ));
                }
                Err(e) => {
                    return Err(Error::Config(format!(
                        "[store] read_page_timeout = {text:?} is not a duration like \"2s\" or \"500ms\": {e}"
                    )));
                }
            };
        }
        if let Some(bytes) = self.max_envelope_bytes {
            if bytes < MIN_ENVELOPE_BYTES {
                return Err(Error::Config(format!(
                    "[store] max_envelope_bytes = {bytes} is below {MIN_ENVELOPE_BYTES}: host lists and wrapped keys would not fit"
                )));
            }
            reads.max_envelope_bytes = bytes;
        }
        Ok(reads)
    }
}

/// Where keys and vaults are kept.
// Built once from the configuration: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StoreChoice {
    /// `<state>/keys` and `<state>/vaults`.
    #[default]
    Local,
    /// etcd (fleet mode).
    Etcd(FleetOptions),
}

fn check_endpoints(endpoints: &[String]) -> Result<()> {
    if endpoints.is_empty() {
        return Err(Error::Config(
            "the etcd store needs endpoints: --etcd-endpoints http://127.0.0.1:2379,… or [store] endpoints = [\"http://…\"]".into(),
        ));
    }
    for e in endpoints {
        if !e.starts_with("http://") && !e.starts_with("https://") {
            return Err(Error::Config(format!(
                "etcd endpoint {e:?} must be a URL like http://127.0.0.1:2379 or https://10.0.0.1:2379"
            )));
        }
    }
    Ok(())
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
                check_endpoints(&endpoints)?;
                if file.password_file.is_some() && file.username.is_none() {
                    return Err(Error::Config(
                        "[store] password_file needs [store] username".into(),
                    ));
                }
                if let Some(id) = &file.fleet_id {
                    identity::parse_fleet_id(id)?;
                }
                Ok(Self::Etcd(FleetOptions {
                    etcd: EtcdConfig {
                        endpoints,
                        ca_file: file.ca_file.clone(),
                        cert_file: file.cert_file.clone(),
                        key_file: file.key_file.clone(),
                        username: file.username.clone(),
                        password_file: file.password_file.clone(),
                        reads: file.reads()?,
                    },
                    fleet_id: file.fleet_id.clone(),
                    publish_fleet: false,
                    compact_on_delete: file.compact_on_delete.unwrap_or(true),
                    max_envelope_set: file.max_envelope_bytes.is_some(),
                    load_in_background_above: file.load_in_background_above,
                }))
            }
            other => Err(Error::Config(format!(
                "unknown store {other:?}: use \"local\" or \"etcd\""
            ))),
        }
    }

    /// Applies `--store`, `--etcd-endpoints`, `--fleet-id` and
    /// `--publish-fleet` over what the config file chose.
    pub fn with_flags(
        self,
        kind: Option<&str>,
        endpoints: &[String],
        fleet_id: Option<&str>,
        publish_fleet: bool,
    ) -> Result<Self> {
        let choice = match (kind, endpoints.is_empty(), self) {
            (None, true, choice) => choice,
            (Some("local"), true, _) => Self::Local,
            (kind, _, Self::Etcd(mut options)) if kind != Some("local") => {
                if !endpoints.is_empty() {
                    check_endpoints(endpoints)?;
                    options.etcd.endpoints = endpoints.to_vec();
                }
                Self::Etcd(options)
            }
            (kind, _, _) => Self::resolve(kind, endpoints, &StoreFile::default())?,
        };
        match choice {
            Self::Etcd(mut options) => {
                if let Some(id) = fleet_id {
                    identity::parse_fleet_id(id)?;
                    options.fleet_id = Some(id.to_owned());
                }
                options.publish_fleet = publish_fleet;
                Ok(Self::Etcd(options))
            }
            Self::Local if fleet_id.is_some() || publish_fleet => Err(Error::Config(
                "--fleet-id and --publish-fleet are for fleet mode (--store etcd)".into(),
            )),
            local => Ok(local),
        }
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
        assert!(matches!(
            StoreChoice::resolve(Some("etcd"), &e, &f).unwrap(),
            StoreChoice::Etcd(FleetOptions { ref etcd, compact_on_delete: true, .. }) if etcd.endpoints == e
        ));
        let file: StoreFile =
            toml::from_str("kind = \"etcd\"\nendpoints = [\"http://127.0.0.1:1\"]\n").unwrap();
        assert!(matches!(
            StoreChoice::resolve(None, &[], &file).unwrap(),
            StoreChoice::Etcd(_)
        ));
        assert!(StoreChoice::resolve(Some("etcd"), &["https://x:1".into()], &f).is_ok());
        assert!(StoreChoice::resolve(Some("etcd"), &["x:1".into()], &f).is_err());
        assert!(toml::from_str::<StoreFile>("kinds = 1").is_err());
    }

    #[test]
    fn reads_are_configured_and_bad_values_named() {
        let parse = |extra: &str| {
            let file: StoreFile = toml::from_str(&format!(
                "kind = \"etcd\"\nendpoints = [\"http://127.0.0.1:1\"]\n{extra}"
            ))
            .unwrap();
            StoreChoice::resolve(None, &[], &file)
        };
        let Ok(StoreChoice::Etcd(o)) = parse("") else {
            panic!("etcd")
        };
        assert_eq!(o.etcd.reads, etcd::Reads::default());
        // The cap follows [limits] max_project_bytes unless set.
        let o = o.with_project_limit(1024 * 1024);
        assert_eq!(o.etcd.reads.max_envelope_bytes, 3 * 1024 * 1024);
        let Ok(StoreChoice::Etcd(o)) = parse(
            "read_page_keys = 2\nread_page_timeout = \"250ms\"\nmax_envelope_bytes = 100000\n",
        ) else {
            panic!("etcd")
        };
        let o = o.with_project_limit(1024 * 1024);
        assert_eq!(
            o.etcd.reads,
            etcd::Reads {
                page_keys: 2,
                page_timeout: std::time::Duration::from_millis(250),
                max_envelope_bytes: 100_000,
            }
        );
        for (bad, says) in [
            ("read_page_keys = 0", "1 to 10000"),
            ("read_page_timeout = \"soon\"", "not a duration"),
            ("read_page_timeout = \"0s\"", "more than zero"),
            ("max_envelope_bytes = 1000", "below 65536"),
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn the_config_file_has_a_store_section() {
        let f: crate::config::FileConfig = toml::from_str(
            "[store]\nkind = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\", \"http://127.0.0.1:22379\"]\n",
        )
        .unwrap();
        let choice = StoreChoice::resolve(None, &[], &f.store).unwrap();
        assert!(matches!(choice, StoreChoice::Etcd(ref o) if o.etcd.endpoints.len() == 2));
        // Flags win over the file.
        assert_eq!(
            choice
                .clone()
                .with_flags(Some("local"), &[], None, false)
                .unwrap(),
            StoreChoice::Local
        );
        let flag = vec!["http://127.0.0.1:3".to_owned()];
        assert!(matches!(
            choice.with_flags(None, &flag, None, true).unwrap(),
            StoreChoice::Etcd(ref o) if o.etcd.endpoints == flag && o.publish_fleet
        ));
        assert!(toml::from_str::<crate::config::FileConfig>("[store]\nendpoint = []\n").is_err());
    }
}
