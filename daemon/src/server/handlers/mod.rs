//! One handler per request kind, each in its own file, each declaring the
//! rule it runs under (`RULE`: the socket it belongs on, the role it
//! needs, whether it reads or writes).
//!
//! [`rule`] gathers them in one exhaustive `match` with no wildcard arm —
//! the one place that decides where a request belongs and who may make it
//! ([`crate::access::decide`] applies it) — and [`run`] dispatches a
//! [`Granted`] request to its handler, the only way one is reached. A new
//! request kind compiles only once both have an arm, and the authorization
//! matrix below fails until it has rows.
//!
//! | request | socket | needs | kind |
//! |---|---|---|---|
//! | `Get`, `GetAll`, `Diff` (it compares values: an oracle for anyone else) | project | reader | read |
//! | `Subscribe` | project | reader or admin (events carry names only) | read |
//! | `List`, `ListDigests`, `History` | project | admin | read |
//! | `Set`, `SetMany`, `Write`, `WriteMany`, `Delete`, `Rollback`, `RestoreVault` | project | admin | write |
//! | `CreateProject`, `PublishHosts`, `ResumeRemoval`, `PrepareHostKey`, `AddHost` and `RemoveHost` (refused: superseded) | control | daemon admin | write |
//! | `DeleteProject`, `RekeyProject` | control | daemon admin, or admin of that project | write |
//! | `ListProjects`, `Status`, `Health`, `Audit`, `AuditLog`, `AuditTrail`, `ListHosts`, `Fleet`, `HostsHead`, `Metrics` | control | daemon admin | read |
//! | `Hello` | — (the handshake only) | — | — |

mod add_host;
mod audit;
mod audit_log;
mod audit_trail;
mod create_project;
mod delete;
mod delete_project;
mod diff;
mod fleet;
mod get;
mod get_all;
mod health;
mod history;
mod hosts_head;
mod list;
mod list_digests;
mod list_hosts;
mod list_projects;
mod metrics;
mod prepare_host_key;
mod publish_hosts;
mod rekey_project;
mod remove_host;
mod restore_vault;
mod resume_removal;
mod rollback;
mod set;
mod set_many;
mod status;
mod subscribe;
mod write;
mod write_many;

use super::Services;
use crate::access::peer::Peer;
use crate::access::policy::Hidden;
use crate::access::{Granted, Rule};
use crate::error::{Error, Result};
use crate::project::{Project, Writer};
use bytes::BytesMut;
use flux_protocol::message::{Event, Request, Response};
use flux_vault::vault::SetBy;
use std::sync::Arc;
use tokio::sync::broadcast;

/// What a handler works with.
pub struct Ctx<'a> {
    pub services: &'a Services,
    /// The socket's project (none on the control socket).
    pub project: Option<&'a Arc<Project>>,
    /// Who is asking, as the kernel reported it.
    pub peer: &'a Peer,
    /// The connection's write buffer, for an answer written in place.
    pub out: &'a mut BytesMut,
    /// The connection's change events, once it subscribed.
    pub events: &'a mut Option<broadcast::Receiver<Event>>,
    /// Secrets that do not exist for this peer (set by [`run`] from the
    /// grant).
    pub hidden: Hidden,
}

impl<'a> Ctx<'a> {
    /// The socket's project. A project request reaches a handler only on a
    /// project socket ([`crate::access::decide`] checks the socket); this
    /// answers rather than trusts that.
    pub fn project(&self) -> Result<&'a Arc<Project>> {
        self.project
            .ok_or_else(|| Error::Internal("a project request reached the control socket".into()))
    }

    /// What a write goes by: the limits, the versions to keep, and the
    /// peer, recorded with each new version.
    pub fn writer(&self) -> Writer<'a> {
        let config = &self.services.config;
        Writer {
            limits: &config.limits,
            keep_versions: config.vaults.keep_versions,
            by: Some(SetBy::new(self.peer.uid, self.peer.exe.as_deref())),
        }
    }
}

/// How a request is answered.
#[derive(Debug)]
pub enum Reply {
    /// A message to encode and send.
    Message(Response),
    /// A frame already in the write buffer, to flush.
    Written,
}

