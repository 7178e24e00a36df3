//! What a socket serves — the control socket or one project's — and the
//! connection slots it hands out: a project socket's semaphore, and the
//! control socket's slots per peer uid.

use crate::access::Socket;
use crate::metrics::ProjectMetrics;
use crate::project::Project;
use flux_protocol::message::Scope;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// What a socket serves.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Control {
        /// Control connections open, by peer uid.
        peers: Arc<PeerSlots>,
    },
    Project {
        project: Arc<Project>,
        /// Connection slots of this project's socket.
        slots: Arc<Semaphore>,
    },
}

impl Target {
    pub(crate) fn label(&self) -> String {
        match self {
            Self::Control { .. } => "control".into(),
            Self::Project { project, .. } => format!("project:{}", project.name()),
        }
    }

    pub(super) fn scope(&self) -> Scope {
        match self {
            Self::Control { .. } => Scope::Control,
            Self::Project { project, .. } => Scope::Project(project.name().to_owned()),
        }
    }

    pub(super) fn socket(&self) -> Socket<'_> {
        match self {
            Self::Control { .. } => Socket::Control,
            Self::Project { project, .. } => Socket::Project(project.name()),
        }
    }

    pub(super) fn project_name(&self) -> Option<&str> {
        self.project().map(|p| p.name())
    }

    pub(super) fn project(&self) -> Option<&Arc<Project>> {
        match self {
            Self::Control { .. } => None,
            Self::Project { project, .. } => Some(project),
        }
    }

    pub(super) fn project_metrics(&self) -> Option<Arc<ProjectMetrics>> {
        self.project().map(|p| p.metrics().clone())
    }
}

/// Control connections open per peer uid, so that one user holding many
/// cannot keep other operators out ([`crate::config::Limits`]'s
/// `max_control_connections_per_peer`).
#[derive(Debug, Default)]
pub(crate) struct PeerSlots {
    open: std::sync::Mutex<std::collections::HashMap<u32, usize>>,
}

impl PeerSlots {
    /// One more connection for `uid`, unless it holds `limit` already.
    pub(super) fn take(self: &Arc<Self>, uid: u32, limit: usize) -> Option<PeerSlot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let held = open.entry(uid).or_insert(0);
        if *held >= limit {
            return None;
        }
        *held += 1;
        Some(PeerSlot {
            slots: self.clone(),
            uid,
        })
    }
}

/// One control connection of one peer, given back when dropped.
#[derive(Debug)]
pub(crate) struct PeerSlot {
    slots: Arc<PeerSlots>,
    uid: u32,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = open.get_mut(&self.uid) {
            *held -= 1;
            if *held == 0 {
                open.remove(&self.uid);
            }
        }
    }
}
