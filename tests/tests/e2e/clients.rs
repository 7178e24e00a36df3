//! `ctx.secrets` for Rust functions ([`flux_protocol::Secrets`]) against
//! the real daemon: get, fallback, not found, rotation, concurrency, a
//! daemon restart, and an unreachable daemon.

use flux_e2e::{TestDaemon, bin};
use flux_protocol::{ErrorCode, Secrets};
use std::sync::Arc;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn ctx_secrets_get_fallback_rotation_concurrency_and_restart() {
    let mut d = TestDaemon::start();
    d.create_project("app");
    d.ctl_ok(&[
        "secrets",
        "set",
        "OPENAI_API_KEY",
        "sk-first-do-not-leak",
        "-p",
        "app",
    ]);
    let rt = runtime();
    let secrets = Arc::new(Secrets::new(d.project_socket("app")));

    rt.block_on(async {
        let v = secrets.get("OPENAI_API_KEY").await.unwrap();
        assert!(v == "sk-first-do-not-leak", "get returns the value");
        // The fallback only when the secret is not set.
        assert_eq!(
            secrets.get_or("AWS_REGION", "us-east-1").await.unwrap(),
            "us-east-1"
        );
        let v = secrets.get_or("OPENAI_API_KEY", "fallback").await.unwrap();
        assert!(
            v == "sk-first-do-not-leak",
            "a set secret wins over the fallback"
        );
        // Not found: a typed error that says how to set it.
        let err = secrets.get("MISSING").await.unwrap_err();
        assert!(err.is_not_found());
        assert!(
            err.to_string().contains("fluxctl secrets set MISSING"),
            "{err}"
        );
        // An invalid name is an error even with a fallback.
        let err = secrets.get_or("not-valid", "fallback").await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::InvalidName));
    });

    // Rotation: the next get sees the new value, no reconnect.
    d.ctl_ok(&[
        "secrets",
        "set",
        "OPENAI_API_KEY",
        "sk-second-do-not-leak",
        "-p",
        "app",
    ]);
    rt.block_on(async {
        let v = secrets.get("OPENAI_API_KEY").await.unwrap();
        assert!(
            v == "sk-second-do-not-leak",
            "the rotated value is seen at once"
        );
        // Concurrent callers share one connection.
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let s = secrets.clone();
                tokio::spawn(async move { s.get("OPENAI_API_KEY").await })
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap().unwrap() == "sk-second-do-not-leak");
        }
    });

    // A daemon restart is survived by reconnecting once.
    d.stop();
    d.restart();
    rt.block_on(async {
        let v = secrets.get("OPENAI_API_KEY").await.unwrap();
        assert!(
            v == "sk-second-do-not-leak",
            "served again after the restart"
        );
    });

    // An unreachable daemon: the error names the socket.
    d.stop();
    let err = rt.block_on(secrets.get("OPENAI_API_KEY")).unwrap_err();
    assert!(err.is_unreachable());
    assert!(
        err.to_string()
            .contains(&d.project_socket("app").display().to_string()),
        "{err}"
    );
    let err = rt
        .block_on(secrets.get_or("OPENAI_API_KEY", "fb"))
        .unwrap_err();
    assert!(
        err.is_unreachable(),
        "no fallback for a daemon that is down"
    );
}

#[test]
fn the_example_function_reads_its_socket_from_the_environment() {
    let d = TestDaemon::start();
    d.create_project("app");
    d.ctl_ok(&[
        "secrets",
        "set",
        "OPENAI_API_KEY",
        "sk-example-key",
        "-p",
        "app",
    ]);
    let example = bin("examples/call_openai");
    let out = std::process::Command::new(&example)
        .env("FLUX_SECRETS_SOCKET", d.project_socket("app"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("21-character Authorization header"), "{text}");
    assert!(text.contains("us-east-1 (fallback)"), "{text}");
    assert!(!text.contains("sk-example-key"));

    let out = std::process::Command::new(&example)
        .env_remove("FLUX_SECRETS_SOCKET")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("FLUX_SECRETS_SOCKET is not set"), "{err}");
}
