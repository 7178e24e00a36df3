//! Recovery without a restart and without losing data: etcd restored from
//! an older backup, a host pointed at an empty etcd, quorum lost and
//! regained.

use crate::cluster::{Etcd, have_etcd};
use crate::support::*;
use flux_vault::layout::fleet_copy;
use fluxd::fleet::layout::FleetKey;
use std::time::{Duration, Instant};

#[test]
fn etcd_restored_from_an_older_backup_never_moves_hosts_backwards() {
    if !have_etcd("etcd_restored_from_an_older_backup_never_moves_hosts_backwards") {
        return;
    }
    let mut etcd = Etcd::start(1);
    let hosts = fleet(&etcd, 2, "app");
    set(&hosts[0], "app", "KEY", "k-1");
    wait_for(&hosts[1], "app", "KEY", |c| has_value(c, "KEY", "k-1"));
    etcd.stop();
    let backup = etcd.backup("backup");
    etcd.restart();
    set_eventually(&hosts[0], "app", "KEY", "k-2");
    set(&hosts[1], "app", "LATER", "l-1");
    for h in &hosts {
        wait_for(h, "app", "the sets after the backup", |c| {
            has_value(c, "KEY", "k-2") && has_value(c, "LATER", "l-1")
        });
    }

    // etcd goes back to the backup: its history is shorter, its vault older.
    etcd.stop();
    etcd.restore(&backup);
    etcd.restart();
    for h in &hosts {
        wait_status(h, "app", "rollback");
        serves(h, "app", "KEY", "k-2", "after etcd went back");
        serves(h, "app", "LATER", "l-1", "after etcd went back");
    }
    // Sets work again without a restart, from either host, and nothing
    // set after the backup is lost.
    set_eventually(&hosts[1], "app", "KEY", "k-3");
    wait_for(&hosts[0], "app", "the set after the restore", |c| {
        has_value(c, "KEY", "k-3") && has_value(c, "LATER", "l-1")
    });
    set(&hosts[0], "app", "KEY", "k-4");
    wait_for(&hosts[1], "app", "a set from the other host", |c| {
        has_value(c, "KEY", "k-4")
    });
}

#[test]
fn a_host_pointed_at_an_empty_etcd_keeps_its_copies_and_writes_nothing() {
    if !have_etcd("a_host_pointed_at_an_empty_etcd_keeps_its_copies_and_writes_nothing") {
        return;
    }
    let etcd = Etcd::start(1);
    let mut hosts = fleet(&etcd, 2, "app");
    set(&hosts[0], "app", "KEY", "k-1");
    let id = fleet_id(&hosts[0]);
    // The same host, restarted with the endpoints of an empty etcd (a
    // typo, a rebuilt cluster).
    let empty = Etcd::start(1);
    let endpoints = empty.endpoints();
    hosts[0].stop();
    hosts[0].set_args(&args(&endpoints, &[]));
    hosts[0].restart();
    serves(&hosts[0], "app", "KEY", "k-1", "on an empty etcd");
    let problems = wait_problem(&hosts[0], "holds no fleet");
    assert!(problems.contains("--publish-fleet"), "{problems}");
    assert!(
        hosts[0]
            .layout()
            .fleet_dir()
            .join(fleet_copy::file(fleet_copy::VAULTS, "app"))
            .exists(),
        "the local sealed copy was wiped"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        empty.raw().list("/flux/").is_empty(),
        "the host wrote to an etcd that holds no fleet"
    );
    // Writes fail and say why; nothing changes.
    let out = hosts[0].run_ctl(&["secrets", "set", "KEY", "k-x", "--project", "app"]);
    assert!(!out.status.success(), "a set succeeded on an empty etcd");
    serves(&hosts[0], "app", "KEY", "k-1", "after a refused set");

    // Told to, it writes its fleet back: the same fleet, its project.
    hosts[0].stop();
    hosts[0].set_args(&args(&endpoints, &["--publish-fleet"]));
    hosts[0].restart();
    assert_eq!(fleet_id(&hosts[0]), id);
    flux_e2e::eventually("the fleet written back", || {
        empty.raw().get(&FleetKey::Id.to_string()).is_some()
    });
    serves(&hosts[0], "app", "KEY", "k-1", "after --publish-fleet");
    set(&hosts[0], "app", "KEY", "k-2");
    serves(
        &hosts[0],
        "app",
        "KEY",
        "k-2",
        "after a set on the new etcd",
    );
    assert!(
        empty
            .raw()
            .get(&FleetKey::vault("app").to_string())
            .is_some()
    );
}

/// An "etcd" that accepts connections and never answers: a member hung,
/// or a black-holed address. Counts the connections it was given.
fn silent_etcd() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(stream);
        }
    });
    (endpoint, accepted)
}

#[test]
fn a_host_whose_etcd_does_not_answer_serves_its_copies_at_once() {
    if !have_etcd("a_host_whose_etcd_does_not_answer_serves_its_copies_at_once") {
        return;
    }
    let etcd = Etcd::start(1);
    let mut hosts = fleet(&etcd, 1, "app");
    set(&hosts[0], "app", "KEY", "k-1");
    hosts[0].stop();
    let (endpoint, accepted) = silent_etcd();
    hosts[0].set_args(&args(&endpoint, &[]));
    hosts[0].restart();
    serves(&hosts[0], "app", "KEY", "k-1", "while etcd does not answer");
    // Served while fluxd's first try at etcd (2 s at most) was still
    // waiting: start-up did not wait for etcd's deadline.
    assert!(
        accepted.load(std::sync::atomic::Ordering::SeqCst) <= 1,
        "start-up waited for etcd: it had tried again before serving"
    );
    wait_status(&hosts[0], "app", "etcd");
    // Pointed back at the real etcd, it catches up without a restart of
    // the others.
    hosts[0].stop();
    hosts[0].set_args(&args(&etcd.endpoints(), &[]));
    hosts[0].restart();
    set(&hosts[0], "app", "KEY", "k-2");
    serves(&hosts[0], "app", "KEY", "k-2", "after etcd is back");
}

