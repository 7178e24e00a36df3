//! The closed-loop load driver shared by every `get` target.
//!
//! A [`Target`] opens connections; a [`Conn`] fetches one key. The driver
//! gives each of `clients` connections its own OS thread (so client-side
//! scheduling is the kernel's, identical for every target), connects them
//! all, warms each up, releases them together through a barrier, and has
//! each do `requests / clients` requests back to back, timing every one.
//! Throughput is the total over the wall time from release to the last
//! thread's finish; latency percentiles are over all samples.
//!
//! A caller may cut one measurement into slices and interleave the targets
//! slice by slice, then [`LoadResult::merge`] them: on a shared machine a
//! burst of outside load then hits every target a little instead of one
//! target a lot.
//!
//! Every answer is compared with the expected bytes: a wrong value is a
//! correctness failure the caller turns into a non-zero exit, described by
//! length and hash only. Each run is bounded by a request count and a
//! deadline, whichever comes first.

use crate::fixture::describe;
use crate::stats::Latency;
use anyhow::Result;
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// Something that serves `get` over a Unix socket.
pub trait Target: Sync {
    /// The name shown in the table (`fluxd`, `redis`, `floor`).
    fn name(&self) -> &'static str;
    /// Opens a ready-to-use connection (handshake done).
    fn connect(&self) -> Result<Box<dyn Conn>>;
}

/// One client connection.
pub trait Conn: Send {
    /// Fetches `key`'s value into `out` (cleared first).
    fn get(&mut self, key: &str, out: &mut Vec<u8>) -> Result<()>;
}

/// What one load run (or several slices of one, [`LoadResult::merge`])
/// measured.
#[derive(Debug, Clone, Default)]
pub struct LoadResult {
    pub requests: u64,
    /// Timed wall-clock seconds (summed over merged slices).
    pub wall_secs: f64,
    /// Every latency sample, sorted (ns).
    pub samples: Vec<u64>,
    pub throughput_rps: f64,
    pub latency: Latency,
    pub errors: u64,
    pub wrong_values: u64,
    /// The first problem, described without any value.
    pub first_problem: Option<String>,
}

/// How one load run is shaped.
#[derive(Debug, Clone, Copy)]
pub struct LoadSpec {
    pub clients: usize,
    /// Total timed requests across all clients.
    pub requests: u64,
    /// Untimed requests per client before the barrier.
    pub warmup: u64,
    /// Hard stop for the timed part.
    pub deadline: Duration,
}

struct ThreadOutcome {
    samples: Vec<u64>,
    finished: Instant,
    errors: u64,
    wrong: u64,
    problem: Option<String>,
}

/// Runs `spec` against `target`, fetching `key` and expecting `expected`.
pub fn run(target: &dyn Target, spec: LoadSpec, key: &str, expected: &[u8]) -> Result<LoadResult> {
    let per_client = (spec.requests / spec.clients as u64).max(1);
    let mut conns = Vec::with_capacity(spec.clients);
    for _ in 0..spec.clients {
        conns.push(target.connect()?);
    }
    let barrier = Barrier::new(spec.clients + 1);
    let (outcomes, started) = std::thread::scope(|s| {
        let handles: Vec<_> = conns
            .into_iter()
            .map(|mut conn| {
                let barrier = &barrier;
                s.spawn(move || {
                    drive(
                        conn.as_mut(),
                        barrier,
                        per_client,
                        spec.warmup,
                        spec.deadline,
                        key,
                        expected,
                    )
                })
            })
            .collect();
        barrier.wait();
        let started = Instant::now();
        let outcomes: Vec<ThreadOutcome> = handles
            .into_iter()
            .map(|h| h.join().expect("load thread panicked"))
            .collect();
        (outcomes, started)
    });
    let mut all = Vec::with_capacity((per_client as usize) * spec.clients);
    let mut result = LoadResult::default();
    let mut last = started;
    for o in outcomes {
        all.extend_from_slice(&o.samples);
        last = last.max(o.finished);
        result.errors += o.errors;
        result.wrong_values += o.wrong;
        if result.first_problem.is_none() {
            result.first_problem = o.problem;
        }
    }
    result.requests = all.len() as u64;
    result.wall_secs = last.duration_since(started).as_secs_f64();
    result.samples = all;
    result.finish();
    Ok(result)
}

impl LoadResult {
    /// Several slices of the same load as one result: requests over the
    /// summed wall time, percentiles over all samples.
    pub fn merge(slices: Vec<LoadResult>) -> Self {
        let mut out = LoadResult::default();
        for s in slices {
            out.requests += s.requests;
            out.wall_secs += s.wall_secs;
            out.samples.extend_from_slice(&s.samples);
            out.errors += s.errors;
            out.wrong_values += s.wrong_values;
            if out.first_problem.is_none() {
                out.first_problem = s.first_problem;
            }
        }
        out.finish();
        out
    }

    fn finish(&mut self) {
        self.throughput_rps = if self.wall_secs > 0.0 {
            self.requests as f64 / self.wall_secs
        } else {
            0.0
        };
        self.latency = Latency::from_nanos(&mut self.samples);
    }
}

fn drive(
    conn: &mut dyn Conn,
    barrier: &Barrier,
    requests: u64,
    warmup: u64,
    deadline: Duration,
    key: &str,
    expected: &[u8],
) -> ThreadOutcome {
    let mut out = Vec::with_capacity(expected.len() + 64);
    let mut problem = None;
    let mut errors = 0;
    let mut wrong = 0;
    let mut broken = false;
    for _ in 0..warmup {
        if let Err(e) = conn.get(key, &mut out) {
            errors += 1;
            problem = Some(format!("warm-up get failed: {e:#}"));
            broken = true;
            break;
        }
    }
    let mut samples = Vec::with_capacity(requests as usize);
    barrier.wait();
    let stop_at = Instant::now() + deadline;
    if !broken {
        for _ in 0..requests {
            let t = Instant::now();
            let outcome = conn.get(key, &mut out);
            let done = Instant::now();
            samples.push(done.duration_since(t).as_nanos() as u64);
            match outcome {
                Ok(()) if out == expected => {}
                Ok(()) => {
                    wrong += 1;
                    if problem.is_none() {
                        problem = Some(format!(
                            "wrong value for {key}: expected {}, got {}",
                            describe(&String::from_utf8_lossy(expected)),
                            describe(&String::from_utf8_lossy(&out))
                        ));
                    }
                }
                Err(e) => {
                    errors += 1;
                    problem.get_or_insert_with(|| format!("get failed: {e:#}"));
                    break;
                }
            }
            if done >= stop_at {
                break;
            }
        }
    }
    ThreadOutcome {
        samples,
        finished: Instant::now(),
        errors,
        wrong,
        problem,
    }
}
