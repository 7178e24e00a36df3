//! A project's secrets in memory: each name's current value, and the
//! versions kept of it — earlier values, who set each and when.
//!
//! [`Secrets`] reads like the map of current entries (it derefs to a
//! `BTreeMap<String, Entry>`); the versions ride along with it, so whatever
//! opens a vault and seals it again (a re-key, `fluxctl vault seal`, a
//! restore) keeps them. Changing it goes through its own methods:
//!
//! - [`Secrets::set`]: a new version — the value it replaces is kept as an
//!   earlier version (up to `keep`), and a value equal to the current one
//!   is no new version;
//! - [`Secrets::rollback`]: an earlier value made current again, as a new
//!   version;
//! - [`Secrets::remove`]: the name and all its versions;
//! - [`Secrets::insert`]: a current value put in place without versions
//!   (building a vault from scratch, a `.env` file).
//!
//! Version numbers start at 1 for a name and rise by one with every new
//! value; a name deleted and set again starts at 1. A name read from a
//! vault written before versions were kept is version 1, set by someone
//! unknown.

use flux_protocol::SecretValue;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt;
use std::ops::Deref;

/// Longest executable path kept with a version, in bytes; a longer one is
/// cut at a character boundary and ends in `…`.
pub const MAX_EXE_LEN: usize = 256;

/// One secret's current value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: SecretValue,
    /// When it was set, ms since the Unix epoch.
    pub set_at_ms: u64,
}

/// Who made a value current: the peer's uid and executable, as the kernel
/// reported them to fluxd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetBy {
    pub uid: u32,
    /// The executable's path, when fluxd could read it (at most
    /// [`MAX_EXE_LEN`] bytes).
    pub exe: Option<String>,
}

impl SetBy {
    /// `uid` and `exe`, the path bounded to [`MAX_EXE_LEN`] bytes.
    pub fn new(uid: u32, exe: Option<&str>) -> Self {
        Self {
            uid,
            exe: exe.map(bound_exe),
        }
    }
}

fn bound_exe(exe: &str) -> String {
    if exe.len() <= MAX_EXE_LEN {
        return exe.to_owned();
    }
    let mut end = MAX_EXE_LEN - '…'.len_utf8();
    while !exe.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &exe[..end])
}

/// One version of a secret: an earlier value, or (from
/// [`Secrets::versions_of`]) the current one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub version: u64,
    pub value: SecretValue,
    /// When it was set, ms since the Unix epoch.
    pub set_at_ms: u64,
    /// Who set it, when known.
    pub set_by: Option<SetBy>,
}

/// What a vault keeps of a name besides its current value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versions {
    /// The current value's version number (from 1).
    pub current: u64,
    /// Who set the current value, when known.
    pub set_by: Option<SetBy>,
    /// Earlier values, newest first; version numbers strictly falling, all
    /// below `current`.
    pub previous: Vec<Version>,
}

impl Default for Versions {
    fn default() -> Self {
        Self {
            current: 1,
            set_by: None,
            previous: Vec::new(),
        }
    }
}

impl Versions {
    fn is_default(&self) -> bool {
        self.current == 1 && self.set_by.is_none() && self.previous.is_empty()
    }
}

fn default_versions() -> &'static Versions {
    static DEFAULT: std::sync::OnceLock<Versions> = std::sync::OnceLock::new();
    DEFAULT.get_or_init(Versions::default)
}

/// What [`Secrets::set`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOutcome {
    /// The name was new: version 1.
    Created,
    /// A new version; the value it replaced is kept (within `keep`).
    Updated,
    /// The value was already current: no new version, nothing changed.
    Unchanged,
}

/// What [`Secrets::rollback`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolledBack {
    /// The earlier version whose value is current again.
    pub from: u64,
    /// The new version that holds it.
    pub version: u64,
}

/// Why [`Secrets::rollback`] refused. Never holds a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackError {
    /// The name is not set.
    NotSet,
    /// No earlier version is kept.
    NoEarlierVersion { current: u64 },
    /// The version asked for is the current one.
    IsCurrent(u64),
    /// The version asked for is not kept (too old, or never existed).
    NotKept { version: u64, kept: Vec<u64> },
    /// The version asked for holds the value that is current now.
    SameValue { version: u64, current: u64 },
}