#[test]
fn lost_quorum_says_the_outcome_is_unknown_and_status_clears_when_it_returns() {
    if !have_etcd("lost_quorum_says_the_outcome_is_unknown_and_status_clears_when_it_returns") {
        return;
    }
    let mut etcd = Etcd::start(3);
    let hosts = fleet(&etcd, 2, "app");
    set(&hosts[0], "app", "KEY", "k-1");
    wait_for(&hosts[1], "app", "KEY", |c| has_value(c, "KEY", "k-1"));
    etcd.members[1].stop();
    etcd.members[2].stop();
    let out = hosts[0].run_ctl(&["secrets", "set", "KEY", "k-2", "--project", "app"]);
    assert!(!out.status.success(), "a set succeeded without quorum");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown") && !stderr.contains("nothing was changed"),
        "the error claims to know the outcome: {stderr}"
    );
    flux_e2e::assert_no_secret(&out.stderr, "k-2", "the error");
    serves(&hosts[1], "app", "KEY", "k-1", "without quorum");

    etcd.members[1].start();
    etcd.members[2].start();
    etcd.wait_healthy();
    for h in &hosts {
        let started = Instant::now();
        while !last_error(h, "app").is_empty() {
            assert!(
                started.elapsed() < PROPAGATION,
                "status on {} still shows {:?} after quorum returned",
                h.dir().display(),
                last_error(h, "app")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    set_eventually(&hosts[1], "app", "KEY", "k-3");
    wait_for(&hosts[0], "app", "a set after quorum returned", |c| {
        has_value(c, "KEY", "k-3")
    });
}

/// `fluxctl dashboard`'s `/api/overview` on `host`, read once.
fn dashboard_overview(host: &flux_e2e::TestDaemon) -> serde_json::Value {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut child = std::process::Command::new(flux_e2e::bin("fluxctl"))
        .arg("--runtime-dir")
        .arg(host.runtime_dir())
        .args(["dashboard", "--no-open"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let url = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("http://127.0.0.1:"))
        .expect("the dashboard's URL");
    let rest = &url["http://".len()..];
    let host_port = rest.split('/').next().unwrap().to_owned();
    let code = url.split("?code=").nth(1).expect("a one-time code");
    let get = |path: &str, header: &str| -> serde_json::Value {
        let mut s = std::net::TcpStream::connect(&host_port).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {host_port}\r\n{header}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        let body = raw.split("\r\n\r\n").nth(1).expect("an answer body");
        serde_json::from_str(body).unwrap_or_else(|_| panic!("{path}: not JSON: {raw}"))
    };
    // The link's one-time code, exchanged for a session, as the page does.
    let session = get("/api/session", &format!("Flux-Dashboard-Code: {code}"));
    let bearer = session["session"].as_str().expect("a session").to_owned();
    let overview = get("/api/overview", &format!("Authorization: Bearer {bearer}"));
    flux_e2e::terminate(&mut child, Duration::from_secs(5));
    overview
}

/// One unlabelled sample of `fluxctl metrics` on `host`.
fn metric(host: &flux_e2e::TestDaemon, name: &str) -> i64 {
    let text = host.ctl_ok(&["metrics"]);
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in fluxctl metrics"))
}

#[test]
fn metrics_show_an_etcd_outage_and_the_revision_each_host_applied() {
    if !have_etcd("metrics_show_an_etcd_outage_and_the_revision_each_host_applied") {
        return;
    }
    let mut etcd = Etcd::start(1);
    let hosts = fleet(&etcd, 2, "app");
    set(&hosts[0], "app", "KEY", "k-1");
    wait_for(&hosts[1], "app", "KEY", |c| has_value(c, "KEY", "k-1"));
    let revision = etcd.raw().revision();
    for h in &hosts {
        assert_eq!(metric(h, "flux_fleet_mode"), 1);
        assert_eq!(metric(h, "flux_fleet_etcd_outage"), 0);
        flux_e2e::eventually("the host to apply etcd's revision", || {
            metric(h, "flux_fleet_applied_revision") >= revision - 1
        });
    }
    // The dashboard shows the fleet: its id and both hosts.
    let overview = dashboard_overview(&hosts[0]);
    assert_eq!(overview["fleet"]["fleet_id"], fleet_id(&hosts[0]).as_str());
    assert_eq!(
        overview["fleet"]["hosts"].as_array().map(Vec::len),
        Some(2),
        "{overview}"
    );
    assert_eq!(overview["fleet"]["member"], true);
    flux_e2e::assert_no_secret(overview.to_string().as_bytes(), "k-1", "the dashboard");

    etcd.stop();
    let started = Instant::now();
    while metric(&hosts[1], "flux_fleet_etcd_outage") != 1 {
        assert!(
            started.elapsed() < PROPAGATION * 4,
            "no outage in the metrics with etcd stopped"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(metric(&hosts[1], "flux_fleet_problems") >= 1);
    etcd.restart();
    let started = Instant::now();
    while metric(&hosts[1], "flux_fleet_etcd_outage") != 0 {
        assert!(
            started.elapsed() < PROPAGATION * 4,
            "the outage stays in the metrics with etcd back"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
