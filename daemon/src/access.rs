//! Whether a request may run: decided here, in one place, for every
//! request kind.
//!
//! [`rule`] is one exhaustive `match` over [`Request`] with no wildcard
//! arm: each kind states the socket it belongs on, the role it needs, and
//! whether it reads or writes (which decides how the audit log records it).
//! A new request kind does not compile until it has a rule, and the
//! matrix test below fails until it has rows.
//!
//! | request | socket | needs | kind |
//! |---|---|---|---|
//! | `Get`, `GetAll`, `Subscribe` | project | reader | read |
//! | `List` | project | admin | read |
//! | `Set`, `SetMany`, `Delete`, `RestoreVault` | project | admin | write |
//! | `CreateProject`, `AddHost`, `RemoveHost` | control | daemon admin | write |
//! | `DeleteProject` | control | daemon admin, or admin of that project | write |
//! | `ListProjects`, `Status`, `Health`, `Audit`, `AuditLog`, `ListHosts` | control | daemon admin | read |
//! | `Hello` | — (the handshake only) | — | — |
//!
//! [`decide`] applies the rule to a peer on a socket and returns either a
//! [`Granted`] request — the only way a handler receives one, since nothing
//! outside this module can build it — or a [`Denied`] one: on the wrong
//! socket, a repeated handshake, or a missing role. Every decision, denials
//! included, is answered and audited by the session.

use crate::policy::{PeerIdentity, Policy, Role};
use flux_protocol::message::Request;

/// The kind of socket a connection arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketKind {
    Control,
    Project,
}

impl SocketKind {
    /// How messages name it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Control => "control",
            Self::Project => "project",
        }
    }
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

const fn project(need: Need, effect: Effect) -> Rule {
    Rule::Request {
        socket: SocketKind::Project,
        need,
        effect,
    }
}

const fn control(need: Need, effect: Effect) -> Rule {
    Rule::Request {
        socket: SocketKind::Control,
        need,
        effect,
    }
}

/// Every request kind's rule: the one place that says where a request
/// belongs and who may make it. No wildcard arm, on purpose.
pub fn rule(req: &Request) -> Rule {
    use Effect::{Read, Write};
    use Need::*;
    match req {
        Request::Hello(_) => Rule::Handshake,
        Request::Get(_) => project(Reader, Read),
        Request::GetAll => project(Reader, Read),
        Request::Subscribe => project(Reader, Read),
        Request::List => project(Admin, Read),
        Request::Set(_) => project(Admin, Write),
        Request::SetMany(_) => project(Admin, Write),
        Request::Delete(_) => project(Admin, Write),
        Request::RestoreVault => project(Admin, Write),
        Request::CreateProject(_) => control(DaemonAdmin, Write),
        Request::DeleteProject(_) => control(DaemonAdminOrAdminOfNamed, Write),
        Request::ListProjects => control(DaemonAdmin, Read),
        Request::Status => control(DaemonAdmin, Read),
        Request::Health => control(DaemonAdmin, Read),
        Request::Audit(_) => control(DaemonAdmin, Read),
        Request::AuditLog(_) => control(DaemonAdmin, Read),
        Request::ListHosts => control(DaemonAdmin, Read),
        Request::AddHost(_) => control(DaemonAdmin, Write),
        Request::RemoveHost(_) => control(DaemonAdmin, Write),
    }
}

/// A request the policy allowed. Only [`decide`] makes one, so a handler
/// that takes a `Granted` cannot be reached without a decision.
#[derive(Debug)]
pub struct Granted {
    request: Request,
    effect: Effect,
}

impl Granted {
    /// The request.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// Whether it reads or writes.
    pub fn effect(&self) -> Effect {
        self.effect
    }

