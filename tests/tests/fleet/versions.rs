//! Versions in fleet mode: the same history on every host, rollbacks
//! served everywhere, history kept through a host removal's re-key.

use crate::cluster::{Etcd, have_etcd};
use crate::support::*;
use flux_e2e::TestDaemon;

/// `fluxctl secrets history NAME --json` on `host`: version numbers and
/// digests.
fn history(host: &TestDaemon, project: &str, name: &str) -> Vec<(u64, String)> {
    try_history(host, project, name).expect("secrets history")
}

/// [`history`], `None` when the command fails (a host catching up).
fn try_history(host: &TestDaemon, project: &str, name: &str) -> Option<Vec<(u64, String)>> {
    let out = host.run_ctl(&["secrets", "history", name, "--json", "-p", project]);
    if !out.status.success() {
        return None;
    }
    let versions = serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .expect("JSON")
        .as_array()
        .expect("a list")
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().expect("a version"),
                v["digest"].as_str().expect("a digest").to_owned(),
            )
        })
        .collect();
    Some(versions)
}

#[test]
fn versions_work_the_same_across_hosts_and_survive_a_rekey() {
    if !have_etcd("versions_work_the_same_across_hosts_and_survive_a_rekey") {
        return;
    }
    let etcd = Etcd::start(1);
    let hosts = fleet(&etcd, 3, "app");
    set(&hosts[0], "app", "API_KEY", "fleet-good");
    set(&hosts[1], "app", "API_KEY", "fleet-bad");
    for h in &hosts {
        wait_for(h, "app", "the bad rotation", |c| {
            has_value(c, "API_KEY", "fleet-bad")
        });
    }
    // Every host sees the same versions, set on two hosts.
    let on_a = history(&hosts[0], "app", "API_KEY");
    assert_eq!(on_a.iter().map(|v| v.0).collect::<Vec<_>>(), [2, 1]);
    assert_eq!(history(&hosts[2], "app", "API_KEY"), on_a);
    // A rollback on C is served everywhere.
    hosts[2].ctl_ok(&["secrets", "rollback", "API_KEY", "-p", "app"]);
    for h in &hosts {
        wait_for(h, "app", "the rollback", |c| {
            has_value(c, "API_KEY", "fleet-good")
        });
    }
    let after = history(&hosts[0], "app", "API_KEY");
    assert_eq!(after.iter().map(|v| v.0).collect::<Vec<_>>(), [3, 2, 1]);
    assert_eq!(after[0].1, after[2].1, "version 3 holds version 1's value");
    // Removing a host re-keys the project: the versions are kept (the
    // digests change with the key).
    let c = recipient(&hosts[2]);
    remove_host(&hosts[0], &c);
    wait_for(&hosts[1], "app", "the re-keyed vault", |_| {
        try_history(&hosts[1], "app", "API_KEY")
            .is_some_and(|h| h.first().is_some_and(|v| v.1 != after[0].1))
    });
    let rekeyed = history(&hosts[1], "app", "API_KEY");
    assert_eq!(rekeyed.iter().map(|v| v.0).collect::<Vec<_>>(), [3, 2, 1]);
    assert_eq!(rekeyed[0].1, rekeyed[2].1);
    hosts[1].ctl_ok(&["secrets", "rollback", "API_KEY", "--to", "2", "-p", "app"]);
    wait_for(&hosts[0], "app", "a rollback after the re-key", |c| {
        has_value(c, "API_KEY", "fleet-bad")
    });
}