impl fmt::Display for RollbackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotSet => f.write_str("is not set"),
            Self::NoEarlierVersion { current } => write!(
                f,
                "has no earlier version to roll back to (version {current} is the only one kept)"
            ),
            Self::IsCurrent(v) => write!(f, "version {v} is already the current one"),
            Self::NotKept { version, kept } => {
                let kept: Vec<String> = kept.iter().map(u64::to_string).collect();
                write!(
                    f,
                    "version {version} is not kept (the earlier versions kept are {})",
                    kept.join(", ")
                )
            }
            Self::SameValue { version, current } => write!(
                f,
                "version {version} holds the same value as the current version {current}: nothing to roll back"
            ),
        }
    }
}

/// A project's secrets: current entries by name, with the versions kept
/// of each (see the module docs). Derefs to the map of current entries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Secrets {
    entries: BTreeMap<String, Entry>,
    /// Only names whose versions differ from [`Versions::default`].
    versions: BTreeMap<String, Versions>,
}

impl Deref for Secrets {
    type Target = BTreeMap<String, Entry>;

    fn deref(&self) -> &Self::Target {
        &self.entries
    }
}

impl FromIterator<(String, Entry)> for Secrets {
    fn from_iter<I: IntoIterator<Item = (String, Entry)>>(iter: I) -> Self {
        Self {
            entries: iter.into_iter().collect(),
            versions: BTreeMap::new(),
        }
    }
}

impl IntoIterator for Secrets {
    type Item = (String, Entry);
    type IntoIter = std::collections::btree_map::IntoIter<String, Entry>;

    /// The current entries (the versions are dropped).
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<'a> IntoIterator for &'a Secrets {
    type Item = (&'a String, &'a Entry);
    type IntoIter = std::collections::btree_map::Iter<'a, String, Entry>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter()
    }
}

impl Secrets {
    /// No secrets.
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts `entry` in place as `name`'s current value, forgetting any
    /// versions of the name: for building a vault from scratch. A change to
    /// a served project goes through [`Secrets::set`].
    pub fn insert(&mut self, name: String, entry: Entry) -> Option<Entry> {
        self.versions.remove(&name);
        self.entries.insert(name, entry)
    }

    /// Removes a name with all its versions.
    pub fn remove(&mut self, name: &str) -> Option<Entry> {
        self.versions.remove(name);
        self.entries.remove(name)
    }

    /// Builds secrets from entries and versions sorted by name (what a
    /// parsed document yields), without a lookup per name; versions of a
    /// name that is not an entry, and default ones, are left out.
    pub(crate) fn from_sorted(
        entries: Vec<(String, Entry)>,
        versions: Vec<(String, Versions)>,
    ) -> Self {
        let entries: BTreeMap<String, Entry> = entries.into_iter().collect();
        let versions = versions
            .into_iter()
            .filter(|(name, v)| !v.is_default() && entries.contains_key(name))
            .collect();
        Self { entries, versions }
    }

    /// The versions kept of `name` (the default for a name that has none
    /// recorded); `None` when it is not set.
    pub fn versions(&self, name: &str) -> Option<&Versions> {
        self.entries.get(name)?;
        Some(
            self.versions
                .get(name)
                .unwrap_or_else(|| default_versions()),
        )
    }

    /// Every name with its current entry and its versions, in name order,
    /// in one walk of both maps.
    pub fn iter_versions(&self) -> impl Iterator<Item = (&String, &Entry, &Versions)> {
        let mut versions = self.versions.iter().peekable();
        self.entries.iter().map(move |(name, entry)| {
            while versions.next_if(|(v, _)| *v < name).is_some() {}
            let kept = match versions.next_if(|(v, _)| *v == name) {
                Some((_, v)) => v,
                None => default_versions(),
            };
            (name, entry, kept)
        })
    }

    /// Every version of `name`, the current one first, then the earlier
    /// ones newest first; `None` when it is not set.
    pub fn versions_of(&self, name: &str) -> Option<Vec<Version>> {
        let entry = self.entries.get(name)?;
        let versions = self.versions(name)?;
        let mut all = Vec::with_capacity(1 + versions.previous.len());
        all.push(Version {
            version: versions.current,
            value: entry.value.clone(),
            set_at_ms: entry.set_at_ms,
            set_by: versions.set_by.clone(),
        });
        all.extend(versions.previous.iter().cloned());
        Some(all)
    }

