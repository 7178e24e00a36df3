//! Framing and encoding.
//!
//! A frame is a 4-byte big-endian payload length followed by the payload
//! (tokio-util's [`LengthDelimitedCodec`] with its defaults). The maximum
//! length is checked against the prefix before any buffer is allocated, so a
//! 4 GiB prefix costs the daemon nothing but closing that connection.
//!
//! Payloads are bincode with [`bincode::config::legacy`]: fixed-width
//! little-endian integers, `u64` lengths for strings and sequences, `u32`
//! enum variant indexes, one byte for `bool` and the `Option` tag. That is
//! bincode 1's layout, simple enough to write by hand in any language.
//! Decoding refuses trailing bytes and is bounded by the frame size.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::{self, Read, Write};
use tokio_util::codec::LengthDelimitedCodec;

/// Why a payload could not be encoded or decoded. Messages describe the
/// shape of the failure, never the bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    #[error("cannot encode message: {0}")]
    Encode(String),
    #[error("malformed message: {0}")]
    Decode(String),
    #[error("malformed message: {extra} trailing bytes after a {used}-byte message")]
    TrailingBytes { used: usize, extra: usize },
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
}

fn config() -> impl bincode::config::Config {
    // The limit bounds any length a hostile payload claims; real payloads
    // are already bounded by the frame size.
    bincode::config::legacy().with_limit::<{ crate::limits::MAX_RESPONSE_FRAME_LEN }>()
}

/// The frame codec for a connection, refusing frames longer than `max_len`.
pub fn framing(max_len: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .big_endian()
        .max_frame_length(max_len)
        .new_codec()
}

/// The daemon's side of a connection: request frames up to the daemon's
/// request limit, answers up to [`MAX_RESPONSE_FRAME_LEN`]. (One
/// [`LengthDelimitedCodec`] has one limit for both directions, which would
/// refuse every answer larger than a request may be.)
///
/// It also knows whether a request frame has started and not finished
/// ([`ServerCodec::mid_frame`]): the length codec takes a frame's prefix
/// out of the read buffer as soon as it has all four bytes, so an empty
/// read buffer alone does not mean the client is between frames.
///
/// [`MAX_RESPONSE_FRAME_LEN`]: crate::limits::MAX_RESPONSE_FRAME_LEN
#[derive(Debug)]
pub struct ServerCodec {
    requests: LengthDelimitedCodec,
    answers: LengthDelimitedCodec,
    /// A length prefix was read and its payload has not all come.
    mid_frame: bool,
}

impl ServerCodec {
    /// Refuses request frames longer than `max_request`.
    pub fn new(max_request: usize) -> Self {
        Self {
            requests: framing(max_request),
            answers: framing(crate::limits::MAX_RESPONSE_FRAME_LEN),
            mid_frame: false,
        }
    }

    /// True while a request frame's length prefix has been read and its
    /// payload has not all arrived (the bytes still to come are not in the
    /// read buffer; the prefix no longer is).
    pub fn mid_frame(&self) -> bool {
        self.mid_frame
    }
}

impl tokio_util::codec::Decoder for ServerCodec {
    type Item = bytes::BytesMut;
    type Error = io::Error;

    fn decode(&mut self, src: &mut bytes::BytesMut) -> io::Result<Option<Self::Item>> {
        let before = src.len();
        let frame = self.requests.decode(src)?;
        if frame.is_some() {
            self.mid_frame = false;
        } else if src.len() < before {
            // The prefix was taken out of the buffer; the payload waits.
            self.mid_frame = true;
        }
        Ok(frame)
    }
}

impl tokio_util::codec::Encoder<bytes::Bytes> for ServerCodec {
    type Error = io::Error;

    fn encode(&mut self, item: bytes::Bytes, dst: &mut bytes::BytesMut) -> io::Result<()> {
        self.answers.encode(item, dst)
    }
}

/// Encodes a message into a payload (without the length prefix).
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(msg, config()).map_err(|e| CodecError::Encode(e.to_string()))
}

/// Decodes a whole payload into a message; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, CodecError> {
    let (msg, used) = bincode::serde::decode_from_slice(payload, config())
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    if used != payload.len() {
        return Err(CodecError::TrailingBytes {
            used,
            extra: payload.len() - used,
        });
    }
    Ok(msg)
}

