//! `fluxctl run --watch` and `--mask`, through the real binaries: a value
//! set again unchanged restarts nothing, a real change restarts once, a
//! burst of changes within the debounce time restarts once, a child that
//! ignores SIGTERM is killed after the grace period, `--signal` signals
//! instead, a deleted secret stops the child unless `--on-delete keep`,
//! the child outlives a fluxd restart, exit statuses and signals pass
//! through, and `--mask` masks values however the child's writes cut them.
//!
//! Nothing here asserts speed: counts and eventual states, with generous
//! deadlines. Where a test must know that fluxctl has weighed a change and
//! decided not to restart, it waits for the line fluxctl prints saying so.
//! `measure_rotation_to_restarted_child` (ignored) measures the time from
//! `fluxctl secrets set` to the restarted child, for README.md.

use flux_e2e::{TestDaemon, assert_no_secret, terminate};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long any eventual state may take: far beyond what it needs.
const DEADLINE: Duration = Duration::from_secs(30);

/// The child every watch test runs: it appends the value it was started
/// with to `$STARTS`, then sleeps (dying on SIGTERM).
const RECORD: &str = r#"echo "$TOKEN" >> "$STARTS"; exec sleep 600"#;

/// Polls `cond` until it holds; fails after [`DEADLINE`].
fn within(what: &str, cond: impl FnMut() -> bool) {
    flux_e2e::eventually_within(DEADLINE, what, cond)
}

/// A daemon with project `app` holding TOKEN=`token`.
fn daemon(token: &str) -> TestDaemon {
    let d = TestDaemon::start();
    d.create_project("app");
    set(&d, "TOKEN", token);
    d
}

fn set(d: &TestDaemon, name: &str, value: &str) {
    d.ctl_ok(&["secrets", "set", name, value, "-p", "app"]);
}

