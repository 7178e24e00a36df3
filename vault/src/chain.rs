//! The audit log's chain: every line ends with a MAC over its own bytes and
//! the MAC of the line before it, keyed with the audit key (32 random
//! bytes, `<state>/audit.key`, or the `fluxd-audit-key` systemd
//! credential), so a line removed, changed, reordered or inserted breaks
//! the chain at that line. Shared by fluxd, which writes it, and `fluxctl
//! audit verify`, which checks it.
//!
//! A chained line is the JSON object of the entry with one member added
//! last: `{…,"mac":"<64 hex digits>"}`, where
//!
//! ```text
//! mac = HMAC-SHA256(audit key, previous mac (32 bytes) || the line's bytes
//!                   up to and without `,"mac":"…"}`, then `}`)
//! ```
//!
//! The first line ever written follows 32 zero bytes; a new file after a
//! rotation carries the chain on from the last line of the file before.

use crate::error::VaultError;
use crate::hex;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// The member every chained line ends with.
const MAC_MEMBER: &[u8] = b",\"mac\":\"";
/// Bytes of an audit key.
pub const KEY_LEN: usize = 32;

/// What a line follows: a MAC, or the start of the chain.
pub type Link = [u8; 32];

/// The link before the first line ever written.
pub const START: Link = [0; 32];

/// An audit key.
pub struct AuditKey(Zeroizing<[u8; KEY_LEN]>);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(…)")
    }
}

impl AuditKey {
    /// A key from its bytes (a key file holds exactly these, or their hex).
    pub fn from_file_bytes(bytes: &[u8]) -> Result<Self, VaultError> {
        let text = std::str::from_utf8(bytes).map(str::trim).unwrap_or("");
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        let from_hex = text.bytes().all(|b| b.is_ascii_hexdigit())
            && hex::decode_into(text, key.as_mut()).is_some();
        if !from_hex {
            let raw: &[u8; KEY_LEN] = bytes.try_into().map_err(|_| {
                VaultError::Key(format!(
                    "an audit key is {KEY_LEN} bytes (or {} hex digits)",
                    2 * KEY_LEN
                ))
            })?;
            key.copy_from_slice(raw);
        }
        Ok(Self(key))
    }

    /// A new random key, as the hex text its file holds.
    pub fn generate_hex() -> Zeroizing<String> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(key.as_mut()).expect("the operating system's random numbers");
        Zeroizing::new(hex::encode(key.as_ref()))
    }

    fn mac(&self, prev: &Link, body: &[u8]) -> Link {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.as_ref()).expect("any key length");
        mac.update(prev);
        mac.update(body);
        mac.finalize().into_bytes().into()
    }

    /// Appends `,"mac":"…"}` to `object` (a JSON object without its
    /// closing brace... given whole, its `}` is replaced), chained after
    /// `prev`; returns the new link.
    pub fn chain(&self, prev: &Link, object: &mut Vec<u8>) -> Link {
        debug_assert_eq!(object.last(), Some(&b'}'));
        let link = self.mac(prev, object);
        object.pop();
        object.extend_from_slice(MAC_MEMBER);
        object.extend_from_slice(hex::encode(&link).as_bytes());
        object.extend_from_slice(b"\"}");
        link
    }

    /// Checks one line (without its newline) against `prev`: its link
    /// when it follows, else why not.
    pub fn check(&self, prev: &Link, line: &[u8]) -> Result<Link, Broken> {
        let (body, mac) = split(line).ok_or(Broken::Unchained)?;
        if self.mac(prev, &body) == mac {
            Ok(mac)
        } else {
            Err(Broken::Mismatch(mac))
        }
    }
}

/// Why a line does not follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Broken {
    /// It carries no MAC (written before chaining, or cut).
    Unchained,
    /// Its MAC is not the one its bytes and the link before give; the MAC
    /// it carries.
    Mismatch(Link),
}

