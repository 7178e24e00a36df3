//! The audit log under a flood, played by a member of a project's socket
//! group with no role: it may connect, and every request it makes is
//! denied. Twenty thousand connections, one denial each, must not push the
//! admin's `set` or a reader's reads out of the log; rotation that removes
//! entries younger than `[audit] keep_for` must say so (log, metrics,
//! `fluxctl status`), name the uid that filled the log, and no file may
//! pass `max_bytes`.
//!
//! Playing another uid needs root (CI runs as root): the flood then runs in
//! this test binary started again as that uid ([`flood_helper`]).
//! Elsewhere the flood is played by this test's own uid, with a request
//! the policy denies to anyone on a project socket (a control request).

use crate::stderr;
use flux_e2e::{TestDaemon, eventually};
use flux_protocol::codec::{decode, encode, read_frame, write_frame};
use flux_protocol::message::{Get, Hello, Request, Response};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;

const GROUP: u32 = 65534;
const READER: u32 = 65534;
const NO_ROLE: u32 = 65533;
const CONNECTIONS: usize = 20_000;
const VALUE: &str = "flood-test-value-never-logged";

/// Opens `n` connections to `socket`, each sending one request that is
/// denied: `get` (a peer with no role) or `list_projects` (a control
/// request on a project socket, denied to anyone).
fn flood(socket: &Path, n: usize, request: &str) {
    let hello = encode(&Request::Hello(Hello {
        version: 1,
        client: "flood".into(),
    }))
    .unwrap();
    let request = encode(&match request {
        "get" => Request::Get(Get {
            name: "API_KEY".into(),
        }),
        _ => Request::ListProjects,
    })
    .unwrap();
    for i in 0..n {
        let mut s = UnixStream::connect(socket).unwrap_or_else(|e| panic!("connection {i}: {e}"));
        write_frame(&mut s, &hello).unwrap();
        let welcome = read_frame(&mut s, 1 << 20).unwrap().unwrap();
        assert!(matches!(
            decode::<Response>(&welcome).unwrap(),
            Response::Welcome(_)
        ));
        write_frame(&mut s, &request).unwrap();
        let answer = read_frame(&mut s, 1 << 20).unwrap().unwrap();
        assert!(
            matches!(decode::<Response>(&answer).unwrap(), Response::Error(_)),
            "connection {i}: the request was not denied"
        );
    }
}

/// The flood, as another uid: started by
/// [`a_flood_of_denied_connections_keeps_the_admins_set_and_the_readers_reads`]
/// with `FLUX_FLOOD_SOCKET` set; does nothing otherwise.
#[test]
#[ignore = "started as another uid by a_flood_of_denied_connections_keeps_the_admins_set_and_the_readers_reads"]
fn flood_helper() {
    let Some(socket) = std::env::var_os("FLUX_FLOOD_SOCKET") else {
        return;
    };
    let n = std::env::var("FLUX_FLOOD_CONNECTIONS")
        .unwrap()
        .parse()
        .unwrap();
    flood(Path::new(&socket), n, "get");
}

/// Every line of the audit log, rotated files included, and their bytes.
fn audit_files(d: &TestDaemon, keep: u32) -> (Vec<serde_json::Value>, u64) {
    let log = d.layout().audit_log();
    let mut lines = Vec::new();
    let mut bytes = 0;
    for n in (0..=keep).rev() {
        let path = match n {
            0 => log.clone(),
            n => format!("{}.{n}", log.display()).into(),
        };
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        bytes += text.len() as u64;
        lines.extend(text.lines().map(|l| serde_json::from_str(l).unwrap()));
    }
    (lines, bytes)
}

