//! Hosts of a fleet for the tests: the first host founds the fleet with a
//! new operator key (`fluxctl fleet init`), the others start with its fleet
//! id and are added by their join tokens with that key, as docs/FLEET.md
//! tells an operator to.

use crate::cluster::Etcd;
use flux_e2e::TestDaemon;
use flux_protocol::blocking::Client;
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Each fleet's operator key file, by fleet id.
static OPERATOR_KEYS: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);

/// How long a change may take to reach another host before a test fails
/// (generous: the target is 50 ms, the machine may be busy).
pub const PROPAGATION: Duration = Duration::from_secs(10);

/// The fluxd arguments of a host on `etcd`, plus `extra`.
pub fn args<'a>(endpoints: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--store", "etcd", "--etcd-endpoints", endpoints];
    args.extend_from_slice(extra);
    args
}

/// The first host: founds the fleet in an empty etcd with a new operator
/// key (kept in its folder).
pub fn founder(etcd: &Etcd) -> TestDaemon {
    let endpoints = etcd.endpoints();
    let d = TestDaemon::start_with(&args(&endpoints, &[]));
    found(&d);
    d
}

/// Founds a fleet with `d` as its first host (`fluxctl fleet init`), the
/// operator key kept in its folder.
pub fn found(d: &TestDaemon) {
    let key = d.dir().join("operator.key");
    d.ctl_ok(&["fleet", "init", "--operator-key", key.to_str().unwrap()]);
    let id = fleet_id(d);
    OPERATOR_KEYS
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .insert(id, key);
}

/// The operator key of the fleet `d` belongs to.
pub fn operator_key(d: &TestDaemon) -> String {
    let id = fleet_id(d);
    OPERATOR_KEYS
        .lock()
        .unwrap()
        .as_ref()
        .and_then(|m| m.get(&id))
        .unwrap_or_else(|| panic!("no operator key for fleet {id}"))
        .display()
        .to_string()
}

/// `fluxctl hosts add TOKEN --operator-key …` on `by`: its output.
pub fn add_host(by: &TestDaemon, token: &str, extra: &[&str]) -> String {
    let key = operator_key(by);
    let mut args = vec!["hosts", "add", token, "--operator-key", &key];
    args.extend_from_slice(extra);
    by.ctl_ok(&args)
}

/// `fluxctl hosts remove RECIPIENT --operator-key …` on `by`: its output.
pub fn remove_host(by: &TestDaemon, recipient: &str) -> String {
    let key = operator_key(by);
    by.ctl_ok(&["hosts", "remove", recipient, "--operator-key", &key])
}

/// A host started to join the fleet `fleet_id` (not added yet).
pub fn joiner(etcd: &Etcd, fleet_id: &str) -> TestDaemon {
    let endpoints = etcd.endpoints();
    TestDaemon::start_with(&args(&endpoints, &["--fleet-id", fleet_id]))
}

/// `fluxctl hosts list --json` on `d`.
pub fn fleet_info(d: &TestDaemon) -> Value {
    serde_json::from_str(&d.ctl_ok(&["hosts", "list", "--json"])).expect("JSON")
}

pub fn fleet_id(d: &TestDaemon) -> String {
    let info = fleet_info(d);
    info["fleet_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no fleet id: {info}\n{}", d.log()))
        .to_owned()
}

pub fn join_token(d: &TestDaemon) -> String {
    fleet_info(d)["join_token"]
        .as_str()
        .expect("fleet mode")
        .to_owned()
}

pub fn recipient(d: &TestDaemon) -> String {
    fleet_info(d)["this_host"]
        .as_str()
        .expect("fleet mode")
        .to_owned()
}