/// The line's MACed bytes and the MAC it carries.
fn split(line: &[u8]) -> Option<(Vec<u8>, Link)> {
    let at = line
        .windows(MAC_MEMBER.len())
        .rposition(|w| w == MAC_MEMBER)?;
    let rest = &line[at + MAC_MEMBER.len()..];
    let hex_mac = rest.strip_suffix(b"\"}")?;
    if hex_mac.len() != 64 {
        return None;
    }
    let text = std::str::from_utf8(hex_mac).ok()?;
    let mut mac = [0u8; 32];
    hex::decode_into(text, &mut mac)?;
    let mut body = line[..at].to_vec();
    body.push(b'}');
    Some((body, mac))
}

/// The MAC a chained line carries, unchecked (to carry a chain on).
pub fn carried(line: &[u8]) -> Option<Link> {
    split(line).map(|(_, mac)| mac)
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Every line follows the one before; `unchained` lines at the start
    /// were written before the log was chained (not covered).
    Whole { lines: usize, unchained: usize },
    /// The first line that does not, counting from 1 across all files in
    /// order, and what most likely happened there.
    Broken {
        file: usize,
        line: usize,
        what: &'static str,
    },
}

/// Checks the lines of `files` (oldest first) as one chain. The first
/// line of the oldest file is taken as given when it does not follow the
/// start (the files before it were rotated away); every later line must
/// follow the one before it.
pub fn verify(key: &AuditKey, files: &[Vec<u8>]) -> Finding {
    let lines: Vec<(usize, usize, &[u8])> = files
        .iter()
        .enumerate()
        .flat_map(|(f, bytes)| {
            bytes
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .enumerate()
                .map(move |(n, l)| (f, n + 1, l))
        })
        .collect();
    let mut prev: Option<Link> = None;
    let mut unchained = 0;
    for (i, &(file, line, bytes)) in lines.iter().enumerate() {
        if prev.is_none() && carried(bytes).is_none() {
            // Before the chain began (a log kept from before chaining).
            unchained += 1;
            continue;
        }
        let result = match prev {
            None => match key.check(&START, bytes) {
                Ok(link) => Ok(link),
                // The oldest line kept: its own MAC must still match its
                // bytes and whatever came before, which is gone — only
                // its form can be checked.
                Err(Broken::Mismatch(mac)) => Ok(mac),
                Err(e) => Err(e),
            },
            Some(p) => key.check(&p, bytes),
        };
        match result {
            Ok(link) => prev = Some(link),
            Err(Broken::Unchained) => {
                return Finding::Broken {
                    file,
                    line,
                    what: "carries no MAC: inserted, cut, or written before the log was chained",
                };
            }
            Err(Broken::Mismatch(_)) => {
                let p = prev.expect("not the first line");
                // Which tampering explains it best: the line follows an
                // earlier one (lines removed before it), the next line
                // follows the one before it (this one inserted), or
                // neither (changed, or lines reordered).
                let earlier = lines[..i.saturating_sub(1)]
                    .iter()
                    .rev()
                    .take(64)
                    .filter_map(|&(_, _, l)| carried(l))
                    .any(|link| key.check(&link, bytes).is_ok())
                    || key.check(&START, bytes).is_ok();
                let inserted = lines
                    .get(i + 1)
                    .is_some_and(|&(_, _, next)| key.check(&p, next).is_ok());
                let what = if inserted {
                    "inserted: the line after it follows the line before it"
                } else if earlier {
                    "follows an earlier line: the lines between were moved or removed"
                } else {
                    "does not follow the line before it: changed, or lines removed just before it"
                };
                return Finding::Broken { file, line, what };
            }
        }
    }
    Finding::Whole {
        lines: lines.len(),
        unchained,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> AuditKey {
        AuditKey::from_file_bytes(AuditKey::generate_hex().as_bytes()).unwrap()
    }

    fn log(key: &AuditKey, n: usize) -> Vec<Vec<u8>> {
        let mut prev = START;
        (0..n)
            .map(|i| {
                let mut line = format!("{{\"op\":\"set\",\"name\":\"N{i}\"}}").into_bytes();
                prev = key.chain(&prev, &mut line);
                line
            })
            .collect()
    }

    fn join(lines: &[Vec<u8>]) -> Vec<u8> {
        lines
            .iter()
            .flat_map(|l| l.iter().copied().chain([b'\n']))
            .collect()
    }

    #[test]
    fn an_audit_key_is_its_bytes_or_their_hex_and_nothing_else() {
        let raw = [0xa5u8; KEY_LEN];
        let link = |k: &AuditKey| k.chain(&START, &mut b"{}".to_vec());
        let from_raw = AuditKey::from_file_bytes(&raw).unwrap();
        let from_hex =
            AuditKey::from_file_bytes(format!("{}\n", "a5".repeat(KEY_LEN)).as_bytes()).unwrap();
        assert!(link(&from_raw) == link(&from_hex), "the same key both ways");
        for bad in [&raw[1..], &[b'a'; 2 * KEY_LEN - 1][..], b""] {
            let err = AuditKey::from_file_bytes(bad).unwrap_err();
            assert_eq!(
                err,
                VaultError::Key("an audit key is 32 bytes (or 64 hex digits)".into())
            );
        }
    }

    #[test]
    fn a_whole_chain_verifies_across_files() {
        let k = key();
        let lines = log(&k, 6);
        let files = [join(&lines[..2]), join(&lines[2..])];
        let whole = |lines, unchained| Finding::Whole { lines, unchained };
        assert_eq!(verify(&k, &files), whole(6, 0));
        // The oldest files rotated away: the rest still verifies.
        assert_eq!(verify(&k, &[join(&lines[3..])]), whole(3, 0));
        // Lines from before chaining, then the chain.
        let mut old = b"{\"op\":\"get\"}\n".to_vec();
        old.extend(join(&lines));
        assert_eq!(verify(&k, &[old]), whole(7, 1));
    }

    #[test]
    fn each_kind_of_tampering_is_found_at_its_line() {
        let k = key();
        let lines = log(&k, 6);
        let at = |f: Finding| match f {
            Finding::Broken { line, what, .. } => (line, what),
            other => panic!("{other:?}"),
        };
        // Removed: line 4 goes, the old line 5 (now 4) follows line 2.
        let mut removed = lines.clone();
        removed.remove(3);
        let (line, what) = at(verify(&k, &[join(&removed)]));
        assert_eq!(line, 4);
        assert!(what.contains("removed"), "{what}");

        // Changed.
        let mut changed = lines.clone();
        changed[2] = String::from_utf8(changed[2].clone())
            .unwrap()
            .replace("N2", "N9")
            .into_bytes();
        let (line, what) = at(verify(&k, &[join(&changed)]));
        assert_eq!(line, 3);
        assert!(what.contains("changed"), "{what}");
        // Swapped: line 3 is now the old line 4, which follows line 3 —
        // not line 2; the old line 3, after it, follows line 2.
        let mut swapped = lines.clone();
        swapped.swap(2, 3);
        assert_eq!(at(verify(&k, &[join(&swapped)])).0, 3);
        // Moved back: the old line 3 again after line 5 follows line 2.
        let mut moved = lines.clone();
        let third = moved.remove(2);
        moved.insert(4, third);
        let (line, what) = at(verify(&k, &[join(&moved)]));
        assert_eq!(line, 3);
        assert!(what.contains("changed") || what.contains("moved"), "{what}");
        // Inserted: a line with a MAC of its own, or none.
        let mut inserted = lines.clone();
        inserted.insert(3, lines[1].clone());
        let (line, what) = at(verify(&k, &[join(&inserted)]));
        assert_eq!(line, 4);
        assert!(what.contains("inserted"), "{what}");
        let mut bare = lines.clone();
        bare.insert(2, b"{\"op\":\"set\"}".to_vec());
        assert_eq!(at(verify(&k, &[join(&bare)])).0, 3);
        // The last line removed cannot be seen from the lines: the log's
        // own last line is compared with what fluxd reports.
        // A wrong key breaks it at once.
        assert_eq!(at(verify(&key(), &[join(&lines)])).0, 2);
    }
}