/// The audit entries, as `fluxctl audit --json` prints them (this writes
/// pending folded lines first).
fn audit(d: &TestDaemon) -> Vec<serde_json::Value> {
    d.ctl_ok(&["audit", "--json", "--limit", "100000"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A metric's value in `fluxctl metrics` (0 when absent).
fn metric(d: &TestDaemon, series: &str) -> f64 {
    d.ctl_ok(&["metrics"])
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn a_flood_of_denied_connections_keeps_the_admins_set_and_the_readers_reads() {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        eprintln!(
            "a_flood_of_denied_connections…: not root, so the flood is played by this uid with a request denied to anyone (CI runs it as a no-role uid)"
        );
    }
    // 3 × 64 KiB of log: twenty thousand lines of denials (about 5 MB)
    // would rotate everything else out many times over.
    let d = TestDaemon::start_with_config(&format!(
        r#"
control_group = {GROUP}
[projects.app]
readers = {{ users = [{READER}] }}
socket_group = {GROUP}
[audit]
max_bytes = 65536
keep = 2
"#
    ));
    std::fs::set_permissions(d.dir(), std::fs::Permissions::from_mode(0o711)).unwrap();
    d.create_project("app");
    // The admin's set, and a reader's read.
    d.ctl_ok(&["secrets", "set", "API_KEY", VALUE, "-p", "app"]);
    if root {
        let out = d
            .ctl()
            .args(["run", "-p", "app", "--", "true"])
            .uid(READER)
            .gid(GROUP)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let socket = d.project_socket("app");
    let started = std::time::Instant::now();
    let flooder = if root {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "audit_flood::flood_helper",
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env("FLUX_FLOOD_SOCKET", &socket)
            .env("FLUX_FLOOD_CONNECTIONS", CONNECTIONS.to_string())
            .current_dir("/")
            .uid(NO_ROLE)
            .gid(GROUP)
            .output()
            .unwrap();
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("1 passed"),
            "the flood as uid {NO_ROLE}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
        NO_ROLE
    } else {
        flood(&socket, CONNECTIONS, "list_projects");
        nix::unistd::geteuid().as_raw()
    };
    let took = started.elapsed();

    // What matters: the admin's set and the reader's read are still in the
    // log (`fluxctl audit` first writes what is folded).
    let entries = audit(&d);
    let (lines, bytes) = audit_files(&d, 2);
    assert!(
        lines
            .iter()
            .any(|e| e["op"] == "write" && e["name"] == "API_KEY" && e["allowed"] == true),
        "the admin's set was pushed out of the audit log"
    );
    if root {
        assert!(
            lines
                .iter()
                .any(|e| e["uid"] == READER && e["op"] == "get_all" && e["allowed"] == true),
            "the reader's read was pushed out of the audit log"
        );
    }
    let denied: Vec<&serde_json::Value> = entries
        .iter()
        .filter(|e| e["uid"] == flooder && e["allowed"] == false)
        .collect();
    let counted: u64 = denied.iter().map(|e| e["count"].as_u64().unwrap()).sum();
    assert_eq!(counted, CONNECTIONS as u64, "every denial is counted");
    // A hundred in full, ten a minute more, and a folded line per
    // interval (60 s).
    let bound = 100 + took.as_secs() as usize / 6 + took.as_secs() as usize / 60 + 3;
    assert!(
        denied.len() <= bound,
        "{} lines for {CONNECTIONS} denials in {took:?}",
        denied.len()
    );
    let folded = denied.iter().max_by_key(|e| e["count"].as_u64()).unwrap();
    assert!(folded["count"].as_u64().unwrap() > 19_000, "{folded}");
    assert!(folded["first"].is_string(), "{folded}");

    let line_bytes = |e: &serde_json::Value| serde_json::to_string(e).unwrap().len() as u64 + 1;
    let in_full = denied
        .iter()
        .find(|e| e["count"] == 1)
        .map(|e| line_bytes(e));
    eprintln!(
        "audit_flood: {CONNECTIONS} denied connections in {took:.1?} wrote {} lines of denials; the log holds {bytes} bytes in all ({} lines); one line per denial would be about {} bytes",
        denied.len(),
        lines.len(),
        in_full.unwrap_or(0) * CONNECTIONS as u64
    );
    assert!(
        bytes < 65536,
        "{bytes} bytes: the flood made the log rotate"
    );
    assert_eq!(metric(&d, "flux_audit_dropped_files_total"), 0.0);
    assert_eq!(metric(&d, "flux_audit_dropped_young_entries_total"), 0.0);
    assert!(metric(&d, "flux_audit_folded_total") >= 19_000.0);
    let status = d.ctl_ok(&["status"]);
    assert!(!status.contains("were lost"), "{status}");
    let log = std::fs::read(d.layout().audit_log()).unwrap();
    flux_e2e::assert_no_secret(&log, VALUE, "the audit log");
}

#[test]
fn rotation_that_removes_young_entries_says_so_and_no_file_passes_max_bytes() {
    // 4 KiB files, one kept: a few dozen writes remove entries of this
    // minute, far younger than the default keep_for of seven days.
    let d = TestDaemon::start_with_config("[audit]\nmax_bytes = 4096\nkeep = 1\n");
    d.create_project("app");
    assert_eq!(metric(&d, "flux_audit_dropped_files_total"), 0.0);
    // Writes from 8 connections at once, so the writer takes many lines
    // in one batch (a batch used to be written whole, then rotated).
    std::thread::scope(|s| {
        for t in 0..8 {
            let d = &d;
            s.spawn(move || {
                let mut c = d.client("app");
                for i in 0..25 {
                    c.set(&format!("K{t}_{i}"), VALUE.into()).unwrap();
                }
            });
        }
    });
    let entries = audit(&d);
    let log = d.layout().audit_log();
    for f in [log.clone(), format!("{}.1", log.display()).into()] {
        let len = std::fs::metadata(&f).unwrap().len();
        assert!(
            len <= 4096,
            "{} is {len} bytes, over max_bytes",
            f.display()
        );
    }
    assert!(!Path::new(&format!("{}.2", log.display())).exists());
    let kept = entries.iter().filter(|e| e["op"] == "set").count() as f64;
    let files = metric(&d, "flux_audit_dropped_files_total");
    let young = metric(&d, "flux_audit_dropped_young_entries_total");
    assert!(files >= 1.0, "{files}");
    assert!(young >= 200.0 - kept, "{young} lost, {kept} kept of 200");
    // Loud: an error in fluxd's log, the count in `fluxctl status`, and
    // the uid that filled the log named and counted.
    eventually("the loss in fluxd's log", || {
        d.log()
            .contains("audit entries younger than [audit] keep_for (7days) are lost")
    });
    let me = nix::unistd::geteuid().as_raw();
    assert!(
        d.log()
            .contains(&format!("uid {me} drives the audit log's rotation")),
        "{}",
        d.log()
    );
    assert!(
        metric(
            &d,
            &format!("flux_audit_rotation_drivers_total{{uid=\"{me}\"}}")
        ) >= 1.0
    );
    let status = d.ctl_ok(&["status"]);
    assert!(
        status.contains("audit entries were lost: the log could not be written, or rotation removed entries younger than [audit] keep_for"),
        "{status}"
    );
    let json: serde_json::Value = serde_json::from_str(&d.ctl_ok(&["status", "--json"])).unwrap();
    assert_eq!(json["audit"]["dropped"].as_f64(), Some(young));
    assert_eq!(json["audit"]["writes_refused"], false, "writes go on");
    let text = std::fs::read(&log).unwrap();
    flux_e2e::assert_no_secret(&text, VALUE, "the audit log");
    flux_e2e::assert_no_secret(d.log().as_bytes(), VALUE, "fluxd's log");
}
