//! Live rotation: vaults changed from outside fluxd are picked up on open
//! connections, bad files never replace a good snapshot, readers never see
//! half a write, and subscribers are told.

use crate::{assert_value, key_of, last_error, secrets, stderr};
use flux_e2e::eventually;
use flux_e2e::{TestDaemon, have_tool};
use flux_protocol::message::EventKind;
use flux_vault::keys::ProjectKey;
use flux_vault::vault;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// The revision an outside writer gives its vault: above the vault on disk
/// (an older one is refused as a rollback), and above any this test wrote
/// before (the file on disk may be a broken one).
fn next_revision(d: &TestDaemon, project: &str) -> u64 {
    let on_disk = std::fs::read(d.vault_path(project))
        .ok()
        .and_then(|bytes| vault::open(&bytes, project, &key_of(d, project)).ok())
        .map_or(0, |opened| opened.revision);
    (on_disk + 1).max(flux_vault::time::now_ms())
}

/// A sealed vault file for `project` holding `pairs`, newer than the one
/// on disk.
fn sealed(d: &TestDaemon, project: &str, pairs: &[(&str, &str)]) -> Vec<u8> {
    let revision = next_revision(d, project);
    vault::seal(project, &secrets(pairs), revision, &key_of(d, project)).unwrap()
}

/// Writes `bytes` beside the vaults folder, then renames it over the vault.
fn replace_by_rename(d: &TestDaemon, project: &str, bytes: &[u8]) {
    let staging = d.state_dir().join(format!("{project}.staging"));
    std::fs::write(&staging, bytes).unwrap();
    std::fs::rename(&staging, d.vault_path(project)).unwrap();
}

fn value_is(client: &mut flux_protocol::blocking::Client, name: &str, want: &str) -> bool {
    client
        .get(name)
        .map(|v| v.expose() == want)
        .unwrap_or(false)
}

