//! `fluxctl dashboard`: the real binary against the real fluxd (and
//! `fluxd dev`), looked at with a plain HTTP client — refusals without the
//! token, from another Host or Origin, headers, no value in any answer —
//! and with headless Chromium: names shown, a set made with fluxctl shown
//! live, no value anywhere in the page or in what it received, nothing
//! fetched from elsewhere, no error logged. Screenshots are written to
//! `target/dashboard.png` and `target/dashboard-projects.png`.

use super::browser::{Chromium, http};
use flux_e2e::{TestDaemon, assert_no_secret, bin, terminate};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// A running `fluxctl dashboard`.
struct Dashboard {
    child: Child,
    port: u16,
    token: String,
    url: String,
}

impl Dashboard {
    /// Starts `fluxctl --runtime-dir DIR dashboard --no-open --port 0` and
    /// reads the URL it prints.
    fn start(runtime_dir: &Path) -> Self {
        Self::start_as(runtime_dir, None, &[])
    }

    /// [`Dashboard::start`] as another uid (in group 65534), with fluxctl
    /// arguments before `dashboard`.
    fn start_as(runtime_dir: &Path, uid: Option<u32>, args: &[&str]) -> Self {
        let mut cmd = Command::new(bin("fluxctl"));
        if let Some(uid) = uid {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(65534).current_dir("/");
        }
        let mut child = cmd
            .arg("--runtime-dir")
            .arg(runtime_dir)
            .args(args)
            .args(["dashboard", "--no-open", "--port", "0"])
            .env_remove("FLUX_PROJECT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start fluxctl dashboard");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("fluxctl dashboard prints its URL")
                .unwrap();
            if line.starts_with("http://127.0.0.1:") {
                break line.trim().to_owned();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        let port: u16 = url["http://127.0.0.1:".len()..]
            .split('/')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port in the URL");
        let token = url.split("token=").nth(1).expect("a token").to_owned();
        assert_eq!(token.len(), 64, "a 256-bit token, hex");
        Self {
            child,
            port,
            token,
            url,
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// GET `path` as the page would: right Host, the token.
    fn get(&self, path: &str) -> super::browser::HttpAnswer {
        http(
            self.port,
            "GET",
            path,
            &[("Host", &self.host()), ("Authorization", &self.bearer())],
        )
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(5));
    }
}

/// True when Debian's `chromium` is on PATH.
fn chromium_installed() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("chromium").is_file()))
}

/// `target/`, where the screenshots go.
fn target_dir() -> PathBuf {
    bin("fluxctl")
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/fluxctl")
        .to_path_buf()
}

