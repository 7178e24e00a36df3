//! Moving a single host's projects into a fleet: `fluxctl fleet import`.

use crate::cluster::{Etcd, have_etcd};
use crate::support::*;
use flux_e2e::TestDaemon;

#[test]
fn a_single_host_state_folder_moves_into_a_fleet() {
    if !have_etcd("a_single_host_state_folder_moves_into_a_fleet") {
        return;
    }
    let etcd = Etcd::start(1);
    // A host that served from its own folder...
    let mut a = TestDaemon::start();
    a.create_project("app");
    set(&a, "app", "K1", "v-one");
    set(&a, "app", "K2", "v-two");
    a.create_project("quiet");
    // ...restarted in fleet mode, as the fleet's first host.
    a.stop();
    let endpoints = etcd.endpoints();
    a.set_args(&args(&endpoints, &[]));
    a.restart();
    found(&a);
    assert!(
        !a.project_socket("app").exists(),
        "fleet mode serves the folder's projects by itself"
    );

    let out = a.ctl_ok(&["fleet", "import", "--dry-run"]);
    assert!(
        out.contains("would import app: 2 secret(s), created in the fleet")
            && out.contains("would import quiet: 0 secret(s)"),
        "{out}"
    );
    assert!(!a.project_socket("app").exists(), "a dry run wrote");

    let out = a.ctl_ok(&["fleet", "import"]);
    assert!(out.contains("Imported app: 2 secret(s)"), "{out}");
    serves(&a, "app", "K1", "v-one", "after the import");
    assert!(a.project_socket("quiet").exists());
    // The values are the fleet's now: another host serves them.
    let b = joiner(&etcd, &fleet_id(&a));
    join(&a, &b);
    wait_for(&b, "app", "the imported values", |c| {
        has_value(c, "K1", "v-one") && has_value(c, "K2", "v-two")
    });
    // Importing again writes the folder's values over the fleet's.
    set(&b, "app", "K1", "v-changed");
    wait_for(&a, "app", "the change", |c| has_value(c, "K1", "v-changed"));
    let out = a.ctl_ok(&["fleet", "import"]);
    assert!(
        out.contains("app: 2 secret(s), into the fleet's existing project"),
        "{out}"
    );
    wait_for(&b, "app", "the second import", |c| {
        has_value(c, "K1", "v-one")
    });

    // A daemon that is not in a fleet says so.
    let local = TestDaemon::start();
    let out = local.run_ctl(&["fleet", "import"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a member of a fleet"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