#[test]
fn outside_changes_reach_open_connections() {
    let d = TestDaemon::start();
    d.create_project("app");
    d.ctl_ok(&["secrets", "set", "TOKEN", "v0", "-p", "app"]);
    let mut reader = d.client("app");
    assert_value(&mut reader, "TOKEN", "v0");

    // Replaced by rename (mv, rsync, config managers).
    replace_by_rename(&d, "app", &sealed(&d, "app", &[("TOKEN", "v1")]));
    eventually("rename picked up", || value_is(&mut reader, "TOKEN", "v1"));

    // Rewritten in place.
    std::fs::write(d.vault_path("app"), sealed(&d, "app", &[("TOKEN", "v2")])).unwrap();
    eventually("in-place write picked up", || {
        value_is(&mut reader, "TOKEN", "v2")
    });

    // Copied over with cp (a restore from backup).
    let backup = d.dir().join("backup.age");
    std::fs::write(&backup, sealed(&d, "app", &[("TOKEN", "v3")])).unwrap();
    let status = Command::new("cp")
        .arg(&backup)
        .arg(d.vault_path("app"))
        .status()
        .unwrap();
    assert!(status.success());
    eventually("copy picked up", || value_is(&mut reader, "TOKEN", "v3"));

    // Kubernetes-style: app.age -> ..data/app.age, ..data -> ..v4, and the
    // swap renames a new ..data symlink over the old one. The file names
    // are spelled on purpose: this is another tool's tree of the layout.
    let vaults = d.layout().vaults_dir();
    let v4 = vaults.join("..v4");
    std::fs::create_dir(&v4).unwrap();
    std::fs::write(v4.join("app.age"), sealed(&d, "app", &[("TOKEN", "v4")])).unwrap();
    std::os::unix::fs::symlink("..v4", vaults.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/app.age", vaults.join("app.link")).unwrap();
    std::fs::rename(vaults.join("app.link"), d.vault_path("app")).unwrap();
    eventually("symlinked vault picked up", || {
        value_is(&mut reader, "TOKEN", "v4")
    });
    let v5 = vaults.join("..v5");
    std::fs::create_dir(&v5).unwrap();
    std::fs::write(v5.join("app.age"), sealed(&d, "app", &[("TOKEN", "v5")])).unwrap();
    std::os::unix::fs::symlink("..v5", vaults.join("..data_tmp")).unwrap();
    std::fs::rename(vaults.join("..data_tmp"), vaults.join("..data")).unwrap();
    eventually("..data swap picked up", || {
        value_is(&mut reader, "TOKEN", "v5")
    });

    // Listing keeps working through reloads.
    let out = d.ctl_ok(&["secrets", "list", "-p", "app"]);
    assert!(
        out.starts_with("TOKEN  ") && out.contains("  set "),
        "{out}"
    );
    assert_eq!(last_error(&d, "app"), None);
}

#[test]
fn only_sealed_vaults_are_accepted() {
    let d = TestDaemon::start();
    d.create_project("app");
    d.ctl_ok(&["secrets", "set", "WEBHOOK_KEY", "good", "-p", "app"]);
    let mut reader = d.client("app");
    let key_path = d.key_path("app");

    // The current document, as an operator sees it.
    let out = d.run_ctl(&[
        "vault",
        "open",
        "--identity",
        key_path.to_str().unwrap(),
        d.vault_path("app").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stderr.is_empty(), "a good vault opens without warnings");
    let mut doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["secrets"]["WEBHOOK_KEY"]["value"] = "planted".into();
    doc.as_object_mut().unwrap().remove("seal");
    let doc = serde_json::to_vec_pretty(&doc).unwrap();

    // Encrypted to the right recipient but not sealed: refused.
    let unsealed = if have_tool("age", "only_sealed_vaults_are_accepted (age -r)") {
        let recipient = key_of(&d, "app").recipient().to_string();
        let mut child = Command::new("age")
            .args(["-r", &recipient])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&doc).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        out.stdout
    } else {
        vault::encrypt(&doc, &key_of(&d, "app")).unwrap()
    };
    replace_by_rename(&d, "app", &unsealed);
    eventually("unsealed vault reported", || {
        last_error(&d, "app").is_some_and(|e| e.contains("not sealed by the project key"))
    });
    assert_value(&mut reader, "WEBHOOK_KEY", "good");

    // The same document sealed with fluxctl vault seal: accepted.
    let sealed_path = d.dir().join("sealed.age");
    let mut child = d
        .ctl()
        .args([
            "vault",
            "seal",
            "-i",
            key_path.to_str().unwrap(),
            "-o",
            sealed_path.to_str().unwrap(),
        ])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&doc).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Vault sealed for project app"),
        "{}",
        stderr(&out)
    );
    std::fs::rename(&sealed_path, d.vault_path("app")).unwrap();
    eventually("sealed vault accepted", || {
        value_is(&mut reader, "WEBHOOK_KEY", "planted")
    });
    eventually("error cleared", || last_error(&d, "app").is_none());
}

