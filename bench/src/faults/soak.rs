//! Soak: many readers for a long time while a secret rotates underneath.
//!
//! 64 client connections (8 with `--smoke`) each `get` one secret in a
//! loop for 60 s (3 s) while a writer `set`s it to a new value every 10 ms
//! (back to back when a `set` takes longer). Values carry their sequence
//! number ([`crate::fixture::value`]). The writer publishes the highest
//! sequence it has *sent* before sending and the highest *acknowledged*
//! after the `set` returns. Each read must then be:
//!
//! - exactly the value written for its sequence (else *wrong value*);
//! - no newer than what was sent (else *never written*);
//! - no older than what was acknowledged before the read started (else
//!   *stale*);
//! - no older than the previous read on the same connection (else *went
//!   back*).
//!
//! Any of those, any failed request, or a daemon that exits, fails the
//! suite. It reports reads, rotations, and read latency percentiles.

use super::Outcome;
use crate::fixture::{describe, seq_of, value};
use crate::fluxd_process::{Fluxd, FluxdBinary};
use crate::stats::Latency;
use anyhow::{Context, Result};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const PROJECT: &str = "soak";
const SECRET: &str = "SOAK_KEY";
const TAG: &str = "soak";
const LEN: usize = 64;
/// Hard cap on reads per connection (the time limit normally ends first).
const MAX_READS_PER_CLIENT: u64 = 20_000_000;

#[derive(Debug, Default)]
struct ReaderStats {
    reads: u64,
    errors: u64,
    wrong: u64,
    stale: u64,
    back: u64,
    samples: Vec<u64>,
}

/// Runs the soak suite.
pub fn run(bin: &FluxdBinary, smoke: bool) -> Result<Outcome> {
    let (clients, duration) = if smoke {
        (8, Duration::from_secs(3))
    } else {
        (64, Duration::from_secs(60))
    };
    let interval = Duration::from_millis(10);
    println!(
        "soak: {clients} readers for {} s, a rotation every {} ms",
        duration.as_secs(),
        interval.as_millis()
    );
    let mut fluxd = Fluxd::new(bin)?;
    fluxd.start()?;
    fluxd.control()?.create_project(PROJECT)?;
    let mut writer = fluxd.client(PROJECT)?;
    writer.set(SECRET, value(TAG, 0, LEN).into())?;

    let sent = AtomicU64::new(0);
    let acked = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let problems = Mutex::new(Vec::<String>::new());
    let note = |p: String| {
        let mut v = problems.lock().unwrap_or_else(|e| e.into_inner());
        if v.len() < 20 {
            v.push(p);
        }
    };
    let mut readers = Vec::with_capacity(clients);
    for _ in 0..clients {
        readers.push(fluxd.client(PROJECT)?);
    }
    let socket = fluxd.project_socket(PROJECT);
    let started = Instant::now();
    let deadline = started + duration;

    let (stats, rotations, set_errors) = std::thread::scope(|s| {
        let handles: Vec<_> = readers
            .into_iter()
            .map(|mut client| {
                let (sent, acked, stop, note, socket) = (&sent, &acked, &stop, &note, &socket);
                s.spawn(move || {
                    let mut st = ReaderStats::default();
                    let mut last = 0u64;
                    while !stop.load(Ordering::Acquire)
                        && Instant::now() < deadline
                        && st.reads < MAX_READS_PER_CLIENT
                    {
                        let acked_before = acked.load(Ordering::Acquire);
                        let t = Instant::now();
                        let got = client.get(SECRET);
                        st.samples.push(t.elapsed().as_nanos() as u64);
                        let got = match got {
                            Ok(v) => v,
                            Err(e) => {
                                st.errors += 1;
                                note(format!("get failed: {e}"));
                                match flux_protocol::blocking::Client::connect(socket) {
                                    Ok(c) => client = c,
                                    Err(_) => break,
                                }
                                continue;
                            }
                        };
                        st.reads += 1;
                        let v = got.expose();
                        let Some(seq) = seq_of(TAG, v).filter(|&q| v == value(TAG, q, LEN)) else {
                            st.wrong += 1;
                            note(format!("read a value that was never written ({})", describe(v)));
                            continue;
                        };
                        if seq > sent.load(Ordering::Acquire) {
                            st.wrong += 1;
                            note(format!("read rotation {seq}, which was never sent"));
                        }
                        if seq < acked_before {
                            st.stale += 1;
                            note(format!(
                                "stale read: rotation {acked_before} was acknowledged before the read, got {seq}"
                            ));
                        }
                        if seq < last {
                            st.back += 1;
                            note(format!("read went back from rotation {last} to {seq}"));
                        }
                        last = last.max(seq);
                    }
                    st
                })
            })
            .collect();

        // The writer, on this thread.
        let mut rotations = 0u64;
        let mut set_errors = 0u64;
        let mut next = Instant::now();
        let mut seq = 0u64;
        while Instant::now() < deadline {
            seq += 1;
            sent.store(seq, Ordering::Release);
            match writer.set(SECRET, value(TAG, seq, LEN).into()) {
                Ok(_) => {
                    acked.store(seq, Ordering::Release);
                    rotations += 1;
                }
                Err(e) => {
                    set_errors += 1;
                    note(format!("set failed: {e}"));
                }
            }
            next += interval;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            } else {
                next = now;
            }
        }
        stop.store(true, Ordering::Release);
        let stats: Vec<ReaderStats> = handles
            .into_iter()
            .map(|h| h.join().expect("reader panicked"))
            .collect();
        (stats, rotations, set_errors)
    });
    let elapsed = started.elapsed();
    let alive = fluxd.is_running();

    let mut total = ReaderStats::default();
    let mut samples = Vec::new();
    for st in stats {
        total.reads += st.reads;
        total.errors += st.errors;
        total.wrong += st.wrong;
        total.stale += st.stale;
        total.back += st.back;
        samples.extend(st.samples);
    }
    let lat = Latency::from_nanos(&mut samples);
    println!(
        "soak: {} reads ({:.0}/s) and {rotations} rotations in {:.1} s; read p50 {:.1} µs p99 {:.1} µs p99.9 {:.1} µs max {:.1} ms",
        total.reads,
        total.reads as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        lat.p50_us,
        lat.p99_us,
        lat.p999_us,
        lat.max_us / 1000.0
    );
    println!(
        "soak: lost/wrong: {} failed gets, {} failed sets, {} wrong values, {} stale reads, {} reads that went back",
        total.errors, set_errors, total.wrong, total.stale, total.back
    );
    let mut failures: Vec<String> = problems.into_inner().unwrap_or_else(|e| e.into_inner());
    if !alive {
        failures.push(format!(
            "fluxd exited during the soak:\n{}",
            fluxd.log_tail(20)
        ));
    }
    let status = fluxd.control()?.status().context("Status after the soak")?;
    if let Some(p) = status.projects.iter().find(|p| p.last_error.is_some()) {
        failures.push(format!(
            "project {} reports a last_error after the soak",
            p.name
        ));
    }
    Ok(Outcome {
        summary: format!(
            "{} reads, {rotations} rotations, {} errors, {} wrong, {} stale; read p99 {:.0} µs",
            total.reads,
            total.errors + set_errors,
            total.wrong,
            total.stale,
            lat.p99_us
        ),
        failures,
        skipped: None,
    })
}