/// `fluxd`'s count of answered `op` requests on project `app`.
fn requests(d: &TestDaemon, op: &str) -> u64 {
    let text = d.control().metrics().unwrap();
    let key = format!("flux_requests_total{{project=\"app\",op=\"{op}\",result=\"ok\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// A `fluxctl run` in the background, its stdout and stderr collected.
struct Run {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    starts: PathBuf,
}

impl Run {
    /// `fluxctl run -p app FLAGS -- sh -c SCRIPT`, with `$STARTS` a file
    /// in the daemon's folder.
    fn start(d: &TestDaemon, flags: &[&str], script: &str) -> Self {
        let starts = d.dir().join("starts");
        let _ = std::fs::remove_file(&starts);
        let mut cmd = d.ctl();
        cmd.args(["run", "-p", "app"])
            .args(flags)
            .args(["--", "sh", "-c", script])
            .env("STARTS", &starts)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Self::spawn(cmd, starts)
    }

    fn spawn(mut cmd: std::process::Command, starts: PathBuf) -> Self {
        let mut child = cmd.spawn().expect("start fluxctl run");
        let collect = |stream: Box<dyn Read + Send>| {
            let text = Arc::new(Mutex::new(String::new()));
            let sink = text.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 {
                    sink.lock().unwrap().push_str(&line);
                    line.clear();
                }
            });
            text
        };
        let stdout = collect(Box::new(child.stdout.take().unwrap()));
        let stderr = collect(Box::new(child.stderr.take().unwrap()));
        Self {
            child,
            stdout,
            stderr,
            starts,
        }
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// How many lines of stderr contain `text`.
    fn said(&self, text: &str) -> usize {
        self.stderr().lines().filter(|l| l.contains(text)).count()
    }

    /// Waits until stderr has said `text` `n` times.
    fn until_said(&self, text: &str, n: usize) {
        within(&format!("{n} × {text:?} on stderr"), || {
            self.said(text) >= n
        });
    }

    /// The values the child was started with, one per start.
    fn starts(&self) -> Vec<String> {
        std::fs::read_to_string(&self.starts)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Waits until the child has been started `n` times.
    fn until_started(&self, n: usize) {
        within(&format!("{n} starts"), || self.starts().len() >= n);
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Waits for fluxctl to exit.
    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "fluxctl run did not exit; stderr: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // SIGTERM, which fluxctl passes on to the child.
        terminate(&mut self.child, Duration::from_secs(10));
    }
}

/// Waits until fluxctl watches project `app`: its first read, then its
/// subscription and the read after it, answered.
fn until_watching(d: &TestDaemon) {
    within("fluxctl run --watch subscribed", || {
        requests(d, "subscribe") >= 1 && requests(d, "get_all") >= 2
    });
}

#[test]
fn a_value_set_again_unchanged_restarts_nothing() {
    let d = daemon("sk-first-value");
    let run = Run::start(&d, &["--watch"], RECORD);
    run.until_started(1);
    until_watching(&d);
    set(&d, "TOKEN", "sk-first-value");
    run.until_said("TOKEN set again with the same value", 1);
    set(&d, "TOKEN", "sk-first-value");
    run.until_said("TOKEN set again with the same value", 2);
    assert_eq!(run.starts(), ["sk-first-value"]);
    assert_eq!(run.said("restart"), 0, "{}", run.stderr());
}

#[test]
fn one_real_change_restarts_exactly_once() {
    let d = daemon("sk-first-value");
    let mut run = Run::start(&d, &["--watch"], RECORD);
    run.until_started(1);
    until_watching(&d);
    set(&d, "TOKEN", "sk-second-value");
    run.until_started(2);
    // The restarted child serves the new value.
    assert_eq!(run.starts(), ["sk-first-value", "sk-second-value"]);
    // Whatever came of that change has been decided once the same value
    // set again is weighed: no second restart.
    set(&d, "TOKEN", "sk-second-value");
    run.until_said("TOKEN set again with the same value", 1);
    assert_eq!(run.starts().len(), 2);
    assert_eq!(run.said("TOKEN changed in project app: restarting"), 1);
    assert_eq!(run.said("restarted `sh`"), 1);
    assert!(run.running());
}

#[test]
fn five_changes_within_the_debounce_window_restart_once() {
    let d = daemon("sk-value-0");
    let run = Run::start(&d, &["--watch", "--debounce", "3s"], RECORD);
    run.until_started(1);
    until_watching(&d);
    let mut client = d.client("app");
    for i in 1..=5 {
        client.set("TOKEN", format!("sk-value-{i}").into()).unwrap();
    }
    run.until_started(2);
    assert_eq!(run.starts(), ["sk-value-0", "sk-value-5"]);
    client.set("TOKEN", "sk-value-5".into()).unwrap();
    run.until_said("TOKEN set again with the same value", 1);
    assert_eq!(run.starts().len(), 2);
    assert_eq!(run.said("restarting"), 1, "{}", run.stderr());
}

#[test]
fn a_new_secret_restarts_nothing_and_comes_with_the_next_restart() {
    let d = daemon("sk-first-value");
    let script = r#"echo "$TOKEN ${NEW_ONE:-unset}" >> "$STARTS"; exec sleep 600"#;
    let run = Run::start(&d, &["--watch"], script);
    run.until_started(1);
    until_watching(&d);
    set(&d, "NEW_ONE", "sk-added-later");
    set(&d, "TOKEN", "sk-first-value");
    run.until_said("TOKEN set again with the same value", 1);
    assert_eq!(run.starts(), ["sk-first-value unset"]);
    assert_eq!(run.said("restart"), 0, "{}", run.stderr());
    set(&d, "TOKEN", "sk-second-value");
    run.until_started(2);
    assert_eq!(
        run.starts(),
        ["sk-first-value unset", "sk-second-value sk-added-later"]
    );
}

#[test]
fn a_child_that_ignores_sigterm_is_killed_after_the_grace_period() {
    let d = daemon("sk-first-value");
    // Only the first child ignores SIGTERM, so the test can end the second.
    let script = r#"if [ "$TOKEN" = sk-first-value ]; then trap "" TERM; fi
echo "$TOKEN" >> "$STARTS"; exec sleep 600"#;
    let mut run = Run::start(&d, &["--watch", "--grace", "1s"], script);
    run.until_started(1);
    until_watching(&d);
    let changed = Instant::now();
    set(&d, "TOKEN", "sk-second-value");
    run.until_started(2);
    assert!(
        changed.elapsed() >= Duration::from_secs(1),
        "the restart waited the grace period"
    );
    assert_eq!(run.starts(), ["sk-first-value", "sk-second-value"]);
    assert_eq!(
        run.said("did not exit within 1s of SIGTERM: sending SIGKILL"),
        1,
        "{}",
        run.stderr()
    );
    let old: i32 = run
        .stderr()
        .split("restarting `sh` (pid ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|pid| pid.parse().ok())
        .expect("the restart names the old pid");
    assert!(
        !std::path::Path::new(&format!("/proc/{old}")).exists(),
        "the old child is gone"
    );
    assert!(run.running());
}

#[test]
fn signal_mode_signals_the_child_instead_of_restarting() {
    let d = daemon("sk-first-value");
    let script = r#"trap 'echo "hup $TOKEN" >> "$STARTS"' HUP
echo "$TOKEN" >> "$STARTS"
while :; do sleep 0.05; done"#;
    let run = Run::start(&d, &["--watch", "--signal", "HUP"], script);
    run.until_started(1);
    until_watching(&d);
    set(&d, "TOKEN", "sk-second-value");
    run.until_started(2);
    // The same process, its environment as it was: it re-reads on HUP.
    assert_eq!(run.starts(), ["sk-first-value", "hup sk-first-value"]);
    set(&d, "TOKEN", "sk-second-value");
    run.until_said("TOKEN set again with the same value", 1);
    assert_eq!(run.starts().len(), 2, "one change, one signal");
    assert_eq!(run.said("sending SIGHUP to `sh`"), 1);
    assert_eq!(run.said("restart"), 0, "{}", run.stderr());
}

#[test]
fn a_deleted_secret_stops_the_child_unless_kept() {
    let d = daemon("sk-first-value");
    let mut run = Run::start(&d, &["--watch"], RECORD);
    run.until_started(1);
    until_watching(&d);
    d.ctl_ok(&["secrets", "delete", "TOKEN", "-p", "app"]);
    let status = run.wait();
    assert_eq!(status.code(), Some(3), "{}", run.stderr());
    assert_eq!(
        run.said("TOKEN deleted from project app: stopping `sh`"),
        1,
        "{}",
        run.stderr()
    );

    set(&d, "TOKEN", "sk-first-value");
    let before = requests(&d, "get_all");
    let mut run = Run::start(&d, &["--watch", "--on-delete", "keep"], RECORD);
    run.until_started(1);
    within("the second run watching", || {
        requests(&d, "get_all") >= before + 2
    });
    d.ctl_ok(&["secrets", "delete", "TOKEN", "-p", "app"]);
    run.until_said("keeps running with the value it was started with", 1);
    assert!(run.running());
    assert_eq!(run.starts(), ["sk-first-value"]);
    // Set again with another value: a change to what the child has.
    set(&d, "TOKEN", "sk-second-value");
    run.until_started(2);
    assert_eq!(run.starts(), ["sk-first-value", "sk-second-value"]);
    kill(run.pid(), Signal::SIGTERM).unwrap();
    let status = run.wait();
    assert_eq!(
        status.code(),
        Some(128 + 15),
        "killed by the SIGTERM passed on"
    );
}

#[test]
fn the_child_keeps_running_while_fluxd_restarts() {
    let mut d = daemon("sk-first-value");
    let mut run = Run::start(&d, &["--watch"], RECORD);
    run.until_started(1);
    until_watching(&d);
    d.stop();
    run.until_said("lost the connection to fluxd", 1);
    assert!(run.running());
    d.restart();
    run.until_said("watching project app again", 1);
    set(&d, "TOKEN", "sk-second-value");
    run.until_started(2);
    assert_eq!(run.starts(), ["sk-first-value", "sk-second-value"]);
    assert!(run.running());
}

#[test]
fn exit_status_signals_and_stdin_pass_through() {
    let d = daemon("sk-first-value");
    for flags in [&["--watch"][..], &["--mask"], &["--watch", "--mask"]] {
        let mut run = Run::start(&d, flags, "exit 7");
        assert_eq!(run.wait().code(), Some(7), "{flags:?}");
        let mut run = Run::start(&d, flags, "kill -KILL $$");
        assert_eq!(run.wait().code(), Some(128 + 9), "{flags:?}");
        // SIGTERM to fluxctl reaches the child.
        let mut run = Run::start(&d, flags, RECORD);
        run.until_started(1);
        kill(run.pid(), Signal::SIGTERM).unwrap();
        assert_eq!(run.wait().code(), Some(128 + 15), "{flags:?}");
        assert_eq!(run.starts(), ["sk-first-value"]);
    }
    // A command that cannot be run: the statuses `exec` would give.
    for flags in [&["--watch"][..], &["--mask"]] {
        let out = d
            .ctl()
            .args(["run", "-p", "app"])
            .args(flags)
            .args(["--", "/nonexistent/command"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(127), "{flags:?}");
    }
    // Ctrl-C signals the whole process group: both stop.
    let starts = d.dir().join("starts");
    let _ = std::fs::remove_file(&starts);
    let mut cmd = d.ctl();
    cmd.args(["run", "-p", "app", "--watch", "--", "sh", "-c", RECORD])
        .env("STARTS", &starts)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut run = Run::spawn(cmd, starts);
    run.until_started(1);
    killpg(run.pid(), Signal::SIGINT).unwrap();
    assert_eq!(run.wait().code(), Some(128 + 2));
    // stdin is the child's.
    let mut child = d
        .ctl()
        .args(["run", "-p", "app", "--watch", "--mask", "--"])
        .args(["sh", "-c", r#"read line; echo "got $line""#])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "got hello\n");
    assert!(out.status.success());
}

#[test]
fn without_watch_or_mask_fluxctl_becomes_the_command() {
    let d = daemon("sk-first-value");
    let child = d
        .ctl()
        .args(["run", "-p", "app", "--", "sh", "-c", "echo $$"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), pid.to_string());
}

/// A value no shorter than a pipe read, so that it is always split.
fn big_value() -> String {
    let mut x: u32 = 0x9e37_79b9;
    (0..40_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[(x % 36) as usize])
        })
        .collect()
}

#[test]
fn a_masked_value_split_across_two_writes_is_still_masked() {
    const TOKEN: &str = "sk-live-0123456789abcdef";
    let d = daemon(TOKEN);
    let big = big_value();
    d.client("app").set("BIG", big.clone().into()).unwrap();
    set(&d, "SHORT", "abc");
    // Each value in two writes of the child (shell builtins, microseconds
    // apart: far less than the 200 ms after which a held piece is let
    // go); BIG is also longer than what fluxctl reads from the pipe at a
    // time. Its halves come in plain variables of fluxctl's environment.
    let script = r#"for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
  printf 'token=sk-live-01234'; printf '56789abcdef\n'
done
printf %s "$BIG_A"; printf '%s\n' "$BIG_B"
printf 'sk-live-0123456' >&2; printf '789abcdef\n' >&2
echo "short=$SHORT"
exit 5"#;
    let out = d
        .ctl()
        .args(["run", "-p", "app", "--mask", "--", "sh", "-c", script])
        .env("BIG_A", &big[..20_000])
        .env("BIG_B", &big[20_000..])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5));
    assert_no_secret(&out.stdout, TOKEN, "masked stdout");
    assert_no_secret(&out.stderr, TOKEN, "masked stderr");
    assert_no_secret(&out.stdout, &big[..100], "masked stdout");
    assert_no_secret(&out.stdout, &big[big.len() - 100..], "masked stdout");
    let want = format!(
        "{}<redacted:BIG>\nshort=abc\n",
        "token=<redacted:TOKEN>\n".repeat(20)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("<redacted:TOKEN>\n"), "{err}");
    assert!(
        err.contains("--mask leaves the value of SHORT as it is"),
        "{err}"
    );
}

#[test]
fn a_masked_child_that_leaves_a_process_behind_still_ends_the_run() {
    let d = daemon("sk-first-value");
    // The background sleep holds the masked pipes open long after the
    // child exited.
    let pidfile = d.dir().join("left-behind");
    let script = r#"sleep 600 & echo $! > "$PIDFILE"; echo "token=$TOKEN"; exit 4"#;
    let out = d
        .ctl()
        .args(["run", "-p", "app", "--mask", "--", "sh", "-c", script])
        .env("PIDFILE", &pidfile)
        .output()
        .unwrap();
    let left: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = kill(Pid::from_raw(left), Signal::SIGKILL);
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "token=<redacted:TOKEN>\n"
    );
}

#[test]
fn watch_and_mask_together_mask_the_new_value_too() {
    let d = daemon("sk-first-value");
    let script = r#"echo "$TOKEN" >> "$STARTS"; echo "token=$TOKEN"; exec sleep 600"#;
    let run = Run::start(&d, &["--watch", "--mask"], script);
    run.until_started(1);
    until_watching(&d);
    set(&d, "TOKEN", "sk-second-value");
    run.until_started(2);
    within("both children's lines", || {
        run.stdout().lines().count() >= 2
    });
    assert_eq!(run.stdout(), "token=<redacted:TOKEN>\n".repeat(2));
}

/// Time from `fluxctl secrets set` to the restarted child running with
/// the new value, for README.md: `cargo test -p flux-e2e --test e2e
/// measure_rotation -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a test: run it with --ignored --nocapture"]
fn measure_rotation_to_restarted_child() {
    for debounce in ["300ms", "50ms"] {
        let d = daemon("sk-value-0");
        let mut child = d
            .ctl()
            .args(["run", "-p", "app", "--watch", "--debounce", debounce, "--"])
            .args(["sh", "-c", r#"echo "$TOKEN"; exec sleep 600"#])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "sk-value-0");
        until_watching(&d);
        let mut times = Vec::new();
        for i in 1..=20 {
            let value = format!("sk-value-{i}");
            let start = Instant::now();
            set(&d, "TOKEN", &value);
            assert_eq!(lines.next().unwrap().unwrap(), value);
            times.push(start.elapsed());
        }
        terminate(&mut child, Duration::from_secs(10));
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "--debounce {debounce}: set → restarted child with the new value over {} rotations: min {:.0} ms, median {:.0} ms, max {:.0} ms",
            times.len(),
            ms(times[0]),
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1])
        );
    }
}

#[test]
fn flags_that_need_watch_say_so() {
    let d = daemon("sk-first-value");
    for flags in [
        &["--grace", "1s"][..],
        &["--debounce", "1s"],
        &["--signal", "HUP"],
        &["--on-delete", "keep"],
    ] {
        let out = d
            .ctl()
            .args(["run", "-p", "app"])
            .args(flags)
            .args(["--", "true"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flags:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--watch"),
            "{flags:?}"
        );
    }
    let out = d
        .ctl()
        .args([
            "run", "-p", "app", "--watch", "--signal", "KILL", "--", "true",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
