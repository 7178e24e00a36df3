//! A small blocking client for etcd's v3 JSON gateway (etcd 3.4 and later
//! serve it under `/v3/` on the client port): range, txn and the streaming
//! watch — all fleet mode needs, with no gRPC code generation.
//!
//! Keys and values are base64 in the JSON and 64-bit numbers are strings;
//! this module hides both. Every call tries the endpoints in turn, starting
//! with the one that answered last, so one dead member of a cluster costs a
//! refused connection, not an outage.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Time to open a TCP connection to one endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Time one unary call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// A watch with no traffic for this long is re-opened (from the last
/// revision seen), so a silently dropped connection is noticed.
pub const WATCH_IDLE: Duration = Duration::from_secs(30);

/// An etcd call that failed. The message names the endpoints and etcd's
/// own reason; never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcdError {
    /// No endpoint answered (each one's reason in the message): an outage.
    #[error("{0}")]
    Unreachable(String),
    /// etcd answered and refused, or answered something unusable.
    #[error("{0}")]
    Failed(String),
}

impl EtcdError {
    /// True when no member could be reached (as opposed to a refusal).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Unreachable(_))
    }
}

/// One key-value pair.
#[derive(Debug, Clone)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    pub mod_revision: i64,
}

/// One watch event.
#[derive(Debug, Clone)]
pub enum WatchEvent {
    Put(Kv),
    Delete { key: String, mod_revision: i64 },
}

/// What one watch message carried.
#[derive(Debug)]
pub enum WatchMessage {
    /// The watch is open; events after `revision` follow.
    Created { revision: i64 },
    /// Events, all of the same revision or ascending.
    Events {
        revision: i64,
        events: Vec<WatchEvent>,
    },
    /// The requested start revision was compacted away: resync.
    Compacted { compact_revision: i64 },
    /// A progress notification or anything else without events.
    Other,
}

/// The etcd client.
#[derive(Debug)]
pub struct Etcd {
    endpoints: Vec<String>,
    agent: ureq::Agent,
    watch_agent: ureq::Agent,
    preferred: AtomicUsize,
}

