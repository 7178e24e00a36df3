//! `[limits]`: bounds on what clients may cost the daemon, and the checks
//! that keep them consistent with the protocol's own limits.

use crate::error::{ConfigError, Result};
use flux_protocol::limits::{MAX_REQUEST_FRAME_LEN, MAX_RESPONSE_FRAME_LEN, MAX_VALUE_LEN};
use serde::Deserialize;
use std::time::Duration;

/// Largest `[limits] max_project_bytes`: even if every byte of a value
/// were escaped six-fold in the vault's JSON, the document stays under the
/// 256 MiB a vault may decrypt to.
pub const MAX_PROJECT_BYTES: usize = 40 * 1024 * 1024;

/// Bounds on what clients may cost the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest request frame, checked before allocation.
    pub max_request_bytes: usize,
    /// Largest secret value.
    pub max_value_bytes: usize,
    /// Most secrets one project may hold.
    pub max_secrets_per_project: usize,
    /// Most bytes of names and values one project may hold. Bounded so a
    /// project's `GetAll` answer always fits the 64 MiB answer limit and
    /// its vault the 256 MiB a vault may decrypt to.
    pub max_project_bytes: usize,
    /// Open connections across all sockets; further clients wait in the
    /// listen backlog until one closes.
    pub max_connections: usize,
    /// Open connections on the control socket, counted apart from the
    /// project sockets' so neither can crowd out the other; further
    /// clients wait in the listen backlog.
    pub max_control_connections: usize,
    /// Open control connections one peer uid may hold; further ones are
    /// refused with `limit_reached`, so one user cannot keep the others
    /// out.
    pub max_control_connections_per_peer: usize,
    /// Open connections on one project's socket; further ones are refused
    /// with `limit_reached`, so one project cannot starve the others.
    pub max_connections_per_project: usize,
    /// Requests per second one connection may make (0: no limit).
    pub requests_per_second: u32,
    /// Time a new connection has to complete the handshake.
    pub handshake_timeout: Duration,
    /// Time a client has to finish a frame it started sending.
    pub frame_timeout: Duration,
    /// Time a client has to take an answer (or event) off the socket; a
    /// client that stops reading is cut off after it.
    pub write_timeout: Duration,
    /// Time an idle connection (no partial frame) is kept open.
    pub idle_timeout: Duration,
    /// Time in-flight requests get to finish on shutdown.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_bytes: MAX_REQUEST_FRAME_LEN,
            max_value_bytes: MAX_VALUE_LEN,
            max_secrets_per_project: 100_000,
            max_project_bytes: 32 * 1024 * 1024,
            max_connections: 1024,
            max_control_connections: 64,
            max_control_connections_per_peer: 16,
            max_connections_per_project: 512,
            requests_per_second: 100_000,
            handshake_timeout: Duration::from_secs(5),
            frame_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(15 * 60),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// `[limits]`: each key overrides the default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    pub max_request_bytes: Option<usize>,
    pub max_value_bytes: Option<usize>,
    pub max_secrets_per_project: Option<usize>,
    pub max_project_bytes: Option<usize>,
    pub max_connections: Option<usize>,
    pub max_control_connections: Option<usize>,
    pub max_control_connections_per_peer: Option<usize>,
    pub max_connections_per_project: Option<usize>,
    pub requests_per_second: Option<u32>,
    pub handshake_timeout: Option<String>,
    pub frame_timeout: Option<String>,
    pub write_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub shutdown_grace: Option<String>,
}

pub(super) fn duration(
    key: &'static str,
    value: &Option<String>,
    default: Duration,
) -> Result<Duration> {
    match value {
        None => Ok(default),
        Some(text) => match humantime::parse_duration(text) {
            Ok(d) if !d.is_zero() => Ok(d),
            Ok(_) => Err(ConfigError::ZeroDuration { key }.into()),
            Err(source) => Err(ConfigError::NotADuration {
                key,
                text: text.clone(),
                like: "\"5s\" or \"15m\"",
                source,
            }
            .into()),
        },
    }
}

