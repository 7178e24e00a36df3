//! Nothing acknowledged is ever lost: restarts, concurrent writers, crashes
//! mid-burst, clean shutdown.

use crate::assert_value;
use flux_e2e::TestDaemon;
use flux_protocol::SecretValue;
use flux_protocol::blocking::Client;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[test]
fn secrets_survive_a_restart_and_sigterm_cleans_up() {
    let mut d = TestDaemon::start();
    d.create_project("app");
    d.ctl_ok(&["secrets", "set", "TOKEN", "value-one", "-p", "app"]);
    let status = d.stop();
    assert_eq!(status.code(), Some(0), "clean shutdown exits 0");
    assert!(!d.control_socket().exists(), "control socket removed");
    assert!(!d.project_socket("app").exists(), "project socket removed");
    d.restart();
    assert_value(&mut d.client("app"), "TOKEN", "value-one");
}

#[test]
fn eight_concurrent_writers_lose_nothing() {
    let d = TestDaemon::start();
    d.create_project("app");
    let socket = d.project_socket("app");
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let mut client = Client::connect(&socket).unwrap();
                for i in 0..25 {
                    client
                        .set(&format!("W{w}_{i}"), SecretValue::new(format!("v{w}.{i}")))
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let mut client = d.client("app");
    assert_eq!(client.list().unwrap().len(), 200);
    for w in 0..8 {
        for i in 0..25 {
            assert_value(&mut client, &format!("W{w}_{i}"), &format!("v{w}.{i}"));
        }
    }
}

#[test]
fn kill_9_during_a_burst_loses_no_acknowledged_set() {
    let mut d = TestDaemon::start();
    d.create_project("app");
    for round in 0..3 {
        let acked = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let (socket, acked, stop) = (d.project_socket("app"), acked.clone(), stop.clone());
                std::thread::spawn(move || {
                    let Ok(mut client) = Client::connect(&socket) else {
                        return;
                    };
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let (name, value) = (format!("R{round}_W{w}"), format!("value-{i}"));
                        match client.set(&name, SecretValue::new(value.clone())) {
                            Ok(_) => acked.lock().unwrap().push((name, value)),
                            Err(_) => return,
                        }
                        i += 1;
                    }
                })
            })
            .collect();
        // Let the burst run until a good number of sets were acknowledged.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while acked.lock().unwrap().len() < 40 {
            assert!(
                std::time::Instant::now() < deadline,
                "the burst stalled:\n{}",
                d.log()
            );
            std::thread::yield_now();
        }
        d.kill9();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.join().unwrap();
        }
        d.restart();
        let status = d.control().status().unwrap();
        assert_eq!(
            status.projects[0].last_error, None,
            "the vault opens after a crash"
        );
        let leftovers: Vec<_> = std::fs::read_dir(d.layout().vaults_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "temp files of interrupted writes are removed at start: {leftovers:?}"
        );
        // The last acknowledged value of each name is what is served (a set
        // in flight at the kill may have landed too: then it is newer).
        let mut client = d.client("app");
        let acked = acked.lock().unwrap();
        for w in 0..4 {
            let name = format!("R{round}_W{w}");
            let Some((_, last)) = acked.iter().rev().find(|(n, _)| *n == name) else {
                continue;
            };
            let got = client.get(&name).expect("acknowledged name present");
            let got_i: u64 = got.expose().trim_start_matches("value-").parse().unwrap();
            let last_i: u64 = last.trim_start_matches("value-").parse().unwrap();
            assert!(got_i >= last_i, "{name}: an acknowledged set was lost");
        }
    }
}

#[test]
fn a_second_daemon_on_the_same_state_is_refused_with_78() {
    let d = TestDaemon::start();
    let out = d.fluxd_command().output().unwrap();
    assert_eq!(out.status.code(), Some(78), "EX_CONFIG");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another fluxd is using the state folder"),
        "{err}"
    );
    // The first one is untouched.
    d.control().status().unwrap();
}
