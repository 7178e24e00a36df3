//! A project socket's connection is served by a thread of its own for
//! `Get` and `GetAll`, and handed to the event loop at its first other
//! request: these tests hold the connection across that hand-over and check
//! that nothing is lost, reordered or given up on either side of it.

use flux_e2e::TestDaemon;
use flux_protocol::codec::{decode, encode, read_frame};
use flux_protocol::message::{Get, Hello, NamedValue, Request, Response, Set};
use flux_protocol::{ErrorCode, SecretValue};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

fn frame(req: &Request) -> Vec<u8> {
    let payload = encode(req).unwrap();
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&payload);
    out
}

fn connect(d: &TestDaemon, project: &str) -> UnixStream {
    let mut s = UnixStream::connect(d.project_socket(project)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&frame(&Request::Hello(Hello {
        version: flux_protocol::PROTOCOL_VERSION,
        client: "serving".into(),
    })))
    .unwrap();
    let welcome: Response = decode(&read_frame(&mut s, 1 << 20).unwrap().unwrap()).unwrap();
    assert!(matches!(welcome, Response::Welcome(_)), "{welcome:?}");
    s
}

fn answer(s: &mut UnixStream) -> Response {
    decode(&read_frame(s, 1 << 20).unwrap().expect("an answer")).unwrap()
}

fn get(name: &str) -> Request {
    Request::Get(Get { name: name.into() })
}

/// A `Value` answer holding `want`, checked without printing a value.
fn assert_value(resp: Response, want: &str, what: &str) {
    match resp {
        Response::Value(v) => assert!(v.expose() == want, "{what}: another value"),
        Response::Error(e) => panic!("{what}: {:?} {}", e.code, e.message),
        _ => panic!("{what}: not a Value answer"),
    }
}

#[test]
fn reads_and_writes_sent_together_on_one_connection_are_answered_in_order() {
    let d = TestDaemon::start();
    d.create_project("app");
    d.client("app").set("A", SecretValue::from("one")).unwrap();
    let mut s = connect(&d, "app");
    // Reads served on the connection's thread, then a write that moves the
    // connection to the event loop, then reads again, all in one write.
    let mut batch = Vec::new();
    for req in [
        get("A"),
        get("MISSING"),
        Request::Set(Set {
            name: "B".into(),
            value: SecretValue::from("two"),
        }),
        get("B"),
        Request::List,
        get("A"),
    ] {
        batch.extend(frame(&req));
    }
    s.write_all(&batch).unwrap();
    assert_value(answer(&mut s), "one", "the first get");

    match answer(&mut s) {
        Response::Error(e) => assert_eq!(e.code, ErrorCode::NotFound),
        _ => panic!("a name not set answers not_found"),
    }
    assert!(
        matches!(answer(&mut s), Response::Stored(_)),
        "Set's answer"
    );
    assert_value(
        answer(&mut s),
        "two",
        "a get after the set on the same connection",
    );
    match answer(&mut s) {
        Response::Secrets(names) => {
            let names: Vec<&str> = names.iter().map(|n| n.name.as_str()).collect();
            assert_eq!(names, ["A", "B"]);
        }
        _ => panic!("List's answer"),
    }
    assert_value(answer(&mut s), "one", "the last get");
    // The connection stays usable after the hand-over, one request at a
    // time as well.
    s.write_all(&frame(&Request::GetAll)).unwrap();
    match answer(&mut s) {
        Response::Values(values) => {
            let names: Vec<&str> = values
                .iter()
                .map(|v: &NamedValue| v.name.as_str())
                .collect();
            assert_eq!(names, ["A", "B"]);
        }
        _ => panic!("GetAll's answer"),
    }
}

