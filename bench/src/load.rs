//! The load client shared by every `get` target: blocking, one thread per
//! connection, pre-encoded bytes, no async runtime, fixed duration.
//!
//! The client is meant to cost as little as the machine allows, and the
//! same for every target, so a ratio between two servers is about the
//! servers. Each target gives the exact bytes of one request and of its
//! answer ([`Exchange`]): a `Get` frame and the `Value` frame fluxd sends,
//! or a RESP `GET` and its bulk string. Each connection is a blocking
//! `std::os::unix::net::UnixStream` on its own OS thread; a round is one
//! `write_all` of the pre-encoded request(s), then reads of exactly the
//! expected number of bytes into a buffer reused for the whole run, each
//! chunk compared byte for byte with the expected answer as it arrives,
//! then one clock reading (the end of a round is the start of the next).
//! Per request that is one `write` and (almost always) one `read` system
//! call, no allocation (the latency samples are reserved up front; a
//! longer run than foreseen grows the vector by doubling), no parsing.
//! `bench/c/getload.c` is the same client in C, and `flux-bench
//! client-check` compares the two on the floor server.
//!
//! Two shapes: closed loop (`depth` 1: one request in flight per
//! connection, the next sent when the answer is in) and pipelined (`depth`
//! N: N request frames written at once, then the N answers read, repeat —
//! what a busy function runtime sharing one connection produces).
//!
//! The driver connects every client, warms each up, releases them together
//! through a barrier, and every client then runs rounds back to back until
//! one deadline, the run's duration after the first thread passed the
//! barrier (the round under way at the deadline is finished and counted):
//! a fixed duration, not a fixed count, so a server that serves some
//! connections before others is not billed for the wait of the last one —
//! its unfairness shows in the per-client rates instead. Throughput is all
//! requests over the wall time from the release to the last thread's
//! finish; each client's rate is its requests over its own timed time
//! (from when its thread passed the barrier to its last answer); latency
//! percentiles are over all rounds. The CPU time of the server process and
//! of this process (the client) is read from `/proc` at release and after
//! the last thread finished ([`crate::cpu`]).
//!
//! A caller may cut one measurement into slices and interleave the targets
//! slice by slice, then [`LoadResult::merge`] them: on a shared machine a
//! burst of outside load then hits every target a little instead of one
//! target a lot. Every slice opens its own connections; a merged result
//! keeps one rate per connection and slice.
//!
//! An answer that differs from the expected bytes is a correctness failure
//! the caller turns into a non-zero exit; the target describes what came
//! instead ([`Target::explain`]) by kind, length and hash only, never by
//! its bytes. Every read and write is bounded by a timeout.

use crate::stats::Latency;
use anyhow::Result;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Barrier, OnceLock};
use std::time::{Duration, Instant};

/// No healthy server takes this long to answer a `get`: a read or write
/// that does is a failure, not a hang.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Something that serves `get` over a Unix socket.
pub trait Target: Sync {
    /// The name shown in the table (`fluxd`, `redis`, `floor`).
    fn name(&self) -> &'static str;
    /// Opens a blocking connection, handshake done.
    fn connect(&self) -> Result<UnixStream>;
    /// The bytes of a request for `key` and of its answer when the value is
    /// `value`.
    fn exchange(&self, key: &str, value: &str) -> Result<Exchange>;
    /// The server process, whose CPU time is measured (`None`: not a
    /// process of its own).
    fn pid(&self) -> Option<u32>;
    /// What `got` — bytes received where an answer should start, which are
    /// not the expected ones — is, without showing a value.
    fn explain(&self, got: &[u8]) -> String;
}

/// One request and its exact answer, pre-encoded.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub request: Vec<u8>,
    pub reply: Vec<u8>,
    /// The expected answer in words (kind, length, hash; never the value).
    pub what: String,
}

/// How evenly the clients of a run were served: the slowest, average and
/// fastest client's requests per second (one client = one connection for
/// one slice).
#[derive(Debug, Clone, Copy, Default)]
pub struct Spread {
    pub min: f64,
    pub mean: f64,
    pub max: f64,
}

