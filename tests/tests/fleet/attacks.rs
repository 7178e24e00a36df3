//! The attacker who holds etcd's client port and no host key, and the
//! removed host: every attack leaves every host serving the last good
//! value, says why in `fluxctl status`, loses nothing, and the rightful
//! operator's next `secrets set` works without a restart. docs/FLEET.md's
//! threat model names these tests.

use crate::cluster::{Etcd, EtcdHttp, have_etcd};
use crate::support::*;
use flux_protocol::SecretValue;
use flux_vault::keys::ProjectKey;
use flux_vault::layout::fleet_copy;
use flux_vault::membership::HostsDoc;
use flux_vault::vault::{Entry, Secrets};
use fluxd::fleet::envelope::{Kind, Signing, parse as parse_envelope, seal};
use fluxd::fleet::identity::{HostIdentity, parse_recipient, wrap_for};
use fluxd::fleet::layout::FleetKey;
use std::time::Duration;

/// The newest host list the attacker reads from etcd (no signature
/// checked: it only needs the public recipients), and its envelope.
pub fn listed_hosts(raw: &EtcdHttp) -> (HostsDoc, Vec<u8>) {
    let (key, value) = raw
        .list("/flux/v3/fleet/hosts/")
        .into_iter()
        .last()
        .expect("a host list in etcd");
    let version: u64 = key.rsplit('/').next().unwrap().parse().expect("a version");
    let env = parse_envelope(&value, Kind::Hosts, &FleetKey::Hosts(version)).expect("an envelope");
    (
        serde_json::from_slice(&env.payload).expect("a host list"),
        value,
    )
}

/// `payload` signed by `by` for `fleet` as `kind` under `key`.
pub fn signed(
    fleet: &str,
    kind: Kind,
    key: &FleetKey,
    version: u64,
    payload: &[u8],
    by: &HostIdentity,
) -> Vec<u8> {
    let s = Signing {
        fleet,
        kind,
        version,
        epoch: 1,
    };
    seal(s, key, payload, by)
}

/// An envelope signed by `by` that claims `claimed` signed it.
pub fn forged(
    fleet: &str,
    kind: Kind,
    key: &FleetKey,
    version: u64,
    payload: &[u8],
    by: &HostIdentity,
    claimed: &str,
) -> Vec<u8> {
    let mut env: serde_json::Value =
        serde_json::from_slice(&signed(fleet, kind, key, version, payload, by)).expect("JSON");
    env["signer"] = claimed.into();
    serde_json::to_vec(&env).expect("JSON")
}

pub fn vault_with(project: &str, name: &str, value: &str, key: &ProjectKey) -> Vec<u8> {
    let mut secrets = Secrets::new();
    secrets.insert(
        name.to_owned(),
        Entry {
            value: SecretValue::from(value),
            set_at_ms: 1,
        },
    );
    flux_vault::vault::seal(project, &secrets, 1_000, key).expect("seal")
}

/// The payload of the vault envelope etcd holds for `project`.
pub fn vault_in_etcd(raw: &EtcdHttp, project: &str) -> Vec<u8> {
    let key = FleetKey::vault(project);
    let env = raw.get(&key.to_string()).expect("a vault in etcd");
    parse_envelope(&env, Kind::Vault, &key)
        .expect("an envelope")
        .payload
}

#[test]
fn forged_keys_and_vaults_are_refused_and_the_next_set_writes_over_them() {
    if !have_etcd("forged_keys_and_vaults_are_refused_and_the_next_set_writes_over_them") {
        return;
    }
    let etcd = Etcd::start(1);
    let hosts = fleet(&etcd, 2, "app");
    set(&hosts[0], "app", "API_KEY", "v-good");
    wait_for(&hosts[1], "app", "API_KEY", |c| {
        has_value(c, "API_KEY", "v-good")
    });

    // The attacker's own project key, wrapped for every listed host, and a
    // vault sealed with it: unsigned, signed by the attacker's own key,
    // and signed by it while claiming to be host A.
    let raw = etcd.raw();
    let (doc, _) = listed_hosts(&raw);
    let listed = doc.hosts;
    let fleet = fleet_id(&hosts[0]);
    let attacker = HostIdentity::generate();
    let evil_key = ProjectKey::generate();
    let plain = evil_key.to_file_contents("2026-01-01T00:00:00Z");
    let a = recipient(&hosts[0]);
    let b = recipient(&hosts[1]);
    for h in &listed {
        let wrapped = wrap_for(plain.as_bytes(), &parse_recipient(&h.recipient).unwrap()).unwrap();
        let key = FleetKey::key(&h.recipient, "app");
        let value = if h.recipient == b {
            wrapped
        } else {
            forged(&fleet, Kind::Key, &key, 99, &wrapped, &attacker, &a)
        };
        raw.put(&key.to_string(), &value);
    }
    let evil_vault = vault_with("app", "API_KEY", "v-evil", &evil_key);
    raw.put(
        &FleetKey::vault("app").to_string(),
        &signed(
            &fleet,
            Kind::Vault,
            &FleetKey::vault("app"),
            99,
            &evil_vault,
            &attacker,
        ),
    );

    for h in &hosts {
        let why = wait_status(h, "app", "refused");
        assert!(why.contains("serving this host's last good copy"), "{why}");
        serves(h, "app", "API_KEY", "v-good", "after the forgery");
    }
    // The operator's next set writes over the forged vault, and what it
    // writes is sealed with the fleet's key, not the attacker's.
    set(&hosts[1], "app", "API_KEY", "v-new");
    wait_for(&hosts[0], "app", "the set after the forgery", |c| {
        has_value(c, "API_KEY", "v-new")
    });
    serves(&hosts[1], "app", "API_KEY", "v-new", "after its own set");
    assert!(
        flux_vault::vault::open(&vault_in_etcd(&raw, "app"), "app", &evil_key).is_err(),
        "the attacker's key opens the vault written after the forgery"
    );
    // Nothing was lost: the hosts restart into the same values.
    for mut h in hosts {
        h.stop();
        h.restart();
        serves(&h, "app", "API_KEY", "v-new", "after a restart");
    }
}

