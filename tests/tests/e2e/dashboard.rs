//! `fluxctl dashboard`: the real binary against the real fluxd (and
//! `fluxd dev`), looked at with a plain HTTP client — signing in with the
//! printed link's one-time code, refusals without the session, from
//! another Host or Origin, headers, no value in any answer — and with
//! headless Chromium: names shown, a set made with fluxctl shown live, the
//! unit of a function's read shown beside its peer on the Audit page, no
//! value anywhere in the page or in what it received, nothing fetched from
//! elsewhere, no error logged. Screenshots are written to
//! `target/dashboard.png` and `target/dashboard-projects.png`.
//!
//! Other local users are played too: a web server on another loopback
//! port, which the operator's browser visits after signing in
//! ([`another_users_server_on_another_loopback_port_is_sent_nothing_that_opens_the_dashboard`]),
//! and a process-list watcher that reads the link from the browser
//! launcher's `/proc/PID/cmdline`
//! ([`a_process_list_watcher_gets_nothing_from_the_opened_link`],
//! [`a_watcher_that_uses_the_link_first_is_signed_out_when_the_browser_arrives`],
//! [`a_link_works_once_and_not_after_its_time`]).

use super::browser::{Chromium, HttpAnswer, http};
use flux_e2e::{TestDaemon, assert_no_secret, bin, terminate};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The header the page sends the printed link's code in.
const CODE_HEADER: &str = "Flux-Dashboard-Code";

/// A running `fluxctl dashboard`.
struct Dashboard {
    child: Child,
    port: u16,
    /// The one-time code of the printed link.
    code: String,
    /// The printed link.
    url: String,
    /// The session secret, once [`Dashboard::sign_in`] traded the code.
    session: Option<String>,
    /// What fluxctl wrote to stderr so far.
    stderr: Arc<Mutex<String>>,
}

impl Dashboard {
    /// Starts `fluxctl --runtime-dir DIR dashboard --no-open --port 0`,
    /// reads the link it prints and signs in with it, as the page does.
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
        cmd.arg("--runtime-dir").arg(runtime_dir).args(args).args([
            "dashboard",
            "--no-open",
            "--port",
            "0",
        ]);
        let mut dash = Self::spawn(cmd);
        dash.sign_in();
        dash
    }

    /// `fluxctl --runtime-dir DIR dashboard --port 0 ARGS`, not signed in.
    fn launch(runtime_dir: &Path, args: &[&str]) -> Self {
        let mut cmd = Command::new(bin("fluxctl"));
        cmd.arg("--runtime-dir")
            .arg(runtime_dir)
            .args(["dashboard", "--port", "0"])
            .args(args);
        Self::spawn(cmd)
    }

    /// Runs `cmd` and reads the link it prints.
    fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .env_remove("FLUX_PROJECT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start fluxctl dashboard");
        let stderr = Arc::new(Mutex::new(String::new()));
        let err = BufReader::new(child.stderr.take().unwrap());
        let seen = stderr.clone();
        std::thread::spawn(move || {
            for line in err.lines().map_while(Result::ok) {
                eprintln!("fluxctl dashboard: {line}");
                let mut seen = seen.lock().unwrap();
                seen.push_str(&line);
                seen.push('\n');
            }
        });
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("fluxctl dashboard prints its link")
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
            .expect("a port in the link");
        let code = url.split("?code=").nth(1).expect("a code").to_owned();
        assert_eq!(
            url,
            format!("http://127.0.0.1:{port}/?code={code}"),
            "the link carries the code and nothing else"
        );
        assert!(
            code.len() == 64 && code.bytes().all(|b| b.is_ascii_hexdigit()),
            "a 256-bit code, hex: {code}"
        );
        Self {
            child,
            port,
            code,
            url,
            session: None,
            stderr,
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `GET /api/session` with `code` in the code header.
    fn redeem(&self, code: &str) -> HttpAnswer {
        http(
            self.port,
            "GET",
            "/api/session",
            &[("Host", &self.host()), (CODE_HEADER, code)],
        )
    }

    /// What the page does with the printed link: loads it, then trades
    /// the code for the session secret.
    fn sign_in(&mut self) {
        let page = http(
            self.port,
            "GET",
            &format!("/?code={}", self.code),
            &[("Host", &self.host())],
        );
        assert_eq!(page.status, 200, "the printed link loads the page");
        let a = self.redeem(&self.code);
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        assert_eq!(a.header("set-cookie"), None, "no cookie");
        let answer: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        let session = answer["session"].as_str().expect("a session").to_owned();
        assert!(
            session.len() == 64 && session.bytes().all(|b| b.is_ascii_hexdigit()),
            "a 256-bit session secret, hex"
        );
        assert_ne!(session, self.code, "the session is not the code");
        self.session = Some(session);
    }

    fn session(&self) -> &str {
        self.session.as_deref().expect("signed in")
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.session())
    }

    /// GET `path` as the page would: right Host, the session.
    fn get(&self, path: &str) -> HttpAnswer {
        http(
            self.port,
            "GET",
            path,
            &[("Host", &self.host()), ("Authorization", &self.bearer())],
        )
    }

    /// What fluxctl wrote to stderr so far.
    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
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

