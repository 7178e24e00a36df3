//! What both paths share about frames and how a connection ends: the
//! length of a whole frame, wiping a buffer, the answer to a frame over the
//! limit, the end of a client that takes no answer ([`End`]), and how many
//! bytes of pipelined answers are held back.

use super::conn::Conn;
use std::io;
use tracing::warn;
use zeroize::Zeroize;

/// Most bytes of answers held back while pipelined requests are answered.
pub(super) const PIPELINED_ANSWERS: usize = 64 * 1024;

/// Why a connection was ended by the daemon.
#[derive(Debug, thiserror::Error)]
pub(super) enum End {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Protocol(String),
}

/// The length of the whole request frame at the start of `buf` (prefix
/// included), when all of it is there.
pub(super) fn whole_frame_len(buf: &[u8]) -> Option<usize> {
    let prefix: [u8; 4] = buf.get(..4)?.try_into().ok()?;
    let len = u32::from_be_bytes(prefix) as usize;
    (buf.len() - 4 >= len).then_some(4 + len)
}

/// Clears a buffer and zeroes everything it ever held.
pub(super) fn wipe(buf: &mut bytes::BytesMut) {
    let cap = buf.capacity();
    buf.clear();
    buf.resize(cap, 0);
    buf.as_mut().zeroize();
    buf.clear();
}

/// The message a frame over the request limit is answered with.
pub(super) fn too_large(conn: &Conn) -> String {
    let msg = format!(
        "frame exceeds the limit of {} bytes; closing the connection",
        conn.services.config.limits.max_request_bytes
    );
    warn!("{msg}");
    msg
}

pub(super) fn write_timed_out(conn: &Conn) -> End {
    let msg = format!(
        "the client took no answer for {:?}; closing",
        conn.services.config.limits.write_timeout
    );
    warn!("{msg}");
    End::Protocol(msg)
}
