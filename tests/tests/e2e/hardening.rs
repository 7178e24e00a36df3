//! What the file system or a client hands fluxd is not trusted: each test
//! plays an attacker with only what that attacker holds — another local
//! user who squats a runtime folder, a writer in the state folder (special
//! files, an older vault), someone who deletes a key file — and checks that
//! nothing is lost and nothing is sent where it should not go.
//!
//! Tests that switch to other uids or need root's chown print SKIPPED
//! without root.

use crate::{assert_value, last_error, stderr};
use flux_e2e::{TestDaemon, bin, eventually};
use flux_protocol::ErrorCode;
use flux_protocol::SecretValue;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ATTACKER: u32 = 65534;
const VICTIM: u32 = 65533;

fn is_root(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        eprintln!("SKIPPED: {test}: needs root to play other uids (CI runs as root)");
    }
    root
}

fn short_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("fxh")
        .tempdir_in("/tmp")
        .unwrap()
}

/// A runtime folder as another user would plant it: owned by `owner`,
/// holding listening `control.sock` and `projects/app.sock`.
struct Squat {
    dir: PathBuf,
    listeners: Vec<UnixListener>,
}

impl Squat {
    fn plant(dir: PathBuf, owner: u32, mode: u32) -> Self {
        std::fs::create_dir_all(dir.join("projects")).unwrap();
        let mut listeners = Vec::new();
        for sock in [dir.join("control.sock"), dir.join("projects/app.sock")] {
            let l = UnixListener::bind(&sock).unwrap();
            l.set_nonblocking(true).unwrap();
            std::os::unix::fs::lchown(&sock, Some(owner), Some(owner)).unwrap();
            listeners.push(l);
        }
        for d in [dir.join("projects"), dir.clone()] {
            std::os::unix::fs::chown(&d, Some(owner), Some(owner)).unwrap();
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        Self { dir, listeners }
    }

    /// True when no client ever connected to the planted sockets.
    fn untouched(&self) -> bool {
        self.listeners.iter().all(|l| l.accept().is_err())
    }
}

impl Drop for Squat {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn fluxctl_as(uid: u32, envs: &[(&str, &Path)], args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(bin("fluxctl"));
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .envs(envs.iter().map(|(k, v)| (*k, *v)))
        .args(args)
        .current_dir("/")
        .stdin(Stdio::null())
        .uid(uid)
        .gid(uid);
    cmd.output().unwrap()
}

#[test]
fn a_squatted_runtime_folder_gets_nothing_from_fluxctl() {
    if !is_root("a_squatted_runtime_folder_gets_nothing_from_fluxctl") {
        return;
    }
    // The default folder of a user with no FLUX_RUNTIME_DIR or
    // XDG_RUNTIME_DIR (sudo, cron, env -i), planted by another user.
    let squat = Squat::plant(
        PathBuf::from(format!("/tmp/flux-{VICTIM}")),
        ATTACKER,
        0o755,
    );
    for args in [
        &["secrets", "set", "API_KEY", "victim-value", "-p", "app"][..],
        &["run", "-p", "app", "--", "true"],
        &["status"],
    ] {
        let out = fluxctl_as(VICTIM, &[], args);
        assert_eq!(out.status.code(), Some(4), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("refusing to use"), "{args:?}: {err}");
        assert!(err.contains(&format!("owned by uid {ATTACKER}")), "{err}");
        assert!(!err.contains("victim-value"), "the value is not echoed");
    }
    assert!(squat.untouched(), "the squatter received a connection");
    drop(squat);

    // A folder others can write, even the victim's own: refused.
    let dir = short_dir();
    let open = Squat::plant(dir.path().join("run"), VICTIM, 0o777);
    let out = fluxctl_as(VICTIM, &[("FLUX_RUNTIME_DIR", &open.dir)], &["status"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("can be written by other users"),
        "{}",
        stderr(&out)
    );
    assert!(open.untouched());
}

#[test]
fn a_socket_served_by_another_user_is_refused_by_its_peer_credentials() {
    if !is_root("a_socket_served_by_another_user_is_refused_by_its_peer_credentials") {
        return;
    }
    if !flux_e2e::have_tool("python3", "a_socket_served_by_another_user") {
        return;
    }
    // The socket and its folders are root's — only the process listening
    // is another user's: bound as root, it drops to 65534 before listen(),
    // where the kernel records who listens.
    let dir = short_dir();
    let run = dir.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    let sock = run.join("control.sock");
    let script = format!(
        "import os,socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.bind({:?})\nos.setgid({ATTACKER});os.setuid({ATTACKER})\ns.listen()\nprint('ready',flush=True)\nc,_=s.accept()\nc.settimeout(5)\nn=0\ntry:\n  while True:\n    b=c.recv(4096)\n    if not b: break\n    n+=len(b)\nexcept Exception: pass\nprint(n,flush=True)\n",
        sock.display().to_string()
    );
    let mut server = Command::new("python3")
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = server.stdout.take().unwrap();
    let mut ready = [0u8; 6];
    out.read_exact(&mut ready).unwrap();
    let ctl = Command::new(bin("fluxctl"))
        .env("FLUX_RUNTIME_DIR", &run)
        .args(["status"])
        .output()
        .unwrap();
    assert_eq!(ctl.status.code(), Some(4), "{}", stderr(&ctl));
    assert!(
        stderr(&ctl).contains(&format!("runs as uid {ATTACKER}")),
        "{}",
        stderr(&ctl)
    );
    let mut received = String::new();
    out.read_to_string(&mut received).unwrap();
    let _ = server.wait();
    assert_eq!(
        received.trim(),
        "0",
        "not one byte was sent to the impostor"
    );
}

#[test]
fn fluxd_refuses_a_runtime_folder_it_does_not_own_and_follows_no_link() {
    if !is_root("fluxd_refuses_a_runtime_folder_it_does_not_own_and_follows_no_link") {
        return;
    }
    let d = TestDaemon::unstarted(&[]);
    let run = d.runtime_dir();
    // Another user's folder.
    std::fs::create_dir(&run).unwrap();
    std::os::unix::fs::chown(&run, Some(ATTACKER), Some(ATTACKER)).unwrap();
    let out = d.fluxd_command().output().unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("owned by uid {ATTACKER}")),
        "{}",
        stderr(&out)
    );
    // fluxd's own, but open to everyone.
    std::os::unix::fs::chown(&run, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = d.fluxd_command().output().unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("can be written by other users"),
        "{}",
        stderr(&out)
    );
    // A symlink where the projects folder goes: never followed or chmod'ed.
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
    let elsewhere = d.dir().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink(&elsewhere, run.join("projects")).unwrap();
    let out = d.fluxd_command().output().unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains("not a folder"), "{}", stderr(&out));
    let mode = std::fs::metadata(&elsewhere).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o755, "the link's target was not touched");
}

