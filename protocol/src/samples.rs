//! One request of every kind, for tests that must cover them all (the
//! daemon's authorization matrix and per-kind counters): built from
//! [`RequestKind`], so a new kind does not compile until it has a sample.
//! Project-naming samples name `app`; secret-naming ones `A`.

use crate::SecretValue;
use crate::message::*;

/// A request of `kind`.
pub fn sample(kind: RequestKind) -> Request {
    let host = || HostRecipient {
        recipient: "age1host".into(),
    };
    let query = || AuditQuery {
        project: Some("app".into()),
        since_ms: 0,
        limit: 0,
    };
    let values = || {
        vec![NamedValue {
            name: "A".into(),
            value: SecretValue::from("v"),
        }]
    };
    let app = || ProjectName { name: "app".into() };
    match kind {
        RequestKind::Hello => Request::Hello(Hello {
            version: 1,
            client: "t".into(),
        }),
        RequestKind::Get => Request::Get(Get { name: "A".into() }),
        RequestKind::List => Request::List,
        RequestKind::Set => Request::Set(Set {
            name: "A".into(),
            value: SecretValue::from("v"),
        }),
        RequestKind::Delete => Request::Delete(Delete { name: "A".into() }),
        RequestKind::GetAll => Request::GetAll,
        RequestKind::CreateProject => Request::CreateProject(app()),
        RequestKind::DeleteProject => Request::DeleteProject(app()),
        RequestKind::ListProjects => Request::ListProjects,
        RequestKind::Status => Request::Status,
        RequestKind::Subscribe => Request::Subscribe,
        RequestKind::Audit => Request::Audit(query()),
        RequestKind::SetMany => Request::SetMany(values()),
        RequestKind::ListHosts => Request::ListHosts,
        RequestKind::AddHost => Request::AddHost(host()),
        RequestKind::RemoveHost => Request::RemoveHost(host()),
        RequestKind::AuditLog => Request::AuditLog(query()),
        RequestKind::Health => Request::Health,
        RequestKind::RestoreVault => Request::RestoreVault,
        RequestKind::Fleet => Request::Fleet,
        RequestKind::History => Request::History(SecretName { name: "A".into() }),
        RequestKind::Rollback => Request::Rollback(Rollback {
            name: "A".into(),
            to: None,
        }),
        RequestKind::Diff => Request::Diff(values()),
        RequestKind::ListDigests => Request::ListDigests,
        RequestKind::Metrics => Request::Metrics,
        RequestKind::HostsHead => Request::HostsHead,
        RequestKind::PublishHosts => Request::PublishHosts(SignedHosts::default()),
        RequestKind::ResumeRemoval => Request::ResumeRemoval,
        RequestKind::RekeyProject => Request::RekeyProject(app()),
        RequestKind::PrepareHostKey => Request::PrepareHostKey,
        RequestKind::Write => Request::Write(Set {
            name: "A".into(),
            value: SecretValue::from("v"),
        }),
        RequestKind::WriteMany => Request::WriteMany(values()),
        RequestKind::AuditTrail => Request::AuditTrail(AuditTrailQuery {
            project: Some("app".into()),
            since_ms: 0,
            limit: 0,
            unit: None,
        }),
    }
}

/// One request of every kind, in protocol order.
pub fn all() -> Vec<Request> {
    RequestKind::ALL.iter().map(|k| sample(*k)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_is_of_its_kind() {
        for kind in RequestKind::ALL {
            assert_eq!(sample(kind).kind(), kind);
            assert_eq!(
                kind.index(),
                RequestKind::ALL.iter().position(|k| *k == kind).unwrap()
            );
        }
    }
}
