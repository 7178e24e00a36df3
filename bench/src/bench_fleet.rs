//! Fleet scale: one real etcd member and many real fluxd hosts sharing
//! vaults through it (docs/FLEET.md, "Scale, measured").
//!
//! The run, in order:
//!
//! 1. etcd (one member on loopback ports, default flags: 2 GiB quota,
//!    1.5 MiB request limit) — SKIPPED, loudly, when `etcd` is not on PATH;
//! 2. `--hosts` fluxd hosts in fleet mode (logging warnings only); the
//!    first founds the fleet with a new operator key (`fluxctl fleet
//!    init`), the others are added by their join tokens (`fluxctl hosts
//!    add`), as an operator does;
//! 3. `--projects` projects created on the first host (each wrapped for
//!    every host), each given `--secrets` secrets in one `SetMany`; with
//!    `--per-project-hosts K`, project i is first assigned to hosts i, i+1,
//!    … (mod hosts) — one `fluxctl hosts assign` per first host — and
//!    created on the first of them;
//! 4. what etcd holds: keys and bytes (key + value) by prefix, from range
//!    requests on etcd's JSON gateway, and its database size;
//! 5. propagation: sets on the first host, each on another project; after
//!    each set answered, every other host is polled until it serves the
//!    new value (and, from the moment the set was sent, until all hosts
//!    serve it). Across those sets, etcd's `/metrics` give the watch
//!    events it sent (`etcd_debugging_mvcc_events_total`) and the bytes it
//!    sent to clients (`etcd_network_client_grpc_sent_bytes_total`: the
//!    JSON gateway fluxd talks to forwards to etcd's gRPC port, so every
//!    answer and watch event is counted), per set, less the idle rate
//!    measured just before;
//! 6. one more host joins: `hosts add` until it serves every project with
//!    every secret; then `hosts remove` of it (every project re-keyed).
//!    With assignments, the joining host is given the first host's
//!    projects (`hosts assign`), and the host removed is the fleet's last
//!    one, whose projects its co-hosts re-key;
//! 7. RSS of every host and of etcd; then the correctness check: every
//!    remaining host serves every project with exactly the values set
//!    (one `GetAll` per project and host), reports no last error for any
//!    project, and etcd holds no key wrapped for the removed host. A wrong
//!    or missing value anywhere, or a project whose status shows an error,
//!    is a failure (the table is printed all the same); values are never
//!    printed.

use crate::fixture::{project_name, secret_name, value};
use crate::fluxd_process::{FluxdBinary, rss_kib, short_tempdir};
use crate::report::{Report, Row};
use crate::stats::{Measure, percentile};
use anyhow::{Context, Result, bail};
use flux_e2e::launch;
use flux_protocol::blocking::Client;
use flux_protocol::message::NamedValue;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Bytes of every secret value the bench sets.
const VALUE_LEN: usize = 40;
/// How long a change may take to reach a host before it counts as lost.
const PROPAGATION_LIMIT: Duration = Duration::from_secs(20);
/// etcd's prefixes, as fluxd lays them out (daemon/src/fleet/layout.rs).
/// Each with the keys of it counted: a host's prefix under
/// `/flux/v3/keys/` holds its wrapped keys and its notices
/// (`<project>/changed`, once projects are assigned).
const PREFIXES: [(&str, &str, KeyFilter); 6] = [
    ("fleet id", "/flux/v3/fleet/id", |_| true),
    ("host lists", "/flux/v3/fleet/hosts/", |_| true),
    ("vaults", "/flux/v3/fleet/vaults/", |_| true),
    ("deletions", "/flux/v3/fleet/deleted/", |_| true),
    ("wrapped keys", "/flux/v3/keys/", |k| !is_notice(k)),
    ("notices", "/flux/v3/keys/", is_notice),
];

/// Which keys of a prefix a row counts.
type KeyFilter = fn(&str) -> bool;

/// A notice's key (daemon/src/fleet/layout.rs).
fn is_notice(key: &str) -> bool {
    key.ends_with("/changed")
}

