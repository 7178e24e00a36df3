//! The dashboard's HTTP server: HTTP/1.1 on 127.0.0.1 only, read-only
//! (GET and HEAD), every request checked before anything else happens:
//!
//! 1. `Host` must be `127.0.0.1:PORT` or `localhost:PORT` — a DNS-rebinding
//!    page under another name gets 421;
//! 2. an `Origin` header, when present, must be this server's own origin,
//!    and `Sec-Fetch-Site` may not say `cross-site` — 403 otherwise;
//! 3. the token: `GET /?token=…` (the printed URL) trades it for an
//!    `HttpOnly; SameSite=Strict` cookie and redirects to `/`; every other
//!    request must carry that cookie or `Authorization: Bearer …` — 401
//!    otherwise. Tokens are compared in constant time.
//!
//! Every answer, refusals included, carries a strict
//! `Content-Security-Policy` (scripts, styles and connections from this
//! origin only, no frames, no forms), `X-Content-Type-Options: nosniff`,
//! `Referrer-Policy: no-referrer` and `Cache-Control: no-store`. The page,
//! its script and its style are compiled into fluxctl: nothing is loaded
//! from anywhere else.

use super::live::{Change, Hub};
use super::readonly::ReadOnly;
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
use subtle::ConstantTimeEq;
use tokio::sync::broadcast;

/// The Content-Security-Policy of every answer.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The header a browser names the request's site relation in.
const SEC_FETCH_SITE: &str = "sec-fetch-site";

/// How often an idle event stream gets a keep-alive comment.
const KEEPALIVE: Duration = Duration::from_secs(15);

type Body = BoxBody<Bytes, Infallible>;

/// What every request handler shares.
#[derive(Debug)]
pub struct State {
    pub port: u16,
    pub token: String,
    pub daemon: Arc<ReadOnly>,
    pub hub: Arc<Hub>,
    /// The project named on the command line, shown when the operator is
    /// not a daemon admin.
    pub fallback: Option<String>,
}

impl State {
    /// The cookie's name: one per port, so two dashboards do not collide
    /// (cookies ignore ports).
    fn cookie_name(&self) -> String {
        format!("flux_dashboard_{}", self.port)
    }

    fn hosts(&self) -> [String; 2] {
        [
            format!("127.0.0.1:{}", self.port),
            format!("localhost:{}", self.port),
        ]
    }

    fn token_matches(&self, given: &str) -> bool {
        bool::from(given.as_bytes().ct_eq(self.token.as_bytes()))
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

fn text(status: StatusCode, message: &'static str) -> Response<Body> {
    answer(
        status,
        "text/plain; charset=utf-8",
        full(Bytes::from_static(message.as_bytes())),
    )
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

/// The token a request carries: its cookie or its bearer header.
fn carried_token(headers: &HeaderMap, cookie_name: &str) -> Option<String> {
    if let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        && let Some(token) = auth.strip_prefix("Bearer ")
    {
        return Some(token.trim().to_owned());
    }
    headers
        .iter()
        .filter(|(k, _)| *k == header::COOKIE)
        .filter_map(|(_, v)| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == cookie_name)
        .map(|(_, v)| v.to_owned())
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
    // The printed URL: trade its token for a cookie, and drop it from the
    // address bar.
    if path == "/"
        && let Some(given) = query_param(query.as_deref(), "token")
    {
        if !state.token_matches(&given) {
            return Ok(text(StatusCode::UNAUTHORIZED, "refused: wrong token\n"));
        }
        let mut r = text(StatusCode::SEE_OTHER, "signed in\n");
        let cookie = format!(
            "{}={}; HttpOnly; SameSite=Strict; Path=/",
            state.cookie_name(),
            state.token
        );
        let h = r.headers_mut();
        h.insert(header::LOCATION, HeaderValue::from_static("/"));
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            h.insert(header::SET_COOKIE, v);
        }
        return Ok(r);
    }
    let authorized =
        carried_token(req.headers(), &state.cookie_name()).is_some_and(|t| state.token_matches(&t));
    if !authorized {
        return Ok(text(
            StatusCode::UNAUTHORIZED,
            "refused: open the URL fluxctl dashboard printed (it carries the token)\n",
        ));
    }
    Ok(route(&state, &path, query.as_deref()).await)
}

async fn route(state: &State, path: &str, query: Option<&str>) -> Response<Body> {
    let daemon = &state.daemon;
    match path {
        "/" => answer(
            StatusCode::OK,
            "text/html; charset=utf-8",
            full(Bytes::from_static(assets::INDEX_HTML.as_bytes())),
        ),
        "/app.js" => answer(
            StatusCode::OK,
            "text/javascript; charset=utf-8",
            full(Bytes::from_static(assets::APP_JS.as_bytes())),
        ),
        "/style.css" => answer(
            StatusCode::OK,
            "text/css; charset=utf-8",
            full(Bytes::from_static(assets::STYLE_CSS.as_bytes())),
        ),
        "/favicon.svg" | "/favicon.ico" => answer(
            StatusCode::OK,
            "image/svg+xml",
            full(Bytes::from_static(assets::FAVICON_SVG.as_bytes())),
        ),
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
            json(&api::audit(daemon, project, op.as_deref(), denied, limit).await)
        }
        "/api/activity" => {
            let Some(project) = query_param(query, "project") else {
                return text(StatusCode::BAD_REQUEST, "project is required\n");
            };
            let hours = query_param(query, "hours")
                .and_then(|h| h.parse().ok())
                .unwrap_or(24);
            json(&api::activity(daemon, &project, hours, crate::timefmt::now_ms()).await)
        }
        "/api/metrics" => match daemon.metrics().await {
            Ok(text) => answer(StatusCode::OK, "text/plain; charset=utf-8", full(text)),
            Err(e) => answer(
                StatusCode::BAD_GATEWAY,
                "text/plain; charset=utf-8",
                full(format!("{e}\n")),
            ),
        },
        "/api/events" => events(state.hub.subscribe()),
        _ => match path.strip_prefix("/api/projects/") {
            Some(name) if flux_protocol::limits::validate_project_name(name).is_ok() => {
                json(&api::project(daemon, &state.hub, name).await)
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        },
    }
}

/// `/api/events`: server-sent events, one `data:` line of JSON per change,
/// and a keep-alive comment when idle.
fn events(rx: broadcast::Receiver<Change>) -> Response<Body> {
    let first = Bytes::from_static(b"retry: 1000\n: fluxctl dashboard events\n\n");
    let stream = futures_util::stream::unfold((rx, Some(first)), |(mut rx, first)| async move {
        if let Some(first) = first {
            return Some((Ok(Frame::data(first)), (rx, None)));
        }
        let bytes = match tokio::time::timeout(KEEPALIVE, rx.recv()).await {
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
    fn the_token_comes_from_the_cookie_or_the_bearer_header() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; flux_dashboard_7=tok; c=d"),
        );
        assert_eq!(
            carried_token(&h, "flux_dashboard_7").as_deref(),
            Some("tok")
        );
        assert_eq!(carried_token(&h, "flux_dashboard_8"), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer xyz"),
        );
        assert_eq!(
            carried_token(&h, "flux_dashboard_7").as_deref(),
            Some("xyz")
        );
    }
}
