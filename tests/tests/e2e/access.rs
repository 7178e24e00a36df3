//! Access control and hardening: the kernel says who the peer is, the
//! policy says what it may do, every decision is audited, bad clients are
//! contained, and the process keeps its memory to itself.
//!
//! Tests that switch to other uids need root (CI runs as root); elsewhere
//! they print SKIPPED.

use crate::{assert_value, cut_off, stderr, stdout};
use flux_e2e::eventually;
use flux_e2e::{TestDaemon, assert_no_secret};
use flux_protocol::ErrorCode;
use flux_protocol::SecretValue;
use flux_protocol::codec::{decode, encode};
use flux_protocol::message::{Hello, Request, Response};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const NOBODY: u32 = 65534;
const OTHER: u32 = 65533;
const READER_VALUE: &str = "reader-visible-value-do-not-leak";

fn is_root(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        eprintln!("SKIPPED: {test}: needs root to run clients as other uids (CI runs as root)");
    }
    root
}

/// Runs fluxctl as `uid` (gid 65534, no supplementary groups).
fn ctl_as(d: &TestDaemon, uid: u32, args: &[&str]) -> Output {
    d.ctl().args(args).uid(uid).gid(NOBODY).output().unwrap()
}

fn open_dir_to_others(d: &TestDaemon) {
    // Other uids must reach the runtime folder inside the test's temp dir.
    std::fs::set_permissions(d.dir(), std::fs::Permissions::from_mode(0o711)).unwrap();
}

fn policy(readers: &str) -> String {
    format!(
        r#"
[projects.app]
socket_group = {NOBODY}
readers = {{ users = [{readers}] }}
admins = {{ users = [{OTHER}] }}
"#
    )
}

