//! What the recording side ([`super::Audit`]) and the writer thread share:
//! the queue of entries, the log's failure state and counters, what
//! rotation did; and the limits that pace them.

use flux_protocol::message::AuditTrailEntry;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// How long entries gather in the queue before the writer drains them,
/// when nothing hurries it. With nothing queued, held for a retry or
/// folded, the writer sleeps until an entry arrives: an idle daemon does
/// not wake for its audit log.
pub const BATCH: Duration = Duration::from_millis(5);
/// How often a failing log is tried again.
pub const RETRY: Duration = Duration::from_millis(250);
/// Queue length that wakes the writer early.
pub const HIGH_WATER: usize = 4096;
/// Queue length at which requests wait for the writer (only a writer that
/// is slow, not one that fails, makes a request wait).
pub const QUEUE: usize = 64 * 1024;
/// Entries kept for a retry while the log cannot be written.
pub const RETRY_LIMIT: usize = 16 * 1024;
/// Uids `flux_audit_rotation_drivers_total` names; others count as
/// `uid="other"`.
pub const DRIVER_UIDS: usize = 32;

#[derive(Debug, Default)]
pub(super) struct Queue {
    /// Entries, each with whether it is to be folded.
    pub(super) entries: Vec<(AuditTrailEntry, bool)>,
    /// Entries ever queued, and ever written, folded or dropped.
    pub(super) queued: u64,
    pub(super) done: u64,
    /// Someone waits for everything queued to be written.
    pub(super) hurry: bool,
    /// Flushes asked for, and the last one whose folded lines were
    /// written.
    pub(super) drains_asked: u64,
    pub(super) drained: u64,
    /// The writer sleeps with nothing to do: the first entry queued wakes
    /// it.
    pub(super) asleep: bool,
    /// Times the writer woke (for the tests: an idle log does not wake).
    pub(super) wakes: u64,
}

/// What rotation did, since start.
#[derive(Debug, Default)]
pub(super) struct Rotation {
    pub(super) rotations: AtomicU64,
    /// Files removed while younger than `keep_for`, and the entries of the
    /// last `keep_for` they held.
    pub(super) dropped_files: AtomicU64,
    pub(super) dropped_young_entries: AtomicU64,
    /// Rotations driven by one uid (more than half of the file), by uid.
    pub(super) drivers: Mutex<Drivers>,
}

#[derive(Debug, Default)]
pub(super) struct Drivers {
    pub(super) by_uid: BTreeMap<u32, u64>,
    pub(super) other: u64,
}

#[derive(Debug, Default)]
pub(super) struct Shared {
    pub(super) queue: Mutex<Queue>,
    /// Signals the writer (work to do) and the waiters (work done).
    pub(super) changed: Condvar,
    /// False while the file cannot be written.
    pub(super) failing: AtomicBool,
    /// Why, while it cannot.
    pub(super) error: Mutex<Option<String>>,
    /// Entries lost to a failing log.
    pub(super) dropped: AtomicU64,
    /// Entries the writer holds for a retry.
    pub(super) pending: AtomicU64,
    /// Folded lines waiting for their interval, and decisions folded.
    pub(super) folds: AtomicU64,
    pub(super) folded: AtomicU64,
    pub(super) rotation: Rotation,
}
