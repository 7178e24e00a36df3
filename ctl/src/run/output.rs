//! The pipes between a masked child and fluxctl's own stdout and stderr.
//!
//! Each stream is one pipe for the whole run: every child (a restart
//! included) writes into the same pipe, so one [`Masker`] sees the whole
//! stream. Per stream, a reader thread reads the pipe and a writer thread
//! masks and writes what it read; the writer lets a held, undecided tail
//! go after [`QUIET`] without new bytes, so a prompt or a progress line is
//! not held back for long.
//!
//! When the last child has exited, the writers stop at the end of the
//! pipe, when it goes quiet, or [`MAX_DRAIN`] later at the latest (a
//! process the child left behind may hold the pipe open for ever).
//!
//! When fluxctl's own stdout is closed (`… | head`), the reader stops
//! reading and closes its end, so the child's next write to it fails as
//! it would have without fluxctl in between.

use super::mask::{Masker, Patterns};
use nix::fcntl::OFlag;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// How long a held tail may wait for the rest of a value.
pub(crate) const QUIET: Duration = Duration::from_millis(200);

/// How long the output of a child that exited may keep coming: a process
/// it left behind that keeps writing into the pipe must not keep fluxctl
/// from exiting.
const MAX_DRAIN: Duration = Duration::from_secs(2);

/// Bytes read from a pipe at a time.
const READ_SIZE: usize = 16 * 1024;

enum Msg {
    Data(Zeroizing<Vec<u8>>),
    /// Every write end is closed.
    Eof,
    /// The child is gone: stop at the next quiet moment even if some
    /// process it left behind still holds the pipe.
    Closing,
}

#[derive(Debug, Clone, Copy)]
enum Sink {
    Stdout,
    Stderr,
}

impl Sink {
    fn write(self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()
            }
            Self::Stderr => std::io::stderr().lock().write_all(bytes),
        }
    }
}

#[derive(Debug)]
struct Stream {
    write_end: OwnedFd,
    tx: Sender<Msg>,
    writer: JoinHandle<()>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Data(_) => "Data(<bytes>)",
            Self::Eof => "Eof",
            Self::Closing => "Closing",
        })
    }
}

/// The masked stdout and stderr of a run.
#[derive(Debug)]
pub(crate) struct Filter {
    stdout: Stream,
    stderr: Stream,
}

impl Filter {
    /// Opens the two pipes and starts their threads.
    pub(crate) fn start(patterns: Arc<Mutex<Patterns>>) -> std::io::Result<Self> {
        Ok(Self {
            stdout: stream(Sink::Stdout, patterns.clone())?,
            stderr: stream(Sink::Stderr, patterns)?,
        })
    }

    /// A stdout and a stderr for the next child.
    pub(crate) fn stdio(&self) -> std::io::Result<(Stdio, Stdio)> {
        Ok((
            Stdio::from(self.stdout.write_end.try_clone()?),
            Stdio::from(self.stderr.write_end.try_clone()?),
        ))
    }

    /// After the last child exited: lets its output drain (until the pipes
    /// close, or go quiet when it left a process holding them) and waits
    /// until all of it is written.
    pub(crate) fn finish(self) {
        let mut writers = Vec::new();
        for stream in [self.stdout, self.stderr] {
            drop(stream.write_end);
            let _ = stream.tx.send(Msg::Closing);
            writers.push(stream.writer);
        }
        for writer in writers {
            let _ = writer.join();
        }
    }
}

fn stream(sink: Sink, patterns: Arc<Mutex<Patterns>>) -> std::io::Result<Stream> {
    let (read_end, write_end) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let (tx, rx) = channel();
    let broken = Arc::new(AtomicBool::new(false));
    {
        let tx = tx.clone();
        let broken = broken.clone();
        std::thread::Builder::new()
            .name("run-read".into())
            .spawn(move || read_loop(read_end, &tx, &broken))?;
    }
    let writer = std::thread::Builder::new()
        .name("run-mask".into())
        .spawn(move || write_loop(&rx, sink, &patterns, &broken))?;
    Ok(Stream {
        write_end,
        tx,
        writer,
    })
}

fn read_loop(read_end: OwnedFd, tx: &Sender<Msg>, broken: &AtomicBool) {
    let mut pipe = std::fs::File::from(read_end);
    loop {
        let mut buf = Zeroizing::new(vec![0; READ_SIZE]);
        match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if broken.load(Ordering::Relaxed) {
                    // Closing the read end makes the child's next write
                    // fail (SIGPIPE), as writing to the closed stdout would.
                    break;
                }
                buf.truncate(n);
                if tx.send(Msg::Data(buf)).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = tx.send(Msg::Eof);
}

fn write_loop(rx: &Receiver<Msg>, sink: Sink, patterns: &Mutex<Patterns>, broken: &AtomicBool) {
    let mut masker = Masker::default();
    // Since when the child is gone.
    let mut closing: Option<Instant> = None;
    let mut out = Vec::new();
    let emit = |out: &mut Vec<u8>| {
        if !out.is_empty() && !broken.load(Ordering::Relaxed) && sink.write(out).is_err() {
            broken.store(true, Ordering::Relaxed);
        }
        out.clear();
    };
    let lock = || patterns.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let msg = if masker.holding() || closing.is_some() {
            match rx.recv_timeout(QUIET) {
                Ok(msg) => msg,
                Err(RecvTimeoutError::Timeout) => {
                    masker.flush(&lock(), &mut out);
                    emit(&mut out);
                    if closing.is_some() {
                        return;
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => Msg::Eof,
            }
        } else {
            rx.recv().unwrap_or(Msg::Eof)
        };
        match msg {
            Msg::Data(chunk) => {
                masker.feed(&lock(), &chunk, &mut out);
                if closing.is_some_and(|since| since.elapsed() > MAX_DRAIN) {
                    masker.flush(&lock(), &mut out);
                    emit(&mut out);
                    return;
                }
                emit(&mut out);
            }
            Msg::Eof => {
                masker.flush(&lock(), &mut out);
                emit(&mut out);
                return;
            }
            Msg::Closing => closing = Some(Instant::now()),
        }
    }
}
