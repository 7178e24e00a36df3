//! etcd's JSON gateway's spelling: keys and values in base64, 64-bit
//! numbers as strings, a key-value pair ([`Kv`], an oversize value as
//! [`CapRead`](super::cap_read::CapRead) marked it), and the operations
//! and compares of a transaction.

use super::cap_read::OVERSIZE;
use crate::fleet::kv::{Compare, Kv, Op};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

/// etcd's 64-bit numbers arrive as JSON strings (or are left out when 0).
pub fn num(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

pub(super) fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

pub(super) fn unb64(v: &Value) -> Vec<u8> {
    v.as_str()
        .and_then(|s| B64.decode(s).ok())
        .unwrap_or_default()
}

pub(super) fn kv(v: &Value) -> Kv {
    let oversize = v["value"]
        .as_str()
        .and_then(|s| s.strip_prefix(OVERSIZE))
        .map(|len| len.parse::<u64>().unwrap_or(u64::MAX) / 4 * 3);
    Kv {
        key: String::from_utf8_lossy(&unb64(&v["key"])).into_owned(),
        value: if oversize.is_some() {
            Vec::new()
        } else {
            unb64(&v["value"])
        },
        mod_revision: num(&v["mod_revision"]),
        oversize,
    }
}

/// An operation as etcd's JSON gateway spells it.
pub(super) fn op_json(op: &Op) -> Value {
    match op {
        Op::Put { key, value } => {
            json!({"request_put": {"key": b64(key.as_bytes()), "value": b64(value)}})
        }
        Op::Delete { key } => json!({"request_delete_range": {"key": b64(key.as_bytes())}}),
        Op::DeleteRange { start, end } => {
            json!({"request_delete_range": {"key": b64(start.as_bytes()), "range_end": b64(end)}})
        }
    }
}

/// A compare of a key's mod_revision, as etcd's JSON gateway spells it.
pub(super) fn compare_json(c: &Compare) -> Value {
    json!({"key": b64(c.key.as_bytes()), "target": "MOD", "result": "EQUAL", "mod_revision": c.mod_revision.to_string()})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::kv::prefix_end;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end("/flux/v1/"), b"/flux/v10".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), vec![b'a', 0x80]);
        assert_eq!(num(&json!("42")), 42);
        assert_eq!(num(&Value::Null), 0);
    }
}