impl Spread {
    /// Of per-client rates (zeros when there are none).
    pub fn of(rates: &[f64]) -> Self {
        if rates.is_empty() {
            return Self::default();
        }
        Self {
            min: rates.iter().copied().fold(f64::INFINITY, f64::min),
            mean: rates.iter().sum::<f64>() / rates.len() as f64,
            max: rates.iter().copied().fold(0.0, f64::max),
        }
    }

    /// The slowest client over the average one (1 = perfectly even; NaN
    /// when nothing was served).
    pub fn min_over_mean(&self) -> f64 {
        if self.mean > 0.0 {
            self.min / self.mean
        } else {
            f64::NAN
        }
    }
}

/// What one load run (or several slices of one, [`LoadResult::merge`])
/// measured.
#[derive(Debug, Clone, Default)]
pub struct LoadResult {
    pub requests: u64,
    /// Timed wall-clock seconds (summed over merged slices).
    pub wall_secs: f64,
    /// Every round's latency (ns): one request, or `depth` of them.
    pub samples: Vec<u64>,
    /// Each client's requests per second over its own timed time.
    pub client_rps: Vec<f64>,
    pub throughput_rps: f64,
    pub clients: Spread,
    pub latency: Latency,
    /// CPU clock ticks of the server process while timed (`None` when it
    /// could not be read, or the server is not a process of its own).
    pub server_ticks: Option<u64>,
    /// CPU clock ticks of this process (the load client) while timed.
    pub client_ticks: Option<u64>,
    /// µs of server CPU per request (NaN when not measured).
    pub server_cpu_us: f64,
    /// µs of client CPU per request (NaN when not measured).
    pub client_cpu_us: f64,
    pub errors: u64,
    pub wrong_values: u64,
    /// The first problem, described without any value.
    pub first_problem: Option<String>,
}

/// How one load run is shaped.
#[derive(Debug, Clone, Copy)]
pub struct LoadSpec {
    pub clients: usize,
    /// Requests in flight per connection: 1 = closed loop.
    pub depth: usize,
    /// Untimed rounds per client before the release.
    pub warmup: u64,
    /// How long every client runs after the release.
    pub duration: Duration,
}

#[derive(Default)]
struct ThreadOutcome {
    samples: Vec<u64>,
    requests: u64,
    /// From this thread's release to its last round's end.
    timed: Duration,
    finished: Option<Instant>,
    errors: u64,
    wrong: u64,
    problem: Option<String>,
}

/// Runs `spec` against `target` with the pre-encoded `exchange`: connects
/// `spec.clients` connections, warms them up, runs them for
/// `spec.duration`, closes them.
pub fn run(target: &dyn Target, spec: LoadSpec, exchange: &Exchange) -> Result<LoadResult> {
    let clients = spec.clients.max(1);
    let depth = spec.depth.max(1);
    let request = exchange.request.repeat(depth);
    let reply = exchange.reply.repeat(depth);
    let mut streams = Vec::with_capacity(clients);
    for _ in 0..clients {
        let stream = target.connect()?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        streams.push(stream);
    }
    // Room for every round at 250,000 rounds per second across all
    // clients, so the timed loop does not reallocate in practice.
    let expected_rounds =
        (spec.duration.as_secs_f64() * 250_000.0 / clients as f64) as usize + 1024;
    let job = Job {
        target,
        request: &request,
        reply: &reply,
        depth: depth as u64,
        one_reply: exchange.reply.len(),
        what: &exchange.what,
        warmup: spec.warmup,
        duration: spec.duration,
        expected_rounds,
        release: OnceLock::new(),
    };
    let barrier = Barrier::new(clients + 1);
    let server_ticks = || target.pid().and_then(|p| crate::cpu::ticks(p).ok());
    let (outcomes, started, cpu_before, cpu_after) = std::thread::scope(|s| {
        let handles: Vec<_> = streams
            .into_iter()
            .map(|stream| {
                let (job, barrier) = (&job, &barrier);
                std::thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn_scoped(s, move || job.drive(stream, barrier))
                    .expect("cannot start a load thread")
            })
            .collect();
        barrier.wait();
        let started = *job.release.get_or_init(Instant::now);
        let before = (server_ticks(), crate::cpu::own_ticks().ok());
        let outcomes: Vec<ThreadOutcome> = handles
            .into_iter()
            .map(|h| h.join().expect("load thread panicked"))
            .collect();
        let after = (server_ticks(), crate::cpu::own_ticks().ok());
        (outcomes, started, before, after)
    });
    let mut result = LoadResult {
        samples: Vec::with_capacity(outcomes.iter().map(|o| o.samples.len()).sum()),
        ..LoadResult::default()
    };
    let mut last = started;
    for o in outcomes {
        result.samples.extend_from_slice(&o.samples);
        result.requests += o.requests;
        let secs = o.timed.as_secs_f64();
        result.client_rps.push(if secs > 0.0 {
            o.requests as f64 / secs
        } else {
            0.0
        });
        last = last.max(o.finished.unwrap_or(started));
        result.errors += o.errors;
        result.wrong_values += o.wrong;
        if result.first_problem.is_none() {
            result.first_problem = o.problem;
        }
    }
    result.wall_secs = last.duration_since(started).as_secs_f64();
    let delta = |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?));
    result.server_ticks = delta(cpu_before.0, cpu_after.0);
    result.client_ticks = delta(cpu_before.1, cpu_after.1);
    result.finish();
    Ok(result)
}

