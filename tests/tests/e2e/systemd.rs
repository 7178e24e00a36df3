//! Life under systemd: readiness and reload notifications, the watchdog,
//! socket activation, and project keys wrapped by a host-key credential.

use crate::{assert_value, stderr};
use flux_e2e::{TestDaemon, have_tool};
use flux_vault::keys::ProjectKey;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The next notification that starts with `prefix`, skipping others
/// (watchdog pings interleave with state changes).
fn expect(sock: &UnixDatagram, prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 4096];
    loop {
        assert!(Instant::now() < deadline, "no {prefix} notification");
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let n = sock.recv(&mut buf).expect("a notification");
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        if msg.starts_with(prefix) {
            return msg;
        }
    }
}

#[test]
fn notifies_ready_reloading_watchdog_and_stopping() {
    let d = TestDaemon::unstarted(&[]);
    let notify_path = d.dir().join("notify");
    let sock = UnixDatagram::bind(&notify_path).unwrap();
    let child = d
        .fluxd_command()
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "200000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = Pid::from_raw(child.id() as i32);

    let ready = expect(&sock, "READY=1");
    // READY=1 comes only once every socket accepts connections.
    flux_protocol::blocking::Client::connect(d.control_socket())
        .expect("the control socket accepts once READY=1 is sent")
        .status()
        .unwrap();
    assert!(ready.contains("STATUS="), "{ready}");
    expect(&sock, "WATCHDOG=1");

    kill(pid, Signal::SIGHUP).unwrap();
    let reloading = expect(&sock, "RELOADING=1");
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .expect("MONOTONIC_USEC with RELOADING=1")
        .parse()
        .unwrap();
    assert!(usec > 0);
    expect(&sock, "READY=1");

    kill(pid, Signal::SIGTERM).unwrap();
    expect(&sock, "STOPPING=1");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!d.control_socket().exists(), "socket files removed");
}

#[test]
fn serves_through_a_socket_passed_by_systemd_socket_activate() {
    if !have_tool(
        "systemd-socket-activate",
        "serves_through_a_socket_passed_by_systemd",
    ) {
        return;
    }
    let d = TestDaemon::unstarted(&[]);
    std::fs::create_dir_all(d.runtime_dir().join("projects")).unwrap();
    for dir in [d.runtime_dir(), d.runtime_dir().join("projects")] {
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    }
    let fluxd = d.fluxd_command();
    let log = std::fs::File::create(d.dir().join("activate.log")).unwrap();
    let mut child = Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(d.control_socket())
        .arg("-l")
        .arg(d.project_socket("app"))
        .arg("--fdname=control:project.app")
        .arg(fluxd.get_program())
        .args(fluxd.get_args())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    // The activator binds first; the first connection starts fluxd.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut control = loop {
        if let Ok(c) = flux_protocol::blocking::Client::connect(d.control_socket()) {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "no fluxd behind the activated socket"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    control.create_project("app").unwrap();
    d.ctl_ok(&["secrets", "set", "K", "through-activation", "-p", "app"]);
    assert_value(&mut d.client("app"), "K", "through-activation");
    assert_eq!(
        control.status().unwrap().pid,
        child.id(),
        "fluxd replaced the activator"
    );
    let log = std::fs::read_to_string(d.dir().join("activate.log")).unwrap();
    assert!(log.contains("using the socket passed by systemd"), "{log}");
    assert!(
        log.contains("name=\"project.app\""),
        "the project's socket was passed too:\n{log}"
    );

    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(
        d.control_socket().exists(),
        "the activated socket's file belongs to systemd"
    );
    assert!(d.project_socket("app").exists(), "so does the project's");
}

#[test]
fn a_host_key_credential_wraps_key_files() {
    let mut d = TestDaemon::unstarted(&[]);
    let creds = d.dir().join("creds");
    std::fs::create_dir(&creds).unwrap();
    let host = ProjectKey::generate();
    std::fs::write(
        creds.join("fluxd-host-key"),
        host.to_file_contents("2026-01-01T00:00:00Z").as_bytes(),
    )
    .unwrap();
    // A project created before the credential existed: its plain key file
    // is wrapped at the first start with the credential.
    d.restart();
    d.create_project("before");
    d.stop();
    assert!(
        std::fs::read_to_string(d.key_path("before"))
            .unwrap()
            .contains("AGE-SECRET-KEY-1")
    );
    d.set_env("CREDENTIALS_DIRECTORY", &creds);
    d.restart();
    assert!(
        std::fs::read(d.key_path("before"))
            .unwrap()
            .starts_with(b"age-encryption.org/v1\n")
    );
    assert!(
        d.log()
            .contains("key file re-written wrapped with the host key")
    );
    d.client("before").list().unwrap();
    d.create_project("app");
    d.ctl_ok(&["secrets", "set", "K", "wrapped-key-value", "-p", "app"]);
    let key_file = std::fs::read(d.key_path("app")).unwrap();
    assert!(
        key_file.starts_with(b"age-encryption.org/v1\n"),
        "the key file is age ciphertext"
    );
    assert!(!String::from_utf8_lossy(&key_file).contains("AGE-SECRET-KEY-1"));

    // Restart with the credential: keys unwrap, secrets are served.
    d.stop();
    d.restart();
    assert_value(&mut d.client("app"), "K", "wrapped-key-value");
    assert!(d.log().contains("wrapped with the host key"));

    // Without it, the project cannot be served, and the log says why.
    d.stop();
    let mut cmd = d.fluxd_command();
    cmd.env_remove("CREDENTIALS_DIRECTORY");
    let mut child = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while flux_protocol::blocking::Client::connect(d.control_socket()).is_err() {
        assert!(Instant::now() < deadline, "fluxd did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = d.control().status().unwrap();
    assert!(
        status.projects.iter().all(|p| p
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("not served:") && e.contains("host key"))),
        "wrapped keys cannot be used without the host key, and status says so: {:?}",
        status.projects
    );
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(
        err.contains("started without the fluxd-host-key credential"),
        "{err}"
    );
}
