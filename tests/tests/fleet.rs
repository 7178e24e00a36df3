//! Fleet mode end to end: a real etcd (started here, on loopback ports in a
//! temp dir) and several `fluxd --store etcd` processes, each on its own
//! state and runtime folders, as the hosts of one fleet.
//!
//! Without an `etcd` binary every test prints `SKIPPED` and passes
//! (`.ci/run` installs etcd-server). Assertion messages never quote a
//! secret value.

#![forbid(unsafe_code)]

use flux_e2e::TestDaemon;
use flux_protocol::blocking::Client;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a change may take to reach another host before a test fails
/// (generous: the target is 50 ms, the machine may be busy).
const PROPAGATION: Duration = Duration::from_secs(10);

fn have_etcd(test: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("etcd").is_file()))
        .unwrap_or(false);
    if !found {
        eprintln!(
            "SKIPPED: {test}: `etcd` is not installed (.ci/run installs etcd-server: apt-get install -y etcd-server)"
        );
    }
    found
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// One etcd member on loopback.
struct EtcdMember {
    name: String,
    dir: PathBuf,
    client: u16,
    peer: u16,
    cluster: String,
    child: Option<Child>,
}

impl EtcdMember {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client)
    }

    fn start(&mut self) {
        assert!(self.child.is_none(), "etcd member already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{}.log", self.name)))
            .expect("etcd log");
        let child = Command::new("etcd")
            .arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(self.dir.join(&self.name))
            .arg("--listen-client-urls")
            .arg(self.url())
            .arg("--advertise-client-urls")
            .arg(self.url())
            .arg("--listen-peer-urls")
            .arg(format!("http://127.0.0.1:{}", self.peer))
            .arg("--initial-advertise-peer-urls")
            .arg(format!("http://127.0.0.1:{}", self.peer))
            .arg("--initial-cluster")
            .arg(&self.cluster)
            .arg("--initial-cluster-token")
            .arg("flux-fleet-test")
            .env_remove("ETCD_NAME")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn etcd");
        self.child = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}.log", self.name))).unwrap_or_default()
    }

    /// True once the member answers `/health` with `"health":"true"`.
    fn healthy(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.client)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text.contains("\"health\":\"true\"")
    }
}

