//! Read summaries: identical decisions on one connection counted under
//! one entry (then folded again per peer by the writer, see [`super::fold`]),
//! and names bounded before they reach the log. Decisions are identical
//! only when made for the same program: a peer that `exec`s another one
//! on its connection starts new summaries, so its reads are not recorded
//! under the program it ran before.

use super::Audit;
use flux_protocol::message::AuditTrailEntry;
use std::collections::HashMap;

/// Summaries one connection holds before handing them over.
pub const MAX_SUMMARIES: usize = 1024;
/// Denials one connection hands over one by one (each may get a line of
/// its own, within its uid's budget, see [`super::fold`]); past them,
/// identical denials are summarized like reads.
pub const DENIALS_IN_FULL: u32 = 100;
/// Characters of an invalid name the log keeps.
pub const NAME_PREFIX: usize = 64;

/// A name as the log records it: as is when it is short and plain, else
/// its first [`NAME_PREFIX`] characters escaped and marked, with a detail
/// giving its length. A hostile 256 KiB name costs the log a few hundred
/// bytes.
pub fn bounded_name(name: &str) -> (String, Option<String>) {
    bounded_name_into(name, &mut String::new())
}

/// [`bounded_name`], the shown name written into `spare`'s buffer when it
/// is plain (taken out of `spare`, left empty): a connection hands back the
/// name of its last request, so a `get` does not allocate one.
pub fn bounded_name_into(name: &str, spare: &mut String) -> (String, Option<String>) {
    let plain = name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if plain && !name.is_empty() {
        let mut shown = std::mem::take(spare);
        shown.clear();
        shown.push_str(name);
        return (shown, None);
    }
    let prefix: String = name.chars().take(NAME_PREFIX).collect();
    let mut shown = prefix.escape_debug().to_string();
    if prefix.len() < name.len() {
        shown.push('…');
    }
    (shown, Some(format!("invalid name of {} bytes", name.len())))
}

/// One connection's pending summaries (see the module docs): identical
/// decisions counted under one entry until they are handed to the log.
///
/// A function reads the same few names over and over, so the entry counted
/// last is tried first: a repeated read costs a few comparisons, not a
/// hash of its name.
#[derive(Debug, Default)]
pub struct ReadSummaries {
    /// Every pending entry, in the order first seen.
    entries: Vec<AuditTrailEntry>,
    /// By name (`""` for requests that name nothing): the positions in
    /// `entries` of that name's entries, one per operation, decision,
    /// result and program (executable path and hash).
    by_name: HashMap<String, Vec<usize>>,
    /// The position of the entry counted last.
    last: Option<usize>,
}

/// Whether `e` counts decisions of this name, operation, decision, result
/// and program.
fn same(
    e: &AuditTrailEntry,
    name: &str,
    op: &str,
    allowed: bool,
    result: &str,
    program: (Option<&str>, Option<&str>),
) -> bool {
    e.allowed == allowed
        && e.op == op
        && e.result == result
        && e.name.as_deref().unwrap_or("") == name
        && (e.exe.as_deref(), e.exe_sha256.as_deref()) == program
}

impl ReadSummaries {
    /// Counts one decision made for the program `(exe, exe_sha256)`;
    /// `make` builds the entry the first time (its name is `name`, or none
    /// for `""`). Returns true when the connection holds [`MAX_SUMMARIES`]
    /// and should hand them over.
    #[allow(clippy::too_many_arguments)]
    pub fn count(
        &mut self,
        name: &str,
        op: &str,
        allowed: bool,
        result: &str,
        program: (Option<&str>, Option<&str>),
        time_ms: u64,
        make: impl FnOnce() -> AuditTrailEntry,
    ) -> bool {
        let hit = self
            .last
            .filter(|&i| same(&self.entries[i], name, op, allowed, result, program))
            .or_else(|| {
                let entries = &self.entries;
                self.by_name
                    .get(name)?
                    .iter()
                    .copied()
                    .find(|&i| same(&entries[i], name, op, allowed, result, program))
            });
        let i = match hit {
            Some(i) => {
                let e = &mut self.entries[i];
                e.count += 1;
                e.time_ms = time_ms;
                i
            }
            None => {
                let i = self.entries.len();
                self.entries.push(make());
                match self.by_name.get_mut(name) {
                    Some(at) => at.push(i),
                    None => {
                        self.by_name.insert(name.to_owned(), vec![i]);
                    }
                }
                i
            }
        };
        self.last = Some(i);
        self.entries.len() >= MAX_SUMMARIES
    }

