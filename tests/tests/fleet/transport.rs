//! fluxd's etcd client over TLS with client certificates, and with etcd
//! authentication: both against a real etcd configured so, with
//! certificates made by the test.

use crate::cluster::{Etcd, have_etcd};
use crate::support::*;
use flux_e2e::TestDaemon;

fn tls_config(
    endpoints: &str,
    tls: &crate::cluster::Tls,
    client_cert: bool,
    extra: &str,
) -> String {
    let mut toml = format!(
        "[store]\nkind = \"etcd\"\nendpoints = [\"{endpoints}\"]\nca_file = \"{}\"\n",
        tls.path("ca.pem")
    );
    if client_cert {
        toml.push_str(&format!(
            "cert_file = \"{}\"\nkey_file = \"{}\"\n",
            tls.path("client.pem"),
            tls.path("client-key.pem")
        ));
    }
    toml.push_str(extra);
    toml
}

#[test]
fn fleet_mode_over_tls_with_client_certificates() {
    if !have_etcd("fleet_mode_over_tls_with_client_certificates") {
        return;
    }
    let (etcd, tls) = Etcd::start_tls();
    let endpoints = etcd.endpoints();
    assert!(endpoints.starts_with("https://"));
    let a = TestDaemon::start_with_config(&tls_config(&endpoints, &tls, true, ""));
    found(&a);
    let id = fleet_id(&a);
    let b = TestDaemon::start_with_config(&tls_config(
        &endpoints,
        &tls,
        true,
        &format!("fleet_id = \"{id}\"\n"),
    ));
    join(&a, &b);
    a.create_project("app");
    set(&a, "app", "KEY", "k-tls");
    wait_for(&b, "app", "a set over TLS", |c| {
        has_value(c, "KEY", "k-tls")
    });

    // Without a client certificate etcd refuses the connection: the host
    // says so and serves nothing it could not verify.
    let c = TestDaemon::start_with_config(&tls_config(
        &endpoints,
        &tls,
        false,
        &format!("fleet_id = \"{id}\"\n"),
    ));
    let problems = wait_problem(&c, "etcd is unreachable");
    assert!(problems.contains(&endpoints), "{problems}");
    // Without the CA, the server's certificate is not trusted.
    let d = TestDaemon::start_with_config(&format!(
        "[store]\nkind = \"etcd\"\nendpoints = [\"{endpoints}\"]\ncert_file = \"{}\"\nkey_file = \"{}\"\nfleet_id = \"{id}\"\n",
        tls.path("client.pem"),
        tls.path("client-key.pem")
    ));
    let problems = wait_problem(&d, "etcd is unreachable");
    assert!(
        problems.to_lowercase().contains("certificate") || problems.contains("UnknownIssuer"),
        "{problems}"
    );
}

#[test]
fn fleet_mode_with_etcd_authentication() {
    if !have_etcd("fleet_mode_with_etcd_authentication") {
        return;
    }
    let etcd = Etcd::start_args(1, &["--auth-token", "simple", "--auth-token-ttl", "2"]);
    let dir = tempfile::tempdir().expect("temp dir");
    let password = etcd.raw().enable_auth(dir.path());
    let config = |extra: &str| {
        format!(
            "[store]\nkind = \"etcd\"\nendpoints = [\"{}\"]\nusername = \"flux\"\npassword_file = \"{}\"\n{extra}",
            etcd.endpoints(),
            password.display()
        )
    };
    let a = TestDaemon::start_with_config(&config(""));
    found(&a);
    let id = fleet_id(&a);
    let b = TestDaemon::start_with_config(&config(&format!("fleet_id = \"{id}\"\n")));
    join(&a, &b);
    a.create_project("app");
    set(&a, "app", "KEY", "k-auth");
    wait_for(&b, "app", "a set with etcd auth", |c| {
        has_value(c, "KEY", "k-auth")
    });
    // Anyone without a password reads nothing.
    assert!(
        etcd.raw().list_at("/flux/", 0).is_err(),
        "etcd served the fleet without authentication"
    );
    let flux = etcd.raw().login("flux", "flux-etcd-pw").expect("log in");
    assert!(!flux.list("/flux/").is_empty());
    // The token expires (ttl 2 s): fluxd gets a new one.
    std::thread::sleep(std::time::Duration::from_secs(4));
    set(&b, "app", "KEY", "k-renewed");
    wait_for(&a, "app", "a set after the token expired", |c| {
        has_value(c, "KEY", "k-renewed")
    });
    // A project delete compacts the history as the flux user too.
    let flux = etcd.raw().login("flux", "flux-etcd-pw").expect("log in");
    let before = flux.revision();
    let out = a.ctl_ok(&["projects", "delete", "app", "--yes"]);
    assert!(
        out.contains("its key, vault and socket are gone") && !out.contains("history still holds"),
        "the delete left something: {out}"
    );
    assert!(
        flux.list_at("/flux/", before)
            .is_err_and(|e| e.contains("compacted")),
        "etcd's history still holds the deleted project"
    );
    // A wrong password is etcd's reason, passed through.
    std::fs::write(dir.path().join("wrong"), "nope\n").unwrap();
    let c = TestDaemon::start_with_config(&format!(
        "[store]\nkind = \"etcd\"\nendpoints = [\"{}\"]\nusername = \"flux\"\npassword_file = \"{}\"\nfleet_id = \"{id}\"\n",
        etcd.endpoints(),
        dir.path().join("wrong").display()
    ));
    let problems = wait_problem(&c, "authentication failed");
    assert!(
        !problems.contains("nope"),
        "the problem quotes the password"
    );
}
