//! Access: who may do what, and the record of every decision.
//!
//! - [`policy`]: the roles the config file gives, resolved to uids and
//!   gids; [`peer`]: who is on the other end, from the kernel;
//! - [`audit`]: the log of decisions (never a value);
//! - [`decide`]: a request's [`Rule`] — the socket it belongs on, the role
//!   it needs, whether it reads or writes — applied to a peer on a socket.
//!
//! Each request kind's rule is declared by its handler
//! (`crate::server::handlers`, one file per kind) and gathered there by one
//! exhaustive `match` with no wildcard arm, so a new request kind does not
//! compile until it has a rule, and the authorization matrix test fails
//! until it has rows.
//!
//! [`decide`] returns either a [`Granted`] request — the only way a handler
//! receives one, since nothing outside this module can build it — or a
//! [`Denied`] one: on the wrong socket, a repeated handshake, or a missing
//! role. Every decision, denials included, is answered and audited by the
//! session. [`Access`] holds the policy in force (swapped on reload, which
//! open connections notice through [`Access::reloads`]) and the audit log.

pub mod audit;
pub mod peer;
pub mod policy;
pub mod workload;

use arc_swap::ArcSwap;
use audit::Audit;
use flux_protocol::message::Request;
use policy::{Hidden, PeerIdentity, Policy, Role};
use std::sync::Arc;
use tokio::sync::watch;
use tracing::warn;

/// The kind of socket a connection arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketKind {
    Control,
    Project,
}

/// The socket a connection arrived on, with the project it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Socket<'a> {
    Control,
    Project(&'a str),
}

impl Socket<'_> {
    /// Its kind.
    pub fn kind(&self) -> SocketKind {
        match self {
            Self::Control => SocketKind::Control,
            Self::Project(_) => SocketKind::Project,
        }
    }
}

/// The role a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Reader of the socket's project.
    Reader,
    /// Reader or admin of the socket's project: what reveals names, never
    /// values (change events).
    ReaderOrAdmin,
    /// Admin of the socket's project.
    Admin,
    /// Admin of the daemon (the default admins, the daemon's uid, root).
    DaemonAdmin,
    /// Admin of the daemon, or admin of the project the request names.
    DaemonAdminOrAdminOfNamed,
}

/// Whether a request only reads, or changes something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Changes nothing: summarized in the audit log.
    Read,
    /// Changes a vault, a project or the fleet: one audit line each, and
    /// refused while the audit log cannot be written.
    Write,
}

/// What a request kind needs to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// `Hello`: only the first frame of a connection; refused after it.
    Handshake,
    /// Runs on `socket` for a peer with `need`.
    Request {
        socket: SocketKind,
        need: Need,
        effect: Effect,
    },
}

impl Rule {
    /// A request of the socket's project, needing `need`.
    pub const fn project(need: Need, effect: Effect) -> Self {
        Self::Request {
            socket: SocketKind::Project,
            need,
            effect,
        }
    }

    /// A request of the control socket, needing `need`.
    pub const fn control(need: Need, effect: Effect) -> Self {
        Self::Request {
            socket: SocketKind::Control,
            need,
            effect,
        }
    }
}

/// A request the policy allowed. Only [`decide`] makes one, so a handler
/// that takes a `Granted` cannot be reached without a decision.
#[derive(Debug)]
pub struct Granted {
    request: Request,
    effect: Effect,
    /// Secrets that do not exist for this peer (a project reader outside
    /// a secret's own readers).
    hidden: Hidden,
}

impl Granted {
    /// Whether it reads or writes.
    pub fn effect(&self) -> Effect {
        self.effect
    }

    /// The secrets its answer must leave out.
    pub fn hidden(&self) -> &Hidden {
        &self.hidden
    }