#[test]
fn a_replayed_older_vault_is_refused_even_after_a_restart() {
    if !have_etcd("a_replayed_older_vault_is_refused_even_after_a_restart") {
        return;
    }
    let etcd = Etcd::start(1);
    let mut hosts = fleet(&etcd, 2, "app");
    let raw = etcd.raw();
    set(&hosts[0], "app", "TOKEN", "t-old");
    let old = raw
        .get(&FleetKey::vault("app").to_string())
        .expect("the vault");
    set(&hosts[0], "app", "TOKEN", "t-new");
    wait_for(&hosts[1], "app", "TOKEN", |c| {
        has_value(c, "TOKEN", "t-new")
    });

    raw.put(&FleetKey::vault("app").to_string(), &old);
    for h in &hosts {
        wait_status(h, "app", "rollback");
        serves(h, "app", "TOKEN", "t-new", "after the replay");
    }
    // A restart reads etcd again, with the old vault in it: still refused.
    hosts[1].stop();
    hosts[1].restart();
    serves(&hosts[1], "app", "TOKEN", "t-new", "after a restart");
    wait_status(&hosts[1], "app", "rollback");
    // The operator's next set works from either host.
    set(&hosts[1], "app", "TOKEN", "t-next");
    wait_for(&hosts[0], "app", "the set after the replay", |c| {
        has_value(c, "TOKEN", "t-next")
    });
}

#[test]
fn a_rogue_host_list_is_refused_and_never_gets_a_key() {
    if !have_etcd("a_rogue_host_list_is_refused_and_never_gets_a_key") {
        return;
    }
    let etcd = Etcd::start(1);
    let hosts = fleet(&etcd, 2, "app");
    let raw = etcd.raw();
    let (doc, held) = listed_hosts(&raw);
    let attacker = HostIdentity::generate();
    let mut listed = doc.hosts.clone();
    listed.push(attacker.record());
    let next = doc.next(&held, listed, vec![]).unwrap();
    let key = FleetKey::Hosts(next.version);
    // Signed by a stranger claiming to be the operator.
    raw.put(
        &key.to_string(),
        &forged(
            &fleet_id(&hosts[0]),
            Kind::Hosts,
            &key,
            next.version,
            &serde_json::to_vec(&next).unwrap(),
            &attacker,
            "operator",
        ),
    );
    // A junk key under the attacker's name for an existing project.
    let junk = FleetKey::key(&attacker.recipient(), "app").to_string();
    raw.put(&junk, b"junk");
    for h in &hosts {
        wait_problem(h, "not signed by the fleet's operator key");
        let list = h.ctl_ok(&["hosts", "list"]);
        assert!(!list.contains(&attacker.recipient()), "{list}");
    }
    // Writes wait while a newer host list is refused: an operator looks,
    // and deletes it (or publishes the next version over it).
    let out = hosts[0].run_ctl(&["projects", "create", "later"]);
    assert_eq!(out.status.code(), Some(6), "a write under a refused list");
    assert!(String::from_utf8_lossy(&out.stderr).contains("writes wait"));
    raw.delete(&key.to_string());
    flux_e2e::eventually("writes resume once the forged list is gone", || {
        hosts[0]
            .run_ctl(&["projects", "create", "later"])
            .status
            .success()
    });
    // A project created now is wrapped for the real hosts only.
    let wrapped: Vec<String> = raw
        .list("/flux/v3/keys/")
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.ends_with("/later"))
        .collect();
    assert_eq!(wrapped.len(), 2, "{wrapped:?}");
    assert!(!wrapped.iter().any(|k| k.contains(&attacker.recipient())));
    // A real host can still join (its list is written over the forged
    // one), and removing it re-keys for the real hosts only.
    let c = joiner(&etcd, &fleet_id(&hosts[0]));
    join(&hosts[0], &c);
    wait_for(&c, "app", "the project on the new host", |c| {
        c.list().is_ok()
    });
    remove_host(&hosts[1], &recipient(&c));
    assert_eq!(
        raw.get(&junk).as_deref(),
        Some(&b"junk"[..]),
        "a re-key wrapped a key for the attacker"
    );
    set(&hosts[1], "app", "K", "v-after");
    wait_for(&hosts[0], "app", "a set after the rogue list", |c| {
        has_value(c, "K", "v-after")
    });
}

