//! Fleet mode when nothing is hostile: sets, rotations, deletes and
//! project deletions reach every host; concurrent writers on two hosts;
//! etcd outages; host removal; a member down; more hosts than one etcd
//! transaction holds.

use crate::cluster::{Etcd, have_etcd};
use crate::support::*;
use flux_vault::layout::fleet_copy;
use fluxd::fleet::envelope::{Kind, parse as parse_envelope};
use fluxd::fleet::identity::HostIdentity;
use fluxd::fleet::layout::FleetKey;
use std::time::{Duration, Instant};

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
    let raw = etcd.raw();
    for (key, value) in raw.list("/flux/") {
        flux_e2e::assert_no_secret(&value, "sk-fleet-2", &format!("etcd key {key}"));
    }
    // A project deleted on one host is gone everywhere.
    let out = hosts[1].ctl_ok(&["projects", "delete", "app", "--yes"]);
    assert!(
        out.contains("its key, vault and socket are gone"),
        "the delete does not say the project is gone: {out}"
    );
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
    let left: Vec<String> = raw
        .list("/flux/")
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.ends_with("/app") && !k.contains("/deleted/"))
        .collect();
    assert!(left.is_empty(), "etcd still holds {left:?}");
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
        serves(h, "app", "DB_URL", "postgres://one", "during the outage");
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
    serves(
        &hosts[0],
        "app",
        "DB_URL",
        "postgres://one",
        "after a project delete that failed",
    );
    wait_status(&hosts[1], "app", "etcd is unreachable");

    // A host restarted during the outage serves its local sealed copy.
    hosts[1].stop();
    hosts[1].restart();
    serves(
        &hosts[1],
        "app",
        "DB_URL",
        "postgres://one",
        "after a restart during the outage",
    );

    etcd.restart();
    // The restarted host catches up and its writes reach the others.
    set_eventually(&hosts[1], "app", "DB_URL", "postgres://three");
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
    // Every host's status clears once etcd answers again.
    for h in &hosts {
        let started = Instant::now();
        while last_error(h, "app").contains("unreachable") {
            assert!(
                started.elapsed() < PROPAGATION,
                "status on {} still shows the outage",
                h.dir().display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
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
    let c = recipient(&hosts[2]);
    let c_state = hosts[2].layout();
    let identity = HostIdentity::load_or_create(&c_state.host_key()).expect("C's host key");
    let wrapped = std::fs::read(
        c_state
            .fleet_dir()
            .join(fleet_copy::file(fleet_copy::KEYS, "app")),
    )
    .expect("C's wrapped key");
    let wrapped = parse_envelope(&wrapped, Kind::Key, &FleetKey::key(&c, "app"))
        .expect("an envelope")
        .payload;
    let old_key = flux_vault::keys::ProjectKey::parse(
        std::str::from_utf8(&flux_vault::vault::decrypt(&wrapped, identity.age()).expect("unwrap"))
            .expect("text"),
    )
    .expect("project key");

    let out = remove_host(&hosts[0], &c);
    assert!(out.contains("rotate"), "no advice to rotate: {out}");
    let list = hosts[0].ctl_ok(&["hosts", "list"]);
    assert!(!list.contains(&c), "the removed host is still listed");
    set(&hosts[1], "app", "TOKEN", "t-after");
    wait_for(&hosts[0], "app", "TOKEN after the removal", |c| {
        has_value(c, "TOKEN", "t-after")
    });
    // The new vault is sealed with a key C never had, and no key is
    // wrapped for C any more.
    let raw = etcd.raw();
    let vault = raw
        .get(&FleetKey::vault("app").to_string())
        .expect("the vault");
    let vault = parse_envelope(&vault, Kind::Vault, &FleetKey::vault("app"))
        .expect("an envelope")
        .payload;
    assert!(
        flux_vault::vault::open(&vault, "app", &old_key).is_err(),
        "the old project key opens the new vault"
    );
    assert!(
        raw.list(&format!("/flux/v3/keys/{c}/")).is_empty(),
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
    set_eventually(&hosts[0], "app", "K", "v-2");
    wait_for(&hosts[1], "app", "K with a member down", |c| {
        has_value(c, "K", "v-2")
    });
    set(&hosts[1], "app", "K", "v-3");
    wait_for(&hosts[0], "app", "K set on B with a member down", |c| {
        has_value(c, "K", "v-3")
    });
}

#[test]
fn a_rolling_restart_of_etcd_members_fails_no_set() {
    if !have_etcd("a_rolling_restart_of_etcd_members_fails_no_set") {
        return;
    }
    let mut etcd = Etcd::start(3);
    let hosts = fleet(&etcd, 2, "app");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (done, failures) = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut c = hosts[0].client("app");
            let (mut done, mut failures) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match c.set("ROLL", format!("r{done}").into()) {
                    Ok(_) => done += 1,
                    Err(e) => failures.push(e.to_string()),
                }
            }
            (done, failures)
        });
        for i in 0..3 {
            etcd.members[i].stop();
            std::thread::sleep(Duration::from_millis(300));
            etcd.members[i].start();
            etcd.wait_healthy();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().expect("writer")
    });
    assert!(done > 0, "no set finished during the restarts");
    assert!(
        failures.is_empty(),
        "{} of {} sets failed during a rolling restart: {:?}",
        failures.len(),
        done + failures.len(),
        &failures[..failures.len().min(3)]
    );
    let last = format!("r{}", done - 1);
    wait_for(
        &hosts[1],
        "app",
        "the last set of the rolling restart",
        |c| has_value(c, "ROLL", &last),
    );
}

#[test]
fn a_project_is_wrapped_for_more_hosts_than_one_etcd_transaction_holds() {
    if !have_etcd("a_project_is_wrapped_for_more_hosts_than_one_etcd_transaction_holds") {
        return;
    }
    let etcd = Etcd::start(1);
    let a = founder(&etcd);
    // 130 hosts (etcd's default --max-txn-ops is 128): identities made
    // here, added by their join tokens like real hosts.
    let others: Vec<HostIdentity> = (0..130).map(|_| HostIdentity::generate()).collect();
    for h in &others {
        add_host(&a, &h.record().join_token(), &[]);
    }
    a.create_project("wide");
    set(&a, "wide", "K", "v-wide");
    let raw = etcd.raw();
    let wrapped = raw
        .list("/flux/v3/keys/")
        .into_iter()
        .filter(|(k, _)| k.ends_with("/wide"))
        .count();
    assert_eq!(wrapped, 131, "one wrapped key per host");
    // Each host can unwrap its own copy.
    let last = &others[129];
    let key = FleetKey::key(&last.recipient(), "wide");
    let env = raw.get(&key.to_string()).expect("the last host's key");
    let payload = parse_envelope(&env, Kind::Key, &key)
        .expect("an envelope")
        .payload;
    assert!(flux_vault::vault::decrypt(&payload, last.age()).is_ok());
    // Removing one re-keys the project for the 130 others.
    remove_host(&a, &others[0].recipient());
    let wrapped = raw
        .list("/flux/v3/keys/")
        .into_iter()
        .filter(|(k, _)| k.ends_with("/wide"))
        .count();
    assert_eq!(wrapped, 130);
    serves(&a, "wide", "K", "v-wide", "after the re-key");
}