/// Adds `host` to the fleet from `by`, and waits until `host` sees itself
/// listed.
pub fn join(by: &TestDaemon, host: &TestDaemon) {
    add_host(by, &join_token(host), &[]);
    let started = Instant::now();
    while fleet_info(host)["member"] != Value::Bool(true) {
        assert!(
            started.elapsed() < PROPAGATION,
            "{} never saw itself in the host list: {}\n{}",
            host.dir().display(),
            fleet_info(host),
            host.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts `n` hosts; the first founds the fleet and creates `project`,
/// the second is added before the project exists (the project is created
/// wrapped for it), the others after (their keys are wrapped then).
pub fn fleet(etcd: &Etcd, n: usize, project: &str) -> Vec<TestDaemon> {
    let first = founder(etcd);
    let id = fleet_id(&first);
    let mut hosts = vec![first];
    for _ in 1..n {
        hosts.push(joiner(etcd, &id));
    }
    if n > 1 {
        join(&hosts[0], &hosts[1]);
    }
    hosts[0].create_project(project);
    for h in hosts.iter().skip(2) {
        // As JSON: one document naming the host and what it may serve.
        let doc: serde_json::Value =
            serde_json::from_str(&add_host(&hosts[0], &join_token(h), &["--json"]))
                .expect("one JSON document");
        assert_eq!(doc["recipient"], recipient(h).as_str());
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
pub fn wait_for(
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

pub fn has_value(c: &mut Client, name: &str, value: &str) -> bool {
    c.get(name).is_ok_and(|v| v.expose() == value)
}

/// Asserts that `host` serves `value` for `name` now (a fresh connection).
pub fn serves(host: &TestDaemon, project: &str, name: &str, value: &str, when: &str) {
    let mut c = host.client(project);
    assert!(
        has_value(&mut c, name, value),
        "{} does not serve the expected value of {name} {when}",
        host.dir().display()
    );
}

pub fn set(host: &TestDaemon, project: &str, name: &str, value: &str) {
    host.ctl_ok(&["secrets", "set", name, value, "--project", project]);
}

/// `fluxctl status --json` on `host`: exit 0, or 7 when a project or the
/// daemon is unhealthy (which is what these tests look at).
pub fn status_json(host: &TestDaemon) -> Value {
    let out = host.run_ctl(&["status", "--json"]);
    assert!(
        matches!(out.status.code(), Some(0 | 7)),
        "fluxctl status: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status JSON")
}

/// `project`'s `last_error` in `fluxctl status --json` on `host`.
pub fn last_error(host: &TestDaemon, project: &str) -> String {
    let json = status_json(host);
    json["projects"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == project)
        .and_then(|p| p["last_error"].as_str())
        .unwrap_or("")
        .to_owned()
}

/// Waits until `project`'s status on `host` says something containing
/// `needle`; returns it.
pub fn wait_status(host: &TestDaemon, project: &str, needle: &str) -> String {
    let started = Instant::now();
    loop {
        let e = last_error(host, project);
        if e.contains(needle) {
            return e;
        }
        assert!(
            started.elapsed() < PROPAGATION,
            "the status of {project} on {} never said {needle:?}; it says {e:?}\n{}",
            host.dir().display(),
            host.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until `host`'s fleet problems (`fluxctl hosts list`) mention
/// `needle`; returns them.
pub fn wait_problem(host: &TestDaemon, needle: &str) -> String {
    let started = Instant::now();
    loop {
        let problems = fleet_info(host)["problems"].to_string();
        if problems.contains(needle) {
            return problems;
        }
        assert!(
            started.elapsed() < PROPAGATION,
            "the fleet problems on {} never said {needle:?}: {problems}",
            host.dir().display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs a set until it succeeds (etcd may be electing a leader), failing
/// after [`PROPAGATION`] with the last error.
pub fn set_eventually(host: &TestDaemon, project: &str, name: &str, value: &str) {
    let started = Instant::now();
    loop {
        let out = host.run_ctl(&["secrets", "set", name, value, "--project", project]);
        if out.status.success() {
            return;
        }
        assert!(
            started.elapsed() < PROPAGATION,
            "sets still fail: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