#[test]
fn a_range_delete_of_everything_loses_nothing() {
    if !have_etcd("a_range_delete_of_everything_loses_nothing") {
        return;
    }
    let etcd = Etcd::start(1);
    let mut hosts = fleet(&etcd, 2, "app");
    set(&hosts[0], "app", "DB", "d-1");
    wait_for(&hosts[1], "app", "DB", |c| has_value(c, "DB", "d-1"));
    let raw = etcd.raw();

    // Only host B's wrapped key: B keeps serving and writes it back.
    let b_key = FleetKey::key(&recipient(&hosts[1]), "app").to_string();
    raw.delete(&b_key);
    flux_e2e::eventually("B's key written back to etcd", || raw.get(&b_key).is_some());
    serves(&hosts[1], "app", "DB", "d-1", "after its key was deleted");

    // Everything.
    assert!(raw.delete_prefix("/flux/") > 0);
    for h in &hosts {
        serves(h, "app", "DB", "d-1", "after the range delete");
    }
    // The hosts write back what they hold: the fleet, the vault, the keys.
    flux_e2e::eventually("the fleet written back to etcd", || {
        raw.get(&FleetKey::Id.to_string()).is_some()
            && raw.get(&FleetKey::vault("app").to_string()).is_some()
            && raw.get(&b_key).is_some()
    });
    set(&hosts[1], "app", "DB", "d-2");
    wait_for(&hosts[0], "app", "the set after the range delete", |c| {
        has_value(c, "DB", "d-2")
    });
    // A host restarted afterwards finds its fleet and its project.
    hosts[0].stop();
    hosts[0].restart();
    serves(&hosts[0], "app", "DB", "d-2", "after a restart");
    assert_eq!(fleet_info(&hosts[0])["member"], true);
    set(&hosts[0], "app", "DB", "d-3");
    wait_for(&hosts[1], "app", "a set from the restarted host", |c| {
        has_value(c, "DB", "d-3")
    });
}

#[test]
fn a_removed_host_cannot_sign_or_replay_its_way_back() {
    if !have_etcd("a_removed_host_cannot_sign_or_replay_its_way_back") {
        return;
    }
    let etcd = Etcd::start(1);
    let mut hosts = fleet(&etcd, 3, "app");
    set(&hosts[0], "app", "TOKEN", "t-1");
    wait_for(&hosts[2], "app", "TOKEN", |c| has_value(c, "TOKEN", "t-1"));
    let raw = etcd.raw();
    // What etcd holds before the removal, and what C keeps: its host key
    // and the project key it unwrapped.
    let before = raw.list("/flux/v3/");
    let c = recipient(&hosts[2]);
    let c_identity =
        HostIdentity::load_or_create(&hosts[2].layout().host_key()).expect("C's host key");
    let c_key_env = raw
        .get(&FleetKey::key(&c, "app").to_string())
        .expect("C's wrapped key");
    let c_wrapped = parse_envelope(&c_key_env, Kind::Key, &FleetKey::key(&c, "app"))
        .unwrap()
        .payload;
    let old_key = ProjectKey::parse(
        std::str::from_utf8(&flux_vault::vault::decrypt(&c_wrapped, c_identity.age()).unwrap())
            .unwrap(),
    )
    .unwrap();
    hosts[2].stop();
    remove_host(&hosts[0], &c);
    set(&hosts[0], "app", "TOKEN", "t-2");
    wait_for(&hosts[1], "app", "TOKEN after the removal", |c| {
        has_value(c, "TOKEN", "t-2")
    });

    // Replay everything from before the removal...
    for (key, value) in &before {
        raw.put(key, value);
    }
    for h in &hosts[..2] {
        wait_status(h, "app", "refused");
        serves(h, "app", "TOKEN", "t-2", "after the replay");
    }
    // ...then a vault C signs itself, sealed with the key it still knows.
    let evil = vault_with("app", "TOKEN", "t-evil", &old_key);
    raw.put(
        &FleetKey::vault("app").to_string(),
        &signed(
            &fleet_id(&hosts[0]),
            Kind::Vault,
            &FleetKey::vault("app"),
            1_000_000,
            &evil,
            &c_identity,
        ),
    );
    for h in &hosts[..2] {
        wait_status(h, "app", "not a host of the fleet");
        serves(h, "app", "TOKEN", "t-2", "after the removed host's vault");
    }
    set(&hosts[1], "app", "TOKEN", "t-3");
    wait_for(&hosts[0], "app", "a set after the attack", |c| {
        has_value(c, "TOKEN", "t-3")
    });
    assert!(
        flux_vault::vault::open(&vault_in_etcd(&raw, "app"), "app", &old_key).is_err(),
        "the removed host's old key opens the current vault"
    );
    std::thread::sleep(Duration::from_millis(50));
    for h in &hosts[..2] {
        serves(h, "app", "TOKEN", "t-3", "at the end");
    }
}

