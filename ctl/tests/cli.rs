//! fluxctl on its own, with no daemon: usage errors and the messages that
//! tell an operator what to do next.

use std::process::{Command, Output};

fn fluxctl(args: &[&str], runtime: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fluxctl"))
        .args(args)
        .env("FLUX_RUNTIME_DIR", runtime)
        .env_remove("FLUX_PROJECT")
        .current_dir(runtime)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn unreachable_daemon_exits_4_and_names_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let out = fluxctl(&["projects", "list"], dir.path());
    assert_eq!(out.status.code(), Some(4));
    let err = stderr(&out);
    assert!(
        err.starts_with("fluxctl: error: cannot connect to "),
        "{err}"
    );
    assert!(
        err.contains(&format!("{}/control.sock", dir.path().display())),
        "{err}"
    );
    assert!(
        err.contains("is fluxd running? start it with `fluxd`"),
        "{err}"
    );
    assert!(!err.contains("os error"), "{err}");
}

#[test]
fn missing_project_is_a_usage_error_that_says_how_to_give_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = fluxctl(&["secrets", "list"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("pass --project NAME, set FLUX_PROJECT"),
        "{err}"
    );

    std::fs::write(dir.path().join("flux.json"), "{not json").unwrap();
    let out = fluxctl(&["secrets", "list"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("flux.json is not valid JSON"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_names_are_refused_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["secrets", "set", "-p", "app", "A-B", "v"][..],
        &["secrets", "delete", "-p", "app", "9X"],
        &["projects", "create", "a.b"],
    ] {
        let out = fluxctl(args, dir.path());
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("invalid"), "{}", stderr(&out));
    }
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&["secrets"][..], &["bogus"], &["run"], &["secrets", "set"]] {
        let out = fluxctl(args, dir.path());
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}
