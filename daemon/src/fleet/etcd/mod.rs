//! A small blocking client for etcd's v3 JSON gateway (etcd 3.4 and later
//! serve it under `/v3/` on the client port): range, txn, compact, the
//! streaming watch and authentication — all fleet mode needs, with no gRPC
//! code generation.
//!
//! - **Transport**: `http://` or `https://` endpoints; with `https://`, the
//!   server is checked against a CA file (`[store] ca_file`, else the
//!   system's web roots) and a client certificate is presented when
//!   configured (`cert_file`, `key_file`), through rustls.
//! - **Authentication**: with `[store] username` (and a password file),
//!   the client gets a token from `/v3/auth/authenticate`, sends it on
//!   every call, and gets a new one when etcd says it expired.
//! - **Members**: every call tries the endpoints in turn, starting with the
//!   one that answered last, so one dead member costs a refused
//!   connection. A member that answers 408/503 or "the client connection is
//!   closing" (a member restarting) is treated like one that is down.
//! - **Deadlines**: each call has its own deadline. A call that could not
//!   reach any member changed nothing ([`KvError::Unreachable`]); one that
//!   reached a member and got no answer in time may or may not have been
//!   applied ([`KvError::Unknown`]) — a write says so rather than guess.
//! - **Reasons**: etcd's own reason (a refused auth, a request over
//!   `--max-request-bytes`, too many operations in one transaction) is passed
//!   through in the error. Two answers of etcd's JSON gateway over TLS that
//!   hide a certificate problem get its cause and remedy added
//!   (`known_cause`): a server certificate without `clientAuth`, a client
//!   certificate with a CommonName while authentication is enabled.
//! - **Big answers**: reads go in pages of a few keys at one revision,
//!   each with its own deadline, halved when an answer is too slow
//!   ([`Etcd::range_paged`]); every answer streams through `CapRead`,
//!   which measures a string over the envelope cap instead of holding it
//!   ([`Kv::oversize`]).
//! - **History**: every answer's header (cluster id, revision) is checked:
//!   a revision that goes backwards or a cluster id that changes means
//!   etcd was restored from an older snapshot or replaced; the caller is
//!   told ([`Etcd::take_reset`]) so it reads everything again. "Backwards"
//!   is judged against what was seen **before the request was sent** (a
//!   watch stream: against its own earlier messages): answers to requests
//!   in flight together may arrive in any order, and a watch that catches
//!   up reports the revisions of the events it delivers, older than the
//!   store's — neither is a rollback.
//!
//! Keys and values are base64 in the JSON and 64-bit numbers are strings;
//! this module hides both. Messages name the endpoints; never a value.
//!
//! Its parts: `config` (deadlines, reads, [`EtcdConfig`]), `json` (the
//! gateway's spelling of keys, values, numbers and operations),
//! `cap_read` (the envelope cap on answers as they stream in), `answers`
//! (what error answers mean) and `tls`; this file holds the client itself.

mod answers;
mod cap_read;
mod config;
mod json;
mod tls;

use super::kv::{Backend, Compare, KvError, Op, Watched};
use super::kv::{Kv, WatchEvent, WatchMessage};
use answers::{error_body, is_expired_token, is_transient, known_cause, reason_in};
use cap_read::CapRead;
pub use config::{
    CALL_TIMEOUT, DEFAULT_PAGE_KEYS, Deadlines, EtcdConfig, Reads, WATCH_IDLE,
    default_max_envelope_bytes,
};
use config::{CONNECT_TIMEOUT, ROUND_PAUSE_MAX, ROUND_PAUSE_MIN};
pub use json::num;
use json::{b64, compare_json, kv, op_json, unb64};
use serde_json::{Value, json};
use std::io::Read;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;
use tls::tls_config;
use tracing::warn;

/// What the answers' headers said last.
#[derive(Debug, Default)]
struct Header {
    cluster_id: Option<String>,
    revision: i64,
}

/// The etcd client.
#[derive(Debug)]
pub struct Etcd {
    config: EtcdConfig,
    agent: ureq::Agent,
    watch_agent: ureq::Agent,
    preferred: AtomicUsize,
    password: Option<zeroize::Zeroizing<String>>,
    token: Mutex<Option<String>>,
    header: Mutex<Header>,
    reset: AtomicBool,
    pages: AtomicU64,
    pages_shrunk: AtomicU64,
}