/// The rule of `req`'s kind, as its handler declares it.
pub fn rule(req: &Request) -> Rule {
    match req {
        Request::Hello(_) => Rule::Handshake,
        Request::Get(_) => get::RULE,
        Request::List => list::RULE,
        Request::Set(_) => set::RULE,
        Request::Delete(_) => delete::RULE,
        Request::GetAll => get_all::RULE,
        Request::CreateProject(_) => create_project::RULE,
        Request::DeleteProject(_) => delete_project::RULE,
        Request::ListProjects => list_projects::RULE,
        Request::Status => status::RULE,
        Request::Subscribe => subscribe::RULE,
        Request::Audit(_) => audit::RULE,
        Request::SetMany(_) => set_many::RULE,
        Request::ListHosts => list_hosts::RULE,
        Request::AddHost(_) => add_host::RULE,
        Request::RemoveHost(_) => remove_host::RULE,
        Request::AuditLog(_) => audit_log::RULE,
        Request::Health => health::RULE,
        Request::RestoreVault => restore_vault::RULE,
        Request::Fleet => fleet::RULE,
        Request::History(_) => history::RULE,
        Request::Rollback(_) => rollback::RULE,
        Request::Diff(_) => diff::RULE,
        Request::ListDigests => list_digests::RULE,
        Request::Metrics => metrics::RULE,
        Request::HostsHead => hosts_head::RULE,
        Request::PublishHosts(_) => publish_hosts::RULE,
        Request::ResumeRemoval => resume_removal::RULE,
        Request::RekeyProject(_) => rekey_project::RULE,
        Request::PrepareHostKey => prepare_host_key::RULE,
        Request::Write(_) => write::RULE,
        Request::WriteMany(_) => write_many::RULE,
        Request::AuditTrail(_) => audit_trail::RULE,
    }
}

/// Runs a granted request's handler.
pub async fn run(ctx: &mut Ctx<'_>, granted: Granted) -> Result<Reply> {
    let message = |r: Result<Response>| r.map(Reply::Message);
    // A source the store says may have changed (`fluxd dev`'s `.env` file
    // saved a moment ago) is re-read before the request is answered.
    if let Some(project) = ctx.project {
        project.refresh().await;
    }
    let (request, hidden) = granted.into_parts();
    ctx.hidden = hidden;
    match request {
        Request::Hello(_) => Err(Error::Internal(
            "a handshake was granted as a request".into(),
        )),
        Request::Get(req) => get::handle(ctx, req),
        Request::List => message(list::handle(ctx)),
        Request::Set(req) => message(set::handle(ctx, req).await),
        Request::Delete(req) => message(delete::handle(ctx, req).await),
        Request::GetAll => message(get_all::handle(ctx)),
        Request::CreateProject(req) => message(create_project::handle(ctx, req).await),
        Request::DeleteProject(req) => message(delete_project::handle(ctx, req).await),
        Request::ListProjects => message(list_projects::handle(ctx)),
        Request::Status => message(status::handle(ctx)),
        Request::Subscribe => message(subscribe::handle(ctx)),
        Request::Audit(req) => message(audit::handle(ctx, req).await),
        Request::SetMany(req) => message(set_many::handle(ctx, req).await),
        Request::ListHosts => message(list_hosts::handle(ctx).await),
        Request::AddHost(req) => message(add_host::handle(ctx, req).await),
        Request::RemoveHost(req) => message(remove_host::handle(ctx, req).await),
        Request::AuditLog(req) => message(audit_log::handle(ctx, req).await),
        Request::Health => message(health::handle(ctx)),
        Request::RestoreVault => message(restore_vault::handle(ctx).await),
        Request::Fleet => message(fleet::handle(ctx)),
        Request::History(req) => message(history::handle(ctx, req).await),
        Request::Rollback(req) => message(rollback::handle(ctx, req).await),
        Request::Diff(req) => message(diff::handle(ctx, req)),
        Request::ListDigests => message(list_digests::handle(ctx)),
        Request::Metrics => message(metrics::handle(ctx)),
        Request::HostsHead => message(hosts_head::handle(ctx).await),
        Request::PublishHosts(req) => message(publish_hosts::handle(ctx, req).await),
        Request::ResumeRemoval => message(resume_removal::handle(ctx).await),
        Request::RekeyProject(req) => message(rekey_project::handle(ctx, req).await),
        Request::PrepareHostKey => message(prepare_host_key::handle(ctx).await),
        Request::Write(req) => message(write::handle(ctx, req).await),
        Request::WriteMany(req) => message(write_many::handle(ctx, req).await),
        Request::AuditTrail(req) => message(audit_trail::handle(ctx, req).await),
    }
}

