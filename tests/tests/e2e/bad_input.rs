//! Bad input gets a clear, specific error and hurts no one else: names,
//! sizes, unknown projects, the wrong socket, and raw garbage on the wire.

use crate::{assert_value, stderr};
use flux_e2e::TestDaemon;
use flux_protocol::codec::{decode, encode};
use flux_protocol::message::{Get, Hello, Request, Response, Set};
use flux_protocol::{ErrorCode, PROTOCOL_VERSION, SecretValue};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

fn write_frame(s: &mut UnixStream, payload: &[u8]) {
    s.write_all(&(payload.len() as u32).to_be_bytes()).unwrap();
    s.write_all(payload).unwrap();
}

fn read_response(s: &mut UnixStream) -> Option<Response> {
    let frame = flux_protocol::codec::read_frame(s, 1 << 20).ok()??;
    Some(decode(&frame).unwrap())
}

fn raw(d: &TestDaemon, project: &str) -> UnixStream {
    let mut s = UnixStream::connect(d.project_socket(project)).unwrap();
    let hello = Request::Hello(Hello {
        version: PROTOCOL_VERSION,
        client: "raw".into(),
    });
    write_frame(&mut s, &encode(&hello).unwrap());
    assert!(matches!(read_response(&mut s), Some(Response::Welcome(_))));
    s
}

fn error_code(resp: Option<Response>) -> ErrorCode {
    match resp {
        Some(Response::Error(e)) => e.code,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// Asserts that `resp` is an error with `code` whose message holds `text`.
fn assert_error(resp: Option<Response>, code: ErrorCode, text: &str) {
    match resp {
        Some(Response::Error(e)) => {
            assert_eq!(e.code, code, "{}", e.message);
            assert!(e.message.contains(text), "{}", e.message);
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

fn closed(s: &mut UnixStream) -> bool {
    let mut buf = [0u8; 1];
    crate::cut_off(&s.read(&mut buf))
}

#[test]
fn names_sizes_and_projects_are_checked_with_clear_errors() {
    let d = TestDaemon::start();
    d.create_project("app");
    let out = d.run_ctl(&["secrets", "set", "1BAD", "x", "-p", "app"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid secret name \"1BAD\""),
        "{}",
        stderr(&out)
    );

    let big = d.dir().join("big");
    std::fs::write(&big, "x".repeat(64 * 1024 + 1)).unwrap();
    let out = d.run_ctl(&[
        "secrets",
        "set",
        "BIG",
        "--from-file",
        big.to_str().unwrap(),
        "-p",
        "app",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("the limit is 65536 bytes"),
        "{}",
        stderr(&out)
    );

    let out = d.run_ctl(&["secrets", "list", "-p", "nope"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("unknown project nope"),
        "{}",
        stderr(&out)
    );

    let out = d.run_ctl(&["projects", "create", "../etc"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid project name"),
        "{}",
        stderr(&out)
    );

    // The daemon checks too, for clients that do not.
    let mut client = d.client("app");
    let err = client.set("bad-name", SecretValue::from("v")).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidName));
    let err = client
        .set("BIG", SecretValue::new("x".repeat(64 * 1024 + 1)))
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TooLarge));
    assert!(err.to_string().contains("65537 bytes"), "{err}");
    let err = client.get("MISSING").unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));
    assert!(
        err.to_string().contains("fluxctl secrets set MISSING"),
        "{err}"
    );
    let err = d.control().create_project("a/b").unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidName));
    let err = d.control().delete_project("ghost").unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::UnknownProject));

    // Requests on the wrong socket are refused and name the right one.
    let err = d.control().get("X").unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BadRequest));
    assert!(err.to_string().contains("project's socket"), "{err}");
    let err = client.status().unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BadRequest));
    assert!(err.to_string().contains("control.sock"), "{err}");
}

#[test]
fn daemon_not_running_names_the_socket_and_the_remedy() {
    let mut d = TestDaemon::start();
    d.stop();
    let out = d.run_ctl(&["status"]);
    assert_eq!(out.status.code(), Some(4));
    let err = stderr(&out);
    assert!(
        err.contains(&d.control_socket().display().to_string()),
        "{err}"
    );
    assert!(err.contains("is fluxd running?"), "{err}");
}

