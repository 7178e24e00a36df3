//! Metrics: `fluxctl metrics` and the optional HTTP listener, parsed with a
//! Prometheus text-format parser (and a strict line check of our own);
//! the counters move by exactly the gets, sets, denials and errors made,
//! for `fluxd` and for `fluxd dev`; no value ever appears.

use super::browser::http;
use flux_e2e::{TestDaemon, assert_no_secret, bin};
use flux_protocol::message::Request;
use prometheus_parse::{Scrape, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Parses an exposition with `prometheus-parse`, after checking every line
/// strictly: each sample belongs to a family with `# HELP` and `# TYPE`
/// lines, names and labels are well formed, values are numbers.
fn parse(text: &str) -> Scrape {
    let mut helped = BTreeSet::new();
    let mut typed = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.insert(rest.split(' ').next().unwrap().to_owned());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            typed.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line {line:?}"
        );
        let (series, value) = line.rsplit_once(' ').expect("name value");
        assert!(
            value.parse::<f64>().is_ok() || value == "+Inf",
            "not a number: {line}"
        );
        let name = series.split('{').next().unwrap();
        assert!(
            name.starts_with("flux_")
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "metric name {name}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                for pair in labels[1..labels.len() - 1].split(',') {
                    let (k, v) = pair.split_once('=').expect("label=value");
                    assert!(
                        k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                        "{line}"
                    );
                    assert!(v.starts_with('"') && v.ends_with('"'), "{line}");
                }
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| typed.get(*f).map(String::as_str) == Some("histogram"))
            })
            .unwrap_or(name);
        assert!(helped.contains(family), "no # HELP for {family}");
        assert!(typed.contains_key(family), "no # TYPE for {family}");
    }
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("a Prometheus exposition")
}

/// The value of the counter or gauge `name` with exactly `labels`.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .filter_map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
            _ => None,
        })
        .collect();
    match found.as_slice() {
        [] => 0.0,
        [v] => *v,
        more => panic!("{name} {labels:?} matches {} samples", more.len()),
    }
}

/// The count of the histogram `name` with `labels`.
fn histogram_count(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .find_map(|s| match &s.value {
            Value::Histogram(buckets) => buckets
                .iter()
                .find(|b| b.less_than.is_infinite())
                .map(|b| b.count),
            _ => None,
        })
        .unwrap_or(0.0)
}

fn requests(s: &Scrape, project: &str, op: &str, result: &str) -> f64 {
    value(
        s,
        "flux_requests_total",
        &[("project", project), ("op", op), ("result", result)],
    )
}

const VALUE: &str = "sk-metrics-value-93c1e4";

