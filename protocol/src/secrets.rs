//! `ctx.secrets` for Rust functions: [`Secrets`] (async) and
//! [`blocking::Secrets`](crate::blocking::Secrets).
//!
//! - The socket comes from `FLUX_SECRETS_SOCKET` ([`Secrets::from_env`]) or
//!   an explicit path ([`Secrets::new`]).
//! - [`Secrets::get`] returns the value; a secret that is not set is an
//!   error whose message says how to set it ([`ClientError::is_not_found`]).
//! - [`Secrets::get_or`] returns the fallback only when the secret is not
//!   set: an unreachable daemon, a denied request or an invalid name are
//!   still errors.
//! - Nothing is cached: every `get` asks the daemon, so a rotated value is
//!   seen at once.
//! - One connection, opened on first use, is shared by concurrent callers.
//!   When it breaks (the daemon restarted), the call reconnects once and
//!   retries; if that fails too, the error names the socket.
//!
//! ```no_run
//! # async fn handler() -> Result<(), flux_protocol::ClientError> {
//! let secrets = flux_protocol::Secrets::from_env()?;
//! let api_key = secrets.get("OPENAI_API_KEY").await?;
//! let region = secrets.get_or("AWS_REGION", "us-east-1").await?;
//! # let _ = (api_key, region);
//! # Ok(())
//! # }
//! ```

use crate::client::{Client, ClientError};
use crate::paths::SOCKET_ENV;
use std::path::{Path, PathBuf};
use tokio::sync::Mutex;

/// A function's handle on its project's secrets.
#[derive(Debug)]
pub struct Secrets {
    path: PathBuf,
    conn: Mutex<Option<Client>>,
}

impl Secrets {
    /// Secrets served on the socket at `path`. Nothing connects until the
    /// first `get`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            conn: Mutex::new(None),
        }
    }

    /// Secrets served on the socket named by `FLUX_SECRETS_SOCKET`.
    pub fn from_env() -> Result<Self, ClientError> {
        crate::paths::env_path(SOCKET_ENV)
            .map(Self::new)
            .ok_or(ClientError::NotConfigured)
    }

    /// The socket this reads from.
    pub fn socket(&self) -> &Path {
        &self.path
    }

    /// The secret's value. Fails with a not-found error when it is not set.
    pub async fn get(&self, key: &str) -> Result<String, ClientError> {
        let mut conn = self.conn.lock().await;
        for attempt in 0..2 {
            if conn.is_none() {
                *conn = Some(Client::connect(&self.path).await?);
            }
            let client = conn.as_mut().expect("connected above");
            match client.get(key).await {
                Ok(value) => return Ok(value.expose().to_owned()),
                // A broken connection (a daemon restart): reconnect once.
                Err(e) if e.is_unreachable() && attempt == 0 => *conn = None,
                Err(e) => {
                    if e.is_unreachable() {
                        *conn = None;
                    }
                    return Err(e);
                }
            }
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// The secret's value, or `fallback` when it is not set.
    pub async fn get_or(&self, key: &str, fallback: &str) -> Result<String, ClientError> {
        match self.get(key).await {
            Err(e) if e.is_not_found() => Ok(fallback.to_owned()),
            other => other,
        }
    }
}
