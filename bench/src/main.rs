//! `flux-bench`: the benchmark and the load-and-fault suite of Flux Secrets.
//!
//! ```text
//! flux-bench all      [--smoke] [--runs N] [--json PATH] [--fluxd PATH]   one table
//! flux-bench get | client-check | rotation | scale                        one part of it
//! flux-bench floors   [--smoke] [--runs N] [--json PATH]                  every server design's floor beside Redis
//! flux-bench fleet    [--smoke] [--hosts N] [--projects N] [--secrets N]  etcd and many hosts
//! flux-bench fleet-restart [--smoke] [--hosts N] [--bytes SIZE]          a host restarting with 1 GB in etcd
//! flux-bench faults   soak|crash-loop|disk-full|bad-clients|all [--smoke]
//! ```
//!
//! (`flux-bench floor-server`, hidden, is the floor server the `get`
//! benchmark starts as a child process.)
//!
//! Everything runs against the real `fluxd` binary on short temp folders
//! under /tmp, and talks to it only through its Unix sockets: with
//! `flux_protocol`'s client, or with pre-encoded frames of the same
//! protocol for the `get` load ([`load`]). Redis (when installed) and the
//! floor server also listen on Unix sockets only: nothing here opens a
//! network socket.
//!
//! Exit status: 0 when every check held; 1 on a correctness failure (a
//! wrong value, a stale read, a lost acknowledged write, an unreadable
//! vault, a failed request) or when the benchmark could not run; 2 on bad
//! arguments. A missed speed target is printed as MISS and never changes
//! the exit status.
//!
//! Modules: [`fluxd_process`] runs the daemon; [`redis`] and [`floor`] are
//! the comparison points; [`load`] is the load client, [`cload`] the same
//! client in C that checks it; [`cpu`] reads a
//! process's CPU time; [`stats`] the numbers; [`fixture`] the test data;
//! `bench_*` the benchmarks; [`report`] the table; [`faults`] the fault
//! suites.

#![forbid(unsafe_code)]

mod bench_client;
mod bench_fleet;
mod bench_fleet_restart;
mod bench_floors;
mod bench_get;
mod bench_rotation;
mod bench_scale;
mod cload;
mod cpu;
mod faults;
mod fixture;
mod fleet_cluster;
mod floor;
mod fluxd_process;
mod load;
mod redis;
mod report;
mod stats;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use fluxd_process::FluxdBinary;
use report::{Machine, Report};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// Flux Secrets benchmarks and load-and-fault suite.
#[derive(Debug, Parser)]
#[command(name = "flux-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Every benchmark, one table: get, client-check, rotation and scale.
    All(BenchArgs),
    /// `get` throughput (total and per client), latency and server CPU
    /// against Redis and the floor, fixed-duration cells: closed loop and
    /// pipelined.
    Get(BenchArgs),
    /// The floor server loaded by flux-bench's client and by a C client
    /// (bench/c/getload.c, built with cc): do they measure the same?
    ClientCheck(BenchArgs),
    /// Rotation delay and stale reads.
    Rotation(BenchArgs),
    /// Start-up time, memory and `set` latency at scale.
    Scale(BenchArgs),
    /// The floor server in each design — a thread per connection, one
    /// event loop, an event loop per CPU — beside Redis, in the `get`
    /// benchmark's closed-loop cells: what any server reaches here.
    Floors(BenchArgs),
    /// Fleet mode at scale: real etcd and many hosts (docs/FLEET.md).
    Fleet(FleetArgs),
    /// Fleet mode: a host restarting while etcd holds 1 GB of vaults
    /// (docs/FLEET.md, "Big reads").
    FleetRestart(FleetRestartArgs),
    /// The load-and-fault suite (docs/RELIABILITY.md).
    Faults(FaultArgs),
    /// The floor server the `get` benchmark runs as a child process: the
    /// cheapest server of fluxd's framing (exits when stdin closes).
    #[command(hide = true)]
    FloorServer(FloorArgs),
}

#[derive(Debug, Args)]
struct FloorArgs {
    /// The Unix socket to listen on (must not exist).
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
    /// The length of the value every `Get` is answered with.
    #[arg(long, value_name = "BYTES")]
    value_len: usize,
    /// How it waits on its connections.
    #[arg(long, value_enum, default_value = "threads")]
    design: floor::Design,
}

