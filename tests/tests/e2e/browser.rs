//! Headless Chromium (Debian's `chromium`) driven over the DevTools
//! protocol, and a plain HTTP/1.1 client that can send any Host or Origin:
//! what the dashboard's tests look at the page with.
//!
//! [`Chromium`] starts the browser on a fresh profile with the flags a
//! closed network needs, opens one page over its DevTools web socket, and
//! keeps every protocol event it sees (network responses, console and log
//! entries), so a test can check every byte the page received — the body
//! of a response still streaming (the dashboard's event stream, read with
//! `fetch`) included. [`Chromium::page_at`] attaches to another tab the
//! page opened; [`Chromium::cookies`] reads the browser's cookie jar.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tungstenite::{Message, WebSocket};

/// An answer read by [`http`].
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Everything received, head and body, for "no value anywhere" checks.
    pub fn all_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in &self.headers {
            out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        out.extend_from_slice(&self.body);
        out
    }
}

/// Sends `METHOD path` to 127.0.0.1:`port` with exactly `headers` (so a
/// test chooses the Host, or leaves it out) and reads the whole answer.
pub fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> HttpAnswer {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the dashboard");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    // Read the head, then the body: by its length when the answer gives
    // one (some servers keep the connection open), else to the end.
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = s.read(&mut buf).expect("read the answer");
        raw.extend_from_slice(&buf[..n]);
        let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            assert!(n > 0, "the connection closed before the head ended");
            continue;
        };
        let length = String::from_utf8_lossy(&raw[..split])
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse::<usize>().ok());
        match length {
            Some(len) if raw.len() >= split + 4 + len => break,
            _ if n == 0 => break,
            _ => {}
        }
    }
    parse_answer(&raw)
}

fn parse_answer(raw: &[u8]) -> HttpAnswer {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    HttpAnswer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let len =
            usize::from_str_radix(String::from_utf8_lossy(&data[..end]).trim(), 16).unwrap_or(0);
        if len == 0 {
            break;
        }
        let start = end + 2;
        out.extend_from_slice(&data[start..(start + len).min(data.len())]);
        data = &data[(start + len + 2).min(data.len())..];
    }
    out
}

/// A headless Chromium with one page under DevTools control.
pub struct Chromium {
    /// The browser, for the handle that started it (not for a page
    /// attached with [`Chromium::page_at`]).
    child: Option<Child>,
    devtools_port: u16,
    ws: WebSocket<TcpStream>,
    next_id: u64,
    /// Every event received so far.
    pub events: Vec<Value>,
    /// Request ids whose body is streamed to us as it arrives, with what
    /// had arrived before.
    streamed: Vec<(String, Vec<u8>)>,
    _profile: Option<tempfile::TempDir>,
}

