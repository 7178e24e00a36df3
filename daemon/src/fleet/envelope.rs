//! Signed envelopes: every value fleet mode writes to etcd is one, and a
//! host acts on nothing that is not a valid one. The format — bound to the
//! fleet, its kind, its etcd key, its version and its epoch — is
//! [`flux_vault::membership`]'s, shared with `fluxctl`, which signs host
//! lists with the operator key. Who may sign what is [`super::cache`]'s
//! business.

use super::identity::HostIdentity;
use super::layout::FleetKey;
pub use flux_vault::membership::{Envelope, Header, Kind};

/// Parses what etcd holds at `key`, expecting `kind`.
pub fn parse(bytes: &[u8], kind: Kind, key: &FleetKey) -> Result<Envelope, String> {
    Envelope::parse(bytes, kind, &key.to_string())
}

/// What a host signs: `payload` as `kind` under `key`, for `fleet`.
#[derive(Debug, Clone, Copy)]
pub struct Signing<'a> {
    pub fleet: &'a str,
    pub kind: Kind,
    pub version: u64,
    pub epoch: u64,
}

/// Signs `payload` for `key` as the host `by`: the bytes to put.
pub fn seal(s: Signing<'_>, key: &FleetKey, payload: &[u8], by: &HostIdentity) -> Vec<u8> {
    let key = key.to_string();
    let header = Header {
        fleet: s.fleet,
        kind: s.kind,
        key: &key,
        version: s.version,
        epoch: s.epoch,
    };
    flux_vault::membership::seal(header, payload, &by.recipient(), by.signing_key())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_envelope_verifies_under_its_key_only() {
        let host = HostIdentity::generate();
        let key = FleetKey::vault("app");
        let s = Signing {
            fleet: "fleet:x",
            kind: Kind::Vault,
            version: 7,
            epoch: 1,
        };
        let bytes = seal(s, &key, b"ciphertext", &host);
        let env = parse(&bytes, Kind::Vault, &key).unwrap();
        assert_eq!(
            (env.version, env.payload.as_slice()),
            (7, &b"ciphertext"[..])
        );
        assert_eq!(env.signer, host.recipient());
        assert!(env.signed_by(&host.signing_key().verifying_key()));
        assert!(!env.signed_by(&HostIdentity::generate().signing_key().verifying_key()));
        assert!(parse(&bytes, Kind::Vault, &FleetKey::vault("other")).is_err());
    }
}
