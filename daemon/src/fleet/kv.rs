//! The key-value store fleet mode keeps its envelopes in, as one trait
//! ([`Backend`]): ranges by key (in pages, at one revision), transactions
//! of puts and deletes ([`Op`]) that run only when every compare of a
//! key's last-modified revision holds ([`Compare`]), and a watch from a
//! revision. etcd ([`super::etcd::Etcd`]) is its one implementation, and
//! spells all of it in its JSON gateway's terms; the store above it
//! ([`super::store`]) knows none of them. A test double in memory
//! implements it too (`store::tests`).

/// A call to the store that failed. The message names the endpoints and
/// the store's own reason; never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// No endpoint answered (each one's reason in the message): nothing
    /// was changed.
    #[error("{0}")]
    Unreachable(String),
    /// A member took the request and did not answer within the deadline:
    /// a write may or may not have been applied.
    #[error("{0}")]
    Unknown(String),
    /// etcd answered and refused, or answered something unusable.
    #[error("{0}")]
    Failed(String),
    /// A read whose answer began and did not finish within its deadline
    /// (a slow link, an answer too big for it).
    #[error("{0}")]
    Unfinished(String),
}

impl KvError {
    /// True when no member could be reached, or none answered in time (as
    /// opposed to a refusal).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            Self::Unreachable(_) | Self::Unknown(_) | Self::Unfinished(_)
        )
    }
}

/// One key-value pair.
#[derive(Debug, Clone)]
pub struct Kv {
    pub key: String,
    /// Empty when [`Self::oversize`].
    pub value: Vec<u8>,
    pub mod_revision: i64,
    /// The value was over [`super::etcd::Reads::max_envelope_bytes`]: its size (about),
    /// and it was not read.
    pub oversize: Option<u64>,
}

/// One watch event.
#[derive(Debug, Clone)]
pub enum WatchEvent {
    Put(Kv),
    Delete { key: String, mod_revision: i64 },
}

/// What one watch message carried.
#[derive(Debug)]
pub enum WatchMessage {
    /// The watch is open; events after `revision` follow.
    Created { revision: i64 },
    /// Events, all of the same revision or ascending.
    Events {
        revision: i64,
        events: Vec<WatchEvent>,
    },
    /// The requested start revision was compacted away: resync.
    Compacted { compact_revision: i64 },
    /// A progress notification or anything else without events.
    Other,
}

/// What fleet mode needs of a key-value store. Revisions are the store's:
/// one number that goes up with every transaction, each key remembering
/// the revision that last changed it.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Where the store is, for messages.
    fn endpoints(&self) -> String;

    /// Every key from `start` up to, not including, `end`, as held at
    /// `revision` (0: now), to `each` in pages in key order; returns the
    /// revision read at.
    fn range_between(
        &self,
        start: &[u8],
        end: &[u8],
        revision: i64,
        each: &mut dyn FnMut(Vec<Kv>),
    ) -> Result<i64, KvError>;

    /// The value under exactly `key` at `revision` (0: now).
    fn get_at(&self, key: &str, revision: i64) -> Result<Option<Kv>, KvError>;

    /// The keys under `prefix` at `revision` (0: now), no values, with the
    /// revision that last changed each.
    fn keys_at(&self, prefix: &str, revision: i64) -> Result<Vec<(String, i64)>, KvError>;

    /// Runs `success` when every `compare` holds; returns whether it ran,
    /// and the revision after it.
    fn txn(&self, compare: &[Compare], success: &[Op]) -> Result<(bool, i64), KvError>;

    /// Discards history up to `revision`.
    fn compact(&self, revision: i64) -> Result<(), KvError>;

    /// Whether history up to `revision` is gone (`None`: cannot tell).
    fn compacted_past(&self, revision: i64) -> Option<bool>;

    /// Follows the changes `watched` names from revision `start`, until
    /// `on_message` answers false or the stream breaks.
    fn watch(
        &self,
        watched: &Watched,
        start: i64,
        on_message: &mut dyn FnMut(WatchMessage) -> bool,
    ) -> Result<(), KvError>;

    /// True (once) after the store's history went backwards: read
    /// everything again.
    fn take_reset(&self) -> bool;

    /// Range requests answered in pages, and pages asked again smaller.
    fn page_counts(&self) -> (u64, u64);
}

