//! The dashboard's HTTP server: HTTP/1.1 on 127.0.0.1 only, read-only
//! (GET and HEAD), every request checked before anything else happens:
//!
//! 1. `Host` must be `127.0.0.1:PORT` or `localhost:PORT` — a DNS-rebinding
//!    page under another name gets 421;
//! 2. an `Origin` header, when present, must be this server's own origin,
//!    and `Sec-Fetch-Site` may not say `cross-site` — 403 otherwise; a
//!    prefetch or prerender (`Sec-Purpose`) is refused (503), so that a
//!    browser guessing ahead never presents a link's code;
//! 3. the session ([`super::session`]): the page's shell (`/`, its script,
//!    style and icon — the same bytes for everyone, no data) is served to
//!    any request that passed 1 and 2; `/?code=…` (the printed link) is
//!    served only while its code is unused and unexpired, else a page says
//!    why not (410); `GET /api/session` trades the code, sent in the
//!    `Flux-Dashboard-Code` header, for the session secret; every other
//!    `/api/` request must carry `Authorization: Bearer SESSION` — 401
//!    otherwise. Cookies are never set and never read: the browser's cookie
//!    jar, which every port of a host shares, holds nothing of the
//!    dashboard's. Secrets are compared in constant time.
//!
//! Every answer, refusals included, carries a strict
//! `Content-Security-Policy` (scripts, styles and connections from this
//! origin only, no frames, no forms), `X-Content-Type-Options: nosniff`,
//! `Referrer-Policy: no-referrer` and `Cache-Control: no-store`. The page,
//! its script and its style are compiled into fluxctl: nothing is loaded
//! from anywhere else.

use super::live::{Change, Hub};
use super::readonly::ReadOnly;
use super::session::{CODE_HEADER, Refused, SignIn};
use super::{api, assets};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// The Content-Security-Policy of every answer.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The header a browser names the request's site relation in.
const SEC_FETCH_SITE: &str = "sec-fetch-site";
/// The headers a browser marks a prefetch or a prerender with.
const PURPOSE: [&str; 2] = ["sec-purpose", "purpose"];

/// How often an idle event stream gets a keep-alive comment.
const KEEPALIVE: Duration = Duration::from_secs(15);

type Body = BoxBody<Bytes, Infallible>;

/// What every request handler shares.
#[derive(Debug)]
pub struct State {
    pub port: u16,
    /// The printed link's code and the session it opens.
    pub sign_in: SignIn,
    pub daemon: Arc<ReadOnly>,
    pub hub: Arc<Hub>,
    /// The project named on the command line, shown when the operator is
    /// not a daemon admin.
    pub fallback: Option<String>,
}

