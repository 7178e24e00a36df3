//! Fleet restart with big vaults: a host stopped and started again while
//! etcd holds `--bytes` of vault envelopes (1 GB by default; docs/FLEET.md,
//! "Big reads", "A restart with 1 GB in etcd, measured").
//!
//! The run, in order:
//!
//! 1. etcd (one member on loopback ports, [`ETCD_QUOTA`] of quota, its
//!    default 1.5 MiB request limit) — SKIPPED, loudly, when `etcd` is not
//!    on PATH;
//! 2. `--hosts` fluxd hosts in fleet mode (2 by default: a host holding
//!    1 GB of vaults takes about 2.5 GiB of memory, and every host runs on
//!    this machine), every project on every host, each with `[limits] max_request_bytes` raised to 2 MiB so a whole
//!    vault goes in one `SetMany`; founded and added as `flux-bench fleet`
//!    does;
//! 3. projects created on the first host, each given [`SECRETS`] values
//!    of [`VALUE_LEN`] random characters (from /dev/urandom, 6 bits each:
//!    nothing for etcd or the disk to compress) in one `SetMany`: a vault
//!    envelope of about 1.39 MB, under etcd's default request limit
//!    (`--smoke`: [`SMOKE_VALUE_LEN`], so a debug build runs it in
//!    seconds). The
//!    envelope of the first project is measured in etcd and gives how many
//!    projects make `--bytes`; then every host must serve them all;
//! 4. what etcd holds (vault keys and bytes, all of `/flux/v3/`, read in
//!    pages; its database size);
//! 5. **a restart**: the last host is stopped (SIGTERM, until it exits),
//!    then spawned again on the same state folder while etcd keeps
//!    serving. Every [`POLL`] the bench checks, from the spawn: whether
//!    the process exited, when the control socket answers, when a project
//!    socket answers a `get` of a known secret with its value (from its
//!    local copy, unless etcd's full read finished first), and when the host has
//!    caught up — `flux_fleet_applied_revision` at least etcd's revision
//!    at the spawn, and `flux_fleet_unsynced` 0. It notes whether the host
//!    ever reported the unsynced state ("could not finish reading etcd")
//!    and its peak and final RSS (VmHWM, VmRSS);
//! 6. **a restart with sets**: the same, with one value set on the first
//!    host while the restarted host is down and one just after its spawn
//!    (from another thread, so polling goes on): the restarted host must
//!    end serving both new values; caught up means applied at least the
//!    revision of the second set;
//! 7. the correctness check on the restarted host: every project with
//!    exactly the values set (one `GetAll` each, compared by SHA-256), no
//!    last error in its status, no fleet problem; RSS of every host and of
//!    etcd.
//!
//! A wrong value, a host that exits, or one that has not caught up within
//! the limit is a failure (the table is printed all the same); the 1 s
//! target of steps 5 and 6 is a MISS, never a failure, and is judged only at
//! 1 GB or more outside `--smoke`. Values are never printed: the bench
//! keeps their SHA-256 and compares those.

use crate::fixture::{project_name, secret_name};
use crate::fleet_cluster::{Etcd, Host, locate_fluxctl, mib, ms, on_path, path_str, revision_at};
use crate::fluxd_process::{FluxdBinary, rss_kib};
use crate::report::{Report, Row, Verdict};
use crate::stats::Measure;
use anyhow::{Context, Result, bail};
use flux_protocol::blocking::Client;
use flux_protocol::message::NamedValue;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Secrets per project.
pub const SECRETS: usize = 16;
/// Characters of every value: 16 of them make a vault of about 1.04 MB,
/// whose envelope (base64, signed) is about 1.39 MB — under etcd's
/// default `--max-request-bytes` of 1.5 MiB, with room for the key and
/// the transaction around it.
pub const VALUE_LEN: usize = 65_000;
/// Characters of every value with `--smoke`: vaults of about 64 KB.
pub const SMOKE_VALUE_LEN: usize = 4_000;
/// etcd's `--quota-backend-bytes`: 8 GiB, for 1 GB of vaults and their
/// history (each project's empty first vault, the sets of the restarts).
pub const ETCD_QUOTA: &str = "8589934592";
/// The hosts' config: a whole vault in one `SetMany` (the default request
/// limit is 256 KiB).
const HOST_CONFIG: &str = "[limits]\nmax_request_bytes = 2097152\n";
/// How often the restarted host is polled.
const POLL: Duration = Duration::from_millis(5);
/// The target: a restarted host serves its local copies within this.
const SERVE_TARGET: Duration = Duration::from_secs(1);
/// The target is judged from this much in etcd (outside `--smoke`).
const JUDGED_FROM: u64 = 1_000_000_000;
/// etcd's vault prefix (daemon/src/fleet/layout.rs).
const VAULTS: &str = "/flux/v3/fleet/vaults/";

