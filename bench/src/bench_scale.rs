//! Scale: start-up time and memory with many projects, and `set` on a big
//! vault.
//!
//! For each project count (1, 100, 1,000 projects of 100 secrets), one
//! state folder is built once per invocation ([`crate::fixture`], the
//! daemon's own format) and reused by every run. A run spawns fluxd on it,
//! measures spawn → control socket handshake, lets it settle idle for
//! 300 ms and reads `VmRSS`, then stops it. The first run also checks with
//! `Status` that every project loaded with all its secrets and no
//! `last_error` (a fixture the daemon does not accept is a failure, not a
//! fast start).
//!
//! With one project it also counts how often the idle daemon's threads
//! wake: their context switches over 1 s of doing nothing (target: under
//! one a second).
//!
//! Idle connections: fluxd on one project of 100 secrets, RSS read once it
//! settled, then again after 1,000 connections each completed the
//! handshake and one `get` and went idle; the difference over 1,000 is the
//! memory an idle connection holds (its thread's touched stack, buffers,
//! the kernel's socket is not counted in RSS).
//!
//! The big vault (one project, 10,000 secrets of 40 bytes) gives `set`
//! latency — each `set` re-seals, encrypts and fsyncs the whole vault — and
//! memory per 1,000 secrets: (RSS with 10,000 secrets − RSS with 1 project
//! of 100) / 9.9.

use crate::fixture::{project_name, secret_name, value, write_projects};
use crate::fluxd_process::{Fluxd, FluxdBinary};
use crate::report::{Report, Row, verdict};
use crate::stats::{Measure, latency_of};
use anyhow::{Context, Result};
use std::time::{Duration, Instant};

/// How the scale benchmark is shaped.
#[derive(Debug, Clone)]
pub struct ScaleConfig {
    pub runs: usize,
    pub project_counts: Vec<usize>,
    pub secrets_per_project: usize,
    pub big_vault_secrets: usize,
    pub sets: usize,
    pub smoke: bool,
}

impl ScaleConfig {
    pub fn full(runs: usize) -> Self {
        Self {
            runs,
            project_counts: vec![1, 100, 1000],
            secrets_per_project: 100,
            big_vault_secrets: 10_000,
            sets: 100,
            smoke: false,
        }
    }

    pub fn smoke() -> Self {
        Self {
            runs: 1,
            project_counts: vec![1, 5, 20],
            secrets_per_project: 10,
            big_vault_secrets: 300,
            sets: 10,
            smoke: true,
        }
    }
}

const VALUE_LEN: usize = 40;
const MIB: f64 = 1024.0;

