//! Access by workload: units, cgroups and executables from the kernel, and
//! per-secret readers — each test plays a process of the same uid as the
//! reader, holding only what such a process holds: another unit, another
//! program after an `exec`, a socket passed to it by a reader.
//!
//! The workloads are real processes placed in real cgroups: each test makes
//! `<unit>` folders in the cgroup hierarchies this machine mounts (v1's
//! `name=systemd` and v2's, the layout systemd uses) and the client moves
//! itself into one before it drops to an unprivileged uid and connects, as
//! a process systemd starts in a unit would be. Needs root and a writable
//! cgroup hierarchy; says SKIPPED otherwise.

use flux_e2e::{TestDaemon, eventually};
use flux_protocol::SecretValue;
use flux_protocol::message::{AuditQuery, Get, Hello, Request};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The uid every workload here runs as: the same for all, so only the
/// workload tells them apart.
const UID: u32 = 65534;

/// Cgroups made for one test (`/flux-e2e-<pid>.slice/<unit>` in every
/// hierarchy that can hold one), removed on drop.
pub(super) struct Units {
    pub(super) slice: String,
    roots: Vec<PathBuf>,
}

impl Units {
    pub(super) fn new(test: &str) -> Option<Self> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!(
                "SKIPPED: {test}: needs root to place processes in cgroups and play other uids"
            );
            return None;
        }
        let slice = format!(
            "flux-e2e-{}-{}.slice",
            std::process::id(),
            test.replace('_', "-")
        );
        let roots: Vec<PathBuf> = [
            "/sys/fs/cgroup/systemd",
            "/sys/fs/cgroup/unified",
            "/sys/fs/cgroup",
        ]
        .iter()
        .map(PathBuf::from)
        .filter(|r| r.join("cgroup.procs").exists())
        .filter(|r| std::fs::create_dir_all(r.join(&slice)).is_ok())
        .collect();
        if roots.is_empty() {
            eprintln!("SKIPPED: {test}: no cgroup hierarchy here can be written");
            return None;
        }
        Some(Self { slice, roots })
    }

    /// The `cgroup.procs` files of `unit`, made in every hierarchy.
    pub(super) fn unit(&self, unit: &str) -> Vec<String> {
        self.roots
            .iter()
            .map(|r| {
                let dir = r.join(&self.slice).join(unit);
                std::fs::create_dir_all(&dir).unwrap();
                dir.join("cgroup.procs").display().to_string()
            })
            .collect()
    }

    /// The unit's cgroup path, as fluxd reads it.
    pub(super) fn path(&self, unit: &str) -> String {
        format!("/{}/{unit}", self.slice)
    }
}

impl Drop for Units {
    fn drop(&mut self) {
        for root in &self.roots {
            let slice = root.join(&self.slice);
            if let Ok(entries) = std::fs::read_dir(&slice) {
                for e in entries.flatten() {
                    let _ = std::fs::remove_dir(e.path());
                }
            }
            let _ = std::fs::remove_dir(&slice);
        }
    }
}

/// A fluxd whose project `app` has `policy` (after `[projects.app]`),
/// reachable by [`UID`]'s processes, with `API_KEY` and `DB_PASSWORD` set.
pub(super) fn daemon(policy: &str) -> TestDaemon {
    let d =
        TestDaemon::start_with_config(&format!("[projects.app]\nsocket_group = {UID}\n{policy}"));
    std::fs::set_permissions(d.dir(), std::fs::Permissions::from_mode(0o711)).unwrap();
    d.create_project("app");
    let mut c = d.client("app");
    c.set("API_KEY", SecretValue::from("api-key-value"))
        .unwrap();
    c.set("DB_PASSWORD", SecretValue::from("db-password-value"))
        .unwrap();
    d
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A request as one frame, in hex (for the Python workloads).
fn frame_hex(req: &Request) -> String {
    let payload = flux_protocol::codec::encode(req).unwrap();
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&payload);
    hex(&frame)
}

