//! Metrics: counters and gauges kept where the work happens, rendered in
//! the Prometheus text format by [`crate::server::exposition`].
//!
//! Nothing here takes a lock on the request path. Each project holds its
//! own [`ProjectMetrics`] (in its [`crate::project::Project`]), so counting
//! a `get` is one relaxed atomic add on a counter that project's
//! connections already reach; the daemon-wide ones ([`DaemonMetrics`]) are
//! atomics too. Request kinds are counted by [`op_index`] — the kind's
//! place in [`RequestKind::ALL`], the protocol's one list of kinds — times
//! four [`Outcome`]s.
//!
//! Metrics hold names of projects and operations and numbers: never a
//! secret's name, never a value.

use flux_protocol::message::{Request, RequestKind};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// How many request kinds there are: [`RequestKind::ALL`] in protocol
/// order, each kind's `op` label its [`RequestKind::op`].
pub const OPS: usize = RequestKind::ALL.len();

/// The slot of `req`'s kind among the counters: its [`RequestKind::index`].
pub fn op_index(req: &Request) -> usize {
    req.kind().index()
}

/// How a request ended: the `result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed and answered.
    Ok,
    /// Refused by the policy (role, wrong socket, second handshake).
    Denied,
    /// Allowed, and answered `not_found`: the name is not set. Counted
    /// apart from errors, since `get(key, fallback)` asks for names that
    /// may be missing on purpose.
    NotFound,
    /// Allowed, and failed (invalid name, a limit, the disk…).
    Error,
}

impl Outcome {
    /// Every outcome, in slot order.
    pub const ALL: [Outcome; 4] = [
        Outcome::Ok,
        Outcome::Denied,
        Outcome::NotFound,
        Outcome::Error,
    ];

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Denied => "denied",
            Self::NotFound => "not_found",
            Self::Error => "error",
        }
    }

    fn slot(self) -> usize {
        match self {
            Self::Ok => 0,
            Self::Denied => 1,
            Self::NotFound => 2,
            Self::Error => 3,
        }
    }
}

/// Requests by kind and outcome.
#[derive(Debug)]
pub struct RequestCounters {
    counts: [AtomicU64; OPS * Outcome::ALL.len()],
}