#[derive(Debug, Args)]
struct Common {
    /// Tiny cells and one run: seconds, for CI. Targets are not judged.
    #[arg(long)]
    smoke: bool,
    /// The fluxd binary [default: `fluxd` next to this executable, rebuilt
    /// first when run through cargo].
    #[arg(long, value_name = "PATH")]
    fluxd: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct BenchArgs {
    #[command(flatten)]
    common: Common,
    /// Runs per figure; the table shows the median [default: 5; 1 with
    /// --smoke].
    #[arg(long, value_name = "N")]
    runs: Option<usize>,
    /// Timed seconds per target and cell in each run of `get` and
    /// `client-check`, cut into 4 slices that the targets take turns on
    /// [default: 1; 0.05 in one slice with --smoke].
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    duration: Option<f64>,
    /// Client counts of the `get` benchmark (targets are judged at 1, 16 and 64).
    #[arg(long, value_name = "N,..", value_delimiter = ',', default_values_t = [1usize, 16, 64])]
    clients: Vec<usize>,
    /// Requests in flight on the one connection of the pipelined `get`
    /// cells (0 or 1: no pipelined cells).
    #[arg(long, value_name = "N", default_value_t = 16)]
    pipeline: usize,
    /// Value sizes of the `get` benchmark, in bytes (24 to 65536).
    #[arg(long, value_name = "BYTES,..", value_delimiter = ',', default_values_t = [40usize, 4096],
          value_parser = clap::value_parser!(usize))]
    sizes: Vec<usize>,
    /// Write the report as JSON to PATH.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// The redis-server binary [default: redis-server on PATH].
    #[arg(long, value_name = "PATH")]
    redis_server: Option<PathBuf>,
    /// How rotations reach the daemon (default: both, one after the other).
    #[arg(long, value_enum)]
    rotation_mode: Option<bench_rotation::RotationMode>,
}

#[derive(Debug, Args)]
struct FleetArgs {
    #[command(flatten)]
    common: Common,
    /// fluxd hosts in the fleet, one more joins and leaves [default: 6; 3 with --smoke].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(2..=500))]
    hosts: Option<u16>,
    /// Projects, each wrapped for every host [default: 50; 4 with --smoke].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    projects: Option<u32>,
    /// Secrets per project [default: 10; 3 with --smoke].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    secrets: Option<u32>,
    /// Assign each project to this many hosts (2 or more, fewer than
    /// --hosts) instead of every host: project i on hosts i, i+1, … (mod
    /// hosts), created on the first of them; the host removed is then one
    /// of the fleet's, serving its share of the projects.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u16).range(2..=500))]
    per_project_hosts: Option<u16>,
}

