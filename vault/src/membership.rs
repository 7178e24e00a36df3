//! Fleet membership: the signed envelopes fleet mode writes to etcd, the
//! host list, and the operator key that alone may change the host list
//! (`docs/FLEET.md`, "How it is trusted"). Shared by `fluxd`, which checks
//! and writes them, and `fluxctl`, which signs host lists with the operator
//! key so that the key never reaches a daemon.
//!
//! An envelope is JSON:
//!
//! ```json
//! {"fleet":"fleet:…","kind":"vault","key":"/flux/v3/fleet/vaults/app",
//!  "version":42,"epoch":3,"signer":"age1…","payload":"<base64>","sig":"<base64>"}
//! ```
//!
//! and its Ed25519 signature covers, in this order,
//!
//! ```text
//! "flux-secrets/fleet-envelope/v2" 0x00 fleet 0x00 kind 0x00 key 0x00
//! version (8 bytes, big-endian) epoch (8 bytes, big-endian) SHA-256(payload)
//! ```
//!
//! so it is bound to one fleet (an envelope of another fleet does not
//! verify as this one's), to its kind, to the etcd key it was written under
//! and to its version. `epoch` is a host list version: for a wrapped
//! project key, the list under which that project key was generated (a
//! removal re-keys every project whose key is older than the removal); for
//! everything else, the list its signer held.
//!
//! Host lists (`kind` `hosts`) are signed by the **operator key** — an
//! Ed25519 key kept by the operator, never by a host — with `signer`
//! [`OPERATOR`]. The fleet id is `fleet:<operator public key, base64url>`.
//! Each list names the SHA-256 of the envelope of the version before it,
//! so two lists cannot share a version without one of them failing to
//! follow the chain every host holds.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use zeroize::Zeroizing;

/// Domain of every envelope signature.
const DOMAIN: &[u8] = b"flux-secrets/fleet-envelope/v2";
/// The `signer` of what the operator key signs.
pub const OPERATOR: &str = "operator";
/// Prefix of a fleet id.
pub const FLEET_ID_PREFIX: &str = "fleet:";
/// Where fleet mode keeps everything in etcd.
pub const ROOT: &str = "/flux/v3/";
/// What every host watches.
pub const FLEET: &str = "/flux/v3/fleet/";
/// The host lists, one key per version.
pub const HOSTS: &str = "/flux/v3/fleet/hosts/";
/// The fleet id's key.
pub const ID: &str = "/flux/v3/fleet/id";
/// First line of an operator key file.
const OPERATOR_KEY_HEADER: &str = "FLUX-OPERATOR-KEY-1";

/// The etcd key of host list `version`.
pub fn hosts_key(version: u64) -> String {
    format!("{HOSTS}{version:020}")
}

/// What an envelope holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The fleet's id (payload: the id text), signed by the operator.
    Fleet,
    /// The host list (payload: a [`HostsDoc`]), signed by the operator.
    Hosts,
    /// A project's sealed vault (payload: the age file).
    Vault,
    /// A project key wrapped for one host (payload: the age file).
    Key,
    /// A project's deletion (payload: empty).
    Deleted,
}

impl Kind {
    /// The kind's name, as signed.
    pub fn name(self) -> &'static str {
        match self {
            Self::Fleet => "fleet",
            Self::Hosts => "hosts",
            Self::Vault => "vault",
            Self::Key => "key",
            Self::Deleted => "deleted",
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    fleet: String,
    kind: Kind,
    key: String,
    version: u64,
    epoch: u64,
    signer: String,
    payload: String,
    sig: String,
}

/// An envelope read from etcd, its signature not yet checked.
#[derive(Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The fleet id it was signed for.
    pub fleet: String,
    pub kind: Kind,
    pub key: String,
    pub version: u64,
    pub epoch: u64,
    /// The recipient of the host that signed it, or [`OPERATOR`].
    pub signer: String,
    pub payload: Vec<u8>,
    sig: Vec<u8>,
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envelope")
            .field("kind", &self.kind)
            .field("key", &self.key)
            .field("version", &self.version)
            .field("epoch", &self.epoch)
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

/// What one envelope says, before signing.
#[derive(Debug, Clone, Copy)]
pub struct Header<'a> {
    pub fleet: &'a str,
    pub kind: Kind,
    pub key: &'a str,
    pub version: u64,
    pub epoch: u64,
}