/// How the fleet bench is shaped.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub hosts: usize,
    pub projects: usize,
    pub secrets: usize,
    /// Sets whose propagation is timed.
    pub sets: usize,
    pub smoke: bool,
    /// Hosts per project (`--per-project-hosts`); `None`: every host.
    pub per_project_hosts: Option<usize>,
}

impl FleetConfig {
    /// The hosts (indexes) that serve project `i`.
    pub fn hosts_of(&self, i: usize) -> Vec<usize> {
        match self.per_project_hosts {
            None => (0..self.hosts).collect(),
            Some(k) => (0..k).map(|j| (i + j) % self.hosts).collect(),
        }
    }
}

impl FleetConfig {
    /// `--smoke`: 3 hosts × 4 projects × 3 secrets, 10 timed sets, unless
    /// given otherwise.
    pub fn new(
        smoke: bool,
        hosts: Option<usize>,
        projects: Option<usize>,
        secrets: Option<usize>,
    ) -> Self {
        let (h, p, s, sets) = if smoke {
            (3, 4, 3, 10)
        } else {
            (6, 50, 10, 100)
        };
        Self {
            hosts: hosts.unwrap_or(h).max(2),
            projects: projects.unwrap_or(p).max(1),
            secrets: secrets.unwrap_or(s).max(1),
            sets,
            smoke,
            per_project_hosts: None,
        }
    }
}