impl State {
    fn hosts(&self) -> [String; 2] {
        [
            format!("127.0.0.1:{}", self.port),
            format!("localhost:{}", self.port),
        ]
    }
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// An answer with the headers every answer carries.
fn answer(status: StatusCode, content_type: &'static str, body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    r
}

fn text(status: StatusCode, message: impl Into<Bytes>) -> Response<Body> {
    answer(status, "text/plain; charset=utf-8", full(message))
}

fn json(value: &serde_json::Value) -> Response<Body> {
    answer(StatusCode::OK, "application/json", full(value.to_string()))
}

/// The value of `name` in a query string (`a=1&b=2`), percent-decoded.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| percent_decode(v))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The session secret a request carries in `Authorization: Bearer …`.
/// Cookies are not looked at.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Why a request is refused before it is served, if it is.
fn refusal(state: &State, req: &Request<Incoming>) -> Option<Response<Body>> {
    let headers = req.headers();
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if !host.is_some_and(|h| state.hosts().iter().any(|ok| ok == h)) {
        return Some(text(
            StatusCode::MISDIRECTED_REQUEST,
            "refused: the Host is not this dashboard's (127.0.0.1:PORT or localhost:PORT)\n",
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let ok = origin
            .to_str()
            .is_ok_and(|o| state.hosts().iter().any(|h| o == format!("http://{h}")));
        if !ok {
            return Some(text(
                StatusCode::FORBIDDEN,
                "refused: requests from another origin are not served\n",
            ));
        }
    }
    if headers
        .get(SEC_FETCH_SITE)
        .is_some_and(|v| v.as_bytes() == b"cross-site")
    {
        return Some(text(
            StatusCode::FORBIDDEN,
            "refused: cross-site requests are not served\n",
        ));
    }
    if PURPOSE.iter().any(|name| {
        headers
            .get(*name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("prefetch"))
    }) {
        return Some(text(
            StatusCode::SERVICE_UNAVAILABLE,
            "refused: the dashboard is not prefetched or prerendered\n",
        ));
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "the dashboard is read-only: change secrets with fluxctl\n",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Some(r);
    }
    None
}

/// The page that says why a link's code is refused.
fn refused_code(state: &State, why: Refused) -> Response<Body> {
    match why {
        Refused::Wrong => text(
            StatusCode::UNAUTHORIZED,
            "refused: this link is not from this run of fluxctl dashboard (each run prints a new one)\n",
        ),
        Refused::Used { ended } => {
            if ended {
                eprintln!(
                    "fluxctl: the dashboard link was used a second time: the browser tab it signed in has been signed out, \
                     as someone else may have read the link. Stop this dashboard (Ctrl-C) and run it again for a new link."
                );
            }
            text(
                StatusCode::GONE,
                "This dashboard link has been used already: a link signs in one browser tab, once.\n\n\
                 Opening it again has signed that tab out too, since a link used twice may have been read by \
                 someone else (the browser is handed the link on a command line that every local user can read).\n\
                 If you did not open it before, someone else did: stop fluxctl dashboard (Ctrl-C).\n\n\
                 Run fluxctl dashboard again for a new link (with --no-open it is only printed, on no command line).\n",
            )
        }
        Refused::Expired => text(
            StatusCode::GONE,
            format!(
                "This dashboard link has expired unused: a link works for {} s after fluxctl dashboard prints it.\n\n\
                 Stop fluxctl dashboard (Ctrl-C) and run it again for a new link (--link-ttl SECONDS gives more time).\n",
                state.sign_in.ttl().as_secs()
            ),
        ),
    }
}

/// `GET /api/session`: the code of the printed link, in the
/// `Flux-Dashboard-Code` header, traded for the session secret.
fn sign_in(state: &State, req: &Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "sign in with GET: the answer is the session\n",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
        return r;
    }
    let Some(code) = req.headers().get(CODE_HEADER).and_then(|v| v.to_str().ok()) else {
        return text(
            StatusCode::BAD_REQUEST,
            "send the code of the link fluxctl dashboard printed in the Flux-Dashboard-Code header\n",
        );
    };
    match state.sign_in.redeem(code.trim()) {
        Ok(session) => {
            eprintln!("fluxctl: a browser tab signed in; the printed link no longer works");
            json(&serde_json::json!({ "session": session }))
        }
        Err(why) => refused_code(state, why),
    }
}

/// Serves one request.
pub async fn serve(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    if let Some(refused) = refusal(&state, &req) {
        return Ok(refused);
    }
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    // The printed link is served while its code can still be used, so
    // that a used or expired link says so at once.
    if path == "/"
        && let Some(code) = query_param(query.as_deref(), "code")
        && let Err(why) = state.sign_in.look(&code)
    {
        return Ok(refused_code(&state, why));
    }
    if let Some(page) = shell(&path) {
        return Ok(page);
    }
    if path == "/api/session" {
        return Ok(sign_in(&state, &req));
    }
    let Some(session) = bearer(req.headers())
        .filter(|s| state.sign_in.session_matches(s))
        .map(str::to_owned)
    else {
        return Ok(text(
            StatusCode::UNAUTHORIZED,
            "refused: signed out. Open the link fluxctl dashboard printed (the page signs in with it, once)\n",
        ));
    };
    if path == "/api/events" {
        let rx = state.hub.subscribe();
        return Ok(events(rx, move || state.sign_in.session_matches(&session)));
    }
    Ok(route(&state, &path, query.as_deref()).await)
}

/// The page's shell: its HTML, script, style and icon — compiled into
/// fluxctl, the same bytes for everyone, no data in them.
fn shell(path: &str) -> Option<Response<Body>> {
    let (content_type, bytes) = match path {
        "/" => ("text/html; charset=utf-8", assets::INDEX_HTML),
        "/app.js" => ("text/javascript; charset=utf-8", assets::APP_JS),
        "/style.css" => ("text/css; charset=utf-8", assets::STYLE_CSS),
        "/favicon.svg" | "/favicon.ico" => ("image/svg+xml", assets::FAVICON_SVG),
        _ => return None,
    };
    Some(answer(
        StatusCode::OK,
        content_type,
        full(Bytes::from_static(bytes.as_bytes())),
    ))
}

async fn route(state: &State, path: &str, query: Option<&str>) -> Response<Body> {
    let daemon = &state.daemon;
    match path {
        "/api/overview" => {
            json(&api::overview(daemon, &state.hub, state.fallback.as_deref()).await)
        }
        "/api/audit" => {
            let limit = query_param(query, "limit")
                .and_then(|l| l.parse().ok())
                .unwrap_or(200usize)
                .min(5000);
            let project = query_param(query, "project").filter(|p| !p.is_empty());
            let op = query_param(query, "op").filter(|o| !o.is_empty());
            let denied = query_param(query, "denied").is_some_and(|d| d == "1");
            let own = query_param(query, "own").is_some_and(|o| o == "1");
            let filter = api::AuditFilter {
                project,
                op: op.as_deref(),
                denied_only: denied,
                own,
                limit,
            };
            json(&api::audit(daemon, filter).await)
        }
        "/api/activity" => {
            let Some(project) = query_param(query, "project") else {
                return text(StatusCode::BAD_REQUEST, "project is required\n");
            };
            let hours = query_param(query, "hours")
                .and_then(|h| h.parse().ok())
                .unwrap_or(24);
            json(&api::activity(daemon, &project, hours, flux_vault::time::now_ms()).await)
        }
        "/api/metrics" => match daemon.metrics().await {
            Ok(text) => answer(StatusCode::OK, "text/plain; charset=utf-8", full(text)),
            Err(e) => answer(
                StatusCode::BAD_GATEWAY,
                "text/plain; charset=utf-8",
                full(format!("{e}\n")),
            ),
        },
        _ => match path.strip_prefix("/api/projects/") {
            Some(name) if flux_protocol::limits::validate_project_name(name).is_ok() => {
                json(&api::project(daemon, &state.hub, name).await)
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        },
    }
}

/// `/api/events`: server-sent events, one `data:` line of JSON per change,
/// and a keep-alive comment when idle. The stream ends once `signed_in`
/// is false (the session was ended): nothing is sent after that.
fn events(
    rx: broadcast::Receiver<Change>,
    signed_in: impl Fn() -> bool + Send + Sync + 'static,
) -> Response<Body> {
    let first = Bytes::from_static(b"retry: 1000\n: fluxctl dashboard events\n\n");
    let signed_in = Arc::new(signed_in);
    let stream = futures_util::stream::unfold((rx, Some(first)), move |(mut rx, first)| {
        let signed_in = signed_in.clone();
        async move {
            if let Some(first) = first {
                return Some((Ok(Frame::data(first)), (rx, None)));
            }
            let next = tokio::time::timeout(KEEPALIVE, rx.recv()).await;
            if !signed_in() {
                return None;
            }
            let bytes = match next {
                Ok(Ok(change)) => {
                    let line = serde_json::to_string(&change).unwrap_or_default();
                    Bytes::from(format!("data: {line}\n\n"))
                }
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => Bytes::from_static(
                    b"data: {\"kind\":\"changed\",\"project\":\"\",\"names\":[],\"generation\":0}\n\n",
                ),
                Ok(Err(broadcast::error::RecvError::Closed)) => return None,
                Err(_) => Bytes::from_static(b": keep-alive\n\n"),
            };
            Some((Ok::<_, Infallible>(Frame::data(bytes)), (rx, None)))
        }
    });
    answer(
        StatusCode::OK,
        "text/event-stream",
        BodyExt::boxed(StreamBody::new(stream)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_found_and_decoded() {
        assert_eq!(
            query_param(Some("a=1&token=ab%2Fc&x"), "token").as_deref(),
            Some("ab/c")
        );
        assert_eq!(query_param(Some("x"), "x").as_deref(), Some(""));
        assert_eq!(query_param(Some("a=1"), "token"), None);
        assert_eq!(query_param(None, "token"), None);
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn the_session_comes_from_the_bearer_header_only() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; flux_dashboard_7=tok; c=d"),
        );
        assert_eq!(bearer(&h), None, "a cookie is not a session");
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic xyz"));
        assert_eq!(bearer(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer xyz"),
        );
        assert_eq!(bearer(&h), Some("xyz"));
    }
}