pub(super) fn hello_hex() -> String {
    frame_hex(&Request::Hello(Hello {
        version: flux_protocol::PROTOCOL_VERSION,
        client: "workload".into(),
    }))
}

pub(super) fn get_hex(name: &str) -> String {
    frame_hex(&Request::Get(Get { name: name.into() }))
}

/// Python that defines `become(procs)` — move into those cgroups, then
/// drop to [`UID`] — and `ask(sock, hex)`, which sends a frame and prints
/// its answer's kind: `value <length>` or `error <code> <message>` (never a
/// value).
fn defs() -> String {
    format!(
        r#"import os, socket, struct, sys
def become(procs):
    for f in procs:
        open(f, "w").write("0")
    os.setgroups([]); os.setgid({UID}); os.setuid({UID})
def read_exact(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c: raise SystemExit("closed")
        b += c
    return b
def ask(s, frame):
    s.sendall(bytes.fromhex(frame))
    answer(s)
def answer(s):
    (n,) = struct.unpack(">I", read_exact(s, 4))
    p = read_exact(s, n)
    (kind,) = struct.unpack("<I", p[:4])
    if kind == 2:
        print("value", struct.unpack("<Q", p[4:12])[0], flush=True)
    elif kind == 1:
        (code,) = struct.unpack("<I", p[4:8])
        (mlen,) = struct.unpack("<Q", p[8:16])
        print("error", code, p[16:16 + mlen].decode(), flush=True)
    else:
        print("kind", kind, flush=True)
"#
    )
}

/// [`defs`], then `become(procs)`.
pub(super) fn prelude(procs: &[String]) -> String {
    format!("{}become({procs:?})\n", defs())
}

/// Runs `script` with `python`; its output lines.
pub(super) fn run_python(python: &Path, script: &str) -> Vec<String> {
    let out = Command::new(python).args(["-c", script]).output().unwrap();
    assert!(
        out.status.success(),
        "the workload failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A Python interpreter's real path (not a shim or a link).
fn python_binary(candidates: &[&str]) -> Option<PathBuf> {
    candidates
        .iter()
        .filter_map(|c| std::fs::canonicalize(c).ok())
        .find(|p| {
            Command::new(p)
                .args(["-c", "import socket"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

pub(super) fn system_python(test: &str) -> Option<PathBuf> {
    let p = python_binary(&["/usr/bin/python3"]);
    if p.is_none() {
        eprintln!("SKIPPED: {test}: no /usr/bin/python3 to run workloads with");
    }
    p
}

/// `NOT_FOUND`'s code on the wire.
const NOT_FOUND: &str = "1";
/// `PERMISSION_DENIED`'s code on the wire.
const PERMISSION_DENIED: &str = "4";

fn code_of(line: &str) -> &str {
    line.split(' ').nth(1).unwrap_or("")
}

#[test]
fn a_unit_reads_what_its_unit_is_given_and_no_other_unit_of_the_same_uid_does() {
    let test = "a_unit_reads_what_its_unit_is_given";
    let Some(units) = Units::new(test) else {
        return;
    };
    let Some(python) = system_python(test) else {
        return;
    };
    let d = daemon(
        "readers = { units = [\"fn-*.service\"] }\n\
         [projects.app.secrets.DB_PASSWORD]\n\
         readers = { units = [\"fn-billing.service\"] }\n",
    );
    let socket = d.project_socket("app").display().to_string();
    let script = |unit: &str| {
        format!(
            "{}s = socket.socket(socket.AF_UNIX)\ns.connect({socket:?})\nask(s, {:?})\nfor f in {:?}:\n    ask(s, f)\n",
            prelude(&units.unit(unit)),
            hello_hex(),
            [
                get_hex("API_KEY"),
                get_hex("DB_PASSWORD"),
                get_hex("NO_SUCH")
            ],
        )
    };
    // The billing function reads both secrets.
    let billing = run_python(&python, &script("fn-billing.service"));
    assert_eq!(billing[1], format!("value {}", "api-key-value".len()));
    assert_eq!(billing[2], format!("value {}", "db-password-value".len()));
    assert_eq!(code_of(&billing[3]), NOT_FOUND);

    // Another function of the same uid: its own secrets only, and the one
    // it may not read is answered exactly as one that is not set.
    let web = run_python(&python, &script("fn-web.service"));
    assert_eq!(web[1], format!("value {}", "api-key-value".len()));
    assert_eq!(code_of(&web[2]), NOT_FOUND, "a hidden secret: {}", web[2]);
    assert_eq!(
        web[2].replace("DB_PASSWORD", "X"),
        web[3].replace("NO_SUCH", "X"),
        "a hidden secret and a missing one read the same"
    );

    // A process of the same uid in another unit: no reader at all.
    let other = run_python(&python, &script("cron.service"));
    for line in &other[1..] {
        assert_eq!(code_of(line), PERMISSION_DENIED, "{line}");
    }

    // The audit log says who was refused what.
    eventually("the hidden read is audited as denied", || {
        d.control()
            .audit(AuditQuery {
                project: Some("app".into()),
                since_ms: 0,
                limit: 0,
            })
            .unwrap()
            .iter()
            .any(|r| {
                r.op == "get"
                    && r.name.as_deref() == Some("DB_PASSWORD")
                    && !r.allowed
                    && r.uid == UID
                    && r.result == "permission_denied"
            })
    });
    let _ = units.path("fn-web.service");
}

#[test]
fn a_reader_passing_its_connection_passes_its_rights_and_nothing_more() {
    let test = "a_reader_passing_its_connection";
    let Some(units) = Units::new(test) else {
        return;
    };
    let Some(python) = system_python(test) else {
        return;
    };
    let d = daemon("readers = { units = [\"fn-billing.service\"] }\n");
    let socket = d.project_socket("app").display().to_string();
    // The reader connects and hands its connected socket (SCM_RIGHTS) to a
    // process in another unit, which reads through it; then that process
    // connects on its own.
    let receiver = format!(
        "{}r = socket.socket(fileno=int(sys.argv[1]))\nmsg, fds, _, _ = socket.recv_fds(r, 16, 1)\ns = socket.socket(fileno=fds[0])\nask(s, {:?})\nt = socket.socket(socket.AF_UNIX)\nt.connect({socket:?})\nask(t, {:?})\nask(t, {:?})\n",
        prelude(&units.unit("cron.service")),
        get_hex("API_KEY"),
        hello_hex(),
        get_hex("API_KEY"),
    );
    // The receiver is started first, as root, so that it can place itself.
    let giver = format!(
        "{}import subprocess\na, b = socket.socketpair()\nchild = subprocess.Popen([sys.executable, '-c', {receiver:?}, str(b.fileno())], pass_fds=[b.fileno()])\nbecome({:?})\ns = socket.socket(socket.AF_UNIX)\ns.connect({socket:?})\nask(s, {:?})\nsocket.send_fds(a, [b'x'], [s.fileno()])\nsys.exit(child.wait())\n",
        defs(),
        units.unit("fn-billing.service"),
        hello_hex(),
    );
    let out = run_python(&python, &giver);
    // Welcome, then the receiver's three answers.
    assert_eq!(out.len(), 4, "{out:?}");
    assert_eq!(
        out[1],
        format!("value {}", "api-key-value".len()),
        "the passed connection keeps the identity of the process that connected"
    );
    assert_eq!(
        code_of(&out[3]),
        PERMISSION_DENIED,
        "its own connection is its own: {}",
        out[3]
    );
}

#[test]
fn an_executable_rule_decides_the_program_a_peer_runs_now() {
    let test = "an_executable_rule_decides_the_program_a_peer_runs_now";
    let Some(units) = Units::new(test) else {
        return;
    };
    let Some(allowed) = system_python(test) else {
        return;
    };
    // A second program to `exec` into: the same interpreter, copied
    // elsewhere (same content, another file).
    let copy_dir = tempfile::Builder::new().prefix("fxw").tempdir().unwrap();
    std::fs::set_permissions(copy_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let other = copy_dir.path().join("python3-copy");
    std::fs::copy(&allowed, &other).unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o755)).unwrap();
    let d = daemon(&format!(
        "readers = {{ executables = [{{ path = {:?} }}] }}\n",
        allowed.display().to_string()
    ));
    let socket = d.project_socket("app").display().to_string();
    let after_exec = format!(
        "{}s = socket.socket(fileno=int(sys.argv[1]))\nask(s, {:?})\n",
        defs(),
        get_hex("API_KEY"),
    );
    let before_exec = format!(
        "{}s = socket.socket(socket.AF_UNIX)\ns.connect({socket:?})\nask(s, {:?})\nask(s, {:?})\nos.set_inheritable(s.fileno(), True)\nos.execv({:?}, [{:?}, '-c', {after_exec:?}, str(s.fileno())])\n",
        prelude(&units.unit("fn-a.service")),
        hello_hex(),
        get_hex("API_KEY"),
        other.display().to_string(),
        other.display().to_string(),
    );
    let out = run_python(&allowed, &before_exec);
    assert_eq!(out.len(), 3, "{out:?}");
    assert_eq!(
        out[1],
        format!("value {}", "api-key-value".len()),
        "the named program reads"
    );
    assert_eq!(
        code_of(&out[2]),
        PERMISSION_DENIED,
        "after exec, the connection is decided as the program the process runs now: {}",
        out[2]
    );
}

#[test]
fn a_peer_whose_pid_comes_back_as_a_reader_gets_nothing() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    let test = "a_peer_whose_pid_comes_back_as_a_reader_gets_nothing";
    let Some(units) = Units::new(test) else {
        return;
    };
    let Some(python) = system_python(test) else {
        return;
    };
    if std::fs::write("/proc/sys/kernel/ns_last_pid", "1000").is_err() {
        eprintln!("SKIPPED: {test}: cannot choose the next pid (/proc/sys/kernel/ns_last_pid)");
        return;
    }
    // One connection at a time: the attacker's waits in the listen backlog,
    // not yet identified, while its pid is recycled.
    let d =
        daemon("readers = { units = [\"fn-trusted.service\"] }\n[limits]\nmax_connections = 1\n");
    let socket = d.project_socket("app").display().to_string();
    let mut hold = std::os::unix::net::UnixStream::connect(d.project_socket("app")).unwrap();
    hold.write_all(&hex_bytes(&hello_hex())).unwrap();
    let _ = flux_protocol::codec::read_frame(&mut hold, 1 << 20).unwrap();

    // The attacker, in another unit: connects (queued), sends its requests,
    // leaves the socket to a child and exits, freeing its pid.
    let attacker_script = format!(
        "{}s = socket.socket(socket.AF_UNIX)\ns.connect({socket:?})\ns.sendall(bytes.fromhex({:?} + {:?}))\nif os.fork() == 0:\n    sys.stdin.read()\n    try:\n        answer(s)\n        answer(s)\n    except (SystemExit, OSError):\n        print('closed', flush=True)\n    os._exit(0)\nprint(os.getpid(), flush=True)\nos._exit(0)\n",
        prelude(&units.unit("cron.service")),
        hello_hex(),
        get_hex("API_KEY"),
    );
    let mut attacker = Command::new(&python)
        .args(["-c", &attacker_script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(attacker.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let peer_pid: u32 = line.trim().parse().unwrap();
    attacker.wait().unwrap();

    // A reader — a process in the trusted unit — takes the pid.
    let impostor_script = format!(
        "{}print(os.getpid(), flush=True)\nsys.stdin.read()\n",
        prelude(&units.unit("fn-trusted.service"))
    );
    let mut impostor = None;
    for _ in 0..200 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (peer_pid - 1).to_string()).unwrap();
        let mut child = Command::new(&python)
            .args(["-c", &impostor_script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        if child.id() == peer_pid {
            let mut ready = String::new();
            BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut ready)
                .unwrap();
            assert_eq!(ready.trim(), peer_pid.to_string());
            impostor = Some(child);
            break;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    let Some(mut impostor) = impostor else {
        eprintln!("SKIPPED: {test}: the pid did not come back within 200 tries (a busy machine)");
        return;
    };
    let cgroup = std::fs::read_to_string(format!("/proc/{peer_pid}/cgroup")).unwrap();
    assert!(
        cgroup.contains("fn-trusted.service"),
        "the pid is now a reader's: {cgroup}"
    );

    // fluxd accepts the attacker's connection only now.
    drop(hold);
    drop(attacker.stdin.take());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let _ = impostor.kill();
    let _ = impostor.wait();
    assert!(
        !rest.contains("value"),
        "the recycled pid's unit must not be the peer's: {rest}"
    );
    assert_eq!(
        rest.trim(),
        "closed",
        "a peer that exited before it was identified is refused"
    );
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn a_read_is_audited_with_the_readers_unit_and_fluxctl_audit_selects_by_unit() {
    use flux_protocol::message::{AuditTrailEntry, AuditTrailQuery};
    use sha2::{Digest, Sha256};
    let test = "a_read_is_audited_with_the_readers_unit";
    let Some(units) = Units::new(test) else {
        return;
    };
    let Some(python) = system_python(test) else {
        return;
    };
    let hash = hex(&Sha256::digest(std::fs::read(&python).unwrap()));
    // Readers: the functions' units, running this interpreter (so fluxd
    // hashes each peer's executable).
    let d = daemon(&format!(
        "readers = {{ units = [\"fn-*.service\"], executables = [{{ sha256 = \"{hash}\" }}] }}\n"
    ));
    let socket = d.project_socket("app").display().to_string();
    let script = |unit: &str| {
        format!(
            "{}s = socket.socket(socket.AF_UNIX)\ns.connect({socket:?})\nask(s, {:?})\nask(s, {:?})\nask(s, {:?})\n",
            prelude(&units.unit(unit)),
            hello_hex(),
            get_hex("API_KEY"),
            get_hex("API_KEY"),
        )
    };
    let billing = run_python(&python, &script("fn-billing.service"));
    assert_eq!(billing[1], format!("value {}", "api-key-value".len()));
    let cron = run_python(&python, &script("cron.service"));
    assert_eq!(code_of(&cron[1]), PERMISSION_DENIED, "{}", cron[1]);

    let trail = |unit: Option<&str>| -> Vec<AuditTrailEntry> {
        d.control()
            .audit_trail(AuditTrailQuery {
                project: Some("app".into()),
                since_ms: 0,
                limit: 0,
                unit: unit.map(str::to_owned),
            })
            .unwrap()
    };
    // The two reads of the billing function: one summary, with its unit,
    // slice, cgroup and the hash fluxd checked.
    let entries = trail(None);
    let read = entries
        .iter()
        .find(|e| e.op == "get" && e.allowed && e.uid == UID)
        .unwrap_or_else(|| panic!("no read by the function: {entries:?}"));
    assert_eq!(read.count, 2);
    assert_eq!(read.unit.as_deref(), Some("fn-billing.service"));
    assert_eq!(read.slice.as_deref(), Some(units.slice.as_str()));
    assert_eq!(
        read.cgroup.as_deref(),
        Some(units.path("fn-billing.service").as_str())
    );
    assert_eq!(read.exe_sha256.as_deref(), Some(hash.as_str()));
    // The refusals of the other unit of the same uid and program: its own
    // lines, its own unit.
    let denied: Vec<&AuditTrailEntry> = entries
        .iter()
        .filter(|e| e.op == "get" && !e.allowed && e.uid == UID)
        .collect();
    assert!(!denied.is_empty(), "{entries:?}");
    for e in &denied {
        assert_eq!(e.unit.as_deref(), Some("cron.service"), "{e:?}");
        assert_eq!(e.result, "permission_denied");
    }
    // Selected by unit, by the daemon.
    let billing_only = trail(Some("fn-*.service"));
    assert!(!billing_only.is_empty());
    assert!(
        billing_only
            .iter()
            .all(|e| e.unit.as_deref() == Some("fn-billing.service")),
        "{billing_only:?}"
    );
    assert!(
        trail(Some("cron.service"))
            .iter()
            .all(|e| e.unit.as_deref() == Some("cron.service") && !e.allowed)
    );

    // fluxctl audit --unit, as JSON Lines.
    let json = |args: &[&str]| -> Vec<serde_json::Value> {
        let mut all = vec!["audit", "--project", "app", "--json"];
        all.extend_from_slice(args);
        d.ctl_ok(&all)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let lines = json(&["--unit", "fn-*.service"]);
    assert!(!lines.is_empty());
    for l in &lines {
        assert_eq!(l["unit"], "fn-billing.service", "{l}");
        assert_eq!(l["slice"], units.slice.as_str(), "{l}");
        assert_eq!(
            l["cgroup"],
            units.path("fn-billing.service").as_str(),
            "{l}"
        );
        assert_eq!(l["exe_sha256"], hash.as_str(), "{l}");
    }
    let cron_lines = json(&["--unit", "cron.service"]);
    assert!(!cron_lines.is_empty());
    assert!(
        cron_lines.iter().all(|l| l["unit"] == "cron.service"),
        "{cron_lines:?}"
    );
    assert!(json(&["--unit", "nothing-*.service"]).is_empty());
    // Every line says what it knows and what it does not.
    for l in json(&[]) {
        for key in ["unit", "slice", "cgroup", "exe_sha256"] {
            assert!(l.get(key).is_some(), "{key} missing: {l}");
        }
    }
    // The table shows the unit.
    let text = d.ctl_ok(&["audit", "--project", "app"]);
    assert!(text.lines().next().unwrap().contains("UNIT"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("get ×2") && l.contains("fn-billing.service")),
        "{text}"
    );
    // A pattern that cannot match a unit name is refused, not answered
    // with nothing.
    let out = d.run_ctl(&["audit", "--unit", "/system.slice/x.service"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unit pattern"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_subscriber_is_not_told_of_changes_to_a_secret_it_may_not_read() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let test = "a_subscriber_is_not_told_of_changes_to_a_secret_it_may_not_read";
    let Some(units) = Units::new(test) else {
        return;
    };
    let Some(python) = system_python(test) else {
        return;
    };
    let d = daemon(
        "readers = { units = [\"fn-*.service\"] }\n\
         [projects.app.secrets.DB_PASSWORD]\n\
         readers = { units = [\"fn-billing.service\"] }\n",
    );
    let socket = d.project_socket("app").display().to_string();
    // A reader outside DB_PASSWORD's readers subscribes, says so, and
    // prints the names of the first event it gets.
    let script = format!(
        "{}s = socket.socket(socket.AF_UNIX)\ns.connect({socket:?})\nask(s, {:?})\ns.sendall(bytes.fromhex({:?}))\n(n,) = struct.unpack('>I', read_exact(s, 4))\nread_exact(s, n)\nprint('subscribed', flush=True)\n(n,) = struct.unpack('>I', read_exact(s, 4))\np = read_exact(s, n)\n(count,) = struct.unpack('<Q', p[16:24])\nat, names = 24, []\nfor _ in range(count):\n    (l,) = struct.unpack('<Q', p[at:at + 8])\n    names.append(p[at + 8:at + 8 + l].decode())\n    at += 8 + l\nprint('event', ','.join(names), flush=True)\n",
        prelude(&units.unit("fn-web.service")),
        hello_hex(),
        frame_hex(&Request::Subscribe),
    );
    let mut child = Command::new(&python)
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap(); // the Welcome
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "subscribed");
    let mut admin = d.client("app");
    admin
        .set("DB_PASSWORD", SecretValue::from("rotated-db-password"))
        .unwrap();
    admin
        .set("API_KEY", SecretValue::from("rotated-api-key"))
        .unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    let _ = child.wait();
    assert_eq!(
        line.trim(),
        "event API_KEY",
        "the rotation of a secret this reader may not read is not announced to it"
    );
}
