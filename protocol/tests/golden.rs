//! Golden bytes: every message's exact frame, checked against the test
//! vectors in `PROTOCOL.md` (the block fenced as ```vectors). Changing an
//! encoding breaks this test; that is a protocol change, to be recorded in
//! `PROTOCOL.md` with a new protocol version.
//!
//! `FLUX_BLESS=1 cargo test -p flux-protocol --test golden -- --nocapture`
//! prints the block for this build's encoding.

use flux_protocol::codec::{decode, encode};
use flux_protocol::message::*;
use flux_protocol::{ErrorCode, SecretValue};

fn info(last_error: Option<&str>) -> ProjectInfo {
    ProjectInfo {
        name: "my-app".into(),
        socket: "/run/flux/projects/my-app.sock".into(),
        secrets: 2,
        generation: 7,
        loaded_at_ms: 1_764_000_000_000,
        last_error: last_error.map(str::to_owned),
    }
}

fn requests() -> Vec<(&'static str, Request)> {
    vec![
        (
            "request.hello",
            Request::Hello(Hello {
                version: 1,
                client: "fluxctl/0.1.0".into(),
            }),
        ),
        (
            "request.get",
            Request::Get(Get {
                name: "OPENAI_API_KEY".into(),
            }),
        ),
        ("request.list", Request::List),
        (
            "request.set",
            Request::Set(Set {
                name: "OPENAI_API_KEY".into(),
                value: SecretValue::from("sk-abc123"),
            }),
        ),
        (
            "request.delete",
            Request::Delete(Delete {
                name: "OPENAI_API_KEY".into(),
            }),
        ),
        ("request.get_all", Request::GetAll),
        (
            "request.create_project",
            Request::CreateProject(ProjectName {
                name: "my-app".into(),
            }),
        ),
        (
            "request.delete_project",
            Request::DeleteProject(ProjectName {
                name: "my-app".into(),
            }),
        ),
        ("request.list_projects", Request::ListProjects),
        ("request.status", Request::Status),
        ("request.subscribe", Request::Subscribe),
        (
            "request.audit",
            Request::Audit(AuditQuery {
                project: Some("my-app".into()),
                since_ms: 1_764_000_000_000,
                limit: 100,
            }),
        ),
        (
            "request.set_many",
            Request::SetMany(vec![NamedValue {
                name: "A".into(),
                value: SecretValue::from("1"),
            }]),
        ),
        ("request.list_hosts", Request::ListHosts),
        (
            "request.add_host",
            Request::AddHost(HostRecipient {
                recipient: "age1host".into(),
            }),
        ),
        (
            "request.remove_host",
            Request::RemoveHost(HostRecipient {
                recipient: "age1host".into(),
            }),
        ),
        (
            "request.audit_log",
            Request::AuditLog(AuditQuery {
                project: None,
                since_ms: 0,
                limit: 10,
            }),
        ),
        ("request.health", Request::Health),
        ("request.restore_vault", Request::RestoreVault),
        ("request.fleet", Request::Fleet),
        (
            "request.history",
            Request::History(SecretName {
                name: "OPENAI_API_KEY".into(),
            }),
        ),
        (
            "request.rollback",
            Request::Rollback(Rollback {
                name: "OPENAI_API_KEY".into(),
                to: Some(2),
            }),
        ),
        (
            "request.diff",
            Request::Diff(vec![NamedValue {
                name: "A".into(),
                value: SecretValue::from("1"),
            }]),
        ),
        ("request.list_digests", Request::ListDigests),
        ("request.metrics", Request::Metrics),
        ("request.hosts_head", Request::HostsHead),
        (
            "request.publish_hosts",
            Request::PublishHosts(SignedHosts {
                list: b"{}".to_vec(),
                id: Vec::new(),
            }),
        ),
        ("request.resume_removal", Request::ResumeRemoval),
        (
            "request.rekey_project",
            Request::RekeyProject(ProjectName {
                name: "my-app".into(),
            }),
        ),
        ("request.prepare_host_key", Request::PrepareHostKey),
        (
            "request.write",
            Request::Write(Set {
                name: "OPENAI_API_KEY".into(),
                value: SecretValue::from("sk-abc123"),
            }),
        ),
        (
            "request.write_many",
            Request::WriteMany(vec![NamedValue {
                name: "A".into(),
                value: SecretValue::from("1"),
            }]),
        ),
        (
            "request.audit_trail",
            Request::AuditTrail(AuditTrailQuery {
                project: None,
                since_ms: 0,
                limit: 10,
                unit: Some("fn-*.service".into()),
            }),
        ),
    ]
}