pub use super::kv::prefix_end;

impl Etcd {
    /// A client for `config`. Fails when a TLS or password file cannot be
    /// read.
    pub fn new(config: EtcdConfig) -> Result<Self, KvError> {
        let mut agent = ureq::AgentBuilder::new()
            .timeout_connect(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT);
        let mut watch_agent = ureq::AgentBuilder::new()
            .timeout_connect(CONNECT_TIMEOUT)
            .timeout_read(WATCH_IDLE)
            .timeout_write(CALL_TIMEOUT);
        if config.endpoints.iter().any(|e| e.starts_with("https://")) {
            let tls = tls_config(&config)?;
            agent = agent.tls_config(tls.clone());
            watch_agent = watch_agent.tls_config(tls);
        }
        let password = match (&config.username, &config.password_file) {
            (Some(_), Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    KvError::Failed(format!(
                        "cannot read the etcd password file {}: {e}",
                        path.display()
                    ))
                })?;
                Some(zeroize::Zeroizing::new(
                    text.trim_end_matches(['\n', '\r']).to_owned(),
                ))
            }
            (Some(_), None) => Some(zeroize::Zeroizing::new(String::new())),
            _ => None,
        };
        Ok(Self {
            config,
            agent: agent.build(),
            watch_agent: watch_agent.build(),
            preferred: AtomicUsize::new(0),
            password,
            token: Mutex::new(None),
            header: Mutex::new(Header::default()),
            reset: AtomicBool::new(false),
            pages: AtomicU64::new(0),
            pages_shrunk: AtomicU64::new(0),
        })
    }

    /// The endpoints, comma-separated, for messages.
    pub fn endpoints(&self) -> String {
        self.config.endpoints.join(",")
    }

    /// True (once) when an answer showed that etcd's history went
    /// backwards or the cluster changed since the last answer: everything
    /// must be read again.
    pub fn take_reset(&self) -> bool {
        self.reset.swap(false, Ordering::AcqRel)
    }

    /// The highest revision seen so far: what an answer to a request sent
    /// now must not go below.
    fn seen_revision(&self) -> i64 {
        self.header
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .revision
    }

    /// Notes an answer's header (see the module docs); `floor` is the
    /// revision seen before its request was sent (for a watch stream, the
    /// stream's own last revision).
    fn saw(&self, header: &Value, floor: i64) {
        let revision = num(&header["revision"]);
        let cluster = header["cluster_id"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| header["cluster_id"].as_u64().map(|n| n.to_string()));
        let mut h = self.header.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some(known), Some(now)) = (&h.cluster_id, &cluster)
            && known != now
        {
            warn!(was = %known, now = %now, "etcd's cluster id changed: reading everything again");
            self.reset.store(true, Ordering::Release);
            h.revision = 0;
        }
        if revision > 0 && revision < floor {
            warn!(
                was = floor,
                now = revision,
                "etcd's revision went backwards (restored from an older snapshot?): reading everything again"
            );
            self.reset.store(true, Ordering::Release);
            // The new history is the one to hold answers to from now on.
            h.revision = revision;
        } else if revision > h.revision {
            h.revision = revision;
        }
        if cluster.is_some() {
            h.cluster_id = cluster;
        }
    }

    /// A fresh token for an auth-enabled cluster.
    fn authenticate(&self) -> Result<Option<String>, KvError> {
        let (Some(name), Some(password)) = (&self.config.username, &self.password) else {
            return Ok(None);
        };
        let body = json!({"name": name, "password": password.as_str()});
        let resp = self.send(
            &self.agent,
            "/v3/auth/authenticate",
            &body,
            None,
            Deadlines::UNARY,
        )?;
        let v: Value = serde_json::from_reader(resp.into_reader().take(1 << 20)).map_err(|e| {
            KvError::Failed(format!("etcd's authentication answer is not JSON: {e}"))
        })?;
        let token = v["token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| KvError::Failed("etcd's authentication answer holds no token".into()))?;
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = Some(token.clone());
        Ok(Some(token))
    }

    fn current_token(&self) -> Result<Option<String>, KvError> {
        if self.config.username.is_none() {
            return Ok(None);
        }
        let known = self.token.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match known {
            Some(t) => Ok(Some(t)),
            None => self.authenticate(),
        }
    }

    /// POSTs `body` to `path` on the first endpoint that answers, with the
    /// token when there is one. A unary call (`agent` is the unary agent)
    /// has one deadline, [`CALL_TIMEOUT`], for all its tries: while the
    /// members that answer are busy (a restart, an election) it goes round
    /// them again until then; when none answers at all it fails at once. A
    /// watch tries each member once.
    fn send(
        &self,
        agent: &ureq::Agent,
        path: &str,
        body: &Value,
        token: Option<&str>,
        limits: Deadlines,
    ) -> Result<ureq::Response, KvError> {
        let unary = std::ptr::eq(agent, &self.agent);
        let deadline = Instant::now() + limits.call;
        let text = body.to_string();
        let endpoints = &self.config.endpoints;
        let mut reasons: Vec<String> = Vec::new();
        // The likely cause of the answers in `reasons`, when known.
        let mut cause = None;
        let mut sent = false;
        let mut pause = ROUND_PAUSE_MIN;
        loop {
            let start = self.preferred.load(Ordering::Relaxed);
            let mut round = Vec::new();
            let mut round_cause = None;
            let mut busy = false;
            for i in 0..endpoints.len() {
                let n = (start + i) % endpoints.len();
                let left = deadline.saturating_duration_since(Instant::now());
                if unary && left.is_zero() {
                    break;
                }
                let url = format!("{}{path}", endpoints[n].trim_end_matches('/'));
                let mut request = agent.post(&url).set("Content-Type", "application/json");
                if unary {
                    request = request.timeout(left.min(limits.attempt));
                }
                if let Some(t) = token {
                    request = request.set("Authorization", t);
                }
                match request.send_string(&text) {
                    Ok(resp) => {
                        self.preferred.store(n, Ordering::Relaxed);
                        return Ok(resp);
                    }
                    Err(ureq::Error::Status(code, resp)) => {
                        let body = error_body(resp);
                        let known = known_cause(&endpoints[n], code, &body);
                        let mut reason = reason_in(&body);
                        if reason.is_empty() {
                            reason = match code {
                                401 => "not authenticated (no valid token)".into(),
                                403 => "permission denied".into(),
                                _ => "no reason given".into(),
                            };
                        }
                        if !is_transient(code, &reason) {
                            return Err(KvError::Failed(match known {
                                Some(cause) => format!(
                                    "etcd at {} refused the request (HTTP {code}: {reason}): {cause}",
                                    endpoints[n]
                                ),
                                None => format!(
                                    "etcd at {} refused the request (HTTP {code}): {reason}",
                                    endpoints[n]
                                ),
                            }));
                        }
                        round_cause = round_cause.or(known);
                        // A member that answered "timed out" may have
                        // passed the request on.
                        sent |= reason.contains("timed out");
                        busy = true;
                        round.push(format!("{}: HTTP {code} {reason}", endpoints[n]));
                    }
                    Err(ureq::Error::Transport(t)) => {
                        // Connected, then no answer (a timeout, a reset, a
                        // member stopping): it may have applied the request,
                        // and another member may answer. A refused
                        // connection changed nothing.
                        let text = t.to_string().to_lowercase();
                        let tls_refused = ["alert", "certificate", "handshake"]
                            .iter()
                            .any(|w| text.contains(w));
                        let connected = !tls_refused
                            && !matches!(
                                t.kind(),
                                ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::Dns
                            );
                        sent |= connected;
                        busy |= connected;
                        round.push(format!("{}: {t}", endpoints[n]));
                    }
                }
            }
            if !round.is_empty() {
                reasons = round;
                cause = round_cause;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if !unary || !busy || left.is_zero() {
                break;
            }
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(ROUND_PAUSE_MAX);
        }
        let detail = reasons.join("; ");
        let cause = cause.map(|c| format!(": {c}")).unwrap_or_default();
        if sent {
            Err(KvError::Unknown(format!(
                "etcd did not answer within {:?} at {}: the outcome is unknown ({detail}){cause}",
                limits.call,
                self.endpoints()
            )))
        } else {
            Err(KvError::Unreachable(format!(
                "etcd is unreachable at {} ({detail}){cause}",
                self.endpoints()
            )))
        }
    }

    /// [`Self::send`] with the token, getting a new one once if it expired.
    fn post(
        &self,
        agent: &ureq::Agent,
        path: &str,
        body: &Value,
        limits: Deadlines,
    ) -> Result<ureq::Response, KvError> {
        let token = self.current_token()?;
        match self.send(agent, path, body, token.as_deref(), limits) {
            Err(KvError::Failed(reason)) if token.is_some() && is_expired_token(&reason) => {
                // etcd forgets tokens (its TTL, a restart): get a new one.
                let token = self.authenticate()?;
                self.send(agent, path, body, token.as_deref(), limits)
            }
            other => other,
        }
    }

    fn call(&self, path: &str, body: &Value) -> Result<Value, KvError> {
        self.call_within(path, body, Deadlines::UNARY)
    }

    /// A unary call within `limits`; its answer is read through
    /// [`CapRead`], so no string in it is held longer than the envelope
    /// cap. An answer that starts but does not finish in time is
    /// [`KvError::Unfinished`].
    fn call_within(&self, path: &str, body: &Value, limits: Deadlines) -> Result<Value, KvError> {
        let floor = self.seen_revision();
        let resp = self.post(&self.agent, path, body, limits)?;
        // Buffered: the JSON parser asks for a byte at a time.
        let reader = std::io::BufReader::with_capacity(
            64 * 1024,
            CapRead::new(resp.into_reader(), self.config.reads.string_cap()),
        );
        let v: Value = serde_json::from_reader(reader).map_err(|e| {
            if e.is_io() || e.is_eof() {
                KvError::Unfinished(format!(
                    "etcd at {} began its answer but did not finish it within {:?} ({e})",
                    self.endpoints(),
                    limits.attempt
                ))
            } else {
                KvError::Failed(format!(
                    "etcd at {} answered with bad JSON: {e}",
                    self.endpoints()
                ))
            }
        })?;
        self.saw(&v["header"], floor);
        Ok(v)
    }

    /// Every key under `prefix`, and the store's revision at that moment
    /// (read in pages: [`Self::range_paged`]).
    pub fn range_prefix(&self, prefix: &str) -> Result<(i64, Vec<Kv>), KvError> {
        let mut all = Vec::new();
        let revision = self.range_paged(prefix, 0, |page| all.extend(page))?;
        Ok((revision, all))
    }

    /// Reads every key under `prefix` as etcd held it at `revision` (0:
    /// now), in pages of at most [`Reads::page_keys`] keys, each page a
    /// request of its own with its own deadline ([`Reads::page_timeout`]),
    /// continuing after the last key of the page before at the same
    /// revision — so the pages together are one consistent snapshot, and
    /// at most one page is held at a time. `each` gets every page in key
    /// order. A page whose answer starts but does not finish in time (a
    /// slow link) is asked again at half as many keys, down to one, so a
    /// slow link makes progress instead of failing a whole read. Returns
    /// the revision read at.
    pub fn range_paged(
        &self,
        prefix: &str,
        revision: i64,
        each: impl FnMut(Vec<Kv>),
    ) -> Result<i64, KvError> {
        self.range_between(prefix.as_bytes(), &prefix_end(prefix), revision, each)
    }

    /// [`Self::range_paged`] for the keys from `start` up to, not
    /// including, `end`.
    pub fn range_between(
        &self,
        start: &[u8],
        end: &[u8],
        revision: i64,
        mut each: impl FnMut(Vec<Kv>),
    ) -> Result<i64, KvError> {
        let end = end.to_vec();
        let mut start = start.to_vec();
        let mut revision = revision;
        let mut limit = self.config.reads.page_keys.max(1);
        let limits = self.config.reads.page_deadlines();
        loop {
            let mut body = json!({
                "key": b64(&start),
                "range_end": b64(&end),
                "limit": limit.to_string(),
            });
            if revision > 0 {
                body["revision"] = json!(revision.to_string());
            }
            let v = match self.call_within("/v3/kv/range", &body, limits) {
                Ok(v) => v,
                Err(KvError::Unfinished(reason)) if limit > 1 => {
                    limit = (limit / 2).max(1);
                    self.pages_shrunk.fetch_add(1, Ordering::Relaxed);
                    warn!(%reason, keys = limit, "etcd's answer was too slow for its page; asking for smaller pages");
                    continue;
                }
                Err(e) => return Err(e),
            };
            if revision == 0 {
                revision = num(&v["header"]["revision"]);
            }
            let kvs: Vec<Kv> = v["kvs"]
                .as_array()
                .map(|a| a.iter().map(kv).collect())
                .unwrap_or_default();
            let more = v["more"].as_bool() == Some(true);
            drop(v);
            self.pages.fetch_add(1, Ordering::Relaxed);
            let next = kvs.last().map(|kv| {
                let mut next = kv.key.as_bytes().to_vec();
                next.push(0);
                next
            });
            each(kvs);
            match next {
                Some(next) if more => start = next,
                _ => return Ok(revision),
            }
        }
    }

    /// The value etcd holds under exactly `key` (none when it holds none).
    pub fn get(&self, key: &str) -> Result<Option<Kv>, KvError> {
        self.get_at(key, 0)
    }

    /// The value etcd held under exactly `key` at `revision` (0: now).
    pub fn get_at(&self, key: &str, revision: i64) -> Result<Option<Kv>, KvError> {
        let mut body = json!({"key": b64(key.as_bytes())});
        if revision > 0 {
            body["revision"] = json!(revision.to_string());
        }
        let v = self.call_within("/v3/kv/range", &body, self.config.reads.page_deadlines())?;
        Ok(v["kvs"]
            .as_array()
            .and_then(|a| a.first())
            .map(kv)
            .filter(|kv| kv.key == key))
    }

    /// Range requests answered in pages so far, and pages asked again
    /// smaller because an answer was too slow.
    pub fn page_counts(&self) -> (u64, u64) {
        (
            self.pages.load(Ordering::Relaxed),
            self.pages_shrunk.load(Ordering::Relaxed),
        )
    }

    /// The keys under `prefix` (no values) and their mod_revisions.
    pub fn keys_prefix(&self, prefix: &str) -> Result<Vec<(String, i64)>, KvError> {
        self.keys_at(prefix, 0)
    }

    /// The keys under `prefix` at `revision` (0: now), no values.
    pub fn keys_at(&self, prefix: &str, revision: i64) -> Result<Vec<(String, i64)>, KvError> {
        let mut body = json!({"key": b64(prefix.as_bytes()), "range_end": b64(&prefix_end(prefix)), "keys_only": true});
        if revision > 0 {
            body["revision"] = json!(revision.to_string());
        }
        let v = self.call("/v3/kv/range", &body)?;
        Ok(v["kvs"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|kv| {
                        (
                            String::from_utf8_lossy(&unb64(&kv["key"])).into_owned(),
                            num(&kv["mod_revision"]),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// A transaction: `success` runs when every `compare` holds. Returns
    /// whether it ran, and the revision after it.
    pub fn txn(&self, compare: &[Compare], success: &[Op]) -> Result<(bool, i64), KvError> {
        let compare: Vec<Value> = compare.iter().map(compare_json).collect();
        let success: Vec<Value> = success.iter().map(op_json).collect();
        let body = json!({"compare": compare, "success": success, "failure": []});
        let v = self.call("/v3/kv/txn", &body)?;
        Ok((
            v["succeeded"].as_bool().unwrap_or(false),
            num(&v["header"]["revision"]),
        ))
    }

    /// Whether etcd's history at `revision` is gone (compacted); `None`
    /// when etcd could not be asked.
    pub fn compacted_past(&self, revision: i64) -> Option<bool> {
        let body = json!({"key": b64(b"/flux/"), "revision": revision.to_string(), "limit": "1"});
        match self.call("/v3/kv/range", &body) {
            Ok(_) => Some(false),
            Err(KvError::Failed(reason)) if reason.contains("compacted") => Some(true),
            Err(_) => None,
        }
    }

    /// Discards etcd's history before `revision` (physically, so older
    /// revisions can no longer be read).
    pub fn compact(&self, revision: i64) -> Result<(), KvError> {
        let body = json!({"revision": revision.to_string(), "physical": true});
        match self.call("/v3/kv/compaction", &body) {
            Ok(_) => Ok(()),
            // Someone compacted further already: the goal is met.
            Err(KvError::Failed(reason)) if reason.contains("compacted") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Opens a watch on what `watched` names from `start_revision`, and
    /// calls `on_message` for each message until the stream ends or
    /// `on_message` returns false.
    pub fn watch(
        &self,
        watched: &Watched,
        start_revision: i64,
        mut on_message: impl FnMut(WatchMessage) -> bool,
    ) -> Result<(), KvError> {
        let mut create = json!({
            "key": b64(watched.start.as_bytes()),
            "range_end": b64(&watched.end),
            "start_revision": start_revision.to_string(),
        });
        if !watched.puts {
            create["filters"] = json!(["NOPUT"]);
        }
        let body = json!({ "create_request": create });
        let resp = self.post(&self.watch_agent, "/v3/watch", &body, Deadlines::UNARY)?;
        // Buffered (a read returns what has arrived; it never waits to
        // fill the buffer, so each message is parsed as it comes).
        let reader = std::io::BufReader::with_capacity(
            64 * 1024,
            CapRead::new(resp.into_reader(), self.config.reads.string_cap()),
        );
        let stream = serde_json::Deserializer::from_reader(reader).into_iter::<Value>();
        // The stream's own last revision: a watch's messages only go up.
        let mut stream_floor = 0;
        for item in stream {
            let v = item.map_err(|e| KvError::Failed(format!("etcd watch stream ended: {e}")))?;
            if let Some(err) = v.get("error") {
                return Err(KvError::Failed(format!("etcd watch failed: {err}")));
            }
            let r = &v["result"];
            let compact = num(&r["compact_revision"]);
            let revision = num(&r["header"]["revision"]);
            self.saw(&r["header"], stream_floor);
            stream_floor = stream_floor.max(revision);
            let message = if compact > 0 {
                WatchMessage::Compacted {
                    compact_revision: compact,
                }
            } else if r["canceled"].as_bool() == Some(true) {
                return Err(KvError::Failed(format!(
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
            if self.reset.load(Ordering::Acquire) {
                return Ok(());
            }
        }
        Err(KvError::Failed(format!(
            "etcd watch stream at {} closed",
            self.endpoints()
        )))
    }
}

impl Backend for Etcd {
    fn endpoints(&self) -> String {
        Etcd::endpoints(self)
    }

    fn range_between(
        &self,
        start: &[u8],
        end: &[u8],
        revision: i64,
        each: &mut dyn FnMut(Vec<Kv>),
    ) -> Result<i64, KvError> {
        Etcd::range_between(self, start, end, revision, each)
    }

    fn get_at(&self, key: &str, revision: i64) -> Result<Option<Kv>, KvError> {
        Etcd::get_at(self, key, revision)
    }

    fn keys_at(&self, prefix: &str, revision: i64) -> Result<Vec<(String, i64)>, KvError> {
        Etcd::keys_at(self, prefix, revision)
    }

    fn txn(&self, compare: &[Compare], success: &[Op]) -> Result<(bool, i64), KvError> {
        Etcd::txn(self, compare, success)
    }

    fn compact(&self, revision: i64) -> Result<(), KvError> {
        Etcd::compact(self, revision)
    }

    fn compacted_past(&self, revision: i64) -> Option<bool> {
        Etcd::compacted_past(self, revision)
    }

    fn watch(
        &self,
        watched: &Watched,
        start: i64,
        on_message: &mut dyn FnMut(WatchMessage) -> bool,
    ) -> Result<(), KvError> {
        Etcd::watch(self, watched, start, on_message)
    }

    fn take_reset(&self) -> bool {
        Etcd::take_reset(self)
    }

    fn page_counts(&self) -> (u64, u64) {
        Etcd::page_counts(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    /// A fake etcd gateway on loopback answering range requests from
    /// `keys` (sorted), `limit` at a time: a page of more than one key
    /// starts its answer and stalls (a slow link). Returns its endpoint
    /// and the requests it saw.
    fn slow_gateway(keys: Vec<String>) -> (String, Arc<Mutex<Vec<Value>>>) {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let (keys, log) = (keys.clone(), log.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut length = 0;
                    loop {
                        let mut line = String::new();
                        reader.read_line(&mut line).unwrap();
                        if let Some(v) = line.to_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap();
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    let request: Value = serde_json::from_slice(&body).unwrap();
                    log.lock().unwrap().push(request.clone());
                    let start = String::from_utf8(unb64(&request["key"])).unwrap();
                    let limit: usize = request["limit"].as_str().unwrap().parse().unwrap();
                    let page: Vec<&String> =
                        keys.iter().filter(|k| **k >= start).take(limit).collect();
                    let more = keys.iter().filter(|k| **k >= start).count() > limit;
                    let kvs: Vec<Value> = page
                    .iter()
                    .map(|k| json!({"key": b64(k.as_bytes()), "value": b64(b"v"), "mod_revision": "3"}))
                    .collect();
                    let answer =
                        json!({"header": {"revision": "9"}, "kvs": kvs, "more": more}).to_string();
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                        answer.len()
                    );
                    let _ = stream.write_all(head.as_bytes());
                    if limit > 1 {
                        // Half the answer, then nothing: too slow for the page.
                        let _ = stream.write_all(&answer.as_bytes()[..answer.len() / 2]);
                        std::thread::sleep(Duration::from_secs(3));
                    } else {
                        let _ = stream.write_all(answer.as_bytes());
                    }
                });
            }
        });
        (endpoint, seen)
    }

    #[test]
    fn a_read_too_slow_for_its_pages_goes_on_in_smaller_pages_at_one_revision() {
        let keys: Vec<String> = (0..5).map(|i| format!("/p/k{i}")).collect();
        let (endpoint, seen) = slow_gateway(keys.clone());
        let etcd = Etcd::new(EtcdConfig {
            endpoints: vec![endpoint],
            reads: Reads {
                page_keys: 4,
                page_timeout: Duration::from_millis(300),
                ..Reads::default()
            },
            ..EtcdConfig::default()
        })
        .unwrap();
        let mut pages = Vec::new();
        let revision = etcd
            .range_paged("/p/", 0, |page| {
                pages.push(page.into_iter().map(|kv| kv.key).collect::<Vec<_>>())
            })
            .unwrap();
        assert_eq!(revision, 9);
        assert_eq!(pages.concat(), keys, "every key, once, in order");
        assert!(pages.iter().all(|p| p.len() == 1), "{pages:?}");
        let (read, shrunk) = etcd.page_counts();
        assert_eq!((read, shrunk), (5, 2), "4 → 2 → 1 keys a page");
        let seen = seen.lock().unwrap();
        // Every page after the first is read at the first one's revision,
        // from just after the last key read.
        let later: Vec<&Value> = seen.iter().filter(|r| r["revision"] == "9").collect();
        assert_eq!(later.len(), 4, "{seen:?}");
        assert_eq!(
            String::from_utf8(unb64(&later[0]["key"])).unwrap(),
            "/p/k0\u{0}"
        );
    }

    #[test]
    fn a_revision_going_backwards_asks_for_a_resync() {
        let etcd = Etcd::new(EtcdConfig {
            endpoints: vec!["http://127.0.0.1:1".into()],
            ..EtcdConfig::default()
        })
        .unwrap();
        let seen = |etcd: &Etcd| etcd.seen_revision();
        etcd.saw(&json!({"cluster_id": "7", "revision": "49"}), seen(&etcd));
        assert!(!etcd.take_reset());
        // Two requests sent at 49 come back out of order: no rollback.
        let sent_at = seen(&etcd);
        etcd.saw(&json!({"cluster_id": "7", "revision": "52"}), sent_at);
        etcd.saw(&json!({"cluster_id": "7", "revision": "50"}), sent_at);
        assert!(
            !etcd.take_reset(),
            "answers in flight together, out of order"
        );
        assert_eq!(seen(&etcd), 52, "the highest revision is kept");
        // A watch catching up reports its events' older revisions.
        etcd.saw(&json!({"cluster_id": "7", "revision": "30"}), 0);
        etcd.saw(&json!({"cluster_id": "7", "revision": "31"}), 30);
        assert!(!etcd.take_reset(), "a lagging watch is no rollback");
        // A request sent after 52 was seen, answered at 14: restored.
        etcd.saw(&json!({"cluster_id": "7", "revision": "14"}), seen(&etcd));
        assert!(etcd.take_reset(), "revision 52 → 14");
        etcd.saw(&json!({"cluster_id": "7", "revision": "15"}), seen(&etcd));
        assert!(
            !etcd.take_reset(),
            "the restored history is held from then on"
        );
        etcd.saw(&json!({"cluster_id": "8", "revision": "20"}), seen(&etcd));
        assert!(etcd.take_reset(), "another cluster");
    }
}