impl Chromium {
    /// Starts Chromium and attaches to its page.
    pub fn start() -> Self {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new("chromium")
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--window-size=1280,900",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.split("DevTools listening on ").nth(1) {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let browser_url = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chromium prints its DevTools address");
        let port: u16 = browser_url
            .trim_start_matches("ws://127.0.0.1:")
            .split('/')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a DevTools port");
        let page_ws = Self::page_socket(port, |_| true);
        let mut chromium = Self::attach(port, &page_ws);
        chromium.child = Some(child);
        chromium._profile = Some(profile);
        chromium
    }

    /// Attaches to the page whose DevTools web socket is `page_ws`.
    fn attach(port: u16, page_ws: &str) -> Self {
        let path = page_ws
            .trim_start_matches(&format!("ws://127.0.0.1:{port}"))
            .to_owned();
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        // The handshake may take a while on a busy machine; reads after it
        // poll.
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let (ws, _) = tungstenite::client(format!("ws://127.0.0.1:{port}{path}"), stream)
            .expect("DevTools web socket");
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut chromium = Self {
            child: None,
            devtools_port: port,
            ws,
            next_id: 0,
            events: Vec::new(),
            streamed: Vec::new(),
            _profile: None,
        };
        for domain in ["Page", "Network", "Runtime", "Log"] {
            chromium.call(&format!("{domain}.enable"), json!({}));
        }
        chromium
    }

    /// Another tab of this browser, once one shows a URL starting with
    /// `prefix` (one the page opened, say).
    pub fn page_at(&self, prefix: &str) -> Self {
        let port = self.devtools_port;
        let page_ws = Self::page_socket(port, |url| url.starts_with(prefix));
        Self::attach(port, &page_ws)
    }

    /// The web socket address of a page target whose URL `wanted` accepts.
    fn page_socket(port: u16, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let list = http(
                port,
                "GET",
                "/json/list",
                &[("Host", &format!("127.0.0.1:{port}"))],
            );
            let targets: Value = serde_json::from_slice(&list.body).unwrap_or(Value::Null);
            if let Some(url) = targets.as_array().and_then(|a| {
                a.iter()
                    .find(|t| t["type"] == "page" && t["url"].as_str().is_some_and(&wanted))
                    .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            }) {
                return url.to_owned();
            }
            assert!(Instant::now() < deadline, "chromium shows no page target");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Reads one message if one arrives soon; keeps events.
    fn pump(&mut self) -> Option<Value> {
        match self.ws.read() {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                if v.get("method").is_some() {
                    self.events.push(v);
                    None
                } else {
                    Some(v)
                }
            }
            Ok(_) => None,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!("DevTools connection: {e}"),
        }
    }

    /// Sends a DevTools command and returns its result.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({ "id": id, "method": method, "params": params });
        self.ws.send(Message::text(msg.to_string())).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(v) = self.pump()
                && v["id"] == id
            {
                if let Some(err) = v.get("error") {
                    return json!({ "error": err });
                }
                return v["result"].clone();
            }
            assert!(Instant::now() < deadline, "no answer to {method}");
        }
    }

    /// Takes in the events that arrived meanwhile.
    pub fn drain(&mut self) {
        while self.pump().is_some() {}
        let deadline = Instant::now() + Duration::from_millis(50);
        while Instant::now() < deadline {
            self.pump();
        }
    }

    /// Opens `url` in the page.
    pub fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url }));
    }

    /// Evaluates `expression` in the page; its value.
    pub fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        r["result"]["value"].clone()
    }

    /// The page's text, as a person sees it.
    pub fn text(&mut self) -> String {
        self.eval("document.body ? document.body.innerText : ''")
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The page's whole DOM as HTML.
    pub fn html(&mut self) -> String {
        self.eval("document.documentElement.outerHTML")
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits until the JavaScript `expression` is true in the page; how
    /// long it took.
    pub fn wait_for(&mut self, what: &str, timeout: Duration, expression: &str) -> Duration {
        let start = Instant::now();
        loop {
            if self.eval(expression) == Value::Bool(true) {
                return start.elapsed();
            }
            if start.elapsed() >= timeout {
                let text = self.text();
                panic!("the page never showed {what} within {timeout:?}; it shows:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until `cond` holds on the page's text; how long it took.
    pub fn wait_for_text(
        &mut self,
        what: &str,
        timeout: Duration,
        cond: impl Fn(&str) -> bool,
    ) -> Duration {
        let start = Instant::now();
        loop {
            let text = self.text();
            if cond(&text) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < timeout,
                "the page never showed {what} within {timeout:?}; it shows:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Every response body the page received (with its URL), and what
    /// arrived so far of every event stream (`/api/events`, read with
    /// `fetch`, never finished), each as an "event stream".
    pub fn received(&mut self) -> Vec<(String, Vec<u8>)> {
        self.drain();
        let finished: Vec<String> = self
            .events
            .iter()
            .filter(|e| e["method"] == "Network.loadingFinished")
            .filter_map(|e| e["params"]["requestId"].as_str().map(str::to_owned))
            .collect();
        let urls: std::collections::HashMap<String, String> = self
            .events
            .iter()
            .filter(|e| e["method"] == "Network.responseReceived")
            .filter_map(|e| {
                Some((
                    e["params"]["requestId"].as_str()?.to_owned(),
                    e["params"]["response"]["url"].as_str()?.to_owned(),
                ))
            })
            .collect();
        let mut out = Vec::new();
        for id in &finished {
            let r = self.call("Network.getResponseBody", json!({ "requestId": id }));
            let bytes = decode_body(&r["body"], r["base64Encoded"] == true);
            out.push((urls.get(id).cloned().unwrap_or(id.clone()), bytes));
        }
        // Streams still open: what arrived before streaming was turned on,
        // then every chunk since.
        let open: Vec<String> = urls
            .iter()
            .filter(|(id, url)| url.ends_with("/api/events") && !finished.contains(id))
            .map(|(id, _)| id.clone())
            .collect();
        for id in open {
            if !self.streamed.iter().any(|(s, _)| *s == id) {
                let r = self.call("Network.streamResourceContent", json!({ "requestId": id }));
                let before = decode_body(&r["bufferedData"], true);
                self.streamed.push((id, before));
            }
        }
        self.drain();
        for (id, before) in &self.streamed {
            let mut bytes = before.clone();
            for e in self.events.iter().filter(|e| {
                e["method"] == "Network.dataReceived" && e["params"]["requestId"] == id.as_str()
            }) {
                bytes.extend(decode_body(&e["params"]["data"], true));
            }
            out.push(("event stream".into(), bytes));
        }
        out
    }

    /// Every cookie in the browser's jar, of every site.
    pub fn cookies(&mut self) -> Vec<Value> {
        let r = self.call("Storage.getCookies", json!({}));
        let r = if r.get("error").is_some() {
            self.call("Network.getAllCookies", json!({}))
        } else {
            r
        };
        assert!(
            r.get("error").is_none(),
            "the cookie jar cannot be read: {r}"
        );
        r["cookies"].as_array().cloned().unwrap_or_default()
    }

    /// URLs of every request the page made.
    pub fn requested_urls(&mut self) -> Vec<String> {
        self.drain();
        self.events
            .iter()
            .filter(|e| e["method"] == "Network.requestWillBeSent")
            .filter_map(|e| e["params"]["request"]["url"].as_str().map(str::to_owned))
            .collect()
    }

    /// Errors the page logged: exceptions, console errors, refusals by the
    /// Content-Security-Policy.
    pub fn errors(&mut self) -> Vec<String> {
        self.drain();
        self.events
            .iter()
            .filter_map(|e| match e["method"].as_str()? {
                "Runtime.exceptionThrown" => Some(e["params"]["exceptionDetails"].to_string()),
                "Runtime.consoleAPICalled" if e["params"]["type"] == "error" => {
                    Some(e["params"]["args"].to_string())
                }
                "Log.entryAdded" if e["params"]["entry"]["level"] == "error" => {
                    Some(e["params"]["entry"]["text"].to_string())
                }
                _ => None,
            })
            .collect()
    }

    /// Saves a PNG screenshot of the page.
    pub fn screenshot(&mut self, path: &std::path::Path) {
        let r = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap_or_default())
            .expect("a PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }
}

/// A DevTools body: text, or base64 when `base64`.
fn decode_body(body: &Value, base64: bool) -> Vec<u8> {
    let body = body.as_str().unwrap_or_default();
    if base64 {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap_or_default()
    } else {
        body.as_bytes().to_vec()
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.ws.close(None);
        if let Some(child) = &mut self.child {
            flux_e2e::terminate(child, Duration::from_secs(5));
        }
    }
}