/// How the restart bench is shaped.
#[derive(Debug, Clone)]
pub struct RestartConfig {
    pub hosts: usize,
    /// Bytes of vault envelopes to put in etcd.
    pub bytes: u64,
    /// Characters of every value.
    pub value_len: usize,
    pub smoke: bool,
    /// The restarted host's log level (the others log warnings only).
    pub log_level: String,
    /// Where to copy the restarted host's log at the end.
    pub save_log: Option<PathBuf>,
    /// How long a restarted host may take to catch up.
    pub catch_up_limit: Duration,
}

impl RestartConfig {
    /// `--smoke`: 1 MB of small vaults ([`SMOKE_VALUE_LEN`]), unless given
    /// otherwise; else 1 GB. Two hosts by
    /// default: a host holding 1 GB of vaults takes gigabytes of memory,
    /// and every host runs on this machine.
    pub fn new(smoke: bool, hosts: Option<usize>, bytes: Option<u64>) -> Self {
        let (h, b) = if smoke {
            (2, 1_000_000)
        } else {
            (2, 1_000_000_000)
        };
        Self {
            hosts: hosts.unwrap_or(h).max(2),
            bytes: bytes.unwrap_or(b).max(1),
            value_len: if smoke { SMOKE_VALUE_LEN } else { VALUE_LEN },
            smoke,
            log_level: "info".into(),
            save_log: None,
            catch_up_limit: Duration::from_secs(if smoke { 120 } else { 900 }),
        }
    }

    fn judged(&self) -> bool {
        !self.smoke && self.bytes >= JUDGED_FROM
    }
}

/// `--bytes`: a count with an optional suffix, decimal (`k`, `M`, `G`:
/// 1e3, 1e6, 1e9) or binary (`Ki`, `Mi`, `Gi`), from 1 MB to 64 GB.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}`: give a size such as 50M, 1G or 512Mi"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        other => {
            return Err(format!(
                "`{text}`: unknown unit `{other}` (use k, M, G, Ki, Mi or Gi)"
            ));
        }
    };
    let bytes = n
        .checked_mul(scale)
        .ok_or_else(|| format!("`{text}` is too large"))?;
    if !(1_000_000..=64_000_000_000).contains(&bytes) {
        return Err(format!("`{text}`: give 1M to 64G"));
    }
    Ok(bytes)
}

/// The value of an unlabelled sample `name` in Prometheus text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

type Sha = [u8; 32];

fn sha(v: &str) -> Sha {
    Sha256::digest(v.as_bytes()).into()
}

/// Random values: /dev/urandom bytes, 6 bits of each as a base64 character.
struct Values(File, usize);

impl Values {
    /// Values of `len` characters.
    fn open(len: usize) -> Result<Self> {
        Ok(Self(
            File::open("/dev/urandom").context("open /dev/urandom")?,
            len,
        ))
    }

    fn next(&mut self) -> Result<String> {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut raw = vec![0u8; self.1];
        self.0.read_exact(&mut raw).context("read /dev/urandom")?;
        Ok(raw
            .iter()
            .map(|b| ALPHABET[usize::from(b & 63)] as char)
            .collect())
    }
}

/// What one restart measured (durations from the spawn).
#[derive(Debug, Default)]
struct Restart {
    stop: Duration,
    stop_status: Option<ExitStatus>,
    control: Option<Duration>,
    served: Option<Duration>,
    caught_up: Option<Duration>,
    /// The values set during the restart, all served.
    new_values: Option<Duration>,
    /// The set made after the spawn answered (within a poll).
    set_answered: Option<Duration>,
    /// It exited while polled (with this status).
    exited: Option<ExitStatus>,
    /// It reported the unsynced state at some poll.
    unsynced_seen: bool,
    /// Wrong values it answered with (never printed).
    wrong: usize,
    hwm_kib: u64,
    rss_kib: u64,
    metrics: String,
}

