//! `get` throughput, latency and server CPU: fluxd against Redis and the
//! floor.
//!
//! One fluxd (project `bench`, secrets set through the protocol), one
//! `redis-server` holding the same keys and values, and one floor server
//! process per value size ([`crate::floor`]). All three are loaded by the
//! same blocking client ([`crate::load`]: one thread and one connection per
//! client, pre-encoded requests, every answer checked byte for byte), so
//! the client costs the same everywhere and a ratio compares servers.
//!
//! Shapes: closed loop with 1, 16 and 64 clients (one request in flight per
//! connection), and pipelined — one connection with 16 requests in flight
//! (written together, then the 16 answers read), as a busy function
//! runtime sharing one connection produces. The pipelined cells do four
//! times the requests of a closed-loop cell: they go faster, and their CPU
//! figures need enough clock ticks.
//!
//! For each run, value size and shape, the targets get the same load, cut
//! into slices that the targets take turns on (in an order that rotates
//! from slice to slice and run to run), so a burst of outside load on this
//! shared machine is spread over all three rather than landing on one.
//! Each figure is the median over runs of the figure merged over that
//! run's slices. Server CPU per request is the server process's utime +
//! stime over the timed part of every slice, divided by the requests
//! served; client CPU per request is the same for this process.
//!
//! Targets judged here (on this 2-core machine): at 16 clients fluxd's
//! throughput is at least 1.2× Redis's and its p99 no higher; with one
//! client its p50 is within 1.3× of the floor's.

use crate::fixture::bench_value;
use crate::floor::{Floor, FramedTarget};
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
    /// Timed requests per closed-loop cell (pipelined cells do 4×).
    pub requests: u64,
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

fn key(size: usize) -> String {
    format!("BENCH_{size}")
}

fn size_label(size: usize) -> String {
    if size >= 1024 && size % 1024 == 0 {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
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
            .set(&key(size), bench_value(size).into())
            .context("Set")?;
    }
    drop(setter);
    let flux_target = FramedTarget {
        name: "fluxd",
        socket: fluxd.project_socket(PROJECT),
        pid: fluxd.pid(),
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
            r.set(&key(size), bench_value(size).as_bytes())?;
        }
    }
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
                let requests = if shape.depth > 1 {
                    cfg.requests * 4
                } else {
                    cfg.requests
                };
                let spec = LoadSpec {
                    clients: shape.clients,
                    depth: shape.depth,
                    requests: (requests / cfg.slices as u64)
                        .max((shape.clients * shape.depth) as u64),
                    warmup: cfg.warmup,
                    deadline: Duration::from_secs(if cfg.smoke { 10 } else { 60 }),
                };
                // Interleave the targets slice by slice, and rotate who goes
                // first, so a slow patch of the machine does not land on
                // one target.
                let mut slices: Vec<Vec<LoadResult>> = vec![Vec::new(); targets.len()];
                for slice in 0..cfg.slices {
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
                        "run {}/{} get {:>6} {:<28} {:<5} {:>9.0} req/s  p50 {:>7.1} µs  p99 {:>7.1} µs  p99.9 {:>8.1} µs  CPU/req server {:>5.2} µs client {:>5.2} µs",
                        run + 1,
                        cfg.runs,
                        size_label(size),
                        shape.label(),
                        target.name(),
                        r.throughput_rps,
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

fn add_rows(
    report: &mut Report,
    cfg: &GetConfig,
    results: &BTreeMap<(usize, Shape, &str), Vec<LoadResult>>,
    size: usize,
    shape: Shape,
    have_redis: bool,
) {
    let closed: &[(&str, &'static str, Pick)] = &[
        ("throughput", "req/s", |r| r.throughput_rps),
        ("p50", "µs", |r| r.latency.p50_us),
        ("p99", "µs", |r| r.latency.p99_us),
        ("p99.9", "µs", |r| r.latency.p999_us),
        ("server CPU", "µs/req", |r| r.server_cpu_us),
        ("client CPU", "µs/req", |r| r.client_cpu_us),
    ];
    // A pipelined round's latency is that of 16 requests together, which
    // compares with nothing above: throughput and CPU only.
    let pipelined: &[(&str, &'static str, Pick)] = &[
        ("throughput", "req/s", |r| r.throughput_rps),
        ("server CPU", "µs/req", |r| r.server_cpu_us),
        ("client CPU", "µs/req", |r| r.client_cpu_us),
    ];
    let figures = if shape.depth == 1 { closed } else { pipelined };
    for &(name, unit, pick) in figures {
        let measure = |target: &str| {
            results.get(&(size, shape, target)).map(|rs| {
                let v: Vec<f64> = rs.iter().map(pick).collect();
                Measure::of(&v)
            })
        };
        let [f, r, fl] = TARGETS.map(measure);
        let Some(fluxd) = f else { continue };
        let mut row = Row::fluxd(
            "get",
            format!("get {} {} {name}", size_label(size), shape.label()),
            unit,
            fluxd,
        );
        row.redis = match r {
            Some(m) => Cell::Value(m),
            None if !have_redis => Cell::Skipped("redis-server not installed".into()),
            None => Cell::None,
        };
        row.floor = fl.map_or(Cell::None, Cell::Value);
        if shape.depth == 1 {
            row = judge(row, shape.clients, name, cfg.smoke);
        }
        report.rows.push(row);
    }
}

/// The targets of a closed-loop row: under concurrency (16 and 64 clients)
/// at least 0.9× the floor's throughput and 1.3× Redis's, a p99 no longer
/// than Redis's and no more server CPU per request; with one client a p50
/// within 1.1× the floor's.
fn judge(row: Row, clients: usize, metric: &str, smoke: bool) -> Row {
    let busy = clients >= 16;
    let (goal, ok) = match metric {
        "throughput" if busy => (
            "≥ 0.9× floor, ≥ 1.3× redis",
            row.vs_floor()
                .zip(row.vs_redis())
                .map(|(f, r)| f >= 0.9 && r >= 1.3),
        ),
        "p99" if busy => ("≤ redis", row.vs_redis().map(|x| x <= 1.0)),
        "server CPU" if busy => ("≤ redis", row.vs_redis().map(|x| x <= 1.0)),
        "p50" if clients == 1 => ("≤ 1.1× floor", row.vs_floor().map(|x| x <= 1.1)),
        _ => return row,
    };
    row.with_goal(goal, verdict(ok, smoke))
}