#[test]
fn malformed_and_oversized_frames_hurt_only_their_sender() {
    let d = TestDaemon::start();
    d.create_project("app");
    d.client("app").set("K", SecretValue::from("v")).unwrap();
    let mut bystander = d.client("app");

    // Garbage payload after the handshake: an error, the connection lives.
    let mut s = raw(&d, "app");
    write_frame(&mut s, &[0xde, 0xad, 0xbe, 0xef, 1, 2, 3]);
    assert_eq!(error_code(read_response(&mut s)), ErrorCode::BadRequest);
    write_frame(
        &mut s,
        &encode(&Request::Get(Get { name: "K".into() })).unwrap(),
    );
    assert!(matches!(read_response(&mut s), Some(Response::Value(_))));

    // A 4 GiB length prefix: too_large, then the connection is closed.
    let mut s = raw(&d, "app");
    s.write_all(&[0xff, 0xff, 0xff, 0xff]).unwrap();
    assert_eq!(error_code(read_response(&mut s)), ErrorCode::TooLarge);
    assert!(closed(&mut s));

    // No handshake: bad_request, closed.
    let mut s = UnixStream::connect(d.project_socket("app")).unwrap();
    write_frame(
        &mut s,
        &encode(&Request::Get(Get { name: "K".into() })).unwrap(),
    );
    assert_eq!(error_code(read_response(&mut s)), ErrorCode::BadRequest);
    assert!(closed(&mut s));

    // Another protocol version: version_mismatch, closed.
    let mut s = UnixStream::connect(d.control_socket()).unwrap();
    let hello = Request::Hello(Hello {
        version: PROTOCOL_VERSION + 1,
        client: "future".into(),
    });
    write_frame(&mut s, &encode(&hello).unwrap());
    assert_error(
        read_response(&mut s),
        ErrorCode::VersionMismatch,
        "protocol version 2",
    );
    assert!(closed(&mut s));
    // A later version's Hello may carry more fields after its version:
    // still version_mismatch, not a parse error.
    let mut s = UnixStream::connect(d.control_socket()).unwrap();
    let mut future = encode(&hello).unwrap();
    future.extend_from_slice(&[1, 2, 3]);
    write_frame(&mut s, &future);
    assert_error(
        read_response(&mut s),
        ErrorCode::VersionMismatch,
        "protocol version 2",
    );
    assert!(closed(&mut s));

    // A request frame over the daemon's limit carrying a valid message.
    let mut s = raw(&d, "app");
    let huge = Request::Set(Set {
        name: "K".into(),
        value: SecretValue::new("x".repeat(300 * 1024)),
    });
    let payload = encode(&huge).unwrap();
    s.write_all(&(payload.len() as u32).to_be_bytes()).unwrap();
    let _ = s.write_all(&payload);
    assert_eq!(error_code(read_response(&mut s)), ErrorCode::TooLarge);

    // A client that hangs up mid-frame.
    let mut s = raw(&d, "app");
    s.write_all(&[0, 0, 0, 50, 1, 2]).unwrap();
    drop(s);

    // Through all of it, the bystander's connection and new ones work.
    assert_value(&mut bystander, "K", "v");
    assert_value(&mut d.client("app"), "K", "v");
    d.control().status().unwrap();
}

#[test]
fn a_deleted_projects_open_connections_answer_every_request_unknown_project() {
    let d = TestDaemon::start();
    d.create_project("gone");
    d.ctl_ok(&["secrets", "set", "K", "v", "-p", "gone"]);
    let mut client = d.client("gone");
    // Accepted before the delete, its handshake not sent yet.
    let mut late = UnixStream::connect(d.project_socket("gone")).unwrap();
    d.ctl_ok(&["projects", "delete", "gone", "--yes"]);

    for (what, err) in [
        ("get", client.get("K").unwrap_err()),
        ("list", client.list().unwrap_err()),
        ("subscribe", client.subscribe().unwrap_err()),
    ] {
        assert_eq!(err.code(), Some(ErrorCode::UnknownProject), "{what}: {err}");
    }
    let hello = Request::Hello(Hello {
        version: PROTOCOL_VERSION,
        client: "late".into(),
    });
    write_frame(&mut late, &encode(&hello).unwrap());
    assert_error(
        read_response(&mut late),
        ErrorCode::UnknownProject,
        "unknown project gone",
    );
    assert!(closed(&mut late));
}
