//! A connection just accepted, on either path: its number, its peer as
//! the kernel identifies it, its gauges and log span ([`Opened`]); and how
//! it comes to the async session ([`Start`]).

use super::conn::Slot;
use super::target::Target;
use crate::access::peer::Peer;
use crate::metrics::ConnectionGauge;
use crate::server::Services;
use flux_protocol::message::Request;
use std::sync::atomic::{AtomicU64, Ordering};
use tracing::{info_span, warn};

static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// How a connection comes to the async session.
pub(in crate::server) enum Start {
    /// Just accepted: the slot and the handshake are still to come.
    Fresh,
    /// Handed over by [`super::direct`] after its handshake, with the connection's
    /// slot and the request it does not serve itself, to answer first.
    Resumed { slot: Slot, first: Request },
}

/// A connection just accepted, on either path: its number, its peer as
/// the kernel identifies it, its place in the gauges, its log span, and
/// the policy reloads it will see.
pub(in crate::server) struct Opened {
    pub(super) id: u64,
    pub(super) peer: Peer,
    pub(super) gauge: ConnectionGauge,
    pub(super) span: tracing::Span,
    pub(super) reloads: tokio::sync::watch::Receiver<u64>,
}

impl Opened {
    /// Identifies the peer of `stream`; `None` (logged) when the kernel
    /// cannot say who it is or it exited before it could be identified.
    pub(super) fn of(
        stream: &impl std::os::fd::AsFd,
        target: &Target,
        services: &Services,
    ) -> Option<Self> {
        let id = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
        let peer = match Peer::of(stream, &services.access.policy()) {
            Ok(peer) => peer,
            Err(e) => {
                warn!(error = %e, "cannot identify the peer; closing");
                return None;
            }
        };
        let gauge = ConnectionGauge::open(services.metrics.clone(), target.project_metrics());
        let span = info_span!("conn", id, socket = %target.label(), peer_uid = peer.uid, peer_pid = peer.pid);
        Some(Self {
            id,
            peer,
            gauge,
            span,
            // Taken before the handshake: a reload from then on is seen.
            reloads: services.access.reloads(),
        })
    }
}