#[test]
fn bad_files_keep_the_last_good_snapshot_serving() {
    let d = TestDaemon::start();
    d.create_project("app");
    d.ctl_ok(&["secrets", "set", "KEY", "good", "-p", "app"]);
    let good = std::fs::read(d.vault_path("app")).unwrap();
    let mut reader = d.client("app");

    let other = ProjectKey::generate();
    let wrong_schema = br#"{"format":"flux-secrets-vault","version":1,"project":"app","secrets":{"KEY":{"value":1}}}"#;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "corrupt",
            b"this is not an age file".to_vec(),
            "not a valid age file",
        ),
        (
            "truncated",
            good[..good.len() - 20].to_vec(),
            "truncated or corrupt",
        ),
        (
            "wrong key",
            vault::seal("app", &secrets(&[("KEY", "evil")]), u64::MAX, &other).unwrap(),
            "not encrypted to this project's key",
        ),
        (
            "wrong schema",
            vault::encrypt(wrong_schema, &key_of(&d, "app")).unwrap(),
            "wrong field or type",
        ),
        (
            "version",
            vault::encrypt(
                br#"{"format":"flux-secrets-vault","version":99,"project":"app","secrets":{}}"#,
                &key_of(&d, "app"),
            )
            .unwrap(),
            "version 99 is not supported",
        ),
    ];
    for (what, bytes, reason) in cases {
        replace_by_rename(&d, "app", &bytes);
        eventually(&format!("{what} reported"), || {
            last_error(&d, "app").is_some_and(|e| e.contains(reason))
        });
        assert_value(&mut reader, "KEY", "good");
        let out = d.run_ctl(&["status"]);
        assert_eq!(out.status.code(), Some(7), "{what}: status exits 7");
        let status = String::from_utf8_lossy(&out.stdout);
        assert!(
            status.contains(reason),
            "{what}: status shows the error:\n{status}"
        );
        // A later good file is picked up and clears the error.
        replace_by_rename(&d, "app", &sealed(&d, "app", &[("KEY", "good")]));
        eventually(&format!("recovered from {what}"), || {
            last_error(&d, "app").is_none()
        });
        assert_value(&mut reader, "KEY", "good");
    }

    // A vanished vault keeps serving and is reported; restoring clears it.
    let current = std::fs::read(d.vault_path("app")).unwrap();
    std::fs::remove_file(d.vault_path("app")).unwrap();
    eventually("missing vault reported", || {
        last_error(&d, "app").is_some_and(|e| e.contains("is missing"))
    });
    assert_value(&mut reader, "KEY", "good");
    replace_by_rename(&d, "app", &current);
    eventually("restored vault", || last_error(&d, "app").is_none());

    // Nothing about the bad files reached the log as a value.
    assert!(!d.log().contains("evil"));
}

#[test]
fn one_projects_key_neither_opens_nor_plants_in_another_project() {
    let d = TestDaemon::start();
    d.create_project("app");
    d.create_project("other");
    d.ctl_ok(&["secrets", "set", "KEY", "kept", "-p", "other"]);
    let mut reader = d.client("other");
    let app_key = key_of(&d, "app");

    // Holding app's key opens no other project's vault.
    let others = std::fs::read(d.vault_path("other")).unwrap();
    assert!(vault::open(&others, "other", &app_key).is_err());

    // A vault sealed with app's key, named for the other project or for
    // app itself, or app's own vault copied over: refused, and the other
    // project keeps serving its value.
    let app_own = std::fs::read(d.vault_path("app")).unwrap();
    let planted = [
        vault::seal("other", &secrets(&[("KEY", "evil")]), u64::MAX, &app_key).unwrap(),
        vault::seal("app", &secrets(&[("KEY", "evil")]), u64::MAX, &app_key).unwrap(),
        app_own,
    ];
    for bytes in planted {
        replace_by_rename(&d, "other", &bytes);
        eventually("the foreign vault is reported", || {
            last_error(&d, "other")
                .is_some_and(|e| e.contains("not encrypted to this project's key"))
        });
        assert_value(&mut reader, "KEY", "kept");
        assert_value(&mut d.client("other"), "KEY", "kept");
        // Back to a good vault, so the next case is seen on its own.
        replace_by_rename(&d, "other", &sealed(&d, "other", &[("KEY", "kept")]));
        eventually("the good vault clears the error", || {
            last_error(&d, "other").is_none()
        });
    }
    // app itself is untouched.
    assert!(last_error(&d, "app").is_none());
}