#[test]
fn other_uids_get_exactly_what_the_policy_grants() {
    if !is_root("other_uids_get_exactly_what_the_policy_grants") {
        return;
    }
    // The reader list starts empty: 65534 can reach the socket (group) but
    // is not a reader.
    let d = TestDaemon::start_with_config(&policy(""));
    open_dir_to_others(&d);
    d.create_project("app");
    d.create_project("closed");
    d.ctl_ok(&["secrets", "set", "TOKEN", READER_VALUE, "-p", "app"]);
    d.ctl_ok(&[
        "secrets",
        "set",
        "OTHER_PROJECT",
        "closed-value",
        "-p",
        "closed",
    ]);

    let meta = std::fs::metadata(d.project_socket("app")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660, "group socket");
    assert_eq!(std::os::unix::fs::MetadataExt::gid(&meta), NOBODY);
    let runtime = std::fs::metadata(d.runtime_dir()).unwrap();
    assert_eq!(
        runtime.permissions().mode() & 0o777,
        0o711,
        "traversable, not listable"
    );
    let closed = std::fs::metadata(d.project_socket("closed")).unwrap();
    assert_eq!(closed.permissions().mode() & 0o777, 0o600);

    // Not a reader: denied, naming the operation and the project only.
    let out = ctl_as(&d, NOBODY, &["run", "-p", "app", "--", "printenv", "TOKEN"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("permission denied: get_all on project app"),
        "{}",
        stderr(&out)
    );
    assert!(
        !stderr(&out).contains(&OTHER.to_string()),
        "the policy's contents stay private"
    );

    // Another project's socket cannot even be reached.
    let out = ctl_as(&d, NOBODY, &["run", "-p", "closed", "--", "true"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("permission denied connecting to"),
        "{}",
        stderr(&out)
    );

    // Admit 65534 as a reader and reload: now it reads, on a new process.
    d.write_config(&policy(&NOBODY.to_string()));
    d.sighup();
    eventually("the reloaded policy admits 65534", || {
        ctl_as(&d, NOBODY, &["run", "-p", "app", "--", "true"])
            .status
            .success()
    });
    let out = ctl_as(&d, NOBODY, &["run", "-p", "app", "--", "printenv", "TOKEN"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out) == format!("{READER_VALUE}\n"),
        "the reader gets the value"
    );

    // A reader may not list, set or delete.
    for args in [
        &["secrets", "list", "-p", "app"][..],
        &["secrets", "set", "TOKEN", "x", "-p", "app"],
        &["secrets", "delete", "TOKEN", "-p", "app"],
    ] {
        let out = ctl_as(&d, NOBODY, args);
        assert_eq!(out.status.code(), Some(5), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("permission denied"),
            "{}",
            stderr(&out)
        );
    }

    // An admin (not a reader) lists names and sets, but never reads a value.
    let out = ctl_as(&d, OTHER, &["secrets", "list", "-p", "app"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("TOKEN  "), "{}", stdout(&out));
    assert!(stdout(&out).contains("  set "), "{}", stdout(&out));
    assert_no_secret(&out.stdout, READER_VALUE, "an admin's listing");
    let out = ctl_as(&d, OTHER, &["run", "-p", "app", "--", "printenv", "TOKEN"]);
    assert_eq!(out.status.code(), Some(5));
    let out = ctl_as(
        &d,
        OTHER,
        &["secrets", "set", "ADMIN_SET", "by-admin", "-p", "app"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // Project admins do not manage the daemon.
    let out = ctl_as(&d, OTHER, &["status"]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "control socket is 0600: {}",
        stderr(&out)
    );

    // Every decision is audited, allowed and denied, with the peer — and
    // no value anywhere in the log.
    let out = d.ctl_ok(&["audit", "--json", "-p", "app"]);
    let records: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let denied = records
        .iter()
        .find(|r| r["uid"] == NOBODY && r["op"] == "get_all" && r["allowed"] == false)
        .expect("a denied get_all by 65534");
    assert_eq!(denied["result"], "permission_denied");
    assert_eq!(denied["project"], "app");
    assert!(denied["pid"].as_u64().is_some());
    assert!(
        denied["exe"].as_str().unwrap().ends_with("fluxctl"),
        "{denied}"
    );
    assert!(
        records
            .iter()
            .any(|r| r["uid"] == NOBODY && r["op"] == "get_all" && r["allowed"] == true)
    );
    assert!(
        records
            .iter()
            .any(|r| r["uid"] == OTHER && r["op"] == "write" && r["name"] == "ADMIN_SET")
    );
    let log = std::fs::read(d.layout().audit_log()).unwrap();
    for v in [READER_VALUE, "closed-value", "by-admin"] {
        assert_no_secret(&log, v, "the audit log");
    }
    let human = d.ctl_ok(&["audit", "-p", "app", "--since", "1h"]);
    assert!(human.starts_with("TIME"), "{human}");
    assert!(human.contains("denied"), "{human}");
}

#[test]
fn each_project_socket_reaches_only_its_own_project() {
    let d = TestDaemon::start();
    d.create_project("a");
    d.create_project("b");
    d.ctl_ok(&["secrets", "set", "ONLY_IN_B", "b-value", "-p", "b"]);
    let mut a = d.client("a");
    let err = a.get("ONLY_IN_B").unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));
    assert!(a.list().unwrap().is_empty());
    assert!(a.get_all().unwrap().is_empty());
    a.set("ONLY_IN_A", SecretValue::from("a")).unwrap();
    assert_value(&mut d.client("b"), "ONLY_IN_B", "b-value");
    assert_eq!(
        d.client("b").list().unwrap().len(),
        1,
        "a write on a never reaches b"
    );
    // No request names a project: the control requests are refused here.
    let err = a.delete_project("b").unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BadRequest));
}

#[test]
fn key_files_and_state_folders_open_to_others_are_refused() {
    let mut d = TestDaemon::start();
    d.create_project("app");
    d.stop();
    let key = d.key_path("app");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = d.fluxd_command().output().unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = stderr(&out);
    assert!(err.contains(&key.display().to_string()), "{err}");
    assert!(err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    std::fs::set_permissions(d.state_dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = d.fluxd_command().output().unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(stderr(&out).contains("chmod 700"), "{}", stderr(&out));
    std::fs::set_permissions(d.state_dir(), std::fs::Permissions::from_mode(0o700)).unwrap();
    d.restart();
}

#[test]
fn check_config_validates_and_exits_0_or_78() {
    let d = TestDaemon::unstarted(&[]);
    let check = |toml: &str| d.check_config(toml);
    let out = check(
        "[defaults]\nadmins = { users = [0], groups = [\"root\"] }\n[limits]\nidle_timeout = \"1m\"\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("configuration is valid"),
        "{}",
        stdout(&out)
    );
    for (toml, want) in [
        ("[defaults]\nreader = {}\n", "unknown field"),
        (
            "[defaults]\nreaders = { users = [\"no-such-user-x\"] }\n",
            "unknown user",
        ),
        ("[projects.\"bad.name\"]\n", "invalid project name"),
        ("[limits]\nframe_timeout = \"soon\"\n", "not a duration"),
    ] {
        let out = check(toml);
        assert_eq!(out.status.code(), Some(78), "{toml}");
        assert!(stderr(&out).contains(want), "{toml}: {}", stderr(&out));
    }
}

fn hello(s: &mut UnixStream) -> Option<Response> {
    let payload = encode(&Request::Hello(Hello {
        version: flux_protocol::PROTOCOL_VERSION,
        client: "test".into(),
    }))
    .unwrap();
    s.write_all(&(payload.len() as u32).to_be_bytes()).unwrap();
    s.write_all(&payload).unwrap();
    let frame = flux_protocol::codec::read_frame(s, 1 << 20).ok()??;
    Some(decode(&frame).unwrap())
}

#[test]
fn pipelined_requests_are_answered_in_order_whole_or_split() {
    let d = TestDaemon::start();
    d.create_project("app");
    d.ctl_ok(&["secrets", "set", "A", "value-a", "-p", "app"]);
    d.ctl_ok(&["secrets", "set", "B", "value-b", "-p", "app"]);
    let frame = |req: &Request| {
        let payload = encode(req).unwrap();
        let mut f = (payload.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(&payload);
        f
    };
    let get = |name: &str| {
        frame(&Request::Get(flux_protocol::message::Get {
            name: name.into(),
        }))
    };
    let mut s = UnixStream::connect(d.project_socket("app")).unwrap();
    assert!(matches!(hello(&mut s), Some(Response::Welcome(_))));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // 48 requests in one write, a missing name among them.
    let names: Vec<&str> = (0..48).map(|i| ["A", "B", "MISSING"][i % 3]).collect();
    let batch: Vec<u8> = names.iter().flat_map(|n| get(n)).collect();
    s.write_all(&batch).unwrap();
    for (i, name) in names.iter().enumerate() {
        let reply = flux_protocol::codec::read_frame(&mut s, 1 << 20)
            .unwrap()
            .unwrap();
        match (decode::<Response>(&reply).unwrap(), *name) {
            (Response::Value(v), "A") => assert!(v.expose() == "value-a", "answer {i}"),
            (Response::Value(v), "B") => assert!(v.expose() == "value-b", "answer {i}"),
            (Response::Error(e), "MISSING") => assert_eq!(e.code, ErrorCode::NotFound),
            (_, name) => panic!("answer {i} for {name} is out of order"),
        }
    }
    // A whole request then half of the next: the first is answered while
    // the second is still arriving.
    let (first, second) = (get("A"), get("B"));
    let mut split = first.clone();
    split.extend_from_slice(&second[..3]);
    s.write_all(&split).unwrap();
    let reply = flux_protocol::codec::read_frame(&mut s, 1 << 20)
        .unwrap()
        .unwrap();
    assert!(
        matches!(decode::<Response>(&reply).unwrap(), Response::Value(v) if v.expose() == "value-a")
    );
    s.write_all(&second[3..]).unwrap();
    let reply = flux_protocol::codec::read_frame(&mut s, 1 << 20)
        .unwrap()
        .unwrap();
    assert!(
        matches!(decode::<Response>(&reply).unwrap(), Response::Value(v) if v.expose() == "value-b")
    );
}

#[test]
fn an_idle_connection_is_closed_and_a_busy_one_is_not() {
    let d = TestDaemon::start_with_config(
        "[limits]\nframe_timeout = \"200ms\"\nidle_timeout = \"1s\"\n",
    );
    d.create_project("app");
    d.ctl_ok(&["secrets", "set", "K", "v", "-p", "app"]);
    // A client asking every 300 ms for 2 s is never idle for 1 s.
    let mut busy = d.client("app");
    for _ in 0..7 {
        assert_value(&mut busy, "K", "v");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_value(&mut busy, "K", "v");
    // One that says nothing is closed once the idle timeout has passed.
    let mut idle = UnixStream::connect(d.project_socket("app")).unwrap();
    assert!(matches!(hello(&mut idle), Some(Response::Welcome(_))));
    let started = std::time::Instant::now();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 16];
    let read = idle.read(&mut buf);
    assert!(cut_off(&read), "the idle client is not cut off: {read:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed before the idle timeout"
    );
}

#[test]
fn slow_flooding_and_garbage_clients_do_not_stall_others() {
    let d = TestDaemon::start_with_config(
        "[limits]\nframe_timeout = \"300ms\"\nhandshake_timeout = \"300ms\"\nmax_connections_per_project = 4\nmax_secrets_per_project = 3\n",
    );
    d.create_project("app");
    d.create_project("other");
    d.ctl_ok(&["secrets", "set", "K", "v", "-p", "app"]);

    // Slowloris: half a frame, then silence — cut off, others served.
    let mut slow = UnixStream::connect(d.project_socket("app")).unwrap();
    assert!(matches!(hello(&mut slow), Some(Response::Welcome(_))));
    slow.write_all(&[0, 0, 0, 40, 1, 2, 3]).unwrap();
    assert_value(&mut d.client("app"), "K", "v");
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 16];
    let read = slow.read(&mut buf);
    assert!(cut_off(&read), "the slow client is cut off: {read:?}");
    drop(slow);
    // Only a length prefix, then silence: cut off as well, not left until
    // the idle timeout.
    let mut prefix_only = UnixStream::connect(d.project_socket("app")).unwrap();
    assert!(matches!(
        hello(&mut prefix_only),
        Some(Response::Welcome(_))
    ));
    prefix_only.write_all(&[0, 0, 0, 40]).unwrap();
    prefix_only
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let read = prefix_only.read(&mut buf);
    assert!(
        cut_off(&read),
        "a client that sent only a length prefix is cut off: {read:?}"
    );
    drop(prefix_only);

    // A client that never says hello is cut off too.
    let mut mute = UnixStream::connect(d.project_socket("app")).unwrap();
    mute.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let frame = flux_protocol::codec::read_frame(&mut mute, 1 << 20)
        .unwrap()
        .unwrap();
    match decode::<Response>(&frame).unwrap() {
        Response::Error(e) => assert!(e.message.contains("no handshake"), "{}", e.message),
        other => panic!("{other:?}"),
    }

    // Random bytes: answered or closed, never a crash.
    let mut junk = UnixStream::connect(d.project_socket("app")).unwrap();
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let _ = junk.write_all(&noise);
    drop(junk);

    // A flood past the per-project limit: the extra connection is refused
    // with a clear error; other projects and the control socket are served.
    // (The connections above release their slots as the daemon closes them.)
    let mut held = Vec::new();
    while held.len() < 4 {
        eventually(
            "a free slot",
            || match flux_protocol::blocking::Client::connect(d.project_socket("app")) {
                Ok(c) => {
                    held.push(c);
                    true
                }
                Err(_) => false,
            },
        );
    }
    let err = flux_protocol::blocking::Client::connect(d.project_socket("app")).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::LimitReached), "{err}");
    assert!(
        err.to_string()
            .contains("too many connections to project app"),
        "{err}"
    );
    d.client("other").list().unwrap();
    d.control().status().unwrap();
    assert_value(&mut held[0], "K", "v");
    held.pop();
    eventually("a slot frees when a client leaves", || {
        flux_protocol::blocking::Client::connect(d.project_socket("app")).is_ok()
    });

    // Secrets per project are bounded; replacing an existing one is fine.
    let admin = &mut held[0];
    admin.set("K2", SecretValue::from("2")).unwrap();
    admin.set("K3", SecretValue::from("3")).unwrap();
    let err = admin.set("K4", SecretValue::from("4")).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::LimitReached));
    admin.set("K3", SecretValue::from("3b")).unwrap();
}

