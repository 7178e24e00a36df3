//! Folding per peer: read summaries and denials of one peer counted under
//! one line per interval, across all its connections.
//!
//! Sessions already count a connection's reads (and its denials past the
//! first [`super::DENIALS_IN_FULL`]) into summaries ([`super::ReadSummaries`]);
//! a peer that opens a connection per request still made one line per
//! connection. [`Folds`] runs in the writer thread and folds what sessions
//! hand over ([`super::Audit::fold`]) once more, across connections:
//!
//! - **Key.** A peer is its uid, gid, executable and workload (systemd
//!   unit, slice, cgroup, executable hash): two units of one uid are two
//!   peers, never folded together. A line is kept per peer, project,
//!   operation, name, detail (the names a `diff` compared, a rollback's
//!   version…), decision and result ([`Key`]). The pid is not part of the
//!   key: a line folded from several processes records none, and its
//!   `detail` says how many.
//! - **Interval.** A folded line is written `[audit] summary_interval` after
//!   the first decision it counts, with `count`, `first` and `time` (the
//!   last), or earlier when the log is read (`fluxctl audit`), fluxd stops,
//!   or [`MAX_PENDING`] lines wait.
//! - **Denials in full, within a budget.** A denial is written as its own
//!   line while its peer's uid has budget: [`DENIALS_IN_FULL`] at first,
//!   refilled by one every [`DENIAL_REFILL`]. Past it, denials are folded.
//!   A peer that is denied now and then keeps a line per denial; a flood
//!   gets its first hundred lines, then about ten a minute.
//! - **Names a peer chooses are bounded.** Denials and errors (a `get` of a
//!   name that is not set…) name whatever the peer sends. A uid holds at
//!   most [`CHOSEN_PER_UID`] pending lines of them (and [`READS_PER_UID`]
//!   of reads answered `ok`, whose names are the project's); past that its
//!   decisions are folded under one line per project, operation, decision
//!   and result with no name, detail, executable or workload (a uid can
//!   make up units as it makes up names: transient scopes); its `detail`
//!   says so.
//!
//! So what one uid can make the log write is bounded by interval, not by
//! how many connections or requests it makes: at most
//! [`CHOSEN_PER_UID`] + a few overflow lines per interval for denials and
//! errors, plus ten denials a minute in full. Writes are never folded.

use flux_protocol::message::AuditTrailEntry;
use std::collections::{BTreeMap, HashMap};

/// Denials a uid gets a line each for before its denials are folded.
pub const DENIALS_IN_FULL: u32 = 100;
/// One more denial in full per this many milliseconds (10 a minute).
pub const DENIAL_REFILL: u64 = 6_000;
/// Pending lines of names a uid chose (denials, errors) before the rest
/// are folded without their names.
pub const CHOSEN_PER_UID: usize = 16;
/// Pending lines of reads answered `ok` a uid holds before the rest are
/// folded without their names.
pub const READS_PER_UID: usize = 1024;
/// Pending lines in all; past this everything pending is written.
pub const MAX_PENDING: usize = 16 * 1024;
/// Distinct pids a line remembers to say how many processes it counts.
const PIDS: usize = 8;

/// What lines are folded by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    uid: u32,
    gid: u32,
    /// `None` for an overflow line (and when unknown).
    exe: Option<String>,
    /// The workload: unit, slice, cgroup and executable hash; all `None`
    /// for an overflow line (and when unknown).
    unit: Option<String>,
    slice: Option<String>,
    cgroup: Option<String>,
    exe_sha256: Option<String>,
    project: Option<String>,
    op: String,
    /// `None` for an overflow line (and for requests that name nothing).
    name: Option<String>,
    /// What else the request named (the names a `diff` compared, a
    /// rollback's version…); `None` for an overflow line.
    detail: Option<String>,
    allowed: bool,
    result: String,
    /// Past the uid's bound: names, executables and workloads not kept.
    overflow: bool,
}

/// Whether a decision's name was chosen by the peer (denials, errors) or
/// is one of the project's (reads answered `ok`).
fn chosen(e: &AuditTrailEntry) -> bool {
    !(e.allowed && e.result == "ok")
}

#[derive(Debug)]
struct Fold {
    entry: AuditTrailEntry,
    /// Distinct pids seen, up to [`PIDS`]; `more` once past them.
    pids: Vec<u32>,
    more: bool,
    /// Its place in [`Folds::due`].
    due: (u64, u64),
    chosen: bool,
}