#[test]
fn readers_never_see_half_a_write() {
    let d = TestDaemon::start();
    d.create_project("app");
    replace_by_rename(&d, "app", &sealed(&d, "app", &[("A", "0"), ("B", "0")]));
    let mut probe = d.client("app");
    eventually("first pair", || value_is(&mut probe, "B", "0"));

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (socket, stop) = (d.project_socket("app"), stop.clone());
            std::thread::spawn(move || {
                let mut client = flux_protocol::blocking::Client::connect(socket).unwrap();
                let mut reads = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let all = client.get_all().unwrap();
                    assert_eq!(all.len(), 2);
                    assert!(
                        all[0].value == all[1].value,
                        "a reader saw A and B from different writes"
                    );
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    let key = key_of(&d, "app");
    let first = next_revision(&d, "app");
    for i in 1..=60 {
        let v = i.to_string();
        let bytes = vault::seal("app", &secrets(&[("A", &v), ("B", &v)]), first + i, &key).unwrap();
        flux_vault::files::write_atomic(&d.vault_path("app"), &bytes, 0o600).unwrap();
        eventually("pair swapped in", || value_is(&mut probe, "A", &v));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(reads > 0);
}

#[test]
fn subscribers_hear_of_every_change_and_never_a_value() {
    let d = TestDaemon::start();
    d.create_project("app");
    let mut sub = d.client("app");
    let start = sub.subscribe().unwrap();
    let next = |sub: &mut flux_protocol::blocking::Client| {
        sub.next_event(WAIT)
            .unwrap()
            .expect("an event within the wait")
    };

    d.ctl_ok(&["secrets", "set", "NEW_KEY", "secret-value-1", "-p", "app"]);
    let e = next(&mut sub);
    assert_eq!(
        (e.kind, e.names.clone()),
        (EventKind::Set, vec!["NEW_KEY".to_owned()])
    );
    assert!(e.generation > start);
    // fluxd's own write is not loaded a second time.
    assert_eq!(sub.next_event(Duration::from_millis(300)).unwrap(), None);

    d.ctl_ok(&["secrets", "delete", "NEW_KEY", "-p", "app"]);
    let e = next(&mut sub);
    assert_eq!(
        (e.kind, e.names),
        (EventKind::Deleted, vec!["NEW_KEY".to_owned()])
    );

    replace_by_rename(&d, "app", &sealed(&d, "app", &[("FROM_OUTSIDE", "x")]));
    let e = next(&mut sub);
    assert_eq!(
        (e.kind, e.names),
        (EventKind::Reloaded, vec!["FROM_OUTSIDE".to_owned()])
    );

    // The connection still answers requests between events.
    assert_value(&mut sub, "FROM_OUTSIDE", "x");

    d.ctl_ok(&["projects", "delete", "app", "--yes"]);
    let e = next(&mut sub);
    assert_eq!(e.kind, EventKind::ProjectDeleted);
}

#[test]
fn projects_appear_while_running_and_sighup_reloads() {
    let d = TestDaemon::start();
    // A project restored from elsewhere: key first, then its vault.
    let key = ProjectKey::generate();
    let key_path: PathBuf = d.key_path("restored");
    std::fs::write(
        &key_path,
        key.to_file_contents("2026-01-01T00:00:00Z").as_bytes(),
    )
    .unwrap();
    std::fs::set_permissions(
        &key_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let bytes = vault::seal("restored", &secrets(&[("R", "restored-value")]), 1, &key).unwrap();
    replace_by_rename(&d, "restored", &bytes);
    eventually("socket for the new project", || {
        Path::new(&d.project_socket("restored")).exists()
    });
    assert_value(&mut d.client("restored"), "R", "restored-value");

    let before = d.control().status().unwrap().projects[0].generation;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    eventually("SIGHUP reload", || {
        d.control().status().unwrap().projects[0].generation > before
    });
    assert!(d.log().contains("reloading"));
    assert_value(&mut d.client("restored"), "R", "restored-value");
}

#[test]
fn a_rekey_under_load_fails_no_read_and_leaves_the_old_key_useless() {
    let mut d = TestDaemon::start();
    d.create_project("app");
    d.ctl_ok(&["secrets", "set", "A", "a-1", "-p", "app"]);
    d.ctl_ok(&["secrets", "set", "A", "a-2", "-p", "app"]);
    d.ctl_ok(&["secrets", "set", "B", "b-1", "-p", "app"]);
    let old_key = key_of(&d, "app");
    let old_vault = std::fs::read(d.vault_path("app")).unwrap();
    let digests = |d: &TestDaemon| d.ctl_ok(&["secrets", "list", "--json", "-p", "app"]);
    let digests_before = digests(&d);

    // 16 readers get A in a loop for the whole rekey: none may fail, none
    // may see anything but the current value.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..16)
        .map(|_| {
            let (stop, path) = (stop.clone(), d.project_socket("app"));
            std::thread::spawn(move || {
                let mut c = flux_protocol::blocking::Client::connect(&path).unwrap();
                let (mut reads, mut bad) = (0u64, 0u64);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match c.get("A") {
                        Ok(v) if v.expose() == "a-2" => reads += 1,
                        _ => bad += 1,
                    }
                }
                (reads, bad)
            })
        })
        .collect();
    for _ in 0..3 {
        let out = d.ctl_ok(&["projects", "rekey", "app"]);
        assert!(out.contains("Project re-keyed: app"), "{out}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut reads, mut bad) = (0, 0);
    for r in readers {
        let (n, b) = r.join().unwrap();
        reads += n;
        bad += b;
    }
    assert!(reads > 0, "no read ran during the rekeys");
    assert_eq!(bad, 0, "{bad} failed or stale reads during the rekeys");

    // The old key opens the old copy of the vault (break-glass for copies
    // kept on purpose), never the vault written now.
    let new_vault = std::fs::read(d.vault_path("app")).unwrap();
    assert!(vault::open(&new_vault, "app", &old_key).is_err());
    assert!(vault::open(&old_vault, "app", &old_key).is_ok());
    assert!(vault::open(&new_vault, "app", &key_of(&d, "app")).is_ok());
    // Nothing else in keys/ holds a key (the one name spelled on purpose:
    // this checks the layout).
    let names: Vec<String> = std::fs::read_dir(d.layout().keys_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["app.key"]);
    // History, rollback and the floor go on; digests changed with the key.
    let history = d.ctl_ok(&["secrets", "history", "A", "-p", "app"]);
    assert_eq!(history.lines().count(), 3, "{history}");
    assert_ne!(digests(&d), digests_before);
    d.ctl_ok(&["secrets", "rollback", "A", "-p", "app"]);
    assert_value(&mut d.client("app"), "A", "a-1");
    d.stop();
    d.restart();
    assert_value(&mut d.client("app"), "A", "a-1");
    assert_value(&mut d.client("app"), "B", "b-1");
    // The old vault put back is a rollback, refused.
    replace_by_rename(&d, "app", &old_vault);
    eventually("the old vault refused", || {
        last_error(&d, "app").is_some_and(|e| !e.is_empty())
    });
    assert_value(&mut d.client("app"), "A", "a-1");
}

#[test]
fn a_rekey_interrupted_by_a_stop_is_finished_or_undone_at_start() {
    let mut d = TestDaemon::start();
    d.create_project("app");
    d.ctl_ok(&["secrets", "set", "A", "a-1", "-p", "app"]);
    d.stop();
    let old_key = key_of(&d, "app");
    let next = d.state_dir().join("keys/app.key.next");
    let write_key = |key: &ProjectKey| {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&next)
            .unwrap();
        f.write_all(key.to_file_contents("now").as_bytes()).unwrap();
    };
    // Stopped after the new key was written, before the vault: undone.
    let stray = ProjectKey::generate();
    write_key(&stray);
    d.restart();
    assert_value(&mut d.client("app"), "A", "a-1");
    assert!(!next.exists(), "a key that opens nothing was kept");
    assert_eq!(
        key_of(&d, "app").recipient().to_string(),
        old_key.recipient().to_string()
    );
    d.stop();
    // Stopped after the vault was written with the new key: finished.
    let new = ProjectKey::generate();
    let opened = vault::open(
        &std::fs::read(d.vault_path("app")).unwrap(),
        "app",
        &old_key,
    )
    .unwrap();
    let bytes = vault::seal("app", &opened.secrets, opened.revision + 1, &new).unwrap();
    write_key(&new);
    replace_by_rename(&d, "app", &bytes);
    d.restart();
    assert_value(&mut d.client("app"), "A", "a-1");
    assert_eq!(
        key_of(&d, "app").recipient().to_string(),
        new.recipient().to_string()
    );
    assert!(!next.exists());
}