/// Runs a granted `Get` or `GetAll` on the caller's thread: the reads a
/// project socket's connection thread serves itself
/// ([`super::session::direct`]); they never wait (the caller re-reads a
/// source that may have changed first, as [`run`] does). Any other kind is
/// refused, never run here.
pub fn run_read(ctx: &mut Ctx<'_>, granted: Granted) -> Result<Reply> {
    let (request, hidden) = granted.into_parts();
    ctx.hidden = hidden;
    match request {
        Request::Get(req) => get::handle(ctx, req),
        Request::GetAll => get_all::handle(ctx).map(Reply::Message),
        other => Err(Error::Internal(format!(
            "{} reached the connection thread's read path",
            other.op()
        ))),
    }
}

/// Runs blocking work (etcd calls, file reads) off the async threads.
async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("{what} task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    //! The authorization matrix: every request kind × both sockets × four
    //! peers, through the rule its handler declares and the real
    //! [`decide`]. A request kind without rows fails.
    use super::*;
    use crate::access::policy::{PeerIdentity, Policy};
    use crate::access::{Denial, Denied, Effect, Granted, Socket, decide};
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
            workload: Default::default(),
        }
    }

    /// One request of every kind; project-naming ones name `app`.
    fn samples() -> Vec<Request> {
        flux_protocol::samples::all()
    }

    /// Expected decisions for peers (nobody, reader, admin, daemon admin):
    /// `+` allowed, `-` denied by role, `s` wrong socket, `h` handshake.
    const MATRIX: &[(RequestKind, &str, &str)] = &[
        // kind                              project  control
        (RequestKind::Hello, "hhhh", "hhhh"),
        (RequestKind::Get, "-+--", "ssss"),
        (RequestKind::GetAll, "-+--", "ssss"),
        (RequestKind::Subscribe, "-++-", "ssss"),
        (RequestKind::List, "--+-", "ssss"),
        (RequestKind::Set, "--+-", "ssss"),
        (RequestKind::SetMany, "--+-", "ssss"),
        (RequestKind::Write, "--+-", "ssss"),
        (RequestKind::WriteMany, "--+-", "ssss"),
        (RequestKind::Delete, "--+-", "ssss"),
        (RequestKind::CreateProject, "ssss", "---+"),
        (RequestKind::DeleteProject, "ssss", "--++"),
        (RequestKind::ListProjects, "ssss", "---+"),
        (RequestKind::Status, "ssss", "---+"),
        (RequestKind::Health, "ssss", "---+"),
        (RequestKind::Audit, "ssss", "---+"),
        (RequestKind::AuditLog, "ssss", "---+"),
        (RequestKind::AuditTrail, "ssss", "---+"),
        (RequestKind::ListHosts, "ssss", "---+"),
        (RequestKind::AddHost, "ssss", "---+"),
        (RequestKind::RemoveHost, "ssss", "---+"),
        (RequestKind::RestoreVault, "--+-", "ssss"),
        (RequestKind::Fleet, "ssss", "---+"),
        (RequestKind::History, "--+-", "ssss"),
        (RequestKind::Rollback, "--+-", "ssss"),
        (RequestKind::Diff, "-+--", "ssss"),
        (RequestKind::ListDigests, "--+-", "ssss"),
        (RequestKind::Metrics, "ssss", "---+"),
        (RequestKind::HostsHead, "ssss", "---+"),
        (RequestKind::PublishHosts, "ssss", "---+"),
        (RequestKind::ResumeRemoval, "ssss", "---+"),
        (RequestKind::RekeyProject, "ssss", "--++"),
        (RequestKind::PrepareHostKey, "ssss", "---+"),
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

    #[test]
    fn every_request_kind_has_rows() {
        let rows: BTreeSet<RequestKind> = MATRIX.iter().map(|r| r.0).collect();
        assert_eq!(rows.len(), MATRIX.len(), "one row per request kind");
        let missing: Vec<&str> = RequestKind::ALL
            .iter()
            .filter(|k| !rows.contains(k))
            .map(|k| k.op())
            .collect();
        assert!(missing.is_empty(), "no MATRIX row for {missing:?}");
    }

    #[test]
    fn authorization_matrix() {
        let policy = policy();
        let peers = [NOBODY, READER, ADMIN, DAEMON_ADMIN].map(peer);
        let rows: BTreeMap<RequestKind, (&str, &str)> =
            MATRIX.iter().map(|(k, p, c)| (*k, (*p, *c))).collect();
        let mut wrong = Vec::new();
        for req in samples() {
            let (on_project, on_control) = rows[&req.kind()];
            for (socket, want) in [
                (Socket::Project("app"), on_project),
                (Socket::Control, on_control),
            ] {
                let got: String = peers
                    .iter()
                    .map(|p| outcome(&decide(&policy, p, socket, req.clone(), rule(&req))))
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
                        decide(&policy, &peer(READER), socket, req.clone(), rule(&req)).is_err(),
                        "a reader may {}",
                        req.op()
                    );
                    assert!(
                        decide(&policy, &peer(NOBODY), socket, req.clone(), rule(&req)).is_err(),
                        "a socket-group member with no role may {}",
                        req.op()
                    );
                }
            }
        }
    }

    /// Every request kind, for a reader outside one secret's readers and a
    /// workload-only reader list: the grant carries the hidden secret
    /// exactly for the kinds that answer with values or event names, and
    /// a unit rule holds a peer by its unit, under any uid.
    #[test]
    fn per_secret_readers_and_unit_rules() {
        use crate::access::workload::Workload;
        let toml = format!(
            r#"
            [projects.app]
            readers = {{ units = ["fn-*.service"] }}
            admins = {{ users = [{ADMIN}] }}
            [projects.app.secrets.DB_PASSWORD]
            readers = {{ units = ["billing.service"] }}
            "#
        );
        let f: crate::config::FileConfig = toml::from_str(&toml).unwrap();
        let policy = Policy::resolve(1, &f.defaults, &f.projects, None).unwrap();
        let in_unit = |uid: u32, unit: &str| PeerIdentity {
            uid,
            gids: BTreeSet::new(),
            workload: std::sync::Arc::new(Workload {
                unit: Some(unit.into()),
                ..Workload::default()
            }),
        };
        let fn_a = in_unit(NOBODY, "fn-a.service");
        let other_unit = in_unit(NOBODY, "billing-cron.service");
        for req in samples() {
            let hides = matches!(
                req,
                Request::Get(_) | Request::GetAll | Request::Diff(_) | Request::Subscribe
            );
            let reads = hides;
            let granted = decide(
                &policy,
                &fn_a,
                Socket::Project("app"),
                req.clone(),
                rule(&req),
            );
            match granted {
                Ok(g) => {
                    assert!(reads, "{} granted to a reader by unit", req.op());
                    assert_eq!(g.hidden().contains("DB_PASSWORD"), hides, "{}", req.op());
                }
                Err(_) => assert!(!reads, "{} refused to a reader by unit", req.op()),
            }
            assert!(
                !reads
                    || decide(
                        &policy,
                        &other_unit,
                        Socket::Project("app"),
                        req.clone(),
                        rule(&req)
                    )
                    .is_err(),
                "{}: another unit, same uid, is no reader",
                req.op()
            );
        }
        // A reader in the secret's unit reads it; an admin subscribing sees
        // every name.
        let billing = PeerIdentity {
            workload: std::sync::Arc::new(Workload {
                unit: Some("fn-billing.service".into()),
                ..Workload::default()
            }),
            ..in_unit(NOBODY, "")
        };
        assert!(policy.hidden_from("app", &billing).contains("DB_PASSWORD"));
        let sub = Request::Subscribe;
        let admin = decide(
            &policy,
            &peer(ADMIN),
            Socket::Project("app"),
            sub.clone(),
            rule(&sub),
        )
        .unwrap();
        assert!(
            admin.hidden().is_empty(),
            "an admin's events name everything"
        );
    }

    #[test]
    fn delete_project_needs_admin_of_the_named_project() {
        let policy = policy();
        let other = Request::DeleteProject(ProjectName {
            name: "other".into(),
        });
        assert!(
            decide(
                &policy,
                &peer(ADMIN),
                Socket::Control,
                other.clone(),
                rule(&other)
            )
            .is_err()
        );
        assert!(
            decide(
                &policy,
                &peer(DAEMON_ADMIN),
                Socket::Control,
                other.clone(),
                rule(&other)
            )
            .is_ok()
        );
    }
}
