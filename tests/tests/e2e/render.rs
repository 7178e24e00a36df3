//! `fluxctl render`, through the real binaries: a one-shot render fills
//! in values and defaults with mode 0600; a bad template or a missing name
//! fails with FILE:LINE:COL and no value; with `--watch`, a value set again
//! unchanged renders nothing, one change renders once, five changes within
//! the debounce time render once, `--signal` reaches the pid in
//! `--pid-file`; the file is never seen with a mode wider than asked, and a
//! render killed half-way leaves the previous file whole.
//!
//! Nothing here asserts speed: counts and eventual states, with generous
//! deadlines. `measure_change_to_rerendered_file` (ignored) measures the
//! time from `fluxctl secrets set` to the file rendered again, for
//! README.md.

use flux_e2e::{TestDaemon, assert_no_secret, terminate};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `cond` until it holds; fails after [`DEADLINE`].
fn within(what: &str, cond: impl FnMut() -> bool) {
    flux_e2e::eventually_within(DEADLINE, what, cond)
}

/// A daemon with project `app` holding TOKEN=`token` and OTHER=`other`,
/// and a template `tpl` naming TOKEN.
fn daemon(token: &str) -> TestDaemon {
    let d = TestDaemon::start();
    d.create_project("app");
    set(&d, "TOKEN", token);
    set(&d, "OTHER", "sk-other-value");
    std::fs::write(d.dir().join("tpl"), "token={{ secret \"TOKEN\" }}\n").unwrap();
    std::fs::create_dir(d.dir().join("out")).unwrap();
    d
}

fn set(d: &TestDaemon, name: &str, value: &str) {
    d.ctl_ok(&["secrets", "set", name, value, "-p", "app"]);
}

