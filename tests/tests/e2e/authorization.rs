//! Authorization and the audit log, played by each attacker with only what
//! that attacker holds: a reader, a member of the project's socket group
//! with no role, a project admin. Every write request (rollback included)
//! and every admin read (list, history, diff) is tried by each and must be
//! refused, leave the vault as it was, and be audited as denied.
//!
//! Tests that switch to other uids need root (CI runs as root); elsewhere
//! they print SKIPPED.

use crate::{assert_value, stderr};
use flux_e2e::{TestDaemon, assert_no_secret, eventually};
use flux_protocol::ErrorCode;
use flux_protocol::SecretValue;
use flux_protocol::codec::{decode, encode, read_frame, write_frame};
use flux_protocol::message::{Get, Hello, NamedValue, Request, Response};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::Output;

/// The socket group every peer below is in (its primary gid).
const GROUP: u32 = 65534;
const READER: u32 = 65534;
const NO_ROLE: u32 = 65533;
const ADMIN: u32 = 65532;
const ORIGINAL: &str = "original-value-never-replaced";
const PLANTED: &str = "attacker-value-must-not-land";

fn is_root(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        eprintln!("SKIPPED: {test}: needs root to run clients as other uids (CI runs as root)");
    }
    root
}

/// A daemon whose project `app` has one reader and one admin, with both
/// sockets opened to [`GROUP`], so every peer reaches them and only the
/// policy decides.
fn daemon() -> TestDaemon {
    let d = TestDaemon::start_with_config(&format!(
        r#"
control_group = {GROUP}
[projects.app]
readers = {{ users = [{READER}] }}
admins = {{ users = [{ADMIN}] }}
socket_group = {GROUP}
"#
    ));
    // Other uids must reach the runtime folder inside the test's temp dir.
    std::fs::set_permissions(d.dir(), std::fs::Permissions::from_mode(0o711)).unwrap();
    d.create_project("app");
    d.ctl_ok(&["secrets", "set", "API_KEY", ORIGINAL, "-p", "app"]);
    d
}

fn ctl_as(d: &TestDaemon, uid: u32, args: &[&str]) -> Output {
    d.ctl().args(args).uid(uid).gid(GROUP).output().unwrap()
}