fn signed_bytes(h: &Header<'_>, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(192);
    m.extend_from_slice(DOMAIN);
    for part in [h.fleet, h.kind.name(), h.key] {
        m.push(0);
        m.extend_from_slice(part.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&h.version.to_be_bytes());
    m.extend_from_slice(&h.epoch.to_be_bytes());
    m.extend_from_slice(&Sha256::digest(payload));
    m
}

/// Signs `payload` as `header` says, by `signer` (a host's recipient or
/// [`OPERATOR`]) with `key`: the bytes to put in etcd.
pub fn seal(header: Header<'_>, payload: &[u8], signer: &str, key: &SigningKey) -> Vec<u8> {
    let sig = key.sign(&signed_bytes(&header, payload));
    let wire = Wire {
        fleet: header.fleet.to_owned(),
        kind: header.kind,
        key: header.key.to_owned(),
        version: header.version,
        epoch: header.epoch,
        signer: signer.to_owned(),
        payload: B64.encode(payload),
        sig: B64.encode(sig.to_bytes()),
    };
    serde_json::to_vec(&wire).expect("JSON of strings and numbers")
}

impl Envelope {
    /// Parses what etcd holds at `key`, expecting `kind`: an envelope
    /// written for another key or kind is refused here.
    pub fn parse(bytes: &[u8], kind: Kind, key: &str) -> Result<Self, String> {
        let wire: Wire =
            serde_json::from_slice(bytes).map_err(|_| "not a signed envelope".to_owned())?;
        if wire.kind != kind {
            return Err(format!(
                "a {} envelope where a {} one belongs",
                wire.kind.name(),
                kind.name()
            ));
        }
        if wire.key != key {
            return Err(format!(
                "an envelope signed for {} put under {key}",
                wire.key
            ));
        }
        let payload = B64
            .decode(&wire.payload)
            .map_err(|_| "the payload is not base64".to_owned())?;
        let sig = B64
            .decode(&wire.sig)
            .map_err(|_| "the signature is not base64".to_owned())?;
        Ok(Self {
            fleet: wire.fleet,
            kind,
            key: wire.key,
            version: wire.version,
            epoch: wire.epoch,
            signer: wire.signer,
            payload,
            sig,
        })
    }

    /// The version an envelope claims, read before its key is known (a
    /// host list's key is its version).
    pub fn peek_version(bytes: &[u8]) -> Result<u64, String> {
        let wire: Wire =
            serde_json::from_slice(bytes).map_err(|_| "not a signed envelope".to_owned())?;
        Ok(wire.version)
    }

    /// True when `by` signed exactly this envelope.
    pub fn signed_by(&self, by: &VerifyingKey) -> bool {
        let Ok(sig) = Signature::from_slice(&self.sig) else {
            return false;
        };
        let header = Header {
            fleet: &self.fleet,
            kind: self.kind,
            key: &self.key,
            version: self.version,
            epoch: self.epoch,
        };
        by.verify(&signed_bytes(&header, &self.payload), &sig)
            .is_ok()
    }
}

/// A host of the fleet as the host list records it: its recipient (for
/// wrapping) and its signing key (for checking what it writes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// `age1…`.
    pub recipient: String,
    /// The Ed25519 public key, base64url.
    pub signing_key: String,
}

impl HostRecord {
    /// The signing key, checked.
    pub fn verifying_key(&self) -> Result<VerifyingKey, String> {
        verifying_key(&self.signing_key)
    }

    /// `<recipient>:<signing key>`.
    pub fn join_token(&self) -> String {
        format!("{}:{}", self.recipient, self.signing_key)
    }