/// Appends the whole frame of `Response::Value(value)` to `buf`, byte for
/// byte what [`framing`] and [`encode`] produce, without building the
/// message: the daemon's `get` path copies a value once, from its snapshot
/// into the connection's write buffer.
pub fn put_value_frame(buf: &mut bytes::BytesMut, value: &str) {
    use bytes::BufMut;
    // Variant index 2 (u32 LE), then the string: u64 LE length and bytes.
    let payload_len = 4 + 8 + value.len();
    buf.reserve(4 + payload_len);
    buf.put_u32(payload_len as u32);
    buf.put_u32_le(2);
    buf.put_u64_le(value.len() as u64);
    buf.put_slice(value.as_bytes());
}

/// Writes one frame (length prefix and payload) to a blocking writer.
pub fn write_frame(w: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame over 4 GiB"))?;
    let mut buf = Vec::with_capacity(4 + payload.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(payload);
    w.write_all(&buf)?;
    w.flush()
}

/// Reads one frame's payload from a blocking reader: `Ok(None)` on a clean
/// close before a frame starts, an error on a close mid-frame or a length
/// over `max_len` (checked before allocating).
pub fn read_frame(r: &mut impl Read, max_len: usize) -> io::Result<Option<Vec<u8>>> {
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut prefix[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_be_bytes(prefix) as usize;
    if len > max_len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            CodecError::TooLarge { len, max: max_len },
        ));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some(payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Get, Request};

    #[test]
    fn put_value_frame_matches_the_encoder() {
        use crate::message::Response;
        use crate::secret::SecretValue;
        use tokio_util::codec::Encoder;
        for value in ["", "sk-abc123", "ü✓", &"x".repeat(70_000)] {
            let mut want = bytes::BytesMut::new();
            let payload = encode(&Response::Value(SecretValue::from(value))).unwrap();
            framing(1 << 20)
                .encode(bytes::Bytes::from(payload), &mut want)
                .unwrap();
            let mut got = bytes::BytesMut::new();
            put_value_frame(&mut got, value);
            assert_eq!(got, want, "value of {} bytes", value.len());
        }
    }

    #[test]
    fn server_codec_has_one_limit_per_direction() {
        use tokio_util::codec::{Decoder, Encoder};
        let mut codec = ServerCodec::new(16);
        let mut out = bytes::BytesMut::new();
        codec
            .encode(bytes::Bytes::from(vec![7u8; 1 << 20]), &mut out)
            .expect("an answer far over the request limit is sent");
        assert_eq!(out.len(), 4 + (1 << 20));
        let mut input = bytes::BytesMut::from(&[0u8, 0, 0, 17][..]);
        let err = codec.decode(&mut input).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn server_codec_knows_a_frame_whose_payload_has_not_come() {
        use tokio_util::codec::Decoder;
        let mut codec = ServerCodec::new(1024);
        let mut input = bytes::BytesMut::new();
        assert!(codec.decode(&mut input).unwrap().is_none());
        assert!(!codec.mid_frame(), "nothing read yet");
        // Part of a prefix stays in the buffer.
        input.extend_from_slice(&[0, 0]);
        assert!(codec.decode(&mut input).unwrap().is_none());
        assert!(!codec.mid_frame());
        assert_eq!(input.len(), 2);
        // The whole prefix leaves the buffer: mid-frame, with an empty buffer.
        input.extend_from_slice(&[0, 3]);
        assert!(codec.decode(&mut input).unwrap().is_none());
        assert!(input.is_empty());
        assert!(codec.mid_frame(), "a prefix with no payload is mid-frame");
        input.extend_from_slice(&[1, 2]);
        assert!(codec.decode(&mut input).unwrap().is_none());
        assert!(codec.mid_frame());
        input.extend_from_slice(&[3]);
        assert_eq!(&codec.decode(&mut input).unwrap().unwrap()[..], &[1, 2, 3]);
        assert!(!codec.mid_frame(), "between frames again");
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = encode(&Request::List).unwrap();
        bytes.push(0);
        let err = decode::<Request>(&bytes).unwrap_err();
        assert!(
            matches!(err, CodecError::TrailingBytes { extra: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn truncated_payload_is_an_error() {
        let bytes = encode(&Request::Get(Get { name: "ABC".into() })).unwrap();
        for cut in 0..bytes.len() {
            assert!(decode::<Request>(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn read_frame_checks_the_limit_before_reading() {
        let mut input: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        let err = read_frame(&mut input, 1024).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("exceeds the limit"), "{err}");
    }

    #[test]
    fn read_frame_distinguishes_clean_and_torn_close() {
        let mut empty: &[u8] = &[];
        assert!(read_frame(&mut empty, 16).unwrap().is_none());
        let mut torn: &[u8] = &[0, 0];
        assert!(read_frame(&mut torn, 16).is_err());
        let mut short: &[u8] = &[0, 0, 0, 5, 1, 2];
        assert!(read_frame(&mut short, 16).is_err());
    }
}
