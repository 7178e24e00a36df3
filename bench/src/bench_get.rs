//! `get` throughput, fairness, latency and server CPU: fluxd against Redis
//! and the floor.
//!
//! One fluxd (project `bench`, secrets set through the protocol), one
//! `redis-server` holding the same keys and values, and one floor server
//! process per value size ([`crate::floor`]). All three are loaded by the
//! same blocking client ([`crate::load`]: one thread and one connection per
//! client, pre-encoded requests, every answer checked byte for byte), so
//! the client costs the same everywhere and a ratio compares servers; and
//! `flux-bench client-check` ([`crate::bench_client`]) checks that client
//! against one written in C.
//!
//! Shapes: closed loop with 1, 16 and 64 clients (one request in flight per
//! connection), and pipelined — one connection with 16 requests in flight
//! (written together, then the 16 answers read), as a busy function
//! runtime sharing one connection produces.
//!
//! Every cell lasts a fixed time, not a fixed number of requests: each
//! client runs until the deadline, so a server that serves some clients
//! ahead of others shows it in the per-client rates (slowest, mean,
//! fastest) instead of in a cell that lasts until its slowest client is
//! done. For each run, value size and shape, the targets get the same
//! time, cut into slices that the targets take turns on (in an order that
//! rotates from slice to slice and run to run), so a burst of outside load
//! on this shared machine is spread over all three rather than landing on
//! one. Each figure is the median over runs of the figure merged over that
//! run's slices. Server CPU per request is the server process's utime +
//! stime over the timed part of every slice, divided by the requests
//! served; client CPU per request is the same for this process.
//!
//! Targets (judged on this 2-core machine, printed `ok` or `MISS`, never a
//! failure): at 16 and 64 clients fluxd's total is at least 0.8× the
//! floor's and 1.5× Redis's, its slowest client at least 0.5× its mean
//! client, its p99 and its server CPU per request no higher than Redis's;
//! with one client its p50 is within 1.5× the floor's.

use crate::fixture::bench_value;
use crate::floor::{Floor, FramedTarget};
use crate::fluxd_process::{Fluxd, FluxdBinary};
use crate::load::{self, LoadResult, LoadSpec, Target};
use crate::redis::RedisServer;
use crate::report::{Cell, Report, Row, run_ratios, verdict};
use crate::stats::Measure;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// How the `get` benchmark is shaped.
#[derive(Debug, Clone)]
pub struct GetConfig {
    pub runs: usize,
    /// How long each target is timed per cell and run (cut into `slices`).
    pub duration: Duration,
    /// Untimed rounds per client before each slice.
    pub warmup: u64,
    /// Slices per cell: the targets take turns slice by slice.
    pub slices: usize,
    pub clients: Vec<usize>,
    /// Requests in flight in the pipelined cells; 0 = no pipelined cells.
    pub pipeline: usize,
    pub sizes: Vec<usize>,
    pub redis: Option<PathBuf>,
    pub smoke: bool,
}

/// fluxd's configuration in the benchmark: the default, except that the
/// per-connection request budget (`[limits] requests_per_second`, 100,000
/// by default) is set so high that it never runs out — the pipelined cell
/// serves several hundred thousand requests per second on one connection —
/// while fluxd still checks it on every request, as in production.
const FLUXD_CONFIG: &str = "[limits]\nrequests_per_second = 4000000000\n";

const PROJECT: &str = "bench";
const TARGETS: [&str; 3] = ["fluxd", "redis", "floor"];

/// One cell's load: `clients` connections with `depth` requests in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Shape {
    clients: usize,
    depth: usize,
}

impl Shape {
    fn label(&self) -> String {
        if self.depth == 1 {
            format!("×{}", self.clients)
        } else {
            format!("×{} pipelined ({} in flight)", self.clients, self.depth)
        }
    }
}

/// The key of the value of `size` bytes, in fluxd, Redis and the floor.
pub(crate) fn key(size: usize) -> String {
    format!("BENCH_{size}")
}