fn assert_security_headers(a: &super::browser::HttpAnswer, what: &str) {
    assert_eq!(a.header("content-security-policy"), Some(CSP), "{what}");
    assert_eq!(
        a.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(a.header("referrer-policy"), Some("no-referrer"), "{what}");
    assert_eq!(a.header("cache-control"), Some("no-store"), "{what}");
}

const VALUE_A: &str = "sk-dashboard-value-0f3c9a";
const VALUE_B: &str = "pk-dashboard-value-77e1d2";

fn daemon_with_secrets() -> TestDaemon {
    let d = TestDaemon::start();
    d.create_project("app");
    d.create_project("billing");
    d.client("app")
        .set("OPENAI_API_KEY", VALUE_A.into())
        .unwrap();
    d.client("billing")
        .set("STRIPE_SECRET_KEY", VALUE_B.into())
        .unwrap();
    d
}

#[test]
fn the_dashboard_refuses_requests_without_the_token_or_from_elsewhere() {
    let d = daemon_with_secrets();
    let dash = Dashboard::start(&d.runtime_dir());
    let host = dash.host();
    let port = dash.port;

    // No token, a wrong token, a wrong token in the URL.
    for (path, headers) in [
        ("/", vec![("Host", host.as_str())]),
        ("/api/overview", vec![("Host", host.as_str())]),
        ("/api/events", vec![("Host", host.as_str())]),
        (
            "/api/overview",
            vec![("Host", host.as_str()), ("Authorization", "Bearer nope")],
        ),
        (
            "/api/overview",
            vec![
                ("Host", host.as_str()),
                ("Cookie", &format!("flux_dashboard_{port}=nope")),
            ],
        ),
        ("/?token=nope", vec![("Host", host.as_str())]),
    ] {
        let a = http(port, "GET", path, &headers);
        assert_eq!(a.status, 401, "GET {path} with {headers:?}");
        assert_security_headers(&a, path);
    }

    // The right token under another Host (DNS rebinding), or no Host.
    let bearer = dash.bearer();
    for bad_host in [
        "evil.example",
        &format!("evil.example:{port}"),
        &format!("127.0.0.1:{}", port.wrapping_add(1)),
        "127.0.0.1",
        &format!("[::1]:{port}"),
    ] {
        let a = http(
            port,
            "GET",
            "/api/overview",
            &[("Host", bad_host), ("Authorization", &bearer)],
        );
        assert_eq!(a.status, 421, "Host {bad_host}");
        assert_security_headers(&a, bad_host);
    }
    let a = http(port, "GET", "/api/overview", &[("Authorization", &bearer)]);
    assert!(a.status >= 400, "no Host: {}", a.status);

    // The right token from a foreign Origin, or cross-site.
    for origin in [
        "http://evil.example",
        "null",
        &format!("http://evil.example:{port}"),
        &format!("https://127.0.0.1:{port}"),
        &format!("http://127.0.0.1:{}", port.wrapping_add(1)),
    ] {
        let a = http(
            port,
            "GET",
            "/api/overview",
            &[
                ("Host", &host),
                ("Authorization", &bearer),
                ("Origin", origin),
            ],
        );
        assert_eq!(a.status, 403, "Origin {origin}");
    }
    let a = http(
        port,
        "GET",
        "/api/overview",
        &[
            ("Host", &host),
            ("Authorization", &bearer),
            ("Sec-Fetch-Site", "cross-site"),
        ],
    );
    assert_eq!(a.status, 403, "cross-site");
    for origin in [
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
    ] {
        let a = http(
            port,
            "GET",
            "/api/overview",
            &[
                ("Host", &host),
                ("Authorization", &bearer),
                ("Origin", &origin),
            ],
        );
        assert_eq!(a.status, 200, "Origin {origin}");
    }
    let a = http(
        port,
        "GET",
        "/api/overview",
        &[
            ("Host", &format!("localhost:{port}")),
            ("Authorization", &bearer),
        ],
    );
    assert_eq!(a.status, 200, "Host localhost:PORT");

    // Read-only: no other method, even with the token.
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let a = http(
            port,
            method,
            "/api/projects/app",
            &[
                ("Host", &host),
                ("Authorization", &bearer),
                ("Content-Length", "0"),
            ],
        );
        assert_eq!(a.status, 405, "{method}");
    }

    // The printed URL trades its token for a strict cookie, and the cookie
    // is then enough.
    let a = http(
        port,
        "GET",
        &format!("/?token={}", dash.token),
        &[("Host", &host)],
    );
    assert_eq!(a.status, 303);
    assert_eq!(a.header("location"), Some("/"));
    let cookie = a.header("set-cookie").expect("a cookie").to_owned();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    let pair = cookie.split(';').next().unwrap().to_owned();
    let a = http(
        port,
        "GET",
        "/api/overview",
        &[("Host", &host), ("Cookie", &pair)],
    );
    assert_eq!(a.status, 200);

    // Only 127.0.0.1 listens.
    assert!(
        std::net::TcpStream::connect(("127.0.0.2", port)).is_err(),
        "the dashboard answers on another address than 127.0.0.1"
    );

    // Every answer: the headers, and no value.
    for path in [
        "/",
        "/app.js",
        "/style.css",
        "/favicon.svg",
        "/api/overview",
        "/api/projects/app",
        "/api/projects/billing",
        "/api/audit",
        "/api/audit?project=app&op=set",
        "/api/audit?denied=1",
        "/api/activity?project=app&hours=24",
        "/api/metrics",
        "/api/nothing",
    ] {
        let a = dash.get(path);
        assert!(
            a.status == 200 || path == "/api/nothing",
            "GET {path}: {}",
            a.status
        );
        assert_security_headers(&a, path);
        for value in [VALUE_A, VALUE_B] {
            assert_no_secret(&a.all_bytes(), value, &format!("GET {path}"));
        }
    }
    let page = String::from_utf8(dash.get("/").body).unwrap();
    assert!(
        !page.contains("http://") && !page.contains("https://") && !page.contains("//cdn"),
        "the page loads nothing from elsewhere"
    );
    let names = String::from_utf8(dash.get("/api/projects/app").body).unwrap();
    assert!(names.contains("OPENAI_API_KEY"), "{names}");
    // Each name carries the keyed digest `fluxctl secrets list` shows.
    let app: serde_json::Value = serde_json::from_str(&names).unwrap();
    let listed: serde_json::Value =
        serde_json::from_str(&d.ctl_ok(&["-p", "app", "secrets", "list", "--json"])).unwrap();
    let digest = app["secrets"][0]["digest"].as_str().expect("a digest");
    assert_eq!(digest.len(), 12, "{names}");
    assert_eq!(listed[0]["digest"].as_str(), Some(digest));
    let overview: serde_json::Value =
        serde_json::from_slice(&dash.get("/api/overview").body).unwrap();
    let projects: Vec<&str> = overview["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(projects, ["app", "billing"]);
    assert_eq!(overview["projects"][0]["healthy"], true);
}

#[test]
fn the_dashboard_in_chromium_shows_names_live_and_never_a_value() {
    let test = "the_dashboard_in_chromium_shows_names_live_and_never_a_value";
    if !chromium_installed() {
        eprintln!("SKIPPED: {test}: chromium is not installed (apt-get install -y chromium)");
        return;
    }
    let d = daemon_with_secrets();
    let dash = Dashboard::start(&d.runtime_dir());
    let mut browser = Chromium::start();

    // The printed URL: the token becomes a cookie, the projects page shows.
    browser.navigate(&dash.url);
    browser.wait_for_text("both projects", Duration::from_secs(20), |t| {
        t.contains("app") && t.contains("billing") && t.contains("healthy")
    });
    browser.wait_for_text("the live indicator", Duration::from_secs(10), |t| {
        t.contains("live")
    });
    browser.screenshot(&target_dir().join("dashboard-projects.png"));
    let location = browser.eval("location.href");
    assert!(
        !location.as_str().unwrap_or_default().contains("token="),
        "the token stays in the address bar: {location}"
    );

    // One project's names.
    browser.navigate(&format!("http://127.0.0.1:{}/#/project/app", dash.port));
    browser.wait_for_text("the names of app", Duration::from_secs(10), |t| {
        t.contains("OPENAI_API_KEY") && t.contains("Rotation timeline")
    });
    // Subscribed: the page's event stream is open.
    flux_e2e::eventually("the event stream", || {
        browser
            .eval("document.getElementById('live').textContent")
            .as_str()
            == Some("live")
    });

    // A set made with fluxctl shows up on the open page.
    let started = Instant::now();
    let out = d
        .ctl()
        .args(["--project", "app", "secrets", "set", "NEW_LIVE_SECRET"])
        .stdin(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"nv-live-value-5a5a5a")?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success(), "fluxctl secrets set failed");
    let set_took = started.elapsed();
    let shown = browser.wait_for(
        "the new name in the secrets table",
        Duration::from_secs(5),
        "!!document.querySelector('tr[data-secret=\"NEW_LIVE_SECRET\"]')",
    );
    eprintln!(
        "dashboard: fluxctl secrets set took {set_took:?}; the name was on the page {shown:?} after it returned"
    );
    assert!(
        shown < Duration::from_secs(2),
        "the set took {shown:?} to appear"
    );
    browser.screenshot(&target_dir().join("dashboard.png"));

    // The audit page with its filters.
    browser.navigate(&format!(
        "http://127.0.0.1:{}/#/audit?project=app&op=set",
        dash.port
    ));
    browser.wait_for_text("the audit entries", Duration::from_secs(10), |t| {
        t.contains("NEW_LIVE_SECRET") && t.contains("allowed")
    });
    browser.navigate(&format!("http://127.0.0.1:{}/#/metrics", dash.port));
    browser.wait_for_text("the metrics", Duration::from_secs(10), |t| {
        t.contains("flux_requests_total")
    });

    // No value in the page, in any answer it received, or in any event.
    let html = browser.html();
    let received = browser.received();
    assert!(
        received
            .iter()
            .any(|(url, _)| url.contains("/api/projects/app")),
        "the page's answers were seen: {:?}",
        received.iter().map(|(u, _)| u).collect::<Vec<_>>()
    );
    assert!(
        received.iter().any(|(url, _)| url == "event stream"),
        "no server-sent event was received"
    );
    for value in [VALUE_A, VALUE_B, "nv-live-value-5a5a5a"] {
        assert_no_secret(html.as_bytes(), value, "the page");
        for (url, body) in &received {
            assert_no_secret(body, value, url);
        }
    }
    // Nothing from elsewhere, nothing refused, nothing thrown.
    for url in browser.requested_urls() {
        assert!(
            url.starts_with(&format!("http://127.0.0.1:{}/", dash.port)),
            "the page fetched {url}"
        );
    }
    let errors = browser.errors();
    assert!(errors.is_empty(), "the page logged errors: {errors:?}");
}