#[derive(Debug, Default)]
struct Uid {
    /// Denials it may still have written in full, and when that was
    /// last refilled.
    budget: u32,
    refilled_ms: u64,
    /// Its pending lines, by [`chosen`].
    chosen: usize,
    reads: usize,
}

/// The pending folded lines (see the module docs).
#[derive(Debug)]
pub struct Folds {
    interval_ms: u64,
    pending: HashMap<Key, Fold>,
    /// When each pending line is due: (due time, sequence) → its key.
    due: BTreeMap<(u64, u64), Key>,
    seq: u64,
    uids: HashMap<u32, Uid>,
    /// Decisions folded into a line with others (not written as their own).
    folded: u64,
}

impl Folds {
    /// Folds written `interval_ms` after their first decision.
    pub fn new(interval_ms: u64) -> Self {
        Self {
            interval_ms: interval_ms.max(1),
            pending: HashMap::new(),
            due: BTreeMap::new(),
            seq: 0,
            uids: HashMap::new(),
            folded: 0,
        }
    }

    /// Lines pending.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// When the first pending line is due, if any is pending.
    pub fn next_due(&self) -> Option<u64> {
        self.due.first_key_value().map(|(&(at, _), _)| at)
    }

    /// Decisions that did not get a line of their own, since start.
    pub fn folded(&self) -> u64 {
        self.folded
    }

    /// Takes a read summary or a denial at `now_ms`. Returns it when it is
    /// to be written as is (a denial within its uid's budget); else folds
    /// it. Returns `None` then; [`Folds::len`] reaching [`MAX_PENDING`]
    /// means everything should be written ([`Folds::drain`]).
    pub fn add(&mut self, entry: AuditTrailEntry, now_ms: u64) -> Option<AuditTrailEntry> {
        let uid = self.uids.entry(entry.uid).or_insert_with(|| Uid {
            budget: DENIALS_IN_FULL,
            refilled_ms: now_ms,
            ..Uid::default()
        });
        if !entry.allowed && entry.count == 1 {
            let earned = now_ms.saturating_sub(uid.refilled_ms) / DENIAL_REFILL;
            if earned > 0 {
                uid.budget = DENIALS_IN_FULL.min(uid.budget.saturating_add(earned as u32));
                uid.refilled_ms += earned * DENIAL_REFILL;
            }
            if uid.budget > 0 {
                uid.budget -= 1;
                return Some(entry);
            }
        }
        let chosen = chosen(&entry);
        let mut key = Key {
            uid: entry.uid,
            gid: entry.gid,
            exe: entry.exe.clone(),
            unit: entry.unit.clone(),
            slice: entry.slice.clone(),
            cgroup: entry.cgroup.clone(),
            exe_sha256: entry.exe_sha256.clone(),
            project: entry.project.clone(),
            op: entry.op.clone(),
            name: entry.name.clone(),
            detail: entry.detail.clone(),
            allowed: entry.allowed,
            result: entry.result.clone(),
            overflow: false,
        };
        if !self.pending.contains_key(&key) {
            let (held, bound) = if chosen {
                (uid.chosen, CHOSEN_PER_UID)
            } else {
                (uid.reads, READS_PER_UID)
            };
            if held >= bound {
                key.exe = None;
                key.unit = None;
                key.slice = None;
                key.cgroup = None;
                key.exe_sha256 = None;
                key.name = None;
                key.detail = None;
                key.overflow = true;
            }
        }
        let interval = self.interval_ms;
        // Due an interval after the first decision, never in the past and
        // never further than an interval ahead (the clock may jump).
        let due_at = |first_ms: u64| {
            first_ms
                .saturating_add(interval)
                .clamp(now_ms, now_ms + interval)
        };
        match self.pending.get_mut(&key) {
            Some(fold) => {
                self.folded += entry.count;
                let e = &mut fold.entry;
                e.count += entry.count;
                e.time_ms = e.time_ms.max(entry.time_ms);
                if entry.first_ms < e.first_ms {
                    e.first_ms = entry.first_ms;
                    let due = (due_at(e.first_ms), fold.due.1);
                    if due.0 < fold.due.0 {
                        self.due.remove(&fold.due);
                        self.due.insert(due, key.clone());
                        fold.due = due;
                    }
                }
                if let Some(pid) = entry.pid
                    && !fold.pids.contains(&pid)
                {
                    if fold.pids.len() < PIDS {
                        fold.pids.push(pid);
                    } else {
                        fold.more = true;
                    }
                }
            }
            None => {
                self.folded += entry.count.saturating_sub(1);
                if chosen {
                    uid.chosen += 1;
                } else {
                    uid.reads += 1;
                }
                self.seq += 1;
                let due = (due_at(entry.first_ms), self.seq);
                self.due.insert(due, key.clone());
                let mut entry = entry;
                if key.overflow {
                    entry.exe = None;
                    entry.unit = None;
                    entry.slice = None;
                    entry.cgroup = None;
                    entry.exe_sha256 = None;
                    entry.name = None;
                    entry.detail = Some(format!(
                        "names, executables and units not recorded: this uid had more than {} different ones in one interval",
                        if chosen {
                            CHOSEN_PER_UID
                        } else {
                            READS_PER_UID
                        }
                    ));
                }
                self.pending.insert(
                    key,
                    Fold {
                        pids: entry.pid.into_iter().collect(),
                        entry,
                        more: false,
                        due,
                        chosen,
                    },
                );
            }
        }
        None
    }

