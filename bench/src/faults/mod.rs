//! The load-and-fault suite: each suite runs the real daemon through one
//! kind of trouble, prints what it did and what (if anything) was lost, and
//! returns an [`Outcome`]. `docs/RELIABILITY.md` describes each one.
//!
//! - [`soak`]: 64 readers for 60 s while a writer rotates every 10 ms;
//! - [`crash_loop`]: SIGKILL during bursts of sets, restart, verify;
//! - [`disk_full`]: a full and a read-only state folder during `set`;
//! - [`bad_clients`]: idle, torn, garbage and oversized connections
//!   around a normal client.
//!
//! A failure is something a user would lose or be lied to about: a lost
//! acknowledged write, a wrong or stale value, a vault that no longer
//! opens, a request of a well-behaved client that fails, a daemon that
//! dies. Those make the process exit non-zero. Latency under attack is
//! reported against its target but never fails the run. A suite that
//! cannot run here (no root, no tmpfs) says SKIPPED and why.

pub mod bad_clients;
pub mod crash_loop;
pub mod disk_full;
pub mod soak;

/// What one suite found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// One line: what was done and what was lost.
    pub summary: String,
    /// Correctness failures (non-empty = the suite failed).
    pub failures: Vec<String>,
    /// Why the suite did not run, when it did not.
    pub skipped: Option<String>,
}

impl Outcome {
    /// A suite that could not be carried out.
    pub fn failed(reason: String) -> Self {
        Self {
            summary: "did not complete".into(),
            failures: vec![reason],
            skipped: None,
        }
    }

    /// PASS, FAIL or SKIPPED.
    pub fn status(&self) -> &'static str {
        if !self.failures.is_empty() {
            "FAIL"
        } else if self.skipped.is_some() {
            "SKIPPED"
        } else {
            "PASS"
        }
    }
}

/// A tiny xorshift generator: the suites need cheap, seedable randomness
/// (kill timing, garbage bytes), not cryptographic quality.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded from the clock; the seed is printed so a run can be replayed.
    pub fn from_clock(what: &str) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1;
        println!("{what}: random seed {seed}");
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform-ish in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next() as u8;
        }
    }
}