/// Runs the fleet bench into `report`.
pub fn run(bin: &FluxdBinary, cfg: &FleetConfig, report: &mut Report) -> Result<()> {
    if !on_path("etcd") {
        let why =
            "SKIPPED: flux-bench fleet: `etcd` is not installed (apt-get install -y etcd-server)";
        eprintln!("{why}");
        report.notes.push(why.into());
        return Ok(());
    }
    let ctl = locate_fluxctl(bin)?;
    let etcd = Etcd::start().context("start etcd")?;
    eprintln!(
        "fleet: etcd at {}; {} hosts × {} projects × {} secrets",
        etcd.url(),
        cfg.hosts,
        cfg.projects,
        cfg.secrets
    );
    let row = |metric: String, unit: &'static str, v: f64| {
        Row::fluxd("fleet", metric, unit, Measure::one(v))
    };
    let (n, p) = (cfg.hosts, cfg.projects);

    // The fleet.
    let first = Host::start(bin, &ctl, &etcd, None)?;
    let operator = first.dir.path().join("operator.key");
    let t = Instant::now();
    first.ctl(&["fleet", "init", "--operator-key", path_str(&operator)?])?;
    report
        .rows
        .push(row("fleet init".into(), "ms", ms(t.elapsed())));
    let fleet_id = first.info()?["fleet_id"]
        .as_str()
        .context("no fleet id after fleet init")?
        .to_owned();
    let mut hosts = vec![first];
    for _ in 1..n {
        hosts.push(Host::start(bin, &ctl, &etcd, Some(&fleet_id))?);
    }
    let mut adds = Vec::new();
    for h in &hosts[1..] {
        let t = Instant::now();
        hosts[0].add(h, &operator)?;
        adds.push(ms(t.elapsed()));
        h.wait_member()?;
    }
    report.rows.push(row(
        format!("hosts add, empty fleet (median of {})", adds.len()),
        "ms",
        Measure::of(&adds).median,
    ));

    // Assignments: one host list version per first host, naming every
    // project created there (none exists yet, so host 0 may sign them all).
    let recipients: Vec<String> = hosts
        .iter()
        .map(|h| {
            h.info()?["this_host"]
                .as_str()
                .map(str::to_owned)
                .context("no recipient: not in fleet mode")
        })
        .collect::<Result<_>>()?;
    if let Some(k) = cfg.per_project_hosts {
        let mut assigns = Vec::new();
        for first in 0..n {
            let names: Vec<String> = (first..p).step_by(n).map(project_name).collect();
            if names.is_empty() {
                continue;
            }
            let on: Vec<&str> = cfg
                .hosts_of(first)
                .into_iter()
                .map(|h| recipients[h].as_str())
                .collect();
            let list = names.join(",");
            let mut args = vec!["hosts", "assign", &list];
            args.extend(on);
            args.extend(["--operator-key", path_str(&operator)?]);
            let t = Instant::now();
            hosts[0].ctl(&args)?;
            assigns.push(ms(t.elapsed()));
        }
        report.rows.push(row(
            format!(
                "hosts assign of {} projects to {k} hosts each (median of {})",
                p.div_ceil(n),
                assigns.len()
            ),
            "ms",
            Measure::of(&assigns).median,
        ));
    }

    // The projects and their secrets, each created on its first host.
    let mut expected: HashMap<String, Vec<(String, String)>> = HashMap::new();
    let (mut creates, mut fills) = (Vec::new(), Vec::new());
    let mut controls = hosts
        .iter()
        .map(Host::control)
        .collect::<Result<Vec<_>>>()?;
    for i in 0..p {
        let project = project_name(i);
        let first = cfg.hosts_of(i)[0];
        let t = Instant::now();
        controls[first]
            .create_project(&project)
            .with_context(|| format!("create project {project}"))?;
        creates.push(ms(t.elapsed()));
        let entries: Vec<(String, String)> = (0..cfg.secrets)
            .map(|s| (secret_name(s), value(&project, s as u64, VALUE_LEN)))
            .collect();
        let mut c = hosts[first].client(&project)?;
        let t = Instant::now();
        c.set_many(
            entries
                .iter()
                .map(|(name, v)| NamedValue {
                    name: name.clone(),
                    value: v.as_str().into(),
                })
                .collect(),
        )
        .with_context(|| format!("set the secrets of {project}"))?;
        fills.push(ms(t.elapsed()));
        expected.insert(project, entries);
    }
    drop(controls);
    let per = cfg.per_project_hosts.unwrap_or(n);
    report.rows.push(row(
        format!("projects create, wrapped for {per} hosts (median)"),
        "ms",
        Measure::of(&creates).median,
    ));
    report.rows.push(row(
        format!(
            "SetMany of {} secrets into a new project (median)",
            cfg.secrets
        ),
        "ms",
        Measure::of(&fills).median,
    ));
    let served = |h: usize| (0..p).filter(|&i| cfg.hosts_of(i).contains(&h)).count();
    for (i, h) in hosts.iter().enumerate() {
        h.wait_serving(served(i), cfg.secrets)?;
    }

    // What etcd holds.
    let mut total = (0u64, 0u64);
    for (what, prefix, counted) in PREFIXES {
        let (keys, bytes) = etcd.count_where(prefix, counted)?;
        total = (total.0 + keys, total.1 + bytes);
        report
            .rows
            .push(row(format!("etcd: {what}, keys"), "keys", keys as f64));
        if keys > 0 {
            report.rows.push(row(
                format!("etcd: {what}, bytes per key"),
                "B",
                bytes as f64 / keys as f64,
            ));
        }
    }
    let (all_keys, all_bytes) = etcd.count("/flux/v3/")?;
    if all_keys != total.0 {
        report.failures.push(format!(
            "etcd holds {all_keys} keys under /flux/v3/, {} in the known prefixes",
            total.0
        ));
    }
    let expected_keys = (per * p) as u64;
    let wrapped = etcd.count_where("/flux/v3/keys/", |k| !is_notice(k))?.0;
    if wrapped != expected_keys {
        report.failures.push(format!(
            "etcd holds {wrapped} wrapped keys, not hosts per project × projects = {expected_keys}"
        ));
    }
    report.rows.push(row(
        "etcd: all keys and values".into(),
        "MiB",
        mib(all_bytes),
    ));
    let status = etcd.status()?;
    report.rows.push(row(
        "etcd: database size (with history)".into(),
        "MiB",
        mib(status.0),
    ));
    report.rows.push(row(
        "etcd: database size in use".into(),
        "MiB",
        mib(status.1),
    ));

    // Propagation, and what etcd sends per set.
    let idle_from = etcd.metrics()?;
    let idle_t = Instant::now();
    std::thread::sleep(Duration::from_secs(if cfg.smoke { 1 } else { 3 }));
    let idle_to = etcd.metrics()?;
    let idle_secs = idle_t.elapsed().as_secs_f64();
    let idle_rate = (
        (idle_to.0 - idle_from.0) / idle_secs,
        (idle_to.1 - idle_from.1) / idle_secs,
    );
    let mut delays: Vec<u64> = Vec::new();
    let (mut writes, mut everywhere) = (Vec::new(), Vec::new());
    let from = etcd.metrics()?;
    let sets_t = Instant::now();
    for i in 0..cfg.sets {
        let project = project_name(i % p);
        let name = secret_name(i % cfg.secrets);
        let v = value(&project, (1_000_000 + i) as u64, VALUE_LEN);
        let on = cfg.hosts_of(i % p);
        let mut others = on[1..]
            .iter()
            .map(|&h| hosts[h].client(&project))
            .collect::<Result<Vec<_>>>()?;
        let mut writer = hosts[on[0]].client(&project)?;
        let t = Instant::now();
        writer
            .set(&name, v.as_str().into())
            .with_context(|| format!("set {name} in {project}"))?;
        writes.push(t.elapsed().as_nanos() as u64);
        let answered = Instant::now();
        let mut pending: Vec<usize> = (0..others.len()).collect();
        while !pending.is_empty() {
            pending.retain(|&k| {
                let served = others[k].get(&name).is_ok_and(|got| got.expose() == v);
                if served {
                    delays.push(answered.elapsed().as_nanos() as u64);
                }
                !served
            });
            if pending.is_empty() {
                everywhere.push(t.elapsed().as_nanos() as u64);
            }
            if answered.elapsed() > PROPAGATION_LIMIT {
                report.failures.push(format!(
                    "set {i} ({name} in {project}) did not reach {} host(s) within {PROPAGATION_LIMIT:?}",
                    pending.len()
                ));
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        if let Some(e) = expected.get_mut(&project) {
            for (n, old) in e.iter_mut() {
                if *n == name {
                    *old = v.clone();
                }
            }
        }
    }
    let to = etcd.metrics()?;
    let busy = sets_t.elapsed().as_secs_f64();
    let sets = cfg.sets.max(1) as f64;
    let events = ((to.0 - from.0) - idle_rate.0 * busy).max(0.0) / sets;
    let bytes = ((to.1 - from.1) - idle_rate.1 * busy).max(0.0) / sets;
    writes.sort_unstable();
    delays.sort_unstable();
    everywhere.sort_unstable();
    let msf = |ns: u64| ns as f64 / 1e6;
    report.rows.push(row(
        format!("set on one host (etcd commit) p50, {} sets", cfg.sets),
        "ms",
        msf(percentile(&writes, 50.0)),
    ));
    report.rows.push(row(
        format!("propagation to {} other hosts p50", per - 1),
        "ms",
        msf(percentile(&delays, 50.0)),
    ));
    report.rows.push(row(
        format!("propagation to {} other hosts p99", per - 1),
        "ms",
        msf(percentile(&delays, 99.0)),
    ));
    for pct in [50.0, 99.0] {
        report.rows.push(row(
            format!("set sent → served by all {per} hosts p{pct:.0}"),
            "ms",
            msf(percentile(&everywhere, pct)),
        ));
    }
    report.rows.push(row(
        "etcd watch events sent per set".into(),
        "events",
        events,
    ));
    report.rows.push(row(
        "etcd bytes sent to clients per set".into(),
        "KiB",
        bytes / 1024.0,
    ));
    report.rows.push(row(
        "etcd bytes sent to clients, idle".into(),
        "KiB/s",
        idle_rate.1 / 1024.0,
    ));

    // One more host joins. Without assignments it serves every project;
    // with them, it is given the share of the first host (the projects
    // created there, each then on one more host) — a host joining to take
    // load.
    let extra = Host::start(bin, &ctl, &etcd, Some(&fleet_id))?;
    let share: Vec<String> = match cfg.per_project_hosts {
        None => Vec::new(),
        Some(_) => (0..p).step_by(n).map(project_name).collect(),
    };
    let joins = if cfg.per_project_hosts.is_some() {
        share.len()
    } else {
        p
    };
    let t = Instant::now();
    hosts[0].add(&extra, &operator)?;
    let add = t.elapsed();
    extra.wait_member()?;
    if !share.is_empty() {
        let extra_recipient = extra.info()?["this_host"]
            .as_str()
            .context("no recipient for the joined host")?
            .to_owned();
        let list = share.join(",");
        let mut args = vec!["hosts", "assign", &list];
        args.extend(cfg.hosts_of(0).into_iter().map(|h| recipients[h].as_str()));
        args.extend([
            extra_recipient.as_str(),
            "--operator-key",
            path_str(&operator)?,
        ]);
        hosts[0].ctl(&args)?;
    }
    extra.wait_serving(joins, cfg.secrets)?;
    let join = t.elapsed();
    report.rows.push(row(
        format!(
            "hosts add of host {}{}",
            n + 1,
            if share.is_empty() {
                format!(" ({p} projects to wrap)")
            } else {
                String::new()
            }
        ),
        "ms",
        ms(add),
    ));
    report.rows.push(row(
        format!(
            "join until host {} serves its {joins} projects{}",
            n + 1,
            if share.is_empty() {
                ""
            } else {
                " (hosts add, then hosts assign)"
            }
        ),
        "ms",
        ms(join),
    ));
    let (recipient, rekeyed) = match cfg.per_project_hosts {
        None => (
            extra.info()?["this_host"]
                .as_str()
                .context("no recipient for the joined host")?
                .to_owned(),
            p,
        ),
        Some(_) => (recipients[n - 1].clone(), served(n - 1)),
    };
    let t = Instant::now();
    let out = hosts[0].ctl(&[
        "hosts",
        "remove",
        &recipient,
        "--operator-key",
        path_str(&operator)?,
        "--json",
    ])?;
    let took = t.elapsed();
    let done: Value = serde_json::from_str(&out).context("hosts remove --json")?;
    let count = done["rekeyed_projects"].as_array().map_or(0, Vec::len);
    if count != rekeyed {
        report.failures.push(format!(
            "hosts remove re-keyed {count} project(s), not the {rekeyed} the removed host served"
        ));
    }
    report.rows.push(row(
        format!("hosts remove ({rekeyed} projects re-keyed)"),
        "ms",
        ms(took),
    ));
    let left = etcd.count(&format!("/flux/v3/keys/{recipient}/"))?.0;
    if left != 0 {
        report.failures.push(format!(
            "etcd still holds {left} key(s) wrapped for the removed host"
        ));
    }

    // Memory.
    std::thread::sleep(Duration::from_millis(500));
    let rss: Vec<f64> = hosts
        .iter()
        .map(|h| rss_kib(h.child.id()).map(|k| k as f64 / 1024.0))
        .collect::<Result<_>>()?;
    let m = Measure::of(&rss);
    report
        .rows
        .push(row(format!("RSS per host, median of {n}"), "MiB", m.median));
    report
        .rows
        .push(row("RSS per host, largest".into(), "MiB", m.max));
    report.rows.push(row(
        "RSS of etcd".into(),
        "MiB",
        rss_kib(etcd.child.id())? as f64 / 1024.0,
    ));
    drop(extra);

    // Every value everywhere it is served (the removed host left aside).
    let kept = if cfg.per_project_hosts.is_some() {
        n - 1
    } else {
        n
    };
    let mut wrong = 0usize;
    for (i, h) in hosts[..kept].iter().enumerate() {
        for (j, project) in (0..p).map(|j| (j, project_name(j))) {
            if !cfg.hosts_of(j).contains(&i) {
                continue;
            }
            if let Some(entries) = expected.get(&project) {
                wrong += h.wrong_values(&project, entries, PROPAGATION_LIMIT);
            }
        }
    }
    for (i, h) in hosts[..kept].iter().enumerate() {
        let errors = h.errors()?;
        if let Some(first) = errors.first() {
            report.failures.push(format!(
                "host {} reports a last error for {} project(s) it serves correctly, e.g. {first}",
                i + 1,
                errors.len()
            ));
        }
    }
    if wrong > 0 {
        report.failures.push(format!(
            "{wrong} (host, project) pair(s) did not serve exactly the values set"
        ));
    }
    report.notes.push(format!(
        "fleet: {n} hosts × {p} projects × {} secrets of {VALUE_LEN} B on one etcd member (loopback), each project on {per} host(s); \
         propagation: {} sets on one host, each polled on every other host after the set answered; \
         etcd events and bytes per set are less the idle rate",
        cfg.secrets, cfg.sets
    ));
    Ok(())
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub(crate) fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

pub(crate) fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .with_context(|| format!("{} is not UTF-8", p.display()))
}

pub(crate) fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

/// `fluxctl` beside the daemon, built first under cargo (as
/// [`FluxdBinary::locate`] does for fluxd).
pub(crate) fn locate_fluxctl(bin: &FluxdBinary) -> Result<PathBuf> {
    let dir = bin.0.parent().context("fluxd has no folder")?;
    let path = dir.join("fluxctl");
    if let Some(cargo) = std::env::var_os("CARGO") {
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "fluxctl"]);
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .context("cannot run cargo build -p fluxctl")?;
        if !status.success() {
            bail!("cargo build -p fluxctl failed ({status})");
        }
    }
    if !path.is_file() {
        bail!(
            "{} is not built: run `cargo build --release -p fluxctl`",
            path.display()
        );
    }
    Ok(path)
}

