//! The floor: what a `get` costs when the server does no work at all.
//!
//! [`Floor`] is a minimal in-process server on a Unix socket that speaks
//! the same length-prefixed frames as fluxd but never decodes them: it
//! answers the first frame of a connection with a pre-encoded `Welcome`
//! and every later frame with one pre-encoded `Value` frame — the exact
//! bytes fluxd would send for the benchmark's value. The client is the same
//! [`ProtocolTarget`] used for fluxd, so fluxd / floor is the daemon's own
//! cost (decode, lookup, encode, tokio session) over the socket's.
//!
//! It runs on its own multi-thread tokio runtime with as many workers as
//! CPUs, like fluxd's default runtime, and reads with one buffered `read`
//! per batch of bytes (as tokio-util's framing does in fluxd).

use crate::fluxd::short_tempdir;
use crate::load::{Conn, Target};
use anyhow::{Context, Result};
use flux_protocol::codec;
use flux_protocol::message::{PROTOCOL_VERSION, Response, Scope, Welcome};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

/// A running floor server; stops when dropped.
#[derive(Debug)]
pub struct Floor {
    rt: Option<tokio::runtime::Runtime>,
    _dir: tempfile::TempDir,
    socket: PathBuf,
}

impl Floor {
    /// Starts a floor server that answers every request with `value`.
    pub fn start(value: &str) -> Result<Self> {
        let dir = short_tempdir("fxf")?;
        let socket = dir.path().join("floor.sock");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("floor")
            .build()?;
        let welcome = Arc::new(frame(&Response::Welcome(Welcome {
            version: PROTOCOL_VERSION,
            server: "floor/0".into(),
            scope: Scope::Project("floor".into()),
        }))?);
        let reply = Arc::new(frame(&Response::Value(value.into()))?);
        let listener = {
            let _guard = rt.enter();
            UnixListener::bind(&socket)
                .with_context(|| format!("cannot bind {}", socket.display()))?
        };
        rt.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, welcome.clone(), reply.clone()));
            }
        });
        Ok(Self {
            rt: Some(rt),
            _dir: dir,
            socket,
        })
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// A whole frame (prefix and payload) for a response.
fn frame(resp: &Response) -> Result<Vec<u8>> {
    let payload = codec::encode(resp)?;
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&payload);
    Ok(out)
}

async fn serve(mut stream: UnixStream, welcome: Arc<Vec<u8>>, reply: Arc<Vec<u8>>) {
    let mut buf = vec![0u8; 8 * 1024];
    let (mut start, mut end) = (0usize, 0usize);
    let mut greeted = false;
    loop {
        // Answer every complete frame in the buffer.
        while end - start >= 4 {
            let len = u32::from_be_bytes(buf[start..start + 4].try_into().expect("4 bytes"));
            let len = len as usize;
            if len > flux_protocol::limits::MAX_REQUEST_FRAME_LEN {
                return;
            }
            if end - start < 4 + len {
                break;
            }
            start += 4 + len;
            let answer = if greeted { &reply } else { &welcome };
            greeted = true;
            if stream.write_all(answer).await.is_err() {
                return;
            }
        }
        // Compact, grow if a frame does not fit, then read more.
        if start == end {
            (start, end) = (0, 0);
        } else if start > 0 {
            buf.copy_within(start..end, 0);
            (start, end) = (0, end - start);
        }
        if end == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match stream.read(&mut buf[end..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => end += n,
        }
    }
}

/// Connections through `flux_protocol::blocking::Client`, to fluxd or to the
/// floor.
#[derive(Debug)]
pub struct ProtocolTarget {
    pub name: &'static str,
    pub socket: PathBuf,
}

impl Target for ProtocolTarget {
    fn name(&self) -> &'static str {
        self.name
    }

    fn connect(&self) -> Result<Box<dyn Conn>> {
        let client = flux_protocol::blocking::Client::connect(&self.socket)
            .with_context(|| format!("{}: cannot connect", self.name))?;
        Ok(Box::new(ProtocolConn(client)))
    }
}

struct ProtocolConn(flux_protocol::blocking::Client);

impl Conn for ProtocolConn {
    fn get(&mut self, key: &str, out: &mut Vec<u8>) -> Result<()> {
        let v = self.0.get(key)?;
        out.clear();
        out.extend_from_slice(v.expose().as_bytes());
        Ok(())
    }
}
