//! The optional metrics listener (`[metrics] listen`): `GET /metrics` over
//! HTTP/1.1 on a loopback address or a Unix socket in the runtime folder,
//! answering [`super::exposition::render`] — what the `Metrics` request
//! answers on the control socket — for a scraper that cannot speak the
//! socket protocol. Off by default.
//!
//! It serves nothing else: any other path is 404, any other method 405.
//! The text holds project names and numbers, never a secret's name or a
//! value; still, anyone who can reach the address can read it, which is
//! why only loopback addresses (and Unix sockets, mode 0600 or 0660 to the
//! `control_group`) are accepted. A scrape is not audited: a TCP peer has
//! no kernel identity to record. At most [`MAX_SCRAPERS`] connections are
//! served at once; each must send its request head within
//! [`HEADER_TIMEOUT`] and is closed after [`CONNECTION_TIMEOUT`].
//!
//! **Who can read a TCP listener.** Loopback is not an access check: every
//! local user, and every process of theirs, can connect to it and read
//! the project names and their activity (requests, denials, connections).
//! A Unix socket is the listener with permissions; a TCP one is for a
//! scraper on the host, where all local users may see that much.
//!
//! **Host.** A web page in a local browser can reach a loopback port too:
//! by DNS rebinding, a name of the attacker's that resolves to 127.0.0.1
//! makes the browser send the page's requests there and hand it the
//! answer. Such a request carries the attacker's name in `Host`, so a TCP
//! listener answers only requests whose `Host` is its own address —
//! `127.0.0.1:PORT`, `localhost:PORT`, `[::1]:PORT` or the configured
//! address ([`allowed_hosts`]) — and refuses any other, or none, with 421
//! before looking at the path, as `fluxctl dashboard` does. A Unix socket
//! listener takes any `Host` (no browser reaches it).

