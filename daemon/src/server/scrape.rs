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

use super::Services;
use super::sockets::Sockets;
use crate::config::MetricsListen;
use crate::error::{Error, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE};
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

async fn accept_loop(services: Weak<Services>, listener: Listener, cancel: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_SCRAPERS));
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
            Ok(Conn::Tcp(s)) => spawn(services, s, permit),
            Ok(Conn::Unix(s)) => spawn(services, s, permit),
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

fn spawn<S>(services: Arc<Services>, stream: S, permit: tokio::sync::OwnedSemaphorePermit)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let tracker = services.runtime.tracker().clone();
    tracker.spawn(async move {
        let service = hyper::service::service_fn(move |req| {
            let services = services.clone();
            async move { Ok::<_, Infallible>(respond(&services, &req)) }
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

/// `GET /metrics`, and nothing else.
fn respond(services: &Services, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let plain = |status: StatusCode, text: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
        *r.status_mut() = status;
        r.headers_mut().insert(
            CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    };
    if req.uri().path() != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: fluxd serves GET /metrics only\n",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics only\n");
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
