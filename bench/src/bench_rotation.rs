//! Rotation: how soon a reader sees a new value, and whether it ever sees
//! an old one after the rotation was acknowledged.
//!
//! A writer rotates one secret ≥ 200 times through a [`Rotator`]; a reader
//! on another connection reads it in a tight loop. Values carry their
//! sequence number ([`crate::fixture::value`]), so every read says which
//! rotation it saw. Shared atomics publish, for each rotation, when it was
//! *acknowledged* (the `Set` returned). Then:
//!
//! - **delay** of rotation *i* = when the first read returning *i* (or
//!   later) completed − when rotation *i* was acknowledged; 0 when the
//!   reader saw it even before the acknowledgement (fluxd swaps its
//!   snapshot before it answers);
//! - **stale read** = a read that *started* after rotation *i* was
//!   acknowledged and returned an older value. Must be 0: a correctness
//!   failure, not a speed target.
//!
//! The writer waits until the reader saw rotation *i* (at most 2 s, else
//! "never seen", also a failure) before starting *i + 1*, so each rotation
//! is measured alone.
//!
//! Rotation modes: [`RotationMode::ProtocolSet`] (a `Set` on the project
//! socket, acknowledged when it returns) and
//! [`RotationMode::ExternalReplace`] (the vault sealed with the project key,
//! `flux_vault::vault::seal`, written to `vaults/<project>.age.new` and
//! renamed over `vaults/<project>.age` as a sync tool or config manager
//! would; acknowledged when the rename returns, so its delay is the file
//! watcher's). `all` runs both.

use crate::fixture::{describe, seq_of, value};
use crate::fluxd_process::{Fluxd, FluxdBinary};
use crate::report::{Report, Row, verdict};
use crate::stats::{Measure, latency_of};
use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How a rotation reaches the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RotationMode {
    /// `Set` on the project socket; acknowledged when it returns.
    ProtocolSet,
    /// A sealed vault renamed over the vault file from outside fluxd.
    ExternalReplace,
}

impl RotationMode {
    fn label(self) -> &'static str {
        match self {
            Self::ProtocolSet => "set",
            Self::ExternalReplace => "external replace",
        }
    }
}

/// [`RotationMode::ExternalReplace`].
struct ExternalReplace {
    key: flux_vault::keys::ProjectKey,
    vault: std::path::PathBuf,
    name: String,
    /// The next vault revision: above what fluxd served, as any outside
    /// writer's must be (an older one is refused as a rollback).
    revision: u64,
}

impl Rotator for ExternalReplace {
    fn rotate(&mut self, value: &str) -> Result<()> {
        let mut secrets = flux_vault::vault::Secrets::new();
        secrets.insert(
            self.name.clone(),
            flux_vault::vault::Entry {
                value: value.into(),
                set_at_ms: flux_vault::time::now_ms(),
            },
        );
        self.revision += 1;
        let bytes = flux_vault::vault::seal(PROJECT, &secrets, self.revision, &self.key)
            .map_err(|e| anyhow::anyhow!("seal: {e}"))?;
        // As a sync tool does: a file of its own beside the vault, made
        // durable, then renamed over it.
        let staged = self.vault.with_extension("age.new");
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&staged)
                .map_err(|e| anyhow::anyhow!("stage the vault: {e}"))?;
            f.write_all(&bytes)
                .and_then(|()| f.sync_all())
                .map_err(|e| anyhow::anyhow!("stage the vault: {e}"))?;
        }
        std::fs::rename(&staged, &self.vault)
            .map_err(|e| anyhow::anyhow!("replace the vault: {e}"))?;
        Ok(())
    }
}

/// Puts a new value in place; returns once the rotation counts as done.
pub trait Rotator {
    fn rotate(&mut self, value: &str) -> Result<()>;
}

/// [`RotationMode::ProtocolSet`].
struct ProtocolSet {
    client: flux_protocol::blocking::Client,
    name: String,
}

impl Rotator for ProtocolSet {
    fn rotate(&mut self, value: &str) -> Result<()> {
        self.client.set(&self.name, value.into())?;
        Ok(())
    }
}

/// How the rotation benchmark is shaped.
#[derive(Debug, Clone)]
pub struct RotationConfig {
    pub runs: usize,
    pub rotations: u64,
    pub modes: Vec<RotationMode>,
    pub smoke: bool,
}

const PROJECT: &str = "rot";
const SECRET: &str = "ROTATED_KEY";
const TAG: &str = "rot";
const LEN: usize = 40;

/// What one rotation run saw.
#[derive(Debug, Default)]
pub struct RotationResult {
    pub delays: Vec<Duration>,
    pub set_latencies: Vec<Duration>,
    pub reads: u64,
    pub stale_reads: u64,
    pub wrong_values: u64,
    pub never_seen: u64,
    pub seen_before_ack: u64,
    pub problems: Vec<String>,
}

/// Runs the benchmark and appends its rows to `report`.
pub fn run(bin: &FluxdBinary, cfg: &RotationConfig, report: &mut Report) -> Result<()> {
    for &mode in &cfg.modes {
        run_mode(bin, cfg, mode, report)?;
    }
    Ok(())
}

