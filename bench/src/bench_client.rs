//! The client check (`flux-bench client-check`): does flux-bench's load
//! client measure what a client in C measures?
//!
//! Every `get` figure depends on the client ([`crate::load`]) costing as
//! little as the machine allows; if it were slower than the servers it
//! loads, every ratio would drift toward 1. So the floor server — the
//! cheapest server of the protocol, the one a slow client would hide most
//! — is loaded by flux-bench's client and by `bench/c/getload.c`
//! ([`crate::cload`]) the same way: the same value sizes and client
//! counts, fresh connections per slice, the same warm-up, the same fixed
//! duration, slices of the two clients alternating (who goes first rotates
//! per slice and per run). The check is met when the two totals differ by
//! at most 10 %: the median over runs of each run's ratio, both clients
//! having been measured in the same minutes (a ratio of medians would
//! compare different minutes, and with one client this VM's latency
//! jumps between about 10 and 35 µs from one minute to the next). The
//! per-client spread and the latency are shown beside them, not judged
//! (the C client's percentiles are histogram buckets, within 1.6 %).
//!
//! Without a C compiler the C column says SKIPPED, loudly, and nothing is
//! judged.

use crate::cload::CClient;
use crate::fixture::bench_value;
use crate::floor::Floor;
use crate::load::{self, LoadResult, LoadSpec, Target};
use crate::report::{Cell, CheckRow, Goal, Report, run_ratios, verdict};
use crate::stats::Measure;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::time::Duration;

/// How the check is shaped (the `get` benchmark's closed-loop cells).
#[derive(Debug, Clone)]
pub struct CheckConfig {
    pub runs: usize,
    /// How long each client is timed per cell and run (cut into `slices`).
    pub duration: Duration,
    pub slices: usize,
    pub warmup: u64,
    pub clients: Vec<usize>,
    pub sizes: Vec<usize>,
    pub smoke: bool,
}

/// How far apart the two clients' totals may be.
const TOLERANCE: f64 = 0.10;

const KINDS: [&str; 2] = ["flux-bench", "C"];

/// Runs the check and appends its rows to `report`.
pub fn run(cfg: &CheckConfig, report: &mut Report) -> Result<()> {
    let c = match CClient::build() {
        Ok(c) => {
            eprintln!(
                "client check: built bench/c/getload.c with `{}`",
                c.compiler
            );
            Some(c)
        }
        Err(why) => {
            eprintln!("SKIPPED: the C client check: {why}");
            report.notes.push(format!(
                "client check SKIPPED: {why}; flux-bench's client is not checked against C"
            ));
            None
        }
    };
    let floors: BTreeMap<usize, Floor> = cfg
        .sizes
        .iter()
        .map(|&s| Ok((s, Floor::start(s)?)))
        .collect::<Result<_>>()?;
    let slices = cfg.slices.max(1);
    let slice = cfg.duration / slices as u32;
    // results[(size, clients, kind)] = one merged result per run.
    let mut results: BTreeMap<(usize, usize, usize), Vec<LoadResult>> = BTreeMap::new();
    for run in 0..cfg.runs {
        for &size in &cfg.sizes {
            let value = bench_value(size);
            let key = format!("BENCH_{size}");
            let floor = floors[&size].target();
            let exchange = floor.exchange(&key, &value)?;
            for &clients in &cfg.clients {
                let spec = LoadSpec {
                    clients,
                    depth: 1,
                    warmup: cfg.warmup,
                    duration: slice,
                };
                let mut parts: [Vec<LoadResult>; 2] = [Vec::new(), Vec::new()];
                for s in 0..slices {
                    for i in 0..2 {
                        let kind = (run + s + i) % 2;
                        if kind == 1 && c.is_none() {
                            continue;
                        }
                        let r = match (kind, &c) {
                            (1, Some(c)) => {
                                match c.run(&floor.socket, &key, &value, clients, slice, cfg.warmup)
                                {
                                    Ok(r) => r,
                                    // A wrong answer or a failed request:
                                    // a correctness failure, said once.
                                    Err(e) => LoadResult {
                                        errors: 1,
                                        first_problem: Some(format!("C client: {e:#}")),
                                        ..LoadResult::default()
                                    },
                                }
                            }
                            _ => load::run(&floor, spec, &exchange)
                                .context("flux-bench client on the floor")?,
                        };
                        if r.errors + r.wrong_values > 0 {
                            report.failures.push(format!(
                                "client check, floor {size} B ×{clients}: {}",
                                r.first_problem.clone().unwrap_or_default()
                            ));
                            continue;
                        }
                        parts[kind].push(r);
                    }
                }
                for (kind, part) in parts.into_iter().enumerate() {
                    if part.is_empty() {
                        continue;
                    }
                    let mut r = LoadResult::merge(part);
                    eprintln!(
                        "run {}/{} client check {:>5} B ×{:<3} {:<10} {:>7.0} req/s (per client {:.0} / {:.0} / {:.0})  p50 {:>7.1} µs  p99 {:>7.1} µs",
                        run + 1,
                        cfg.runs,
                        size,
                        clients,
                        KINDS[kind],
                        r.throughput_rps,
                        r.clients.min,
                        r.clients.mean,
                        r.clients.max,
                        r.latency.p50_us,
                        r.latency.p99_us,
                    );
                    r.samples = Vec::new();
                    results.entry((size, clients, kind)).or_default().push(r);
                }
            }
        }
    }
    for &size in &cfg.sizes {
        for &clients in &cfg.clients {
            add_rows(report, cfg, &results, size, clients, c.is_some());
        }
    }
    Ok(())
}

type Pick = fn(&LoadResult) -> f64;

fn add_rows(
    report: &mut Report,
    cfg: &CheckConfig,
    results: &BTreeMap<(usize, usize, usize), Vec<LoadResult>>,
    size: usize,
    clients: usize,
    have_c: bool,
) {
    let mut figures: Vec<(&str, &'static str, Pick)> =
        vec![("total", "req/s", |r| r.throughput_rps)];
    if clients > 1 {
        figures.extend([
            (
                "client min",
                "req/s",
                (|r: &LoadResult| r.clients.min) as Pick,
            ),
            ("client mean", "req/s", |r| r.clients.mean),
            ("client max", "req/s", |r| r.clients.max),
        ]);
    }
    figures.extend([
        ("p50", "µs", (|r: &LoadResult| r.latency.p50_us) as Pick),
        ("p99", "µs", |r| r.latency.p99_us),
    ]);
    for (name, unit, pick) in figures {
        let values = |kind: usize| {
            results
                .get(&(size, clients, kind))
                .map(|rs| rs.iter().map(pick).collect::<Vec<f64>>())
        };
        let Some(bench) = values(0) else { continue };
        let c = values(1);
        let mut row = CheckRow {
            metric: format!(
                "floor {} ×{clients} {name}",
                crate::bench_get::size_label(size)
            ),
            unit,
            bench: Measure::of(&bench),
            c_ratio: run_ratios(&bench, c.as_deref()),
            c: match c {
                Some(v) => Cell::Value(Measure::of(&v)),
                None if !have_c => Cell::Skipped("no C compiler".into()),
                None => Cell::None,
            },
            goals: Vec::new(),
        };
        if name == "total" {
            let ok = row.vs_c().map(|x| (x - 1.0).abs() <= TOLERANCE);
            row.goals.push(Goal {
                text: "within 10 % of C".into(),
                verdict: verdict(ok, cfg.smoke),
            });
        }
        report.client_check.push(row);
    }
}