    /// True when nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Hands every pending summary to `audit`, to be folded per peer.
    pub fn flush(&mut self, audit: &Audit) {
        self.by_name.clear();
        self.last = None;
        for e in self.entries.drain(..) {
            audit.fold(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::audit::tests::entry;

    #[test]
    fn bounded_names() {
        assert_eq!(
            bounded_name("OPENAI_API_KEY"),
            ("OPENAI_API_KEY".into(), None)
        );
        let (shown, detail) = bounded_name(&"A".repeat(256 * 1024));
        assert!(shown.len() < 80, "{}", shown.len());
        assert!(shown.ends_with('…'));
        assert_eq!(detail.as_deref(), Some("invalid name of 262144 bytes"));
        let (shown, _) = bounded_name("bad\u{1b}[2J\nname");
        assert!(
            !shown.contains('\u{1b}') && !shown.contains('\n'),
            "{shown}"
        );
    }

    #[test]
    fn summaries_count_identical_decisions() {
        let mut s = ReadSummaries::default();
        let none = (None, None);
        for t in 0..10 {
            s.count("A", "get", true, "ok", none, t, || entry("get", "A", t));
        }
        s.count("A", "get", true, "not_found", none, 11, || {
            entry("get", "A", 11)
        });
        s.count("B", "get", true, "ok", none, 12, || entry("get", "B", 12));
        let mut all: Vec<AuditTrailEntry> = s.entries.clone();
        all.sort_by_key(|e| (e.name.clone(), e.first_ms));
        assert_eq!(all.len(), 3);
        assert_eq!((all[0].count, all[0].first_ms, all[0].time_ms), (10, 0, 9));
        assert_eq!(all[1].count, 1);
    }

    #[test]
    fn alternating_names_and_results_each_keep_their_own_count() {
        let mut s = ReadSummaries::default();
        let none = (None, None);
        let make = |name: &'static str, result: &'static str| {
            move || {
                let mut e = entry("get", name, 0);
                e.result = result.into();
                e
            }
        };
        for t in 0..6 {
            let (name, result) = [("A", "ok"), ("B", "ok"), ("A", "not_found")][t as usize % 3];
            s.count(name, "get", true, result, none, t, make(name, result));
        }
        // Another operation on a name already held, and a request naming
        // nothing.
        s.count("A", "get_all", true, "ok", none, 7, || {
            entry("get_all", "A", 7)
        });
        s.count("", "get_all", true, "ok", none, 8, || AuditTrailEntry {
            name: None,
            ..entry("get_all", "", 8)
        });
        s.count("", "get_all", true, "ok", none, 9, || unreachable!());
        let counts: Vec<(Option<&str>, &str, &str, u64)> = s
            .entries
            .iter()
            .map(|e| (e.name.as_deref(), e.op.as_str(), e.result.as_str(), e.count))
            .collect();
        assert_eq!(
            counts,
            [
                (Some("A"), "get", "ok", 2),
                (Some("B"), "get", "ok", 2),
                (Some("A"), "get", "not_found", 2),
                (Some("A"), "get_all", "ok", 1),
                (None, "get_all", "ok", 2),
            ]
        );
        // Handed over: nothing held, and counting starts again.
        s.flush(&Audit::disabled());
        assert!(s.is_empty());
        s.count("A", "get", true, "ok", none, 10, make("A", "ok"));
        assert_eq!(s.entries.len(), 1);
        assert_eq!(s.entries[0].count, 1);
    }

    #[test]
    fn a_program_run_after_an_exec_gets_summaries_of_its_own() {
        let mut s = ReadSummaries::default();
        let with = |exe: &str, hash: Option<&str>, t| {
            let mut e = entry("get", "A", t);
            e.exe = Some(exe.into());
            e.exe_sha256 = hash.map(str::to_owned);
            e
        };
        let hash = "ab".repeat(32);
        let before = (Some("/usr/bin/python3"), Some(hash.as_str()));
        s.count("A", "get", true, "ok", before, 1, || {
            with("/usr/bin/python3", Some(&hash), 1)
        });
        s.count("A", "get", true, "ok", before, 2, || unreachable!());
        // The process execs another program, then reads the same name.
        let after = (Some("/tmp/other"), None);
        s.count("A", "get", true, "ok", after, 3, || {
            with("/tmp/other", None, 3)
        });
        let mut all: Vec<AuditTrailEntry> = s.entries.clone();
        all.sort_by_key(|e| e.first_ms);
        assert_eq!(all.len(), 2);
        assert_eq!(
            (all[0].count, all[0].exe.as_deref()),
            (2, Some("/usr/bin/python3"))
        );
        assert_eq!(
            (all[1].count, all[1].exe.as_deref()),
            (1, Some("/tmp/other"))
        );
    }
}