/// A value expected on the restarted host: project, secret, digest.
type Expect = (String, String, Sha);

/// Runs the restart bench into `report`.
pub fn run(bin: &FluxdBinary, cfg: &RestartConfig, report: &mut Report) -> Result<()> {
    if !on_path("etcd") {
        let why = "SKIPPED: flux-bench fleet-restart: `etcd` is not installed (apt-get install -y etcd-server)";
        eprintln!("{why}");
        report.notes.push(why.into());
        return Ok(());
    }
    let ctl = locate_fluxctl(bin)?;
    let etcd = Etcd::start_with(&["--quota-backend-bytes", ETCD_QUOTA]).context("start etcd")?;
    let row = |metric: String, unit: &'static str, v: f64| {
        Row::fluxd("fleet-restart", metric, unit, Measure::one(v))
    };
    eprintln!(
        "fleet-restart: etcd at {}; {} hosts; filling {:.0} MB of vaults",
        etcd.url(),
        cfg.hosts,
        cfg.bytes as f64 / 1e6
    );

    // The fleet.
    let start = |fleet_id: Option<&str>, level: &str| {
        Host::start_with(bin, &ctl, &etcd, fleet_id, Some(HOST_CONFIG), level)
    };
    let first = start(None, "warn")?;
    let operator = first.dir.path().join("operator.key");
    first.ctl(&["fleet", "init", "--operator-key", path_str(&operator)?])?;
    let fleet_id = first.info()?["fleet_id"]
        .as_str()
        .context("no fleet id after fleet init")?
        .to_owned();
    let mut hosts = vec![first];
    for i in 1..cfg.hosts {
        let level = if i + 1 == cfg.hosts {
            cfg.log_level.as_str()
        } else {
            "warn"
        };
        let h = start(Some(&fleet_id), level)?;
        hosts[0].add(&h, &operator)?;
        h.wait_member()?;
        hosts.push(h);
    }

    // The vaults, through the first host.
    let mut values = Values::open(cfg.value_len)?;
    let mut digests: Vec<Vec<Sha>> = Vec::new();
    let mut control = hosts[0].control()?;
    let mut projects = usize::MAX;
    let mut envelope = 0u64;
    let fill = Instant::now();
    let mut sets = Vec::new();
    while digests.len() < projects {
        let i = digests.len();
        let project = project_name(i);
        control
            .create_project(&project)
            .with_context(|| format!("create project {project}"))?;
        let mut entries = Vec::with_capacity(SECRETS);
        let mut sums = Vec::with_capacity(SECRETS);
        for s in 0..SECRETS {
            let v = values.next()?;
            sums.push(sha(&v));
            entries.push(NamedValue {
                name: secret_name(s),
                value: v.into(),
            });
        }
        let t = Instant::now();
        hosts[0]
            .client(&project)?
            .set_many(entries)
            .with_context(|| format!("set the secrets of {project}"))?;
        sets.push(ms(t.elapsed()));
        digests.push(sums);
        if i == 0 {
            envelope = etcd.count_paged(VAULTS)?.1;
            if envelope == 0 {
                bail!("etcd holds no vault after the first SetMany");
            }
            projects = (cfg.bytes.div_ceil(envelope) as usize).max(3);
            eprintln!("fleet-restart: a vault envelope is {envelope} bytes: {projects} projects");
        }
        if (i + 1) % 50 == 0 {
            eprintln!(
                "fleet-restart: {} of {projects} projects in {:.0} s",
                i + 1,
                fill.elapsed().as_secs_f64()
            );
        }
    }
    drop(control);
    let filled = fill.elapsed();
    let t = Instant::now();
    for h in &hosts {
        wait_serving(h, projects, cfg.catch_up_limit)?;
    }
    let settled = t.elapsed();
    report.rows.push(row(
        format!(
            "fill: {projects} projects × {SECRETS} values of {} B, create + SetMany on one host",
            cfg.value_len
        ),
        "s",
        filled.as_secs_f64(),
    ));
    report.rows.push(row(
        "fill: SetMany of one whole vault (median)".into(),
        "ms",
        Measure::of(&sets).median,
    ));
    report.rows.push(row(
        "fill: until every host serves every project, after the last set".into(),
        "ms",
        ms(settled),
    ));

    // What etcd holds.
    let (vault_keys, vault_bytes) = etcd.count_paged(VAULTS)?;
    let (all_keys, all_bytes) = etcd.count_paged("/flux/v3/")?;
    let (db, in_use) = etcd.status()?;
    report.rows.push(row(
        format!("etcd: {vault_keys} vaults, bytes (key + envelope)"),
        "MB",
        vault_bytes as f64 / 1e6,
    ));
    report
        .rows
        .push(row("etcd: vault envelope".into(), "B", envelope as f64));
    report.rows.push(row(
        format!("etcd: all of /flux/v3/ ({all_keys} keys)"),
        "MB",
        all_bytes as f64 / 1e6,
    ));
    report.rows.push(row(
        "etcd: database size (with history)".into(),
        "MiB",
        mib(db),
    ));
    report
        .rows
        .push(row("etcd: database size in use".into(), "MiB", mib(in_use)));
    if vault_keys != projects as u64 {
        report.failures.push(format!(
            "etcd holds {vault_keys} vaults, not the {projects} projects created"
        ));
    }
    if vault_bytes < cfg.bytes {
        report.failures.push(format!(
            "etcd holds {vault_bytes} bytes of vaults, less than the {} asked",
            cfg.bytes
        ));
    }

    // Restart 1: nothing changes meanwhile.
    let last = projects - 1;
    let probe: Expect = (project_name(last), secret_name(0), digests[last][0]);
    let writer = hosts[0].run_dir();
    let r = hosts.len() - 1;
    let quiet = restart(
        &mut hosts[r],
        bin,
        &etcd,
        &fleet_id,
        cfg,
        &probe,
        &[],
        || Ok(()),
        None,
    )?;
    judge(report, cfg, "restart", &quiet);

    // Restart 2: a set while it is down, one just after its spawn.
    let (down_p, down_s) = (1usize, 1usize);
    let (up_p, up_s) = (2usize, 2usize);
    let down_v = values.next()?;
    let up_v = values.next()?;
    let down: Expect = (project_name(down_p), secret_name(down_s), sha(&down_v));
    let up: Expect = (project_name(up_p), secret_name(up_s), sha(&up_v));
    digests[down_p][down_s] = down.2;
    digests[up_p][up_s] = up.2;
    let port = etcd.port;
    let (up_name, up_secret, up_writer) = (up.0.clone(), up.1.clone(), writer.clone());
    let busy = restart(
        &mut hosts[r],
        bin,
        &etcd,
        &fleet_id,
        cfg,
        &probe,
        &[down.clone(), up],
        || set_one(&writer, &down.0, &down.1, down_v),
        Some(Box::new(move || {
            set_one(&up_writer, &up_name, &up_secret, up_v)?;
            revision_at(port)
        })),
    )?;
    judge(report, cfg, "restart with 2 sets on another host", &busy);
    if let Some(t) = busy.set_answered {
        report.rows.push(row(
            "restart with sets: spawn → the set made after it answered".into(),
            "ms",
            ms(t),
        ));
    }
    if let Some(t) = busy.new_values {
        report.rows.push(row(
            "restart with sets: spawn → serves both new values".into(),
            "ms",
            ms(t),
        ));
    }

    // Everything on the restarted host, exactly.
    let restarted = &hosts[r];
    let mut wrong = 0usize;
    for (i, sums) in digests.iter().enumerate() {
        let project = project_name(i);
        let ok = restarted.client(&project).is_ok_and(|mut c| {
            c.get_all().is_ok_and(|all| {
                all.len() == SECRETS
                    && all.iter().all(|nv| {
                        (0..SECRETS)
                            .any(|s| nv.name == secret_name(s) && sha(nv.value.expose()) == sums[s])
                    })
            })
        });
        wrong += usize::from(!ok);
    }
    if wrong > 0 {
        report.failures.push(format!(
            "the restarted host did not serve exactly the values set in {wrong} project(s)"
        ));
    }
    let errors = restarted.errors()?;
    if let Some(e) = errors.first() {
        report.failures.push(format!(
            "the restarted host reports a last error for {} project(s), e.g. {e}",
            errors.len()
        ));
    }
    let text = restarted.control()?.metrics().context("Metrics")?;
    if metric(&text, "flux_fleet_problems").unwrap_or(0.0) > 0.0 {
        let problems = restarted.info()?["problems"].clone();
        report.failures.push(format!(
            "the restarted host reports fleet problems: {problems}"
        ));
    }
    if let Ok(Some(status)) = hosts[r].child.try_wait() {
        report.failures.push(format!(
            "the restarted host exited ({status}) after catching up"
        ));
    }

    // Memory of the others.
    for (i, h) in hosts.iter().enumerate().take(r) {
        report.rows.push(row(
            format!("RSS of host {} (never restarted)", i + 1),
            "MiB",
            rss_kib(h.child.id())? as f64 / 1024.0,
        ));
    }
    report.rows.push(row(
        "RSS of etcd".into(),
        "MiB",
        rss_kib(etcd.child.id())? as f64 / 1024.0,
    ));
    if let Some(path) = &cfg.save_log {
        std::fs::copy(hosts[r].dir.path().join("fluxd.log"), path).with_context(|| {
            format!("cannot copy the restarted host's log to {}", path.display())
        })?;
        eprintln!(
            "fleet-restart: the restarted host's log is in {}",
            path.display()
        );
    }
    report.notes.push(format!(
        "fleet-restart: {} hosts, every project on every host, {projects} projects × {SECRETS} random values of {} B \
         (a vault envelope of {envelope} B) on one etcd member (loopback, --quota-backend-bytes {ETCD_QUOTA}, \
         default --max-request-bytes); host {} restarted twice, polled every {POLL:?} from its spawn; \
         caught up: flux_fleet_applied_revision ≥ etcd's revision at the spawn (or of the last set) and flux_fleet_unsynced 0",
        cfg.hosts,
        cfg.value_len,
        r + 1
    ));
    Ok(())
}

