//! What any server reaches on this machine (`flux-bench floors`): the
//! do-nothing floor server in each of its [`Design`]s — a blocking thread
//! per connection (the `get` benchmark's floor), one event loop, one event
//! loop per CPU with connections dealt out and each loop pinned — beside
//! Redis, loaded by the `get` benchmark's client in its closed-loop cells.
//!
//! The `get` benchmark's targets compare fluxd with Redis and with the
//! thread-per-connection floor; a target above what every design of a
//! server that does nothing reaches is a target for the machine, not for
//! fluxd. This measures it the same way the `get` cells are measured: fixed
//! duration, fresh connections per slice, the targets taking turns slice
//! by slice in an order that rotates per slice and per run, and each ratio
//! to Redis taken run by run. The *best / redis* rows are, run by run, the
//! highest total of the three floor designs over Redis's total, and the
//! lowest p99 and CPU per request of the three over Redis's: the most a
//! server of this protocol gets over Redis on this machine, whichever
//! design it uses.
//!
//! Without `redis-server` nothing is compared: the command says SKIPPED
//! and measures the floors alone.

use crate::bench_client::CheckConfig;
use crate::bench_get::{key, size_label};
use crate::fixture::bench_value;
use crate::floor::{Design, Floor};
use crate::load::{self, LoadResult, LoadSpec, Target};
use crate::redis::RedisServer;
use crate::report::{Cell, DesignRow, Report, run_ratios};
use crate::stats::Measure;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// How the comparison is shaped: the `get` benchmark's closed-loop cells,
/// as the client check runs them, and Redis.
#[derive(Debug, Clone)]
pub struct FloorsConfig {
    pub cells: CheckConfig,
    pub redis: Option<PathBuf>,
}

/// The columns, in order: Redis, then each floor design.
pub const COLUMNS: [&str; 4] = ["redis", "threads", "event loop", "loop per CPU"];

/// Runs the comparison and appends its rows to `report`.
pub fn run(cfg: &FloorsConfig, report: &mut Report) -> Result<()> {
    let redis = RedisServer::start_with_values(
        cfg.redis.as_deref(),
        &cfg.cells.sizes,
        report,
        "the floors are not compared with Redis",
    )?;
    let redis_target = redis.as_ref().map(RedisServer::target);
    let mut floors: BTreeMap<(usize, Design), Floor> = BTreeMap::new();
    for &size in &cfg.cells.sizes {
        for design in Design::ALL {
            floors.insert((size, design), Floor::start_design(size, design)?);
        }
    }
    let slices = cfg.cells.slices.max(1);
    // results[(size, clients, column)] = one merged result per run.
    let mut results: BTreeMap<(usize, usize, usize), Vec<LoadResult>> = BTreeMap::new();
    for run in 0..cfg.cells.runs {
        for &size in &cfg.cells.sizes {
            let value = bench_value(size);
            let floor_targets: Vec<_> = Design::ALL
                .iter()
                .map(|&d| floors[&(size, d)].target())
                .collect();
            // (column, target): Redis is column 0 when there is one.
            let mut targets: Vec<(usize, &dyn Target)> = Vec::new();
            if let Some(r) = &redis_target {
                targets.push((0, r));
            }
            for (i, t) in floor_targets.iter().enumerate() {
                targets.push((i + 1, t));
            }
            let exchanges = targets
                .iter()
                .map(|(_, t)| t.exchange(&key(size), &value))
                .collect::<Result<Vec<_>>>()?;
            for &clients in &cfg.cells.clients {
                let spec = LoadSpec {
                    clients,
                    depth: 1,
                    warmup: cfg.cells.warmup,
                    duration: cfg.cells.duration / slices as u32,
                };
                let mut parts: Vec<Vec<LoadResult>> = vec![Vec::new(); targets.len()];
                for slice in 0..slices {
                    let first = (run + slice) % targets.len();
                    for i in 0..targets.len() {
                        let t = (first + i) % targets.len();
                        let target = targets[t].1;
                        let r = load::run(target, spec, &exchanges[t])
                            .with_context(|| format!("{} load run", target.name()))?;
                        parts[t].push(r);
                    }
                }
                for ((column, target), part) in targets.iter().zip(parts) {
                    let mut r = LoadResult::merge(part);
                    eprintln!(
                        "run {}/{} floors {:>6} ×{:<3} {:<21} {:>7.0} req/s (per client {:.0} / {:.0} / {:.0})  p99 {:>7.1} µs  CPU/req server {:>5.2} µs",
                        run + 1,
                        cfg.cells.runs,
                        size_label(size),
                        clients,
                        target.name(),
                        r.throughput_rps,
                        r.clients.min,
                        r.clients.mean,
                        r.clients.max,
                        r.latency.p99_us,
                        r.server_cpu_us,
                    );
                    if r.errors + r.wrong_values > 0 {
                        report.failures.push(format!(
                            "floors {} ×{clients} on {}: {}",
                            size_label(size),
                            target.name(),
                            r.first_problem.clone().unwrap_or_default()
                        ));
                        continue;
                    }
                    r.samples = Vec::new();
                    results.entry((size, clients, *column)).or_default().push(r);
                }
            }
        }
    }
    for &size in &cfg.cells.sizes {
        for &clients in &cfg.cells.clients {
            add_rows(report, &results, size, clients);
        }
    }
    Ok(())
}