#[test]
fn a_connection_over_its_request_rate_is_told_to_slow_down() {
    let d = TestDaemon::start_with_config("[limits]\nrequests_per_second = 5\n");
    d.create_project("app");
    d.ctl_ok(&["secrets", "set", "K", "v", "-p", "app"]);
    let mut c = d.client("app");
    let results: Vec<_> = (0..20).map(|_| c.get("K")).collect();
    let limited = results
        .iter()
        .filter(|r| matches!(r, Err(e) if e.code() == Some(ErrorCode::LimitReached)))
        .count();
    assert!(limited >= 10, "{limited} of 20 limited");
    assert!(results[0].is_ok(), "a burst up to the rate is served");
    // The bucket refills: the same connection is served again.
    eventually("served again", || c.get("K").is_ok());
    // Another connection has its own budget.
    assert_value(&mut d.client("app"), "K", "v");
}

fn status_field(pid: u32, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field).map(|v| v.trim().to_owned()))
        .unwrap_or_default()
}

fn core_limit_is_zero(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .is_some_and(|l| {
            l.split_whitespace().nth(4) == Some("0") && l.split_whitespace().nth(5) == Some("0")
        })
}

#[test]
fn fluxd_is_undumpable_without_cores_and_locks_its_memory() {
    let d = TestDaemon::start();
    assert!(core_limit_is_zero(d.pid()), "RLIMIT_CORE is 0");
    if nix::unistd::geteuid().is_root() {
        let locked: u64 = status_field(d.pid(), "VmLck:")
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap();
        assert!(locked > 0, "memory is locked (VmLck {locked} kB)");
    }
}