    /// The request, and the secrets its answer must leave out.
    pub fn into_parts(self) -> (Request, Hidden) {
        (self.request, self.hidden)
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// A second `Hello`.
    Handshake,
    /// The request belongs on the other kind of socket.
    WrongSocket { belongs: SocketKind },
    /// The peer lacks the role.
    Role { need: Need },
}

/// A request the policy refused, with the reason.
#[derive(Debug)]
pub struct Denied {
    pub request: Request,
    pub denial: Denial,
    /// Whether it would have read or written (`Read` for a handshake).
    pub effect: Effect,
}

/// The policy in force and the audit log.
#[derive(Debug)]
pub struct Access {
    policy: ArcSwap<Policy>,
    reloads: watch::Sender<u64>,
    audit: Audit,
}

impl Access {
    /// Access under `policy`, recorded in `audit`.
    pub fn new(policy: Policy, audit: Audit) -> Self {
        for warning in policy.warnings() {
            warn!("{warning}");
        }
        Self {
            policy: ArcSwap::from_pointee(policy),
            reloads: watch::Sender::new(0),
            audit,
        }
    }

    /// The policy in force now.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    /// The policy in force, for one decision (cheaper than
    /// [`Access::policy`]: no reference count is taken).
    pub fn policy_guard(&self) -> arc_swap::Guard<Arc<Policy>> {
        self.policy.load()
    }

    /// Puts `policy` in force and tells every open connection to check
    /// itself against it.
    pub fn replace_policy(&self, policy: Policy) {
        for warning in policy.warnings() {
            warn!("{warning}");
        }
        self.policy.store(Arc::new(policy));
        self.reloads.send_modify(|n| *n += 1);
    }

    /// Changes on every policy reload.
    pub fn reloads(&self) -> watch::Receiver<u64> {
        self.reloads.subscribe()
    }

    /// The audit log.
    pub fn audit(&self) -> &Audit {
        &self.audit
    }
}

/// Decides whether `peer` may make `req`, whose rule is `rule`, on
/// `socket` under `policy`.
pub fn decide(
    policy: &Policy,
    peer: &PeerIdentity,
    socket: Socket<'_>,
    req: Request,
    rule: Rule,
) -> Result<Granted, Denied> {
    let (belongs, need, effect) = match rule {
        Rule::Handshake => {
            return Err(Denied {
                request: req,
                denial: Denial::Handshake,
                effect: Effect::Read,
            });
        }
        Rule::Request {
            socket,
            need,
            effect,
        } => (socket, need, effect),
    };
    if belongs != socket.kind() {
        return Err(Denied {
            request: req,
            denial: Denial::WrongSocket { belongs },
            effect,
        });
    }
    let allowed = match (need, socket) {
        (Need::Reader, Socket::Project(p)) => policy.allows(p, peer, Role::Reader),
        (Need::Admin, Socket::Project(p)) => policy.allows(p, peer, Role::Admin),
        (Need::ReaderOrAdmin, Socket::Project(p)) => {
            policy.allows(p, peer, Role::Reader) || policy.allows(p, peer, Role::Admin)
        }
        (Need::DaemonAdmin, _) => policy.is_daemon_admin(peer),
        (Need::DaemonAdminOrAdminOfNamed, _) => {
            policy.is_daemon_admin(peer)
                || match &req {
                    Request::DeleteProject(p) | Request::RekeyProject(p) => {
                        policy.allows(&p.name, peer, Role::Admin)
                    }
                    _ => false,
                }
        }
        // A project role on the control socket: nothing to hold it on.
        (Need::Reader | Need::Admin | Need::ReaderOrAdmin, Socket::Control) => false,
    };
    if allowed {
        // What a reader's answer leaves out: values (`Reader`), and names
        // in events for a peer that reads without managing (`ReaderOrAdmin`).
        let hidden = match (need, socket) {
            (Need::Reader, Socket::Project(p)) => policy.hidden_from(p, peer),
            (Need::ReaderOrAdmin, Socket::Project(p)) if !policy.allows(p, peer, Role::Admin) => {
                policy.hidden_from(p, peer)
            }
            _ => Hidden::default(),
        };
        Ok(Granted {
            request: req,
            effect,
            hidden,
        })
    } else {
        Err(Denied {
            request: req,
            denial: Denial::Role { need },
            effect,
        })
    }
}

/// Whether `peer` holds any role a request on `socket` could need: what
/// keeps an open connection open when the policy is reloaded (one that
/// holds none is closed).
pub fn holds_a_role(policy: &Policy, peer: &PeerIdentity, socket: Socket<'_>) -> bool {
    match socket {
        Socket::Project(p) => {
            policy.allows(p, peer, Role::Reader) || policy.allows(p, peer, Role::Admin)
        }
        Socket::Control => policy.admin_anywhere(peer),
    }
}
