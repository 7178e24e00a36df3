//! `fluxctl dashboard`: a local, read-only web page of what fluxd serves —
//! projects and their health, each project's names, the audit log, reads
//! and denials over time, a rotation timeline — updated live as changes
//! happen.
//!
//! It listens on 127.0.0.1 only (a random port unless `--port`) and prints
//! a link carrying a one-time code, good once and for `--link-ttl`
//! seconds; the page trades it for a session secret it keeps in its tab
//! and sends as a header ([`session`]) — never in a URL, on a command line
//! or in a cookie. [`http`] checks the Host, the Origin and the session on
//! every request. It reaches fluxd through
//! [`readonly::ReadOnly`] alone, over the control and project sockets with
//! the operator's own kernel credentials: it sees what that operator may
//! see, and nothing more is exposed on the network.
//!
//! **No value can reach the browser.** `ReadOnly` can only ask questions
//! whose answers hold names, times, keyed digests, peers and numbers
//! (list digests, status, health, fleet, audit, metrics, subscribe); it
//! has no way to ask for a
//! value, and no other part of the dashboard can build a request.
//! The test below reads every source file of this module, the page's
//! script included, and fails if any of them names a value-carrying
//! message or call. The page, script and style are compiled into fluxctl
//! ([`assets`]); nothing is fetched from anywhere else.

pub mod api;
pub mod assets;
pub mod http;
pub mod live;
pub mod readonly;
pub mod session;

use crate::failure::{Failure, Result};
use crate::target::Target;
use http::State;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::sync::Arc;
use std::time::Duration;

/// How long a connection may take to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the dashboard until interrupted. The printed link works once,
/// within `link_ttl`.
pub(crate) fn run(target: &Target, port: u16, no_open: bool, link_ttl: Duration) -> Result<u8> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("fluxctl-dashboard")
        .build()
        .map_err(|e| Failure::general(format!("cannot start the async runtime: {e}")))?;
    // Found before the runtime starts: finding it connects with the
    // blocking client.
    let runtime_dir = target.runtime_dir();
    rt.block_on(serve(target, runtime_dir, port, no_open, link_ttl))
}

async fn serve(
    target: &Target,
    runtime_dir: std::path::PathBuf,
    port: u16,
    no_open: bool,
    link_ttl: Duration,
) -> Result<u8> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| Failure::general(format!("cannot listen on 127.0.0.1:{port}: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| Failure::general(format!("cannot read the listening address: {e}")))?
        .port();
    let daemon = Arc::new(readonly::ReadOnly::new(runtime_dir.clone()));
    // Fail early, with fluxctl's usual message and exit status, when fluxd
    // cannot be reached at all and no project was named to look at.
    if let Err(e) = daemon.health().await
        && e.unreachable
        && target.project.is_none()
    {
        return Err(Failure::new(crate::failure::EXIT_UNREACHABLE, e.message));
    }
    let hub = live::Hub::new();
    hub.start(daemon.clone(), target.project.clone());
    let state = Arc::new(State {
        port,
        sign_in: session::SignIn::new(link_ttl)?,
        daemon,
        hub,
        fallback: target.project.clone(),
    });
    // The link carries the one-time code only: it is handed to the browser
    // on a command line any local user can read.
    let url = format!("http://127.0.0.1:{port}/?code={}", state.sign_in.code());
    crate::out(&format!(
        "Flux dashboard (read-only) for {}\n{url}\n\
         Open that link within {} s: it signs in one browser tab, once. Press Ctrl-C to stop.\n",
        runtime_dir.display(),
        link_ttl.as_secs()
    ))?;
    if !no_open && let Err(e) = open::that_detached(&url) {
        eprintln!("fluxctl: could not open a browser ({e}); open the link above yourself");
    }
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = tokio::signal::ctrl_c() => return Ok(0),
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| http::serve(state.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    /// Every source file of the dashboard, the page included.
    const SOURCES: &[(&str, &str)] = &[
        ("mod.rs", include_str!("mod.rs")),
        ("api.rs", include_str!("api.rs")),
        ("assets.rs", include_str!("assets.rs")),
        ("http.rs", include_str!("http.rs")),
        ("live.rs", include_str!("live.rs")),
        ("readonly.rs", include_str!("readonly.rs")),
        ("session.rs", include_str!("session.rs")),
        ("assets/index.html", include_str!("assets/index.html")),
        ("assets/app.js", include_str!("assets/app.js")),
        ("assets/style.css", include_str!("assets/style.css")),
        ("assets/favicon.svg", include_str!("assets/favicon.svg")),
    ];

    /// Names of the messages and calls that carry a value. Built from
    /// pieces, so this file does not name them either.
    fn forbidden() -> Vec<String> {
        let pieces: &[&[&str]] = &[
            &["Request", "::", "Get"],
            &["Request", "::", "Set"],
            &["Request", "::", "Write"],
            &["Request", "::", "Delete"],
            &["Response", "::", "Value"],
            &["Get", "All"],
            &["get", "_all"],
            &["Set", "Many"],
            &["set", "_many("],
            &["Write", "Many"],
            &["Secret", "Value"],
            &["Named", "Value"],
            &["put_value", "_frame"],
            &["expose", "("],
            &["blocking", "::"],
            &[".get", "(\""],
            &["read", "_value"],
        ];
        pieces.iter().map(|p| p.concat()).collect()
    }

    #[test]
    fn no_dashboard_source_names_a_value_carrying_message_or_call() {
        let mut found = Vec::new();
        for (file, text) in SOURCES {
            for word in forbidden() {
                if text.contains(&word) {
                    found.push(format!("{file}: {word}"));
                }
            }
        }
        assert!(found.is_empty(), "value paths in the dashboard: {found:?}");
    }

    #[test]
    fn only_the_read_only_wrapper_talks_to_fluxd() {
        let client = ["Client", "::", "connect"].concat();
        let request = ["Request", "::"].concat();
        for (file, text) in SOURCES {
            if *file == "readonly.rs" {
                continue;
            }
            assert!(!text.contains(&client), "{file} connects to fluxd itself");
            assert!(!text.contains(&request), "{file} builds a request itself");
        }
    }

    #[test]
    fn every_source_file_is_checked() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/dashboard");
        let mut on_disk = Vec::new();
        for sub in ["", "assets"] {
            for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
                let entry = entry.unwrap();
                if entry.file_type().unwrap().is_file() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    on_disk.push(if sub.is_empty() {
                        name
                    } else {
                        format!("{sub}/{name}")
                    });
                }
            }
        }
        on_disk.sort();
        let mut listed: Vec<String> = SOURCES.iter().map(|(f, _)| (*f).to_owned()).collect();
        listed.sort();
        assert_eq!(on_disk, listed, "add new dashboard files to SOURCES");
    }
}