/// Runs the benchmark and appends its rows to `report`.
pub fn run(bin: &FluxdBinary, cfg: &ScaleConfig, report: &mut Report) -> Result<()> {
    let mut one_project_rss = None;
    for &n in &cfg.project_counts {
        let mut fluxd = Fluxd::new(bin)?;
        let t = Instant::now();
        write_projects(fluxd.state_dir(), n, cfg.secrets_per_project, VALUE_LEN)?;
        eprintln!(
            "scale: wrote {n} project(s) × {} secrets in {:.1} s",
            cfg.secrets_per_project,
            t.elapsed().as_secs_f64()
        );
        let mut startups = Vec::new();
        let mut rss = Vec::new();
        let mut wakes = Vec::new();
        for run in 0..cfg.runs {
            let startup = fluxd.start()?;
            if run == 0 {
                check_loaded(&fluxd, n, cfg.secrets_per_project, report)?;
            }
            std::thread::sleep(Duration::from_millis(300));
            let kib = fluxd.rss_kib()?;
            if n == 1 {
                wakes.push(idle_wakeups(&fluxd, cfg.smoke)?);
            }
            fluxd.stop();
            eprintln!(
                "run {}/{} scale: {n} project(s): start-up {:.1} ms, RSS {:.1} MiB",
                run + 1,
                cfg.runs,
                startup.as_secs_f64() * 1e3,
                kib as f64 / MIB
            );
            startups.push(startup.as_secs_f64() * 1e3);
            rss.push(kib as f64 / MIB);
        }
        let label = format!("{n} project(s) × {}", cfg.secrets_per_project);
        let full_size = n == 1000 && cfg.secrets_per_project == 100;
        let mut start_row = Row::fluxd(
            "scale",
            format!("start-up, {label}"),
            "ms",
            Measure::of(&startups),
        );
        let rss_m = Measure::of(&rss);
        let mut rss_row = Row::fluxd("scale", format!("RSS idle, {label}"), "MiB", rss_m.clone());
        if full_size {
            let ok = start_row.fluxd.median < 2000.0;
            start_row = start_row.with_goal("< 2 s", verdict(Some(ok), cfg.smoke));
            let ok = rss_m.median < 64.0;
            rss_row = rss_row.with_goal("< 64 MiB", verdict(Some(ok), cfg.smoke));
        }
        if n == 1 {
            one_project_rss = Some(rss_m.median);
            let ok = rss_m.median < 10.0;
            rss_row =
                rss_row.with_goal("< 10 MiB (idle, one project)", verdict(Some(ok), cfg.smoke));
        }
        report.rows.push(start_row);
        report.rows.push(rss_row);
        if !wakes.is_empty() {
            let row = Row::fluxd(
                "scale",
                format!("wake-ups idle, {label}"),
                "/s",
                Measure::of(&wakes),
            );
            let ok = row.fluxd.median < 1.0;
            report
                .rows
                .push(row.with_goal("< 1/s (idle)", verdict(Some(ok), cfg.smoke)));
        }
    }

    idle_connections(bin, cfg, report)?;

    // The big vault.
    let mut fluxd = Fluxd::new(bin)?;
    write_projects(fluxd.state_dir(), 1, cfg.big_vault_secrets, VALUE_LEN)?;
    let project = project_name(0);
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    let mut rss = Vec::new();
    for run in 0..cfg.runs {
        fluxd.start()?;
        if run == 0 {
            check_loaded(&fluxd, 1, cfg.big_vault_secrets, report)?;
        }
        std::thread::sleep(Duration::from_millis(300));
        rss.push(fluxd.rss_kib()? as f64 / MIB);
        let mut client = fluxd.client(&project)?;
        let mut lat = Vec::with_capacity(cfg.sets);
        for i in 0..cfg.sets {
            // Rotate existing secrets (the vault keeps its size).
            let name = secret_name(i % cfg.big_vault_secrets);
            let v = value("big", (run * cfg.sets + i) as u64, VALUE_LEN);
            let t = Instant::now();
            client
                .set(&name, v.as_str().into())
                .with_context(|| format!("set on the {}-secret vault", cfg.big_vault_secrets))?;
            lat.push(t.elapsed());
            if i == 0 {
                let got = client.get(&name)?;
                if got.expose() != v {
                    report
                        .failures
                        .push(format!("big vault: {name} does not read back what was set"));
                }
            }
        }
        let l = latency_of(&lat);
        eprintln!(
            "run {}/{} scale: set on {} secrets: p50 {:.2} ms p99 {:.2} ms",
            run + 1,
            cfg.runs,
            cfg.big_vault_secrets,
            l.p50_us / 1e3,
            l.p99_us / 1e3
        );
        p50s.push(l.p50_us / 1e3);
        p99s.push(l.p99_us / 1e3);
        fluxd.stop();
    }
    let big = cfg.big_vault_secrets;
    let p50 = Measure::of(&p50s);
    let ok = p50.median < 20.0;
    report.rows.push(
        Row::fluxd(
            "scale",
            format!("set p50, vault of {big} secrets"),
            "ms",
            p50,
        )
        .with_goal("< 20 ms", verdict(Some(ok), cfg.smoke || big != 10_000)),
    );
    report.rows.push(Row::fluxd(
        "scale",
        format!("set p99, vault of {big} secrets"),
        "ms",
        Measure::of(&p99s),
    ));
    let rss_big = Measure::of(&rss);
    if let Some(base) = one_project_rss {
        let extra = (big as f64 - cfg.secrets_per_project as f64) / 1000.0;
        let per_k: Vec<f64> = rss.iter().map(|r| (r - base) / extra).collect();
        report.rows.push(Row::fluxd(
            "scale",
            format!("RSS per 1,000 secrets ({VALUE_LEN} B values)"),
            "MiB",
            Measure::of(&per_k),
        ));
    }
    report.rows.push(Row::fluxd(
        "scale",
        format!("RSS idle, 1 project × {big}"),
        "MiB",
        rss_big,
    ));
    Ok(())
}