    /// True when any name has versions recorded beyond the default.
    pub fn has_versions(&self) -> bool {
        !self.versions.is_empty()
    }

    /// The same current entries without any versions: what fluxd serves
    /// from memory (earlier values stay in the vault until asked for).
    pub fn without_versions(mut self) -> Self {
        self.versions = BTreeMap::new();
        self
    }

    /// A copy of the current entries, without any versions.
    pub fn current_only(&self) -> Self {
        Self {
            entries: self.entries.clone(),
            versions: BTreeMap::new(),
        }
    }

    /// Makes `value` the current value of `name` as a new version, set at
    /// `at_ms` by `by`; the value it replaces is kept as an earlier version,
    /// at most `keep` of them (0 keeps none). A value equal to the current
    /// one is no new version and changes nothing.
    pub fn set(
        &mut self,
        name: &str,
        value: SecretValue,
        at_ms: u64,
        by: Option<SetBy>,
        keep: usize,
    ) -> SetOutcome {
        let Some(entry) = self.entries.get_mut(name) else {
            self.entries.insert(
                name.to_owned(),
                Entry {
                    value,
                    set_at_ms: at_ms,
                },
            );
            self.versions.remove(name);
            if by.is_some() {
                self.versions.insert(
                    name.to_owned(),
                    Versions {
                        set_by: by,
                        ..Versions::default()
                    },
                );
            }
            return SetOutcome::Created;
        };
        if entry.value == value {
            return SetOutcome::Unchanged;
        }
        let versions = self.versions.entry(name.to_owned()).or_default();
        let old = std::mem::replace(
            entry,
            Entry {
                value,
                set_at_ms: at_ms,
            },
        );
        versions.previous.insert(
            0,
            Version {
                version: versions.current,
                value: old.value,
                set_at_ms: old.set_at_ms,
                set_by: versions.set_by.take(),
            },
        );
        versions.previous.truncate(keep);
        versions.current += 1;
        versions.set_by = by;
        SetOutcome::Updated
    }

    /// Makes the value of earlier version `to` (the newest earlier one when
    /// `None`) of `name` current again, as a new version set at `at_ms` by
    /// `by`; the value it replaces is kept like a [`Secrets::set`]'s.
    pub fn rollback(
        &mut self,
        name: &str,
        to: Option<u64>,
        at_ms: u64,
        by: Option<SetBy>,
        keep: usize,
    ) -> Result<RolledBack, RollbackError> {
        let entry = self.entries.get(name).ok_or(RollbackError::NotSet)?;
        let versions = self.versions(name).ok_or(RollbackError::NotSet)?;
        let current = versions.current;
        let target = match to {
            None => versions
                .previous
                .first()
                .ok_or(RollbackError::NoEarlierVersion { current })?,
            Some(v) if v == current => return Err(RollbackError::IsCurrent(v)),
            Some(v) => versions
                .previous
                .iter()
                .find(|p| p.version == v)
                .ok_or_else(|| {
                    if versions.previous.is_empty() {
                        RollbackError::NoEarlierVersion { current }
                    } else {
                        RollbackError::NotKept {
                            version: v,
                            kept: versions.previous.iter().map(|p| p.version).collect(),
                        }
                    }
                })?,
        };
        if target.value == entry.value {
            return Err(RollbackError::SameValue {
                version: target.version,
                current,
            });
        }
        let (from, value) = (target.version, target.value.clone());
        let outcome = self.set(name, value, at_ms, by, keep);
        debug_assert_eq!(outcome, SetOutcome::Updated);
        Ok(RolledBack {
            from,
            version: current + 1,
        })
    }

    /// Keeps at most `keep` earlier versions of every name (a lowered
    /// `keep_versions` applies to the whole vault at its next write).
    pub fn keep_versions(&mut self, keep: usize) {
        for versions in self.versions.values_mut() {
            versions.previous.truncate(keep);
        }
        self.versions.retain(|_, v| !v.is_default());
    }

    /// Bytes of names and values — the current values and every earlier
    /// one kept: what `[limits] max_project_bytes` bounds.
    pub fn stored_bytes(&self) -> usize {
        self.current_bytes()
            + self
                .versions
                .values()
                .flat_map(|v| &v.previous)
                .map(|p| p.value.len())
                .sum::<usize>()
    }