/// Rows and failures of one restart.
fn judge(report: &mut Report, cfg: &RestartConfig, what: &str, m: &Restart) {
    let row = |metric: String, unit: &'static str, v: f64| {
        Row::fluxd("fleet-restart", metric, unit, Measure::one(v))
    };
    report.rows.push(row(
        format!("{what}: SIGTERM until it exited"),
        "ms",
        ms(m.stop),
    ));
    if let Some(s) = m.stop_status.filter(|s| !s.success()) {
        report
            .failures
            .push(format!("{what}: the host stopped with {s}, not 0"));
    }
    if let Some(t) = m.control {
        report.rows.push(row(
            format!("{what}: spawn → control socket answers"),
            "ms",
            ms(t),
        ));
    }
    match m.served {
        Some(t) => {
            let verdict = match (cfg.judged(), t <= SERVE_TARGET) {
                (false, _) => Verdict::NotJudged,
                (true, true) => Verdict::Pass,
                (true, false) => Verdict::Miss,
            };
            report.rows.push(
                row(
                    format!("{what}: spawn → a get answered from its local copy"),
                    "ms",
                    ms(t),
                )
                .with_goal("≤ 1 s", verdict),
            );
        }
        None => report
            .failures
            .push(format!("{what}: the host never answered the known secret")),
    }
    match m.caught_up {
        Some(t) => report.rows.push(row(
            format!("{what}: spawn → caught up with etcd"),
            "s",
            t.as_secs_f64(),
        )),
        None => report.failures.push(format!(
            "{what}: the host had not caught up with etcd after {:?}",
            cfg.catch_up_limit
        )),
    }
    report.rows.push(row(
        format!("{what}: reported \"could not finish reading etcd\" meanwhile (1: yes)"),
        "",
        f64::from(u8::from(m.unsynced_seen)),
    ));
    for (name, label) in [
        ("flux_fleet_read_pages_total", "etcd range pages read"),
        (
            "flux_fleet_read_pages_shrunk_total",
            "pages asked again smaller",
        ),
        ("flux_fleet_held_bytes", "envelopes held, MB"),
    ] {
        if let Some(v) = metric(&m.metrics, name) {
            let v = if name.ends_with("bytes") { v / 1e6 } else { v };
            report
                .rows
                .push(row(format!("{what}: {label} (after catching up)"), "", v));
        }
    }
    report.rows.push(row(
        format!("{what}: peak RSS (VmHWM)"),
        "MiB",
        m.hwm_kib as f64 / 1024.0,
    ));
    report.rows.push(row(
        format!("{what}: RSS after catching up"),
        "MiB",
        m.rss_kib as f64 / 1024.0,
    ));
    if let Some(s) = m.exited {
        report
            .failures
            .push(format!("{what}: the host exited ({s}) before it caught up"));
    }
    if m.wrong > 0 {
        report.failures.push(format!(
            "{what}: the host answered {} get(s) with a wrong value",
            m.wrong
        ));
    }
}