/// The audit entries of the daemon, as `fluxctl audit --json` prints them.
fn audit(d: &TestDaemon) -> Vec<serde_json::Value> {
    d.ctl_ok(&["audit", "--json", "--limit", "100000"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn has_entry(entries: &[serde_json::Value], uid: u32, op: &str, allowed: bool) -> bool {
    entries
        .iter()
        .any(|e| e["uid"] == uid && e["op"] == op && e["allowed"] == allowed)
}

/// Nothing changed: the value, the names, the projects.
fn assert_untouched(d: &TestDaemon) {
    let mut app = d.client("app");
    assert_value(&mut app, "API_KEY", ORIGINAL);
    let names: Vec<String> = app.list().unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["API_KEY"], "no name was added or removed");
    let projects: Vec<String> = d
        .control()
        .list_projects()
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(projects, ["app"], "no project was added or removed");
    let vault = std::fs::read(d.vault_path("app")).unwrap();
    assert_no_secret(&vault, PLANTED, "the vault file");
}

#[test]
fn a_reader_or_a_group_member_with_no_role_cannot_write_by_any_request() {
    if !is_root("a_reader_or_a_group_member_with_no_role_cannot_write_by_any_request") {
        return;
    }
    let d = daemon();
    // An earlier version a rollback would bring back.
    d.ctl_ok(&["secrets", "set", "API_KEY", PLANTED, "-p", "app"]);
    d.ctl_ok(&["secrets", "set", "API_KEY", ORIGINAL, "-p", "app"]);
    let evil = d.dir().join("evil.env");
    std::fs::write(&evil, format!("API_KEY={PLANTED}\nNEW_NAME={PLANTED}\n")).unwrap();
    std::fs::set_permissions(&evil, std::fs::Permissions::from_mode(0o644)).unwrap();
    let evil = evil.display().to_string();
    let attempts: [(&[&str], &str); 10] = [
        (
            &["secrets", "set", "API_KEY", PLANTED, "-p", "app"],
            "write",
        ),
        (&["secrets", "import", &evil, "-p", "app"], "write_many"),
        (&["secrets", "delete", "API_KEY", "-p", "app"], "delete"),
        (&["secrets", "rollback", "API_KEY", "-p", "app"], "rollback"),
        (&["projects", "create", "planted"], "create_project"),
        (&["projects", "delete", "app", "--yes"], "delete_project"),
        (&["projects", "rekey", "app"], "rekey_project"),
        (&["hosts", "remove", "--resume"], "resume_removal"),
        // Admin reads: names, digests and versions are not a reader's.
        (&["secrets", "list", "-p", "app"], "list_digests"),
        (&["secrets", "history", "API_KEY", "-p", "app"], "history"),
    ];
    for uid in [READER, NO_ROLE] {
        for (args, op) in attempts {
            let out = ctl_as(&d, uid, args);
            assert_eq!(
                out.status.code(),
                Some(5),
                "uid {uid} {args:?} must be denied: {}",
                stderr(&out)
            );
            assert!(
                stderr(&out).contains(&format!("permission denied: {op}")),
                "uid {uid} {args:?}: {}",
                stderr(&out)
            );
            assert_untouched(&d);
        }
    }
    let entries = audit(&d);
    for uid in [READER, NO_ROLE] {
        for (_, op) in attempts {
            assert!(
                has_entry(&entries, uid, op, false),
                "no denied {op} by uid {uid} in the audit log"
            );
        }
    }
    let log = std::fs::read(d.layout().audit_log()).unwrap();
    assert_no_secret(&log, PLANTED, "the audit log");
    assert_no_secret(&log, ORIGINAL, "the audit log");
}

#[test]
fn reads_go_to_readers_only_and_are_audited() {
    if !is_root("reads_go_to_readers_only_and_are_audited") {
        return;
    }
    let d = daemon();
    let get = ["run", "-p", "app", "--", "printenv", "API_KEY"];
    let out = ctl_as(&d, READER, &get);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        out.stdout == format!("{ORIGINAL}\n").as_bytes(),
        "the reader reads"
    );
    for uid in [NO_ROLE, ADMIN] {
        let out = ctl_as(&d, uid, &get);
        assert_eq!(out.status.code(), Some(5), "uid {uid}: {}", stderr(&out));
        assert_no_secret(&out.stdout, ORIGINAL, "a refused run's output");
        assert_no_secret(&out.stderr, ORIGINAL, "a refused run's errors");
    }
    // The reader's read is summarized when its connection closes.
    eventually("the reader's get_all in the audit log", || {
        has_entry(&audit(&d), READER, "get_all", true)
    });
    let entries = audit(&d);
    assert!(has_entry(&entries, NO_ROLE, "get_all", false));
    assert!(has_entry(&entries, ADMIN, "get_all", false));
}

#[test]
fn an_admin_writes_and_every_write_is_one_audit_entry() {
    if !is_root("an_admin_writes_and_every_write_is_one_audit_entry") {
        return;
    }
    let d = daemon();
    let env = d.dir().join("admin.env");
    std::fs::write(&env, "FROM_IMPORT=imported-value\n").unwrap();
    std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o644)).unwrap();
    for args in [
        &["secrets", "set", "ROTATED", "admin-value", "-p", "app"][..],
        &["secrets", "import", &env.display().to_string(), "-p", "app"],
        &["secrets", "delete", "ROTATED", "-p", "app"],
    ] {
        let out = ctl_as(&d, ADMIN, args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    assert_value(&mut d.client("app"), "FROM_IMPORT", "imported-value");
    // A project admin re-keys and deletes its own project, but creates none.
    let out = ctl_as(&d, ADMIN, &["projects", "rekey", "app"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = ctl_as(&d, ADMIN, &["projects", "create", "other"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let entries = audit(&d);
    let ops: Vec<&str> = entries
        .iter()
        .filter(|e| e["uid"] == ADMIN && e["allowed"] == true)
        .map(|e| e["op"].as_str().unwrap())
        .filter(|op| ["write", "write_many", "delete"].contains(op))
        .collect();
    assert_eq!(
        ops,
        ["write", "write_many", "delete"],
        "one entry per write"
    );
    let import = entries
        .iter()
        .find(|e| e["op"] == "write_many")
        .expect("the import is audited");
    assert_eq!(import["detail"], "1 names: FROM_IMPORT");
    assert_eq!(import["count"], 1);
    let out = ctl_as(&d, ADMIN, &["projects", "delete", "app", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(has_entry(&audit(&d), ADMIN, "delete_project", true));
}

#[test]
fn an_admin_who_is_not_a_reader_cannot_compare_values() {
    if !is_root("an_admin_who_is_not_a_reader_cannot_compare_values") {
        return;
    }
    let d = daemon();
    // The admin's guesses: the right value among wrong ones.
    let guesses = d.dir().join("guesses.env");
    std::fs::write(
        &guesses,
        format!(
            "API_KEY={ORIGINAL}
"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&guesses, std::fs::Permissions::from_mode(0o644)).unwrap();
    let guesses = guesses.display().to_string();
    for (args, op) in [
        (&["secrets", "diff", &guesses, "-p", "app"][..], "diff"),
        (
            &["secrets", "import", &guesses, "--dry-run", "-p", "app"],
            "diff",
        ),
    ] {
        for uid in [ADMIN, NO_ROLE] {
            let out = ctl_as(&d, uid, args);
            assert_eq!(
                out.status.code(),
                Some(5),
                "uid {uid} {args:?}: {}",
                stderr(&out)
            );
            assert!(
                stderr(&out).contains(&format!("permission denied: {op}")),
                "{}",
                stderr(&out)
            );
            assert!(!String::from_utf8_lossy(&out.stdout).contains("same"));
        }
    }
    // The reader, who reads the values anyway, compares them.
    let out = ctl_as(&d, READER, &["secrets", "diff", &guesses, "-p", "app"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_no_secret(&out.stdout, ORIGINAL, "a diff's output");
    let entries = audit(&d);
    assert!(
        has_entry(&entries, ADMIN, "diff", false),
        "the admin's guess is not audited"
    );
    assert!(has_entry(&entries, READER, "diff", true));
}

fn hello_again() -> Request {
    Request::Hello(Hello {
        version: 1,
        client: "t".into(),
    })
}

#[test]
fn misplaced_and_repeated_requests_are_denied_answered_and_audited() {
    let d = TestDaemon::start();
    d.create_project("app");
    let mut app = d.client("app");
    let err = app.delete_project("app").unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BadRequest));
    assert!(err.to_string().contains("control request"), "{err}");
    let again = app.call(&hello_again()).unwrap_err();
    assert_eq!(again.code(), Some(ErrorCode::BadRequest));
    assert!(again.to_string().contains("handshake"), "{again}");
    let mut control = d.control();
    let set_many = Request::SetMany(vec![NamedValue {
        name: "A".into(),
        value: SecretValue::from("v"),
    }]);
    let err = control.call(&set_many).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BadRequest), "{err}");
    // The connection is still usable.
    control.status().unwrap();
    drop(app);
    let entries = audit(&d);
    for op in ["delete_project", "hello", "set_many"] {
        let e = entries
            .iter()
            .find(|e| e["op"] == op && e["allowed"] == false)
            .unwrap_or_else(|| panic!("no denied {op} in the audit log"));
        assert_eq!(e["result"], "bad_request");
    }
}

#[test]
fn a_full_project_is_read_whole_over_the_socket_and_by_fluxctl_run() {
    // 1 MiB of values: four times the request limit, so GetAll's answer
    // needs its own, larger limit.
    let d = TestDaemon::start_with_config("[limits]\nmax_project_bytes = 1048576\n");
    d.create_project("app");
    let mut app = d.client("app");
    let value = |i: usize| "v".repeat(60_000) + &format!("{i:05}");
    let mut stored = 0;
    let err = loop {
        match app.set(
            &format!("CERT_{stored:02}"),
            SecretValue::from(value(stored)),
        ) {
            Ok(_) => stored += 1,
            Err(e) => break e,
        }
        assert!(stored < 100, "the project byte limit is never reached");
    };
    assert_eq!(err.code(), Some(ErrorCode::LimitReached), "{err}");
    assert!(err.to_string().contains("max_project_bytes"), "{err}");
    assert_eq!(stored, 17, "17 × 60 kB fit in 1 MiB");
    let all = app.get_all().unwrap();
    assert_eq!(all.len(), stored);
    for (i, nv) in all.iter().enumerate() {
        assert!(nv.value.expose() == value(i), "value {i} read back whole");
    }
    // fluxctl run starts the program with every value in its environment.
    let out = d
        .ctl()
        .args(["run", "-p", "app", "--", "sh", "-c"])
        .arg("for v in $(env | grep -o '^CERT_[0-9]*'); do eval \"n=\\${#$v}\"; printf '%s ' \"$n\"; done")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let lengths: Vec<&str> = std::str::from_utf8(&out.stdout)
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(lengths.len(), stored);
    assert!(lengths.iter().all(|l| *l == "60005"), "{lengths:?}");
    // After a restart the project still reads whole: nothing was
    // acknowledged that cannot be read back.
    drop(app);
    let mut d = d;
    d.stop();
    d.restart();
    assert_eq!(d.client("app").get_all().unwrap().len(), stored);
}

#[test]
fn a_huge_invalid_name_costs_the_audit_log_a_few_hundred_bytes() {
    let d = TestDaemon::start_with_config("[limits]\nmax_request_bytes = 300000\n");
    d.create_project("app");
    let log = d.layout().audit_log();
    let mut app = d.client("app");
    let name = "N".repeat(256 * 1024);
    let err = app.get(&name).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidName));
    drop(app);
    eventually("the invalid get in the audit log", || {
        audit(&d).iter().any(|e| e["op"] == "get")
    });
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text.lines().find(|l| l.contains("\"op\":\"get\"")).unwrap();
    assert!(line.len() < 600, "the entry is {} bytes", line.len());
    let entry = audit(&d).into_iter().find(|e| e["op"] == "get").unwrap();
    assert_eq!(entry["detail"], "invalid name of 262144 bytes");
    assert!(entry["name"].as_str().unwrap().ends_with('…'));
}

#[test]
fn a_read_load_writes_a_few_lines_of_audit() {
    let d = TestDaemon::start();
    d.create_project("app");
    d.ctl_ok(&["secrets", "set", "K", "v", "-p", "app"]);
    let log = d.layout().audit_log();
    const CLIENTS: usize = 16;
    const GETS: usize = 2000;
    std::thread::scope(|s| {
        for _ in 0..CLIENTS {
            s.spawn(|| {
                let mut c = d.client("app");
                for _ in 0..GETS {
                    c.get("K").unwrap();
                }
            });
        }
    });
    eventually("every read is counted in the audit log", || {
        audit(&d)
            .iter()
            .filter(|e| e["op"] == "get")
            .map(|e| e["count"].as_u64().unwrap())
            .sum::<u64>()
            == (CLIENTS * GETS) as u64
    });
    let text = std::fs::read_to_string(&log).unwrap();
    let bytes: usize = text
        .lines()
        .filter(|l| l.contains("\"op\":\"get\""))
        .map(|l| l.len() + 1)
        .sum();
    assert!(
        bytes < CLIENTS * 400,
        "{} reads wrote {bytes} bytes of audit",
        CLIENTS * GETS
    );
}

#[test]
fn read_summaries_are_written_while_a_connection_stays_open() {
    let d = TestDaemon::start_with_config("[audit]\nsummary_interval = \"200ms\"\n");
    d.create_project("app");
    d.ctl_ok(&["secrets", "set", "K", "v", "-p", "app"]);
    let mut c = d.client("app");
    for _ in 0..10 {
        c.get("K").unwrap();
    }
    eventually("the summary of an open connection", || {
        audit(&d)
            .iter()
            .any(|e| e["op"] == "get" && e["count"] == 10)
    });
    // Still open, still served.
    assert_value(&mut c, "K", "v");
}

#[test]
fn reads_every_writes_a_line_per_read() {
    let d = TestDaemon::start_with_config("[audit]\nreads = \"every\"\n");
    d.create_project("app");
    d.ctl_ok(&["secrets", "set", "K", "v", "-p", "app"]);
    let mut c = d.client("app");
    for _ in 0..5 {
        c.get("K").unwrap();
    }
    let gets: Vec<_> = audit(&d).into_iter().filter(|e| e["op"] == "get").collect();
    assert_eq!(gets.len(), 5);
    assert!(gets.iter().all(|e| e["count"] == 1));
}

#[test]
fn a_flood_of_denials_is_summarized_past_the_first_hundred() {
    let d = TestDaemon::start();
    d.create_project("app");
    let mut c = d.client("app");
    // A Hello after the handshake is refused each time.
    for _ in 0..1000 {
        let err = c.call(&hello_again()).unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::BadRequest));
    }
    drop(c);
    eventually("every denial is counted", || {
        audit(&d)
            .iter()
            .filter(|e| e["op"] == "hello")
            .map(|e| e["count"].as_u64().unwrap())
            .sum::<u64>()
            == 1000
    });
    let lines = audit(&d).iter().filter(|e| e["op"] == "hello").count();
    assert_eq!(lines, 101, "100 denials in full, then one summary");
}

#[test]
fn the_audit_log_rotates_and_fluxctl_audit_reads_the_rotated_files() {
    let d = TestDaemon::start_with_config("[audit]\nmax_bytes = 4096\nkeep = 2\n");
    d.create_project("app");
    let mut app = d.client("app");
    for i in 0..100 {
        app.set(&format!("K{i}"), SecretValue::from("v")).unwrap();
    }
    let log = d.layout().audit_log();
    let entries = audit(&d);
    let rotated = |n: u32| std::path::PathBuf::from(format!("{}.{n}", log.display()));
    assert!(rotated(1).exists() && rotated(2).exists());
    assert!(!rotated(3).exists(), "at most `keep` rotated files");
    for f in [log.clone(), rotated(1), rotated(2)] {
        let len = std::fs::metadata(&f).unwrap().len();
        assert!(len < 4096 + 1024, "{} is {len} bytes", f.display());
    }
    let in_current = std::fs::read_to_string(&log).unwrap().lines().count();
    let sets = entries.iter().filter(|e| e["op"] == "set").count();
    assert!(sets > in_current, "rotated files are read too");
    assert_eq!(
        entries.last().unwrap()["name"],
        "K99",
        "newest last, nothing lost at the end"
    );
}

/// A small tmpfs, unmounted on drop.
struct SmallFs(std::path::PathBuf);

impl SmallFs {
    fn mount(at: std::path::PathBuf) -> Option<Self> {
        std::fs::create_dir_all(&at).unwrap();
        let ok = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                "size=256k,mode=0700",
                "flux-audit-test",
            ])
            .arg(&at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Self(at))
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_under_the_audit_log_refuses_writes_and_serves_reads() {
    if !is_root("a_full_disk_under_the_audit_log_refuses_writes_and_serves_reads") {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("fxa")
        .tempdir_in("/tmp")
        .unwrap();
    let Some(fs) = SmallFs::mount(dir.path().join("fs")) else {
        eprintln!("SKIPPED: a_full_disk_under_the_audit_log: cannot mount a tmpfs here");
        return;
    };
    let audit_log = fs.0.join("audit.log");
    let d =
        TestDaemon::start_with_config(&format!("[audit]\npath = \"{}\"\n", audit_log.display()));
    d.create_project("app");
    d.ctl_ok(&["secrets", "set", "K", "before", "-p", "app"]);
    // Fill the file system.
    let filler = fs.0.join("filler");
    let _ = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=4k"])
        .arg(format!("of={}", filler.display()))
        .output();
    // A write is refused, nothing changes; reads are served.
    let mut app = d.client("app");
    let refused = eventually_err(&mut app);
    assert_eq!(refused, ErrorCode::Unavailable);
    assert_value(&mut app, "K", "before");
    let out = d.run_ctl(&["secrets", "set", "K", "during", "-p", "app"]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(stderr(&out).contains("audit log"), "{}", stderr(&out));
    assert_value(&mut app, "K", "before");
    let out = d.run_ctl(&["status"]);
    assert_eq!(out.status.code(), Some(7), "status: a daemon-wide problem");
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(status.contains("cannot write the audit log"), "{status}");
    // Space again: writes are accepted, and the refusals are in the log.
    std::fs::remove_file(&filler).unwrap();
    eventually("writes are accepted again", || {
        app.set("K", SecretValue::from("after")).is_ok()
    });
    assert_value(&mut app, "K", "after");
    let entries = audit(&d);
    assert!(
        entries
            .iter()
            .any(|e| e["op"] == "set" && e["result"] == "unavailable"),
        "the refused write is audited once the log can be written"
    );
    assert!(!d.ctl_ok(&["status"]).contains("cannot write the audit log"));
    drop(d);
    drop(fs);
}

/// Sets until the daemon notices the full disk and refuses.
fn eventually_err(app: &mut flux_protocol::blocking::Client) -> ErrorCode {
    let mut code = None;
    eventually("a write is refused", || {
        match app.set("PROBE", SecretValue::from("p")) {
            Ok(_) => false,
            Err(e) => {
                code = e.code();
                true
            }
        }
    });
    code.unwrap()
}

#[test]
fn a_client_that_never_reads_its_answers_is_cut_off() {
    let d = TestDaemon::start_with_config("[limits]\nwrite_timeout = \"300ms\"\n");
    d.create_project("app");
    d.ctl_ok(&["secrets", "set", "K", &"x".repeat(60_000), "-p", "app"]);
    let mut s = UnixStream::connect(d.project_socket("app")).unwrap();
    let hello = encode(&Request::Hello(Hello {
        version: 1,
        client: "t".into(),
    }))
    .unwrap();
    write_frame(&mut s, &hello).unwrap();
    let welcome = read_frame(&mut s, 1 << 20).unwrap().unwrap();
    assert!(matches!(
        decode::<Response>(&welcome).unwrap(),
        Response::Welcome(_)
    ));
    // Pipeline gets and never read: the answers fill the socket buffers.
    let get = encode(&Request::Get(Get { name: "K".into() })).unwrap();
    s.set_write_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut cut = false;
    for _ in 0..10_000 {
        if write_frame(&mut s, &get).is_err() {
            cut = true;
            break;
        }
    }
    assert!(
        cut,
        "the daemon closed the connection of a client that stopped reading"
    );
    // Others are served.
    assert_eq!(d.client("app").get("K").unwrap().len(), 60_000);
}