#[test]
fn a_socket_swapped_for_a_link_is_not_chmoded_on_reload() {
    if !is_root("a_socket_swapped_for_a_link_is_not_chmoded_on_reload") {
        return;
    }
    let d = TestDaemon::start_with_config("[projects.web]\nsocket_group = 65534\n");
    d.create_project("web");
    // Someone with write access to the runtime folder (only fluxd's uid or
    // root can: this is root playing a bug) swaps the socket for a link.
    let secret = d.dir().join("root-only");
    std::fs::write(&secret, "x").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let sock = d.project_socket("web");
    std::fs::remove_file(&sock).unwrap();
    std::os::unix::fs::symlink(&secret, &sock).unwrap();
    d.sighup();
    eventually("the reload is done", || {
        d.log().contains("access policy reloaded")
    });
    let meta = std::fs::metadata(&secret).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600, "mode unchanged");
    assert_eq!(meta.gid(), 0, "group unchanged");
}

/// Runs `f` on a thread and fails if it takes longer than `limit`.
fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what} did not finish within {limit:?}: it hangs"))
}

#[test]
fn special_files_in_place_of_a_vault_hang_nothing() {
    let mut d = TestDaemon::start();
    d.create_project("app");
    d.create_project("other");
    d.ctl_ok(&["secrets", "set", "K", "v", "-p", "other"]);
    // A FIFO renamed over the vault.
    let fifo = d.state_dir().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    std::fs::rename(&fifo, d.vault_path("app")).unwrap();
    eventually("the FIFO is reported", || {
        d.control().status().unwrap().projects.iter().any(|p| {
            p.name == "app"
                && p.last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("not a regular file"))
        })
    });
    let ctl = d.ctl();
    let set = within(Duration::from_secs(20), "a set over a FIFO", move || {
        let mut ctl = ctl;
        ctl.args(["secrets", "set", "A", "1", "-p", "app"])
            .output()
            .unwrap()
    });
    assert!(set.status.success(), "{}", stderr(&set));
    let ctl = d.ctl();
    let create = within(Duration::from_secs(20), "a project create", move || {
        let mut ctl = ctl;
        ctl.args(["projects", "create", "third"]).output().unwrap()
    });
    assert!(create.status.success(), "{}", stderr(&create));
    // A restart with a FIFO in place serves every other project, reports
    // that one, and stops cleanly.
    let fifo = d.state_dir().join("fifo2");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    std::fs::rename(&fifo, d.vault_path("app")).unwrap();
    assert!(d.stop().success());
    d.restart();
    assert_value(&mut d.client("other"), "K", "v");
    let app = d.client("app").get("A").unwrap_err();
    assert!(app.to_string().contains("not a regular file"), "{app}");
    let started = Instant::now();
    assert!(d.stop().success(), "SIGTERM stops it");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_huge_sparse_vault_is_refused_before_it_is_read() {
    let d = TestDaemon::start();
    d.create_project("app");
    d.ctl_ok(&["secrets", "set", "K", "v", "-p", "app"]);
    let sparse = d.state_dir().join("sparse");
    std::fs::File::create(&sparse)
        .unwrap()
        .set_len(4 << 30)
        .unwrap();
    std::fs::rename(&sparse, d.vault_path("app")).unwrap();
    eventually("the oversized vault is reported", || {
        d.control().status().unwrap().projects[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("4294967296 bytes"))
    });
    assert_value(&mut d.client("app"), "K", "v");
    let rss_kb: u64 = std::fs::read_to_string(format!("/proc/{}/status", d.pid()))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(rss_kb < 256 * 1024, "fluxd holds {rss_kb} kB");
}