/// A change made after the spawn, on another thread: it returns etcd's
/// revision once made.
type After = Box<dyn FnOnce() -> Result<i64> + Send>;

/// Stops `host`, runs `before` while it is down, spawns it again on its
/// state folder, starts `after` on a thread of its own, and polls the host
/// until it serves `probe` and every value of `changes`, and has caught up
/// with etcd's revision at the spawn or that `after` returned (see the
/// module docs).
#[allow(clippy::too_many_arguments)]
fn restart(
    host: &mut Host,
    bin: &FluxdBinary,
    etcd: &Etcd,
    fleet_id: &str,
    cfg: &RestartConfig,
    probe: &Expect,
    changes: &[Expect],
    before: impl FnOnce() -> Result<()>,
    after: Option<After>,
) -> Result<Restart> {
    let mut m = Restart::default();
    let t = Instant::now();
    kill(Pid::from_raw(host.child.id() as i32), Signal::SIGTERM).context("SIGTERM")?;
    m.stop_status = loop {
        if let Some(s) = host.child.try_wait()? {
            break Some(s);
        }
        if t.elapsed() > Duration::from_secs(30) {
            let _ = host.child.kill();
            let _ = host.child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    m.stop = t.elapsed();
    if m.stop_status.is_none() {
        bail!("the host did not exit within 30 s of SIGTERM");
    }
    before()?;
    let mut target = revision_at(etcd.port)?;
    let mut cmd = Host::command(
        bin,
        host.dir.path(),
        &etcd.url(),
        Some(fleet_id),
        &cfg.log_level,
    );
    let log = File::options()
        .create(true)
        .append(true)
        .open(host.dir.path().join("fluxd.log"))
        .context("open the host's log")?;
    let spawned = Instant::now();
    host.child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("spawn fluxd again")?;
    let mut pending = after.map(std::thread::spawn);
    let run = host.run_dir();
    let control = flux_protocol::paths::control_socket(&run);
    let pid = host.child.id();
    let mut sampled = Instant::now();
    loop {
        if let Some(s) = host.child.try_wait()? {
            m.exited = Some(s);
            break;
        }
        if sampled.elapsed() > Duration::from_millis(100) {
            m.hwm_kib = m.hwm_kib.max(status_kib(pid, "VmHWM:").unwrap_or(0));
            sampled = Instant::now();
        }
        let now = spawned.elapsed();
        if m.control.is_none() && flux_e2e::launch::handshake(&control).is_ok() {
            m.control = Some(now);
        }
        if m.served.is_none() {
            match get(&run, probe) {
                Some(true) => m.served = Some(now),
                Some(false) => m.wrong += 1,
                None => {}
            }
        }
        if pending.as_ref().is_some_and(|h| h.is_finished())
            && let Some(h) = pending.take()
        {
            let revision = h
                .join()
                .map_err(|_| anyhow::anyhow!("the set made during the restart panicked"))?
                .context("the set made during the restart")?;
            target = target.max(revision);
            m.set_answered = Some(now);
        }
        if m.served.is_some() && m.caught_up.is_none() && pending.is_none() {
            if let Ok(text) = metrics_at(&control) {
                let unsynced = metric(&text, "flux_fleet_unsynced").unwrap_or(0.0) > 0.0;
                m.unsynced_seen |= unsynced;
                let applied = metric(&text, "flux_fleet_applied_revision").unwrap_or(0.0);
                if !unsynced && applied >= target as f64 {
                    m.caught_up = Some(now);
                }
            }
        }
        if m.served.is_some()
            && m.new_values.is_none()
            && pending.is_none()
            && changes.iter().all(|e| get(&run, e) == Some(true))
        {
            m.new_values = Some(now);
        }
        if m.caught_up.is_some() && m.new_values.is_some() {
            break;
        }
        if now > cfg.catch_up_limit {
            break;
        }
        std::thread::sleep(POLL);
    }
    if let Some(h) = pending {
        let _ = h.join();
    }
    m.hwm_kib = m.hwm_kib.max(status_kib(pid, "VmHWM:").unwrap_or(0));
    m.rss_kib = status_kib(pid, "VmRSS:").unwrap_or(0);
    m.metrics = metrics_at(&control).unwrap_or_default();
    Ok(m)
}

/// Whether the host in `run` answers `e`'s secret with `e`'s value
/// (`None`: no answer yet).
fn get(run: &Path, e: &Expect) -> Option<bool> {
    let path = flux_protocol::paths::project_socket(run, &e.0);
    let mut c = Client::connect(path).ok()?;
    let v = c.get(&e.1).ok()?;
    Some(sha(v.expose()) == e.2)
}

/// Sets one secret on the host in `run`.
fn set_one(run: &Path, project: &str, name: &str, value: String) -> Result<()> {
    let path = flux_protocol::paths::project_socket(run, project);
    Client::connect(path)
        .with_context(|| format!("connect to {project}"))?
        .set(name, value.into())
        .with_context(|| format!("set {name} in {project}"))?;
    Ok(())
}

/// The host's metrics, from its control socket.
fn metrics_at(control: &Path) -> Result<String> {
    Ok(Client::connect(control)?.metrics()?)
}

/// A `VmHWM:` or `VmRSS:` line of /proc/<pid>/status, in KiB.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Waits until `host` serves `projects` projects of [`SECRETS`] secrets.
fn wait_serving(host: &Host, projects: usize, limit: Duration) -> Result<()> {
    let t = Instant::now();
    loop {
        let ready = host.control().and_then(|mut c| Ok(c.status()?)).map(|s| {
            s.projects
                .iter()
                .filter(|p| p.secrets == SECRETS as u64)
                .count()
        });
        if ready.as_ref().is_ok_and(|&n| n == projects) {
            return Ok(());
        }
        if t.elapsed() > limit {
            bail!(
                "a host serves {} of {projects} projects after {limit:?}",
                ready.map_or("?".into(), |n| n.to_string())
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_decimal_and_binary_units_and_refuse_the_rest() {
        assert_eq!(parse_bytes("1G"), Ok(1_000_000_000));
        assert_eq!(parse_bytes("50M"), Ok(50_000_000));
        assert_eq!(parse_bytes("512Mi"), Ok(512 << 20));
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(parse_bytes("1500000"), Ok(1_500_000));
        for bad in [
            "",
            "G",
            "1.5G",
            "12X",
            "10k",
            "65G",
            "99999999999999999999G",
        ] {
            assert!(parse_bytes(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn a_metric_is_read_by_its_exact_name() {
        let text = "# TYPE flux_fleet_unsynced gauge\nflux_fleet_unsynced 1\nflux_fleet_unsynced_other 7\nflux_fleet_applied_revision 1234\n";
        assert_eq!(metric(text, "flux_fleet_unsynced"), Some(1.0));
        assert_eq!(metric(text, "flux_fleet_applied_revision"), Some(1234.0));
        assert_eq!(metric(text, "flux_fleet_held_bytes"), None);
    }

    #[test]
    fn values_are_random_and_of_the_set_length() {
        let mut v = Values::open(100).expect("/dev/urandom");
        let (a, b) = (v.next().expect("a value"), v.next().expect("a value"));
        assert!(a.len() == 100 && b.len() == 100, "wrong length");
        assert!(a != b, "two values alike");
    }
}
