//! How the etcd client is set up: the deadlines of its calls (a try on
//! one member, a whole call, a watch's idle time), how it reads
//! ([`Reads`]: keys per page, a page's deadline, the envelope cap) and how
//! it reaches etcd ([`EtcdConfig`]: endpoints, TLS, authentication).

use std::path::PathBuf;
use std::time::Duration;

/// Time to open a TCP connection to one endpoint.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Time one unary call may take, whatever happens, all tries included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Time one try on one member may take: a member that holds a request
/// longer (no leader yet) is left for another, within [`CALL_TIMEOUT`].
/// Trying a write again is safe: fluxd's writes compare revisions or put
/// the same values.
pub(super) const TRY_TIMEOUT: Duration = Duration::from_secs(2);
/// Pauses between rounds over the members while none answers.
pub(super) const ROUND_PAUSE_MIN: Duration = Duration::from_millis(20);
pub(super) const ROUND_PAUSE_MAX: Duration = Duration::from_millis(500);
/// A watch with no traffic for this long is re-opened (from the last
/// revision seen), so a silently dropped connection is noticed.
pub const WATCH_IDLE: Duration = Duration::from_secs(30);

/// How long one call may take: one try on one member, and all its tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    pub attempt: Duration,
    pub call: Duration,
}

impl Deadlines {
    /// A unary call's: [`TRY_TIMEOUT`] a try, [`CALL_TIMEOUT`] in all.
    pub const UNARY: Self = Self {
        attempt: TRY_TIMEOUT,
        call: CALL_TIMEOUT,
    };
}

/// How etcd is read (`[store] read_page_keys`, `read_page_timeout`,
/// `max_envelope_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reads {
    /// Keys per range request at most.
    pub page_keys: usize,
    /// One try at one page (all tries: two and a half times this).
    pub page_timeout: Duration,
    /// The largest envelope this host reads; a larger value is refused
    /// unread (see [`CapRead`](super::cap_read::CapRead)).
    pub max_envelope_bytes: u64,
}

/// Keys per page by default: a page of the largest envelopes etcd accepts
/// by default (1.5 MiB each) is about 30 MB of JSON.
pub const DEFAULT_PAGE_KEYS: usize = 16;

/// The default `[store] max_envelope_bytes` for a `[limits]
/// max_project_bytes`: the envelope of the largest vault that limit
/// allows — the vault's JSON (names, values and about 1 MiB of per-secret
/// fields), armored by age (4/3 × 65/64) and base64 in the envelope (4/3),
/// is at most 2 × max_project_bytes + 1 MiB for values that need no JSON
/// escaping.
pub fn default_max_envelope_bytes(max_project_bytes: usize) -> u64 {
    (max_project_bytes as u64)
        .saturating_mul(2)
        .saturating_add(1024 * 1024)
}

impl Default for Reads {
    fn default() -> Self {
        Self {
            page_keys: DEFAULT_PAGE_KEYS,
            page_timeout: TRY_TIMEOUT,
            max_envelope_bytes: default_max_envelope_bytes(32 * 1024 * 1024),
        }
    }
}

impl Reads {
    /// The longest JSON string an answer may carry: an envelope of
    /// [`Self::max_envelope_bytes`], base64.
    pub fn string_cap(&self) -> usize {
        usize::try_from(self.max_envelope_bytes.div_ceil(3).saturating_mul(4)).unwrap_or(usize::MAX)
    }

    pub(super) fn page_deadlines(&self) -> Deadlines {
        Deadlines {
            attempt: self.page_timeout,
            call: self.page_timeout * 5 / 2,
        }
    }
}

/// How to reach etcd: endpoints, TLS and authentication (`[store]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdConfig {
    /// `http://host:port` or `https://host:port`.
    pub endpoints: Vec<String>,
    /// CA certificates (PEM) that sign etcd's server certificates.
    pub ca_file: Option<PathBuf>,
    /// This host's client certificate and key (PEM), for etcd's
    /// `--client-cert-auth`.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// etcd user, for `auth enable`d clusters.
    pub username: Option<String>,
    /// A file holding that user's password.
    pub password_file: Option<PathBuf>,
    /// Pages, their deadlines and the envelope cap.
    pub reads: Reads,
}