impl Default for RequestCounters {
    fn default() -> Self {
        Self {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl RequestCounters {
    /// Counts one request of kind `op` (an [`op_index`]) that ended so.
    pub fn count(&self, op: usize, outcome: Outcome) {
        self.counts[op * Outcome::ALL.len() + outcome.slot()].fetch_add(1, Ordering::Relaxed);
    }

    /// How many requests of kind `op` ended so.
    pub fn get(&self, op: usize, outcome: Outcome) -> u64 {
        self.counts[op * Outcome::ALL.len() + outcome.slot()].load(Ordering::Relaxed)
    }
}

/// Upper bounds of [`Histogram`]'s buckets, in seconds.
pub const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// A latency histogram of atomics (cumulative buckets are summed when
/// rendered).
#[derive(Debug)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }
}

/// A histogram's numbers at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Observations at or below each of [`BUCKETS`], cumulative.
    pub cumulative: [u64; BUCKETS.len()],
    pub count: u64,
    pub sum_seconds: f64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Its numbers now.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = [0; BUCKETS.len()];
        let mut running = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            running += b.load(Ordering::Relaxed);
            cumulative[i] = running;
        }
        HistogramSnapshot {
            cumulative,
            count: self.count.load(Ordering::Relaxed).max(running),
            sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// One project's counters, kept in the project.
#[derive(Debug, Default)]
pub struct ProjectMetrics {
    /// Requests on the project's socket.
    pub requests: RequestCounters,
    /// Connections open to the project's socket.
    pub connections: AtomicI64,
    /// Vault or key files that could not be used (at load or on a reload).
    pub load_failures: AtomicU64,
    /// Times the project's revision record was found missing and rebuilt.
    pub records_rebuilt: AtomicU64,
    /// From a write's start to its snapshot being served: `set`,
    /// `set_many`, `delete`, `vault restore`.
    pub apply_write: Histogram,
    /// From a reload's start to the new snapshot being served: a vault
    /// replaced outside fluxd, a fleet peer's write, SIGHUP.
    pub apply_reload: Histogram,
}

/// The daemon-wide counters, kept in [`crate::server::Services`].
#[derive(Debug, Default)]
pub struct DaemonMetrics {
    /// Requests on the control socket.
    pub control: RequestCounters,
    /// Connections open to the control socket, and to project sockets.
    pub control_connections: AtomicI64,
    pub project_connections: AtomicI64,
    /// Connections ever accepted, control and project.
    pub control_accepted: AtomicU64,
    pub project_accepted: AtomicU64,
}

/// An open connection, counted until it is dropped.
#[derive(Debug)]
pub struct ConnectionGauge {
    daemon: Arc<DaemonMetrics>,
    /// The project's counters, on a project socket.
    project: Option<Arc<ProjectMetrics>>,
}

impl ConnectionGauge {
    /// Counts an accepted connection: to the control socket when `project`
    /// is none, else to that project's socket.
    pub fn open(daemon: Arc<DaemonMetrics>, project: Option<Arc<ProjectMetrics>>) -> Self {
        match &project {
            Some(p) => {
                daemon.project_accepted.fetch_add(1, Ordering::Relaxed);
                daemon.project_connections.fetch_add(1, Ordering::Relaxed);
                p.connections.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                daemon.control_accepted.fetch_add(1, Ordering::Relaxed);
                daemon.control_connections.fetch_add(1, Ordering::Relaxed);
            }
        }
        Self { daemon, project }
    }
}

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        match &self.project {
            Some(p) => {
                self.daemon
                    .project_connections
                    .fetch_sub(1, Ordering::Relaxed);
                p.connections.fetch_sub(1, Ordering::Relaxed);
            }
            None => {
                self.daemon
                    .control_connections
                    .fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// The fleet store's state, for the `flux_fleet_*` gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetGauges {
    /// etcd is taken to be unreachable now.
    pub outage: bool,
    /// The newest etcd revision this host has applied (from a watch or a
    /// full read).
    pub applied_revision: i64,
    /// How many fleet problems this host reports.
    pub problems: usize,
    /// The last full read of etcd did not finish (the host serves what it
    /// holds and keeps trying).
    pub unsynced: bool,
    /// Envelopes refused since the start (unsigned, stranger-signed,
    /// forged, rolled back, over the envelope cap).
    pub refused_envelopes: u64,
    /// Bytes of verified envelopes held in memory.
    pub held_bytes: u64,
    /// etcd range pages read, and pages asked again smaller because an
    /// answer was too slow.
    pub read_pages: u64,
    pub read_pages_shrunk: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_kind_has_its_own_slot_named_as_its_op() {
        let all = flux_protocol::samples::all();
        assert_eq!(all.len(), OPS);
        for (i, r) in all.iter().enumerate() {
            assert_eq!(op_index(r), i, "{}", r.op());
            assert_eq!(RequestKind::ALL[i].op(), r.op());
        }
    }

    #[test]
    fn the_histogram_is_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.cumulative[0], 1);
        assert_eq!(s.cumulative[5], 2);
        assert_eq!(s.cumulative[BUCKETS.len() - 1], 2);
        assert_eq!(s.count, 3);
        assert!((s.sum_seconds - 60.0305).abs() < 1e-6);
    }

    #[test]
    fn a_connection_gauge_counts_down_when_dropped() {
        let daemon = Arc::new(DaemonMetrics::default());
        let project = Arc::new(ProjectMetrics::default());
        {
            let _a = ConnectionGauge::open(daemon.clone(), Some(project.clone()));
            let _b = ConnectionGauge::open(daemon.clone(), None);
            assert_eq!(daemon.project_connections.load(Ordering::Relaxed), 1);
            assert_eq!(daemon.control_connections.load(Ordering::Relaxed), 1);
            assert_eq!(project.connections.load(Ordering::Relaxed), 1);
        }
        assert_eq!(daemon.project_connections.load(Ordering::Relaxed), 0);
        assert_eq!(daemon.control_connections.load(Ordering::Relaxed), 0);
        assert_eq!(project.connections.load(Ordering::Relaxed), 0);
        assert_eq!(daemon.project_accepted.load(Ordering::Relaxed), 1);
    }
}
