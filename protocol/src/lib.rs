//! The Flux Secrets wire protocol: what `fluxd` and its clients say to each
//! other over a Unix socket, and a client that says it.
//!
//! A connection carries frames: a 4-byte big-endian length, then a payload
//! encoded with bincode's legacy configuration (fixed-width little-endian
//! integers, the bincode-1 layout), so that a client in any language can be
//! written from `PROTOCOL.md` alone. The first frame on every connection is a
//! [`Request::Hello`] carrying [`PROTOCOL_VERSION`]; the daemon answers
//! [`Response::Welcome`] or a typed error and closes.
//!
//! This crate owns framing ([`codec`]), messages ([`message`]), error codes
//! ([`error`]), the grammar of names and the size limits ([`limits`]), where
//! sockets are found ([`paths`]), the client ([`client`], with a blocking
//! wrapper in [`blocking`]) and `ctx.secrets` for Rust functions
//! ([`secrets`]), and the rule every client applies before trusting a
//! socket ([`trust`]). It knows nothing of policy: who may do what is
//! the daemon's business. It is the only crate in the workspace that calls
//! bincode, so the codec can be swapped in one place.

#![forbid(unsafe_code)]

pub mod blocking;
pub mod client;
pub mod codec;
pub mod error;
pub mod limits;
pub mod message;
pub mod paths;
#[cfg(any(test, feature = "samples"))]
pub mod samples;
pub mod secret;
pub mod secrets;
pub mod trust;

pub use client::{Client, ClientError};
pub use error::ErrorCode;
pub use message::{PROTOCOL_VERSION, Request, Response};
pub use secret::SecretValue;
pub use secrets::Secrets;