    /// Parses a join token, checking both halves.
    pub fn parse_join_token(token: &str) -> Result<Self, String> {
        let token = token.trim();
        let Some((recipient, key)) = token.split_once(':') else {
            return Err(format!(
                "{token:?} is not a join token: pass the whole `age1…:…` line `fluxctl hosts list` shows on the new host (its recipient alone is not enough: the signing key after the colon is what proves the host)"
            ));
        };
        if !recipient.starts_with("age1") || recipient.len() < 10 {
            return Err(format!(
                "{recipient:?} is not an age X25519 recipient (age1…)"
            ));
        }
        verifying_key(key)?;
        Ok(Self {
            recipient: recipient.to_owned(),
            signing_key: key.to_owned(),
        })
    }
}

/// One version of the fleet's host list: the payload of a `hosts`
/// envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostsDoc {
    /// The fleet id (as in the envelope).
    pub fleet: String,
    /// Its version (as in the envelope).
    pub version: u64,
    /// SHA-256 (hex) of the envelope of version − 1; empty for version 1.
    pub previous: String,
    /// The hosts, in order.
    pub hosts: Vec<HostRecord>,
    /// Recipients this version removes: the removal's signed intent. A
    /// host re-keys every project whose key is older than this version.
    #[serde(default)]
    pub removed: Vec<String>,
    /// Projects served by some of the hosts only: project → the hosts
    /// serving it, as positions in `hosts` (a few bytes each, so that a
    /// list naming thousands of projects stays small). A project not named
    /// here is served by every listed host. A host holds nothing of a
    /// project it does not serve: no key is wrapped for it, and it keeps no
    /// vault of it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub assigned: BTreeMap<String, Vec<u32>>,
    /// The oldest version kept (0: every version): the versions before it
    /// are retired — deleted from etcd and from every host's copy — and a
    /// host that missed them (offline, or joining) takes a list naming it
    /// as its new starting point. [`Self::next`] keeps the newest
    /// [`KEPT_VERSIONS`].
    #[serde(default, skip_serializing_if = "is_zero")]
    pub oldest: u64,
    /// Sets reach a project's other hosts as notices (a small key per host
    /// under that host's own prefix, written in the set's transaction),
    /// not as the vault's watch event every host receives: on from the
    /// first version that assigns a project ([`Self::assign`]), and kept
    /// on by every later version ([`Self::next`]), so that a host never
    /// waits for notices no writer sends.
    #[serde(default, skip_serializing_if = "is_false")]
    pub notices: bool,
}

/// Host list versions kept in etcd and on every host: the history is
/// bounded, not one whole copy per version forever.
pub const KEPT_VERSIONS: u64 = 16;

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

impl HostsDoc {
    /// Version 1 of `fleet`'s host list: `hosts`, nothing removed or
    /// assigned — what founding a fleet signs.
    pub fn first(fleet: String, hosts: Vec<HostRecord>) -> Self {
        Self {
            fleet,
            version: 1,
            previous: String::new(),
            hosts,
            removed: Vec::new(),
            assigned: BTreeMap::new(),
            oldest: 0,
            notices: false,
        }
    }

    /// True when the host is listed.
    pub fn contains(&self, recipient: &str) -> bool {
        self.hosts.iter().any(|h| h.recipient == recipient)
    }

    /// The signing key of the host with this recipient.
    pub fn key_of(&self, recipient: &str) -> Option<VerifyingKey> {
        self.hosts
            .iter()
            .find(|h| h.recipient == recipient)
            .and_then(|h| h.verifying_key().ok())
    }

    /// The assignments by recipient (positions that name no host are left
    /// out: [`Self::check`] refuses them).
    pub fn assignments(&self) -> BTreeMap<String, Vec<String>> {
        self.assigned
            .iter()
            .map(|(project, on)| {
                let on = on
                    .iter()
                    .filter_map(|&i| self.hosts.get(i as usize))
                    .map(|h| h.recipient.clone())
                    .collect();
                (project.clone(), on)
            })
            .collect()
    }