#[test]
fn the_dashboard_works_against_fluxd_dev() {
    let tmp = tempfile::Builder::new()
        .prefix("fxdash")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join(".env"), format!("DEV_KEY={VALUE_A}\nOTHER=1\n")).unwrap();
    let (mut child, _socket) = super::dev::spawn_dev(dir, &["--project", "app"]);
    let runtime = dir.join("run/dev/app");
    let dash = Dashboard::start(&runtime);
    let a = dash.get("/api/projects/app");
    assert_eq!(a.status, 200);
    let body = String::from_utf8(a.all_bytes()).unwrap();
    assert!(body.contains("DEV_KEY") && body.contains("OTHER"), "{body}");
    assert_no_secret(body.as_bytes(), VALUE_A, "the dev project's names");
    let a = dash.get("/api/overview");
    let overview: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(overview["projects"][0]["name"], "app");
    assert_eq!(
        overview["audit"]["path"],
        serde_json::Value::Null,
        "dev has no audit log"
    );
    let a = dash.get("/api/audit");
    let audit: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert!(
        audit["error"]["message"]
            .as_str()
            .unwrap()
            .contains("disabled"),
        "{audit}"
    );
    for path in ["/api/overview", "/api/metrics", "/api/activity?project=app"] {
        assert_no_secret(&dash.get(path).all_bytes(), VALUE_A, path);
    }
    drop(dash);
    terminate(&mut child, Duration::from_secs(5));
}