#[test]
fn a_key_file_deleted_while_serving_is_written_back_before_a_write_is_acknowledged() {
    let mut d = TestDaemon::start();
    d.create_project("app");
    std::fs::remove_file(d.key_path("app")).unwrap();
    eventually("the missing key is reported", || {
        d.control().status().unwrap().projects[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("key file is missing"))
    });
    d.ctl_ok(&["secrets", "set", "K", "kept", "-p", "app"]);
    assert!(d.key_path("app").exists(), "the key is back on disk");
    let mode = std::fs::metadata(d.key_path("app")).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o600);
    d.stop();
    d.restart();
    assert_value(&mut d.client("app"), "K", "kept");
}

#[test]
fn an_older_vault_put_back_is_refused_while_running_and_after_a_restart() {
    let mut d = TestDaemon::start();
    d.create_project("app");
    d.ctl_ok(&["secrets", "set", "K", "old", "-p", "app"]);
    let old = std::fs::read(d.vault_path("app")).unwrap();
    d.ctl_ok(&["secrets", "set", "K", "new", "-p", "app"]);
    let put_back = |d: &TestDaemon| {
        let staging = d.state_dir().join("staging");
        std::fs::write(&staging, &old).unwrap();
        std::fs::rename(&staging, d.vault_path("app")).unwrap();
    };
    put_back(&d);
    eventually("the rollback is reported", || {
        last_error(&d, "app").is_some_and(|e| e.contains("refused as a rollback"))
    });
    assert_value(&mut d.client("app"), "K", "new");
    // Restarted on the older vault: still refused, nothing served from it.
    d.stop();
    d.restart();
    let err = d.client("app").get("K").unwrap_err();
    assert!(err.to_string().contains("refused as a rollback"), "{err}");
    let status = d.run_ctl(&["status"]);
    assert_eq!(
        status.status.code(),
        Some(7),
        "status: a project is unhealthy"
    );
    assert!(String::from_utf8_lossy(&status.stdout).contains("fluxctl vault restore"));
    // Restoring it on purpose serves it, and a restart keeps it.
    let out = d.ctl_ok(&["vault", "restore", "-p", "app"]);
    assert!(out.contains("Vault restored"), "{out}");
    assert_value(&mut d.client("app"), "K", "old");
    assert!(last_error(&d, "app").is_none());
    d.stop();
    d.restart();
    assert_value(&mut d.client("app"), "K", "old");
    // Nothing to restore when the vault is the served one.
    let out = d.run_ctl(&["vault", "restore", "-p", "app"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("nothing to restore"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_project_whose_first_revision_cannot_be_recorded_is_not_created_and_leaves_nothing() {
    let d = TestDaemon::start();
    let record = d.layout().revision("app");
    std::fs::create_dir_all(record.join("blocker")).unwrap();
    let out = d.run_ctl(&["projects", "create", "app"]);
    assert!(!out.status.success(), "created without its revision record");
    assert!(!d.key_path("app").exists(), "a key was left behind");
    assert!(!d.vault_path("app").exists(), "a vault was left behind");
    let listed = d.ctl_ok(&["projects", "list"]);
    assert!(!listed.contains("app"), "listed: {listed}");
    std::fs::remove_dir_all(&record).unwrap();
    d.create_project("app");
    d.ctl_ok(&["secrets", "set", "K", "v", "-p", "app"]);
    assert_value(&mut d.client("app"), "K", "v");
}

#[test]
fn a_write_whose_revision_cannot_be_recorded_still_stands_and_rollbacks_stay_refused() {
    let d = TestDaemon::start();
    d.create_project("app");
    d.ctl_ok(&["secrets", "set", "K", "old", "-p", "app"]);
    let old = std::fs::read(d.vault_path("app")).unwrap();
    // The revision record cannot be replaced (a folder now stands where
    // the file was), as when the disk fills between the vault and the
    // record: the vault is already durable and newest, so the set stands.
    let record = d.layout().revision("app");
    std::fs::remove_file(&record).unwrap();
    std::fs::create_dir_all(record.join("blocker")).unwrap();
    d.ctl_ok(&["secrets", "set", "K", "new", "-p", "app"]);
    assert_value(&mut d.client("app"), "K", "new");
    assert!(
        d.log().contains("its revision cannot be recorded"),
        "no log line about the record"
    );
    // The floor in memory still refuses the older vault put back.
    let staging = d.state_dir().join("staging");
    std::fs::write(&staging, &old).unwrap();
    std::fs::rename(&staging, d.vault_path("app")).unwrap();
    eventually("the rollback is reported", || {
        last_error(&d, "app").is_some_and(|e| e.contains("refused as a rollback"))
    });
    assert_value(&mut d.client("app"), "K", "new");
}

#[test]
fn a_project_whose_socket_path_is_taken_is_reported_and_the_others_served() {
    let mut d = TestDaemon::start();
    d.create_project("app");
    d.create_project("other");
    d.ctl_ok(&["secrets", "set", "K", "v", "-p", "other"]);
    d.stop();
    std::fs::write(d.project_socket("app"), "not a socket").unwrap();
    d.restart();
    assert_value(&mut d.client("other"), "K", "v");
    let err = last_error(&d, "app").unwrap();
    assert!(
        err.contains("not served") && err.contains("not a socket"),
        "{err}"
    );
    std::fs::remove_file(d.project_socket("app")).unwrap();
    d.sighup();
    eventually("app is served after the file moved away", || {
        flux_protocol::blocking::Client::connect(d.project_socket("app")).is_ok()
    });
    assert!(last_error(&d, "app").is_none());
}

#[test]
fn the_control_socket_answers_while_project_connections_are_at_their_limit() {
    let d = TestDaemon::start_with_config("[limits]\nmax_connections = 4\n");
    d.create_project("app");
    let held: Vec<_> = (0..4).map(|_| d.client("app")).collect();
    // A fifth project connection waits in the backlog; the control socket
    // has a budget of its own.
    let status = within(Duration::from_secs(10), "status", {
        let path = d.control_socket();
        move || flux_protocol::blocking::Client::connect(path).and_then(|mut c| c.status())
    });
    assert!(status.is_ok(), "{status:?}");
    drop(held);
}

#[test]
fn one_user_holding_control_connections_cannot_keep_another_out() {
    // 24 control connections in all, at most 16 for one user.
    let d = TestDaemon::start_with_config(&format!(
        "control_group = {VICTIM}\n[limits]\nmax_control_connections = 24\n"
    ));
    let connect = {
        let path = d.control_socket();
        move || flux_protocol::blocking::Client::connect(&path)
    };
    let hog: Vec<_> = (0..16)
        .map(|_| connect().expect("a control connection"))
        .collect();
    let refused = connect().expect_err("a 17th connection of one user");
    assert!(
        refused
            .to_string()
            .contains("max_control_connections_per_peer"),
        "{refused}"
    );
    // Another user reaches the control socket at once (root only: the
    // test plays that user with its uid).
    if nix::unistd::geteuid().is_root() {
        std::fs::set_permissions(d.dir(), std::fs::Permissions::from_mode(0o711)).unwrap();
        let out = within(Duration::from_secs(10), "another user's status", {
            let mut cmd = d.ctl();
            cmd.args(["status"]).uid(ATTACKER).gid(VICTIM);
            move || cmd.output()
        })
        .expect("run fluxctl");
        // Not a daemon admin: refused by role, answered — not kept waiting.
        assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    } else {
        eprintln!("SKIPPED (part): another uid's connection needs root");
    }
    // The hog's own connections come back as it closes them.
    drop(hog);
    eventually("a control connection after the hog closed", || {
        connect().is_ok()
    });
}

#[test]
fn a_deleted_revision_record_is_reported_and_rebuilt() {
    let mut d = TestDaemon::start();
    d.create_project("app");
    d.ctl_ok(&["secrets", "set", "K", "old", "-p", "app"]);
    let old = std::fs::read(d.vault_path("app")).unwrap();
    d.ctl_ok(&["secrets", "set", "K", "new", "-p", "app"]);
    let record = d.state_dir().join("revisions/app");
    let put_back = |d: &TestDaemon| {
        let staging = d.state_dir().join("staging");
        std::fs::write(&staging, &old).unwrap();
        std::fs::rename(&staging, d.vault_path("app")).unwrap();
    };
    // While running: the record goes, then an older vault comes back. It
    // is refused (the floor in memory) and the record is written again.
    std::fs::remove_file(&record).unwrap();
    put_back(&d);
    eventually("the rollback is refused and the record rebuilt", || {
        last_error(&d, "app").is_some_and(|e| e.contains("refused as a rollback"))
            && record.exists()
    });
    assert_value(&mut d.client("app"), "K", "new");
    d.stop();
    d.restart();
    let err = d.client("app").get("K").unwrap_err();
    assert!(err.to_string().contains("refused as a rollback"), "{err}");
    // Stopped: the record goes and the vault is the older one. Nothing can
    // tell it is older now — but the missing record is said out loud, in
    // the status and the log, and rebuilt.
    d.ctl_ok(&["vault", "restore", "-p", "app"]);
    d.ctl_ok(&["secrets", "set", "K", "newest", "-p", "app"]);
    d.stop();
    std::fs::remove_file(&record).unwrap();
    put_back(&d);
    d.restart();
    let why = last_error(&d, "app").unwrap_or_default();
    assert!(
        why.contains("revision record") && why.contains("missing"),
        "{why}"
    );
    assert!(d.log().contains("revision record"), "not in the log");
    assert!(record.exists(), "the record is not rebuilt");
    let metrics = d.ctl_ok(&["metrics"]);
    assert!(
        metrics.contains("flux_revision_records_rebuilt_total{project=\"app\"} 1"),
        "not counted in the metrics"
    );
}

/// A loop-mounted ext4 image, unmounted when dropped.
struct Mounted {
    at: PathBuf,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.at).status();
    }
}

#[test]
fn a_deleted_project_leaves_no_key_bytes_in_the_file_system() {
    let test = "a_deleted_project_leaves_no_key_bytes_in_the_file_system";
    if !is_root(test) {
        return;
    }
    if Command::new("mkfs.ext4").arg("-V").output().is_err() {
        eprintln!("SKIPPED: {test}: needs mkfs.ext4 (e2fsprogs)");
        return;
    }
    let mut d = TestDaemon::unstarted(&[]);
    let image = d.dir().join("fs.img");
    let state = d.state_dir();
    std::fs::create_dir_all(&state).unwrap();
    std::fs::File::create(&image)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let ok = |cmd: &mut Command| cmd.status().map(|s| s.success()).unwrap_or(false);
    assert!(ok(Command::new("mkfs.ext4").arg("-q").arg(&image)));
    if !ok(Command::new("mount")
        .args(["-o", "loop"])
        .arg(&image)
        .arg(&state))
    {
        eprintln!("SKIPPED: {test}: cannot loop-mount a file system image here");
        return;
    }
    let mounted = Mounted { at: state.clone() };
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    d.restart();
    d.create_project("app");
    for i in 0..4 {
        d.ctl_ok(&["secrets", "set", "TOKEN", &format!("t-{i}"), "-p", "app"]);
    }
    let key = std::fs::read_to_string(d.key_path("app")).unwrap();
    let secret = key
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .expect("the key line")
        .to_owned();
    d.ctl_ok(&["projects", "delete", "app", "--yes"]);
    d.stop();
    drop(mounted);
    // The carver's view: every byte of the image, freed blocks included.
    let bytes = std::fs::read(&image).unwrap();
    let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
    assert!(
        !found,
        "the deleted project's key is still in the file system image"
    );
}

#[test]
fn a_value_with_a_nul_byte_is_refused_at_set_time() {
    let d = TestDaemon::start();
    d.create_project("app");
    let err = d
        .client("app")
        .set("K", SecretValue::from("a\0b"))
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BadRequest), "{err}");
    assert!(err.to_string().contains("NUL"), "{err}");
    let file = d.dir().join("nul.bin");
    std::fs::write(&file, b"a\0b").unwrap();
    let out = d.run_ctl(&[
        "secrets",
        "set",
        "K",
        "--from-file",
        &file.display().to_string(),
        "-p",
        "app",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("NUL"), "{}", stderr(&out));
    // fluxctl run of the project keeps working.
    d.ctl_ok(&["run", "-p", "app", "--", "true"]);
}

#[test]
fn a_value_on_the_command_line_is_hidden_from_the_process_list() {
    // A listener that accepts and never answers holds fluxctl in its
    // handshake, with the value parsed, long enough to look.
    let dir = short_dir();
    let run = dir.path().join("run");
    std::fs::create_dir_all(run.join("projects")).unwrap();
    let _l = UnixListener::bind(run.join("projects/app.sock")).unwrap();
    let value = "cmdline-value-must-not-stay-visible";
    let mut child = Command::new(bin("fluxctl"))
        .env("FLUX_RUNTIME_DIR", &run)
        .args(["secrets", "set", "K", value, "-p", "app"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let cmdline = format!("/proc/{}/cmdline", child.id());
    eventually("the value is overwritten in fluxctl's arguments", || {
        std::fs::read(&cmdline).is_ok_and(|c| {
            !c.windows(value.len()).any(|w| w == value.as_bytes())
                && c.windows(value.len())
                    .any(|w| w == "x".repeat(value.len()).as_bytes())
        })
    });
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_peer_that_loses_its_role_on_reload_loses_its_open_connection() {
    if !is_root("a_peer_that_loses_its_role_on_reload_loses_its_open_connection") {
        return;
    }
    if !flux_e2e::have_tool("python3", "a_peer_that_loses_its_role_on_reload") {
        return;
    }
    let config = |readers: &str| {
        format!("[projects.app]\nsocket_group = {ATTACKER}\nreaders = {{ users = [{readers}] }}\n")
    };
    let d = TestDaemon::start_with_config(&config(&ATTACKER.to_string()));
    std::fs::set_permissions(d.dir(), std::fs::Permissions::from_mode(0o711)).unwrap();
    d.create_project("app");
    // A reader's connection, held open: Hello, then wait for the close.
    let hello = flux_protocol::codec::encode(&flux_protocol::Request::Hello(
        flux_protocol::message::Hello {
            version: flux_protocol::PROTOCOL_VERSION,
            client: "t".into(),
        },
    ))
    .unwrap();
    let mut frame = (hello.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&hello);
    let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
    let script = format!(
        "import socket,sys\nc=socket.socket(socket.AF_UNIX)\nc.connect({:?})\nc.sendall(bytes.fromhex('{hex}'))\nc.recv(4096)\nprint('ready',flush=True)\nc.settimeout(20)\ntry:\n  print('closed' if c.recv(4096)==b'' else 'data',flush=True)\nexcept Exception as e:\n  print('timeout',flush=True)\n",
        d.project_socket("app").display().to_string()
    );
    let mut reader = Command::new("python3")
        .args(["-c", &script])
        .uid(ATTACKER)
        .gid(ATTACKER)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = reader.stdout.take().unwrap();
    let mut ready = [0u8; 6];
    out.read_exact(&mut ready).unwrap();
    d.write_config(&config(""));
    d.sighup();
    let mut said = String::new();
    out.read_to_string(&mut said).unwrap();
    let _ = reader.wait();
    assert_eq!(
        said.trim(),
        "closed",
        "the connection of a peer with no role left is closed"
    );
}

/// The ```toml blocks of docs/DEPLOY.md that configure fluxd, joined.
fn deploy_md_config() -> String {
    let doc = include_str!("../../../docs/DEPLOY.md");
    doc.split("```toml\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .filter(|block| block.contains("# /etc/flux/fluxd.toml"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Users and groups made for one test, removed on drop.
struct Accounts(Vec<(&'static str, &'static str)>);

impl Accounts {
    fn group(&mut self, name: &'static str) {
        let _ = Command::new("groupadd").args(["--system", name]).status();
        self.0.push(("groupdel", name));
    }

    fn user(&mut self, name: &'static str, groups: &str) {
        let _ = Command::new("useradd")
            .args(["--system", "--no-create-home", "-G", groups, name])
            .status();
        self.0.insert(0, ("userdel", name));
    }
}

impl Drop for Accounts {
    fn drop(&mut self) {
        for (cmd, name) in &self.0 {
            let _ = Command::new(cmd).arg(name).status();
        }
    }
}

#[test]
fn following_deploy_md_an_admin_never_reads_a_value() {
    if !is_root("following_deploy_md_an_admin_never_reads_a_value") {
        return;
    }
    for tool in ["useradd", "groupadd", "runuser"] {
        if !flux_e2e::have_tool(tool, "following_deploy_md_an_admin_never_reads_a_value") {
            return;
        }
    }
    // The users and groups DEPLOY.md names, made as it says.
    let mut accounts = Accounts(Vec::new());
    accounts.group("flux-admins");
    accounts.group("my-app");
    accounts.user("my-app-fn", "my-app");
    accounts.user("alice", "flux-admins,my-app");
    let config = deploy_md_config();
    assert!(config.contains("[projects.my-app]"), "{config}");
    let d = TestDaemon::start_with_config(&config);
    std::fs::set_permissions(d.dir(), std::fs::Permissions::from_mode(0o711)).unwrap();
    assert!(
        !d.log().contains("is also a reader group"),
        "DEPLOY.md's policy draws no warning"
    );
    d.create_project("my-app");
    d.ctl_ok(&[
        "secrets",
        "set",
        "OPENAI_API_KEY",
        "deploy-md-value",
        "-p",
        "my-app",
    ]);
    let as_user = |user: &str, args: &[&str]| {
        Command::new("runuser")
            .args(["-u", user, "--"])
            .arg(bin("fluxctl"))
            .args(args)
            .env("FLUX_RUNTIME_DIR", d.runtime_dir())
            .current_dir("/")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let read = ["run", "-p", "my-app", "--", "printenv", "OPENAI_API_KEY"];
    let out = as_user("my-app-fn", &read);
    assert!(out.status.success(), "the function reads: {}", stderr(&out));
    assert!(
        out.stdout == b"deploy-md-value\n",
        "the function gets the value"
    );
    let out = as_user("alice", &read);
    assert_eq!(
        out.status.code(),
        Some(5),
        "the admin does not read: {}",
        stderr(&out)
    );
    assert!(!out.stdout.windows(15).any(|w| w == b"deploy-md-value"));
    // The admin manages: lists names, sets, deletes; the function does not.
    let out = as_user("alice", &["secrets", "list", "-p", "my-app"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = as_user(
        "alice",
        &["secrets", "set", "ROTATED", "by-alice", "-p", "my-app"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = as_user("my-app-fn", &["secrets", "list", "-p", "my-app"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    drop(d);
    drop(accounts);
}

#[test]
fn a_hostile_executable_path_is_shown_escaped_in_text_output() {
    let d = TestDaemon::start();
    d.create_project("app");
    // A client whose path carries a terminal escape (clear the screen), a
    // newline and a fake audit line after it.
    let dir = d.dir().join("bin");
    std::fs::create_dir(&dir).unwrap();
    let hostile = dir.join("evil\u{1b}[2J\nFAKE allowed set");
    std::fs::copy(flux_e2e::bin("fluxctl"), &hostile).unwrap();
    let status = std::process::Command::new(&hostile)
        .env("FLUX_RUNTIME_DIR", d.runtime_dir())
        .env_remove("FLUX_PROJECT")
        .args(["secrets", "set", "TOKEN", "t-1", "-p", "app"])
        .status()
        .unwrap();
    assert!(status.success());
    for args in [
        &["audit", "-p", "app"][..],
        &["secrets", "history", "TOKEN", "-p", "app"],
    ] {
        let out = d.ctl_ok(args);
        assert!(
            out.contains("evil\\u{1b}[2J\\u{a}FAKE allowed set"),
            "{args:?} does not show the path escaped: {out:?}"
        );
        assert!(!out.contains('\u{1b}'), "{args:?} printed a raw escape");
        assert!(
            !out.lines().any(|l| l.starts_with("FAKE")),
            "{args:?} printed a line of the path's own: {out:?}"
        );
    }
    // JSON escapes it by itself, and stays one document per line.
    let json = d.ctl_ok(&["audit", "-p", "app", "--json"]);
    assert!(!json.contains('\u{1b}') && json.lines().all(|l| l.starts_with('{')));
}

#[test]
fn fluxctl_audit_verify_catches_any_edit_to_the_audit_log() {
    let d = TestDaemon::start();
    d.create_project("app");
    for i in 0..6 {
        d.ctl_ok(&["secrets", "set", "K", &format!("v-{i}"), "-p", "app"]);
    }
    d.ctl_ok(&["audit"]); // the log is written out
    let out = d.ctl_ok(&["audit", "verify"]);
    assert!(out.contains("The audit log is whole"), "{out}");
    let log = d.layout().audit_log();
    let original = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    assert!(lines.len() >= 6, "{original}");
    let verify_with = |text: &str| -> (Option<i32>, String) {
        std::fs::write(&log, text).unwrap();
        let out = d.run_ctl(&["audit", "verify", "--json"]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let joined = |v: Vec<&str>| v.join("\n") + "\n";
    // Removed, changed, swapped, inserted: each found at its line.
    let mut removed = lines.clone();
    removed.remove(3);
    let changed: Vec<String> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            if i == 2 {
                l.replacen("\"allowed\":true", "\"allowed\":false", 1)
            } else {
                l.to_string()
            }
        })
        .collect();
    let mut swapped = lines.clone();
    swapped.swap(3, 4);
    let mut inserted = lines.clone();
    inserted.insert(3, lines[1]);
    for (what, text, line) in [
        ("removed", joined(removed), 4),
        ("changed", changed.join("\n") + "\n", 3),
        ("swapped", joined(swapped), 4),
        ("inserted", joined(inserted), 4),
    ] {
        let (code, out) = verify_with(&text);
        assert_eq!(code, Some(1), "{what}: {out}");
        let found: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(found["line"], line, "{what}: {out}");
    }
    // Put back, it is whole again; with another key it is not.
    let (code, _) = verify_with(&original);
    assert_eq!(code, Some(0));
    let other = d.dir().join("other.key");
    std::fs::write(&other, "00".repeat(32)).unwrap();
    let out = d.run_ctl(&["audit", "verify", "--key", other.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "a wrong key verified the log");
}

#[test]
fn a_reload_before_a_connection_opened_does_not_close_it() {
    if !is_root("a_reload_before_a_connection_opened_does_not_close_it") {
        return;
    }
    if !flux_e2e::have_tool(
        "python3",
        "a_reload_before_a_connection_opened_does_not_close_it",
    ) {
        return;
    }
    // The other user may connect to the socket but holds no role on app:
    // its requests are denied, its connection stays open.
    let config = format!("[projects.app]\nsocket_group = {ATTACKER}\nreaders = {{ users = [] }}\n");
    let d = TestDaemon::start_with_config(&config);
    std::fs::set_permissions(d.dir(), std::fs::Permissions::from_mode(0o711)).unwrap();
    d.create_project("app");
    // A connection served on its own thread, then closed: the connection
    // watchdog is running from now on.
    assert!(d.client("app").list().unwrap().is_empty());
    // A reload while no connection is open…
    d.sighup();
    std::thread::sleep(Duration::from_millis(500));
    // …then a connection of the user with no role, idle for longer than
    // two of the watchdog's ticks, then a request: answered (denied), not
    // cut off by a reload that happened before it connected.
    let frame = |req: &flux_protocol::Request| {
        let payload = flux_protocol::codec::encode(req).unwrap();
        let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&payload);
        frame.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let hello = frame(&flux_protocol::Request::Hello(
        flux_protocol::message::Hello {
            version: flux_protocol::PROTOCOL_VERSION,
            client: "t".into(),
        },
    ));
    let get = frame(&flux_protocol::Request::Get(flux_protocol::message::Get {
        name: "K".into(),
    }));
    let script = format!(
        "import socket,time\nc=socket.socket(socket.AF_UNIX)\nc.connect({:?})\nc.sendall(bytes.fromhex('{hello}'))\nc.recv(4096)\ntime.sleep(2.5)\ntry:\n  c.sendall(bytes.fromhex('{get}'))\n  c.settimeout(10)\n  print('answered' if c.recv(4096) else 'closed',flush=True)\nexcept Exception as e:\n  print('closed',flush=True)\n",
        d.project_socket("app").display().to_string()
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .uid(ATTACKER)
        .gid(ATTACKER)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "answered",
        "a connection opened after a reload is decided by that policy, not cut by its reload"
    );
}