#[test]
fn metrics_parse_and_move_with_gets_sets_denials_and_errors() {
    let d = TestDaemon::start();
    d.create_project("app");
    let before = parse(&d.ctl_ok(&["metrics"]));
    assert_eq!(value(&before, "flux_up", &[]), 1.0);
    assert_eq!(requests(&before, "app", "get", "ok"), 0.0);
    assert_eq!(requests(&before, "app", "set", "ok"), 0.0);

    let mut app = d.client("app");
    for i in 0..3 {
        app.set("API_KEY", format!("{VALUE}{i}").as_str().into())
            .unwrap();
    }
    for _ in 0..5 {
        let _ = app.get("API_KEY").unwrap();
    }
    // Two names not set (counted as not_found, not as errors: a
    // `get(key, fallback)` that falls back is no failure), one error (an
    // invalid name) and one denial (a control request on a project socket).
    assert!(app.get("MISSING").is_err());
    assert!(app.get("MISSING").is_err());
    assert!(app.get("not a name").is_err());
    assert!(app.call(&Request::ListProjects).is_err());
    assert_eq!(
        value(
            &parse(&d.ctl_ok(&["metrics"])),
            "flux_project_connections",
            &[("project", "app")]
        ),
        1.0,
        "one connection open to app"
    );
    drop(app);

    let text = d.ctl_ok(&["metrics"]);
    assert_no_secret(text.as_bytes(), VALUE, "fluxctl metrics");
    assert!(!text.contains("API_KEY"), "metrics name no secret");
    let after = parse(&text);
    assert_eq!(requests(&after, "app", "set", "ok"), 3.0);
    assert_eq!(requests(&after, "app", "get", "ok"), 5.0);
    assert_eq!(requests(&after, "app", "get", "not_found"), 2.0);
    assert_eq!(requests(&after, "app", "get", "error"), 1.0);
    assert_eq!(requests(&after, "app", "list_projects", "denied"), 1.0);
    assert_eq!(
        requests(&after, "app", "hello", "ok"),
        0.0,
        "handshakes are not requests"
    );
    assert_eq!(
        histogram_count(
            &after,
            "flux_rotation_apply_seconds",
            &[("project", "app"), ("source", "write")]
        ),
        3.0
    );
    assert_eq!(
        value(&after, "flux_project_secrets", &[("project", "app")]),
        1.0
    );
    assert_eq!(
        value(&after, "flux_project_healthy", &[("project", "app")]),
        1.0
    );
    assert_eq!(
        value(&after, "flux_project_generation", &[("project", "app")]),
        4.0
    );
    assert!(
        value(
            &after,
            "flux_connections_accepted_total",
            &[("socket", "project")]
        ) >= 1.0
    );
    assert_eq!(value(&after, "flux_audit_enabled", &[]), 1.0);
    assert_eq!(value(&after, "flux_audit_writable", &[]), 1.0);
    assert_eq!(value(&after, "flux_audit_dropped_total", &[]), 0.0);
    assert_eq!(value(&after, "flux_fleet_mode", &[]), 0.0);
    assert!(
        value(
            &after,
            "flux_control_requests_total",
            &[("op", "metrics"), ("result", "ok")]
        ) >= 2.0
    );

    // A broken vault put in place counts as a load failure and unhealthy.
    std::fs::write(d.vault_path("app"), b"not a vault").unwrap();
    flux_e2e::eventually("the broken vault to be reported", || {
        let s = parse(&d.ctl_ok(&["metrics"]));
        value(&s, "flux_vault_load_failures_total", &[("project", "app")]) >= 1.0
            && value(&s, "flux_project_healthy", &[("project", "app")]) == 0.0
    });
}

#[test]
fn the_metrics_listener_serves_get_metrics_only() {
    // A free loopback port, then a fluxd listening on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = TestDaemon::start_with_config(&format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    d.create_project("app");
    d.client("app").set("K", VALUE.into()).unwrap();
    let host = format!("127.0.0.1:{port}");
    let a = http(port, "GET", "/metrics", &[("Host", &host)]);
    assert_eq!(a.status, 200);
    assert_eq!(
        a.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_no_secret(&a.all_bytes(), VALUE, "GET /metrics");
    let scrape = parse(&String::from_utf8(a.body).unwrap());
    assert_eq!(requests(&scrape, "app", "set", "ok"), 1.0);
    assert_eq!(http(port, "GET", "/", &[("Host", &host)]).status, 404);
    assert_eq!(
        http(port, "GET", "/metrics/x", &[("Host", &host)]).status,
        404
    );
    let a = http(
        port,
        "POST",
        "/metrics",
        &[("Host", &host), ("Content-Length", "0")],
    );
    assert_eq!(a.status, 405);
    assert_eq!(a.header("allow"), Some("GET, HEAD"));

    // A Unix socket in the runtime folder, private to fluxd's user.
    let d = TestDaemon::start_with_config("[metrics]\nlisten = \"metrics.sock\"\n");
    let socket = d.runtime_dir().join("metrics.sock");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the metrics socket's mode");
    let mut s = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    use std::io::{Read, Write};
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: fluxd\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    assert!(
        raw.starts_with("HTTP/1.1 200"),
        "{}",
        raw.lines().next().unwrap_or("")
    );
    assert!(raw.contains("\nflux_up 1\n"));

    // Any other address is a configuration error.
    let out = TestDaemon::unstarted(&[]).check_config("[metrics]\nlisten = \"0.0.0.0:9464\"\n");
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
}

/// DNS rebinding: a web page whose name resolves to 127.0.0.1 gets the
/// browser to send its requests to the listener, with the page's name in
/// `Host`. The TCP listener answers its own address only; the Unix socket
/// listener (no browser reaches it) any.
#[test]
fn the_tcp_metrics_listener_answers_only_its_own_host() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = TestDaemon::start_with_config(&format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    d.create_project("app");
    let evil = format!("evil.example:{port}");
    for headers in [
        &[("Host", "evil.example")][..],
        &[("Host", evil.as_str())],
        &[("Host", "127.0.0.1")],
        // No Host at all.
        &[],
    ] {
        for path in ["/metrics", "/"] {
            let a = http(port, "GET", path, headers);
            assert_eq!(a.status, 421, "{headers:?} {path}");
            let body = String::from_utf8_lossy(&a.body);
            assert!(
                body.starts_with("refused: the Host header is not this listener's address"),
                "{body}"
            );
            assert!(
                !body.contains("flux_") && !body.contains("app"),
                "a refusal shows no metrics: {body}"
            );
        }
    }
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ] {
        let a = http(port, "GET", "/metrics", &[("Host", &host)]);
        assert_eq!(a.status, 200, "{host}");
        let scrape = parse(&String::from_utf8(a.body).unwrap());
        assert_eq!(value(&scrape, "flux_up", &[]), 1.0);
    }
    drop(d);

    let d = TestDaemon::start_with_config("[metrics]\nlisten = \"metrics.sock\"\n");
    let mut s =
        std::os::unix::net::UnixStream::connect(d.runtime_dir().join("metrics.sock")).unwrap();
    use std::io::{Read, Write};
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    assert!(
        raw.starts_with("HTTP/1.1 200"),
        "the Unix socket takes any Host: {}",
        raw.lines().next().unwrap_or("")
    );
}