/// Reads the dashboard's event stream until a `data:` line contains
/// `needle`, doing `trigger` once the stream is open; the stream's text.
fn events_until(dash: &Dashboard, needle: &str, trigger: impl FnOnce()) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", dash.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    write!(
        s,
        "GET /api/events HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\n\r\n",
        dash.host(),
        dash.bearer()
    )
    .unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    let mut trigger = Some(trigger);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(n) = s.read(&mut buf) {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        if seen.contains("fluxctl dashboard events")
            && let Some(t) = trigger.take()
        {
            t();
        }
        if seen
            .lines()
            .any(|l| l.starts_with("data:") && l.contains(needle))
        {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "no event naming {needle}: {seen}"
        );
    }
}

#[test]
fn a_project_admin_follows_changes_live_and_a_user_with_no_role_sees_nothing() {
    let test = "a_project_admin_follows_changes_live_and_a_user_with_no_role_sees_nothing";
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "SKIPPED: {test}: needs root to run the dashboard as other uids (CI runs as root)"
        );
        return;
    }
    const READER: u32 = 65534;
    const NO_ROLE: u32 = 65533;
    const ADMIN: u32 = 65532;
    let d = TestDaemon::start_with_config(&format!(
        "[projects.app]\nreaders = {{ users = [{READER}] }}\nadmins = {{ users = [{ADMIN}] }}\nsocket_group = 65534\n"
    ));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d.dir(), std::fs::Permissions::from_mode(0o711)).unwrap();
    d.create_project("app");
    d.client("app").set("API_KEY", VALUE_A.into()).unwrap();

    // The admin: not a daemon admin, so the project named with --project;
    // its names, and its changes live (admins may subscribe).
    let admin = Dashboard::start_as(&d.runtime_dir(), Some(ADMIN), &["--project", "app"]);
    let overview: serde_json::Value =
        serde_json::from_slice(&admin.get("/api/overview").body).unwrap();
    assert_eq!(
        overview["error"]["denied"], true,
        "not a daemon admin: {overview}"
    );
    assert_eq!(overview["projects"][0]["name"], "app", "{overview}");
    let names = String::from_utf8(admin.get("/api/projects/app").body).unwrap();
    assert!(names.contains("API_KEY"), "{names}");
    flux_e2e::eventually("the admin's subscription", || {
        let o: serde_json::Value =
            serde_json::from_slice(&admin.get("/api/overview").body).unwrap();
        o["projects"][0]["live"] == true
    });
    let stream = events_until(&admin, "ADMIN_SEES_THIS", || {
        d.client("app")
            .set("ADMIN_SEES_THIS", VALUE_B.into())
            .unwrap();
    });
    assert!(stream.contains("\"kind\":\"set\""), "{stream}");
    for value in [VALUE_A, VALUE_B] {
        assert_no_secret(stream.as_bytes(), value, "the admin's event stream");
        assert_no_secret(&admin.get("/api/projects/app").all_bytes(), value, "names");
    }

    // No role: nothing listed, nothing followed.
    let nobody = Dashboard::start_as(&d.runtime_dir(), Some(NO_ROLE), &["--project", "app"]);
    let page: serde_json::Value =
        serde_json::from_slice(&nobody.get("/api/projects/app").body).unwrap();
    assert_eq!(page["error"]["denied"], true, "{page}");
    assert_eq!(page["secrets"], serde_json::json!([]));
    let overview: serde_json::Value =
        serde_json::from_slice(&nobody.get("/api/overview").body).unwrap();
    assert_eq!(overview["projects"], serde_json::json!([]), "{overview}");
}

#[test]
fn the_dashboard_says_when_fluxd_is_not_running() {
    let tmp = tempfile::Builder::new()
        .prefix("fxnone")
        .tempdir_in("/tmp")
        .unwrap();
    let out = Command::new(bin("fluxctl"))
        .arg("--runtime-dir")
        .arg(tmp.path())
        .args(["dashboard", "--no-open"])
        .env_remove("FLUX_PROJECT")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "exit status 4: fluxd is not reachable"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("control.sock"),
        "names the socket: {stderr}"
    );
}