/// etcd's 64-bit numbers arrive as JSON strings (or are left out when 0).
pub fn num(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

fn unb64(v: &Value) -> Vec<u8> {
    v.as_str()
        .and_then(|s| B64.decode(s).ok())
        .unwrap_or_default()
}

/// The end of the range of keys starting with `prefix`.
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn kv(v: &Value) -> Kv {
    Kv {
        key: String::from_utf8_lossy(&unb64(&v["key"])).into_owned(),
        value: unb64(&v["value"]),
        mod_revision: num(&v["mod_revision"]),
    }
}

/// A put operation, for [`Etcd::txn`].
pub fn op_put(key: &str, value: &[u8]) -> Value {
    json!({"request_put": {"key": b64(key.as_bytes()), "value": b64(value)}})
}

/// A delete of one key.
pub fn op_delete(key: &str) -> Value {
    json!({"request_delete_range": {"key": b64(key.as_bytes())}})
}

/// A delete of every key under `prefix`.
pub fn op_delete_prefix(prefix: &str) -> Value {
    json!({"request_delete_range": {"key": b64(prefix.as_bytes()), "range_end": b64(&prefix_end(prefix))}})
}

/// A read of every key under `prefix`.
pub fn op_range_prefix(prefix: &str) -> Value {
    json!({"request_range": {"key": b64(prefix.as_bytes()), "range_end": b64(&prefix_end(prefix))}})
}

/// Compares a key's mod_revision (0: the key does not exist).
pub fn cmp_mod(key: &str, revision: i64) -> Value {
    json!({"key": b64(key.as_bytes()), "target": "MOD", "result": "EQUAL", "mod_revision": revision.to_string()})
}

/// The key-value pairs in a txn's `request_range` response.
pub fn range_kvs(response: &Value) -> Vec<Kv> {
    response["response_range"]["kvs"]
        .as_array()
        .map(|a| a.iter().map(kv).collect())
        .unwrap_or_default()
}

impl Etcd {
    /// A client for `endpoints` (`http://host:port`).
    pub fn new(endpoints: Vec<String>) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .build();
        let watch_agent = ureq::AgentBuilder::new()
            .timeout_connect(CONNECT_TIMEOUT)
            .timeout_read(WATCH_IDLE)
            .timeout_write(CALL_TIMEOUT)
            .build();
        Self {
            endpoints,
            agent,
            watch_agent,
            preferred: AtomicUsize::new(0),
        }
    }

    /// The endpoints, comma-separated, for messages.
    pub fn endpoints(&self) -> String {
        self.endpoints.join(",")
    }

    /// POSTs `body` to `path` on the first endpoint that answers.
    fn post(
        &self,
        agent: &ureq::Agent,
        path: &str,
        body: &Value,
    ) -> Result<ureq::Response, EtcdError> {
        let text = body.to_string();
        let start = self.preferred.load(Ordering::Relaxed);
        let mut reasons = Vec::new();
        for i in 0..self.endpoints.len() {
            let n = (start + i) % self.endpoints.len();
            let url = format!("{}{path}", self.endpoints[n].trim_end_matches('/'));
            match agent
                .post(&url)
                .set("Content-Type", "application/json")
                .send_string(&text)
            {
                Ok(resp) => {
                    self.preferred.store(n, Ordering::Relaxed);
                    return Ok(resp);
                }
                Err(ureq::Error::Status(code, resp)) => {
                    let detail = resp.into_string().unwrap_or_default();
                    let message = serde_json::from_str::<Value>(&detail)
                        .ok()
                        .and_then(|v| {
                            [&v["message"], &v["error"]]
                                .into_iter()
                                .filter_map(Value::as_str)
                                .find(|s| !s.is_empty())
                                .map(str::to_owned)
                        })
                        .unwrap_or(detail);
                    // A request etcd refuses is refused by every member.
                    if (400..500).contains(&code) {
                        return Err(EtcdError::Failed(format!(
                            "etcd at {} refused the request: {}",
                            self.endpoints[n],
                            message.trim()
                        )));
                    }
                    reasons.push(format!(
                        "{}: HTTP {code} {}",
                        self.endpoints[n],
                        message.trim()
                    ));
                }
                Err(ureq::Error::Transport(t)) => {
                    reasons.push(format!("{}: {}", self.endpoints[n], t.kind()));
                }
            }
        }
        Err(EtcdError::Unreachable(format!(
            "etcd is unreachable at {} ({})",
            self.endpoints(),
            reasons.join("; ")
        )))
    }

    fn call(&self, path: &str, body: &Value) -> Result<Value, EtcdError> {
        let resp = self.post(&self.agent, path, body)?;
        serde_json::from_reader(resp.into_reader().take(256 * 1024 * 1024)).map_err(|e| {
            EtcdError::Failed(format!(
                "etcd at {} answered with bad JSON: {e}",
                self.endpoints()
            ))
        })
    }

    /// Every key under `prefix`, and the store's revision at that moment.
    pub fn range_prefix(&self, prefix: &str) -> Result<(i64, Vec<Kv>), EtcdError> {
        let body = json!({"key": b64(prefix.as_bytes()), "range_end": b64(&prefix_end(prefix))});
        let v = self.call("/v3/kv/range", &body)?;
        let kvs = v["kvs"]
            .as_array()
            .map(|a| a.iter().map(kv).collect())
            .unwrap_or_default();
        Ok((num(&v["header"]["revision"]), kvs))
    }

    /// A transaction: `success` runs when every `compare` holds, else
    /// `failure`. Returns whether it succeeded, the revision after it, and
    /// the responses of the branch that ran.
    pub fn txn(
        &self,
        compare: Vec<Value>,
        success: Vec<Value>,
        failure: Vec<Value>,
    ) -> Result<(bool, i64, Vec<Value>), EtcdError> {
        let body = json!({"compare": compare, "success": success, "failure": failure});
        let v = self.call("/v3/kv/txn", &body)?;
        let responses = v["responses"].as_array().cloned().unwrap_or_default();
        Ok((
            v["succeeded"].as_bool().unwrap_or(false),
            num(&v["header"]["revision"]),
            responses,
        ))
    }

    /// Opens a watch on every key under `prefix` from `start_revision`, and
    /// calls `on_message` for each message until the stream ends or
    /// `on_message` returns false.
    pub fn watch(
        &self,
        prefix: &str,
        start_revision: i64,
        mut on_message: impl FnMut(WatchMessage) -> bool,
    ) -> Result<(), EtcdError> {
        let body = json!({"create_request": {
            "key": b64(prefix.as_bytes()),
            "range_end": b64(&prefix_end(prefix)),
            "start_revision": start_revision.to_string(),
        }});
        let resp = self.post(&self.watch_agent, "/v3/watch", &body)?;
        let stream = serde_json::Deserializer::from_reader(resp.into_reader()).into_iter::<Value>();
        for item in stream {
            let v = item.map_err(|e| EtcdError::Failed(format!("etcd watch stream ended: {e}")))?;
            if let Some(err) = v.get("error") {
                return Err(EtcdError::Failed(format!("etcd watch failed: {err}")));
            }
            let r = &v["result"];
            let compact = num(&r["compact_revision"]);
            let revision = num(&r["header"]["revision"]);
            let message = if compact > 0 {
                WatchMessage::Compacted {
                    compact_revision: compact,
                }
            } else if r["canceled"].as_bool() == Some(true) {
                return Err(EtcdError::Failed(format!(
                    "etcd cancelled the watch: {}",
                    r["cancel_reason"].as_str().unwrap_or("no reason given")
                )));
            } else if r["created"].as_bool() == Some(true) {
                WatchMessage::Created { revision }
            } else if let Some(events) = r["events"].as_array() {
                let events = events
                    .iter()
                    .map(|e| {
                        let kv = kv(&e["kv"]);
                        if e["type"].as_str() == Some("DELETE") {
                            WatchEvent::Delete {
                                key: kv.key,
                                mod_revision: kv.mod_revision,
                            }
                        } else {
                            WatchEvent::Put(kv)
                        }
                    })
                    .collect();
                WatchMessage::Events { revision, events }
            } else {
                WatchMessage::Other
            };
            if !on_message(message) {
                return Ok(());
            }
        }
        Err(EtcdError::Failed(format!(
            "etcd watch stream at {} closed",
            self.endpoints()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end("/flux/v1/"), b"/flux/v10".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), vec![b'a', 0x80]);
        assert_eq!(num(&json!("42")), 42);
        assert_eq!(num(&Value::Null), 0);
    }
}