#[test]
fn server_workers_default_to_one_per_cpu_and_follow_the_config() {
    let cpus = std::thread::available_parallelism().unwrap().get();
    let d = TestDaemon::start();
    let scrape = parse(&d.ctl_ok(&["metrics"]));
    assert_eq!(value(&scrape, "flux_worker_threads", &[]), cpus as f64);
    drop(d);

    let d = TestDaemon::start_with_config(&format!("[server]\nworkers = {}\n", cpus + 1));
    let scrape = parse(&d.ctl_ok(&["metrics"]));
    assert_eq!(
        value(&scrape, "flux_worker_threads", &[]),
        (cpus + 1) as f64
    );
    drop(d);

    // One worker, as on a small host: it serves.
    let d = TestDaemon::start_with_config("[server]\nworkers = 1\n");
    let scrape = parse(&d.ctl_ok(&["metrics"]));
    assert_eq!(value(&scrape, "flux_worker_threads", &[]), 1.0);
    d.create_project("app");
    d.client("app").set("K", VALUE.into()).unwrap();
    let served = d.client("app").get("K").unwrap();
    assert!(served.expose() == VALUE, "one worker served a wrong value");

    let out = TestDaemon::unstarted(&[]).check_config("[server]\nworkers = 0\n");
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[server] workers = 0: give 1 to 256 threads"),
        "{err}"
    );
}

#[test]
fn metrics_work_against_fluxd_dev() {
    let tmp = tempfile::Builder::new()
        .prefix("fxmet")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join(".env"), format!("DEV_KEY={VALUE}\n")).unwrap();
    let (mut child, socket) = super::dev::spawn_dev(dir, &["--project", "app"]);
    let mut c = flux_protocol::blocking::Client::connect(&socket).unwrap();
    for _ in 0..4 {
        let _ = c.get("DEV_KEY").unwrap();
    }
    drop(c);
    let out = Command::new(bin("fluxctl"))
        .arg("--runtime-dir")
        .arg(dir.join("run/dev/app"))
        .arg("metrics")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_no_secret(&out.stdout, VALUE, "fluxctl metrics against fluxd dev");
    let s = parse(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(requests(&s, "app", "get", "ok"), 4.0);
    assert_eq!(
        value(&s, "flux_project_secrets", &[("project", "app")]),
        1.0
    );
    assert_eq!(value(&s, "flux_audit_enabled", &[]), 0.0);
    flux_e2e::terminate(&mut child, std::time::Duration::from_secs(5));
}