impl Drop for EtcdMember {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An etcd cluster of `n` members on loopback, in a temp dir.
struct Etcd {
    _dir: tempfile::TempDir,
    members: Vec<EtcdMember>,
}

impl Etcd {
    fn start(n: usize) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("fx-etcd")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut members: Vec<EtcdMember> = ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| EtcdMember {
                name: format!("m{i}"),
                dir: dir.path().to_path_buf(),
                client: *client,
                peer: *peer,
                cluster: cluster.clone(),
                child: None,
            })
            .collect();
        for m in &mut members {
            m.start();
        }
        let etcd = Self { _dir: dir, members };
        etcd.wait_healthy();
        etcd
    }

    /// Waits (polling, bounded) until every running member is healthy.
    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for m in self.members.iter().filter(|m| m.child.is_some()) {
            while !m.healthy() {
                assert!(
                    Instant::now() < deadline,
                    "etcd member {} not healthy after 30 s:\n{}",
                    m.name,
                    m.log()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(EtcdMember::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    fn stop(&mut self) {
        for m in &mut self.members {
            m.stop();
        }
    }

    fn restart(&mut self) {
        for m in &mut self.members {
            m.start();
        }
        self.wait_healthy();
    }
}

/// A fluxd host in fleet mode on `etcd`.
fn host(etcd: &Etcd) -> TestDaemon {
    let endpoints = etcd.endpoints();
    TestDaemon::start_with(&["--store", "etcd", "--etcd-endpoints", &endpoints])
}

/// This host's recipient, as `fluxctl hosts list --json` shows it.
fn recipient(d: &TestDaemon) -> String {
    let json: serde_json::Value =
        serde_json::from_str(&d.ctl_ok(&["hosts", "list", "--json"])).expect("JSON");
    json["this_host"].as_str().expect("fleet mode").to_owned()
}

/// Starts `n` hosts; the first one creates `project` and adds the others.
fn fleet(etcd: &Etcd, n: usize, project: &str) -> Vec<TestDaemon> {
    let hosts: Vec<TestDaemon> = (0..n).map(|_| host(etcd)).collect();
    // One host added before the project exists (the project is created
    // wrapped for it), the others after (their keys are wrapped then).
    if n > 1 {
        hosts[0].ctl_ok(&["hosts", "add", &recipient(&hosts[1])]);
    }
    hosts[0].create_project(project);
    for h in hosts.iter().skip(2) {
        // As JSON: one document naming the host and what it may serve.
        let r = recipient(h);
        let doc: serde_json::Value =
            serde_json::from_str(&hosts[0].ctl_ok(&["hosts", "add", &r, "--json"]))
                .expect("one JSON document");
        assert_eq!(doc["recipient"], r.as_str());
        assert_eq!(doc["added"], true);
        assert_eq!(doc["projects"], serde_json::json!([project]));
    }
    for h in &hosts {
        wait_for(h, project, "the project", |c| c.list().is_ok());
    }
    hosts
}

/// Polls `check` on a fresh or kept connection to `project` on `host`
/// until it holds; panics (naming `what`, never a value) after
/// [`PROPAGATION`]. Returns how long it took.
fn wait_for(
    host: &TestDaemon,
    project: &str,
    what: &str,
    mut check: impl FnMut(&mut Client) -> bool,
) -> Duration {
    let started = Instant::now();
    let mut client = None;
    loop {
        if client.is_none() {
            client = Client::connect(host.project_socket(project)).ok();
        }
        if let Some(c) = client.as_mut() {
            if check(c) {
                return started.elapsed();
            }
            if c.list().is_err() {
                client = None;
            }
        }
        assert!(
            started.elapsed() < PROPAGATION,
            "{what} did not reach host {} within {PROPAGATION:?}; its log:\n{}",
            host.dir().display(),
            host.log()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn has_value(c: &mut Client, name: &str, value: &str) -> bool {
    c.get(name).is_ok_and(|v| v.expose() == value)
}

fn set(host: &TestDaemon, project: &str, name: &str, value: &str) {
    host.ctl_ok(&["secrets", "set", name, value, "--project", project]);
}

#[test]
fn a_set_on_one_host_is_served_by_every_host_and_a_delete_too() {
    if !have_etcd("a_set_on_one_host_is_served_by_every_host_and_a_delete_too") {
        return;
    }
    let etcd = Etcd::start(1);
    let hosts = fleet(&etcd, 3, "app");
    let mut events = hosts[1].client("app");
    events.subscribe().expect("subscribe on B");
    set(&hosts[0], "app", "API_KEY", "sk-fleet-1");
    for h in &hosts[1..] {
        wait_for(h, "app", "API_KEY set on A", |c| {
            has_value(c, "API_KEY", "sk-fleet-1")
        });
    }
    // Subscribed clients on other hosts hear of the change.
    let event = events
        .next_event(PROPAGATION)
        .expect("event stream")
        .expect("an event on B for the set on A");
    assert_eq!(event.kind, flux_protocol::message::EventKind::Reloaded);
    assert_eq!(event.names, ["API_KEY"]);
    // A rotation from another host.
    set(&hosts[1], "app", "API_KEY", "sk-fleet-2");
    for h in [&hosts[0], &hosts[2]] {
        wait_for(h, "app", "API_KEY rotated on B", |c| {
            has_value(c, "API_KEY", "sk-fleet-2")
        });
    }
    hosts[2].ctl_ok(&["secrets", "delete", "API_KEY", "--project", "app"]);
    for h in &hosts[..2] {
        wait_for(h, "app", "the delete on C", |c| {
            c.get("API_KEY").is_err_and(|e| e.is_not_found())
        });
    }
    // etcd holds ciphertext only.
    let store = fluxd::fleet::etcd::Etcd::new(vec![etcd.endpoints()]);
    let (_, kvs) = store.range_prefix("/flux/v1/").expect("read etcd");
    for kv in &kvs {
        flux_e2e::assert_no_secret(&kv.value, "sk-fleet-2", &format!("etcd key {}", kv.key));
    }
    // A project deleted on one host is gone everywhere.
    hosts[1].ctl_ok(&["projects", "delete", "app", "--yes"]);
    for h in [&hosts[0], &hosts[2]] {
        let started = Instant::now();
        while h.project_socket("app").exists() {
            assert!(
                started.elapsed() < PROPAGATION,
                "the project delete did not reach {}",
                h.dir().display()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let (_, kvs) = store.range_prefix("/flux/v1/projects/").expect("read etcd");
    assert!(
        kvs.is_empty(),
        "etcd still holds keys of the deleted project"
    );
}

#[test]
fn concurrent_sets_of_different_names_on_two_hosts_both_land() {
    if !have_etcd("concurrent_sets_of_different_names_on_two_hosts_both_land") {
        return;
    }
    let etcd = Etcd::start(1);
    let hosts = fleet(&etcd, 2, "app");
    const ROUNDS: usize = 15;
    std::thread::scope(|s| {
        for (i, h) in hosts.iter().enumerate() {
            s.spawn(move || {
                let mut c = h.client("app");
                for r in 0..ROUNDS {
                    c.set(&format!("H{i}_N{r}"), format!("v{i}-{r}").into())
                        .unwrap_or_else(|e| panic!("set on host {i} failed: {e}"));
                }
            });
        }
    });
    for h in &hosts {
        wait_for(h, "app", "every concurrent set", |c| {
            c.list().is_ok_and(|l| l.len() == 2 * ROUNDS)
        });
        let mut c = h.client("app");
        for i in 0..2 {
            for r in 0..ROUNDS {
                assert!(
                    has_value(&mut c, &format!("H{i}_N{r}"), &format!("v{i}-{r}")),
                    "H{i}_N{r} is missing or wrong on {}",
                    h.dir().display()
                );
            }
        }
    }
}

#[test]
fn an_etcd_outage_keeps_gets_serving_fails_writes_and_recovers() {
    if !have_etcd("an_etcd_outage_keeps_gets_serving_fails_writes_and_recovers") {
        return;
    }
    let mut etcd = Etcd::start(1);
    let mut hosts = fleet(&etcd, 3, "app");
    set(&hosts[0], "app", "DB_URL", "postgres://one");
    for h in &hosts {
        wait_for(h, "app", "DB_URL", |c| {
            has_value(c, "DB_URL", "postgres://one")
        });
    }

    etcd.stop();
    for h in &hosts {
        let mut c = h.client("app");
        assert!(
            has_value(&mut c, "DB_URL", "postgres://one"),
            "{} stopped serving during the outage",
            h.dir().display()
        );
    }
    let out = hosts[0].run_ctl(&[
        "secrets",
        "set",
        "DB_URL",
        "postgres://two",
        "--project",
        "app",
    ]);
    assert!(!out.status.success(), "a set succeeded with etcd down");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&etcd.members[0].url()),
        "the error does not name the endpoints: {stderr}"
    );
    flux_e2e::assert_no_secret(&out.stderr, "postgres://two", "the error");
    let out = hosts[0].run_ctl(&["projects", "delete", "app", "--yes"]);
    assert!(
        !out.status.success(),
        "a project delete succeeded with etcd down"
    );
    let mut c = hosts[0].client("app");
    assert!(
        has_value(&mut c, "DB_URL", "postgres://one"),
        "a project delete that failed stopped the project being served"
    );
    let started = Instant::now();
    loop {
        let status = hosts[1].ctl_ok(&["status", "--json"]);
        let json: serde_json::Value = serde_json::from_str(&status).expect("JSON");
        let last_error = json["projects"][0]["last_error"].as_str().unwrap_or("");
        if last_error.contains("etcd is unreachable") {
            break;
        }
        assert!(
            started.elapsed() < PROPAGATION,
            "status does not show the outage: {status}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // A host restarted during the outage serves its local sealed copy.
    hosts[1].stop();
    hosts[1].restart();
    let mut c = hosts[1].client("app");
    assert!(
        has_value(&mut c, "DB_URL", "postgres://one"),
        "a host restarted during the outage does not serve its local copy"
    );

    etcd.restart();
    // The restarted host catches up and its writes reach the others.
    let started = Instant::now();
    loop {
        let out = hosts[1].run_ctl(&[
            "secrets",
            "set",
            "DB_URL",
            "postgres://three",
            "--project",
            "app",
        ]);
        if out.status.success() {
            break;
        }
        assert!(
            started.elapsed() < PROPAGATION,
            "sets still fail after etcd is back: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for h in [&hosts[0], &hosts[2]] {
        wait_for(h, "app", "the set after recovery", |c| {
            has_value(c, "DB_URL", "postgres://three")
        });
    }
    set(&hosts[2], "app", "OTHER", "x-after");
    wait_for(
        &hosts[1],
        "app",
        "a set from a host that never restarted",
        |c| has_value(c, "OTHER", "x-after"),
    );
    let status = hosts[0].ctl_ok(&["status", "--json"]);
    assert!(
        !status.contains("etcd is unreachable"),
        "status still shows the outage: {status}"
    );
    drop(hosts.pop());
}

#[test]
fn a_removed_host_cannot_read_new_vaults() {
    if !have_etcd("a_removed_host_cannot_read_new_vaults") {
        return;
    }
    let etcd = Etcd::start(1);
    let hosts = fleet(&etcd, 3, "app");
    set(&hosts[0], "app", "TOKEN", "t-before");
    wait_for(&hosts[2], "app", "TOKEN", |c| {
        has_value(c, "TOKEN", "t-before")
    });
    // What host C holds: its identity and its wrapped copy of the key.
    let c_state = hosts[2].state_dir();
    let host_key = flux_vault::keys::ProjectKey::parse(
        &std::fs::read_to_string(c_state.join("host.key")).expect("C's host key"),
    )
    .expect("host key");
    let wrapped = std::fs::read(c_state.join("fleet/keys/app.key")).expect("C's wrapped key");
    let old_key = flux_vault::keys::ProjectKey::parse(
        std::str::from_utf8(&flux_vault::vault::decrypt(&wrapped, &host_key).expect("unwrap"))
            .expect("text"),
    )
    .expect("project key");

    let c = recipient(&hosts[2]);
    let out = hosts[0].ctl_ok(&["hosts", "remove", &c]);
    assert!(out.contains("rotate"), "no advice to rotate: {out}");
    let list = hosts[0].ctl_ok(&["hosts", "list"]);
    assert!(!list.contains(&c), "the removed host is still listed");
    set(&hosts[1], "app", "TOKEN", "t-after");
    wait_for(&hosts[0], "app", "TOKEN after the removal", |c| {
        has_value(c, "TOKEN", "t-after")
    });

    // C stops serving the project and drops its copies.
    let started = Instant::now();
    while hosts[2].project_socket("app").exists() {
        assert!(
            started.elapsed() < PROPAGATION,
            "the removed host still serves the project"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!c_state.join("fleet/keys/app.key").exists());
    // The new vault is sealed with a key C never had.
    let store = fluxd::fleet::etcd::Etcd::new(vec![etcd.endpoints()]);
    let (_, kvs) = store
        .range_prefix("/flux/v1/projects/app/")
        .expect("read etcd");
    let vault = kvs
        .iter()
        .find(|kv| kv.key == "/flux/v1/projects/app/vault")
        .expect("the vault");
    assert!(
        flux_vault::vault::open(&vault.value, "app", &old_key).is_err(),
        "the old project key opens the new vault"
    );
    assert!(
        !kvs.iter().any(|kv| kv.key.ends_with(&c)),
        "etcd still holds a key wrapped for the removed host"
    );
}

#[test]
fn a_three_member_etcd_cluster_with_one_member_down_keeps_accepting_sets() {
    if !have_etcd("a_three_member_etcd_cluster_with_one_member_down_keeps_accepting_sets") {
        return;
    }
    let mut etcd = Etcd::start(3);
    let hosts = fleet(&etcd, 2, "app");
    set(&hosts[0], "app", "K", "v-1");
    wait_for(&hosts[1], "app", "K", |c| has_value(c, "K", "v-1"));
    // The first endpoint, the one each host talks to first.
    etcd.members[0].stop();
    let started = Instant::now();
    loop {
        // A leader election may be under way: allow it to finish.
        let out = hosts[0].run_ctl(&["secrets", "set", "K", "v-2", "--project", "app"]);
        if out.status.success() {
            break;
        }
        assert!(
            started.elapsed() < PROPAGATION,
            "sets fail with one member of three down: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_for(&hosts[1], "app", "K with a member down", |c| {
        has_value(c, "K", "v-2")
    });
    set(&hosts[1], "app", "K", "v-3");
    wait_for(&hosts[0], "app", "K set on B with a member down", |c| {
        has_value(c, "K", "v-3")
    });
}

/// A fluxd in fleet mode logging warnings only (the harness's daemons log
/// at trace level, which would be measured too), stopped on drop.
struct QuietHost {
    dir: tempfile::TempDir,
    child: Child,
}

impl QuietHost {
    fn start(etcd: &Etcd) -> Self {
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
    let (a, b) = (QuietHost::start(&etcd), QuietHost::start(&etcd));
    let json: serde_json::Value =
        serde_json::from_str(&b.ctl(&["hosts", "list", "--json"])).expect("JSON");
    a.ctl(&[
        "hosts",
        "add",
        json["this_host"].as_str().expect("fleet mode"),
    ]);
    a.ctl(&["projects", "create", "app"]);
    let (mut ca, mut cb) = (a.client("app"), b.client("app"));
    let (mut times, mut writes) = (Vec::new(), Vec::new());
    for i in 0..300 {
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