#[derive(Debug, Args)]
struct FleetRestartArgs {
    #[command(flatten)]
    common: Common,
    /// fluxd hosts in the fleet; the last one is restarted [default: 2].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(2..=16))]
    hosts: Option<u16>,
    /// Vault envelopes to put in etcd, in vaults of about 1.39 MB (64 KB
    /// with --smoke): 50M, 1G, 512Mi… [default: 1G; 1M with --smoke].
    #[arg(long, value_name = "SIZE", value_parser = bench_fleet_restart::parse_bytes)]
    bytes: Option<u64>,
    /// The restarted host's log level (debug: its start-up, step by step).
    #[arg(long, value_name = "LEVEL", default_value = "info",
          value_parser = ["error", "warn", "info", "debug", "trace"])]
    log_level: String,
    /// Copy the restarted host's log to PATH at the end.
    #[arg(long, value_name = "PATH")]
    save_log: Option<PathBuf>,
    /// Write the report as JSON to PATH.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct FaultArgs {
    /// Which suite to run.
    #[arg(value_enum)]
    suite: FaultSuite,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FaultSuite {
    Soak,
    CrashLoop,
    DiskFull,
    BadClients,
    All,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Cmd::FloorServer(a) = &cli.command {
        return match floor::serve(&a.socket, a.value_len.clamp(24, 65536), a.design) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("flux-bench floor-server: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let started = Instant::now();
    let outcome = match cli.command {
        Cmd::All(a) => bench(a, Parts::all(), "all"),
        Cmd::Get(a) => bench(a, Parts::only(0), "get"),
        Cmd::ClientCheck(a) => bench(a, Parts::only(1), "client-check"),
        Cmd::Rotation(a) => bench(a, Parts::only(2), "rotation"),
        Cmd::Scale(a) => bench(a, Parts::only(3), "scale"),
        Cmd::Floors(a) => bench(a, Parts::only(4), "floors"),
        Cmd::Fleet(a) => fleet_cmd(a),
        Cmd::FleetRestart(a) => fleet_restart_cmd(a),
        Cmd::Faults(a) => faults_cmd(a),
        Cmd::FloorServer(_) => unreachable!("served above"),
    };
    eprintln!(
        "flux-bench: finished in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("flux-bench: FAILED (see the failures above)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("flux-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Which benchmarks to run: get, client-check, rotation, scale, floors
/// (`all` runs the first four).
struct Parts([bool; 5]);

impl Parts {
    fn all() -> Self {
        Self([true, true, true, true, false])
    }
    fn only(i: usize) -> Self {
        let mut p = [false; 5];
        p[i] = true;
        Self(p)
    }
}

fn bench(a: BenchArgs, parts: Parts, name: &str) -> Result<bool> {
    let smoke = a.common.smoke;
    // The client check and the floors load floor servers (and Redis)
    // only: no daemon to find.
    let bin = if parts.0[0] || parts.0[2] || parts.0[3] {
        Some(FluxdBinary::locate(a.common.fluxd.as_deref())?)
    } else {
        None
    };
    let runs = a.runs.unwrap_or(if smoke { 1 } else { 5 }).max(1);
    let load_before = load_average();
    let mut report = Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        smoke,
        runs,
        machine: Machine::detect(),
        ..Report::default()
    };
    eprintln!(
        "flux-bench {name}: fluxd {}, {} CPU(s), {runs} run(s){}",
        bin.as_ref()
            .map_or("not needed".into(), |b| b.0.display().to_string()),
        report.machine.cpus,
        if smoke { ", smoke" } else { "" }
    );
    let duration =
        std::time::Duration::from_secs_f64(a.duration.unwrap_or(if smoke { 0.05 } else { 1.0 }));
    let slices = if smoke { 1 } else { 4 };
    let warmup = if smoke { 2 } else { 50 };
    let clients: Vec<usize> = a.clients.iter().map(|&c| c.max(1)).collect();
    let sizes: Vec<usize> = a.sizes.iter().map(|&s| s.clamp(24, 65536)).collect();
    if let (true, Some(bin)) = (parts.0[0], &bin) {
        let cfg = bench_get::GetConfig {
            runs,
            duration,
            warmup,
            slices,
            clients: clients.clone(),
            pipeline: a.pipeline.min(1024),
            sizes: sizes.clone(),
            redis: redis::RedisServer::find(a.redis_server.as_deref()),
            smoke,
        };
        bench_get::run(bin, &cfg, &mut report).context("get benchmark")?;
    }
    let cells = bench_client::CheckConfig {
        runs,
        duration,
        slices,
        warmup,
        clients,
        sizes,
        smoke,
    };
    if parts.0[4] {
        let cfg = bench_floors::FloorsConfig {
            cells: cells.clone(),
            redis: redis::RedisServer::find(a.redis_server.as_deref()),
        };
        bench_floors::run(&cfg, &mut report).context("floors")?;
    }
    if parts.0[1] {
        bench_client::run(&cells, &mut report).context("client check")?;
    }
    if let (true, Some(bin)) = (parts.0[2], &bin) {
        let cfg = bench_rotation::RotationConfig {
            runs,
            rotations: if smoke { 20 } else { 300 },
            modes: match a.rotation_mode {
                Some(mode) => vec![mode],
                None => vec![
                    bench_rotation::RotationMode::ProtocolSet,
                    bench_rotation::RotationMode::ExternalReplace,
                ],
            },
            smoke,
        };
        bench_rotation::run(bin, &cfg, &mut report).context("rotation benchmark")?;
    }
    if let (true, Some(bin)) = (parts.0[3], &bin) {
        let cfg = if smoke {
            bench_scale::ScaleConfig::smoke()
        } else {
            bench_scale::ScaleConfig::full(runs)
        };
        bench_scale::run(bin, &cfg, &mut report).context("scale benchmark")?;
    }
    finish(report, load_before.as_deref(), a.json.as_deref())
}

/// Notes the load average now beside `load_before`, prints the table,
/// writes it as JSON to `json` when asked; true when nothing failed.
fn finish(
    mut report: Report,
    load_before: Option<&str>,
    json: Option<&std::path::Path>,
) -> Result<bool> {
    if let Some(before) = load_before {
        report.notes.push(format!(
            "load average (1, 5, 15 min) from /proc/loadavg: {before} at the start, {} at the end",
            load_average().unwrap_or_else(|| "?".into())
        ));
    }
    println!("{}", report.render());
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(report.failures.is_empty())
}

/// `--duration`: seconds, from 0.001 to 3600.
fn parse_secs(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if (0.001..=3600.0).contains(&s) => Ok(s),
        _ => Err("give seconds between 0.001 and 3600".into()),
    }
}

/// The first three fields of /proc/loadavg: the machine's load over 1, 5
/// and 15 minutes (other tenants included).
fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(
        text.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

fn fleet_cmd(a: FleetArgs) -> Result<bool> {
    let bin = FluxdBinary::locate(a.common.fluxd.as_deref())?;
    let n = |v: Option<u32>| v.map(|v| v as usize);
    let mut cfg = bench_fleet::FleetConfig::new(
        a.common.smoke,
        a.hosts.map(usize::from),
        n(a.projects),
        n(a.secrets),
    );
    if let Some(k) = a.per_project_hosts {
        let k = usize::from(k);
        if k >= cfg.hosts {
            anyhow::bail!(
                "--per-project-hosts {k} must be below --hosts {}: every host serves every project by default",
                cfg.hosts
            );
        }
        cfg.per_project_hosts = Some(k);
    }
    let mut report = Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        smoke: a.common.smoke,
        runs: 1,
        machine: Machine::detect(),
        ..Report::default()
    };
    bench_fleet::run(&bin, &cfg, &mut report).context("fleet benchmark")?;
    println!("{}", report.render());
    Ok(report.failures.is_empty())
}

fn fleet_restart_cmd(a: FleetRestartArgs) -> Result<bool> {
    let bin = FluxdBinary::locate(a.common.fluxd.as_deref())?;
    let mut cfg =
        bench_fleet_restart::RestartConfig::new(a.common.smoke, a.hosts.map(usize::from), a.bytes);
    cfg.log_level = a.log_level;
    cfg.save_log = a.save_log;
    let mut report = Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        smoke: a.common.smoke,
        runs: 1,
        machine: Machine::detect(),
        ..Report::default()
    };
    let load_before = load_average();
    bench_fleet_restart::run(&bin, &cfg, &mut report).context("fleet restart benchmark")?;
    finish(report, load_before.as_deref(), a.json.as_deref())
}

fn faults_cmd(a: FaultArgs) -> Result<bool> {
    let bin = FluxdBinary::locate(a.common.fluxd.as_deref())?;
    let smoke = a.common.smoke;
    let suites: Vec<FaultSuite> = match a.suite {
        FaultSuite::All => vec![
            FaultSuite::Soak,
            FaultSuite::CrashLoop,
            FaultSuite::DiskFull,
            FaultSuite::BadClients,
        ],
        one => vec![one],
    };
    let mut results = Vec::new();
    for suite in suites {
        let started = Instant::now();
        let outcome = match suite {
            FaultSuite::Soak => faults::soak::run(&bin, smoke),
            FaultSuite::CrashLoop => faults::crash_loop::run(&bin, smoke),
            FaultSuite::DiskFull => faults::disk_full::run(&bin, smoke),
            FaultSuite::BadClients => faults::bad_clients::run(&bin, smoke),
            FaultSuite::All => unreachable!("expanded above"),
        };
        let outcome = outcome.unwrap_or_else(|e| faults::Outcome::failed(format!("{e:#}")));
        results.push((suite, outcome, started.elapsed()));
    }
    println!(
        "\nfault suite summary{}:",
        if smoke { " (smoke)" } else { "" }
    );
    let mut ok = true;
    for (suite, outcome, took) in &results {
        let name = suite
            .to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default();
        println!(
            "  {name:<12} {:<8} {:>6.1} s  {}",
            outcome.status(),
            took.as_secs_f64(),
            outcome.summary
        );
        for f in &outcome.failures {
            println!("      FAIL: {f}");
        }
        ok &= outcome.failures.is_empty();
    }
    Ok(ok)
}
