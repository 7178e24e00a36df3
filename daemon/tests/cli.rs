//! fluxd's command line: configuration errors exit 78 (EX_CONFIG) with a
//! message naming the problem, so systemd does not restart-loop.

use std::process::Command;

fn fluxd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fluxd"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

#[test]
fn relative_folders_are_refused_with_78() {
    let out = fluxd(&["--state-dir", "relative/state", "--runtime-dir", "/tmp/x"]);
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("must be an absolute path"), "{err}");
}

#[test]
fn an_overlong_runtime_dir_is_refused_with_78() {
    let long = format!("/tmp/{}", "r".repeat(60));
    let out = fluxd(&["--state-dir", "/tmp/s", "--runtime-dir", &long]);
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("too long for Unix socket paths"), "{err}");
}

#[test]
fn a_bad_log_filter_is_refused_with_78() {
    let out = fluxd(&["--log-level", "fluxd=[["]);
    assert_eq!(out.status.code(), Some(78));
}

#[test]
fn help_names_the_folders() {
    let out = fluxd(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("--state-dir") && text.contains("FLUX_RUNTIME_DIR"),
        "{text}"
    );
}
