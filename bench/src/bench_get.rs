//! `get` throughput and latency: fluxd against Redis and the floor.
//!
//! One fluxd (project `bench`, secrets set through the protocol), one
//! `redis-server` holding the same keys and values, and one [`Floor`] per
//! value size. For each run, value size and client count, the three
//! targets get the same load ([`crate::load`]), cut into slices that the
//! targets take turns on (in an order that rotates from slice to slice and
//! run to run), so a burst of outside load on this shared machine is spread
//! over all three rather than landing on one. Each figure is the median
//! over runs of the figure merged over that run's slices.
//!
//! Targets judged here (on this 2-core machine): at 16 clients fluxd's
//! throughput is at least 1.2× Redis's and its p99 no higher; with one
//! client its p50 is within 1.3× of the floor's.

use crate::fixture::value;
use crate::floor::{Floor, ProtocolTarget};
use crate::fluxd::{Fluxd, FluxdBinary};
use crate::load::{self, LoadResult, LoadSpec, Target};
use crate::redis::RedisServer;
use crate::report::{Cell, Report, Row, verdict};
use crate::stats::Measure;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// How the `get` benchmark is shaped.
#[derive(Debug, Clone)]
pub struct GetConfig {
    pub runs: usize,
    pub requests: u64,
    pub warmup: u64,
    /// Slices per cell: the targets take turns slice by slice.
    pub slices: usize,
    pub clients: Vec<usize>,
    pub sizes: Vec<usize>,
    pub redis: Option<PathBuf>,
    pub smoke: bool,
}

const PROJECT: &str = "bench";
const TARGETS: [&str; 3] = ["fluxd", "redis", "floor"];

fn key(size: usize) -> String {
    format!("BENCH_{size}")
}

/// Runs the benchmark and appends its rows to `report`.
pub fn run(bin: &FluxdBinary, cfg: &GetConfig, report: &mut Report) -> Result<()> {
    let mut fluxd = Fluxd::new(bin)?;
    fluxd.start()?;
    fluxd
        .control()?
        .create_project(PROJECT)
        .context("CreateProject")?;
    let mut setter = fluxd.client(PROJECT)?;
    for &size in &cfg.sizes {
        setter
            .set(&key(size), value("get", size as u64, size).into())
            .context("Set")?;
    }
    let flux_target = ProtocolTarget {
        name: "fluxd",
        socket: fluxd.project_socket(PROJECT),
    };

    let redis = match cfg.redis.as_deref() {
        Some(bin) => Some(RedisServer::start(bin)?),
        None => {
            eprintln!("SKIPPED: redis-server not found: the redis column is SKIPPED");
            report
                .notes
                .push("redis-server not found: every redis figure is SKIPPED".into());
            None
        }
    };
    if let Some(r) = &redis {
        for &size in &cfg.sizes {
            r.set(&key(size), value("get", size as u64, size).as_bytes())?;
        }
    }
    let redis_target = redis.as_ref().map(RedisServer::target);
    let floors: BTreeMap<usize, Floor> = cfg
        .sizes
        .iter()
        .map(|&s| Ok((s, Floor::start(&value("get", s as u64, s))?)))
        .collect::<Result<_>>()?;

    // results[(size, clients, target)] = one LoadResult per run.
    let mut results: BTreeMap<(usize, usize, &str), Vec<LoadResult>> = BTreeMap::new();
    for run in 0..cfg.runs {
        for &size in &cfg.sizes {
            let expected = value("get", size as u64, size);
            let floor_target = ProtocolTarget {
                name: "floor",
                socket: floors[&size].socket().to_path_buf(),
            };
            for &clients in &cfg.clients {
                let spec = LoadSpec {
                    clients,
                    requests: (cfg.requests / cfg.slices as u64).max(clients as u64),
                    warmup: cfg.warmup,
                    deadline: Duration::from_secs(if cfg.smoke { 10 } else { 60 }),
                };
                let mut targets: Vec<&dyn Target> = vec![&flux_target];
                if let Some(r) = &redis_target {
                    targets.push(r);
                }
                targets.push(&floor_target);
                // Interleave the targets slice by slice, and rotate who goes
                // first, so a slow patch of the machine does not land on
                // one target.
                let mut slices: Vec<Vec<LoadResult>> = vec![Vec::new(); targets.len()];
                for slice in 0..cfg.slices {
                    let first = (run + slice) % targets.len();
                    for i in 0..targets.len() {
                        let t = (first + i) % targets.len();
                        let target = targets[t];
                        let r = load::run(target, spec, &key(size), expected.as_bytes())
                            .with_context(|| format!("{} load run", target.name()))?;
                        slices[t].push(r);
                    }
                }
                for (target, slices) in targets.iter().zip(slices) {
                    let mut r = LoadResult::merge(slices);
                    eprintln!(
                        "run {}/{} get {size:>4} B ×{clients:<2} {:<5} {:>9.0} req/s  p50 {:>7.1} µs  p99 {:>7.1} µs  p99.9 {:>8.1} µs",
                        run + 1,
                        cfg.runs,
                        target.name(),
                        r.throughput_rps,
                        r.latency.p50_us,
                        r.latency.p99_us,
                        r.latency.p999_us
                    );
                    if r.errors > 0 || r.wrong_values > 0 {
                        report.failures.push(format!(
                            "get {size} B ×{clients} on {}: {} error(s), {} wrong value(s): {}",
                            target.name(),
                            r.errors,
                            r.wrong_values,
                            r.first_problem.clone().unwrap_or_default()
                        ));
                    }
                    r.samples = Vec::new();
                    results
                        .entry((size, clients, target.name()))
                        .or_default()
                        .push(r);
                }
            }
        }
    }
    if !fluxd.is_running() {
        report
            .failures
            .push("fluxd exited during the get benchmark".into());
    }

    for &size in &cfg.sizes {
        for &clients in &cfg.clients {
            add_rows(report, cfg, &results, size, clients, redis.is_some());
        }
    }
    Ok(())
}