fn out(d: &TestDaemon) -> PathBuf {
    d.dir().join("out").join("app.conf")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn requests(d: &TestDaemon, op: &str) -> u64 {
    let text = d.control().metrics().unwrap();
    let key = format!("flux_requests_total{{project=\"app\",op=\"{op}\",result=\"ok\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// Waits until fluxctl watches project `app`: its first read, then its
/// subscription and the read after it, answered.
fn until_watching(d: &TestDaemon) {
    within("fluxctl render --watch subscribed", || {
        requests(d, "subscribe") >= 1 && requests(d, "get_all") >= 2
    });
}

/// A `fluxctl render --watch` in the background; `--exec` appends a line
/// to `renders` after each re-render.
struct Watch {
    child: Child,
    stderr: Arc<Mutex<String>>,
    renders: PathBuf,
}

impl Watch {
    fn start(d: &TestDaemon, flags: &[&str]) -> Self {
        let renders = d.dir().join("renders");
        let mut child = d
            .ctl()
            .args(["render", "-p", "app", "tpl", "-o"])
            .arg(out(d))
            .args(["--watch", "--exec", "echo x >> \"$RENDERS\""])
            .args(flags)
            .env("RENDERS", &renders)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let stream = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                sink.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        let w = Self {
            child,
            stderr,
            renders,
        };
        w.until_said("watching project app", 1);
        until_watching(d);
        w
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn said(&self, text: &str) -> usize {
        self.stderr().lines().filter(|l| l.contains(text)).count()
    }

    fn until_said(&self, text: &str, n: usize) {
        within(&format!("{n} × {text:?} on stderr"), || {
            self.said(text) >= n
        });
    }

    /// How many times --exec ran.
    fn renders(&self) -> usize {
        read(&self.renders).lines().count()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(10));
    }
}

#[test]
fn one_shot_render_fills_in_values_and_defaults_with_mode_0600() {
    let d = daemon("sk-token-value");
    std::fs::write(
        d.dir().join("tpl"),
        "a={{ secret \"TOKEN\" }}\nb={{ secret \"NOPE\" default \"fallback\" }}\nc=\\{{ literal }}\n",
    )
    .unwrap();
    let output = d
        .ctl()
        .args(["render", "-p", "app", "tpl", "-o", "out/app.conf"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_no_secret(&output.stdout, "sk-token-value", "stdout");
    assert_no_secret(&output.stderr, "sk-token-value", "stderr");
    assert!(
        read(&out(&d)) == "a=sk-token-value\nb=fallback\nc={{ literal }}\n",
        "rendered file differs from what was expected"
    );
    let meta = std::fs::metadata(out(&d)).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o600);
    assert_eq!(meta.uid(), nix::unistd::getuid().as_raw());
    // Nothing but the file is left in its folder.
    assert_eq!(std::fs::read_dir(d.dir().join("out")).unwrap().count(), 1);
    // A mode that lets others in is refused.
    let output = d.run_ctl(&["render", "-p", "app", "tpl", "-o", "x", "--mode", "0644"]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn a_missing_name_or_a_bad_template_names_file_line_and_column_and_writes_nothing() {
    let d = daemon("sk-token-value");
    std::fs::write(
        d.dir().join("tpl"),
        "a={{ secret \"TOKEN\" }}\n  b={{ secret \"DB_PASSWORD\" }}\n",
    )
    .unwrap();
    let output = d.run_ctl(&["render", "-p", "app", "tpl", "-o", "out/app.conf"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("tpl:2:15: no secret DB_PASSWORD in project app"),
        "{stderr}"
    );
    assert_no_secret(&output.stderr, "sk-token-value", "stderr");
    assert!(!out(&d).exists());

    std::fs::write(d.dir().join("tpl"), "x\n{{ secret TOKEN }}\n").unwrap();
    let output = d.run_ctl(&["render", "-p", "app", "tpl", "-o", "out/app.conf"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("tpl:2:11: expected"), "{stderr}");
    assert!(!out(&d).exists());

    std::fs::write(d.dir().join("tpl"), "ok\n  {{ secret \"TOKEN\"\n").unwrap();
    let output = d.run_ctl(&["render", "-p", "app", "tpl", "-o", "out/app.conf"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("tpl:2:3: {{ is not closed"), "{stderr}");
}

#[test]
fn a_value_set_again_unchanged_renders_nothing() {
    let d = daemon("sk-first-value");
    let w = Watch::start(&d, &[]);
    let inode = std::fs::metadata(out(&d)).unwrap().ino();
    set(&d, "TOKEN", "sk-first-value");
    w.until_said("TOKEN set again with the same value", 1);
    // A name the template does not use changes nothing either.
    set(&d, "OTHER", "sk-other-changed");
    set(&d, "TOKEN", "sk-first-value");
    w.until_said("TOKEN set again with the same value", 2);
    assert_eq!(w.renders(), 0, "{}", w.stderr());
    assert_eq!(w.said("again"), 2, "{}", w.stderr());
    assert_eq!(std::fs::metadata(out(&d)).unwrap().ino(), inode);
}

#[test]
fn one_real_change_renders_exactly_once() {
    let d = daemon("sk-first-value");
    let w = Watch::start(&d, &[]);
    set(&d, "TOKEN", "sk-second-value");
    within("re-rendered", || w.renders() >= 1);
    assert!(read(&out(&d)) == "token=sk-second-value\n");
    set(&d, "TOKEN", "sk-second-value");
    w.until_said("TOKEN set again with the same value", 1);
    assert_eq!(w.renders(), 1, "{}", w.stderr());
    assert_eq!(w.said("TOKEN changed in project app: rendered"), 1);
    assert_eq!(std::fs::metadata(out(&d)).unwrap().mode() & 0o7777, 0o600);
    assert_no_secret(w.stderr().as_bytes(), "sk-second-value", "stderr");
}

#[test]
fn five_changes_within_the_debounce_window_render_once() {
    let d = daemon("sk-value-0");
    let w = Watch::start(&d, &["--debounce", "3s"]);
    let mut client = d.client("app");
    for i in 1..=5 {
        client.set("TOKEN", format!("sk-value-{i}").into()).unwrap();
    }
    within("re-rendered", || w.renders() >= 1);
    assert!(read(&out(&d)) == "token=sk-value-5\n");
    client.set("TOKEN", "sk-value-5".into()).unwrap();
    w.until_said("TOKEN set again with the same value", 1);
    assert_eq!(w.renders(), 1, "{}", w.stderr());
}

#[test]
fn signal_goes_to_the_pid_in_the_pid_file_after_a_re_render() {
    let d = daemon("sk-first-value");
    let pid_file = d.dir().join("program.pid");
    let hups = d.dir().join("hups");
    let mut program = std::process::Command::new("sh")
        .args([
            "-c",
            r#"trap 'cat "$OUT" >> "$HUPS"' HUP; echo $$ > "$PIDF"; while :; do sleep 0.05; done"#,
        ])
        .env("OUT", out(&d))
        .env("HUPS", &hups)
        .env("PIDF", &pid_file)
        .spawn()
        .unwrap();
    within("pid file", || !read(&pid_file).trim().is_empty());
    let pid_flag = pid_file.to_str().unwrap().to_owned();
    let w = Watch::start(&d, &["--signal", "HUP", "--pid-file", &pid_flag]);
    set(&d, "TOKEN", "sk-second-value");
    within("the program got SIGHUP", || !read(&hups).is_empty());
    // It was signalled after the new file was in place.
    assert!(read(&hups) == "token=sk-second-value\n");
    set(&d, "TOKEN", "sk-second-value");
    w.until_said("TOKEN set again with the same value", 1);
    assert_eq!(read(&hups).lines().count(), 1);
    assert_eq!(w.said("sent SIGHUP"), 1, "{}", w.stderr());
    terminate(&mut program, Duration::from_secs(5));
}

#[test]
fn a_name_deleted_keeps_the_last_rendering_until_it_is_back() {
    let d = daemon("sk-first-value");
    let w = Watch::start(&d, &[]);
    d.ctl_ok(&["secrets", "delete", "TOKEN", "-p", "app"]);
    w.until_said("TOKEN missing from project app", 1);
    assert!(read(&out(&d)) == "token=sk-first-value\n");
    set(&d, "TOKEN", "sk-back-value");
    within("re-rendered", || w.renders() >= 1);
    assert!(read(&out(&d)) == "token=sk-back-value\n");
    assert_eq!(w.renders(), 1);
}

#[test]
fn sigterm_ends_the_watch_with_status_0() {
    let d = daemon("sk-first-value");
    let mut w = Watch::start(&d, &[]);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(w.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let mut status = None;
    within("fluxctl exited", || {
        status = w.child.try_wait().unwrap();
        status.is_some()
    });
    assert_eq!(status.unwrap().code(), Some(0));
}

/// Every entry of the output's folder is stat'ed in a tight loop while
/// fluxctl renders 60 times with --mode 0640, under umask 0 and 077 in
/// turn: no entry, temp file or output, is ever seen
/// with a bit beyond 0640, and the result is exactly 0640 either way.
#[test]
fn a_rendered_file_is_never_seen_with_a_mode_wider_than_asked() {
    let d = daemon("sk-first-value");
    let dir = d.dir().join("out");
    let stop = Arc::new(AtomicBool::new(false));
    let wider = Arc::new(AtomicU32::new(0));
    let temps_seen = Arc::new(AtomicUsize::new(0));
    let stats = Arc::new(AtomicUsize::new(0));
    let poller = {
        let (dir, stop, wider, temps_seen, stats) = (
            dir.clone(),
            stop.clone(),
            wider.clone(),
            temps_seen.clone(),
            stats.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
                        continue;
                    };
                    stats.fetch_add(1, Ordering::Relaxed);
                    if entry.file_name().to_string_lossy().ends_with(".tmp") {
                        temps_seen.fetch_add(1, Ordering::Relaxed);
                    }
                    wider.fetch_or(meta.mode() & 0o7777 & !0o640, Ordering::Relaxed);
                }
            }
        })
    };
    for i in 0..60 {
        let umask = if i % 2 == 0 { "0" } else { "077" };
        let status = std::process::Command::new("sh")
            .args([
                "-c",
                r#"umask "$UMASK"; exec "$FLUXCTL" render -p app tpl -o "$OUT" --mode 0640"#,
            ])
            .env("UMASK", umask)
            .env("FLUXCTL", flux_e2e::bin("fluxctl"))
            .env("FLUX_RUNTIME_DIR", d.runtime_dir())
            .current_dir(d.dir())
            .env("OUT", out(&d))
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(
            std::fs::metadata(out(&d)).unwrap().mode() & 0o7777,
            0o640,
            "umask {umask}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    poller.join().unwrap();
    eprintln!(
        "{} stats, {} of a temp file",
        stats.load(Ordering::Relaxed),
        temps_seen.load(Ordering::Relaxed)
    );
    assert!(stats.load(Ordering::Relaxed) > 0);
    assert_eq!(
        wider.load(Ordering::Relaxed),
        0,
        "an entry was seen with a bit beyond 0640"
    );
}

/// A render killed half-way through writing (SIGXFSZ: the file size
/// limit is far below the output's size) leaves the previous file whole;
/// the next render removes the temp file it left and completes.
#[test]
fn a_crash_mid_render_leaves_the_previous_file_whole() {
    let d = daemon("sk-old-value-0123456789abcdef0123456789abcdef0123456789abcdef");
    // About 4 MB of output: far over the 64 blocks the limit allows.
    let template = "{{ secret \"TOKEN\" }}\n".repeat(60_000);
    std::fs::write(d.dir().join("tpl"), template).unwrap();
    let render = |limited: bool| {
        let script = if limited {
            r#"ulimit -c 0; ulimit -f 64; exec "$FLUXCTL" render -p app tpl -o "$OUT""#
        } else {
            r#"exec "$FLUXCTL" render -p app tpl -o "$OUT""#
        };
        std::process::Command::new("sh")
            .args(["-c", script])
            .env("FLUXCTL", flux_e2e::bin("fluxctl"))
            .env("FLUX_RUNTIME_DIR", d.runtime_dir())
            .current_dir(d.dir())
            .env("OUT", out(&d))
            .stderr(Stdio::null())
            .status()
            .unwrap()
    };
    assert!(render(false).success());
    let old = "sk-old-value-0123456789abcdef0123456789abcdef0123456789abcdef\n".repeat(60_000);
    assert!(read(&out(&d)) == old);
    set(
        &d,
        "TOKEN",
        "sk-new-value-0123456789abcdef0123456789abcdef0123456789abcdef",
    );
    let status = render(true);
    assert!(!status.success());
    assert_eq!(status.signal(), Some(libc_sigxfsz()), "{status:?}");
    // The previous file, whole.
    assert!(
        read(&out(&d)) == old,
        "the previous file was not left whole"
    );
    let temps: Vec<_> = std::fs::read_dir(d.dir().join("out"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert_eq!(temps.len(), 1, "the crash left its temp file");
    assert_eq!(temps[0].metadata().unwrap().mode() & 0o7777, 0o600);
    // The next render cleans up and completes.
    assert!(render(false).success());
    let new = "sk-new-value-0123456789abcdef0123456789abcdef0123456789abcdef\n".repeat(60_000);
    assert!(read(&out(&d)) == new);
    assert_eq!(std::fs::read_dir(d.dir().join("out")).unwrap().count(), 1);
}

fn libc_sigxfsz() -> i32 {
    nix::sys::signal::Signal::SIGXFSZ as i32
}

#[test]
fn owner_gives_the_file_to_another_user_from_its_first_byte() {
    if !nix::unistd::getuid().is_root() {
        eprintln!("SKIPPED: owner_gives_the_file_to_another_user_from_its_first_byte: needs root");
        return;
    }
    let Some(nobody) = nix::unistd::User::from_name("nobody").ok().flatten() else {
        eprintln!(
            "SKIPPED: owner_gives_the_file_to_another_user_from_its_first_byte: no user nobody"
        );
        return;
    };
    let d = daemon("sk-first-value");
    let owner = format!("nobody:{}", nobody.gid.as_raw());
    let output = d.run_ctl(&[
        "render",
        "-p",
        "app",
        "tpl",
        "-o",
        "out/app.conf",
        "--owner",
        &owner,
        "--mode",
        "0440",
    ]);
    assert!(output.status.success(), "{output:?}");
    let meta = std::fs::metadata(out(&d)).unwrap();
    assert_eq!(meta.uid(), nobody.uid.as_raw());
    assert_eq!(meta.gid(), nobody.gid.as_raw());
    assert_eq!(meta.mode() & 0o7777, 0o440);
    let output = d.run_ctl(&[
        "render",
        "-p",
        "app",
        "tpl",
        "-o",
        "x",
        "--owner",
        "no-such-user-x",
    ]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn reload_unit_reloads_through_systemctl() {
    let systemd = std::fs::read_to_string("/proc/1/comm").is_ok_and(|c| c.trim() == "systemd");
    if !systemd {
        eprintln!(
            "SKIPPED: reload_unit_reloads_through_systemctl: systemd is not PID 1 here, so `systemctl reload` cannot be exercised"
        );
        return;
    }
    // With systemd as PID 1: a unit that records its reloads.
    let d = daemon("sk-first-value");
    let unit = format!("flux-render-test-{}.service", std::process::id());
    let marker = d.dir().join("reloads");
    let status = std::process::Command::new("systemd-run")
        .args(["--unit", &unit, "-p"])
        .arg(format!(
            "ExecReload=/bin/sh -c 'echo r >> {}'",
            marker.display()
        ))
        .args(["sleep", "600"])
        .status()
        .unwrap();
    assert!(status.success());
    let w = Watch::start(&d, &["--reload-unit", &unit]);
    set(&d, "TOKEN", "sk-second-value");
    within("the unit reloaded", || !read(&marker).is_empty());
    drop(w);
    let _ = std::process::Command::new("systemctl")
        .args(["stop", &unit])
        .status();
}

/// Not a test: the time from the start of `fluxctl secrets set` to the
/// file rendered again, 20 times, with the default debounce and with
/// 50 ms. `cargo test -p flux-e2e --test e2e measure_change -- --ignored
/// --nocapture`.
#[test]
#[ignore = "a measurement, not a test: run it with --ignored --nocapture"]
fn measure_change_to_rerendered_file() {
    for debounce in ["300ms", "50ms"] {
        let d = daemon("sk-value-0");
        let _w = Watch::start(&d, &["--debounce", debounce]);
        let mut times = Vec::new();
        for i in 1..=20 {
            let want = format!("token=sk-value-{i}\n");
            let start = Instant::now();
            set(&d, "TOKEN", &format!("sk-value-{i}"));
            while read(&out(&d)) != want {
                assert!(start.elapsed() < DEADLINE);
                std::thread::sleep(Duration::from_millis(1));
            }
            times.push(start.elapsed());
        }
        times.sort();
        eprintln!(
            "debounce {debounce}: median {:?}, min {:?}, max {:?}",
            times[times.len() / 2],
            times[0],
            times[times.len() - 1]
        );
    }
}