impl LoadResult {
    /// Several slices of the same load as one result: requests over the
    /// summed wall time, percentiles over all samples, one rate per client
    /// of every slice, CPU ticks summed.
    pub fn merge(slices: Vec<LoadResult>) -> Self {
        let sum = |a: Option<u64>, b: Option<u64>| Some(a? + b?);
        let mut out = LoadResult {
            server_ticks: Some(0),
            client_ticks: Some(0),
            ..LoadResult::default()
        };
        for s in slices {
            out.requests += s.requests;
            out.wall_secs += s.wall_secs;
            out.samples.extend_from_slice(&s.samples);
            out.client_rps.extend_from_slice(&s.client_rps);
            out.server_ticks = sum(out.server_ticks, s.server_ticks);
            out.client_ticks = sum(out.client_ticks, s.client_ticks);
            out.errors += s.errors;
            out.wrong_values += s.wrong_values;
            if out.first_problem.is_none() {
                out.first_problem = s.first_problem;
            }
        }
        out.finish();
        out
    }

    fn finish(&mut self) {
        self.throughput_rps = if self.wall_secs > 0.0 {
            self.requests as f64 / self.wall_secs
        } else {
            0.0
        };
        self.clients = Spread::of(&self.client_rps);
        self.latency = Latency::from_nanos(&mut self.samples);
        let per_request = |t: Option<u64>| match t {
            Some(t) => crate::cpu::us_per_request(t, self.requests),
            None => f64::NAN,
        };
        self.server_cpu_us = per_request(self.server_ticks);
        self.client_cpu_us = per_request(self.client_ticks);
    }
}

/// What every client thread of one run shares.
struct Job<'a> {
    target: &'a dyn Target,
    /// `depth` request frames back to back.
    request: &'a [u8],
    /// Their `depth` answers back to back.
    reply: &'a [u8],
    /// Requests per round.
    depth: u64,
    one_reply: usize,
    what: &'a str,
    warmup: u64,
    duration: Duration,
    /// Latency samples to reserve per client.
    expected_rounds: usize,
    /// When the first thread passed the barrier: the timed part's start.
    release: OnceLock<Instant>,
}

/// Why a round failed.
enum Failure {
    /// An I/O error, a timeout or a close.
    Io(String),
    /// The answer's bytes differ from the expected ones from byte `at` of
    /// the round's answers; `got` bytes were received.
    Wrong { at: usize, got: usize },
}

