//! Crash loop: SIGKILL the daemon in the middle of bursts of `set`s, restart
//! it, and check that nothing acknowledged was lost.
//!
//! Two projects, four writers (two per project) on their own connections,
//! each cycling over four secrets of its own and writing values that carry
//! a per-writer sequence number. For each of 20 cycles (3 with `--smoke`):
//! start fluxd, verify, let the writers burst, SIGKILL at a random moment
//! (20–150 ms in), join the writers. A final start verifies the last cycle.
//!
//! Verification, after every start:
//! - `Status` lists both projects with no `last_error` (the vault decrypts
//!   and its seal holds);
//! - every secret reads back as its last *acknowledged* value, or as the
//!   value whose `set` was in flight when the daemon died (it may or may
//!   not have reached the disk); anything older is a *lost write*, anything
//!   else a *wrong value*.
//!
//! It also counts the temp files that killed writes leave in `vaults/`
//! (`.<project>.age.*.tmp`): not a correctness problem, reported so their
//! growth is visible.

use super::{Outcome, Rng};
use crate::fixture::{describe, seq_of, value};
use crate::fluxd_process::{Fluxd, FluxdBinary};
use anyhow::{Context, Result};
use flux_protocol::ErrorCode;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const PROJECTS: [&str; 2] = ["crash-a", "crash-b"];
const WRITERS: usize = 4;
const KEYS_PER_WRITER: usize = 4;
const LEN: usize = 48;

/// What we know about one secret's durable state.
#[derive(Debug, Default, Clone)]
struct KeyState {
    /// The last acknowledged sequence.
    acked: Option<u64>,
    /// A set in flight when the daemon died: it may have persisted.
    in_flight: Option<u64>,
}

/// What one writer did in a burst: the (key, seq) pairs acknowledged, the
/// set in flight when the connection broke, and any other problem.
type Burst = (Vec<(usize, u64)>, Option<(usize, u64)>, Option<String>);

fn project_of(writer: usize) -> &'static str {
    PROJECTS[writer % PROJECTS.len()]
}

fn key_name(writer: usize, k: usize) -> String {
    format!("W{writer}_K{k}")
}

fn tag(writer: usize) -> String {
    format!("w{writer}")
}

/// Runs the crash-loop suite.
pub fn run(bin: &FluxdBinary, smoke: bool) -> Result<Outcome> {
    let cycles = if smoke { 3 } else { 20 };
    println!("crash-loop: {cycles} cycles of SIGKILL during a burst of sets by {WRITERS} writers");
    let mut rng = Rng::from_clock("crash-loop");
    let mut fluxd = Fluxd::new(bin)?;
    fluxd.start()?;
    {
        let mut control = fluxd.control()?;
        for p in PROJECTS {
            control.create_project(p)?;
        }
    }
    fluxd.kill9();

    // state[writer][key]
    let mut state = vec![vec![KeyState::default(); KEYS_PER_WRITER]; WRITERS];
    let mut next_seq = [1u64; WRITERS];
    let mut failures = Vec::new();
    let (mut acked_total, mut in_flight_total, mut in_flight_kept) = (0u64, 0u64, 0u64);
    let mut startups = Vec::new();

    for cycle in 0..=cycles {
        let startup = fluxd
            .start()
            .with_context(|| format!("restart after cycle {cycle}"))?;
        startups.push(startup);
        let kept = verify(&fluxd, &mut state, &mut failures, cycle)?;
        in_flight_kept += kept;
        if cycle == cycles {
            break;
        }
        let mut clients = Vec::new();
        for w in 0..WRITERS {
            clients.push(fluxd.client(project_of(w))?);
        }
        let stop = AtomicBool::new(false);
        let kill_after = Duration::from_millis(rng.range(20, 150));
        let results: Vec<Burst> = std::thread::scope(|s| {
            let handles: Vec<_> = clients
                .into_iter()
                .enumerate()
                .map(|(w, mut client)| {
                    let stop = &stop;
                    let mut seq = next_seq[w];
                    s.spawn(move || {
                        let mut acked = Vec::new();
                        let deadline = Instant::now() + Duration::from_secs(10);
                        let mut k = 0usize;
                        while !stop.load(Ordering::Acquire) && Instant::now() < deadline {
                            let v = value(&tag(w), seq, LEN);
                            match client.set(&key_name(w, k), v.into()) {
                                Ok(_) => acked.push((k, seq)),
                                Err(e) if e.is_unreachable() => {
                                    return (acked, Some((k, seq)), None);
                                }
                                Err(e) => {
                                    return (
                                        acked,
                                        Some((k, seq)),
                                        Some(format!("set failed: {e}")),
                                    );
                                }
                            }
                            seq += 1;
                            k = (k + 1) % KEYS_PER_WRITER;
                        }
                        (acked, None, None)
                    })
                })
                .collect();
            std::thread::sleep(kill_after);
            fluxd.kill9();
            stop.store(true, Ordering::Release);
            handles
                .into_iter()
                .map(|h| h.join().expect("writer panicked"))
                .collect()
        });
        let mut acked_now = 0;
        for (w, (acked, in_flight, problem)) in results.into_iter().enumerate() {
            for (k, seq) in acked {
                state[w][k].acked = Some(seq);
                state[w][k].in_flight = None;
                next_seq[w] = next_seq[w].max(seq + 1);
                acked_now += 1;
            }
            if let Some((k, seq)) = in_flight {
                state[w][k].in_flight = Some(seq);
                next_seq[w] = next_seq[w].max(seq + 1);
                in_flight_total += 1;
            }
            if let Some(p) = problem {
                failures.push(format!("cycle {}: writer {w}: {p}", cycle + 1));
            }
        }
        acked_total += acked_now;
        println!(
            "crash-loop: cycle {:>2}/{cycles}: killed after {:>3} ms, {acked_now} sets acknowledged",
            cycle + 1,
            kill_after.as_millis()
        );
    }
    let leftovers = count_temp_files(&fluxd.layout().vaults_dir());
    fluxd.stop();
    let slowest = startups.iter().max().copied().unwrap_or_default();
    println!(
        "crash-loop: {acked_total} acknowledged sets, {in_flight_total} in flight at a kill ({in_flight_kept} of them persisted), slowest restart {:.0} ms, {leftovers} temp file(s) left in vaults/",
        slowest.as_secs_f64() * 1e3
    );
    let lost = failures.iter().filter(|f| f.contains("lost")).count();
    println!(
        "crash-loop: lost acknowledged writes: {lost}; failures: {}",
        failures.len()
    );
    Ok(Outcome {
        summary: format!(
            "{cycles} kills, {acked_total} acknowledged sets, {lost} lost, {} failures, {leftovers} temp files left",
            failures.len()
        ),
        failures,
        skipped: None,
    })
}

