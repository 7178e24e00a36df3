//! The subscription behind `fluxctl run --watch` and `fluxctl render
//! --watch`: one connection to the project socket that subscribes to
//! change events and, after each burst of them, reads every value again
//! and hands them to its listener (the supervisor, or the renderer), which
//! compares values to decide whether anything really changed.
//!
//! Events are a signal to re-read, never the source of truth (PROTOCOL.md,
//! "Change events"): a `Set` of the same value sends one too, so the
//! supervisor compares values, not events. A burst ends when no event has
//! come for the debounce time, or at the latest [`MAX_DEBOUNCES`] times
//! that after its first event, so changes that never stop still get
//! through.
//!
//! When the connection drops (fluxd restarted, the socket went away) the
//! child keeps running: this says so on stderr and reconnects with a
//! backoff from [`FIRST_BACKOFF`] doubling to [`MAX_BACKOFF`]. Every
//! connection starts with a subscription and then a full read, so nothing
//! that changed while it was down — or between fluxctl's first read and
//! the subscription — is missed.

use flux_protocol::message::{Event, EventKind, NamedValue};
use flux_protocol::{Client, ClientError};
use flux_supervise::MAX_DEBOUNCES;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(100);
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What the supervisor hears.
#[derive(Debug)]
pub(crate) enum Update {
    /// Every value the project holds now, and the names the events named
    /// (`None`: any name may have changed — a first read, or a burst that
    /// included an event without names).
    Values {
        values: Vec<NamedValue>,
        named: Option<BTreeSet<String>>,
    },
    /// The project was deleted: none of its values is served any more.
    ProjectDeleted,
}

/// Runs until the listener stops listening. `keeps` says, in messages
/// about a lost connection, what carries on meanwhile ("the command keeps
/// running").
pub(crate) async fn watch(
    socket: PathBuf,
    project: String,
    debounce: Duration,
    keeps: String,
    tx: UnboundedSender<Update>,
) {
    let mut link = Link {
        project,
        keeps,
        trouble: None,
        gone: false,
        backoff: FIRST_BACKOFF,
    };
    loop {
        let result = match subscribe(&socket).await {
            Ok(mut client) => follow(&mut client, debounce, &tx, &mut link).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(Stop::Listener) => return,
            Ok(Stop::ProjectDeleted) => link.gone = true,
            Err(e) => link.trouble(&e),
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(link.backoff).await;
        link.backoff = (link.backoff * 2).min(MAX_BACKOFF);
    }
}

/// The state of the watch, for what to say on stderr: each problem once,
/// and once that it is over.
struct Link {
    project: String,
    /// What carries on while the link is down.
    keeps: String,
    /// The problem last reported, until a read succeeds again.
    trouble: Option<String>,
    /// The project was deleted (the supervisor said so).
    gone: bool,
    backoff: Duration,
}

impl Link {
    /// A read succeeded.
    fn healthy(&mut self) {
        if self.trouble.take().is_some() || self.gone {
            eprintln!("fluxctl: watching project {} again", self.project);
        }
        self.gone = false;
        self.backoff = FIRST_BACKOFF;
    }

    fn trouble(&mut self, e: &ClientError) {
        let reason = crate::clean_error(&e.to_string());
        if self.gone || self.trouble.as_deref() == Some(reason.as_str()) {
            return;
        }
        if self.trouble.is_none() && e.is_unreachable() {
            eprintln!(
                "fluxctl: lost the connection to fluxd ({reason}); {}, reconnecting",
                self.keeps
            );
        } else {
            eprintln!(
                "fluxctl: cannot watch project {}: {reason}; {}, retrying",
                self.project, self.keeps
            );
        }
        self.trouble = Some(reason);
    }
}

async fn subscribe(socket: &std::path::Path) -> Result<Client, ClientError> {
    let mut client = Client::connect(socket).await?;
    client.subscribe().await?;
    Ok(client)
}

enum Stop {
    /// The supervisor is gone.
    Listener,
    /// The project was deleted; the daemon closes the connection.
    ProjectDeleted,
}

/// Reads every value, then again after each burst of events, until the
/// connection fails.
async fn follow(
    client: &mut Client,
    debounce: Duration,
    tx: &UnboundedSender<Update>,
    link: &mut Link,
) -> Result<Stop, ClientError> {
    let mut named = None;
    loop {
        let values = client.get_all().await?;
        link.healthy();
        if tx.send(Update::Values { values, named }).is_err() {
            return Ok(Stop::Listener);
        }
        let first = tokio::select! {
            event = client.next_event() => event?,
            () = tx.closed() => return Ok(Stop::Listener),
        };
        let mut burst = Burst::default();
        if burst.add(first) {
            let _ = tx.send(Update::ProjectDeleted);
            return Ok(Stop::ProjectDeleted);
        }
        let latest = Instant::now() + debounce * MAX_DEBOUNCES;
        loop {
            let until = (Instant::now() + debounce).min(latest);
            match tokio::time::timeout_at(until, client.next_event()).await {
                Ok(event) => {
                    if burst.add(event?) {
                        let _ = tx.send(Update::ProjectDeleted);
                        return Ok(Stop::ProjectDeleted);
                    }
                }
                Err(_) => break,
            }
        }
        named = burst.named;
    }
}

/// The names a burst of events named.
struct Burst {
    named: Option<BTreeSet<String>>,
}

impl Default for Burst {
    fn default() -> Self {
        Self {
            named: Some(BTreeSet::new()),
        }
    }
}

impl Burst {
    /// Adds an event; true when it says the project was deleted.
    fn add(&mut self, event: Event) -> bool {
        if event.kind == EventKind::ProjectDeleted {
            return true;
        }
        if event.names.is_empty() {
            self.named = None;
        } else if let Some(named) = &mut self.named {
            named.extend(event.names);
        }
        false
    }
}