#[test]
fn a_reader_that_subscribes_after_reading_gets_the_change_events() {
    let d = TestDaemon::start();
    d.create_project("app");
    d.client("app").set("A", SecretValue::from("one")).unwrap();
    let mut s = connect(&d, "app");
    s.write_all(&frame(&get("A"))).unwrap();
    assert_value(answer(&mut s), "one", "the get before subscribing");
    s.write_all(&frame(&Request::Subscribe)).unwrap();
    assert!(
        matches!(answer(&mut s), Response::Subscribed(_)),
        "Subscribe's answer"
    );
    d.client("app").set("A", SecretValue::from("two")).unwrap();
    match answer(&mut s) {
        Response::Event(e) => assert_eq!(e.names, ["A"]),
        _ => panic!("the change event"),
    }
    s.write_all(&frame(&get("A"))).unwrap();
    assert_value(answer(&mut s), "two", "the get after the event");
}

#[test]
fn a_connection_thread_keeps_the_rate_limit_and_the_frame_timeout() {
    let d = TestDaemon::start_with_config(
        "[limits]\nrequests_per_second = 5\nframe_timeout = \"1s\"\n",
    );
    d.create_project("app");
    d.client("app").set("A", SecretValue::from("one")).unwrap();
    let mut s = connect(&d, "app");
    let mut batch = Vec::new();
    for _ in 0..20 {
        batch.extend(frame(&get("A")));
    }
    s.write_all(&batch).unwrap();
    let mut limited = 0;
    for _ in 0..20 {
        match answer(&mut s) {
            Response::Value(_) => {}
            Response::Error(e) if e.code == ErrorCode::LimitReached => limited += 1,
            Response::Error(e) => panic!("{:?} {}", e.code, e.message),
            _ => panic!("an unexpected answer"),
        }
    }
    assert!(
        (10..=15).contains(&limited),
        "a burst of 20 over a budget of 5 a second: {limited} refused"
    );
    // Half a frame, then nothing: cut off after the frame timeout, while
    // waiting for the rest.
    s.write_all(&frame(&get("A"))[..6]).unwrap();
    let began = Instant::now();
    let mut rest = [0u8; 64];
    let read = s.read(&mut rest);
    assert!(crate::cut_off(&read), "the half frame is cut off: {read:?}");
    assert!(
        began.elapsed() < Duration::from_secs(9),
        "cut off by the frame timeout, not the test's read timeout"
    );
}

#[test]
fn a_frame_that_starts_after_a_long_idle_time_gets_the_whole_frame_timeout() {
    let d = TestDaemon::start_with_config("[limits]\nframe_timeout = \"1s\"\n");
    d.create_project("app");
    d.client("app").set("A", SecretValue::from("one")).unwrap();
    let mut s = connect(&d, "app");
    // Idle for longer than the frame timeout (well within the idle one)…
    std::thread::sleep(Duration::from_millis(1500));
    // …then a request in two parts, the second a moment later.
    let request = frame(&get("A"));
    s.write_all(&request[..5]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    s.write_all(&request[5..]).unwrap();
    assert_value(
        answer(&mut s),
        "one",
        "a request split across two writes after idling",
    );
}

#[test]
fn idle_connections_do_not_wake_the_daemon_one_by_one() {
    let d = TestDaemon::start();
    d.create_project("app");
    d.client("app").set("A", SecretValue::from("one")).unwrap();
    // Fifty connections, each served once, then idle.
    let mut open: Vec<UnixStream> = (0..50).map(|_| connect(&d, "app")).collect();
    for s in &mut open {
        s.write_all(&frame(&get("A"))).unwrap();
        assert_value(answer(s), "one", "a get before idling");
    }
    std::thread::sleep(Duration::from_millis(300));
    // Over two seconds of idling, the daemon's threads wake a few times
    // (the watchdog's tick), not once a second per connection (100 or
    // more when each thread woke to look at its own deadlines).
    let before = flux_e2e::context_switches(d.pid()).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let woke = flux_e2e::context_switches(d.pid()).unwrap() - before;
    assert!(woke < 20, "{woke} wake-ups in 2 s with 50 idle connections");
    // Still served.
    for s in &mut open {
        s.write_all(&frame(&get("A"))).unwrap();
        assert_value(answer(s), "one", "a get after idling");
    }
}
