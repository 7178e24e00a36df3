//! The project sockets' connection threads, watched from one thread.
//!
//! A connection's thread ([`super::direct`]) waits for its next request in
//! a read with no timeout: a read that has to wait with a timeout makes the
//! kernel arm and cancel a timer every time, which cost 5–10 % of a `get`'s
//! CPU on the reference machine. What a timeout would wake the thread
//! for is done here instead, by one thread for all of them, once per tick
//! (the shortest of a second, the frame timeout and the handshake
//! timeout; and not at all while no connection is open):
//!
//! - **A deadline passed** — the handshake timeout before the `Hello`, the
//!   frame timeout once a frame has begun, the idle timeout after the last
//!   answer (each connection publishes its next one in
//!   [`Watched::deadline`]): the connection's reading side is shut, so its
//!   thread's read returns at once; the thread sees [`Ended::Deadline`],
//!   answers as it always did (an error for a missing handshake) and ends.
//! - **A policy reload** since a connection opened: its peer, its groups
//!   looked up again, is decided anew; one with no role left on its socket
//!   is shut the same way ([`Ended::NoRole`]). A reload from before the
//!   connection opened is not its (it was decided under that policy). A
//!   busy connection also sees the reload itself, at its next request.
//! - **Audit summaries due**: a connection's pending read summaries are
//!   shared with the watchdog ([`Watched::summaries`]) and handed to the
//!   audit log when due, though the connection be idle.
//! - **Shutdown** ([`Watchdog::stop`]): every connection's reading side is
//!   shut; a request in flight is still answered.
//!
//! A descriptor is shut only while its connection is registered, under the
//! registry's lock, and a connection leaves the registry before its socket
//! is closed: the watchdog never touches a descriptor that is another
//! file's. A thousand idle connections cost the daemon one wake-up per tick
//! (each thread woke on its own before).

use crate::access::audit::ReadSummaries;
use crate::access::peer::Peer;
use crate::access::{self, Socket};
use crate::server::Services;
use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};
use tracing::warn;

/// The longest tick.
pub const WAKE: Duration = Duration::from_secs(1);

/// A deadline that never comes.
pub const NEVER: u64 = u64::MAX;

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Microseconds since the daemon's first use of this clock: the unit of
/// [`Watched::deadline`] and [`Watched::summary_due`].
pub fn now_us() -> u64 {
    at_us(Instant::now())
}

/// `at` in [`now_us`]'s unit (0 for a time before the epoch).
pub fn at_us(at: Instant) -> u64 {
    at.saturating_duration_since(*EPOCH).as_micros() as u64
}

/// Why the watchdog shut a connection's reading side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Ended {
    /// Not shut by the watchdog.
    No = 0,
    /// Its [`Watched::deadline`] passed.
    Deadline = 1,
    /// A policy reload left its peer no role on its socket.
    NoRole = 2,
}

/// What the watchdog knows of one connection.
#[derive(Debug)]
pub struct Watched {
    fd: RawFd,
    /// When the connection must be woken, in [`now_us`]'s unit; [`NEVER`]:
    /// not at all. Written by the connection's thread.
    pub deadline: AtomicU64,
    /// When its pending audit summaries are due; [`NEVER`]: none pending.
    pub summary_due: AtomicU64,
    ended: AtomicU8,
    /// The last policy reload this connection was decided under (the
    /// reloads' generation): one from before it opened is not its.
    reloads_seen: AtomicU64,
    /// The connection's pending audit summaries, counted by its thread.
    pub summaries: Arc<Mutex<ReadSummaries>>,
    peer: Peer,
    project: String,
}

impl Watched {
    /// A connection on `fd` of `peer` to `project`'s socket, opened under
    /// the policy of reload generation `reloads_seen`, whose pending
    /// summaries are `summaries` (its [`super::conn::Conn`]'s).
    pub fn new(
        fd: RawFd,
        peer: Peer,
        project: String,
        reloads_seen: u64,
        summaries: Arc<Mutex<ReadSummaries>>,
    ) -> Self {
        Self {
            fd,
            deadline: AtomicU64::new(NEVER),
            summary_due: AtomicU64::new(NEVER),
            ended: AtomicU8::new(Ended::No as u8),
            reloads_seen: AtomicU64::new(reloads_seen),
            summaries,
            peer,
            project,
        }
    }

    /// Why the watchdog shut the connection's reading side, if it did.
    pub fn ended(&self) -> Ended {
        match self.ended.load(Ordering::Acquire) {
            1 => Ended::Deadline,
            2 => Ended::NoRole,
            _ => Ended::No,
        }
    }

    /// Shuts the reading side (its thread's read returns at once), saying
    /// why. Called with the registry locked and the connection in it.
    fn end(&self, why: Ended) {
        self.ended.store(why as u8, Ordering::Release);
        let _ = nix::sys::socket::shutdown(self.fd, nix::sys::socket::Shutdown::Read);
    }