    /// Assigns `project` to the listed hosts `recipients`.
    pub fn assign(&mut self, project: &str, recipients: &[String]) -> Result<(), String> {
        let on = recipients
            .iter()
            .map(|r| {
                self.hosts
                    .iter()
                    .position(|h| h.recipient == *r)
                    .and_then(|i| u32::try_from(i).ok())
                    .ok_or_else(|| format!("{r} is not in the host list"))
            })
            .collect::<Result<Vec<u32>, String>>()?;
        self.assigned.insert(project.to_owned(), on);
        self.notices = true;
        Ok(())
    }

    /// True when `recipient` serves `project` under this list: it is
    /// listed, and the project is assigned to it or to no host in
    /// particular.
    pub fn serves(&self, recipient: &str, project: &str) -> bool {
        let Some(i) = self.hosts.iter().position(|h| h.recipient == recipient) else {
            return false;
        };
        self.assigned
            .get(project)
            .is_none_or(|on| on.iter().any(|&j| j as usize == i))
    }

    /// The version after this one, as `hosts` with `removed` gone (and
    /// gone from every assignment, whose positions follow `hosts`). Fails
    /// past the last version (checked arithmetic).
    pub fn next(
        &self,
        this_envelope: &[u8],
        hosts: Vec<HostRecord>,
        removed: Vec<String>,
    ) -> Result<Self, String> {
        let assigned = self
            .assignments()
            .into_iter()
            .map(|(project, on)| {
                let on = on
                    .iter()
                    .filter_map(|r| hosts.iter().position(|h| h.recipient == *r))
                    .filter_map(|i| u32::try_from(i).ok())
                    .collect();
                (project, on)
            })
            .collect();
        let version = self
            .version
            .checked_add(1)
            .ok_or("the host list has no version after this one")?;
        let oldest = if version > KEPT_VERSIONS {
            version - KEPT_VERSIONS + 1
        } else {
            0
        };
        Ok(Self {
            fleet: self.fleet.clone(),
            version,
            previous: digest_hex(this_envelope),
            hosts,
            removed,
            assigned,
            oldest,
            notices: self.notices || !self.assigned.is_empty(),
        })
    }

    /// Checks what the operator is about to sign: every assigned host is
    /// listed, once, and every assigned project keeps at least one host (a
    /// project no host serves would be dropped by all of them).
    pub fn check(&self) -> Result<(), String> {
        for (project, on) in &self.assigned {
            if on.is_empty() {
                return Err(format!(
                    "project {project} would be served by no host: assign it to another host first (`fluxctl hosts assign {project} HOST…`)"
                ));
            }
            for (k, &i) in on.iter().enumerate() {
                if i as usize >= self.hosts.len() {
                    return Err(format!(
                        "project {project} is assigned to host {i}, which is not in the host list"
                    ));
                }
                if on[..k].contains(&i) {
                    return Err(format!(
                        "project {project} names {} twice",
                        self.hosts[i as usize].recipient
                    ));
                }
            }
        }
        Ok(())
    }
}

/// [`HostsDoc::serves`], for a host list's hosts and its assignments by
/// recipient ([`HostsDoc::assignments`]).
pub fn serves(
    hosts: &[HostRecord],
    assigned: &BTreeMap<String, Vec<String>>,
    recipient: &str,
    project: &str,
) -> bool {
    hosts.iter().any(|h| h.recipient == recipient)
        && assigned
            .get(project)
            .is_none_or(|on| on.iter().any(|r| r == recipient))
}

/// SHA-256 of `bytes`, lowercase hex: how a host list names the one
/// before it.
pub fn digest_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Parses a base64url Ed25519 public key.
pub fn verifying_key(text: &str) -> Result<VerifyingKey, String> {
    let bytes = B64URL
        .decode(text.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| {
            format!(
                "{:?} is not an Ed25519 public key (43 base64url characters)",
                text.trim()
            )
        })?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|_| format!("{:?} is not an Ed25519 public key", text.trim()))
}

