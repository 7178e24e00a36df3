//! The stolen host: an attacker who holds one listed host's `host.key`
//! and etcd access (and, later, the same host after its removal). The host
//! list is signed by the operator key alone, so the thief can add no host,
//! evict none, fork nothing and exhaust no version; `hosts remove` — also
//! interrupted and resumed — ends with the host locked out of every value
//! set afterwards. docs/FLEET.md's threat model names these tests.

use crate::attacks::{forged, listed_hosts, signed, vault_in_etcd, vault_with};
use crate::cluster::{Etcd, EtcdHttp, have_etcd};
use crate::support::*;
use flux_e2e::TestDaemon;
use flux_vault::keys::ProjectKey;
use flux_vault::layout::fleet_copy;
use flux_vault::membership::{HostsDoc, digest_hex};
use fluxd::fleet::envelope::{Kind, parse as parse_envelope};
use fluxd::fleet::identity::HostIdentity;
use fluxd::fleet::layout::FleetKey;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// What the thief takes from a host: its host key.
fn steal(host: &TestDaemon) -> HostIdentity {
    HostIdentity::load_or_create(&host.layout().host_key()).expect("the host key")
}

/// The project key the thief unwraps from etcd with the stolen host key.
fn project_key_of(raw: &EtcdHttp, thief: &HostIdentity, project: &str) -> ProjectKey {
    let key = FleetKey::key(&thief.recipient(), project);
    let env = raw.get(&key.to_string()).expect("the thief's wrapped key");
    let wrapped = parse_envelope(&env, Kind::Key, &key).unwrap().payload;
    let plain = flux_vault::vault::decrypt(&wrapped, thief.age()).expect("unwrap");
    ProjectKey::parse(std::str::from_utf8(&plain).unwrap()).unwrap()
}

/// Asserts that `host` still holds its sealed local copy of `project`.
fn keeps_its_copies(host: &TestDaemon, project: &str, when: &str) {
    for part in [fleet_copy::VAULTS, fleet_copy::KEYS] {
        assert!(
            host.layout()
                .fleet_dir()
                .join(fleet_copy::file(part, project))
                .exists(),
            "{} deleted its local {part} copy of {project} {when}",
            host.dir().display()
        );
    }
}

fn hosts_version(host: &TestDaemon) -> u64 {
    fleet_info(host)["hosts_version"].as_u64().unwrap_or(0)
}