/// One fluxd host in fleet mode, stopped on drop.
pub(crate) struct Host {
    pub(crate) dir: tempfile::TempDir,
    ctl: PathBuf,
    pub(crate) child: Child,
}

impl Host {
    fn start(bin: &FluxdBinary, ctl: &Path, etcd: &Etcd, fleet_id: Option<&str>) -> Result<Self> {
        Self::start_with(bin, ctl, etcd, fleet_id, None, "warn")
    }

    /// [`Host::start`] with a config file (`<dir>/fluxd.toml`, passed with
    /// `--config`) and a log level.
    pub(crate) fn start_with(
        bin: &FluxdBinary,
        ctl: &Path,
        etcd: &Etcd,
        fleet_id: Option<&str>,
        config: Option<&str>,
        level: &str,
    ) -> Result<Self> {
        let dir = short_tempdir("fxf")?;
        if let Some(toml) = config {
            std::fs::write(dir.path().join("fluxd.toml"), toml).context("write fluxd.toml")?;
        }
        let mut cmd = Self::command(bin, dir.path(), &etcd.url(), fleet_id, level);
        let (child, _) = launch::spawn_ready(
            &mut cmd,
            &dir.path().join("fluxd.log"),
            &flux_protocol::paths::control_socket(&dir.path().join("run")),
            Duration::from_secs(60),
            20,
        )?;
        Ok(Self {
            dir,
            ctl: ctl.to_path_buf(),
            child,
        })
    }