/// A public key as the host list and envelopes write it.
pub fn key_text(key: &VerifyingKey) -> String {
    B64URL.encode(key.as_bytes())
}

/// The fleet id of the fleet whose operator key is `key`.
pub fn fleet_id(key: &VerifyingKey) -> String {
    format!("{FLEET_ID_PREFIX}{}", key_text(key))
}

/// The operator key a fleet id names.
pub fn parse_fleet_id(text: &str) -> Result<VerifyingKey, String> {
    let key = text.trim().strip_prefix(FLEET_ID_PREFIX).ok_or_else(|| {
        format!(
            "{:?} is not a fleet id (fleet:…, as `fluxctl hosts list` shows it on a host of the fleet)",
            text.trim()
        )
    })?;
    verifying_key(key).map_err(|e| format!("fleet id: {e}"))
}

/// The fleet's operator key: the one key that signs host lists. It lives
/// with the operator (a file, mode 0600; `fluxctl fleet init` creates it),
/// never on a host's disk.
pub struct OperatorKey {
    signing: SigningKey,
}

impl std::fmt::Debug for OperatorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorKey")
            .field("fleet", &self.fleet_id())
            .finish_non_exhaustive()
    }
}

impl OperatorKey {
    /// A new random operator key.
    pub fn generate() -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).expect("the operating system's random numbers");
        Self {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// The file's text: a header line, comments, the key.
    pub fn to_file_contents(&self, created: &str) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "# Flux Secrets fleet operator key: it alone signs the fleet's host list.\n# Keep it off the fleet's hosts. created: {created}\n# fleet: {}\n{OPERATOR_KEY_HEADER}:{}\n",
            self.fleet_id(),
            Zeroizing::new(B64URL.encode(self.signing.to_bytes())).as_str()
        ))
    }

    /// Parses an operator key file's text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .ok_or("the file holds no operator key")?;
        let encoded = line
            .strip_prefix(OPERATOR_KEY_HEADER)
            .and_then(|r| r.strip_prefix(':'))
            .ok_or(
                "not an operator key (a line FLUX-OPERATOR-KEY-1:… as `fluxctl fleet init` writes it)",
            )?;
        let bytes = Zeroizing::new(
            B64URL
                .decode(encoded)
                .map_err(|_| "the operator key is not base64url")?,
        );
        let seed: &[u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| "the operator key is not 32 bytes")?;
        Ok(Self {
            signing: SigningKey::from_bytes(seed),
        })
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// The fleet id this key roots.
    pub fn fleet_id(&self) -> String {
        fleet_id(&self.verifying_key())
    }

    /// The signed fleet id envelope (`/flux/v3/fleet/id`).
    pub fn sign_id(&self) -> Vec<u8> {
        let fleet = self.fleet_id();
        let header = Header {
            fleet: &fleet,
            kind: Kind::Fleet,
            key: ID,
            version: 1,
            epoch: 0,
        };
        seal(header, fleet.as_bytes(), OPERATOR, &self.signing)
    }

    /// The signed envelope of host list `doc`.
    pub fn sign_hosts(&self, doc: &HostsDoc) -> Vec<u8> {
        let key = hosts_key(doc.version);
        let payload = serde_json::to_vec(doc).expect("JSON of strings and numbers");
        let header = Header {
            fleet: &doc.fleet,
            kind: Kind::Hosts,
            key: &key,
            version: doc.version,
            epoch: doc.version,
        };
        seal(header, &payload, OPERATOR, &self.signing)
    }
}

