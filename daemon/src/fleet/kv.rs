//! The writes fleet mode asks of its key-value store, in its own terms:
//! puts and deletes ([`Op`]) run together only when every compare of a
//! key's last-modified revision holds ([`Compare`]). How a backend says
//! them on the wire — etcd's JSON gateway in [`super::etcd`] — stays in
//! that backend.

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
