//! Projects assigned to hosts: a host holds nothing of a project it does
//! not serve — no wrapped key in etcd, no key, no vault, not even
//! ciphertext, on its disk or in its memory — so a stolen host key opens
//! its own projects only. Taking a project away from a host drops its
//! copies there and re-keys the project; a host removal re-keys only what
//! the removed host served. Once projects are assigned, a set is sent to
//! the project's hosts only, as notices. docs/FLEET.md ("Projects assigned
//! to hosts") names these tests.

use crate::attacks::vault_in_etcd;
use crate::cluster::{Etcd, have_etcd};
use crate::support::*;
use flux_e2e::TestDaemon;
use flux_vault::keys::ProjectKey;
use flux_vault::layout::fleet_copy;
use fluxd::fleet::envelope::{Kind, parse as parse_envelope};
use fluxd::fleet::identity::HostIdentity;
use fluxd::fleet::layout::FleetKey;
use std::time::{Duration, Instant};

/// `fluxctl hosts assign PROJECT ARGS… --operator-key …` on `by`.
fn assign(by: &TestDaemon, project: &str, args: &[&str]) -> std::process::Output {
    let key = operator_key(by);
    let mut all = vec!["hosts", "assign", project];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--operator-key", &key]);
    by.run_ctl(&all)
}

/// True when anything of `project` is in `host`'s local copy.
fn holds_a_copy(host: &TestDaemon, project: &str) -> bool {
    [fleet_copy::VAULTS, fleet_copy::KEYS].iter().any(|part| {
        host.layout()
            .fleet_dir()
            .join(fleet_copy::file(part, project))
            .exists()
    })
}

/// True when `host` lists `project` among the projects it serves.
fn lists(host: &TestDaemon, project: &str) -> bool {
    host.ctl_ok(&["projects", "list", "--json"])
        .contains(&format!("\"name\":\"{project}\""))
}