    /// The fluxd command of a host in `dir` (its config file used when
    /// there is one): what [`Host::start_with`] runs, and what a restart
    /// runs again.
    pub(crate) fn command(
        bin: &FluxdBinary,
        dir: &Path,
        etcd_url: &str,
        fleet_id: Option<&str>,
        level: &str,
    ) -> Command {
        let mut cmd = launch::fluxd_command(&bin.0, &dir.join("state"), &dir.join("run"), level);
        cmd.args(["--store", "etcd", "--etcd-endpoints", etcd_url]);
        if let Some(id) = fleet_id {
            cmd.args(["--fleet-id", id]);
        }
        let config = dir.join("fluxd.toml");
        if config.is_file() {
            cmd.arg("--config").arg(config);
        }
        cmd
    }

    pub(crate) fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// `fluxctl ARGS` against this host: its output, or an error with
    /// fluxctl's message (fluxctl never prints a value here).
    pub(crate) fn ctl(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.ctl)
            .env("FLUX_RUNTIME_DIR", self.run_dir())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("run fluxctl")?;
        if !out.status.success() {
            bail!(
                "fluxctl {} failed ({}): {}",
                args.first().copied().unwrap_or(""),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `fluxctl hosts list --json`.
    pub(crate) fn info(&self) -> Result<Value> {
        serde_json::from_str(&self.ctl(&["hosts", "list", "--json"])?)
            .context("hosts list --json is not JSON")
    }

    /// `fluxctl hosts add <other's join token>` on this host.
    pub(crate) fn add(&self, other: &Host, operator: &Path) -> Result<()> {
        let token = other.info()?["join_token"]
            .as_str()
            .context("no join token: not in fleet mode")?
            .to_owned();
        self.ctl(&[
            "hosts",
            "add",
            &token,
            "--operator-key",
            path_str(operator)?,
        ])?;
        Ok(())
    }

    /// Waits until this host sees itself in the host list.
    pub(crate) fn wait_member(&self) -> Result<()> {
        let t = Instant::now();
        while self.info()?["member"] != Value::Bool(true) {
            if t.elapsed() > PROPAGATION_LIMIT {
                bail!("a host never saw itself in the host list");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// Waits until this host serves `projects` projects of `secrets`
    /// secrets each (a project's last error is read by [`Host::errors`]).
    fn wait_serving(&self, projects: usize, secrets: usize) -> Result<()> {
        let t = Instant::now();
        loop {
            if let Ok(status) = self.control().and_then(|mut c| Ok(c.status()?)) {
                let ready = status
                    .projects
                    .iter()
                    .filter(|p| p.secrets == secrets as u64)
                    .count();
                if ready == projects {
                    return Ok(());
                }
                if t.elapsed() > PROPAGATION_LIMIT * 3 {
                    bail!(
                        "a host serves {ready} of {projects} projects with all {secrets} secrets after {:?}; its log:\n{}",
                        t.elapsed(),
                        launch::tail(&self.dir.path().join("fluxd.log"), 20)
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The projects this host reports a last error for, with it (a path
    /// and a reason, never a value).
    pub(crate) fn errors(&self) -> Result<Vec<String>> {
        let status = self.control()?.status().context("Status")?;
        Ok(status
            .projects
            .into_iter()
            .filter_map(|p| Some(format!("{}: {}", p.name, p.last_error?)))
            .collect())
    }

    pub(crate) fn control(&self) -> Result<Client> {
        Client::connect(flux_protocol::paths::control_socket(&self.run_dir()))
            .context("connect to a host's control socket")
    }

    pub(crate) fn client(&self, project: &str) -> Result<Client> {
        let path = flux_protocol::paths::project_socket(&self.run_dir(), project);
        Client::connect(path).with_context(|| format!("connect to {project} on a host"))
    }

    /// 1 when this host does not serve exactly `entries` in `project`
    /// (retried until `limit`: a set may still be arriving), else 0.
    fn wrong_values(&self, project: &str, entries: &[(String, String)], limit: Duration) -> usize {
        let t = Instant::now();
        loop {
            let ok = self.client(project).is_ok_and(|mut c| {
                c.get_all().is_ok_and(|all| {
                    all.len() == entries.len()
                        && entries.iter().all(|(name, v)| {
                            all.iter()
                                .any(|nv| nv.name == *name && nv.value.expose() == v)
                        })
                })
            });
            if ok {
                return 0;
            }
            if t.elapsed() > limit {
                return 1;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        flux_e2e::terminate(&mut self.child, Duration::from_secs(10));
    }
}

/// One etcd member on loopback ports, in a temp dir, stopped on drop.
pub(crate) struct Etcd {
    _dir: tempfile::TempDir,
    pub(crate) port: u16,
    pub(crate) child: Child,
}

impl Etcd {
    fn start() -> Result<Self> {
        Self::start_with(&[])
    }

    /// [`Etcd::start`] with more flags (`--quota-backend-bytes`, …).
    pub(crate) fn start_with(flags: &[&str]) -> Result<Self> {
        let dir = short_tempdir("fxe")?;
        let free = || -> Result<u16> { Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port()) };
        let (port, peer) = (free()?, free()?);
        let client = format!("http://127.0.0.1:{port}");
        let peer = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(dir.path().join("etcd.log"))?;
        let child = Command::new("etcd")
            .arg("--name")
            .arg("bench")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("bench={peer}")])
            .args(flags)
            .env_remove("ETCD_NAME")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("spawn etcd")?;
        let etcd = Self {
            _dir: dir,
            port,
            child,
        };
        let t = Instant::now();
        while !http(port, "GET", "/health", "").is_ok_and(|b| b.contains("\"health\":\"true\"")) {
            if t.elapsed() > Duration::from_secs(30) {
                bail!("etcd not healthy after 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(etcd)
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Keys under `prefix` and their total size, keys plus values, in
    /// bytes (from the base64 lengths etcd's gateway answers with).
    pub(crate) fn count(&self, prefix: &str) -> Result<(u64, u64)> {
        self.count_where(prefix, |_| true)
    }

    /// [`Self::count`] of the keys under `prefix` that `counted` keeps.
    pub(crate) fn count_where(&self, prefix: &str, counted: KeyFilter) -> Result<(u64, u64)> {
        let mut end = prefix.as_bytes().to_vec();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let body = json!({"key": b64(prefix.as_bytes()), "range_end": b64(&end)});
        let answer: Value =
            serde_json::from_str(&http(self.port, "POST", "/v3/kv/range", &body.to_string())?)
                .context("etcd's range answer is not JSON")?;
        let kvs: Vec<Value> = answer["kvs"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|kv| {
                kv["key"]
                    .as_str()
                    .and_then(unb64)
                    .is_some_and(|k| counted(&String::from_utf8_lossy(&k)))
            })
            .collect();
        let size = |v: &Value| v.as_str().map_or(0, b64_len);
        let bytes = kvs
            .iter()
            .map(|kv| size(&kv["key"]) + size(&kv["value"]))
            .sum();
        Ok((kvs.len() as u64, bytes))
    }

    /// etcd's database size and the part of it in use, in bytes.
    pub(crate) fn status(&self) -> Result<(u64, u64)> {
        let answer: Value =
            serde_json::from_str(&http(self.port, "POST", "/v3/maintenance/status", "{}")?)
                .context("etcd's status answer is not JSON")?;
        let n = |v: &Value| v.as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
        Ok((n(&answer["dbSize"]), n(&answer["dbSizeInUse"])))
    }

    /// Watch events sent and bytes sent to clients so far.
    fn metrics(&self) -> Result<(f64, f64)> {
        let text = http(self.port, "GET", "/metrics", "")?;
        let sum = |name: &str| -> f64 {
            text.lines()
                .filter(|l| {
                    l.strip_prefix(name)
                        .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        Ok((
            sum("etcd_debugging_mvcc_events_total"),
            sum("etcd_network_client_grpc_sent_bytes_total"),
        ))
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.0 exchange with etcd on loopback: the body of a 200 answer.
pub(crate) fn http(port: u16, method: &str, path: &str, body: &str) -> Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).context("connect to etcd")?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head.split_whitespace().nth(1).unwrap_or("?");
    if code != "200" {
        bail!("etcd answered {path} with HTTP {code}");
    }
    Ok(body.to_owned())
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes base64 (with padding), as etcd's gateway answers keys.
pub(crate) fn unb64(text: &str) -> Option<Vec<u8>> {
    let sextet = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= sextet(c)? << (18 - 6 * i);
        }
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

/// The decoded length of base64 text.
pub(crate) fn b64_len(text: &str) -> u64 {
    let pad = text.bytes().rev().take_while(|&b| b == b'=').count();
    (text.len() / 4 * 3).saturating_sub(pad) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_of_prefixes_and_decoded_lengths() {
        assert_eq!(b64(b"/flux/v3/"), "L2ZsdXgvdjMv");
        assert_eq!(b64(b"/flux/v30"), "L2ZsdXgvdjMw");
        assert_eq!(b64(b"ab"), "YWI=");
        assert_eq!(b64(b"a"), "YQ==");
        assert_eq!(b64_len("YWI="), 2);
        assert_eq!(b64_len("YQ=="), 1);
        assert_eq!(b64_len("L2ZsdXgvdjMv"), 9);
    }
}