type Pick = fn(&LoadResult) -> f64;

/// Whether more of a figure is better (a total) or worse (a latency, a
/// cost), for the *best / redis* column.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Better {
    More,
    Less,
}

fn add_rows(
    report: &mut Report,
    results: &BTreeMap<(usize, usize, usize), Vec<LoadResult>>,
    size: usize,
    clients: usize,
) {
    let mut figures: Vec<(&str, &'static str, Pick, Option<Better>)> =
        vec![("total", "req/s", |r| r.throughput_rps, Some(Better::More))];
    if clients > 1 {
        figures.extend([
            (
                "client min",
                "req/s",
                (|r: &LoadResult| r.clients.min) as Pick,
                None,
            ),
            (
                "slowest / mean client",
                "×",
                |r| r.clients.min_over_mean(),
                None,
            ),
        ]);
    }
    figures.extend([
        (
            "p50",
            "µs",
            (|r: &LoadResult| r.latency.p50_us) as Pick,
            None,
        ),
        ("p99", "µs", |r| r.latency.p99_us, Some(Better::Less)),
        (
            "server CPU",
            "µs/req",
            |r| r.server_cpu_us,
            Some(Better::Less),
        ),
    ]);
    for (name, unit, pick, better) in figures {
        let values: Vec<Option<Vec<f64>>> = (0..COLUMNS.len())
            .map(|c| {
                results
                    .get(&(size, clients, c))
                    .map(|rs| rs.iter().map(pick).collect())
            })
            .collect();
        if values.iter().all(Option::is_none) {
            continue;
        }
        let redis = values[0].as_deref();
        let ratios = name != "slowest / mean client";
        let floors: Vec<Option<&[f64]>> = values.iter().skip(1).map(|v| v.as_deref()).collect();
        report.designs.push(DesignRow {
            metric: format!("{} ×{clients} {name}", size_label(size)),
            unit,
            cells: values
                .iter()
                .map(|v| {
                    v.as_deref()
                        .map_or(Cell::None, |v| Cell::Value(Measure::of(v)))
                })
                .collect(),
            vs_redis: floors
                .iter()
                .map(|v| ratios.then(|| run_ratios((*v)?, redis)).flatten())
                .collect(),
            best_vs_redis: better.and_then(|b| best_over(b, &floors, redis?)),
        });
    }
}

/// Run by run, the best of the floor designs (the highest total, the
/// lowest latency or cost) over Redis's figure; `None` unless every
/// design and Redis ran every run.
fn best_over(better: Better, floors: &[Option<&[f64]>], redis: &[f64]) -> Option<Measure> {
    let floors: Vec<&[f64]> = floors.iter().copied().collect::<Option<_>>()?;
    if floors.is_empty() || floors.iter().any(|v| v.len() != redis.len()) {
        return None;
    }
    let best: Vec<f64> = (0..redis.len())
        .map(|i| {
            let run = floors.iter().map(|v| v[i]);
            match better {
                Better::More => run.fold(f64::MIN, f64::max),
                Better::Less => run.fold(f64::MAX, f64::min),
            }
        })
        .collect();
    run_ratios(&best, Some(redis))
}

#[cfg(test)]
mod tests {
    use super::{Better, best_over};

    #[test]
    fn the_best_design_is_picked_run_by_run() {
        let threads = [150.0, 100.0];
        let event_loop = [120.0, 130.0];
        let redis = [100.0, 100.0];
        let floors = [Some(&threads[..]), Some(&event_loop[..])];
        // 1.5 in the first run (threads), 1.3 in the second (the loop).
        let more = best_over(Better::More, &floors, &redis).unwrap();
        assert!((more.min - 1.3).abs() < 1e-9 && (more.max - 1.5).abs() < 1e-9);
        let less = best_over(Better::Less, &floors, &redis).unwrap();
        assert!((less.min - 1.0).abs() < 1e-9 && (less.max - 1.2).abs() < 1e-9);
        // A design that did not run every run: nothing to compare.
        assert!(best_over(Better::More, &[Some(&threads[..1])], &redis).is_none());
        assert!(best_over(Better::More, &[None], &redis).is_none());
    }
}