impl LimitsFile {
    pub(super) fn resolve(&self) -> Result<Limits> {
        let d = Limits::default();
        let limits = Limits {
            max_request_bytes: self.max_request_bytes.unwrap_or(d.max_request_bytes),
            max_value_bytes: self.max_value_bytes.unwrap_or(d.max_value_bytes),
            max_secrets_per_project: self
                .max_secrets_per_project
                .unwrap_or(d.max_secrets_per_project),
            max_project_bytes: self.max_project_bytes.unwrap_or(d.max_project_bytes),
            max_connections: self.max_connections.unwrap_or(d.max_connections),
            max_control_connections: self
                .max_control_connections
                .unwrap_or(d.max_control_connections),
            max_control_connections_per_peer: self
                .max_control_connections_per_peer
                .unwrap_or(d.max_control_connections_per_peer),
            max_connections_per_project: self
                .max_connections_per_project
                .unwrap_or(d.max_connections_per_project),
            requests_per_second: self.requests_per_second.unwrap_or(d.requests_per_second),
            handshake_timeout: duration(
                "[limits] handshake_timeout",
                &self.handshake_timeout,
                d.handshake_timeout,
            )?,
            frame_timeout: duration(
                "[limits] frame_timeout",
                &self.frame_timeout,
                d.frame_timeout,
            )?,
            write_timeout: duration(
                "[limits] write_timeout",
                &self.write_timeout,
                d.write_timeout,
            )?,
            idle_timeout: duration("[limits] idle_timeout", &self.idle_timeout, d.idle_timeout)?,
            shutdown_grace: duration(
                "[limits] shutdown_grace",
                &self.shutdown_grace,
                d.shutdown_grace,
            )?,
        };
        let check = |ok: bool, error: ConfigError| if ok { Ok(()) } else { Err(error) };
        let at_least_one =
            |key, value: usize| check(value >= 1, ConfigError::AtLeast { key, min: 1 });
        check(
            (1..=MAX_VALUE_LEN).contains(&limits.max_value_bytes),
            ConfigError::OutOfRange {
                key: "[limits] max_value_bytes",
                must_be: format!("1 to {MAX_VALUE_LEN} (the protocol's limit)"),
            },
        )?;
        check(
            limits.max_request_bytes >= limits.max_value_bytes + 1024
                && limits.max_request_bytes <= 16 * 1024 * 1024,
            ConfigError::OutOfRange {
                key: "[limits] max_request_bytes",
                must_be: "at least max_value_bytes + 1024 and at most 16 MiB".into(),
            },
        )?;
        at_least_one(
            "[limits] max_secrets_per_project",
            limits.max_secrets_per_project,
        )?;
        check(
            limits.max_project_bytes >= limits.max_value_bytes
                && limits.max_project_bytes <= MAX_PROJECT_BYTES,
            ConfigError::OutOfRange {
                key: "[limits] max_project_bytes",
                must_be: format!(
                    "at least max_value_bytes and at most {MAX_PROJECT_BYTES} (40 MiB)"
                ),
            },
        )?;
        // A whole project's GetAll answer: 12 bytes, then 16 per secret
        // (two lengths) plus its name and value.
        check(
            12 + 16 * limits.max_secrets_per_project + limits.max_project_bytes
                <= MAX_RESPONSE_FRAME_LEN,
            ConfigError::ProjectOverAnswer,
        )?;
        at_least_one("[limits] max_connections", limits.max_connections)?;
        at_least_one(
            "[limits] max_control_connections",
            limits.max_control_connections,
        )?;
        at_least_one(
            "[limits] max_control_connections_per_peer",
            limits.max_control_connections_per_peer,
        )?;
        at_least_one(
            "[limits] max_connections_per_project",
            limits.max_connections_per_project,
        )?;
        Ok(limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Limits> {
        use crate::error::Error;
        let f: crate::config::FileConfig =
            toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        f.limits.resolve()
    }

    #[test]
    fn limits_parse_and_are_checked() {
        let l = parse("[limits]\nidle_timeout = \"2m\"\nmax_secrets_per_project = 10\n").unwrap();
        assert_eq!(l.idle_timeout, Duration::from_secs(120));
        assert_eq!(l.max_secrets_per_project, 10);
        assert!(parse("[limits]\nmax_value_bytes = 70000\n").is_err());
        assert!(
            parse("[limits]\nidle_timeout = \"soon\"\n")
                .unwrap_err()
                .to_string()
                .contains("not a duration")
        );
        assert!(parse("[limits]\nframe_timeout = \"0s\"\n").is_err());
    }
}
