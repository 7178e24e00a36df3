//! What the cache holds and reports: one verified envelope ([`Held`]),
//! and what applying something changed ([`Applied`]), with the changes
//! the local copy must make ([`Persist`]).

use crate::fleet::envelope::Envelope;
use crate::fleet::layout::FleetKey;
use std::collections::BTreeSet;

/// One verified envelope held.
#[derive(Debug, Clone)]
pub struct Held {
    pub version: u64,
    /// The envelope's epoch: for a wrapped key, the host list version
    /// under which the project key was generated.
    pub epoch: u64,
    pub payload: Vec<u8>,
    /// The envelope as etcd holds it (what the local copy keeps) — empty
    /// for a vault: its envelope is kept on disk (the local copy) and in
    /// etcd, not a second time in memory beside its payload.
    pub raw: Vec<u8>,
    /// Its etcd mod_revision (0: read from the local copy, unknown).
    pub mod_revision: i64,
}

impl Held {
    /// What `key`'s envelope `env` (as `raw`) holds: all of it, but a
    /// vault's payload only.
    pub(super) fn from(key: &FleetKey, env: Envelope, raw: &[u8], mod_revision: i64) -> Self {
        Self {
            version: env.version,
            epoch: env.epoch,
            payload: env.payload,
            raw: match key {
                FleetKey::Vault(_) => Vec::new(),
                _ => raw.to_vec(),
            },
            mod_revision,
        }
    }
}

/// A change to the local copy, relative to `<state>/fleet/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Persist {
    Write(String, Vec<u8>),
    Remove(String),
}

/// What applying something changed.
#[derive(Debug, Default)]
pub struct Applied {
    /// Projects whose vault or key changed.
    pub changed: BTreeSet<String>,
    /// Projects deleted (by a signed deletion).
    pub gone: BTreeSet<String>,
    /// What the local copy must now hold.
    pub persist: Vec<Persist>,
    /// etcd deleted something without a signed deletion: see
    /// [`crate::fleet::store::FleetStore::repair`].
    pub lost: bool,
    /// Objects refused for a signer the host list did not know, to read
    /// from etcd again now that the list changed.
    pub reread: Vec<FleetKey>,
    /// A notice's vault could not be read: the watch goes back to the
    /// notice ([`crate::fleet::store::FleetStore::apply`]).
    pub unread: bool,
}