/// Checks every project and secret (see the module docs); returns how many
/// in-flight sets turned out to have persisted.
fn verify(
    fluxd: &Fluxd,
    state: &mut [Vec<KeyState>],
    failures: &mut Vec<String>,
    cycle: usize,
) -> Result<u64> {
    let status = fluxd.control()?.status().context("Status")?;
    for p in PROJECTS {
        match status.projects.iter().find(|i| i.name == p) {
            None => failures.push(format!("after cycle {cycle}: project {p} is gone")),
            Some(info) if info.last_error.is_some() => failures.push(format!(
                "after cycle {cycle}: project {p} has last_error {:?}",
                info.last_error
            )),
            Some(_) => {}
        }
    }
    let mut clients = BTreeMap::new();
    let mut kept = 0;
    for (w, keys) in state.iter_mut().enumerate() {
        let p = project_of(w);
        if !clients.contains_key(p) {
            clients.insert(p, fluxd.client(p)?);
        }
        let client = clients.get_mut(p).expect("inserted above");
        for (k, ks) in keys.iter_mut().enumerate() {
            let name = key_name(w, k);
            let got = match client.get(&name) {
                Ok(v) => Some(v),
                Err(e) if e.code() == Some(ErrorCode::NotFound) => None,
                Err(e) => {
                    failures.push(format!("after cycle {cycle}: get {p}/{name} failed: {e}"));
                    continue;
                }
            };
            let seq = match &got {
                None => None,
                Some(v) => {
                    let v = v.expose();
                    match seq_of(&tag(w), v).filter(|&q| v == value(&tag(w), q, LEN)) {
                        Some(q) => Some(q),
                        None => {
                            failures.push(format!(
                                "after cycle {cycle}: {p}/{name} holds a value never written ({})",
                                describe(v)
                            ));
                            continue;
                        }
                    }
                }
            };
            if let Err(what) = judge(seq, ks) {
                failures.push(format!("after cycle {cycle}: {p}/{name}: {what}"));
            }
            if seq.is_some() && seq == ks.in_flight {
                kept += 1;
                ks.acked = seq;
            }
            ks.in_flight = None;
        }
    }
    Ok(kept)
}

/// Whether reading back `seq` (None: not set) is allowed for a secret in
/// state `ks`: the last acknowledged value, or the one in flight at the
/// kill. Anything older is a lost write; anything else a wrong value.
fn judge(seq: Option<u64>, ks: &KeyState) -> Result<(), String> {
    if seq == ks.acked || (seq.is_some() && seq == ks.in_flight) {
        return Ok(());
    }
    Err(match (seq, ks.acked) {
        (None, Some(_)) => "lost write: the secret is gone".to_owned(),
        (Some(s), Some(a)) if s < a => {
            format!("lost write: acknowledged seq {a}, read back older seq {s}")
        }
        (s, a) => format!(
            "wrong value: read seq {s:?}, acknowledged {a:?}, in flight {:?}",
            ks.in_flight
        ),
    })
}

fn count_temp_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
                .count()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledged_or_in_flight_values_pass_older_ones_are_lost() {
        let ks = KeyState {
            acked: Some(5),
            in_flight: Some(6),
        };
        assert!(judge(Some(5), &ks).is_ok());
        assert!(judge(Some(6), &ks).is_ok(), "the in-flight set may persist");
        assert!(judge(Some(4), &ks).unwrap_err().starts_with("lost write"));
        assert!(judge(None, &ks).unwrap_err().starts_with("lost write"));
        assert!(judge(Some(7), &ks).unwrap_err().starts_with("wrong value"));
        let never_set = KeyState::default();
        assert!(judge(None, &never_set).is_ok());
        let first_in_flight = KeyState {
            acked: None,
            in_flight: Some(1),
        };
        assert!(judge(None, &first_in_flight).is_ok());
        assert!(judge(Some(1), &first_in_flight).is_ok());
    }
}