    /// Moves the lines due at `now_ms` to `out`, oldest first.
    pub fn take_due(&mut self, now_ms: u64, out: &mut Vec<AuditTrailEntry>) {
        while let Some(entry) = self.due.first_entry() {
            if entry.key().0 > now_ms {
                break;
            }
            let key = entry.remove();
            self.finish(key, out);
        }
        self.forget_idle(now_ms);
    }

    /// Moves every pending line to `out`.
    pub fn drain(&mut self, out: &mut Vec<AuditTrailEntry>) {
        while let Some((_, key)) = self.due.pop_first() {
            self.finish(key, out);
        }
    }

    fn finish(&mut self, key: Key, out: &mut Vec<AuditTrailEntry>) {
        let Some(fold) = self.pending.remove(&key) else {
            return;
        };
        if let Some(uid) = self.uids.get_mut(&key.uid) {
            if fold.chosen {
                uid.chosen -= 1;
            } else {
                uid.reads -= 1;
            }
        }
        let mut entry = fold.entry;
        if fold.pids.len() > 1 || fold.more {
            entry.pid = None;
            let processes = if fold.more {
                format!("from more than {PIDS} processes")
            } else {
                format!("from {} processes", fold.pids.len())
            };
            entry.detail = Some(match entry.detail.take() {
                Some(d) => format!("{d}; {processes}"),
                None => processes,
            });
        }
        out.push(entry);
    }

