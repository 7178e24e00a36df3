//! Big reads never take a host down: etcd is read in pages (a restart
//! catches up across many big vaults a few keys at a time), envelopes
//! signed by strangers are dropped the moment they are refused (memory
//! does not grow with junk written to etcd), envelopes over `[store]
//! max_envelope_bytes` are refused unread, and a host that cannot finish
//! reading etcd serves its local copies, says so, and catches up when etcd
//! answers again. docs/FLEET.md ("Big reads") names these tests.

use crate::attacks::signed;
use crate::cluster::{Etcd, have_etcd};
use crate::support::*;
use flux_e2e::TestDaemon;
use fluxd::fleet::envelope::Kind;
use fluxd::fleet::identity::HostIdentity;
use fluxd::fleet::layout::FleetKey;
use std::time::{Duration, Instant};

/// One unlabelled sample of `fluxctl metrics` on `host`.
fn metric(host: &TestDaemon, name: &str) -> u64 {
    let text = host.ctl_ok(&["metrics"]);
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in fluxctl metrics"))
}

/// Waits (up to `limit`) until `check` holds, naming `what` on failure.
fn within(limit: Duration, what: &str, host: &TestDaemon, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < limit,
            "{what}: not within {limit:?}; the host's log:\n{}",
            host.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("/proc status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// A value of about 60 KB, different for each project and version.
fn big_value(project: &str, version: u32) -> String {
    let mut v = format!("{project}-{version}-");
    while v.len() < 60_000 {
        v.push_str("0123456789abcdefghijklmnopqrstuvwxyz");
    }
    v
}

fn set_big(host: &TestDaemon, project: &str, name: &str, value: &str) {
    let file = host.dir().join("value");
    std::fs::write(&file, value).expect("write the value file");
    host.ctl_ok(&[
        "secrets",
        "set",
        name,
        "--from-file",
        file.to_str().unwrap(),
        "--project",
        project,
    ]);
}

#[test]
fn a_restart_reads_many_big_vaults_in_small_pages() {
    if !have_etcd("a_restart_reads_many_big_vaults_in_small_pages") {
        return;
    }
    let etcd = Etcd::start(1);
    let config = |extra: &str| {
        format!(
            "[store]\nkind = \"etcd\"\nendpoints = [\"{}\"]\nread_page_keys = 2\n{extra}",
            etcd.endpoints()
        )
    };
    let a = TestDaemon::start_with_config(&config(""));
    found(&a);
    let id = fleet_id(&a);
    let mut b = TestDaemon::start_with_config(&config(&format!("fleet_id = \"{id}\"\n")));
    join(&a, &b);
    let projects: Vec<String> = (0..6).map(|i| format!("big{i}")).collect();
    for p in &projects {
        a.create_project(p);
        set_big(&a, p, "K0", &big_value(p, 0));
        set_big(&a, p, "K1", &big_value(p, 1));
    }
    for p in &projects {
        let want = big_value(p, 1);
        wait_for(&b, p, "the big vault", |c| has_value(c, "K1", &want));
    }
    // B misses a new version of every vault, then catches up at its
    // restart: a full read, two keys a page.
    b.stop();
    for p in &projects {
        set_big(&a, p, "K0", &big_value(p, 2));
    }
    b.restart();
    for p in &projects {
        let want = big_value(p, 2);
        wait_for(&b, p, "the version set while B was down", |c| {
            has_value(c, "K0", &want)
        });
    }
    // The fleet id, host lists (2), deletions (none), 6 vaults and 6 keys,
    // two keys a page: at least 1 + 1 + 3 + 3 pages.
    let pages = metric(&b, "flux_fleet_read_pages_total");
    assert!(pages >= 8, "{pages} pages for 15 keys at 2 a page");
    assert_eq!(metric(&b, "flux_fleet_unsynced"), 0);
    assert!(
        fleet_info(&b)["problems"]
            .as_array()
            .is_some_and(Vec::is_empty),
        "{}",
        fleet_info(&b)["problems"]
    );
}

#[test]
fn a_host_holding_much_binds_every_socket_first_and_loads_a_project_on_its_first_request() {
    if !have_etcd(
        "a_host_holding_much_binds_every_socket_first_and_loads_a_project_on_its_first_request",
    ) {
        return;
    }
    let etcd = Etcd::start(1);
    let config = |extra: &str| {
        format!(
            "[store]\nkind = \"etcd\"\nendpoints = [\"{}\"]\n{extra}",
            etcd.endpoints()
        )
    };
    let a = TestDaemon::start_with_config(&config(""));
    found(&a);
    let id = fleet_id(&a);
    // B counts any copy as much: it binds first and loads afterwards.
    let mut b = TestDaemon::start_with_config(&config(&format!(
        "fleet_id = \"{id}\"\nload_in_background_above = 0\n"
    )));
    join(&a, &b);
    let projects: Vec<String> = (0..6).map(|i| format!("lazy{i}")).collect();
    for (i, p) in projects.iter().enumerate() {
        a.create_project(p);
        set(&a, p, "K", &format!("v{i}"));
    }
    for (i, p) in projects.iter().enumerate() {
        let want = format!("v{i}");
        wait_for(&b, p, "the value", |c| has_value(c, "K", &want));
    }
    // B restarts on its local copy while etcd answers nothing: the last
    // project first, then every other, each loaded by its request.
    b.stop();
    etcd.members[0].pause();
    b.restart();
    let last = projects.len() - 1;
    wait_for(
        &b,
        &projects[last],
        "the last project, from the copy",
        |c| has_value(c, "K", &format!("v{last}")),
    );
    for (i, p) in projects.iter().enumerate() {
        serves(
            &b,
            p,
            "K",
            &format!("v{i}"),
            "after a restart that loaded it on request",
        );
    }
    assert!(
        b.log().contains("every project's socket is served first"),
        "B did not bind before loading"
    );
    // Every project is listed once loaded, and changes still follow.
    let started = Instant::now();
    while fleet_projects(&b) != projects.len() {
        assert!(
            started.elapsed() < PROPAGATION,
            "projects list: {}",
            b.ctl_ok(&["projects", "list"])
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    etcd.members[0].resume();
    set_eventually(&a, &projects[0], "K", "after");
    wait_for(&b, &projects[0], "a set after the restart", |c| {
        has_value(c, "K", "after")
    });
}

/// How many projects `host` lists.
fn fleet_projects(host: &TestDaemon) -> usize {
    serde_json::from_str::<serde_json::Value>(&host.ctl_ok(&["projects", "list", "--json"]))
        .ok()
        .and_then(|v| v.as_array().map(Vec::len))
        .unwrap_or(0)
}

/// 100 envelopes of about 1.3 MB each, signed by a key no fleet lists,
/// written straight to etcd under the fleet's vaults.
pub fn write_junk(etcd: &Etcd, fleet: &str) {
    let raw = etcd.raw();
    let stranger = HostIdentity::generate();
    for i in 0..100u32 {
        let key = FleetKey::vault(&format!("junk{i:03}"));
        let payload: Vec<u8> = (0..1_000_000u32)
            .map(|n| (n.wrapping_mul(2_654_435_761).wrapping_add(i) >> 24) as u8)
            .collect();
        let env = signed(fleet, Kind::Vault, &key, 1, &payload, &stranger);
        raw.put(&key.to_string(), &env);
    }
}

#[test]
fn junk_envelopes_are_dropped_and_memory_stays_bounded() {
    if !have_etcd("junk_envelopes_are_dropped_and_memory_stays_bounded") {
        return;
    }
    let etcd = Etcd::start(1);
    let mut hosts = fleet(&etcd, 1, "app");
    let a = &mut hosts[0];
    set(a, "app", "KEY", "k-honest");
    let id = fleet_id(a);
    let held = metric(a, "flux_fleet_held_bytes");
    let refused = metric(a, "flux_fleet_refused_envelopes_total");
    let rss_before = rss_kib(a.pid());

    write_junk(&etcd, &id);
    within(PROPAGATION * 6, "the junk refused", a, || {
        metric(a, "flux_fleet_refused_envelopes_total") >= refused + 100
    });
    let rss_after = rss_kib(a.pid());
    eprintln!(
        "RSS of a host before 100 junk envelopes of 1.3 MB: {rss_before} KiB; after: {rss_after} KiB"
    );
    assert_eq!(
        metric(a, "flux_fleet_held_bytes"),
        held,
        "the junk is held in memory"
    );
    // Kept, the junk would be 130 MB; the bound is generous for a busy
    // machine's allocator.
    assert!(
        rss_after < rss_before + 96 * 1024,
        "memory grew from {rss_before} KiB to {rss_after} KiB under junk"
    );
    serves(a, "app", "KEY", "k-honest", "under junk");

    // A restart with the junk in etcd reads it, drops it and serves.
    a.stop();
    a.restart();
    serves(
        a,
        "app",
        "KEY",
        "k-honest",
        "after a restart among the junk",
    );
    within(
        PROPAGATION * 6,
        "the junk refused after the restart",
        a,
        || metric(a, "flux_fleet_refused_envelopes_total") >= 100,
    );
    assert_eq!(metric(a, "flux_fleet_held_bytes"), held);
    eprintln!(
        "RSS of the host restarted among the junk: {} KiB",
        rss_kib(a.pid())
    );

    // With a cap below the junk's size, a host refuses it unread — even
    // in place of a project it serves — and keeps serving its copy.
    a.stop();
    a.write_config(&format!(
        "[store]\nkind = \"etcd\"\nendpoints = [\"{}\"]\nmax_envelope_bytes = 262144\n",
        etcd.endpoints()
    ));
    let config = a.config_path().display().to_string();
    a.set_args(&["--config", &config]);
    a.restart();
    let raw = etcd.raw();
    let junk = raw
        .get(&FleetKey::vault("junk000").to_string())
        .expect("the junk in etcd");
    raw.put(&FleetKey::vault("app").to_string(), &junk);
    let why = wait_status(a, "app", "max_envelope_bytes");
    assert!(why.contains("refused unread"), "{why}");
    serves(
        a,
        "app",
        "KEY",
        "k-honest",
        "with an oversize vault in etcd",
    );
    // The next set writes over it.
    set(a, "app", "KEY", "k-after");
    serves(a, "app", "KEY", "k-after", "after the set");
}

#[test]
fn a_restart_while_etcd_is_frozen_serves_the_local_copies_and_catches_up() {
    if !have_etcd("a_restart_while_etcd_is_frozen_serves_the_local_copies_and_catches_up") {
        return;
    }
    let etcd = Etcd::start(1);
    let mut hosts = fleet(&etcd, 2, "app");
    set(&hosts[0], "app", "KEY", "k-1");
    wait_for(&hosts[1], "app", "k-1", |c| has_value(c, "KEY", "k-1"));
    hosts[1].stop();
    set(&hosts[0], "app", "KEY", "k-2");

    // etcd takes connections and answers nothing while B starts.
    etcd.members[0].pause();
    hosts[1].restart();
    let b = &hosts[1];
    // Its local copy, while etcd is frozen (the project's socket may come
    // up a moment after the control socket on a busy machine).
    wait_for(b, "app", "its local copy while etcd is frozen", |c| {
        has_value(c, "KEY", "k-1")
    });
    within(PROPAGATION * 4, "B reports it cannot read etcd", b, || {
        metric(b, "flux_fleet_unsynced") == 1
    });
    let problems = fleet_info(b)["problems"].to_string();
    assert!(
        problems.contains("could not finish reading etcd"),
        "{problems}"
    );
    assert!(!last_error(b, "app").is_empty(), "the project says nothing");
    serves(b, "app", "KEY", "k-1", "while it keeps trying");

    etcd.members[0].resume();
    wait_for(b, "app", "the value set while B was down", |c| {
        has_value(c, "KEY", "k-2")
    });
    within(PROPAGATION * 2, "B's report clears", b, || {
        metric(b, "flux_fleet_unsynced") == 0
            && fleet_info(b)["problems"]
                .as_array()
                .is_some_and(Vec::is_empty)
    });
}
