//! Versions, rollback, digests and drift checks through the real binaries:
//! what an operator reaches for when a rotation goes wrong. No assertion
//! message quotes a value.

use crate::{assert_value, stderr, stdout};
use flux_e2e::{TestDaemon, assert_no_secret, eventually, have_tool};
use flux_protocol::message::EventKind;
use flux_vault::keys::ProjectKey;
use flux_vault::vault;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

const GOOD: &str = "sk-good-value-one-do-not-leak";
const BAD: &str = "sk-bad-value-two-do-not-leak";
const THIRD: &str = "sk-third-value-do-not-leak";

fn key_of(d: &TestDaemon, project: &str) -> ProjectKey {
    ProjectKey::parse(&std::fs::read_to_string(d.key_path(project)).unwrap()).unwrap()
}

fn history_json(d: &TestDaemon, name: &str) -> Vec<serde_json::Value> {
    let out = d.ctl_ok(&["secrets", "history", name, "--json", "-p", "app"]);
    serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn versions(h: &[serde_json::Value]) -> Vec<u64> {
    h.iter().map(|v| v["version"].as_u64().unwrap()).collect()
}

/// The decrypted vault document, as `fluxctl vault open` prints it.
fn vault_doc(d: &TestDaemon, project: &str) -> serde_json::Value {
    let key = d.key_path(project);
    let vault = d.vault_path(project);
    let out = d.ctl_ok(&[
        "vault",
        "open",
        "-i",
        key.to_str().unwrap(),
        vault.to_str().unwrap(),
    ]);
    serde_json::from_str(&out).unwrap()
}

#[test]
fn a_rollback_is_live_at_once_on_an_already_open_connection() {
    let d = TestDaemon::start();
    d.create_project("app");
    d.ctl_ok(&["secrets", "set", "API_KEY", GOOD, "-p", "app"]);
    // A function's long-lived connections: one reading, one subscribed.
    let mut function = d.client("app");
    assert_value(&mut function, "API_KEY", GOOD);
    let mut events = d.client("app");
    events.subscribe().unwrap();

    // The bad rotation.
    d.ctl_ok(&["secrets", "set", "API_KEY", BAD, "-p", "app"]);
    assert_value(&mut function, "API_KEY", BAD);
    let _ = events.next_event(Duration::from_secs(10)).unwrap().unwrap();

    // Roll back to the previous version: a new version, live at once.
    let out = d.ctl_ok(&["secrets", "rollback", "API_KEY", "-p", "app"]);
    assert_eq!(
        out,
        "Secret rolled back: API_KEY in project app holds the value of version 1 again, as version 3\nLive immediately — no redeploy needed.\n"
    );
    assert_value(&mut function, "API_KEY", GOOD);
    let event = events.next_event(Duration::from_secs(10)).unwrap().unwrap();
    assert_eq!(event.kind, EventKind::Set);
    assert_eq!(event.names, ["API_KEY"]);

    let h = history_json(&d, "API_KEY");
    assert_eq!(versions(&h), [3, 2, 1]);
    assert_eq!(h[0]["current"], true);
    assert_eq!(
        h[0]["digest"], h[2]["digest"],
        "version 3 holds version 1's value"
    );
    assert_ne!(h[0]["digest"], h[1]["digest"]);
    let uid = nix::unistd::geteuid().as_raw();
    assert_eq!(h[0]["uid"], uid);
    assert!(
        h[0]["exe"].as_str().unwrap().ends_with("/fluxctl"),
        "who set it: {}",
        h[0]["exe"]
    );

    // --to N, and the refusals.
    let out = d.ctl_ok(&["secrets", "rollback", "API_KEY", "--to", "2", "-p", "app"]);
    assert!(out.contains("version 2 again, as version 4"), "{out}");
    assert_value(&mut function, "API_KEY", BAD);
    for (args, code, says) in [
        (&["--to", "4"][..], 1, "already the current one"),
        (&["--to", "2"], 1, "same value as the current version 4"),
        (&["--to", "9"], 1, "version 9 is not kept"),
        (&["--to", "0"], 2, "start at 1"),
    ] {
        let mut all = vec!["secrets", "rollback", "API_KEY", "-p", "app"];
        all.extend_from_slice(args);
        let out = d.run_ctl(&all);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
    let out = d.run_ctl(&["secrets", "rollback", "NOPE", "-p", "app"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));

    // The rollbacks are audited (one line each, with who and to which
    // version), and no value reached the audit log or fluxd's log.
    let rollbacks = || -> Vec<serde_json::Value> {
        d.ctl_ok(&["audit", "--json", "--project", "app"])
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|e| e["op"] == "rollback" && e["result"] == "ok")
            .collect()
    };
    eventually("two rollbacks in the audit log", || rollbacks().len() == 2);
    let rollbacks = rollbacks();
    assert_eq!(rollbacks[0]["name"], "API_KEY");
    assert_eq!(rollbacks[0]["uid"], uid);
    let detail = |e: &serde_json::Value| e["detail"].as_str().unwrap_or("").to_owned();
    assert_eq!(detail(&rollbacks[0]), "to the previous version");
    assert_eq!(detail(&rollbacks[1]), "to version 2");
    let log = std::fs::read(d.layout().audit_log()).unwrap();
    for v in [GOOD, BAD] {
        assert_no_secret(&log, v, "the audit log");
        assert_no_secret(d.log().as_bytes(), v, "fluxd's log");
    }
}

#[test]
fn history_survives_a_restart_and_never_shows_a_value() {
    let mut d = TestDaemon::start();
    d.create_project("app");
    for v in [GOOD, BAD, THIRD] {
        d.ctl_ok(&["secrets", "set", "API_KEY", v, "-p", "app"]);
    }
    let before = history_json(&d, "API_KEY");
    d.stop();
    d.restart();
    let after = history_json(&d, "API_KEY");
    assert_eq!(versions(&after), [3, 2, 1]);
    assert_eq!(before, after, "the same versions, times, who and digests");
    let key = key_of(&d, "app");
    let digests: Vec<&str> = after
        .iter()
        .map(|v| v["digest"].as_str().unwrap())
        .collect();
    assert_eq!(
        digests,
        [key.digest(THIRD), key.digest(BAD), key.digest(GOOD)]
    );

    // The table: version, when, who, digest; never a value.
    let out = d.run_ctl(&["secrets", "history", "API_KEY", "-p", "app"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("VERSION  SET"), "{text}");
    assert!(
        lines[1].starts_with("3 ") && lines[1].ends_with("current"),
        "{text}"
    );
    assert!(lines[1].contains(&key.digest(THIRD)), "{text}");
    assert!(lines[3].starts_with("1 "), "{text}");
    for v in [GOOD, BAD, THIRD] {
        assert_no_secret(&out.stdout, v, "secrets history");
        assert_no_secret(&out.stderr, v, "secrets history");
    }
    // After the restart a rollback still finds the earlier values.
    d.ctl_ok(&["secrets", "rollback", "API_KEY", "--to", "1", "-p", "app"]);
    assert_value(&mut d.client("app"), "API_KEY", GOOD);
    let out = d.run_ctl(&["secrets", "history", "NOPE", "-p", "app"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
}

#[test]
fn earlier_values_are_sealed_in_the_vault_and_age_opens_them() {
    let d = TestDaemon::start();
    d.create_project("app");
    for v in [GOOD, BAD] {
        d.ctl_ok(&["secrets", "set", "API_KEY", v, "-p", "app"]);
    }
    // Only ciphertext on disk.
    let file = std::fs::read(d.vault_path("app")).unwrap();
    for v in [GOOD, BAD] {
        assert_no_secret(&file, v, "the vault file");
    }
    // fluxctl vault open shows the new fields.
    let doc = vault_doc(&d, "app");
    assert_eq!(doc["version"], 2);
    let entry = &doc["secrets"]["API_KEY"];
    assert_eq!(entry["version"], 2);
    assert_eq!(entry["set_by"]["uid"], nix::unistd::geteuid().as_raw());
    assert_eq!(entry["history"][0]["version"], 1);
    assert!(entry["history"][0]["value"] == GOOD, "the earlier value");
    // The stock age tool still opens the vault, history included.
    if have_tool(
        "age",
        "earlier_values_are_sealed_in_the_vault_and_age_opens_them",
    ) {
        let out = std::process::Command::new("age")
            .args(["-d", "-i"])
            .arg(d.key_path("app"))
            .arg(d.vault_path("app"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(doc["secrets"]["API_KEY"]["history"][0]["value"] == GOOD);
    }
}

#[test]
fn delete_takes_the_history_and_keep_versions_bounds_it() {
    let d = TestDaemon::start_with_config("[vaults]\nkeep_versions = 1\n");
    d.create_project("app");
    for v in [GOOD, BAD, THIRD] {
        d.ctl_ok(&["secrets", "set", "API_KEY", v, "-p", "app"]);
    }
    assert_eq!(versions(&history_json(&d, "API_KEY")), [3, 2]);
    let doc = vault_doc(&d, "app");
    assert_no_secret(
        doc.to_string().as_bytes(),
        GOOD,
        "a version past keep_versions",
    );

    // The same value again is no new version.
    d.ctl_ok(&["secrets", "set", "API_KEY", THIRD, "-p", "app"]);
    assert_eq!(versions(&history_json(&d, "API_KEY")), [3, 2]);

    let out = d.ctl_ok(&["secrets", "delete", "API_KEY", "-p", "app"]);
    assert!(out.contains("earlier versions were deleted"), "{out}");
    let doc = vault_doc(&d, "app");
    for v in [BAD, THIRD] {
        assert_no_secret(doc.to_string().as_bytes(), v, "the vault after a delete");
    }
    d.ctl_ok(&["secrets", "set", "API_KEY", GOOD, "-p", "app"]);
    let h = history_json(&d, "API_KEY");
    assert_eq!(versions(&h), [1], "a name set again starts over");
    let out = d.run_ctl(&["secrets", "rollback", "API_KEY", "-p", "app"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no earlier version"),
        "{}",
        stderr(&out)
    );

    // Deleting the project shreds the key, and with it every version.
    d.ctl_ok(&["projects", "delete", "app", "--yes"]);
    assert!(!d.key_path("app").exists());
    assert!(!d.vault_path("app").exists());

    // keep_versions = 0 keeps no earlier value.
    let d = TestDaemon::start_with_config("[vaults]\nkeep_versions = 0\n");
    d.create_project("app");
    for v in [GOOD, BAD] {
        d.ctl_ok(&["secrets", "set", "API_KEY", v, "-p", "app"]);
    }
    assert_eq!(versions(&history_json(&d, "API_KEY")), [2]);
    assert_no_secret(
        vault_doc(&d, "app").to_string().as_bytes(),
        GOOD,
        "keep_versions = 0",
    );
    let out = d.run_ctl(&["secrets", "history", "API_KEY", "-p", "app"]);
    assert!(
        stdout(&out).contains("No earlier version"),
        "{}",
        stdout(&out)
    );

    // An impossible setting is a config error.
    let out = TestDaemon::unstarted(&[]).check_config("[vaults]\nkeep_versions = 1000\n");
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains("keep_versions"), "{}", stderr(&out));
}

#[test]
fn digests_match_for_equal_values_and_differ_across_projects() {
    let d = TestDaemon::start();
    d.create_project("app");
    d.create_project("other");
    d.ctl_ok(&["secrets", "set", "PRIMARY", GOOD, "-p", "app"]);
    d.ctl_ok(&["secrets", "set", "REPLICA", GOOD, "-p", "app"]);
    d.ctl_ok(&["secrets", "set", "UNRELATED", BAD, "-p", "app"]);
    d.ctl_ok(&["secrets", "set", "PRIMARY", GOOD, "-p", "other"]);
    let digests = |project: &str| -> std::collections::BTreeMap<String, String> {
        let out = d.ctl_ok(&["secrets", "list", "--json", "-p", project]);
        for v in [GOOD, BAD] {
            assert_no_secret(out.as_bytes(), v, "secrets list --json");
        }
        serde_json::from_str::<serde_json::Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let digest = s["digest"].as_str().unwrap().to_owned();
                assert_eq!(digest.len(), 12);
                assert!(digest.bytes().all(|b| b.is_ascii_hexdigit()));
                (s["name"].as_str().unwrap().to_owned(), digest)
            })
            .collect()
    };
    let app = digests("app");
    let other = digests("other");
    assert_eq!(
        app["PRIMARY"], app["REPLICA"],
        "equal values, equal digests"
    );
    assert_ne!(app["PRIMARY"], app["UNRELATED"]);
    assert_ne!(
        app["PRIMARY"], other["PRIMARY"],
        "another project, another key"
    );
    assert_eq!(app["PRIMARY"], key_of(&d, "app").digest(GOOD));

    // The table has the digest column; a rotation changes the digest.
    let out = d.ctl_ok(&["secrets", "list", "-p", "app"]);
    assert!(
        out.starts_with(&format!("PRIMARY    {}  set ", app["PRIMARY"])),
        "{out}"
    );
    d.ctl_ok(&["secrets", "set", "REPLICA", THIRD, "-p", "app"]);
    assert_ne!(digests("app")["REPLICA"], app["REPLICA"]);
}

#[test]
fn diff_exits_0_when_equal_1_when_not_and_shows_no_value() {
    let d = TestDaemon::start();
    d.create_project("app");
    d.ctl_ok(&["secrets", "set", "DB_URL", GOOD, "-p", "app"]);
    d.ctl_ok(&["secrets", "set", "API_KEY", BAD, "-p", "app"]);
    let env = d.dir().join("prod.env");
    let path = env.to_str().unwrap();

    // Equal: exit 0.
    std::fs::write(&env, format!("DB_URL={GOOD}\nAPI_KEY=\"{BAD}\"\n")).unwrap();
    let out = d.run_ctl(&["secrets", "diff", path, "-p", "app"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("{path} matches project app: 2 secrets, same values\n")
    );

    // Drift: a changed value, a name only in the file, one only in the
    // project. Exit 1.
    std::fs::write(&env, format!("DB_URL={THIRD}\nNEW_NAME={GOOD}\n")).unwrap();
    let mut outputs = Vec::new();
    let out = d.run_ctl(&["secrets", "diff", path, "-p", "app"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "-  API_KEY   only in the project\n~  DB_URL    changed\n+  NEW_NAME  only in the file\n{path} differs from project app: 1 changed, 1 only in the file, 1 only in the project, 0 the same\n"
        )
    );
    outputs.push(out);
    let out = d.run_ctl(&["secrets", "diff", path, "--json", "-p", "app"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["equal"], false);
    assert_eq!(json["names"][1]["name"], "DB_URL");
    assert_eq!(json["names"][1]["state"], "changed");
    assert_eq!(json["names"][2]["state"], "only_in_file");
    outputs.push(out);

    // From stdin.
    let mut child = d
        .ctl()
        .args(["secrets", "diff", "-", "-p", "app"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    write!(
        child.stdin.take().unwrap(),
        "DB_URL={GOOD}\nAPI_KEY={BAD}\n"
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    outputs.push(out);

    // Could not compare: never 0 or 1.
    let out = d.run_ctl(&["secrets", "diff", path, "-p", "nope"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let out = d.run_ctl(&["secrets", "diff", "/nonexistent.env", "-p", "app"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    std::fs::write(&env, format!("BAD-NAME={GOOD}\nDB_URL={GOOD}\n")).unwrap();
    let out = d.run_ctl(&["secrets", "diff", path, "-p", "app"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nothing was compared"),
        "{}",
        stderr(&out)
    );
    outputs.push(out);
    let out = d.run_ctl(&["secrets", "diff", path, "--skip-invalid", "-p", "app"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).contains("-  API_KEY"), "{}", stdout(&out));
    outputs.push(out);

    // import --dry-run uses the same comparison.
    std::fs::write(
        &env,
        format!("DB_URL={GOOD}\nAPI_KEY={THIRD}\nNEW_NAME=x\n"),
    )
    .unwrap();
    d.ctl_ok(&["secrets", "set", "ONLY_HERE", "y", "-p", "app"]);
    let out = d.run_ctl(&["secrets", "import", path, "--dry-run", "-p", "app"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("would create: NEW_NAME\n"), "{text}");
    assert!(text.contains("would update: API_KEY\n"), "{text}");
    assert!(
        text.contains("unchanged (same value, no new version): DB_URL\n"),
        "{text}"
    );
    assert!(
        text.contains("kept: 1 secret of the project not in the file"),
        "{text}"
    );
    assert!(
        text.ends_with("1 created, 1 updated, 1 unchanged\n"),
        "{text}"
    );
    outputs.push(out);

    for out in &outputs {
        for v in [GOOD, BAD, THIRD] {
            assert_no_secret(&out.stdout, v, "fluxctl's output");
            assert_no_secret(&out.stderr, v, "fluxctl's errors");
        }
    }
    // Audited as reads, with the names compared and no value.
    eventually("the diffs in the audit log", || {
        let audit = d.ctl_ok(&["audit", "--json", "--project", "app"]);
        audit.contains("\"op\":\"diff\"") && audit.contains("names: DB_URL, NEW_NAME")
    });
    let log = std::fs::read(d.layout().audit_log()).unwrap();
    for v in [GOOD, BAD, THIRD] {
        assert_no_secret(&log, v, "the audit log");
        assert_no_secret(d.log().as_bytes(), v, "fluxd's log");
    }
}

/// A version 1 document as the current release seals it: no revision, no
/// versions; the MAC over format, version, project, secrets.
fn version_1_vault(key: &ProjectKey, project: &str, pairs: &[(&str, &str)]) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    // Names sorted, each entry as value then set_at (the canonical form).
    let mut pairs = pairs.to_vec();
    pairs.sort();
    let entries: Vec<String> = pairs
        .iter()
        .map(|(n, v)| {
            format!(
                r#"{}:{{"value":{},"set_at":"2026-01-02T03:04:05.678Z"}}"#,
                serde_json::to_string(n).unwrap(),
                serde_json::to_string(v).unwrap()
            )
        })
        .collect();
    let canonical = format!(
        r#"{{"format":"flux-secrets-vault","version":1,"project":"{project}","secrets":{{{}}}}}"#,
        entries.join(",")
    );
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key.seal_key()).unwrap();
    mac.update(canonical.as_bytes());
    let tag: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let doc = format!(
        "{},\"seal\":\"hmac-sha256:{tag}\"}}\n",
        &canonical[..canonical.len() - 1]
    );
    vault::encrypt(doc.as_bytes(), key).unwrap()
}

#[test]
fn a_version_1_vault_opens_and_is_upgraded_on_the_next_write() {
    // A state folder as the current release leaves it: a key, a version 1
    // vault, no revisions folder.
    let mut d = TestDaemon::unstarted(&[]);
    let state = d.layout();
    for dir in [
        state.root().to_path_buf(),
        state.keys_dir(),
        state.vaults_dir(),
    ] {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let key = ProjectKey::generate();
    let write = |path: std::path::PathBuf, bytes: &[u8]| {
        std::fs::write(&path, bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    };
    write(
        d.key_path("app"),
        key.to_file_contents("2026-01-01T00:00:00Z").as_bytes(),
    );
    write(
        d.vault_path("app"),
        &version_1_vault(&key, "app", &[("API_KEY", GOOD), ("OTHER", BAD)]),
    );
    d.restart();

    let mut c = d.client("app");
    assert_value(&mut c, "API_KEY", GOOD);
    assert_value(&mut c, "OTHER", BAD);
    let h = history_json(&d, "API_KEY");
    assert_eq!(versions(&h), [1]);
    assert_eq!(
        h[0]["uid"],
        serde_json::Value::Null,
        "who set it is unknown"
    );
    assert_eq!(h[0]["digest"], key.digest(GOOD));
    assert_eq!(vault_doc(&d, "app")["version"], 1, "nothing written yet");

    // The next write upgrades it: version 2, a revision, and the value it
    // replaced kept as version 1.
    d.ctl_ok(&["secrets", "set", "API_KEY", THIRD, "-p", "app"]);
    let doc = vault_doc(&d, "app");
    assert_eq!(doc["version"], 2);
    assert!(doc["revision"].as_u64().unwrap() >= 1);
    assert_eq!(doc["secrets"]["API_KEY"]["version"], 2);
    assert!(doc["secrets"]["API_KEY"]["history"][0]["value"] == GOOD);
    assert_eq!(
        doc["secrets"]["API_KEY"]["history"][0]["set_at"],
        "2026-01-02T03:04:05.678Z"
    );
    assert!(
        doc["secrets"]["OTHER"]["value"] == BAD,
        "untouched names kept"
    );
    d.ctl_ok(&["secrets", "rollback", "API_KEY", "-p", "app"]);
    assert_value(&mut c, "API_KEY", GOOD);
    // And it still opens after a restart.
    d.stop();
    d.restart();
    assert_value(&mut d.client("app"), "API_KEY", GOOD);
    assert_eq!(versions(&history_json(&d, "API_KEY")), [3, 2, 1]);
}