fn responses() -> Vec<(&'static str, Response)> {
    vec![
        (
            "response.welcome.project",
            Response::Welcome(Welcome {
                version: 1,
                server: "fluxd/0.1.0".into(),
                scope: Scope::Project("my-app".into()),
            }),
        ),
        (
            "response.welcome.control",
            Response::Welcome(Welcome {
                version: 1,
                server: "fluxd/0.1.0".into(),
                scope: Scope::Control,
            }),
        ),
        (
            "response.error",
            Response::Error(ErrorReply {
                code: ErrorCode::NotFound,
                message: "secret X is not set".into(),
            }),
        ),
        (
            "response.value",
            Response::Value(SecretValue::from("sk-abc123")),
        ),
        (
            "response.secrets",
            Response::Secrets(vec![SecretInfo {
                name: "OPENAI_API_KEY".into(),
                set_at_ms: 1_764_000_000_000,
            }]),
        ),
        (
            "response.stored",
            Response::Stored(Stored {
                created: true,
                generation: 2,
            }),
        ),
        (
            "response.deleted",
            Response::Deleted(Deleted { generation: 3 }),
        ),
        (
            "response.values",
            Response::Values(vec![NamedValue {
                name: "A".into(),
                value: SecretValue::from("1"),
            }]),
        ),
        (
            "response.project_created",
            Response::ProjectCreated(info(None)),
        ),
        (
            "response.project_deleted",
            Response::ProjectDeleted(ProjectName {
                name: "my-app".into(),
            }),
        ),
        (
            "response.projects",
            Response::Projects(vec![info(Some("bad seal"))]),
        ),
        (
            "response.status",
            Response::Status(DaemonStatus {
                version: "0.1.0".into(),
                pid: 42,
                started_at_ms: 1_764_000_000_000,
                state_dir: "/var/lib/flux".into(),
                runtime_dir: "/run/flux".into(),
                projects: vec![],
            }),
        ),
        (
            "response.subscribed",
            Response::Subscribed(Subscribed { generation: 5 }),
        ),
        (
            "response.event",
            Response::Event(Event {
                generation: 6,
                kind: EventKind::Reloaded,
                names: vec!["OPENAI_API_KEY".into()],
            }),
        ),
        (
            "response.audit_records",
            Response::AuditRecords(vec![AuditRecord {
                time_ms: 1_764_000_000_000,
                project: Some("my-app".into()),
                op: "get".into(),
                name: Some("OPENAI_API_KEY".into()),
                uid: 1000,
                gid: 1000,
                pid: Some(4242),
                exe: None,
                allowed: true,
                result: "ok".into(),
            }]),
        ),
        (
            "response.stored_many",
            Response::StoredMany(StoredMany {
                created: vec!["A".into()],
                updated: vec![],
                generation: 8,
            }),
        ),
        (
            "response.hosts",
            Response::Hosts(HostList {
                this_host: Some("age1host".into()),
                hosts: vec!["age1host".into()],
            }),
        ),
        (
            "response.host_updated",
            Response::HostUpdated(HostUpdate {
                recipient: "age1host".into(),
                projects: vec!["my-app".into()],
            }),
        ),
        (
            "response.audit_log",
            Response::AuditLog(vec![AuditEntry {
                time_ms: 1_764_000_060_000,
                first_ms: 1_764_000_000_000,
                count: 42,
                project: Some("my-app".into()),
                op: "get".into(),
                name: Some("OPENAI_API_KEY".into()),
                uid: 1000,
                gid: 1000,
                pid: Some(4242),
                exe: None,
                allowed: true,
                result: "ok".into(),
                detail: None,
            }]),
        ),
        (
            "response.health",
            Response::Health(Box::new(Health {
                status: DaemonStatus {
                    version: "0.1.0".into(),
                    pid: 42,
                    started_at_ms: 1_764_000_000_000,
                    state_dir: "/var/lib/flux".into(),
                    runtime_dir: "/run/flux".into(),
                    projects: vec![],
                },
                audit: AuditHealth {
                    path: Some("/var/lib/flux/audit.log".into()),
                    reads: "summary".into(),
                    error: None,
                    dropped: 0,
                    writes_refused: false,
                },
                problems: vec![],
            })),
        ),
        (
            "response.restored",
            Response::Restored(Restored {
                revision: 43,
                generation: 9,
                secrets: 2,
            }),
        ),
        (
            "response.fleet",
            Response::Fleet(FleetInfo {
                fleet_id: Some("fleet:Ab".into()),
                this_host: Some("age1x:Cd".into()),
                member: true,
                hosts_version: 2,
                hosts: vec!["age1x:Cd".into()],
                problems: vec![],
            }),
        ),
        (
            "response.history",
            Response::History(SecretHistory {
                name: "OPENAI_API_KEY".into(),
                versions: vec![
                    VersionInfo {
                        version: 3,
                        set_at_ms: 1_764_000_060_000,
                        uid: Some(1000),
                        exe: Some("/usr/bin/fluxctl".into()),
                        digest: "5d41402abc4b".into(),
                    },
                    VersionInfo {
                        version: 2,
                        set_at_ms: 1_764_000_000_000,
                        uid: None,
                        exe: None,
                        digest: "7d793037a076".into(),
                    },
                ],
            }),
        ),
        (
            "response.rolled_back",
            Response::RolledBack(RolledBack {
                from: 2,
                version: 4,
                generation: 10,
            }),
        ),
        (
            "response.diff",
            Response::Diff(vec![
                Difference {
                    name: "A".into(),
                    state: DiffState::Same,
                },
                Difference {
                    name: "B".into(),
                    state: DiffState::Changed,
                },
                Difference {
                    name: "C".into(),
                    state: DiffState::OnlyInRequest,
                },
                Difference {
                    name: "D".into(),
                    state: DiffState::OnlyInProject,
                },
            ]),
        ),
        (
            "response.secret_digests",
            Response::SecretDigests(vec![SecretDigest {
                name: "OPENAI_API_KEY".into(),
                set_at_ms: 1_764_000_000_000,
                digest: "5d41402abc4b".into(),
            }]),
        ),
        ("response.metrics", Response::Metrics("flux_up 1\n".into())),
        (
            "response.hosts_head",
            Response::HostsHead(SignedHosts {
                list: b"{}".to_vec(),
                id: b"[]".to_vec(),
            }),
        ),
        (
            "response.hosts_changed",
            Response::HostsChanged(HostsReport {
                version: 3,
                added: vec![],
                removed: vec!["age1x".into()],
                projects: vec!["api".into()],
                pending: vec!["web".into()],
                failures: vec!["web: etcd is unreachable".into()],
            }),
        ),
        (
            "response.rekeyed",
            Response::Rekeyed(Rekeyed {
                name: "my-app".into(),
                revision: 9,
                generation: 12,
            }),
        ),
        (
            "response.host_key",
            Response::HostKey(HostKeyToken {
                join_token: "age1x:Cd".into(),
            }),
        ),
        (
            "response.written",
            Response::Written(Written {
                outcome: WriteOutcome::Unchanged,
                generation: 2,
            }),
        ),
        (
            "response.written_many",
            Response::WrittenMany(WrittenMany {
                created: vec!["A".into()],
                updated: vec!["B".into()],
                unchanged: vec!["C".into()],
                generation: 8,
            }),
        ),
        (
            "response.audit_trail",
            Response::AuditTrail(vec![AuditTrailEntry {
                time_ms: 1_764_000_060_000,
                first_ms: 1_764_000_000_000,
                count: 42,
                project: Some("my-app".into()),
                op: "get".into(),
                name: Some("OPENAI_API_KEY".into()),
                uid: 1000,
                gid: 1000,
                pid: Some(4242),
                exe: None,
                allowed: true,
                result: "ok".into(),
                detail: None,
                unit: Some("fn-billing.service".into()),
                slice: Some("fn.slice".into()),
                cgroup: Some("/fn.slice/fn-billing.service".into()),
                exe_sha256: None,
            }]),
        ),
    ]
}