/// Waits until `host` neither serves `project` nor keeps a copy of it.
fn wait_dropped(host: &TestDaemon, project: &str) {
    let started = Instant::now();
    while lists(host, project) || holds_a_copy(host, project) {
        assert!(
            started.elapsed() < PROPAGATION,
            "{} still holds {project}\n{}",
            host.dir().display(),
            host.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The project key `thief`'s wrapped key in etcd opens, if etcd holds one.
fn unwrap_in_etcd(etcd: &Etcd, thief: &HostIdentity, project: &str) -> Option<ProjectKey> {
    let key = FleetKey::key(&thief.recipient(), project);
    let env = etcd.raw().get(&key.to_string())?;
    let wrapped = parse_envelope(&env, Kind::Key, &key).unwrap().payload;
    let plain = flux_vault::vault::decrypt(&wrapped, thief.age()).expect("unwrap");
    Some(ProjectKey::parse(std::str::from_utf8(&plain).unwrap()).unwrap())
}

#[test]
fn a_host_not_assigned_a_project_holds_nothing_of_it() {
    if !have_etcd("a_host_not_assigned_a_project_holds_nothing_of_it") {
        return;
    }
    let etcd = Etcd::start(1);
    let hosts = fleet(&etcd, 3, "app");
    let (a, b, c) = (
        recipient(&hosts[0]),
        recipient(&hosts[1]),
        recipient(&hosts[2]),
    );
    let key = operator_key(&hosts[0]);
    // Without the operator key, no assignment.
    let out = hosts[0].run_ctl(&["projects", "create", "api", "--hosts", &a]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an assignment without the operator key"
    );
    // A host outside the list, or one that would leave the creating host
    // out, is refused before anything is signed.
    for (on, says) in [
        ("age1notlisted", "not in the fleet's host list"),
        (b.as_str(), "would not serve api"),
    ] {
        let out = hosts[0].run_ctl(&[
            "projects",
            "create",
            "api",
            "--hosts",
            on,
            "--operator-key",
            &key,
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(says), "{err}");
    }
    hosts[0].ctl_ok(&[
        "projects",
        "create",
        "api",
        "--hosts",
        &format!("{a},{b}"),
        "--operator-key",
        &key,
    ]);
    set(&hosts[0], "api", "TOKEN", "t-1");
    set(&hosts[0], "app", "TOKEN", "a-1");
    wait_for(&hosts[1], "api", "api on B", |cl| {
        has_value(cl, "TOKEN", "t-1")
    });
    // C serves app (every host's) and nothing of api.
    wait_for(&hosts[2], "app", "app on C", |cl| {
        has_value(cl, "TOKEN", "a-1")
    });
    assert!(!lists(&hosts[2], "api"), "C serves api");
    assert!(!holds_a_copy(&hosts[2], "api"), "C keeps a copy of api");
    assert!(
        !hosts[2].project_socket("api").exists(),
        "C has a socket for api"
    );
    // The stolen key of C: etcd holds no key of api wrapped for it.
    let thief = HostIdentity::load_or_create(&hosts[2].layout().host_key()).unwrap();
    assert!(
        unwrap_in_etcd(&etcd, &thief, "api").is_none(),
        "api wrapped for C"
    );
    assert!(
        unwrap_in_etcd(&etcd, &thief, "app").is_some(),
        "app not wrapped for C"
    );
    // C cannot create it either, and says where it lives.
    let out = hosts[2].run_ctl(&["projects", "create", "api"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is assigned to") && err.contains(&a), "{err}");
    // Every host shows the assignment.
    for h in &hosts {
        let info = fleet_info(h);
        assert_eq!(info["assigned"]["api"], serde_json::json!([a, b]), "{info}");
    }
    let text = hosts[2].ctl_ok(&["hosts", "list"]);
    assert!(text.contains(&format!("api: {a}, {b}")), "{text}");
    // And `projects list`, on a host of the project.
    let listed: serde_json::Value =
        serde_json::from_str(&hosts[0].ctl_ok(&["projects", "list", "--json"])).unwrap();
    let hosts_of = |p: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == p)
            .map(|i| i["hosts"].clone())
    };
    assert_eq!(hosts_of("api"), Some(serde_json::json!([a, b])), "{listed}");
    assert_eq!(hosts_of("app"), Some(serde_json::Value::Null), "{listed}");
    let text = hosts[0].ctl_ok(&["projects", "list"]);
    assert!(
        text.contains("HOSTS") && text.contains("every host"),
        "{text}"
    );
    // Projects that exist nowhere yet may be assigned from any host, many
    // in one host list version, and are then created on one of theirs.
    let version = fleet_info(&hosts[0])["hosts_version"].as_u64().unwrap();
    let out = assign(&hosts[0], "jobs,cron", &[&b, &c, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["hosts_version"], version + 1, "{doc}");
    hosts[1].ctl_ok(&["projects", "create", "jobs"]);
    let out = hosts[0].run_ctl(&["projects", "create", "cron"]);
    assert!(
        !out.status.success(),
        "cron created on a host it is not assigned to"
    );
    wait_for(&hosts[2], "jobs", "jobs on C", |cl| cl.list().is_ok());
    assert!(!lists(&hosts[0], "jobs") && !holds_a_copy(&hosts[0], "jobs"));

    // Not even ciphertext: no file of C's holds any of api's sealed vault,
    // after a restart too (a full read of etcd).
    let sealed = vault_in_etcd(&etcd.raw(), "api");
    let mut hosts = hosts;
    hosts[2].stop();
    hosts[2].restart();
    wait_for(&hosts[2], "app", "app on C after a restart", |cl| {
        has_value(cl, "TOKEN", "a-1")
    });
    assert!(!lists(&hosts[2], "api"), "C serves api after a restart");
    assert_nowhere(
        hosts[2].dir(),
        &sealed[sealed.len() / 2..][..64],
        "api's ciphertext",
    );
    let _ = c;
}

/// Asserts that no file under `dir` contains `needle`.
fn assert_nowhere(dir: &std::path::Path, needle: &[u8], what: &str) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            assert_nowhere(&path, needle, what);
        } else if kind.is_file() {
            let bytes = std::fs::read(&path).unwrap_or_default();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{} holds {what}",
                path.display()
            );
        }
    }
}

#[test]
fn a_project_taken_away_from_a_host_is_dropped_there_and_re_keyed() {
    if !have_etcd("a_project_taken_away_from_a_host_is_dropped_there_and_re_keyed") {
        return;
    }
    let etcd = Etcd::start(1);
    let hosts = fleet(&etcd, 3, "app");
    let (a, b, c) = (
        recipient(&hosts[0]),
        recipient(&hosts[1]),
        recipient(&hosts[2]),
    );
    set(&hosts[0], "app", "TOKEN", "t-1");
    wait_for(&hosts[2], "app", "app on C", |cl| {
        has_value(cl, "TOKEN", "t-1")
    });
    let thief = HostIdentity::load_or_create(&hosts[2].layout().host_key()).unwrap();
    let old_key = unwrap_in_etcd(&etcd, &thief, "app").expect("app wrapped for C");

    // Only a host that keeps the project may move it (it re-keys it).
    let out = assign(&hosts[2], "app", &[&a, &b]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("would not serve app"), "{err}");

    let out = assign(&hosts[0], "app", &[&a, &b, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["lost"], serde_json::json!({ "app": [c] }), "{doc}");
    assert_eq!(doc["complete"], true, "{doc}");
    // C drops it: no socket, no copy; etcd holds no key wrapped for C.
    wait_dropped(&hosts[2], "app");
    assert!(
        unwrap_in_etcd(&etcd, &thief, "app").is_none(),
        "app still wrapped for C"
    );
    // Re-keyed: what is set from now on does not open with the key C had.
    set(&hosts[0], "app", "TOKEN", "t-2");
    wait_for(&hosts[1], "app", "t-2 on B", |cl| {
        has_value(cl, "TOKEN", "t-2")
    });
    let sealed = vault_in_etcd(&etcd.raw(), "app");
    assert!(
        flux_vault::vault::open(&sealed, "app", &old_key).is_err(),
        "the key C held opens the vault set after its assignment ended"
    );

    // Every host again: C is given the current key and fetches the vault.
    let out = assign(&hosts[0], "app", &["--all"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(&hosts[2], "app", "t-2 on C", |cl| {
        has_value(cl, "TOKEN", "t-2")
    });

    // A removal re-keys only what the removed host served: "solo" lives
    // on A and B and is left alone; A re-keys "app"; "bc" lives on B and C, which A
    // does not hold: B, its first host, re-keys it unasked, and the removal
    // waits for it before it says C is locked out.
    let key = operator_key(&hosts[0]);
    hosts[0].ctl_ok(&[
        "projects",
        "create",
        "solo",
        "--hosts",
        &format!("{a},{b}"),
        "--operator-key",
        &key,
    ]);
    hosts[1].ctl_ok(&[
        "projects",
        "create",
        "bc",
        "--hosts",
        &format!("{b},{c}"),
        "--operator-key",
        &key,
    ]);
    set(&hosts[1], "bc", "TOKEN", "bc-1");
    wait_for(&hosts[2], "bc", "bc on C", |cl| {
        has_value(cl, "TOKEN", "bc-1")
    });
    let old_bc = unwrap_in_etcd(&etcd, &thief, "bc").expect("bc wrapped for C");
    let out = hosts[0].ctl_ok(&["hosts", "remove", &c, "--operator-key", &key, "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    // "app" re-keyed by A, "bc" by B; "solo" left alone.
    assert_eq!(
        doc["rekeyed_projects"],
        serde_json::json!(["app", "bc"]),
        "{doc}"
    );
    assert_eq!(doc["complete"], true, "{doc}");
    assert!(
        etcd.raw().list(&format!("/flux/v3/keys/{c}/")).is_empty(),
        "etcd holds keys wrapped for the removed host"
    );
    set(&hosts[1], "bc", "TOKEN", "bc-2");
    let sealed = vault_in_etcd(&etcd.raw(), "bc");
    assert!(
        flux_vault::vault::open(&sealed, "bc", &old_bc).is_err(),
        "the key the removed host had opens bc's vault set after its removal"
    );
    // A project's last host cannot be removed.
    let out = assign(&hosts[0], "solo", &[&a]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_dropped(&hosts[1], "solo");
    let out = hosts[1].run_ctl(&["hosts", "remove", &a, "--operator-key", &key]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("project solo would be served by no host"),
        "{err}"
    );
}

#[test]
fn host_lists_keep_a_bounded_history_and_a_host_that_missed_it_catches_up() {
    if !have_etcd("host_lists_keep_a_bounded_history_and_a_host_that_missed_it_catches_up") {
        return;
    }
    let etcd = Etcd::start(1);
    let mut hosts = fleet(&etcd, 3, "app");
    let (a, b) = (recipient(&hosts[0]), recipient(&hosts[1]));
    hosts[2].stop();
    // Twenty host list versions while C is away.
    for i in 0..20 {
        let on: &[&str] = if i % 2 == 0 { &[&a] } else { &[&a, &b] };
        let out = assign(&hosts[0], "ghost", on);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    set(&hosts[0], "app", "TOKEN", "while-away");
    let version = fleet_info(&hosts[0])["hosts_version"].as_u64().unwrap();
    assert!(version > 20, "version {version}");
    let kept = flux_vault::membership::KEPT_VERSIONS as usize;
    let in_etcd = etcd.raw().list("/flux/v3/fleet/hosts/").len();
    assert!(
        in_etcd <= kept,
        "etcd keeps {in_etcd} host list versions\nA:\n{}\nB:\n{}",
        hosts[0].log(),
        hosts[1].log()
    );
    let on_disk = std::fs::read_dir(hosts[0].layout().fleet_dir().join(fleet_copy::HOSTS))
        .unwrap()
        .count();
    assert!(on_disk <= kept, "A keeps {on_disk} host list versions");
    // C comes back past the retired versions: it starts again from a kept
    // one, serves what was set, and reports no problem.
    hosts[2].restart();
    wait_for(&hosts[2], "app", "the value set while C was away", |cl| {
        has_value(cl, "TOKEN", "while-away")
    });
    let started = Instant::now();
    while fleet_info(&hosts[2])["hosts_version"].as_u64() != Some(version) {
        assert!(started.elapsed() < PROPAGATION, "{}", fleet_info(&hosts[2]));
        std::thread::sleep(Duration::from_millis(20));
    }
    let problems = fleet_info(&hosts[2])["problems"].clone();
    assert_eq!(
        problems,
        serde_json::json!([]),
        "{problems}\n{}",
        hosts[2].log()
    );
    // And a new host joins from the kept versions alone.
    let d = joiner(&etcd, &fleet_id(&hosts[0]));
    join(&hosts[0], &d);
    wait_for(&d, "app", "app on a host that joined later", |cl| {
        has_value(cl, "TOKEN", "while-away")
    });
}

#[test]
fn a_host_holds_nothing_until_it_is_added_and_then_serves_every_project() {
    if !have_etcd("a_host_holds_nothing_until_it_is_added_and_then_serves_every_project") {
        return;
    }
    let etcd = Etcd::start(1);
    let hosts = fleet(&etcd, 2, "p0");
    // More projects than a host reads again one by one when it is given
    // them all at once.
    let names: Vec<String> = (1..40).map(|i| format!("p{i}")).collect();
    for name in &names {
        hosts[0].create_project(name);
    }
    set(&hosts[0], "p39", "TOKEN", "last");
    wait_for(&hosts[1], "p39", "p39 on B", |cl| {
        has_value(cl, "TOKEN", "last")
    });
    // A host started for the fleet but not added keeps nothing of it.
    let newcomer = joiner(&etcd, &fleet_id(&hosts[0]));
    let sealed = vault_in_etcd(&etcd.raw(), "p39");
    std::thread::sleep(Duration::from_millis(300));
    for name in names.iter().chain(["p0".to_string()].iter()) {
        assert!(
            !holds_a_copy(&newcomer, name),
            "a host not added keeps {name}"
        );
    }
    assert_nowhere(
        newcomer.dir(),
        &sealed[sealed.len() / 2..][..64],
        "p39's ciphertext",
    );
    // Added: it serves every project, with its values.
    join(&hosts[0], &newcomer);
    wait_for(&newcomer, "p39", "p39 on the new host", |cl| {
        has_value(cl, "TOKEN", "last")
    });
    for name in &names {
        wait_for(&newcomer, name, "every project on the new host", |cl| {
            cl.list().is_ok()
        });
    }
}

#[test]
fn a_removal_is_re_keyed_by_every_host_its_share() {
    if !have_etcd("a_removal_is_re_keyed_by_every_host_its_share") {
        return;
    }
    let etcd = Etcd::start(1);
    let hosts = fleet(&etcd, 3, "p0");
    let names: Vec<String> = (0..12).map(|i| format!("p{i}")).collect();
    for name in &names[1..] {
        hosts[0].create_project(name);
    }
    for name in &names {
        set(&hosts[0], name, "TOKEN", "before");
    }
    wait_for(&hosts[1], "p11", "p11 on B", |cl| {
        has_value(cl, "TOKEN", "before")
    });
    let (a, b, c) = (
        recipient(&hosts[0]),
        recipient(&hosts[1]),
        recipient(&hosts[2]),
    );
    let key = operator_key(&hosts[0]);
    let out = hosts[0].ctl_ok(&["hosts", "remove", &c, "--operator-key", &key, "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["complete"], true, "{doc}");
    assert_eq!(
        doc["rekeyed_projects"],
        serde_json::json!(names.iter().collect::<std::collections::BTreeSet<_>>()),
        "{doc}"
    );
    // Each project's new vault is signed by its designated host: the
    // hosts shared the work.
    let (list, _) = crate::attacks::listed_hosts(&etcd.raw());
    let list = fluxd::fleet::cache::HostList::from_doc(list);
    let mut signers = std::collections::BTreeSet::new();
    for name in &names {
        let key = FleetKey::vault(name);
        let env = etcd.raw().get(&key.to_string()).expect("a vault");
        let signer = parse_envelope(&env, Kind::Vault, &key).unwrap().signer;
        let designated = fluxd::fleet::cache::designated_host(name, &list).unwrap();
        assert_eq!(signer, designated, "{name}");
        signers.insert(signer);
    }
    assert_eq!(signers, [a, b].into_iter().collect(), "one host did all");
    for h in &hosts[..2] {
        for name in &names {
            serves(h, name, "TOKEN", "before", "after the removal");
        }
    }
}

/// Watch events etcd sends for one set of `project` on `by`, once the
/// fleet is quiet, and checks that `hosts` all serve the new value.
fn events_per_set(
    etcd: &Etcd,
    by: &TestDaemon,
    hosts: &[&TestDaemon],
    project: &str,
    value: &str,
) -> u64 {
    let member = &etcd.members[0];
    // Quiet: nothing sent for a moment (the hosts' probes send no events).
    let mut before = member.watch_events_sent();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = member.watch_events_sent();
        if now == before {
            break;
        }
        before = now;
    }
    set(by, project, "TOKEN", value);
    for h in hosts {
        wait_for(h, project, "the set", |c| has_value(c, "TOKEN", value));
    }
    std::thread::sleep(Duration::from_millis(300));
    member.watch_events_sent() - before
}

#[test]
fn once_projects_are_assigned_a_set_is_sent_to_the_projects_hosts_only() {
    if !have_etcd("once_projects_are_assigned_a_set_is_sent_to_the_projects_hosts_only") {
        return;
    }
    let etcd = Etcd::start(1);
    let hosts = fleet(&etcd, 3, "app");
    let (a, b) = (recipient(&hosts[0]), recipient(&hosts[1]));
    let all: Vec<&TestDaemon> = hosts.iter().collect();
    // Every project on every host: each host watches the vaults, and is
    // sent each set's vault.
    assert_eq!(events_per_set(&etcd, &hosts[0], &all, "app", "v1"), 3);
    // "duo" on A and B: from this list on, a set is a notice to each of
    // the project's other hosts, under that host's own prefix.
    let out = assign(&hosts[0], "duo", &[&a, &b]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    hosts[0].create_project("duo");
    set(&hosts[0], "duo", "TOKEN", "d0");
    wait_for(&hosts[1], "duo", "duo", |c| has_value(c, "TOKEN", "d0"));
    assert_eq!(
        events_per_set(&etcd, &hosts[0], &all[..2], "duo", "d1"),
        1,
        "one notice, to B"
    );
    assert_eq!(
        events_per_set(&etcd, &hosts[1], &all[..2], "duo", "d2"),
        1,
        "one notice, to A"
    );
    assert!(!lists(&hosts[2], "duo") && !holds_a_copy(&hosts[2], "duo"));
    // A project every host serves: a notice to each other host.
    assert_eq!(events_per_set(&etcd, &hosts[2], &all, "app", "v2"), 2);
    let notices = || -> Vec<String> {
        let mut told: Vec<String> = etcd
            .raw()
            .list("/flux/v3/keys/")
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| k.ends_with("/changed"))
            .collect();
        told.sort();
        told
    };
    let mut expected = vec![
        format!("/flux/v3/keys/{a}/duo/changed"),
        format!("/flux/v3/keys/{b}/duo/changed"),
        format!("/flux/v3/keys/{a}/app/changed"),
        format!("/flux/v3/keys/{b}/app/changed"),
    ];
    expected.sort();
    assert_eq!(
        notices(),
        expected,
        "no notice for C of duo, none for a writer"
    );
    // B removed: the re-key of what it served deletes its notices, and a
    // later set tells the hosts that remain only.
    remove_host(&hosts[0], &b);
    set(&hosts[0], "app", "TOKEN", "v3");
    wait_for(&hosts[2], "app", "the set after the removal", |c| {
        has_value(c, "TOKEN", "v3")
    });
    let c = recipient(&hosts[2]);
    let mut expected = vec![
        format!("/flux/v3/keys/{a}/duo/changed"),
        format!("/flux/v3/keys/{a}/app/changed"),
        format!("/flux/v3/keys/{c}/app/changed"),
    ];
    expected.sort();
    assert_eq!(notices(), expected, "no notice left for the removed host");
}