    /// Bytes of names and current values only.
    pub fn current_bytes(&self) -> usize {
        self.entries
            .iter()
            .map(|(n, e)| n.len() + e.value.len())
            .sum()
    }

    /// Drops earlier versions, the oldest first (by when they were set,
    /// across all names), until [`Secrets::stored_bytes`] is at most
    /// `limit` or none is left. Returns how many were dropped.
    pub fn drop_oldest_versions(&mut self, limit: usize) -> usize {
        let mut bytes = self.stored_bytes();
        if bytes <= limit {
            return 0;
        }
        // Each name's oldest kept version is the last of its list.
        let mut heap: BinaryHeap<std::cmp::Reverse<(u64, u64, String)>> = self
            .versions
            .iter()
            .filter_map(|(name, v)| {
                v.previous
                    .last()
                    .map(|p| std::cmp::Reverse((p.set_at_ms, p.version, name.clone())))
            })
            .collect();
        let mut dropped = 0;
        while bytes > limit {
            let Some(std::cmp::Reverse((_, _, name))) = heap.pop() else {
                break;
            };
            let versions = self.versions.get_mut(&name).expect("a name in the heap");
            let old = versions.previous.pop().expect("a version in the heap");
            bytes -= old.value.len();
            dropped += 1;
            if let Some(p) = versions.previous.last() {
                heap.push(std::cmp::Reverse((p.set_at_ms, p.version, name)));
            }
        }
        self.versions.retain(|_, v| !v.is_default());
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by(uid: u32) -> Option<SetBy> {
        Some(SetBy::new(uid, Some("/usr/bin/fluxctl")))
    }

    fn values(s: &Secrets, name: &str) -> Vec<(u64, String)> {
        s.versions_of(name)
            .unwrap()
            .into_iter()
            .map(|v| (v.version, v.value.expose().to_owned()))
            .collect()
    }

    #[test]
    fn sets_keep_earlier_values_up_to_keep() {
        let mut s = Secrets::new();
        assert_eq!(s.set("A", "1".into(), 10, by(1), 2), SetOutcome::Created);
        assert_eq!(s.set("A", "2".into(), 20, by(2), 2), SetOutcome::Updated);
        assert_eq!(s.set("A", "3".into(), 30, by(3), 2), SetOutcome::Updated);
        assert_eq!(s.set("A", "4".into(), 40, by(4), 2), SetOutcome::Updated);
        assert_eq!(
            values(&s, "A"),
            [(4, "4".into()), (3, "3".into()), (2, "2".into())]
        );
        let all = s.versions_of("A").unwrap();
        assert_eq!(all[0].set_by, by(4));
        assert_eq!(all[1].set_by, by(3));
        assert_eq!((all[1].set_at_ms, all[2].set_at_ms), (30, 20));
        assert_eq!(s["A"].value.expose(), "4");
        // The same value again is no new version.
        assert_eq!(s.set("A", "4".into(), 50, by(5), 2), SetOutcome::Unchanged);
        assert_eq!(s.versions("A").unwrap().current, 4);
        assert_eq!(s["A"].set_at_ms, 40);
    }

    #[test]
    fn keep_zero_keeps_no_earlier_value_but_counts_versions() {
        let mut s = Secrets::new();
        s.set("A", "1".into(), 10, by(1), 0);
        s.set("A", "2".into(), 20, by(1), 0);
        assert_eq!(values(&s, "A"), [(2, "2".into())]);
        assert!(matches!(
            s.rollback("A", None, 30, by(1), 0),
            Err(RollbackError::NoEarlierVersion { current: 2 })
        ));
    }

    #[test]
    fn rollback_makes_an_earlier_value_current_as_a_new_version() {
        let mut s = Secrets::new();
        for (i, v) in ["a", "b", "c"].iter().enumerate() {
            s.set("K", (*v).into(), i as u64, by(1), 5);
        }
        let r = s.rollback("K", None, 100, by(7), 5).unwrap();
        assert_eq!(
            r,
            RolledBack {
                from: 2,
                version: 4
            }
        );
        assert_eq!(s["K"].value.expose(), "b");
        assert_eq!(s.versions("K").unwrap().set_by, by(7));
        let r = s.rollback("K", Some(1), 101, by(7), 5).unwrap();
        assert_eq!(
            r,
            RolledBack {
                from: 1,
                version: 5
            }
        );
        assert_eq!(
            values(&s, "K"),
            [
                (5, "a".into()),
                (4, "b".into()),
                (3, "c".into()),
                (2, "b".into()),
                (1, "a".into())
            ]
        );
        assert_eq!(
            s.rollback("K", Some(5), 102, None, 5),
            Err(RollbackError::IsCurrent(5))
        );
        assert_eq!(
            s.rollback("K", Some(1), 102, None, 5),
            Err(RollbackError::SameValue {
                version: 1,
                current: 5
            })
        );
        assert_eq!(
            s.rollback("K", Some(9), 102, None, 5),
            Err(RollbackError::NotKept {
                version: 9,
                kept: vec![4, 3, 2, 1]
            })
        );
        assert_eq!(
            s.rollback("NOPE", None, 102, None, 5),
            Err(RollbackError::NotSet)
        );
        for e in [
            RollbackError::NotKept {
                version: 9,
                kept: vec![4, 3],
            },
            RollbackError::SameValue {
                version: 1,
                current: 5,
            },
        ] {
            assert!(!e.to_string().contains('"'), "{e}");
        }
    }

    #[test]
    fn remove_and_insert_forget_versions() {
        let mut s = Secrets::new();
        s.set("A", "1".into(), 1, by(1), 5);
        s.set("A", "2".into(), 2, by(1), 5);
        s.remove("A");
        assert!(!s.has_versions());
        s.set("A", "3".into(), 3, None, 5);
        assert_eq!(values(&s, "A"), [(1, "3".into())]);
        s.set("B", "1".into(), 1, by(1), 5);
        s.set("B", "2".into(), 2, by(1), 5);
        s.insert(
            "B".into(),
            Entry {
                value: "x".into(),
                set_at_ms: 3,
            },
        );
        assert_eq!(values(&s, "B"), [(1, "x".into())]);
    }

    #[test]
    fn bytes_count_earlier_values_and_the_oldest_go_first() {
        let mut s = Secrets::new();
        s.set("A", "aaaa".into(), 1, None, 5);
        s.set("B", "bbbb".into(), 2, None, 5);
        s.set("A", "AAAA".into(), 3, None, 5);
        s.set("B", "BBBB".into(), 4, None, 5);
        s.set("A", "xxxx".into(), 5, None, 5);
        // Current: A, B (2 × 5); earlier: A v1 (t1), A v2 (t3), B v1 (t2).
        assert_eq!(s.current_bytes(), 10);
        assert_eq!(s.stored_bytes(), 22);
        assert_eq!(s.drop_oldest_versions(22), 0);
        assert_eq!(s.drop_oldest_versions(17), 2);
        assert_eq!(values(&s, "A"), [(3, "xxxx".into()), (2, "AAAA".into())]);
        assert_eq!(values(&s, "B"), [(2, "BBBB".into())]);
        assert_eq!(s.drop_oldest_versions(0), 1);
        assert_eq!(s.stored_bytes(), 10);
        assert!(!s.has_versions() || s.versions("A").unwrap().previous.is_empty());
    }

    #[test]
    fn iter_versions_walks_both_maps_in_step() {
        let mut s = Secrets::new();
        for n in ["A", "B", "C", "D"] {
            s.set(n, "1".into(), 1, None, 5);
        }
        s.set("B", "2".into(), 2, by(1), 5);
        s.set("D", "2".into(), 2, None, 5);
        let walked: Vec<(&str, u64)> = s
            .iter_versions()
            .map(|(n, _, v)| (n.as_str(), v.current))
            .collect();
        assert_eq!(walked, [("A", 1), ("B", 2), ("C", 1), ("D", 2)]);
        for (name, _, v) in s.iter_versions() {
            assert_eq!(Some(v), s.versions(name));
        }
    }

    #[test]
    fn long_executable_paths_are_bounded() {
        let long = format!("/{}", "é".repeat(400));
        let b = SetBy::new(1, Some(&long));
        let exe = b.exe.unwrap();
        assert!(
            exe.len() <= MAX_EXE_LEN && exe.ends_with('…'),
            "{}",
            exe.len()
        );
        assert_eq!(SetBy::new(1, Some("/bin/x")).exe.as_deref(), Some("/bin/x"));
    }
}
