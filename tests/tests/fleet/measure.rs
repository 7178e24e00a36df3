//! Measurements, not checks (`#[ignore]`d; run with `--ignored
//! --nocapture`, release binaries for the published figures): how long a
//! set on one host takes to be served by another, and what signing and
//! checking envelopes costs. docs/BENCHMARKS.md records the results.

use crate::cluster::{Etcd, have_etcd};
use crate::support::{PROPAGATION, has_value};
use flux_protocol::blocking::Client;
use fluxd::fleet::envelope::{Kind, Signing, parse, seal};
use fluxd::fleet::identity::HostIdentity;
use fluxd::fleet::layout::FleetKey;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A fluxd in fleet mode logging warnings only (the harness's daemons log
/// at trace level, which would be measured too), stopped on drop.
struct QuietHost {
    dir: tempfile::TempDir,
    child: Child,
}

impl QuietHost {
    fn start(etcd: &Etcd, fleet_id: Option<&str>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("fxq")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let child = Command::new(flux_e2e::bin("fluxd"))
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("--runtime-dir")
            .arg(dir.path().join("run"))
            .args(["--log-level", "warn", "--store", "etcd", "--etcd-endpoints"])
            .arg(etcd.endpoints())
            .args(fleet_id.map(|id| ["--fleet-id", id]).into_iter().flatten())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn fluxd");
        let host = Self { dir, child };
        let started = Instant::now();
        while Client::connect(host.control()).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "fluxd not ready"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        host
    }

    fn control(&self) -> PathBuf {
        flux_protocol::paths::control_socket(&self.dir.path().join("run"))
    }

    fn ctl(&self, args: &[&str]) -> String {
        let out = Command::new(flux_e2e::bin("fluxctl"))
            .env("FLUX_RUNTIME_DIR", self.dir.path().join("run"))
            .args(args)
            .output()
            .expect("fluxctl");
        assert!(out.status.success(), "fluxctl {args:?} failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn client(&self, project: &str) -> Client {
        let path = flux_protocol::paths::project_socket(&self.dir.path().join("run"), project);
        let started = Instant::now();
        loop {
            if let Ok(c) = Client::connect(&path) {
                return c;
            }
            assert!(started.elapsed() < PROPAGATION, "project never served");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for QuietHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Propagation time from a set on host A (after its answer) to the new
/// value served by host B, over many sets: `cargo build -p fluxd -p
/// fluxctl && cargo test -p flux-e2e --test fleet -- --ignored --nocapture
/// propagation` (add `--release` to both for release binaries).
#[test]
#[ignore = "a measurement, not a check: run with --ignored --nocapture"]
fn propagation_latency() {
    if !have_etcd("propagation_latency") {
        return;
    }
    let etcd = Etcd::start(1);
    let a = QuietHost::start(&etcd, None);
    let operator = a.dir.path().join("operator.key");
    let operator = operator.to_str().expect("a UTF-8 path");
    a.ctl(&["fleet", "init", "--operator-key", operator]);
    let info = |h: &QuietHost| -> serde_json::Value {
        serde_json::from_str(&h.ctl(&["hosts", "list", "--json"])).expect("JSON")
    };
    let id = info(&a)["fleet_id"]
        .as_str()
        .expect("a fleet id")
        .to_owned();
    let b = QuietHost::start(&etcd, Some(&id));
    a.ctl(&[
        "hosts",
        "add",
        info(&b)["join_token"].as_str().expect("fleet mode"),
        "--operator-key",
        operator,
    ]);
    let started = Instant::now();
    while info(&b)["member"] != true {
        assert!(started.elapsed() < PROPAGATION, "B never joined");
        std::thread::sleep(Duration::from_millis(10));
    }
    a.ctl(&["projects", "create", "app"]);
    let (mut ca, mut cb) = (a.client("app"), b.client("app"));
    let (mut times, mut writes) = (Vec::new(), Vec::new());
    for i in 0..200 {
        let value = format!("v{i}");
        let t = Instant::now();
        ca.set("LAT", value.clone().into()).expect("set on A");
        writes.push(t.elapsed());
        let started = Instant::now();
        while !has_value(&mut cb, "LAT", &value) {
            assert!(started.elapsed() < PROPAGATION, "set {i} never reached B");
            std::thread::sleep(Duration::from_micros(200));
        }
        times.push(started.elapsed());
    }
    for (what, mut t) in [
        ("set on A (etcd commit)", writes),
        ("propagation A→B after the set answered", times),
    ] {
        t.sort();
        let pct = |p: f64| t[((t.len() as f64 * p) as usize).min(t.len() - 1)];
        eprintln!(
            "{what}, {} sets: p50 {:?}, p99 {:?}, max {:?}",
            t.len(),
            pct(0.50),
            pct(0.99),
            t[t.len() - 1]
        );
    }
}

/// What signing and checking an envelope costs, by payload size: `cargo
/// test --release -p flux-e2e --test fleet -- --ignored --nocapture
/// signing`.
#[test]
#[ignore = "a measurement, not a check: run with --ignored --nocapture"]
fn signing_cost() {
    let host = HostIdentity::generate();
    let key = FleetKey::vault("app");
    let signer = host.signing_key().verifying_key();
    for size in [1usize << 10, 64 << 10, 1 << 20] {
        let payload = vec![0x5a; size];
        let rounds = if size >= 1 << 20 { 50 } else { 500 };
        let started = Instant::now();
        let mut sealed = Vec::new();
        for v in 0..rounds {
            let s = Signing {
                fleet: "fleet:measure",
                kind: Kind::Vault,
                version: v + 1,
                epoch: 1,
            };
            sealed = seal(s, &key, &payload, &host);
        }
        let sign = started.elapsed() / rounds as u32;
        let started = Instant::now();
        for _ in 0..rounds {
            let env = parse(&sealed, Kind::Vault, &key).expect("parse");
            assert!(env.signed_by(&signer));
        }
        let check = started.elapsed() / rounds as u32;
        eprintln!(
            "payload {size} bytes: sign {sign:?}, parse and verify {check:?}, envelope {} bytes ({:.2}x)",
            sealed.len(),
            sealed.len() as f64 / size as f64
        );
    }
}

/// The resident memory of a quiet host before and after 100 envelopes of
/// 1.3 MB signed by a stranger are written to etcd, and its peak while it
/// reads them: `cargo test -p flux-e2e --test fleet -- --ignored
/// --nocapture junk_memory`. docs/FLEET.md ("Big reads") records it.
#[test]
#[ignore = "a measurement, not a check: run with --ignored --nocapture"]
fn junk_memory() {
    if !have_etcd("junk_memory") {
        return;
    }
    let etcd = Etcd::start(1);
    let a = QuietHost::start(&etcd, None);
    let operator = a.dir.path().join("operator.key");
    a.ctl(&[
        "fleet",
        "init",
        "--operator-key",
        operator.to_str().expect("UTF-8"),
    ]);
    let info: serde_json::Value =
        serde_json::from_str(&a.ctl(&["hosts", "list", "--json"])).expect("JSON");
    let id = info["fleet_id"].as_str().expect("a fleet id").to_owned();
    a.ctl(&["projects", "create", "app"]);
    a.ctl(&["secrets", "set", "KEY", "k-honest", "--project", "app"]);
    std::thread::sleep(Duration::from_secs(2));
    let rss = || {
        std::fs::read_to_string(format!("/proc/{}/status", a.child.id()))
            .expect("/proc status")
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmRSS")
    };
    let before = rss();
    crate::big_reads::write_junk(&etcd, &id);
    let mut peak = before;
    for _ in 0..300 {
        peak = peak.max(rss());
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "RSS before 100 junk envelopes of 1.3 MB: {before} KiB; peak {peak} KiB; 30 s after: {} KiB",
        rss()
    );
}
