//! Live updates: change events from fluxd, forwarded to every open page as
//! server-sent events (names and kinds, never values).
//!
//! One task follows the project list (every [`POLL`]); each project it
//! finds gets a task that subscribes on the project's socket (readers and
//! admins may) and forwards its events. While a project cannot be
//! subscribed to — the operator holds no role there, or its socket is gone
//! — a change of its generation in the project list is forwarded instead
//! as a `changed` event with no names, so the page still refreshes within
//! about a [`POLL`]. A refused subscription is tried again after 5 s, then
//! ever more rarely (up to every 5 minutes), and a refused project list
//! every 5 minutes: each refusal is an audited denial.

use super::readonly::ReadOnly;
use flux_protocol::message::{EventKind, ProjectInfo};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

/// How often the project list is read.
pub const POLL: Duration = Duration::from_millis(500);
/// How long a failed subscription waits before trying again.
const RETRY: Duration = Duration::from_secs(5);
/// The longest wait after a refusal: a refused request is audited, so the
/// dashboard asks again rarely (a policy reload may grant it later).
const REFUSED_MAX: Duration = Duration::from_secs(300);

/// One change, as a page receives it.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub project: String,
    /// `set`, `deleted`, `reloaded`, `project_deleted`, `project_created`
    /// or `changed` (seen in the project list: no names).
    pub kind: &'static str,
    /// Secret names (empty: anything may have changed).
    pub names: Vec<String>,
    pub generation: u64,
}

fn kind_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Set => "set",
        EventKind::Deleted => "deleted",
        EventKind::Reloaded => "reloaded",
        EventKind::ProjectDeleted => "project_deleted",
    }
}

/// Changes, and which projects are followed live.
#[derive(Debug)]
pub struct Hub {
    tx: broadcast::Sender<Change>,
    /// Projects whose subscription is open now.
    live: Mutex<BTreeSet<String>>,
}

impl Hub {
    /// A hub, with nothing followed yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            tx: broadcast::channel(1024).0,
            live: Mutex::new(BTreeSet::new()),
        })
    }

    /// Every change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.tx.subscribe()
    }

    /// True while `project`'s change events are followed.
    pub fn is_live(&self, project: &str) -> bool {
        self.live_set().contains(project)
    }

    fn live_set(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn send(&self, change: Change) {
        // No page open is not an error.
        let _ = self.tx.send(change);
    }

    /// Follows `daemon`'s projects until the runtime stops.
    pub fn start(self: &Arc<Self>, daemon: Arc<ReadOnly>, fallback: Option<String>) {
        let hub = self.clone();
        tokio::spawn(async move { hub.follow(daemon, fallback).await });
    }

    async fn follow(self: Arc<Self>, daemon: Arc<ReadOnly>, fallback: Option<String>) {
        let mut known: BTreeMap<String, u64> = BTreeMap::new();
        let mut followed: BTreeSet<String> = BTreeSet::new();
        let mut first = true;
        loop {
            let listed = daemon.projects().await;
            let refused = listed.as_ref().is_err_and(|e| e.is_denied());
            let projects: Option<Vec<ProjectInfo>> = listed.ok();
            let names: Vec<String> = match &projects {
                Some(list) => list.iter().map(|p| p.name.clone()).collect(),
                // Not a daemon admin: follow the project named on the
                // command line, if any.
                None => fallback.iter().cloned().collect(),
            };
            for name in &names {
                if followed.insert(name.clone()) {
                    self.spawn_subscriber(daemon.clone(), name.clone());
                }
            }
            if let Some(list) = &projects {
                let now: BTreeMap<String, u64> = list
                    .iter()
                    .map(|p| (p.name.clone(), p.generation))
                    .collect();
                for (name, generation) in &now {
                    match known.get(name) {
                        None if !first => self.send(Change {
                            project: name.clone(),
                            kind: "project_created",
                            names: Vec::new(),
                            generation: *generation,
                        }),
                        Some(old) if old != generation && !self.is_live(name) => {
                            self.send(Change {
                                project: name.clone(),
                                kind: "changed",
                                names: Vec::new(),
                                generation: *generation,
                            });
                        }
                        _ => {}
                    }
                }
                for name in known.keys().filter(|n| !now.contains_key(*n)) {
                    followed.remove(name);
                    if !self.is_live(name) {
                        self.send(Change {
                            project: name.clone(),
                            kind: "project_deleted",
                            names: Vec::new(),
                            generation: 0,
                        });
                    }
                }
                known = now;
                first = false;
            }
            // Not a daemon admin: asking twice a second would fill the
            // audit log with denials.
            tokio::time::sleep(if refused { REFUSED_MAX } else { POLL }).await;
        }
    }

    fn spawn_subscriber(self: &Arc<Self>, daemon: Arc<ReadOnly>, project: String) {
        let hub = self.clone();
        tokio::spawn(async move {
            let mut wait = RETRY;
            loop {
                match daemon.subscribe(&project).await {
                    Ok(mut sub) => {
                        wait = RETRY;
                        hub.live_set().insert(project.clone());
                        while let Ok(event) = sub.next().await {
                            let gone = event.kind == EventKind::ProjectDeleted;
                            hub.send(Change {
                                project: project.clone(),
                                kind: kind_name(event.kind),
                                names: event.names,
                                generation: event.generation,
                            });
                            if gone {
                                hub.live_set().remove(&project);
                                return;
                            }
                        }
                        hub.live_set().remove(&project);
                    }
                    Err(e) if e.code == Some(flux_protocol::ErrorCode::UnknownProject) => return,
                    Err(e) if e.is_denied() => {
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(REFUSED_MAX);
                        continue;
                    }
                    Err(_) => {}
                }
                tokio::time::sleep(RETRY).await;
                // Deleted meanwhile: the project list no longer holds it.
                if let Ok(list) = daemon.projects().await
                    && !list.iter().any(|p| p.name == project)
                {
                    return;
                }
            }
        });
    }
}
