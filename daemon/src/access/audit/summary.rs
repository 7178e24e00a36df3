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
    let plain = name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if plain && !name.is_empty() {
        return (name.to_owned(), None);
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
#[derive(Debug, Default)]
pub struct ReadSummaries {
    /// By name (`""` for requests that name nothing), then by operation,
    /// decision, result and program (executable path and hash).
    by_name: HashMap<String, Vec<AuditTrailEntry>>,
    len: usize,
}

impl ReadSummaries {
    /// Counts one decision made for the program `(exe, exe_sha256)`;
    /// `make` builds the entry the first time. Returns true when the
    /// connection holds [`MAX_SUMMARIES`] and should hand them over.
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
        let entries = match self.by_name.get_mut(name) {
            Some(e) => e,
            None => self.by_name.entry(name.to_owned()).or_default(),
        };
        match entries.iter_mut().find(|e| {
            e.op == op
                && e.allowed == allowed
                && e.result == result
                && (e.exe.as_deref(), e.exe_sha256.as_deref()) == program
        }) {
            Some(e) => {
                e.count += 1;
                e.time_ms = time_ms;
            }
            None => {
                entries.push(make());
                self.len += 1;
            }
        }
        self.len >= MAX_SUMMARIES
    }

    /// True when nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Hands every pending summary to `audit`, to be folded per peer.
    pub fn flush(&mut self, audit: &Audit) {
        for (_, entries) in self.by_name.drain() {
            for e in entries {
                audit.fold(e);
            }
        }
        self.len = 0;
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
        let mut all: Vec<AuditTrailEntry> = s.by_name.values().flatten().cloned().collect();
        all.sort_by_key(|e| (e.name.clone(), e.first_ms));
        assert_eq!(all.len(), 3);
        assert_eq!((all[0].count, all[0].first_ms, all[0].time_ms), (10, 0, 9));
        assert_eq!(all[1].count, 1);
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
        let mut all: Vec<AuditTrailEntry> = s.by_name.values().flatten().cloned().collect();
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