fn run_mode(
    bin: &FluxdBinary,
    cfg: &RotationConfig,
    mode: RotationMode,
    report: &mut Report,
) -> Result<()> {
    let label = mode.label();
    let mut fluxd = Fluxd::new(bin)?;
    fluxd.start()?;
    fluxd.control()?.create_project(PROJECT)?;
    let mut results = Vec::new();
    let mut quiet_p50 = Vec::new();
    for run in 0..cfg.runs {
        // The same sets with no reader running: what a set costs when the
        // daemon is otherwise idle, to compare with the set under reads.
        let mut quiet = Vec::new();
        let mut setter = fluxd.client(PROJECT)?;
        for i in 0..(cfg.rotations / 10).max(5) {
            let t = Instant::now();
            setter.set(SECRET, value("quiet", i, LEN).into())?;
            quiet.push(t.elapsed());
        }
        quiet_p50.push(latency_of(&quiet).p50_us / 1000.0);
        let rotator: Box<dyn Rotator> = match mode {
            RotationMode::ProtocolSet => Box::new(ProtocolSet {
                client: fluxd.client(PROJECT)?,
                name: SECRET.into(),
            }),
            RotationMode::ExternalReplace => {
                let text = std::fs::read_to_string(fluxd.layout().key(PROJECT))?;
                let key = flux_vault::keys::ProjectKey::parse(&text)
                    .map_err(|e| anyhow::anyhow!("project key: {e}"))?;
                let vault = fluxd.layout().vault(PROJECT);
                // The revision fluxd's own writes reached (the quiet sets
                // above, the previous run's rotations): every rotation
                // must be above it, or fluxd refuses it as a rollback.
                let served =
                    flux_vault::vault::open_current(&std::fs::read(&vault)?, PROJECT, &key)
                        .map_err(|e| anyhow::anyhow!("open the vault: {e}"))?
                        .revision;
                Box::new(ExternalReplace {
                    key,
                    vault,
                    name: SECRET.into(),
                    revision: served,
                })
            }
        };
        // Each run starts its sequence above the previous run's.
        let base = run as u64 * 1_000_000;
        let r = measure(
            &fluxd,
            rotator,
            base,
            cfg.rotations,
            mode == RotationMode::ProtocolSet,
        )?;
        let lat = latency_of(&r.delays);
        eprintln!(
            "run {}/{} rotation ({label}): {} rotations, {} reads, delay p50 {:.1} µs p99 {:.1} µs max {:.1} µs, {} stale, {} seen before ack",
            run + 1,
            cfg.runs,
            r.delays.len(),
            r.reads,
            lat.p50_us,
            lat.p99_us,
            lat.max_us,
            r.stale_reads,
            r.seen_before_ack
        );
        for p in &r.problems {
            report.failures.push(format!("rotation ({label}): {p}"));
        }
        results.push(r);
    }
    let pick = |f: &dyn Fn(&RotationResult) -> f64| {
        Measure::of(&results.iter().map(f).collect::<Vec<_>>())
    };
    let rot = cfg.rotations;
    report.rows.push(Row::fluxd(
        "rotation",
        format!("rotation ({label}) delay p50 ({rot} rotations)"),
        "µs",
        pick(&|r| latency_of(&r.delays).p50_us),
    ));
    let p99 = pick(&|r| latency_of(&r.delays).p99_us);
    let row = Row::fluxd(
        "rotation",
        format!("rotation ({label}) delay p99"),
        "µs",
        p99.clone(),
    );
    report.rows.push(match mode {
        RotationMode::ExternalReplace => {
            row.with_goal("< 20 ms", verdict(Some(p99.median < 20_000.0), cfg.smoke))
        }
        RotationMode::ProtocolSet => row,
    });
    report.rows.push(Row::fluxd(
        "rotation",
        format!("rotation ({label}) delay max"),
        "µs",
        pick(&|r| latency_of(&r.delays).max_us),
    ));
    report.rows.push(Row::fluxd(
        "rotation",
        format!("set p50 during rotation ({label}; 1 secret, reader busy)"),
        "ms",
        pick(&|r| latency_of(&r.set_latencies).p50_us / 1000.0),
    ));
    report.rows.push(Row::fluxd(
        "rotation",
        format!("set p50, no reader ({label} run; 1 secret)"),
        "ms",
        Measure::of(&quiet_p50),
    ));
    report.rows.push(Row::fluxd(
        "rotation",
        format!("rotations ({label}) read before acknowledged"),
        "%",
        pick(&|r| r.seen_before_ack as f64 * 100.0 / r.delays.len().max(1) as f64),
    ));
    if mode != RotationMode::ProtocolSet {
        return Ok(());
    }
    let stale: u64 = results.iter().map(|r| r.stale_reads).sum();
    report.rows.push(
        Row::fluxd(
            "rotation",
            format!("stale reads after the {label} was acknowledged (total)"),
            "reads",
            Measure::one(stale as f64),
        )
        .with_goal("= 0 (correctness)", verdict(Some(stale == 0), false)),
    );
    Ok(())
}