fn assert_security_headers(a: &HttpAnswer, what: &str) {
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
fn the_dashboard_refuses_requests_without_the_session_or_from_elsewhere() {
    let d = daemon_with_secrets();
    let mut dash = Dashboard::launch(&d.runtime_dir(), &["--no-open"]);
    let host = dash.host();
    let port = dash.port;
    let code = dash.code.clone();

    // Before signing in: the page's shell (the same bytes for everyone, no
    // data) is served; no API answer is, not even for the code itself in
    // the places a session goes.
    for path in ["/", "/app.js", "/style.css", "/favicon.svg"] {
        let a = http(port, "GET", path, &[("Host", &host)]);
        assert_eq!(a.status, 200, "GET {path}");
        assert_security_headers(&a, path);
    }
    let cookie_with_code = format!("flux_dashboard_{port}={code}");
    let bearer_code = format!("Bearer {code}");
    for path in [
        "/api/overview",
        "/api/events",
        "/api/projects/app",
        "/api/metrics",
    ] {
        for headers in [
            vec![("Host", host.as_str())],
            vec![("Host", host.as_str()), ("Authorization", "Bearer nope")],
            vec![("Host", host.as_str()), ("Authorization", &bearer_code)],
            vec![("Host", host.as_str()), ("Cookie", &cookie_with_code)],
            vec![("Host", host.as_str()), (CODE_HEADER, &code)],
        ] {
            let a = http(port, "GET", path, &headers);
            assert_eq!(a.status, 401, "GET {path} with {headers:?}");
            assert_security_headers(&a, path);
        }
    }
    let a = http(port, "GET", "/api/session", &[("Host", &host)]);
    assert_eq!(a.status, 400, "no code");
    let a = dash.redeem("nope");
    assert_eq!(a.status, 401, "a wrong code");
    let a = http(port, "GET", "/?code=nope", &[("Host", &host)]);
    assert_eq!(a.status, 401, "a link with a wrong code");
    // A prefetch or prerender of the link spends nothing.
    for purpose in ["prefetch", "prefetch;prerender"] {
        let a = http(
            port,
            "GET",
            &format!("/?code={code}"),
            &[("Host", &host), ("Sec-Purpose", purpose)],
        );
        assert_eq!(a.status, 503, "Sec-Purpose: {purpose}");
    }
    let a = http(
        port,
        "GET",
        "/api/session",
        &[
            ("Host", &host),
            (CODE_HEADER, &code),
            ("Purpose", "prefetch"),
        ],
    );
    assert_eq!(a.status, 503, "Purpose: prefetch");
    // Only GET trades the code (a HEAD would throw the session away).
    let a = http(
        port,
        "HEAD",
        "/api/session",
        &[("Host", &host), (CODE_HEADER, &code)],
    );
    assert_eq!(a.status, 405, "HEAD /api/session");

    // The printed link: the page loads, and trades the code for a session
    // secret in a header. No cookie is set.
    dash.sign_in();
    let session = dash.session().to_owned();
    assert_eq!(dash.get("/api/overview").status, 200);
    // The session in a cookie (where the dashboard used to keep its
    // token: a cookie every port of 127.0.0.1 is sent) opens nothing.
    for cookie in [
        format!("flux_dashboard_{port}={session}"),
        format!("session={session}"),
        session.clone(),
    ] {
        let a = http(
            port,
            "GET",
            "/api/overview",
            &[("Host", &host), ("Cookie", &cookie)],
        );
        assert_eq!(a.status, 401, "Cookie: {cookie}");
    }
    // Nor in a URL.
    let a = http(
        port,
        "GET",
        &format!("/api/overview?token={session}&session={session}"),
        &[("Host", &host)],
    );
    assert_eq!(a.status, 401, "the session in the query");

    // The right session under another Host (DNS rebinding), or no Host.
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

    // The right session from a foreign Origin, or cross-site.
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

    // Read-only: no other method, even with the session.
    for path in ["/api/projects/app", "/api/session"] {
        for method in ["POST", "PUT", "DELETE", "PATCH"] {
            let a = http(
                port,
                method,
                path,
                &[
                    ("Host", &host),
                    ("Authorization", &bearer),
                    ("Content-Length", "0"),
                ],
            );
            assert_eq!(a.status, 405, "{method} {path}");
        }
    }

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
        assert_eq!(a.header("set-cookie"), None, "GET {path} sets a cookie");
        for value in [VALUE_A, VALUE_B] {
            assert_no_secret(&a.all_bytes(), value, &format!("GET {path}"));
        }
    }
    // The session still works: a wrong code is no second use.
    assert_eq!(dash.get("/api/overview").status, 200);
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

/// The key the page keeps its session under, in its tab's sessionStorage.
const SESSION_KEY: &str = "flux-dashboard-session";

/// The page's session secret, read from its tab's sessionStorage.
fn page_session(browser: &mut Chromium) -> String {
    let session = browser.eval(&format!("sessionStorage.getItem('{SESSION_KEY}')"));
    let session = session
        .as_str()
        .expect("the page holds a session")
        .to_owned();
    assert_eq!(session.len(), 64, "a 256-bit session secret, hex");
    session
}

#[test]
fn the_dashboard_in_chromium_shows_names_live_and_never_a_value() {
    let test = "the_dashboard_in_chromium_shows_names_live_and_never_a_value";
    if !chromium_installed() {
        eprintln!("SKIPPED: {test}: chromium is not installed (apt-get install -y chromium)");
        return;
    }
    let d = daemon_with_secrets();
    let dash = Dashboard::launch(&d.runtime_dir(), &["--no-open"]);
    let origin = format!("http://127.0.0.1:{}/", dash.port);
    let mut browser = Chromium::start();

    // The printed link: the page trades its code for a session, and the
    // projects page shows.
    browser.navigate(&dash.url);
    browser.wait_for_text("both projects", Duration::from_secs(20), |t| {
        t.contains("app") && t.contains("billing") && t.contains("healthy")
    });
    browser.wait_for_text("the live indicator", Duration::from_secs(10), |t| {
        t.contains("live")
    });
    browser.screenshot(&target_dir().join("dashboard-projects.png"));
    let location = browser.eval("location.href");
    assert_eq!(
        location.as_str(),
        Some(origin.as_str()),
        "the code is taken out of the address bar"
    );
    let session = page_session(&mut browser);
    // No cookie: the jar, which every port of a host shares, holds nothing.
    let cookies = browser.cookies();
    assert!(cookies.is_empty(), "the browser holds cookies: {cookies:?}");
    // A reload keeps the tab signed in (the printed link is spent).
    browser.call("Page.reload", serde_json::json!({}));
    browser.wait_for_text(
        "both projects after a reload",
        Duration::from_secs(10),
        |t| t.contains("billing") && t.contains("healthy"),
    );
    assert_eq!(page_session(&mut browser), session);

    // One project's names.
    browser.navigate(&format!("{origin}#/project/app"));
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
    browser.navigate(&format!("{origin}#/audit?project=app&op=write"));
    browser.wait_for_text("the audit entries", Duration::from_secs(10), |t| {
        t.contains("NEW_LIVE_SECRET") && t.contains("allowed")
    });
    browser.navigate(&format!("{origin}#/metrics"));
    browser.wait_for_text("the metrics", Duration::from_secs(10), |t| {
        t.contains("flux_requests_total")
    });

    // A tab opened without an opener (its sessionStorage starts empty) is
    // handed the session by this one, and shows its page.
    let opened = browser.call(
        "Runtime.evaluate",
        serde_json::json!({
            "expression": "window.open('/#/audit?project=billing', '_blank', 'noopener'); true",
            "userGesture": true,
        }),
    );
    assert!(opened.get("error").is_none(), "{opened}");
    let mut tab = browser.page_at(&format!("{origin}#/audit?project=billing"));
    tab.wait_for_text(
        "the audit page in a new tab",
        Duration::from_secs(10),
        |t| t.contains("STRIPE_SECRET_KEY"),
    );
    assert_eq!(page_session(&mut tab), session);
    let errors = tab.errors();
    assert!(errors.is_empty(), "the new tab logged errors: {errors:?}");
    drop(tab);

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
    let events: Vec<u8> = received
        .iter()
        .filter(|(url, _)| url == "event stream")
        .flat_map(|(_, body)| body.clone())
        .collect();
    let events = String::from_utf8_lossy(&events);
    assert!(
        events.contains("fluxctl dashboard events") && events.contains("NEW_LIVE_SECRET"),
        "the event stream was not received: {events}"
    );
    for value in [VALUE_A, VALUE_B, "nv-live-value-5a5a5a"] {
        assert_no_secret(html.as_bytes(), value, "the page");
        for (url, body) in &received {
            assert_no_secret(body, value, url);
        }
    }
    // Nothing from elsewhere, the session in no URL, nothing refused,
    // nothing thrown.
    for url in browser.requested_urls() {
        assert!(url.starts_with(&origin), "the page fetched {url}");
        assert!(!url.contains(&session), "the session in a URL: {url}");
    }
    let errors = browser.errors();
    assert!(errors.is_empty(), "the page logged errors: {errors:?}");
    assert!(browser.cookies().is_empty(), "the browser holds cookies");

    // The printed link opened again: a page says it was used, and the tab
    // it signed in is signed out.
    browser.navigate(&dash.url);
    browser.wait_for_text("the used-link page", Duration::from_secs(10), |t| {
        t.contains("used already")
    });
    browser.navigate(&origin);
    browser.wait_for_text("the signed-out page", Duration::from_secs(10), |t| {
        t.contains("Signed out")
    });
    let left = browser.eval(&format!("sessionStorage.getItem('{SESSION_KEY}')"));
    assert_eq!(
        left,
        serde_json::Value::Null,
        "the ended session is dropped"
    );
}

/// Another local user's web server on a loopback port: it answers every
/// request with a page whose script reports all it can see in the
/// browser (cookies, storage, what the dashboard's tabs answer on its
/// broadcast channel), and keeps every request head it is sent.
struct OtherUsersServer {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

const OTHER_USERS_PAGE: &str = r#"<!doctype html><title>nothing to see</title><script>
const seen = { cookie: document.cookie, session: Object.entries(sessionStorage),
  local: Object.entries(localStorage), channel: [] };
const ch = new BroadcastChannel('flux-dashboard');
ch.onmessage = (m) => seen.channel.push(m.data);
ch.postMessage('session?');
setTimeout(() => fetch('/report?' + encodeURIComponent(JSON.stringify(seen))), 500);
</script>"#;

impl OtherUsersServer {
    fn start() -> Self {
        use std::io::{Read, Write};
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (kept, stopped) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                let Ok((mut s, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                        _ => break,
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let body = if head.starts_with("GET /report") {
                    ""
                } else {
                    OTHER_USERS_PAGE
                };
                kept.lock().unwrap().push(head);
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self {
            port,
            requests,
            stop,
        }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for OtherUsersServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The headers of a request head, but its Host and Connection.
fn replayable_headers(head: &str) -> Vec<(String, String)> {
    head.split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, _)| !k.eq_ignore_ascii_case("host") && !k.eq_ignore_ascii_case("connection"))
        .collect()
}

#[test]
fn another_users_server_on_another_loopback_port_is_sent_nothing_that_opens_the_dashboard() {
    let test =
        "another_users_server_on_another_loopback_port_is_sent_nothing_that_opens_the_dashboard";
    if !chromium_installed() {
        eprintln!("SKIPPED: {test}: chromium is not installed (apt-get install -y chromium)");
        return;
    }
    let d = daemon_with_secrets();
    let dash = Dashboard::launch(&d.runtime_dir(), &["--no-open"]);
    let other = OtherUsersServer::start();
    let mut browser = Chromium::start();

    // The operator signs in with the printed link.
    browser.navigate(&dash.url);
    browser.wait_for_text("both projects", Duration::from_secs(20), |t| {
        t.contains("app") && t.contains("billing") && t.contains("healthy")
    });
    let session = page_session(&mut browser);

    // Then the same browser, the same tab, visits the other user's server,
    // under both names of loopback. Its page reports what it can see.
    for host in ["127.0.0.1", "localhost"] {
        let before = other.requests().len();
        browser.navigate(&format!("http://{host}:{}/", other.port));
        flux_e2e::eventually("the other user's page to report", || {
            other.requests()[before..]
                .iter()
                .any(|r| r.starts_with("GET /report"))
        });
    }
    let seen = other.requests();
    assert!(seen.len() >= 4, "{seen:?}");
    for head in &seen {
        let decoded = percent_decode(head);
        assert!(
            !decoded.contains(&session) && !decoded.contains(&dash.code),
            "the other user's server was sent the session or the code: {decoded}"
        );
        if head.starts_with("GET /report") {
            assert!(
                [
                    r#""cookie":"""#,
                    r#""session":[]"#,
                    r#""local":[]"#,
                    r#""channel":[]"#
                ]
                .iter()
                .all(|nothing| decoded.contains(nothing)),
                "the other user's page saw something: {decoded}"
            );
        }
        // Everything the browser sent it, replayed to the dashboard as
        // the other user would: nothing opens.
        let headers = replayable_headers(head);
        let mut with_host: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let host = dash.host();
        with_host.push(("Host", &host));
        for path in ["/api/overview", "/api/projects/app", "/api/events"] {
            let a = http(dash.port, "GET", path, &with_host);
            assert_eq!(a.status, 401, "GET {path} with {with_host:?}");
        }
    }
    let cookies = browser.cookies();
    assert!(cookies.is_empty(), "the browser holds cookies: {cookies:?}");

    // The operator's session is untouched: back on the dashboard, the tab
    // is still signed in.
    browser.navigate(&format!("http://127.0.0.1:{}/#/project/app", dash.port));
    browser.wait_for_text("the names of app", Duration::from_secs(10), |t| {
        t.contains("OPENAI_API_KEY")
    });
}

/// `%XX` decoded (the other user's page reports in a query string).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A fake browser launcher, `xdg-open`, for the front of PATH: it lives a
/// few seconds, as a launcher does while the browser starts, with the link
/// on its command line.
fn fake_launcher() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("xdg-open");
    std::fs::write(&path, "#!/bin/sh\nsleep 5\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// What a process-list watcher sees: the arguments of every process whose
/// `/proc/PID/cmdline` holds `needle`, as soon as one does.
fn watch_process_list(needle: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            if !entry
                .file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
            {
                continue;
            }
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            if args.iter().any(|a| a.contains(needle)) {
                return args;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no process shows {needle} on its command line"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_process_list_watcher_gets_nothing_from_the_opened_link() {
    let d = daemon_with_secrets();
    let launcher = fake_launcher();
    let path = std::env::join_paths(std::iter::once(launcher.path().to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let mut cmd = Command::new(bin("fluxctl"));
    cmd.arg("--runtime-dir")
        .arg(d.runtime_dir())
        .args(["dashboard", "--port", "0"])
        .env("PATH", path);
    let mut dash = Dashboard::spawn(cmd);

    // The watcher reads the link off the launcher's command line: the
    // printed link, a code and nothing else.
    let args = watch_process_list(&format!("http://127.0.0.1:{}/", dash.port));
    let opened = args
        .iter()
        .find(|a| a.starts_with("http://"))
        .expect("the link")
        .clone();
    assert_eq!(opened, dash.url);
    assert!(
        args.iter().any(|a| a.ends_with("/xdg-open")),
        "the launcher: {args:?}"
    );

    // The operator's browser signs in with it.
    dash.sign_in();
    let session = dash.session().to_owned();
    assert_eq!(dash.get("/api/overview").status, 200);

    // The watcher, afterwards: the link, the code traded again, the code
    // where a session goes — nothing opens.
    let host = dash.host();
    let path = &opened[format!("http://{host}").len()..];
    let a = http(dash.port, "GET", path, &[("Host", &host)]);
    assert_eq!(a.status, 410, "the link a second time");
    let page = String::from_utf8_lossy(&a.body).into_owned();
    assert!(
        page.contains("used already") && page.contains("Run fluxctl dashboard again"),
        "a clear page: {page}"
    );
    assert!(!page.contains(&session) && !page.contains(&dash.code));
    let a = dash.redeem(&dash.code);
    assert_eq!(a.status, 410, "the code traded a second time");
    let code = dash.code.clone();
    for headers in [
        vec![
            ("Host", host.as_str()),
            ("Authorization", &format!("Bearer {code}")),
        ],
        vec![
            ("Host", host.as_str()),
            ("Cookie", &format!("flux_dashboard_{}={code}", dash.port)),
        ],
        vec![("Host", host.as_str()), (CODE_HEADER, code.as_str())],
    ] {
        let a = http(dash.port, "GET", "/api/overview", &headers);
        assert_eq!(a.status, 401, "{headers:?}");
    }
    // A used link opened again ends the session it opened (it may have
    // been read by someone else): the operator's tab is signed out, and
    // the terminal says why.
    assert_eq!(dash.get("/api/overview").status, 401);
    flux_e2e::eventually("the warning on fluxctl's stderr", || {
        dash.stderr().contains("used a second time")
    });
    assert!(!dash.stderr().contains(&session) && !dash.stderr().contains(&code));
}

/// Opens `/api/events` with `bearer`; the stream, once its first comment
/// arrived.
fn open_events(dash: &Dashboard, bearer: &str) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", dash.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    write!(
        s,
        "GET /api/events HTTP/1.1\r\nHost: {}\r\nAuthorization: {bearer}\r\n\r\n",
        dash.host()
    )
    .unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.contains("fluxctl dashboard events") {
        if let Ok(n) = s.read(&mut buf) {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        assert!(Instant::now() < deadline, "the event stream: {seen}");
    }
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    s
}

#[test]
fn a_watcher_that_uses_the_link_first_is_signed_out_when_the_browser_arrives() {
    use std::io::Read;
    let d = daemon_with_secrets();
    let dash = Dashboard::launch(&d.runtime_dir(), &["--no-open"]);
    let host = dash.host();

    // The watcher races the browser to the code and wins: for now it holds
    // the session, and follows the event stream.
    let a = dash.redeem(&dash.code);
    assert_eq!(a.status, 200);
    let answer: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    let stolen = format!("Bearer {}", answer["session"].as_str().unwrap());
    let overview = |bearer: &str| {
        http(
            dash.port,
            "GET",
            "/api/overview",
            &[("Host", &host), ("Authorization", bearer)],
        )
        .status
    };
    assert_eq!(overview(&stolen), 200);
    let mut stream = open_events(&dash, &stolen);

    // The operator's browser arrives with the link: the page says it was
    // used, and by someone else if not by you; the watcher is signed out.
    let a = http(
        dash.port,
        "GET",
        &format!("/?code={}", dash.code),
        &[("Host", &host)],
    );
    assert_eq!(a.status, 410);
    let page = String::from_utf8_lossy(&a.body).into_owned();
    assert!(
        page.contains("used already") && page.contains("someone else did"),
        "a clear page: {page}"
    );
    assert_eq!(overview(&stolen), 401, "the watcher's session is over");
    flux_e2e::eventually("the warning on fluxctl's stderr", || {
        dash.stderr().contains("used a second time")
    });

    // Its open event stream ends, and carries no change made after.
    d.client("app")
        .set("AFTER_SIGN_OUT", VALUE_B.into())
        .unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    while !seen.contains("0\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(_) => {}
        }
        assert!(
            Instant::now() < deadline,
            "the watcher's event stream stays open: {seen}"
        );
    }
    assert!(!seen.contains("AFTER_SIGN_OUT"), "{seen}");
    assert_no_secret(seen.as_bytes(), VALUE_B, "the watcher's event stream");
}

#[test]
fn a_link_works_once_and_not_after_its_time() {
    let d = daemon_with_secrets();

    // Once: the code is traded once; a second trade is refused.
    let mut dash = Dashboard::launch(&d.runtime_dir(), &["--no-open"]);
    dash.sign_in();
    let a = dash.redeem(&dash.code);
    assert_eq!(a.status, 410);
    let page = String::from_utf8_lossy(&a.body).into_owned();
    assert!(page.contains("used already"), "{page}");
    drop(dash);

    // In time: a link not used within --link-ttl is refused, with a page
    // that says so, and nothing opens.
    let late = Dashboard::launch(&d.runtime_dir(), &["--no-open", "--link-ttl", "1"]);
    std::thread::sleep(Duration::from_millis(1200));
    let host = late.host();
    let a = http(
        late.port,
        "GET",
        &format!("/?code={}", late.code),
        &[("Host", &host)],
    );
    assert_eq!(a.status, 410);
    let page = String::from_utf8_lossy(&a.body).into_owned();
    assert!(
        page.contains("expired unused") && page.contains("1 s"),
        "{page}"
    );
    let a = late.redeem(&late.code);
    assert_eq!(a.status, 410, "the code traded after its time");
    assert!(String::from_utf8_lossy(&a.body).contains("expired"));
    for bearer in [format!("Bearer {}", late.code), "Bearer ".to_owned()] {
        let a = http(
            late.port,
            "GET",
            "/api/overview",
            &[("Host", &host), ("Authorization", &bearer)],
        );
        assert_eq!(a.status, 401);
    }

    // The time is bounded: 1 to 600 seconds.
    for ttl in ["0", "601"] {
        let out = d
            .ctl()
            .args(["dashboard", "--no-open", "--link-ttl", ttl])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "--link-ttl {ttl}");
    }
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

#[test]
fn the_audit_page_hides_the_dashboards_own_reads_unless_asked() {
    // The dashboard's connection stays open: its folded reads are handed
    // over every summary_interval.
    let d = TestDaemon::start_with_config("[audit]\nsummary_interval = \"1s\"\n");
    d.create_project("app");
    d.create_project("billing");
    d.client("app")
        .set("OPENAI_API_KEY", VALUE_A.into())
        .unwrap();
    d.client("billing")
        .set("STRIPE_SECRET_KEY", VALUE_B.into())
        .unwrap();
    let dash = Dashboard::start(&d.runtime_dir());
    let own = u64::from(dash.child.id());
    let audit = |path: &str| -> serde_json::Value {
        let a = dash.get(path);
        assert_eq!(a.status, 200, "{path}");
        serde_json::from_slice(&a.body).unwrap()
    };
    let pids = |doc: &serde_json::Value| -> Vec<Option<u64>> {
        doc["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| e["pid"].as_u64())
            .collect()
    };
    // The page polls fluxd (projects, status): asked for, those reads
    // are there, under the dashboard's own pid.
    flux_e2e::eventually("the dashboard's own reads are logged", || {
        pids(&audit("/api/audit?own=1")).contains(&Some(own))
    });
    let shown = audit("/api/audit");
    assert!(
        !pids(&shown).contains(&Some(own)),
        "the dashboard's own reads are hidden by default: {shown}"
    );
    assert!(
        shown["own_hidden"].as_u64().unwrap_or(0) > 0,
        "the page is told how many were hidden: {shown}"
    );
    // Everyone else's requests stay: the sets made by this test.
    let names: Vec<&str> = shown["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(
        names.contains(&"OPENAI_API_KEY") && names.contains(&"STRIPE_SECRET_KEY"),
        "{names:?}"
    );
    let app = audit("/api/audit?project=app&own=0");
    assert!(!pids(&app).contains(&Some(own)), "{app}");
}

#[test]
fn the_audit_page_shows_the_unit_beside_the_peer() {
    use super::workload::{Units, daemon, get_hex, hello_hex, prelude, run_python, system_python};
    let test = "the_audit_page_shows_the_unit_beside_the_peer";
    let Some(units) = Units::new(test) else {
        return;
    };
    let Some(python) = system_python(test) else {
        return;
    };
    let d = daemon("readers = { units = [\"fn-*.service\"] }\n");
    // A function in its unit reads a secret.
    let script = format!(
        "{}s = socket.socket(socket.AF_UNIX)\ns.connect({:?})\nask(s, {:?})\nask(s, {:?})\n",
        prelude(&units.unit("fn-billing.service")),
        d.project_socket("app").display().to_string(),
        hello_hex(),
        get_hex("API_KEY"),
    );
    let out = run_python(&python, &script);
    assert!(out[1].starts_with("value "), "the function reads");

    // The JSON answer carries the workload.
    let dash = Dashboard::start(&d.runtime_dir());
    let a = dash.get("/api/audit?project=app");
    assert_eq!(a.status, 200);
    let doc: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    let entries = doc["entries"].as_array().expect("entries");
    let read = entries
        .iter()
        .find(|e| e["op"] == "get" && e["uid"] == 65534)
        .unwrap_or_else(|| panic!("the function's read: {doc}"));
    assert_eq!(read["unit"], "fn-billing.service", "{read}");
    assert_eq!(read["slice"], units.slice.as_str(), "{read}");
    assert_eq!(read["cgroup"], units.path("fn-billing.service").as_str());
    assert!(read.get("exe_sha256").is_some(), "{read}");
    drop(dash);

    // The page shows it in the Unit column, next to the peer.
    if !chromium_installed() {
        eprintln!("SKIPPED: {test} (page): chromium is not installed");
        return;
    }
    let dash = Dashboard::launch(&d.runtime_dir(), &["--no-open"]);
    let origin = format!("http://127.0.0.1:{}/", dash.port);
    let mut browser = Chromium::start();
    browser.navigate(&dash.url);
    browser.wait_for_text("the projects", Duration::from_secs(20), |t| {
        t.contains("app")
    });
    browser.navigate(&format!("{origin}#/audit?project=app"));
    browser.wait_for_text(
        "the function's read with its unit",
        Duration::from_secs(10),
        |t| t.contains("fn-billing.service") && t.contains("uid 65534"),
    );
    let row = browser.eval(
        "[...document.querySelectorAll('tr')].filter((r) => r.textContent.includes('fn-billing.service')).map((r) => [...r.cells].map((c) => c.className))[0]",
    );
    assert_eq!(
        row,
        serde_json::json!(["", "num", "", "", "", "peer", "unit", "", ""]),
        "the unit's cell is the one after the peer's"
    );
    let errors = browser.errors();
    assert!(errors.is_empty(), "the page logged errors: {errors:?}");
}