impl Job<'_> {
    fn drive(&self, mut stream: UnixStream, barrier: &Barrier) -> ThreadOutcome {
        let mut buf = vec![0u8; self.reply.len()];
        let mut out = ThreadOutcome {
            samples: Vec::with_capacity(self.expected_rounds),
            ..ThreadOutcome::default()
        };
        let mut broken = false;
        for _ in 0..self.warmup {
            if let Err(f) = self.round(&mut stream, &mut buf) {
                self.record(f, &mut stream, &buf, &mut out, "warm-up");
                broken = true;
                break;
            }
        }
        barrier.wait();
        // Every client stops at the same deadline, counted from the first
        // thread past the barrier; a thread woken later times itself from
        // its own start.
        let mine = Instant::now();
        let deadline = *self.release.get_or_init(|| mine) + self.duration;
        let mut t = mine;
        let mut rounds = 0u64;
        if !broken {
            loop {
                let outcome = self.round(&mut stream, &mut buf);
                let done = Instant::now();
                if let Err(f) = outcome {
                    self.record(f, &mut stream, &buf, &mut out, "timed");
                    break;
                }
                out.samples.push(done.duration_since(t).as_nanos() as u64);
                rounds += 1;
                t = done;
                if done >= deadline {
                    break;
                }
            }
        }
        let finished = Instant::now();
        out.requests = rounds * self.depth;
        out.timed = finished.duration_since(mine);
        out.finished = Some(finished);
        out
    }

    /// One write of the request(s), then exactly the expected answer(s).
    fn round(&self, stream: &mut UnixStream, buf: &mut [u8]) -> Result<(), Failure> {
        stream
            .write_all(self.request)
            .map_err(|e| Failure::Io(format!("write failed: {e}")))?;
        let want = self.reply.len();
        let mut got = 0;
        while got < want {
            match stream.read(&mut buf[got..want]) {
                Ok(0) => {
                    return Err(Failure::Io(format!(
                        "connection closed after {got} of {want} answer bytes"
                    )));
                }
                Ok(n) => {
                    let chunk = got..got + n;
                    if buf[chunk.clone()] != self.reply[chunk.clone()] {
                        let off = buf[chunk.clone()]
                            .iter()
                            .zip(&self.reply[chunk])
                            .position(|(a, b)| a != b)
                            .unwrap_or(0);
                        return Err(Failure::Wrong {
                            at: got + off,
                            got: got + n,
                        });
                    }
                    got += n;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(Failure::Io(format!(
                        "read failed after {got} of {want} answer bytes: {e}"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Counts a failed round and keeps the first description.
    fn record(
        &self,
        f: Failure,
        stream: &mut UnixStream,
        buf: &[u8],
        out: &mut ThreadOutcome,
        phase: &str,
    ) {
        let text = match f {
            Failure::Io(e) => {
                out.errors += 1;
                format!("{phase} get on {}: {e}", self.target.name())
            }
            Failure::Wrong { at, got } => {
                out.wrong += 1;
                // The answer that went wrong, from its first byte, plus
                // what else arrives promptly, so the target can say what
                // it is (an error, another value, a frame of another
                // length).
                let index = at / self.one_reply;
                let mut bytes = buf[index * self.one_reply..got].to_vec();
                read_more(stream, &mut bytes, self.one_reply + 64 * 1024);
                format!(
                    "{phase} get on {}: answer {} of the round is not the expected {} (differs from byte {}): got {}",
                    self.target.name(),
                    index + 1,
                    self.what,
                    at - index * self.one_reply,
                    self.target.explain(&bytes)
                )
            }
        };
        out.problem.get_or_insert(text);
    }
}

/// Appends what arrives within 200 ms, up to `cap` bytes in all.
fn read_more(stream: &mut UnixStream, bytes: &mut Vec<u8>, cap: usize) {
    if stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .is_err()
    {
        return;
    }
    let mut chunk = [0u8; 8192];
    while bytes.len() < cap {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A target whose server answers every `PING\n` line with `reply`.
    struct Echo {
        socket: std::path::PathBuf,
        reply: Vec<u8>,
    }

    impl Target for Echo {
        fn name(&self) -> &'static str {
            "echo"
        }
        fn connect(&self) -> Result<UnixStream> {
            Ok(UnixStream::connect(&self.socket)?)
        }
        fn exchange(&self, _key: &str, _value: &str) -> Result<Exchange> {
            Ok(Exchange {
                request: b"PING\n".to_vec(),
                reply: self.reply.clone(),
                what: format!("{}-byte answer", self.reply.len()),
            })
        }
        fn pid(&self) -> Option<u32> {
            None
        }
        fn explain(&self, got: &[u8]) -> String {
            format!("{} bytes", got.len())
        }
    }

    /// Serves every connection on a thread of its own; the `wrong_at`-th
    /// line overall (1-based) gets an answer with its last byte changed.
    fn serve(listener: UnixListener, reply: Vec<u8>, wrong_at: Option<u64>) {
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let (reply, seen) = (reply.clone(), seen.clone());
                std::thread::spawn(move || {
                    let mut line = [0u8; 5];
                    while stream.read_exact(&mut line).is_ok() {
                        let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                        let mut answer = reply.clone();
                        if Some(n) == wrong_at {
                            *answer.last_mut().unwrap() ^= 1;
                        }
                        if stream.write_all(&answer).is_err() {
                            break;
                        }
                    }
                });
            }
        });
    }

    fn spec(clients: usize, depth: usize) -> LoadSpec {
        LoadSpec {
            clients,
            depth,
            warmup: 2,
            duration: Duration::from_millis(50),
        }
    }

    fn echo() -> (tempfile::TempDir, Echo) {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("s");
        let target = Echo {
            socket,
            reply: b"PONG-PONG\n".to_vec(),
        };
        (dir, target)
    }

    #[test]
    fn runs_for_the_duration_and_counts_closed_and_pipelined_rounds() {
        let (_dir, target) = echo();
        serve(
            UnixListener::bind(&target.socket).unwrap(),
            target.reply.clone(),
            None,
        );
        let ex = target.exchange("k", "v").unwrap();
        let started = Instant::now();
        let closed = run(&target, spec(3, 1), &ex).unwrap();
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert!(closed.wall_secs >= 0.05, "{}", closed.wall_secs);
        assert_eq!(closed.errors + closed.wrong_values, 0);
        assert!(closed.requests > 0);
        assert_eq!(closed.requests, closed.samples.len() as u64);
        assert_eq!(closed.client_rps.len(), 3);
        let c = closed.clients;
        assert!(0.0 < c.min && c.min <= c.mean && c.mean <= c.max, "{c:?}");
        assert!(closed.server_cpu_us.is_nan());
        let piped = run(&target, spec(1, 16), &ex).unwrap();
        assert_eq!(piped.errors + piped.wrong_values, 0);
        assert_eq!(piped.requests, 16 * piped.samples.len() as u64);
        let merged = LoadResult::merge(vec![closed.clone(), closed.clone()]);
        assert_eq!(merged.requests, 2 * closed.requests);
        assert_eq!(merged.client_rps.len(), 6);
        assert!((merged.throughput_rps - closed.throughput_rps).abs() < 1e-6);
    }

    #[test]
    fn a_wrong_answer_is_counted_and_explained() {
        let (_dir, target) = echo();
        // Two warm-up rounds of 4, then the 3rd answer of the next round.
        serve(
            UnixListener::bind(&target.socket).unwrap(),
            target.reply.clone(),
            Some(11),
        );
        let ex = target.exchange("k", "v").unwrap();
        let r = run(&target, spec(1, 4), &ex).unwrap();
        assert_eq!(r.wrong_values, 1);
        let p = r.first_problem.unwrap();
        assert!(
            p.contains("answer 3 of the round") && p.contains("byte 9"),
            "{p}"
        );
    }

    #[test]
    fn spread_of_client_rates() {
        let s = Spread::of(&[10.0, 20.0, 30.0]);
        assert_eq!((s.min, s.mean, s.max), (10.0, 20.0, 30.0));
        assert_eq!(s.min_over_mean(), 0.5);
        assert!(Spread::of(&[]).min_over_mean().is_nan());
    }
}