    /// Hands the pending summaries to the audit log.
    pub fn flush_summaries(&self, services: &Services) {
        self.summary_due.store(NEVER, Ordering::Relaxed);
        self.summaries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .flush(services.access.audit());
    }

    /// Whether the peer, its groups looked up again, still holds a role on
    /// the connection's socket under `policy`.
    fn keeps_role(&self, policy: &access::policy::Policy) -> bool {
        let mut peer = self.peer.clone();
        peer.refresh_groups();
        access::holds_a_role(policy, &peer.identity, Socket::Project(&self.project))
    }
}

/// The registry of the connection threads and the thread that watches them.
#[derive(Debug, Default)]
pub struct Watchdog {
    stopped: AtomicBool,
    started: AtomicBool,
    /// The connections served on threads, by connection id.
    open: Mutex<HashMap<u64, Arc<Watched>>>,
    /// Wakes the watchdog: its first connection, or the stop.
    changed: Condvar,
}

impl Watchdog {
    fn open(&self) -> MutexGuard<'_, HashMap<u64, Arc<Watched>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes and ends every connection: their reading side is shut, so a
    /// thread waiting for a request reads the end of the stream. The
    /// watchdog's thread ends.
    pub fn stop(&self) {
        let open = self.open();
        self.stopped.store(true, Ordering::Release);
        for w in open.values() {
            let _ = nix::sys::socket::shutdown(w.fd, nix::sys::socket::Shutdown::Read);
        }
        self.changed.notify_all();
    }

    pub fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Counts a connection in; false once the daemon is stopping. The
    /// first one starts the watchdog's thread.
    pub fn enter(
        self: &Arc<Self>,
        id: u64,
        watched: Arc<Watched>,
        services: &Arc<Services>,
    ) -> bool {
        if !self.started.swap(true, Ordering::AcqRel) {
            self.spawn(services);
        }
        let mut open = self.open();
        if self.stopped() {
            return false;
        }
        if open.is_empty() {
            self.changed.notify_all();
        }
        open.insert(id, watched);
        true
    }

    /// Counts a connection out: from now on the watchdog does not touch
    /// its descriptor.
    pub fn leave(&self, id: u64) {
        self.open().remove(&id);
    }

    fn spawn(self: &Arc<Self>, services: &Arc<Services>) {
        let limits = &services.config.limits;
        let tick = WAKE
            .min(limits.frame_timeout)
            .min(limits.handshake_timeout)
            .max(Duration::from_millis(1));
        let (me, services) = (Arc::downgrade(self), Arc::downgrade(services));
        let spawned = std::thread::Builder::new()
            .name("fluxd-watchdog".into())
            .spawn(move || watch(&me, &services, tick));
        if let Err(e) = spawned {
            // The connections still end at the daemon's stop and when
            // their peer closes; their deadlines and idle summaries wait.
            warn!(error = %e, "cannot start the connection watchdog");
        }
    }

    /// One tick: deadlines, a policy reload, summaries due.
    fn tick(&self, services: &Services, reloads: &mut tokio::sync::watch::Receiver<u64>) {
        let watched: Vec<(u64, Arc<Watched>)> =
            self.open().iter().map(|(&id, w)| (id, w.clone())).collect();
        let generation = *reloads.borrow_and_update();
        let mut policy = None;
        let now = now_us();
        let mut to_end = Vec::new();
        for (id, w) in &watched {
            // Only a reload since the connection opened is news to it.
            let reloaded = w.reloads_seen.load(Ordering::Relaxed) < generation;
            if reloaded {
                w.reloads_seen.store(generation, Ordering::Relaxed);
            }
            if reloaded && !w.keeps_role(policy.get_or_insert_with(|| services.access.policy())) {
                warn!(
                    conn = id,
                    "the reloaded policy gives this peer no role here: closing its connection"
                );
                to_end.push((*id, Ended::NoRole));
            } else if w.deadline.load(Ordering::Acquire) <= now {
                to_end.push((*id, Ended::Deadline));
            }
            if w.summary_due.load(Ordering::Relaxed) <= now {
                w.flush_summaries(services);
            }
        }
        if !to_end.is_empty() {
            let open = self.open();
            for (id, why) in to_end {
                if let Some(w) = open.get(&id) {
                    w.end(why);
                }
            }
        }
    }
}

/// The watchdog's thread: a tick while connections are open, asleep while
/// none is; ends with the daemon.
fn watch(me: &Weak<Watchdog>, services: &Weak<Services>, tick: Duration) {
    let Some(mut reloads) = services.upgrade().map(|s| s.access.reloads()) else {
        return;
    };
    loop {
        let Some(dog) = me.upgrade() else { return };
        {
            let open = dog.open();
            if dog.stopped() {
                return;
            }
            let open = if open.is_empty() {
                dog.changed.wait(open).unwrap_or_else(|e| e.into_inner())
            } else {
                dog.changed
                    .wait_timeout(open, tick)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            };
            if dog.stopped() {
                return;
            }
            drop(open);
        }
        let Some(services) = services.upgrade() else {
            return;
        };
        dog.tick(&services, &mut reloads);
    }
}