/// One run: `rotations` rotations from `base + 1` on.
fn measure(
    fluxd: &Fluxd,
    mut rotator: Box<dyn Rotator>,
    base: u64,
    rotations: u64,
    read_your_writes: bool,
) -> Result<RotationResult> {
    let epoch = Instant::now();
    let ns = |t: Instant| t.duration_since(epoch).as_nanos() as u64;
    // The initial value, served before the reader starts (an outside
    // replace is served once the watcher has swapped it in).
    rotator.rotate(&value(TAG, base, LEN))?;
    let mut probe = fluxd.client(PROJECT)?;
    let served_by = Instant::now() + Duration::from_secs(10);
    while probe.get(SECRET)?.expose() != value(TAG, base, LEN) {
        if Instant::now() > served_by {
            bail!(
                "the initial value was not served within 10 s; fluxd's log ends:\n{}",
                fluxd.log_tail(20)
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let acked = AtomicU64::new(base);
    // first_seen[i] = when a read first returned rotation base+i (ns since
    // epoch, 0 = not yet).
    let first_seen: Vec<AtomicU64> = (0..=rotations).map(|_| AtomicU64::new(0)).collect();
    let stop = AtomicBool::new(false);
    let mut reader = fluxd.client(PROJECT)?;
    let deadline = epoch + Duration::from_secs(30 + rotations / 5);

    std::thread::scope(|s| {
        let reader_thread = s.spawn(|| {
            let mut out = RotationResult::default();
            let mut highest = base;
            let mut went_back = false;
            while !stop.load(Ordering::Acquire) && Instant::now() < deadline {
                let acked_before = acked.load(Ordering::Acquire);
                let got = match reader.get(SECRET) {
                    Ok(v) => v,
                    Err(e) => {
                        out.problems.push(format!("reader get failed: {e}"));
                        break;
                    }
                };
                let done = ns(Instant::now());
                out.reads += 1;
                let v = got.expose();
                let Some(seq) = seq_of(TAG, v).filter(|&s| v == value(TAG, s, LEN)) else {
                    out.wrong_values += 1;
                    if out.wrong_values == 1 {
                        out.problems.push(format!(
                            "read a value that was never written ({})",
                            describe(v)
                        ));
                    }
                    continue;
                };
                // Only a write the daemon acknowledged itself promises that
                // later reads see it; an outside replace is seen once the
                // watcher swaps it in (that delay is what is measured).
                if read_your_writes && seq < acked_before {
                    out.stale_reads += 1;
                    if out.stale_reads == 1 {
                        out.problems.push(format!(
                            "stale read: rotation {} was acknowledged before the read started, the read returned rotation {}",
                            acked_before - base,
                            seq.saturating_sub(base)
                        ));
                    }
                }
                if seq > highest {
                    for i in (highest + 1)..=seq {
                        if let Some(slot) = first_seen.get((i - base) as usize) {
                            let _ = slot.compare_exchange(0, done, Ordering::AcqRel, Ordering::Acquire);
                        }
                    }
                    highest = seq;
                } else if seq < highest && !went_back {
                    went_back = true;
                    out.problems.push(format!(
                        "a read went back in time: rotation {} after {}",
                        seq - base,
                        highest - base
                    ));
                }
            }
            out
        });

        let mut acked_at = vec![0u64; rotations as usize + 1];
        let mut set_latencies = Vec::with_capacity(rotations as usize);
        let mut writer_problem = None;
        for i in 1..=rotations {
            let t = Instant::now();
            if let Err(e) = rotator.rotate(&value(TAG, base + i, LEN)) {
                writer_problem = Some(format!("rotation {i} failed: {e:#}"));
                break;
            }
            let returned = Instant::now();
            set_latencies.push(returned - t);
            acked_at[i as usize] = ns(returned);
            acked.store(base + i, Ordering::Release);
            let wait_until = returned + Duration::from_secs(2);
            while first_seen[i as usize].load(Ordering::Acquire) == 0
                && Instant::now() < wait_until
            {
                std::thread::yield_now();
            }
            if Instant::now() > deadline {
                writer_problem = Some(format!("deadline reached after {i} rotations"));
                break;
            }
        }
        // Give the reader one more round to see the last rotation.
        std::thread::sleep(Duration::from_millis(5));
        stop.store(true, Ordering::Release);
        let mut out = reader_thread.join().expect("reader thread panicked");
        out.set_latencies = set_latencies;
        if let Some(p) = writer_problem {
            out.problems.push(p);
        }
        for i in 1..=rotations as usize {
            if acked_at[i] == 0 {
                continue;
            }
            let seen = first_seen[i].load(Ordering::Acquire);
            if seen == 0 {
                out.never_seen += 1;
                continue;
            }
            if seen < acked_at[i] {
                out.seen_before_ack += 1;
            }
            out.delays
                .push(Duration::from_nanos(seen.saturating_sub(acked_at[i])));
        }
        if out.never_seen > 0 {
            out.problems.push(format!(
                "{} rotation(s) never seen by the reader within 2 s",
                out.never_seen
            ));
        }
        if out.delays.is_empty() {
            bail!("no rotation was measured");
        }
        Ok(out)
    })
    .context("rotation run")
}