fn frame_hex(payload: &[u8]) -> String {
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(payload);
    frame.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The `name hex` lines of PROTOCOL.md's vectors block.
fn documented() -> Vec<(String, String)> {
    let doc = include_str!("../../PROTOCOL.md");
    let block = doc
        .split("```vectors\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("PROTOCOL.md has a ```vectors block");
    block
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut parts = l.split_whitespace();
            let name = parts.next().unwrap().to_owned();
            let hex: String = parts.collect();
            (name, hex)
        })
        .collect()
}

#[test]
fn every_message_matches_its_documented_vector() {
    let mut ours: Vec<(String, String)> = Vec::new();
    for (name, req) in requests() {
        let bytes = encode(&req).unwrap();
        assert_eq!(decode::<Request>(&bytes).unwrap(), req, "{name} round trip");
        ours.push((name.into(), frame_hex(&bytes)));
    }
    for (name, resp) in responses() {
        let bytes = encode(&resp).unwrap();
        assert_eq!(
            decode::<Response>(&bytes).unwrap(),
            resp,
            "{name} round trip"
        );
        ours.push((name.into(), frame_hex(&bytes)));
    }
    if std::env::var_os("FLUX_BLESS").is_some() {
        for (name, hex) in &ours {
            println!("{name:<26} {hex}");
        }
        return;
    }
    let doc = documented();
    let doc_names: Vec<&str> = doc.iter().map(|(n, _)| n.as_str()).collect();
    let our_names: Vec<&str> = ours.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(doc_names, our_names, "PROTOCOL.md lists the same vectors");
    for ((name, want), (_, got)) in doc.iter().zip(&ours) {
        assert_eq!(got, want, "{name}: encoding differs from PROTOCOL.md");
        let payload = &unhex(want)[4..];
        if name.starts_with("request.") {
            decode::<Request>(payload).unwrap();
        } else {
            decode::<Response>(payload).unwrap();
        }
    }
}

#[test]
fn variants_are_numbered_by_position() {
    // The first four bytes of a payload are the variant index (u32 LE).
    for (i, (name, req)) in requests().into_iter().enumerate() {
        let bytes = encode(&req).unwrap();
        assert_eq!(&bytes[..4], &(i as u32).to_le_bytes(), "{name}");
    }
}

/// How many variants an enum has, from the decoder's own error for an
/// index past the last one ("expected variant index 0 <= i < N").
fn variant_count<T: serde::de::DeserializeOwned + std::fmt::Debug>() -> u32 {
    let err = decode::<T>(&u32::MAX.to_le_bytes())
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
fn every_variant_has_a_vector() {
    let index = |bytes: &[u8]| u32::from_le_bytes(bytes[..4].try_into().unwrap());
    let requests: std::collections::BTreeSet<u32> = requests()
        .iter()
        .map(|(_, r)| index(&encode(r).unwrap()))
        .collect();
    assert_eq!(requests, (0..variant_count::<Request>()).collect());
    let responses: std::collections::BTreeSet<u32> = responses()
        .iter()
        .map(|(_, r)| index(&encode(r).unwrap()))
        .collect();
    assert_eq!(responses, (0..variant_count::<Response>()).collect());
}

#[test]
fn unknown_error_codes_still_decode() {
    let mut bytes = encode(&Response::Error(ErrorReply {
        code: ErrorCode::NotFound,
        message: String::new(),
    }))
    .unwrap();
    bytes[4..8].copy_from_slice(&999u32.to_le_bytes());
    match decode::<Response>(&bytes).unwrap() {
        Response::Error(e) => assert_eq!(e.code, ErrorCode::Other(999)),
        other => panic!("decoded as {other:?}"),
    }
}