    /// Forgets uids with nothing pending and a full budget again.
    fn forget_idle(&mut self, now_ms: u64) {
        if self.uids.len() < 64 {
            return;
        }
        let full = u64::from(DENIALS_IN_FULL) * DENIAL_REFILL;
        self.uids
            .retain(|_, u| u.chosen + u.reads > 0 || now_ms.saturating_sub(u.refilled_ms) < full);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    fn denial(uid: u32, pid: u32, name: &str, t: u64) -> AuditTrailEntry {
        AuditTrailEntry {
            time_ms: t,
            first_ms: t,
            count: 1,
            project: Some("app".into()),
            op: "get".into(),
            name: Some(name.into()),
            uid,
            gid: 100,
            pid: Some(pid),
            exe: Some("/usr/bin/flood".into()),
            allowed: false,
            result: "permission_denied".into(),
            detail: None,
            ..AuditTrailEntry::default()
        }
    }

    fn read(uid: u32, name: &str, count: u64, first: u64, t: u64) -> AuditTrailEntry {
        AuditTrailEntry {
            count,
            first_ms: first,
            allowed: true,
            result: "ok".into(),
            ..denial(uid, 7, name, t)
        }
    }

    #[test]
    fn twenty_thousand_denied_connections_from_one_peer_are_about_a_hundred_lines() {
        let mut f = Folds::new(MIN);
        let mut lines = Vec::new();
        // One denial per connection, each from a new process, over 22 s.
        for i in 0..20_000u64 {
            let t = 1_000_000 + i * 22_000 / 20_000;
            lines.extend(f.add(denial(65533, 1000 + i as u32, "API_KEY", t), t));
            f.take_due(t, &mut lines);
        }
        assert_eq!(
            lines.len(),
            100 + 3,
            "the first hundred, then one in full per 6 s"
        );
        f.drain(&mut lines);
        assert_eq!(lines.len(), 104);
        let counted: u64 = lines.iter().map(|e| e.count).sum();
        assert_eq!(counted, 20_000, "every denial is counted");
        let folded = lines.last().unwrap();
        assert_eq!(folded.count, 20_000 - 103);
        assert_eq!(folded.first_ms, 1_000_000 + 100 * 22_000 / 20_000);
        assert_eq!(folded.time_ms, 1_000_000 + 19_999 * 22_000 / 20_000);
        assert_eq!(folded.pid, None, "folded from many processes");
        assert_eq!(folded.detail.as_deref(), Some("from more than 8 processes"));
        assert_eq!(folded.exe.as_deref(), Some("/usr/bin/flood"));
        assert_eq!(f.folded(), 20_000 - 104);
    }

    #[test]
    fn a_peer_denied_now_and_then_keeps_a_line_per_denial() {
        let mut f = Folds::new(MIN);
        let mut lines = Vec::new();
        // 300 denials, one every 10 s: the budget refills faster.
        for i in 0..300 {
            let t = i * 10_000;
            lines.extend(f.add(denial(1, 1, "A", t), t));
        }
        assert_eq!(lines.len(), 300);
        assert_eq!(f.len(), 0);
    }

    #[test]
    fn a_folded_line_is_due_an_interval_after_its_first_decision() {
        let mut f = Folds::new(MIN);
        let mut out = Vec::new();
        // Two connections of one reader hand over their summaries.
        assert!(f.add(read(5, "K", 10, 1_000, 2_000), 2_000).is_none());
        assert!(f.add(read(5, "K", 4, 3_000, 5_000), 5_000).is_none());
        f.take_due(60_999, &mut out);
        assert!(out.is_empty());
        f.take_due(61_000, &mut out);
        assert_eq!(out.len(), 1);
        let e = &out[0];
        assert_eq!((e.count, e.first_ms, e.time_ms), (14, 1_000, 5_000));
        assert_eq!(e.pid, Some(7), "one process: its pid is kept");
        assert_eq!(e.detail, None);
        // A summary whose first read is an interval old is due at once.
        out.clear();
        f.add(read(5, "K", 3, 100_000, 170_000), 170_000);
        f.take_due(170_000, &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn lines_are_kept_apart_by_peer_project_op_name_and_result() {
        let mut f = Folds::new(MIN);
        let mut out = Vec::new();
        f.add(read(5, "K", 1, 0, 0), 0);
        f.add(read(5, "L", 1, 0, 0), 0);
        f.add(read(6, "K", 1, 0, 0), 0);
        let mut other_exe = read(5, "K", 1, 0, 0);
        other_exe.exe = Some("/usr/bin/other".into());
        f.add(other_exe, 0);
        let mut not_found = read(5, "K", 1, 0, 0);
        not_found.result = "not_found".into();
        f.add(not_found, 0);
        let mut other_project = read(5, "K", 1, 0, 0);
        other_project.project = Some("web".into());
        f.add(other_project, 0);
        let mut other_detail = read(5, "K", 1, 0, 0);
        other_detail.detail = Some("2 names: A, B".into());
        f.add(other_detail, 0);
        f.add(read(5, "K", 1, 0, 0), 0);
        assert_eq!(f.len(), 7);
        f.drain(&mut out);
        assert_eq!(out.iter().map(|e| e.count).sum::<u64>(), 8);
    }

    /// `entry` as a peer in `unit` of `functions.slice` would make it.
    fn in_unit(mut entry: AuditTrailEntry, unit: &str) -> AuditTrailEntry {
        entry.unit = Some(unit.into());
        entry.slice = Some("functions.slice".into());
        entry.cgroup = Some(format!("/functions.slice/{unit}"));
        entry
    }

    #[test]
    fn two_units_of_one_uid_are_never_folded_together() {
        let mut f = Folds::new(MIN);
        let mut out = Vec::new();
        // The same program of the same uid reads the same name from two
        // units, and from one of them again.
        f.add(in_unit(read(5, "K", 3, 0, 0), "billing.service"), 0);
        f.add(in_unit(read(5, "K", 4, 0, 0), "web.service"), 0);
        f.add(in_unit(read(5, "K", 2, 0, 0), "billing.service"), 0);
        // The same unit, another build of the program.
        let mut other_build = in_unit(read(5, "K", 1, 0, 0), "billing.service");
        other_build.exe_sha256 = Some("ab".repeat(32));
        f.add(other_build, 0);
        // No unit at all.
        f.add(read(5, "K", 1, 0, 0), 0);
        assert_eq!(f.len(), 4);
        f.drain(&mut out);
        let count = |unit: Option<&str>, hashed: bool| -> u64 {
            out.iter()
                .filter(|e| e.unit.as_deref() == unit && e.exe_sha256.is_some() == hashed)
                .map(|e| e.count)
                .sum()
        };
        assert_eq!(count(Some("billing.service"), false), 5);
        assert_eq!(count(Some("web.service"), false), 4);
        assert_eq!(count(Some("billing.service"), true), 1);
        assert_eq!(count(None, false), 1);
        let web = out
            .iter()
            .find(|e| e.unit.as_deref() == Some("web.service"))
            .unwrap();
        assert_eq!(web.slice.as_deref(), Some("functions.slice"));
        assert_eq!(web.cgroup.as_deref(), Some("/functions.slice/web.service"));
    }

    #[test]
    fn units_past_a_uids_bound_are_not_recorded() {
        let mut f = Folds::new(MIN);
        let mut out = Vec::new();
        // A uid that makes up a unit per connection (transient scopes)
        // fills its bound like one that makes up names.
        for i in 0..DENIALS_IN_FULL {
            assert!(f.add(denial(9, 1, "X", 0), 0).is_some(), "{i}");
        }
        for i in 0..100 {
            let e = in_unit(denial(9, 1, "X", 1), &format!("run-u{i}.scope"));
            assert!(f.add(e, 1).is_none());
        }
        assert_eq!(f.len(), CHOSEN_PER_UID + 1);
        f.drain(&mut out);
        let overflow = out.iter().find(|e| e.name.is_none()).unwrap();
        assert_eq!(overflow.count, 100 - CHOSEN_PER_UID as u64);
        assert_eq!(
            (&overflow.unit, &overflow.slice, &overflow.cgroup),
            (&None, &None, &None)
        );
        assert!(
            overflow
                .detail
                .as_deref()
                .unwrap()
                .contains("units not recorded"),
            "{overflow:?}"
        );
    }

    #[test]
    fn names_a_peer_chooses_are_bounded_per_uid() {
        let mut f = Folds::new(MIN);
        let mut out = Vec::new();
        // Spend the budget, then deny 5000 different names from 50
        // copies of one program.
        for i in 0..DENIALS_IN_FULL {
            assert!(f.add(denial(9, 1, "X", 0), 0).is_some(), "{i}");
        }
        for i in 0..5000 {
            let mut e = denial(9, 1, &format!("NAME_{i}"), 1);
            e.exe = Some(format!("/tmp/copy{}", i % 50));
            assert!(f.add(e, 1).is_none());
        }
        assert_eq!(f.len(), CHOSEN_PER_UID + 1);
        f.drain(&mut out);
        let overflow = out.iter().find(|e| e.name.is_none()).unwrap();
        assert_eq!(overflow.count, 5000 - CHOSEN_PER_UID as u64);
        assert_eq!(overflow.exe, None);
        assert!(
            overflow.detail.as_deref().unwrap().contains("not recorded"),
            "{overflow:?}"
        );
        // Another uid is not affected, and after the lines are written the
        // uid names names again.
        assert!(f.add(denial(10, 1, "Y", 2), 2).is_some());
        assert!(f.add(denial(9, 1, "NAME_0", 2), 2).is_none());
        out.clear();
        f.drain(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].name.as_deref(), Some("NAME_0"));
    }

    #[test]
    fn a_readers_reads_keep_their_names_up_to_a_thousand_per_interval() {
        let mut f = Folds::new(MIN);
        for i in 0..READS_PER_UID {
            f.add(read(5, &format!("K{i}"), 1, 0, 0), 0);
        }
        f.add(read(5, "ONE_MORE", 1, 0, 0), 0);
        let mut out = Vec::new();
        f.drain(&mut out);
        assert_eq!(out.len(), READS_PER_UID + 1);
        assert_eq!(out.iter().filter(|e| e.name.is_none()).count(), 1);
    }

    #[test]
    fn a_new_line_is_never_due_more_than_an_interval_ahead() {
        let mut f = Folds::new(MIN);
        f.add(read(5, "K", 1, 10 * MIN, 10 * MIN), 10 * MIN);
        let mut out = Vec::new();
        f.add(read(5, "L", 1, 10 * MIN, 10 * MIN), MIN);
        f.take_due(2 * MIN, &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
    }
}