#[test]
fn deleting_a_project_leaves_nothing_a_host_key_can_read_in_etcd_history() {
    if !have_etcd("deleting_a_project_leaves_nothing_a_host_key_can_read_in_etcd_history") {
        return;
    }
    let etcd = Etcd::start(1);
    let hosts = fleet(&etcd, 2, "app");
    for i in 0..3 {
        set(&hosts[0], "app", "SECRET", &format!("s-{i}"));
    }
    wait_for(&hosts[1], "app", "SECRET", |c| {
        has_value(c, "SECRET", "s-2")
    });
    let raw = etcd.raw();
    let before = raw.revision();
    assert!(
        raw.list_at("/flux/", before)
            .unwrap()
            .iter()
            .any(|(k, _)| k.ends_with("/app")),
        "the history holds the project before the delete"
    );
    let identities: Vec<HostIdentity> = hosts
        .iter()
        .map(|h| HostIdentity::load_or_create(&h.layout().host_key()).unwrap())
        .collect();

    let out = hosts[0].ctl_ok(&["projects", "delete", "app", "--yes"]);
    assert!(
        out.contains("its key, vault and socket are gone") && !out.contains("history still holds"),
        "the delete left something: {out}"
    );
    // Every revision up to the deletion is gone from etcd's history.
    for revision in 1..=before {
        let read = raw.list_at("/flux/", revision);
        assert!(
            read.as_ref().is_err_and(|e| e.contains("compacted")),
            "etcd still serves revision {revision} after the delete"
        );
    }
    // What is left opens with no host's key.
    for (key, value) in raw.list("/flux/") {
        for id in &identities {
            let payload = serde_json::from_slice::<serde_json::Value>(&value)
                .ok()
                .and_then(|v| v["payload"].as_str().map(str::to_owned))
                .and_then(|p| {
                    use base64::Engine;
                    base64::engine::general_purpose::STANDARD.decode(p).ok()
                })
                .unwrap_or_else(|| value.clone());
            assert!(
                flux_vault::vault::decrypt(&payload, id.age()).is_err(),
                "{key} opens with a host key after the delete"
            );
        }
    }
    // And no host keeps a copy.
    for h in &hosts {
        flux_e2e::eventually("the local copies removed", || {
            !h.layout()
                .fleet_dir()
                .join(fleet_copy::file(fleet_copy::VAULTS, "app"))
                .exists()
                && !h
                    .layout()
                    .fleet_dir()
                    .join(fleet_copy::file(fleet_copy::KEYS, "app"))
                    .exists()
        });
    }
}

#[test]
fn without_compaction_a_project_delete_says_what_etcd_still_holds() {
    if !have_etcd("without_compaction_a_project_delete_says_what_etcd_still_holds") {
        return;
    }
    let etcd = Etcd::start(1);
    let host = flux_e2e::TestDaemon::start_with_config(&format!(
        "[store]\nkind = \"etcd\"\nendpoints = [\"{}\"]\ncompact_on_delete = false\n",
        etcd.endpoints()
    ));
    let key = host.dir().join("operator.key");
    host.ctl_ok(&["fleet", "init", "--operator-key", key.to_str().unwrap()]);
    host.create_project("app");
    set(&host, "app", "SECRET", "s-kept");
    let raw = etcd.raw();
    let before = raw.revision();
    let out = host.ctl_ok(&["projects", "delete", "app", "--yes"]);
    assert!(
        out.contains("etcd's history still holds") && out.contains("etcdctl compact"),
        "the delete does not say what remains: {out}"
    );
    // It is true: the history still has the vault.
    assert!(
        raw.list_at("/flux/v3/fleet/vaults/app", before)
            .expect("history")
            .iter()
            .any(|(k, _)| k.ends_with("/app")),
        "the history was compacted after all"
    );
}