#[test]
fn a_stolen_host_key_can_add_no_host_and_evict_no_host() {
    if !have_etcd("a_stolen_host_key_can_add_no_host_and_evict_no_host") {
        return;
    }
    let etcd = Etcd::start(1);
    let hosts = fleet(&etcd, 3, "app");
    set(&hosts[0], "app", "TOKEN", "t-1");
    wait_for(&hosts[2], "app", "TOKEN", |c| has_value(c, "TOKEN", "t-1"));
    let raw = etcd.raw();
    let fleet = fleet_id(&hosts[0]);
    let c = recipient(&hosts[2]);
    let thief = steal(&hosts[2]);
    let old_key = project_key_of(&raw, &thief, "app");
    let (doc, held) = listed_hosts(&raw);
    let rogue = HostIdentity::generate();

    // 1. A rogue host added by C; 2. every host but C evicted. Each signed
    // with C's key, as C and claiming to be the operator.
    let mut plus = doc.hosts.clone();
    plus.push(rogue.record());
    let only_c: Vec<_> = doc
        .hosts
        .iter()
        .filter(|h| h.recipient == c)
        .cloned()
        .collect();
    for (list, claim) in [
        (plus.clone(), c.as_str()),
        (plus, "operator"),
        (only_c.clone(), c.as_str()),
        (only_c, "operator"),
    ] {
        let next = doc.next(&held, list, vec![]).unwrap();
        let key = FleetKey::Hosts(next.version);
        let payload = serde_json::to_vec(&next).unwrap();
        let env = forged(
            &fleet,
            Kind::Hosts,
            &key,
            next.version,
            &payload,
            &thief,
            claim,
        );
        raw.put(&key.to_string(), &env);
        for h in &hosts[..2] {
            wait_problem(h, "not signed by the fleet's operator key");
            assert_eq!(hosts_version(h), doc.version, "a host took C's list");
            serves(h, "app", "TOKEN", "t-1", "after C's host list");
            keeps_its_copies(h, "app", "after C's host list");
        }
        // Writes wait while a newer list is refused: nothing is sealed
        // with a key under a list the operator did not sign.
        let out = hosts[0].run_ctl(&["secrets", "set", "X", "x", "--project", "app"]);
        assert_eq!(out.status.code(), Some(6), "a set under a refused list");
    }
    // The metrics count the problem too.
    let metrics = hosts[0].ctl_ok(&["metrics"]);
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("flux_fleet_problems ") && !l.ends_with(" 0")),
        "no fleet problem in the metrics"
    );

    // The operator removes C: its list goes over C's forgery, every
    // project is re-keyed, and the removal says so.
    let out = remove_host(&hosts[0], &c);
    assert!(out.contains("locked out"), "{out}");
    assert!(
        raw.list(&format!("/flux/v3/keys/{}/", rogue.recipient()))
            .is_empty(),
        "a key was wrapped for the rogue host"
    );
    assert!(raw.list(&format!("/flux/v3/keys/{c}/")).is_empty());
    for h in &hosts[..2] {
        flux_e2e::eventually("the operator's list held", || {
            hosts_version(h) == doc.version + 1
        });
    }
    set(&hosts[1], "app", "TOKEN", "t-2");
    wait_for(&hosts[0], "app", "TOKEN after the removal", |c| {
        has_value(c, "TOKEN", "t-2")
    });
    assert!(
        flux_vault::vault::open(&vault_in_etcd(&raw, "app"), "app", &old_key).is_err(),
        "the key C unwrapped opens the vault set after its removal"
    );
    // C, now off the list, keeps what it had and writes nothing.
    keeps_its_copies(&hosts[2], "app", "after its own removal");
    flux_e2e::eventually("C sees it is not listed", || {
        fleet_info(&hosts[2])["member"] == false
    });
    let out = hosts[2].run_ctl(&["secrets", "set", "X", "x", "--project", "app"]);
    assert!(!out.status.success(), "a removed host wrote");
}

#[test]
fn a_vault_version_at_the_end_of_the_counter_is_refused() {
    if !have_etcd("a_vault_version_at_the_end_of_the_counter_is_refused") {
        return;
    }
    let etcd = Etcd::start(1);
    let hosts = fleet(&etcd, 3, "app");
    set(&hosts[0], "app", "TOKEN", "t-1");
    wait_for(&hosts[2], "app", "TOKEN", |c| has_value(c, "TOKEN", "t-1"));
    let raw = etcd.raw();
    let thief = steal(&hosts[2]);
    let key = project_key_of(&raw, &thief, "app");
    // A well-formed vault, sealed with the real project key, signed by a
    // listed host: only its version is hostile.
    let evil = vault_with("app", "TOKEN", "t-evil", &key);
    raw.put(
        &FleetKey::vault("app").to_string(),
        &signed(
            &fleet_id(&hosts[0]),
            Kind::Vault,
            &FleetKey::vault("app"),
            u64::MAX,
            &evil,
            &thief,
        ),
    );
    for h in &hosts[..2] {
        wait_status(h, "app", "jumps more than");
        serves(h, "app", "TOKEN", "t-1", "after the version attack");
    }
    // Honest writes go on, from every host, and reach every host.
    set(&hosts[1], "app", "TOKEN", "t-2");
    for h in &hosts {
        wait_for(h, "app", "a set after the version attack", |c| {
            has_value(c, "TOKEN", "t-2")
        });
    }
    set(&hosts[0], "app", "TOKEN", "t-3");
    wait_for(&hosts[1], "app", "the next set", |c| {
        has_value(c, "TOKEN", "t-3")
    });
}