impl dyn Backend {
    /// Every key under `prefix` at `revision` (0: now), in pages.
    pub fn range_paged(
        &self,
        prefix: &str,
        revision: i64,
        mut each: impl FnMut(Vec<Kv>),
    ) -> Result<i64, KvError> {
        self.range_between(prefix.as_bytes(), &prefix_end(prefix), revision, &mut each)
    }

    /// Every key under `prefix`, and the revision read at.
    pub fn range_prefix(&self, prefix: &str) -> Result<(i64, Vec<Kv>), KvError> {
        let mut all = Vec::new();
        let revision = self.range_paged(prefix, 0, |page| all.extend(page))?;
        Ok((revision, all))
    }

    /// The value under exactly `key`, now.
    pub fn get(&self, key: &str) -> Result<Option<Kv>, KvError> {
        self.get_at(key, 0)
    }

    /// The keys under `prefix`, now.
    pub fn keys_prefix(&self, prefix: &str) -> Result<Vec<(String, i64)>, KvError> {
        self.keys_at(prefix, 0)
    }
}

/// What one watch follows: every key from `start` up to, not including,
/// `end` — all their changes, or (`puts` false) their deletions only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    pub start: String,
    pub end: Vec<u8>,
    pub puts: bool,
}

impl Watched {
    /// Every change under `prefix`.
    pub fn prefix(prefix: &str) -> Self {
        Self {
            start: prefix.to_owned(),
            end: prefix_end(prefix),
            puts: true,
        }
    }

    /// Every change from `start` up to, not including, `end`.
    pub fn between(start: &str, end: &str) -> Self {
        Self {
            start: start.to_owned(),
            end: end.as_bytes().to_vec(),
            puts: true,
        }
    }

    /// The same keys, their deletions only.
    pub fn deletions(self) -> Self {
        Self {
            puts: false,
            ..self
        }
    }

    /// True when `event` is one this watch is sent.
    pub fn sends(&self, event: &WatchEvent) -> bool {
        let (key, put) = match event {
            WatchEvent::Put(kv) => (&kv.key, true),
            WatchEvent::Delete { key, .. } => (key, false),
        };
        let key = key.as_bytes();
        (self.puts || !put)
            && key >= self.start.as_bytes()
            && (self.end == [0] || key < self.end.as_slice())
    }
}

/// One write of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `key` holds `value`.
    Put { key: String, value: Vec<u8> },
    /// `key` is gone.
    Delete { key: String },
    /// Every key from `start` up to, not including, `end` is gone.
    DeleteRange { start: String, end: Vec<u8> },
}

impl Op {
    /// A put of `value` under `key`.
    pub fn put(key: &str, value: &[u8]) -> Self {
        Self::Put {
            key: key.to_owned(),
            value: value.to_vec(),
        }
    }

    /// A delete of one key.
    pub fn delete(key: &str) -> Self {
        Self::Delete {
            key: key.to_owned(),
        }
    }

    /// A delete of every key under `prefix`.
    pub fn delete_prefix(prefix: &str) -> Self {
        Self::DeleteRange {
            start: prefix.to_owned(),
            end: prefix_end(prefix),
        }
    }

    /// A delete of every key from `start` up to, not including, `end`.
    pub fn delete_range(start: &str, end: &str) -> Self {
        Self::DeleteRange {
            start: start.to_owned(),
            end: end.as_bytes().to_vec(),
        }
    }
}

/// A condition of a transaction: `key` was last modified at `mod_revision`
/// (0: `key` does not exist).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    pub key: String,
    pub mod_revision: i64,
}

impl Compare {
    /// `key` was last modified at `revision` (0: it does not exist).
    pub fn mod_revision(key: &str, revision: i64) -> Self {
        Self {
            key: key.to_owned(),
            mod_revision: revision,
        }
    }
}

/// The first key after every key under `prefix`: the prefix with its last
/// byte below 0xff incremented (empty — every key — when there is none).
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_delete_ends_after_every_key_under_it() {
        assert_eq!(
            Op::delete_prefix("/a/"),
            Op::DeleteRange {
                start: "/a/".into(),
                end: b"/a0".to_vec()
            }
        );
        assert_eq!(prefix_end("a\u{7f}"), vec![b'a', 0x80]);
    }
}
