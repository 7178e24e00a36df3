//! What one write may hold: the check every name and value goes through
//! ([`validate_entry`]) and how much one project may hold ([`Capacity`]),
//! the oldest earlier values dropped first to stay within it.

use crate::config::Limits;
use crate::error::{Error, Limit, Result};
use flux_protocol::SecretValue;
use flux_protocol::limits::{validate_secret_name, validate_value_len};
use flux_vault::vault::Secrets;

/// Checks a secret's name and value against the grammar and `limits`: the
/// one check every write of a value goes through.
pub fn validate_entry(name: &str, value: &SecretValue, limits: &Limits) -> Result<()> {
    validate_secret_name(name)?;
    let too_large = |limit_text: String| Error::TooLarge {
        name: name.to_owned(),
        len: value.len(),
        limit_text,
    };
    if validate_value_len(value.len()).is_err() {
        return Err(too_large(format!(
            "the limit is {} bytes (64 KiB)",
            flux_protocol::limits::MAX_VALUE_LEN
        )));
    }
    if value.len() > limits.max_value_bytes {
        return Err(too_large(format!(
            "this fluxd's limit is {} bytes ([limits] max_value_bytes)",
            limits.max_value_bytes
        )));
    }
    if value.expose().contains('\0') {
        return Err(Error::BadRequest(format!(
            "secret {name}: the value contains a NUL byte, which no environment variable can hold (`fluxctl run`); store binary data encoded, e.g. as base64"
        )));
    }
    Ok(())
}

/// How much one project may hold: a write may not take it past either
/// bound, nor further past one it is already over (a lowered limit never
/// blocks a delete). The bytes counted are names and values — the current
/// values and every earlier one kept — so a vault never grows past what can
/// be read back; to stay within them, the oldest earlier values are dropped
/// first, and only a write whose current values alone would cross the
/// bound is refused.
#[derive(Debug, Clone, Copy)]
pub(super) struct Capacity {
    secrets: usize,
    bytes: usize,
}

/// How many secrets and bytes a vault held before a change.
#[derive(Debug, Clone, Copy)]
pub(super) struct Held {
    secrets: usize,
    bytes: usize,
}

impl Held {
    pub(super) fn of(secrets: &Secrets) -> Self {
        Self {
            secrets: secrets.len(),
            bytes: secrets.stored_bytes(),
        }
    }
}

impl Capacity {
    pub(super) fn of(limits: &Limits) -> Self {
        Self {
            secrets: limits.max_secrets_per_project,
            bytes: limits.max_project_bytes,
        }
    }

    /// Checks `after` against the bounds, dropping its oldest earlier
    /// values to fit; returns how many were dropped.
    pub(super) fn fit(&self, project: &str, before: Held, after: &mut Secrets) -> Result<usize> {
        if after.len() > self.secrets && after.len() > before.secrets {
            return Err(Error::LimitReached(Limit::Secrets {
                project: project.to_owned(),
                would_hold: after.len(),
                limit: self.secrets,
            }));
        }
        let dropped = after.drop_oldest_versions(self.bytes);
        let now = after.stored_bytes();
        if now > self.bytes && now > before.bytes {
            return Err(Error::LimitReached(Limit::ProjectBytes {
                project: project.to_owned(),
                would_hold: now,
                limit: self.bytes,
            }));
        }
        Ok(dropped)
    }
}