    /// The request, to run it.
    pub fn into_request(self) -> Request {
        self.request
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

/// Decides whether `peer` may make `req` on `socket` under `policy`.
pub fn decide(
    policy: &Policy,
    peer: &PeerIdentity,
    socket: Socket<'_>,
    req: Request,
) -> Result<Granted, Denied> {
    let (belongs, need, effect) = match rule(&req) {
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
        (Need::DaemonAdmin, _) => policy.is_daemon_admin(peer),
        (Need::DaemonAdminOrAdminOfNamed, _) => {
            policy.is_daemon_admin(peer)
                || match &req {
                    Request::DeleteProject(p) => policy.allows(&p.name, peer, Role::Admin),
                    _ => false,
                }
        }
        // A project role on the control socket: nothing to hold it on.
        (Need::Reader | Need::Admin, Socket::Control) => false,
    };
    if allowed {
        Ok(Granted {
            request: req,
            effect,
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

#[cfg(test)]
mod tests {
    //! The authorization matrix: every request kind × both sockets × four
    //! peers, through [`decide`]. A request kind without rows fails.
    use super::*;
    use flux_protocol::SecretValue;
    use flux_protocol::codec::{decode, encode};
    use flux_protocol::message::*;
    use std::collections::{BTreeMap, BTreeSet};

    const NOBODY: u32 = 5000;
    const READER: u32 = 5001;
    const ADMIN: u32 = 5002;
    const DAEMON_ADMIN: u32 = 5003;

    fn policy() -> Policy {
        let toml = format!(
            r#"
            [defaults]
            admins = {{ users = [{DAEMON_ADMIN}] }}
            [projects.app]
            readers = {{ users = [{READER}] }}
            admins = {{ users = [{ADMIN}] }}
            socket_group = 7000
            "#
        );
        let f: crate::config::FileConfig = toml::from_str(&toml).unwrap();
        // The daemon runs as some uid none of the peers has.
        Policy::resolve(1, &f.defaults, &f.projects, None).unwrap()
    }

    fn peer(uid: u32) -> PeerIdentity {
        // Every peer is in the socket group: it reaches the socket.
        PeerIdentity {
            uid,
            gids: BTreeSet::from([7000]),
        }
    }

    /// One request of every kind; project-naming ones name `app`.
    fn samples() -> Vec<Request> {
        let host = || HostRecipient {
            recipient: "age1host".into(),
        };
        let query = || AuditQuery {
            project: Some("app".into()),
            since_ms: 0,
            limit: 0,
        };
        vec![
            Request::Hello(Hello {
                version: 1,
                client: "t".into(),
            }),
            Request::Get(Get { name: "A".into() }),
            Request::List,
            Request::Set(Set {
                name: "A".into(),
                value: SecretValue::from("v"),
            }),
            Request::Delete(Delete { name: "A".into() }),
            Request::GetAll,
            Request::CreateProject(ProjectName { name: "app".into() }),
            Request::DeleteProject(ProjectName { name: "app".into() }),
            Request::ListProjects,
            Request::Status,
            Request::Subscribe,
            Request::Audit(query()),
            Request::SetMany(vec![NamedValue {
                name: "A".into(),
                value: SecretValue::from("v"),
            }]),
            Request::ListHosts,
            Request::AddHost(host()),
            Request::RemoveHost(host()),
            Request::AuditLog(query()),
            Request::Health,
            Request::RestoreVault,
        ]
    }

    /// Expected decisions for peers (nobody, reader, admin, daemon admin):
    /// `+` allowed, `-` denied by role, `s` wrong socket, `h` handshake.
    const MATRIX: &[(&str, &str, &str)] = &[
        // op              project  control
        ("hello", "hhhh", "hhhh"),
        ("get", "-+--", "ssss"),
        ("get_all", "-+--", "ssss"),
        ("subscribe", "-+--", "ssss"),
        ("list", "--+-", "ssss"),
        ("set", "--+-", "ssss"),
        ("set_many", "--+-", "ssss"),
        ("delete", "--+-", "ssss"),
        ("create_project", "ssss", "---+"),
        ("delete_project", "ssss", "--++"),
        ("list_projects", "ssss", "---+"),
        ("status", "ssss", "---+"),
        ("health", "ssss", "---+"),
        ("audit", "ssss", "---+"),
        ("audit_log", "ssss", "---+"),
        ("list_hosts", "ssss", "---+"),
        ("add_host", "ssss", "---+"),
        ("remove_host", "ssss", "---+"),
        ("restore_vault", "--+-", "ssss"),
    ];

    fn outcome(d: &Result<Granted, Denied>) -> char {
        match d {
            Ok(_) => '+',
            Err(Denied {
                denial: Denial::Role { .. },
                ..
            }) => '-',
            Err(Denied {
                denial: Denial::WrongSocket { .. },
                ..
            }) => 's',
            Err(Denied {
                denial: Denial::Handshake,
                ..
            }) => 'h',
        }
    }

    /// How many variants `Request` has, from the decoder's own error for an
    /// index past the last one ("expected variant index 0 <= i < N").
    fn variant_count() -> u32 {
        let err = decode::<Request>(&u32::MAX.to_le_bytes())
            .unwrap_err()
            .to_string();
        err.split("0 <= i < ")
            .nth(1)
            .and_then(|rest| {
                rest.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no variant count in {err:?}"))
    }

    #[test]
    fn every_request_kind_has_a_sample_and_rows() {
        let samples = samples();
        let indexes: BTreeSet<u32> = samples
            .iter()
            .map(|r| u32::from_le_bytes(encode(r).unwrap()[..4].try_into().unwrap()))
            .collect();
        let n = variant_count();
        assert_eq!(
            indexes,
            (0..n).collect(),
            "samples() must hold one request of each of the {n} kinds"
        );
        let rows: BTreeSet<&str> = MATRIX.iter().map(|r| r.0).collect();
        assert_eq!(rows.len(), MATRIX.len(), "one row per request kind");
        for r in &samples {
            assert!(rows.contains(r.op()), "no MATRIX row for {}", r.op());
        }
        assert_eq!(
            rows.len(),
            samples.len(),
            "a MATRIX row for a kind that does not exist"
        );
    }

    #[test]
    fn authorization_matrix() {
        let policy = policy();
        let peers = [NOBODY, READER, ADMIN, DAEMON_ADMIN].map(peer);
        let rows: BTreeMap<&str, (&str, &str)> =
            MATRIX.iter().map(|(op, p, c)| (*op, (*p, *c))).collect();
        let mut wrong = Vec::new();
        for req in samples() {
            let (on_project, on_control) = rows[req.op()];
            for (socket, want) in [
                (Socket::Project("app"), on_project),
                (Socket::Control, on_control),
            ] {
                let got: String = peers
                    .iter()
                    .map(|p| outcome(&decide(&policy, p, socket, req.clone())))
                    .collect();
                if got != want {
                    wrong.push(format!(
                        "{} on {:?}: got {got}, want {want}",
                        req.op(),
                        socket.kind()
                    ));
                }
            }
        }
        assert!(wrong.is_empty(), "decisions differ:\n{}", wrong.join("\n"));
    }

    #[test]
    fn a_reader_cannot_write_by_any_request() {
        // The hole this module closes: SetMany had no rule and ran unchecked.
        let policy = policy();
        for req in samples() {
            if let Rule::Request {
                effect: Effect::Write,
                ..
            } = rule(&req)
            {
                for socket in [Socket::Project("app"), Socket::Control] {
                    assert!(
                        decide(&policy, &peer(READER), socket, req.clone()).is_err(),
                        "a reader may {}",
                        req.op()
                    );
                    assert!(
                        decide(&policy, &peer(NOBODY), socket, req.clone()).is_err(),
                        "a socket-group member with no role may {}",
                        req.op()
                    );
                }
            }
        }
    }

    #[test]
    fn delete_project_needs_admin_of_the_named_project() {
        let policy = policy();
        let other = Request::DeleteProject(ProjectName {
            name: "other".into(),
        });
        assert!(decide(&policy, &peer(ADMIN), Socket::Control, other.clone()).is_err());
        assert!(decide(&policy, &peer(DAEMON_ADMIN), Socket::Control, other).is_ok());
    }
}