use super::Services;
use super::sockets::Sockets;
use crate::config::MetricsListen;
use crate::error::{Error, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Scrapers served at once; more wait in the listen backlog.
pub const MAX_SCRAPERS: usize = 8;
/// Longest a connection may take to send its request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a connection stays open.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// The content type of the text exposition format.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// Opens the listener `listen` names and serves it until `cancel` fires.
/// A Unix socket is made by `sockets` (named `metrics` for socket
/// activation), with the control socket's group.
pub fn start(
    services: &Arc<Services>,
    sockets: &Sockets,
    listen: &MetricsListen,
    cancel: CancellationToken,
) -> Result<()> {
    let listener = match listen {
        MetricsListen::Tcp(addr) => {
            let std = std::net::TcpListener::bind(addr).map_err(|e| {
                Error::Internal(format!(
                    "cannot listen for metrics on {addr}: {e} (under the shipped systemd unit fluxd has no network: use a socket in the runtime folder, or `fluxctl metrics` with node_exporter's textfile collector; see docs/DEPLOY.md)"
                ))
            })?;
            std.set_nonblocking(true)
                .and_then(|()| TcpListener::from_std(std))
                .map(Listener::Tcp)
                .map_err(|e| Error::Internal(format!("cannot listen for metrics on {addr}: {e}")))?
        }
        MetricsListen::Unix(path) => {
            let group = services.access.policy().control_group();
            Listener::Unix(sockets.listen(path, "metrics", group)?)
        }
    };
    let what = match listen {
        MetricsListen::Tcp(addr) => format!("http://{addr}/metrics"),
        MetricsListen::Unix(path) => format!("{} (GET /metrics)", path.display()),
    };
    info!(listen = %what, "serving metrics");
    let weak = Arc::downgrade(services);
    services
        .runtime
        .tracker()
        .spawn(accept_loop(weak, listener, cancel));
    Ok(())
}

/// The `Host` values a TCP listener on `addr` answers: its address under
/// each loopback name, and the address itself (port 80 also without it).
pub fn allowed_hosts(addr: std::net::SocketAddr) -> Vec<String> {
    let port = addr.port();
    let mut hosts = vec![
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        addr.to_string(),
    ];
    if port == 80 {
        let bare: Vec<String> = hosts
            .iter()
            .filter_map(|h| h.strip_suffix(":80").map(str::to_owned))
            .collect();
        hosts.extend(bare);
    }
    hosts.sort();
    hosts.dedup();
    hosts
}

/// Whether a request's `Host` is one of `allowed` (host names compare
/// without case).
fn host_allowed(host: Option<&hyper::header::HeaderValue>, allowed: &[String]) -> bool {
    host.and_then(|h| h.to_str().ok())
        .is_some_and(|h| allowed.iter().any(|ok| ok.eq_ignore_ascii_case(h.trim())))
}

async fn accept_loop(services: Weak<Services>, listener: Listener, cancel: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_SCRAPERS));
    // A TCP listener answers only its own Host (see the module docs).
    let hosts: Option<Arc<[String]>> = match &listener {
        Listener::Tcp(l) => match l.local_addr() {
            Ok(addr) => Some(allowed_hosts(addr).into()),
            Err(e) => {
                warn!(error = %e, "metrics listener: cannot read its own address; refusing every request");
                Some(Arc::from(Vec::new()))
            }
        },
        Listener::Unix(_) => None,
    };
    loop {
        let permit = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let accepted = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            accepted = accept(&listener) => accepted,
        };
        let Some(services) = services.upgrade() else {
            return;
        };
        match accepted {
            Ok(Conn::Tcp(s)) => spawn(services, s, permit, hosts.clone()),
            Ok(Conn::Unix(s)) => spawn(services, s, permit, None),
            Err(e) => {
                warn!(error = %e, "metrics listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

enum Conn {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &Listener) -> std::io::Result<Conn> {
    match listener {
        Listener::Tcp(l) => l.accept().await.map(|(s, _)| Conn::Tcp(s)),
        Listener::Unix(l) => l.accept().await.map(|(s, _)| Conn::Unix(s)),
    }
}

/// Serves one connection; `hosts`, for a TCP one, are the `Host` values
/// it answers.
fn spawn<S>(
    services: Arc<Services>,
    stream: S,
    permit: tokio::sync::OwnedSemaphorePermit,
    hosts: Option<Arc<[String]>>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let tracker = services.runtime.tracker().clone();
    tracker.spawn(async move {
        let service = hyper::service::service_fn(move |req| {
            let services = services.clone();
            let hosts = hosts.clone();
            async move { Ok::<_, Infallible>(respond(&services, &req, hosts.as_deref())) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service);
        match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => debug!(error = %e, "metrics connection ended"),
            Err(_) => debug!("metrics connection timed out"),
        }
        drop(permit);
    });
}

/// `GET /metrics`, and nothing else; on TCP, only for a `Host` of
/// `hosts`.
fn respond(
    services: &Services,
    req: &Request<Incoming>,
    hosts: Option<&[String]>,
) -> Response<Full<Bytes>> {
    let plain = |status: StatusCode, text: String| {
        let mut r = Response::new(Full::new(Bytes::from(text)));
        *r.status_mut() = status;
        r.headers_mut().insert(
            CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    };
    if let Some(hosts) = hosts
        && !host_allowed(req.headers().get(HOST), hosts)
    {
        debug!("metrics listener: refused a request for another Host");
        return plain(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "refused: the Host header is not this listener's address ({}); fluxd serves its metrics only to scrapers that name it, not to web pages (DNS rebinding)\n",
                hosts.join(", ")
            ),
        );
    }
    if req.uri().path() != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: fluxd serves GET /metrics only\n".into(),
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics only\n".into());
        r.headers_mut()
            .insert(ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let mut r = Response::new(Full::new(Bytes::from(super::exposition::render(services))));
    r.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(CONTENT_TYPE_TEXT),
    );
    r.headers_mut().insert(
        CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn a_tcp_listener_answers_its_own_host_only() {
        let hosts = allowed_hosts("127.0.0.1:9464".parse().unwrap());
        assert_eq!(
            hosts,
            ["127.0.0.1:9464", "[::1]:9464", "localhost:9464"],
            "sorted, no duplicate"
        );
        let ok = |h: &str| host_allowed(Some(&HeaderValue::from_str(h).unwrap()), &hosts);
        for good in [
            "127.0.0.1:9464",
            "localhost:9464",
            "LocalHost:9464",
            "[::1]:9464",
        ] {
            assert!(ok(good), "{good}");
        }
        for bad in [
            "evil.example",
            "evil.example:9464",
            "127.0.0.1",
            "127.0.0.1:9465",
            "localhost",
            "127.0.0.1:9464.evil.example",
            "",
        ] {
            assert!(!ok(bad), "{bad}");
        }
        assert!(!host_allowed(None, &hosts), "no Host at all");
        let other = allowed_hosts("127.0.0.2:80".parse().unwrap());
        assert!(other.contains(&"127.0.0.2:80".to_owned()));
        assert!(other.contains(&"127.0.0.2".to_owned()));
        assert!(other.contains(&"localhost".to_owned()));
        let v6 = allowed_hosts("[::1]:9464".parse().unwrap());
        assert_eq!(v6.len(), 3);
    }
}