pub(crate) fn size_label(size: usize) -> String {
    if size >= 1024 && size % 1024 == 0 {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

/// Runs the benchmark and appends its rows to `report`.
pub fn run(bin: &FluxdBinary, cfg: &GetConfig, report: &mut Report) -> Result<()> {
    let mut fluxd = Fluxd::new(bin)?;
    fluxd.set_config(FLUXD_CONFIG)?;
    fluxd.start()?;
    fluxd
        .control()?
        .create_project(PROJECT)
        .context("CreateProject")?;
    let mut setter = fluxd.client(PROJECT)?;
    for &size in &cfg.sizes {
        setter
            .set(&key(size), bench_value(size).into())
            .context("Set")?;
    }
    drop(setter);
    let flux_target = FramedTarget {
        name: "fluxd",
        socket: fluxd.project_socket(PROJECT),
        pid: fluxd.pid(),
    };

    let redis = RedisServer::start_with_values(
        cfg.redis.as_deref(),
        &cfg.sizes,
        report,
        "every redis figure is SKIPPED",
    )?;
    let redis_target = redis.as_ref().map(RedisServer::target);
    let floors: BTreeMap<usize, Floor> = cfg
        .sizes
        .iter()
        .map(|&s| Ok((s, Floor::start(s)?)))
        .collect::<Result<_>>()?;

    let mut shapes: Vec<Shape> = cfg
        .clients
        .iter()
        .map(|&clients| Shape { clients, depth: 1 })
        .collect();
    if cfg.pipeline > 1 {
        shapes.push(Shape {
            clients: 1,
            depth: cfg.pipeline,
        });
    }

    // results[(size, shape, target)] = one LoadResult per run.
    let mut results: BTreeMap<(usize, Shape, &str), Vec<LoadResult>> = BTreeMap::new();
    for run in 0..cfg.runs {
        for &size in &cfg.sizes {
            let value = bench_value(size);
            let floor_target = floors[&size].target();
            let mut targets: Vec<&dyn Target> = vec![&flux_target];
            if let Some(r) = &redis_target {
                targets.push(r);
            }
            targets.push(&floor_target);
            let exchanges = targets
                .iter()
                .map(|t| t.exchange(&key(size), &value))
                .collect::<Result<Vec<_>>>()?;
            for &shape in &shapes {
                let spec = LoadSpec {
                    clients: shape.clients,
                    depth: shape.depth,
                    warmup: cfg.warmup,
                    duration: cfg.duration / cfg.slices.max(1) as u32,
                };
                // Interleave the targets slice by slice, and rotate who goes
                // first, so a slow patch of the machine does not land on
                // one target.
                let mut slices: Vec<Vec<LoadResult>> = vec![Vec::new(); targets.len()];
                for slice in 0..cfg.slices.max(1) {
                    let first = (run + slice) % targets.len();
                    for i in 0..targets.len() {
                        let t = (first + i) % targets.len();
                        let target = targets[t];
                        let r = load::run(target, spec, &exchanges[t])
                            .with_context(|| format!("{} load run", target.name()))?;
                        slices[t].push(r);
                    }
                }
                for (target, slices) in targets.iter().zip(slices) {
                    let mut r = LoadResult::merge(slices);
                    eprintln!(
                        "run {}/{} get {:>6} {:<28} {:<5} {:>7.0} req/s (per client {:.0} / {:.0} / {:.0})  p50 {:>7.1} µs  p99 {:>7.1} µs  p99.9 {:>8.1} µs  CPU/req server {:>5.2} µs client {:>5.2} µs",
                        run + 1,
                        cfg.runs,
                        size_label(size),
                        shape.label(),
                        target.name(),
                        r.throughput_rps,
                        r.clients.min,
                        r.clients.mean,
                        r.clients.max,
                        r.latency.p50_us,
                        r.latency.p99_us,
                        r.latency.p999_us,
                        r.server_cpu_us,
                        r.client_cpu_us,
                    );
                    if r.errors > 0 || r.wrong_values > 0 {
                        report.failures.push(format!(
                            "get {} {} on {}: {} error(s), {} wrong value(s): {}",
                            size_label(size),
                            shape.label(),
                            target.name(),
                            r.errors,
                            r.wrong_values,
                            r.first_problem.clone().unwrap_or_default()
                        ));
                    }
                    r.samples = Vec::new();
                    results
                        .entry((size, shape, target.name()))
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
        for &shape in &shapes {
            add_rows(report, cfg, &results, size, shape, redis.is_some());
        }
    }
    Ok(())
}

type Pick = fn(&LoadResult) -> f64;

/// A figure of the table: its name, unit, how it is read from one run, and
/// whether fluxd / other target ratios mean anything for it.
struct Figure {
    name: &'static str,
    unit: &'static str,
    pick: Pick,
    ratios: bool,
}

const fn figure(name: &'static str, unit: &'static str, pick: Pick) -> Figure {
    Figure {
        name,
        unit,
        pick,
        ratios: true,
    }
}

fn add_rows(
    report: &mut Report,
    cfg: &GetConfig,
    results: &BTreeMap<(usize, Shape, &str), Vec<LoadResult>>,
    size: usize,
    shape: Shape,
    have_redis: bool,
) {
    let total = figure("total", "req/s", |r| r.throughput_rps);
    // Per client: one connection over one slice.
    let per_client = [
        figure("client min", "req/s", |r| r.clients.min),
        figure("client mean", "req/s", |r| r.clients.mean),
        figure("client max", "req/s", |r| r.clients.max),
        Figure {
            name: "slowest / mean client",
            unit: "×",
            pick: |r| r.clients.min_over_mean(),
            ratios: false,
        },
    ];
    let latency = [
        figure("p50", "µs", |r| r.latency.p50_us),
        figure("p99", "µs", |r| r.latency.p99_us),
        figure("p99.9", "µs", |r| r.latency.p999_us),
    ];
    let cpu = [
        figure("server CPU", "µs/req", |r| r.server_cpu_us),
        figure("client CPU", "µs/req", |r| r.client_cpu_us),
    ];
    let mut figures: Vec<&Figure> = vec![&total];
    if shape.depth == 1 {
        if shape.clients > 1 {
            figures.extend(&per_client);
        }
        // A pipelined round's latency is that of 16 requests together,
        // which compares with nothing above: throughput and CPU only.
        figures.extend(&latency);
    }
    figures.extend(&cpu);
    for fig in figures {
        let values = |target: &str| {
            results
                .get(&(size, shape, target))
                .map(|rs| rs.iter().map(fig.pick).collect::<Vec<f64>>())
        };
        let [f, r, fl] = TARGETS.map(values);
        let Some(f) = f else { continue };
        let mut row = Row::fluxd(
            "get",
            format!("get {} {} {}", size_label(size), shape.label(), fig.name),
            fig.unit,
            Measure::of(&f),
        );
        row.ratios = fig.ratios;
        if fig.ratios {
            row.redis_ratio = run_ratios(&f, r.as_deref());
            row.floor_ratio = run_ratios(&f, fl.as_deref());
        }
        row.redis = match r {
            Some(v) => Cell::Value(Measure::of(&v)),
            None if !have_redis => Cell::Skipped("redis-server not installed".into()),
            None => Cell::None,
        };
        row.floor = fl.map_or(Cell::None, |v| Cell::Value(Measure::of(&v)));
        if shape.depth == 1 {
            row = judge(row, shape.clients, fig.name, cfg.smoke);
        }
        report.rows.push(row);
    }
}

/// The targets of a closed-loop row, each judged on its own: under
/// concurrency (16 and 64 clients) a total of at least 0.8× the floor's and
/// 1.5× Redis's, the slowest client at least 0.5× the mean client (no
/// starvation bought for throughput), a p99 no longer than Redis's and no
/// more server CPU per request; with one client a p50 within 1.5× the
/// floor's. A target whose comparison point is missing (no Redis) is not
/// judged.
fn judge(row: Row, clients: usize, metric: &str, smoke: bool) -> Row {
    let busy = clients >= 16;
    let (vs_floor, vs_redis) = (row.vs_floor(), row.vs_redis());
    match metric {
        "total" if busy => row
            .with_goal("≥ 0.8× floor", verdict(vs_floor.map(|x| x >= 0.8), smoke))
            .with_goal("≥ 1.5× redis", verdict(vs_redis.map(|x| x >= 1.5), smoke)),
        "slowest / mean client" if busy => {
            let ok = Some(row.fluxd.median)
                .filter(|m| m.is_finite())
                .map(|m| m >= 0.5);
            row.with_goal("fluxd ≥ 0.5", verdict(ok, smoke))
        }
        "p99" | "server CPU" if busy => {
            row.with_goal("≤ redis", verdict(vs_redis.map(|x| x <= 1.0), smoke))
        }
        "p50" if clients == 1 => {
            row.with_goal("≤ 1.5× floor", verdict(vs_floor.map(|x| x <= 1.5), smoke))
        }
        _ => row,
    }
}