#[test]
fn a_removed_host_cannot_fork_the_list_that_removed_it() {
    if !have_etcd("a_removed_host_cannot_fork_the_list_that_removed_it") {
        return;
    }
    let etcd = Etcd::start(1);
    let mut hosts = fleet(&etcd, 3, "app");
    set(&hosts[0], "app", "TOKEN", "t-1");
    wait_for(&hosts[1], "app", "TOKEN", |c| has_value(c, "TOKEN", "t-1"));
    wait_for(&hosts[2], "app", "TOKEN", |c| has_value(c, "TOKEN", "t-1"));
    let raw = etcd.raw();
    let fleet = fleet_id(&hosts[0]);
    let c = recipient(&hosts[2]);
    let thief = steal(&hosts[2]);
    let old_key = project_key_of(&raw, &thief, "app");
    let (before, before_raw) = listed_hosts(&raw);

    // B is offline during the removal.
    hosts[1].stop();
    remove_host(&hosts[0], &c);
    set(&hosts[0], "app", "TOKEN", "t-2");
    let (removal, removal_raw) = listed_hosts(&raw);
    assert_eq!(removal.version, before.version + 1);

    // C signs its own version of that number, still listing itself, and a
    // vault with the key it knows.
    let fork = HostsDoc {
        version: removal.version,
        previous: digest_hex(&before_raw),
        ..HostsDoc::first(fleet.clone(), before.hosts.clone())
    };
    let key = FleetKey::Hosts(fork.version);
    for claim in [c.as_str(), "operator"] {
        raw.put(
            &key.to_string(),
            &forged(
                &fleet,
                Kind::Hosts,
                &key,
                fork.version,
                &serde_json::to_vec(&fork).unwrap(),
                &thief,
                claim,
            ),
        );
        // A, which holds the real version, writes it back over the fork.
        flux_e2e::eventually("the real host list written back", || {
            raw.get(&key.to_string()).as_deref() == Some(removal_raw.as_slice())
        });
    }
    let evil = vault_with("app", "TOKEN", "t-evil", &old_key);
    raw.put(
        &FleetKey::vault("app").to_string(),
        &signed(
            &fleet,
            Kind::Vault,
            &FleetKey::vault("app"),
            1_000,
            &evil,
            &thief,
        ),
    );
    wait_status(&hosts[0], "app", "not a host of the fleet");
    serves(&hosts[0], "app", "TOKEN", "t-2", "after C's vault");
    // The operator's next set goes over C's vault.
    set(&hosts[0], "app", "TOKEN", "t-3");

    // B comes back: it follows the operator's list, not C's.
    hosts[1].restart();
    flux_e2e::eventually("B holds the removal", || {
        hosts_version(&hosts[1]) == removal.version
    });
    let listed = hosts[1].ctl_ok(&["hosts", "list"]);
    assert!(!listed.contains(&c), "B still lists C: {listed}");
    wait_for(&hosts[1], "app", "the set made while B was away", |cl| {
        has_value(cl, "TOKEN", "t-3")
    });
    // B's next set is sealed with a key C never had.
    set(&hosts[1], "app", "TOKEN", "t-4");
    wait_for(&hosts[0], "app", "B's set", |cl| {
        has_value(cl, "TOKEN", "t-4")
    });
    assert!(
        flux_vault::vault::open(&vault_in_etcd(&raw, "app"), "app", &old_key).is_err(),
        "the removed host's key opens B's vault"
    );
}