/// Checks that `raw` is host list `version` of the fleet rooted at
/// `operator`: signed by it, for its fleet, and the document agreeing with
/// its envelope. Whether it follows the version held is the caller's.
pub fn open_hosts(raw: &[u8], version: u64, operator: &VerifyingKey) -> Result<HostsDoc, String> {
    let env = Envelope::parse(raw, Kind::Hosts, &hosts_key(version))?;
    let fleet = fleet_id(operator);
    if env.signer != OPERATOR || !env.signed_by(operator) {
        return Err(format!(
            "host list version {version} is not signed by the fleet's operator key (signer {:?}): only the operator changes the host list",
            env.signer
        ));
    }
    if env.fleet != fleet {
        return Err(format!(
            "host list version {version} belongs to fleet {}",
            env.fleet
        ));
    }
    let doc: HostsDoc = serde_json::from_slice(&env.payload)
        .map_err(|_| "the host list is not a list of hosts".to_owned())?;
    if doc.fleet != fleet || doc.version != version || env.epoch != version {
        return Err(format!(
            "host list version {version} does not agree with its envelope"
        ));
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostRecord {
        HostRecord {
            recipient: "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq".into(),
            signing_key: key_text(&OperatorKey::generate().verifying_key()),
        }
    }

    #[test]
    fn an_envelope_verifies_only_as_it_was_signed_and_for_its_fleet() {
        let op = OperatorKey::generate();
        let fleet = op.fleet_id();
        let header = Header {
            fleet: &fleet,
            kind: Kind::Vault,
            key: "/flux/v3/fleet/vaults/app",
            version: 7,
            epoch: 2,
        };
        let bytes = seal(header, b"ciphertext", "age1x", &op.signing);
        let env = Envelope::parse(&bytes, Kind::Vault, header.key).unwrap();
        assert_eq!((env.version, env.epoch), (7, 2));
        assert!(env.signed_by(&op.verifying_key()));
        assert!(!env.signed_by(&OperatorKey::generate().verifying_key()));
        assert!(Envelope::parse(&bytes, Kind::Vault, "/flux/v3/fleet/vaults/other").is_err());
        assert!(Envelope::parse(&bytes, Kind::Key, header.key).is_err());
        // Moved to another fleet, or a changed version or epoch: the
        // signature no longer holds.
        for (field, value) in [
            ("fleet", serde_json::Value::from("fleet:other")),
            ("version", 8.into()),
            ("epoch", 3.into()),
        ] {
            let mut wire: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            wire[field] = value;
            let changed =
                Envelope::parse(&serde_json::to_vec(&wire).unwrap(), Kind::Vault, header.key)
                    .unwrap();
            assert!(!changed.signed_by(&op.verifying_key()), "{field}");
        }
    }

    #[test]
    fn host_lists_open_only_under_the_operator_key_and_name_their_predecessor() {
        let op = OperatorKey::generate();
        let v1 = HostsDoc::first(op.fleet_id(), vec![host()]);
        let raw1 = op.sign_hosts(&v1);
        assert_eq!(open_hosts(&raw1, 1, &op.verifying_key()).unwrap(), v1);
        let other = OperatorKey::generate();
        let err = open_hosts(&raw1, 1, &other.verifying_key()).unwrap_err();
        assert!(
            err.contains("not signed by the fleet's operator key"),
            "{err}"
        );
        let v2 = v1
            .next(&raw1, vec![], vec![v1.hosts[0].recipient.clone()])
            .unwrap();
        assert_eq!((v2.version, v2.previous.len()), (2, 64));
        assert_eq!(v2.previous, digest_hex(&raw1));
        let last = HostsDoc {
            version: u64::MAX,
            ..v1.clone()
        };
        assert!(last.next(&raw1, vec![], vec![]).is_err());
    }

    #[test]
    fn assignments_say_who_serves_a_project_and_follow_removals() {
        let op = OperatorKey::generate();
        let (a, b) = (
            host(),
            HostRecord {
                recipient: "age1b".into(),
                ..host()
            },
        );
        let mut doc = HostsDoc::first(op.fleet_id(), vec![a.clone(), b.clone()]);
        // Without assignments the document is what it always was.
        let plain = String::from_utf8(serde_json::to_vec(&doc).unwrap()).unwrap();
        assert!(
            !plain.contains("assigned") && !plain.contains("notices"),
            "{plain}"
        );
        assert!(doc.serves(&a.recipient, "api") && doc.serves("age1b", "api"));
        assert!(!doc.serves("age1stranger", "api"));
        assert!(!doc.notices);
        doc.assign("api", &["age1b".into()]).unwrap();
        doc.check().unwrap();
        // The first assignment turns notices on, and every later version
        // keeps them, even one that assigns nothing any more.
        assert!(doc.notices);
        let mut unassigned = doc.clone();
        unassigned.assigned.clear();
        let after = unassigned
            .next(&op.sign_hosts(&unassigned), doc.hosts.clone(), vec![])
            .unwrap();
        assert!(after.assigned.is_empty() && after.notices);
        assert!(!doc.serves(&a.recipient, "api") && doc.serves("age1b", "api"));
        assert!(doc.serves(&a.recipient, "web"));
        assert!(doc.assign("web", &["age1gone".into()]).is_err());
        let raw = op.sign_hosts(&doc);
        assert_eq!(open_hosts(&raw, 1, &op.verifying_key()).unwrap(), doc);
        // Positions follow the hosts from one version to the next.
        let next = doc.next(&raw, vec![b.clone(), a.clone()], vec![]).unwrap();
        assert_eq!(next.assigned["api"], [0]);
        assert_eq!(next.assignments()["api"], ["age1b"]);
        // Removing api's only host leaves it no host: refused before signing.
        let next = doc
            .next(&raw, vec![a.clone()], vec!["age1b".into()])
            .unwrap();
        assert_eq!(next.assigned["api"], Vec::<u32>::new());
        let err = next.check().unwrap_err();
        assert!(
            err.contains("project api would be served by no host"),
            "{err}"
        );
        let mut bad = doc.clone();
        bad.assigned.insert("web".into(), vec![7]);
        assert!(bad.check().unwrap_err().contains("not in the host list"));
        bad.assigned.insert("web".into(), vec![1, 1]);
        assert!(bad.check().unwrap_err().contains("twice"));
    }

    #[test]
    fn the_newest_versions_are_kept_and_the_older_retired() {
        let op = OperatorKey::generate();
        let mut doc = HostsDoc::first(op.fleet_id(), vec![host()]);
        let mut raw = op.sign_hosts(&doc);
        assert!(!String::from_utf8_lossy(&raw).contains("oldest"));
        for _ in 1..KEPT_VERSIONS {
            doc = doc.next(&raw, doc.hosts.clone(), vec![]).unwrap();
            raw = op.sign_hosts(&doc);
            assert_eq!(doc.oldest, 0, "version {}", doc.version);
        }
        doc = doc.next(&raw, doc.hosts.clone(), vec![]).unwrap();
        assert_eq!((doc.version, doc.oldest), (KEPT_VERSIONS + 1, 2));
        let raw = op.sign_hosts(&doc);
        assert_eq!(
            open_hosts(&raw, doc.version, &op.verifying_key()).unwrap(),
            doc
        );
    }

    #[test]
    fn operator_keys_round_trip_through_their_file() {
        let op = OperatorKey::generate();
        let text = op.to_file_contents("2026-12-07T00:00:00Z");
        assert!(text.contains(&op.fleet_id()));
        let back = OperatorKey::parse(&text).unwrap();
        assert_eq!(back.fleet_id(), op.fleet_id());
        assert!(OperatorKey::parse("AGE-SECRET-KEY-1XYZ").is_err());
        assert_eq!(parse_fleet_id(&op.fleet_id()).unwrap(), op.verifying_key());
        assert!(parse_fleet_id("nonsense").is_err());
        let token = host().join_token();
        assert_eq!(
            HostRecord::parse_join_token(&token).unwrap(),
            host_from(&token)
        );
        assert!(HostRecord::parse_join_token("age1only").is_err());
    }

    fn host_from(token: &str) -> HostRecord {
        let (r, k) = token.split_once(':').unwrap();
        HostRecord {
            recipient: r.into(),
            signing_key: k.into(),
        }
    }
}