/// RSS per idle connection: see the module docs.
fn idle_connections(bin: &FluxdBinary, cfg: &ScaleConfig, report: &mut Report) -> Result<()> {
    use flux_protocol::codec::{decode, encode, read_frame, write_frame};
    use flux_protocol::message::{Get, Hello, Request, Response};
    let connections = if cfg.smoke { 50 } else { 1000 };
    let mut fluxd = Fluxd::new(bin)?;
    write_projects(fluxd.state_dir(), 1, cfg.secrets_per_project, VALUE_LEN)?;
    fluxd.set_config(&format!(
        "[limits]\nmax_connections = {n}\nmax_connections_per_project = {n}\n",
        n = connections + 16
    ))?;
    let project = project_name(0);
    let hello = encode(&Request::Hello(Hello {
        version: flux_protocol::PROTOCOL_VERSION,
        client: "flux-bench".into(),
    }))?;
    let get = encode(&Request::Get(Get {
        name: secret_name(0),
    }))?;
    let mut per_conn = Vec::new();
    for run in 0..cfg.runs {
        fluxd.start()?;
        std::thread::sleep(Duration::from_millis(300));
        let before = fluxd.rss_kib()?;
        let mut open = Vec::with_capacity(connections);
        for _ in 0..connections {
            let mut s = std::os::unix::net::UnixStream::connect(fluxd.project_socket(&project))
                .context("connect to the project socket")?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            for (req, what) in [(&hello, "Welcome"), (&get, "Value")] {
                write_frame(&mut s, req)?;
                let answer: Response = decode(
                    &read_frame(&mut s, 1 << 20)?.context("the daemon closed the connection")?,
                )?;
                let ok = matches!(
                    (&answer, what),
                    (Response::Welcome(_), "Welcome") | (Response::Value(_), "Value")
                );
                if !ok {
                    report.failures.push(format!(
                        "idle connections: expected {what}, got another answer"
                    ));
                    fluxd.stop();
                    return Ok(());
                }
            }
            open.push(s);
        }
        std::thread::sleep(Duration::from_millis(300));
        let after = fluxd.rss_kib()?;
        drop(open);
        fluxd.stop();
        let kib = after.saturating_sub(before) as f64 / connections as f64;
        eprintln!(
            "run {}/{} scale: {connections} idle connections: RSS {:.1} → {:.1} MiB, {kib:.1} KiB each",
            run + 1,
            cfg.runs,
            before as f64 / MIB,
            after as f64 / MIB
        );
        per_conn.push(kib);
    }
    let m = Measure::of(&per_conn);
    let ok = m.median <= 64.0;
    report.rows.push(
        Row::fluxd(
            "scale",
            format!("RSS per idle connection, {connections} open"),
            "KiB",
            m,
        )
        .with_goal("≤ 64 KiB", verdict(Some(ok), cfg.smoke)),
    );
    Ok(())
}

/// Checks through `Status` that the daemon serves `projects` projects of
/// `secrets` secrets each, none with a `last_error`.
fn check_loaded(fluxd: &Fluxd, projects: usize, secrets: usize, report: &mut Report) -> Result<()> {
    let status = fluxd.control()?.status().context("Status")?;
    let bad: Vec<String> = status
        .projects
        .iter()
        .filter(|p| p.last_error.is_some() || p.secrets != secrets as u64)
        .map(|p| {
            format!(
                "{}: {} secrets, last_error {:?}",
                p.name, p.secrets, p.last_error
            )
        })
        .collect();
    if status.projects.len() != projects || !bad.is_empty() {
        report.failures.push(format!(
            "fixture not accepted by fluxd: {} of {projects} projects served; {}",
            status.projects.len(),
            bad.into_iter().take(3).collect::<Vec<_>>().join("; ")
        ));
    }
    Ok(())
}

/// How often an idle fluxd's threads wake, per second: the context
/// switches of every thread (`/proc/<pid>/task/*/status`, voluntary and
/// not) over 1 s of doing nothing (0.2 s with `--smoke`).
fn idle_wakeups(fluxd: &Fluxd, smoke: bool) -> Result<f64> {
    let pid = fluxd.pid().context("fluxd is not running")?;
    let window = Duration::from_millis(if smoke { 200 } else { 1000 });
    let switches = || {
        flux_e2e::context_switches(pid)
            .with_context(|| format!("cannot read the threads of fluxd (pid {pid})"))
    };
    let before = switches()?;
    std::thread::sleep(window);
    let after = switches()?;
    Ok(after.saturating_sub(before) as f64 / window.as_secs_f64())
}