#[test]
fn as_another_user_under_a_small_memlock_limit_fluxd_still_serves() {
    if !is_root("as_another_user_under_a_small_memlock_limit_fluxd_still_serves") {
        return;
    }
    if !flux_e2e::have_tool("prlimit", "as_another_user_under_a_small_memlock_limit") {
        return;
    }
    let d = TestDaemon::unstarted(&[]);
    open_dir_to_others(&d);
    for dir in [d.state_dir(), d.runtime_dir()] {
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        nix::unistd::chown(&dir, Some(NOBODY.into()), Some(NOBODY.into())).unwrap();
    }
    let fluxd = d.fluxd_command();
    let mut cmd = Command::new("prlimit");
    cmd.arg("--memlock=8388608:8388608")
        .arg(fluxd.get_program())
        .args(fluxd.get_args())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .uid(NOBODY)
        .gid(NOBODY);
    let child = cmd.spawn().unwrap();
    // Clients trust a daemon of another user only when told its uid.
    let trust = flux_protocol::trust::Trust::for_client_of(NOBODY);
    let connect = |path| flux_protocol::blocking::Client::connect_with(path, &trust);
    eventually("fluxd as 65534 is ready", || {
        connect(d.control_socket()).is_ok()
    });
    let untrusted = flux_protocol::blocking::Client::connect(d.control_socket()).unwrap_err();
    assert!(
        untrusted.to_string().contains("owned by uid 65534"),
        "{untrusted}"
    );
    let pid = child.id();
    // prlimit execs fluxd in place, so the pid is fluxd's.
    let mut control = connect(d.control_socket()).unwrap();
    control.create_project("app").unwrap();
    // Root is an admin (not a reader) of a daemon running as 65534.
    let mut app = connect(d.project_socket("app")).unwrap();
    app.set("K", SecretValue::from("v")).unwrap();
    assert_eq!(app.list().unwrap()[0].name, "K");
    assert_eq!(
        app.get("K").unwrap_err().code(),
        Some(ErrorCode::PermissionDenied)
    );
    // Non-dumpable: the kernel makes /proc/<pid> root's, not 65534's.
    let owner = std::os::unix::fs::MetadataExt::uid(
        &std::fs::metadata(format!("/proc/{pid}/status")).unwrap(),
    );
    assert_eq!(owner, 0, "PR_SET_DUMPABLE 0");
    assert!(core_limit_is_zero(pid));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let log = stderr(&out);
    assert!(
        log.contains("LimitMEMLOCK"),
        "the log says how to grant the limit:\n{log}"
    );
}