#[test]
fn an_interrupted_removal_says_what_is_left_and_resume_locks_the_host_out() {
    if !have_etcd("an_interrupted_removal_says_what_is_left_and_resume_locks_the_host_out") {
        return;
    }
    const PROJECTS: usize = 60;
    let mut etcd = Etcd::start(1);
    let mut hosts = fleet(&etcd, 3, "p0");
    let names: Vec<String> = (0..PROJECTS).map(|i| format!("p{i}")).collect();
    for name in &names[1..] {
        hosts[0].create_project(name);
    }
    for name in &names {
        set(&hosts[0], name, "TOKEN", "t-1");
    }
    for name in &names {
        wait_for(&hosts[2], name, "every project on C", |c| {
            has_value(c, "TOKEN", "t-1")
        });
    }
    let raw = etcd.raw();
    let c = recipient(&hosts[2]);
    let thief = steal(&hosts[2]);
    let old_keys: Vec<ProjectKey> = names
        .iter()
        .map(|p| project_key_of(&raw, &thief, p))
        .collect();
    let (before, _) = listed_hosts(&raw);
    hosts[2].stop();

    // The removal starts; etcd stops as soon as the signed list is in.
    let key = operator_key(&hosts[0]);
    let child = hosts[0]
        .ctl()
        .args(["hosts", "remove", &c, "--operator-key", &key])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fluxctl");
    let intent = FleetKey::Hosts(before.version + 1).to_string();
    let started = Instant::now();
    while raw.get(&intent).is_none() {
        assert!(started.elapsed() < PROPAGATION, "the removal never started");
        std::thread::sleep(Duration::from_millis(1));
    }
    etcd.stop();
    let out = child.wait_with_output().expect("fluxctl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let interrupted = !out.status.success();
    if interrupted {
        // It says exactly what is done and what finishes it, never that
        // the host is locked out — or, when etcd stopped before answering
        // the list's own write, that the outcome is unknown and how to
        // go on.
        assert_eq!(out.status.code(), Some(6), "{stderr}");
        let counted = stderr.contains(&format!("of {PROJECTS} project(s) re-keyed"));
        let unknown = stderr.contains("outcome is unknown");
        assert!(
            (counted || unknown) && stderr.contains("fluxctl hosts remove --resume"),
            "{stderr}"
        );
        assert!(!String::from_utf8_lossy(&out.stdout).contains("locked out"));
        if counted {
            wait_problem(&hosts[0], "hosts remove --resume");
        }
    } else {
        eprintln!("the removal finished before etcd stopped: resuming it must change nothing");
    }
    etcd.restart();
    flux_e2e::eventually("A holds the removal", || {
        fleet_info(&hosts[0])["hosts_version"].as_u64() == Some(before.version + 1)
    });
    // Running it again is refused with the way forward.
    let again = hosts[0].run_ctl(&["hosts", "remove", &c, "--operator-key", &key]);
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("--resume"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    // --resume, on another host, finishes; a second one is a no-op.
    let mut resumed = String::new();
    let started = Instant::now();
    while resumed.is_empty() {
        let out = hosts[1].run_ctl(&["hosts", "remove", "--resume"]);
        if out.status.success() {
            resumed = String::from_utf8_lossy(&out.stdout).into_owned();
        } else {
            assert!(
                started.elapsed() < PROPAGATION,
                "--resume never finished: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert!(resumed.contains("locked out"), "{resumed}");
    let twice = hosts[0].ctl_ok(&["hosts", "remove", "--resume", "--json"]);
    let twice: serde_json::Value = serde_json::from_str(&twice).unwrap();
    assert_eq!(twice["complete"], true);
    assert_eq!(twice["pending_projects"], serde_json::json!([]));

    // Every value set from now on is out of C's reach.
    for name in &names {
        set_eventually(&hosts[1], name, "TOKEN", "t-2");
    }
    assert!(raw.list(&format!("/flux/v3/keys/{c}/")).is_empty());
    for (name, old) in names.iter().zip(&old_keys) {
        assert!(
            flux_vault::vault::open(&vault_in_etcd(&raw, name), name, old).is_err(),
            "the removed host's key opens {name}'s vault set after the removal"
        );
    }
    for name in &names {
        wait_for(&hosts[0], name, "the sets after the removal", |cl| {
            has_value(cl, "TOKEN", "t-2")
        });
    }
}

#[test]
fn a_deleted_project_stays_deleted_when_etcd_is_restored_from_before_the_delete() {
    if !have_etcd("a_deleted_project_stays_deleted_when_etcd_is_restored_from_before_the_delete") {
        return;
    }
    let mut etcd = Etcd::start(1);
    let hosts = fleet(&etcd, 2, "app");
    hosts[0].create_project("gone");
    set(&hosts[0], "gone", "OLD", "o-1");
    wait_for(&hosts[1], "gone", "gone's value", |c| {
        has_value(c, "OLD", "o-1")
    });
    etcd.stop();
    let backup = etcd.backup("before-delete");
    etcd.restart();
    set_eventually(&hosts[0], "app", "K", "k-1");
    hosts[0].ctl_ok(&["projects", "delete", "gone", "--yes"]);
    for h in &hosts {
        flux_e2e::eventually("gone stops being served", || {
            !h.project_socket("gone").exists()
        });
    }
    etcd.stop();
    etcd.restore(&backup);
    etcd.restart();
    let raw = etcd.raw();
    // The hosts apply the deletion again: etcd loses the restored vault
    // and keys, and no host serves the project.
    flux_e2e::eventually("the restored vault deleted again", || {
        raw.get(&FleetKey::vault("gone").to_string()).is_none()
            && raw
                .get(&FleetKey::Deleted("gone".into()).to_string())
                .is_some()
    });
    std::thread::sleep(Duration::from_millis(300));
    for h in &hosts {
        assert!(
            !h.project_socket("gone").exists(),
            "{} serves a deleted project again",
            h.dir().display()
        );
        serves(h, "app", "K", "k-1", "after the restore");
    }
}

#[test]
fn a_rekeyed_project_is_served_everywhere_and_the_old_key_opens_nothing_new() {
    if !have_etcd("a_rekeyed_project_is_served_everywhere_and_the_old_key_opens_nothing_new") {
        return;
    }
    let etcd = Etcd::start(1);
    let hosts = fleet(&etcd, 2, "app");
    set(&hosts[0], "app", "TOKEN", "t-1");
    wait_for(&hosts[1], "app", "TOKEN", |c| has_value(c, "TOKEN", "t-1"));
    let raw = etcd.raw();
    // What a copy of host B's key held: the project key of now.
    let old_key = project_key_of(&raw, &steal(&hosts[1]), "app");
    let out = hosts[0].ctl_ok(&["projects", "rekey", "app"]);
    assert!(out.contains("Project re-keyed: app"), "{out}");
    for h in &hosts {
        serves(h, "app", "TOKEN", "t-1", "after the rekey");
    }
    assert!(
        flux_vault::vault::open(&vault_in_etcd(&raw, "app"), "app", &old_key).is_err(),
        "the old project key opens the re-keyed vault"
    );
    // B took the new key: its set is sealed with it and reaches A.
    set(&hosts[1], "app", "TOKEN", "t-2");
    wait_for(&hosts[0], "app", "a set after the rekey", |c| {
        has_value(c, "TOKEN", "t-2")
    });
    let new_key = project_key_of(&raw, &steal(&hosts[1]), "app");
    assert!(flux_vault::vault::open(&vault_in_etcd(&raw, "app"), "app", &new_key).is_ok());
}

#[test]
fn a_rotated_host_key_leaves_no_key_that_opens_what_is_set_afterwards() {
    if !have_etcd("a_rotated_host_key_leaves_no_key_that_opens_what_is_set_afterwards") {
        return;
    }
    let etcd = Etcd::start(1);
    let mut hosts = fleet(&etcd, 2, "app");
    set(&hosts[0], "app", "TOKEN", "t-1");
    wait_for(&hosts[1], "app", "TOKEN", |c| has_value(c, "TOKEN", "t-1"));
    let raw = etcd.raw();
    // What a backup of host A's disk holds today: its host key, and so the
    // project key wrapped for it.
    let old = steal(&hosts[0]);
    let old_project_key = project_key_of(&raw, &old, "app");
    let key = operator_key(&hosts[0]);
    let out = hosts[0].ctl_ok(&["hosts", "rotate-key", "--operator-key", &key]);
    assert!(out.contains("New host key listed"), "{out}");
    // Asked again before the restart: the same next key, nothing new.
    let again = hosts[0].ctl_ok(&["hosts", "rotate-key", "--operator-key", &key, "--json"]);
    let again: serde_json::Value = serde_json::from_str(&again).unwrap();
    let new_recipient = again["new_recipient"].as_str().unwrap().to_owned();
    assert!(out.contains(&new_recipient));
    hosts[0].stop();
    hosts[0].restart();
    let state = hosts[0].layout();
    assert_eq!(steal(&hosts[0]).recipient(), new_recipient, "not switched");
    assert!(!state.next_host_key().exists() && !state.old_host_key().exists());
    wait_for(&hosts[0], "app", "TOKEN under the new key", |c| {
        has_value(c, "TOKEN", "t-1")
    });
    // The old key's removal re-keys every project away from it.
    let out = remove_host(&hosts[0], &old.recipient());
    assert!(out.contains("locked out"), "{out}");
    set(&hosts[1], "app", "TOKEN", "t-2");
    wait_for(&hosts[0], "app", "a set after the rotation", |c| {
        has_value(c, "TOKEN", "t-2")
    });
    assert!(
        raw.list(&format!("/flux/v3/keys/{}/", old.recipient()))
            .is_empty()
    );
    assert!(
        flux_vault::vault::open(&vault_in_etcd(&raw, "app"), "app", &old_project_key).is_err(),
        "the key a backup of the old host key opens still opens new values"
    );
}