type Pick = fn(&LoadResult) -> f64;

fn add_rows(
    report: &mut Report,
    cfg: &GetConfig,
    results: &BTreeMap<(usize, usize, &str), Vec<LoadResult>>,
    size: usize,
    clients: usize,
    have_redis: bool,
) {
    let figures: [(&str, &'static str, Pick); 4] = [
        ("throughput", "req/s", |r| r.throughput_rps),
        ("p50", "µs", |r| r.latency.p50_us),
        ("p99", "µs", |r| r.latency.p99_us),
        ("p99.9", "µs", |r| r.latency.p999_us),
    ];
    let size_label = if size >= 1024 && size % 1024 == 0 {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    };
    for (name, unit, pick) in figures {
        let measure = |target: &str| {
            results.get(&(size, clients, target)).map(|rs| {
                let v: Vec<f64> = rs.iter().map(pick).collect();
                Measure::of(&v)
            })
        };
        let [f, r, fl] = TARGETS.map(measure);
        let Some(fluxd) = f else { continue };
        let mut row = Row::fluxd(
            "get",
            format!("get {size_label} ×{clients} {name}"),
            unit,
            fluxd,
        );
        row.redis = match r {
            Some(m) => Cell::Value(m),
            None if !have_redis => Cell::Skipped("redis-server not installed".into()),
            None => Cell::None,
        };
        row.floor = fl.map_or(Cell::None, Cell::Value);
        if clients == 16 && name == "throughput" {
            let ok = row.vs_redis().map(|x| x >= 1.2);
            row = row.with_goal("≥ 1.2× redis", verdict(ok, cfg.smoke));
        } else if clients == 16 && name == "p99" {
            let ok = row.vs_redis().map(|x| x <= 1.0);
            row = row.with_goal("≤ redis", verdict(ok, cfg.smoke));
        } else if clients == 1 && name == "p50" {
            let ok = row.vs_floor().map(|x| x <= 1.3);
            row = row.with_goal("≤ 1.3× floor", verdict(ok, cfg.smoke));
        }
        report.rows.push(row);
    }
}
