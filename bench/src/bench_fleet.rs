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
use crate::fleet_cluster::{
    Etcd, Host, KeyFilter, PROPAGATION_LIMIT, locate_fluxctl, mib, ms, on_path, path_str,
};
use crate::fluxd_process::{FluxdBinary, rss_kib};
use crate::report::{Report, Row};
use crate::stats::{Measure, percentile};
use anyhow::{Context, Result};
use flux_protocol::message::NamedValue;
use serde_json::Value;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Bytes of every secret value the bench sets.
const VALUE_LEN: usize = 40;
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
