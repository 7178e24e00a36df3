//! Local development: `fluxd dev` serves a `.env` file on the production
//! protocol, `fluxctl init` writes flux.json and .gitignore, and
//! `fluxctl secrets import` sets a whole file in one write.
//!
//! `fluxd dev --watch -- CMD` (and `flux dev --watch`), with a command that
//! reads TOKEN through its socket and records each start: a save that
//! changes no value restarts nothing, a real change restarts once and the
//! new command reads the new value, five quick saves restart once, a
//! command that ignores SIGTERM is killed after `--grace`, `--signal HUP`
//! signals instead, a deleted value stops the command (exit 3) unless
//! `--on-delete keep`. `measure_env_edit_to_restarted_command` (ignored)
//! measures a save → the restarted command serving the new value.

use crate::{assert_value, stderr, stdout};
use flux_e2e::eventually;
use flux_e2e::{TestDaemon, bin};
use flux_protocol::ErrorCode;
use flux_protocol::blocking::Client;
use flux_protocol::message::EventKind;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Dev {
    child: Child,
    socket: String,
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

/// Starts `fluxd dev ARGS` in `dir` (sockets under `dir/run`); returns the
/// process and the socket it printed for `FLUX_SECRETS_SOCKET`.
pub(crate) fn spawn_dev(dir: &std::path::Path, args: &[&str]) -> (Child, String) {
    spawn_dev_logged(dir, args, Stdio::null())
}

/// [`spawn_dev`], with fluxd's stderr (its log) sent to `log`.
pub(crate) fn spawn_dev_logged(
    dir: &std::path::Path,
    args: &[&str],
    log: impl Into<Stdio>,
) -> (Child, String) {
    let mut child = Command::new(bin("fluxd"))
        .args(["--runtime-dir", dir.join("run").to_str().unwrap(), "dev"])
        .args(args)
        .current_dir(dir)
        .env_remove("FLUX_PROJECT")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let socket = line
        .trim_end()
        .strip_prefix("export FLUX_SECRETS_SOCKET=")
        .unwrap_or_else(|| panic!("fluxd dev prints the line to export, got {line:?}"))
        .to_owned();
    (child, socket)
}

/// Starts `fluxd dev` in a fresh folder holding `env` as `.env` and a
/// flux.json naming `app`; returns once it printed its socket.
fn dev(env: &str) -> Dev {
    let tmp = tempfile::Builder::new()
        .prefix("fxd")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = tmp.path().to_path_buf();
    std::fs::write(dir.join(".env"), env).unwrap();
    std::fs::write(dir.join("flux.json"), r#"{"name": "app"}"#).unwrap();
    let (child, socket) = spawn_dev(&dir, &[]);
    Dev {
        child,
        socket,
        _dir: tmp,
        dir,
    }
}

#[test]
fn fluxd_dev_serves_the_env_file_live() {
    let d = dev(
        "# local\nOPENAI_API_KEY=sk-local-dev-key\nexport STRIPE_SECRET_KEY='sk_test_xyz'\nPEM=\"a\nb\"\n",
    );
    assert!(
        d.socket.ends_with("/dev/app/projects/app.sock"),
        "{}",
        d.socket
    );
    let mut c = Client::connect(&d.socket).unwrap();
    assert_value(&mut c, "OPENAI_API_KEY", "sk-local-dev-key");
    assert_value(&mut c, "STRIPE_SECRET_KEY", "sk_test_xyz");
    assert_value(&mut c, "PEM", "a\nb");
    let sub_generation = c.subscribe().unwrap();
    assert!(sub_generation >= 1);

    // Edits are live on the next get, and subscribers hear of them.
    std::fs::write(
        d.dir.join(".env"),
        "OPENAI_API_KEY=sk-edited\nSTRIPE_SECRET_KEY='sk_test_xyz'\nPEM=\"a\nb\"\n",
    )
    .unwrap();
    let event = c
        .next_event(Duration::from_secs(10))
        .unwrap()
        .expect("an event for the edit");
    assert_eq!(
        (event.kind, event.names),
        (EventKind::Reloaded, vec!["OPENAI_API_KEY".to_owned()])
    );
    assert_value(&mut c, "OPENAI_API_KEY", "sk-edited");

    // A file that cannot be read at all (not UTF-8) is served as what it
    // is: every request answers `unavailable` naming the file, line and
    // column (never the value, never `internal`), and subscribers hear
    // that the names went away.
    std::fs::write(d.dir.join(".env"), b"OPENAI_API_KEY=sk-broken-\xff\n").unwrap();
    let err = c.get("OPENAI_API_KEY").unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Unavailable), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("project app cannot be served: .env:1:26: not UTF-8 text; fix the file"),
        "{text}"
    );
    assert!(!text.contains("internal"), "{text}");
    assert!(!text.contains("sk-broken"), "the message holds a value");
    let event = c
        .next_event(Duration::from_secs(10))
        .unwrap()
        .expect("an event for the broken file");
    assert_eq!(
        (event.kind, event.names),
        (
            EventKind::Reloaded,
            ["OPENAI_API_KEY", "PEM", "STRIPE_SECRET_KEY"]
                .map(String::from)
                .to_vec()
        )
    );
    let control = d.socket.replace("/projects/app.sock", "/control.sock");
    let status = Client::connect(&control).unwrap().status().unwrap();
    let last_error = status.projects[0].last_error.clone().unwrap_or_default();
    assert!(last_error.contains(".env:1:26"), "{last_error}");
    assert!(!last_error.contains("sk-broken"), "status holds a value");
    // Fixed, it is served again at once.
    std::fs::write(
        d.dir.join(".env"),
        "OPENAI_API_KEY=sk-edited\nSTRIPE_SECRET_KEY='sk_test_xyz'\nPEM=\"a\nb\"\n",
    )
    .unwrap();
    assert_value(&mut c, "OPENAI_API_KEY", "sk-edited");

    // The file is the source of truth: writes are refused.
    let err = c.set("X", "y".into()).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BadRequest));
    assert!(
        err.to_string().contains("read-only: edit that file"),
        "{err}"
    );
    // A missing secret: the hint says to add it to the file, not to use
    // `fluxctl secrets set`, which dev mode refuses.
    let err = c.get("MISSING").unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));
    assert!(
        err.to_string().contains("add it to .env as MISSING="),
        "{err}"
    );
    assert!(!err.to_string().contains("fluxctl secrets set"), "{err}");
}

#[test]
fn fluxd_dev_takes_flags_and_reports_a_missing_project() {
    let tmp = tempfile::Builder::new()
        .prefix("fxd")
        .tempdir_in("/tmp")
        .unwrap();
    let out = Command::new(bin("fluxd"))
        .args([
            "--runtime-dir",
            tmp.path().join("run").to_str().unwrap(),
            "dev",
        ])
        .current_dir(tmp.path())
        .env_remove("FLUX_PROJECT")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr(&out).contains("no project given"),
        "{}",
        stderr(&out)
    );

    std::fs::write(tmp.path().join("local.env"), "K=from-flag\n").unwrap();
    let (mut child, socket) = spawn_dev(
        tmp.path(),
        &["--project", "other", "--env-file", "local.env"],
    );
    assert!(
        socket.ends_with("/dev/other/projects/other.sock"),
        "{socket}"
    );
    assert_value(&mut Client::connect(&socket).unwrap(), "K", "from-flag");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn production_fluxd_never_reads_env_files() {
    let d = TestDaemon::unstarted(&[]);
    std::fs::write(d.dir().join(".env"), "LEAKED=from-dot-env\n").unwrap();
    let mut child = d
        .fluxd_command()
        .current_dir(d.dir())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually("fluxd ready", || {
        Client::connect(d.control_socket()).is_ok()
    });
    Client::connect(d.control_socket())
        .unwrap()
        .create_project("app")
        .unwrap();
    let err = d.client("app").get("LEAKED").unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
}

#[test]
fn fluxctl_init_writes_flux_json_and_keeps_gitignore() {
    let d = TestDaemon::unstarted(&[]);
    std::fs::write(d.dir().join(".gitignore"), "target/\nnode_modules").unwrap();
    let out = d.run_ctl(&["init", "my-app"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Wrote flux.json: project my-app"),
        "{}",
        stdout(&out)
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.dir().join("flux.json")).unwrap()).unwrap();
    assert_eq!(json["name"], "my-app");
    let ignore = std::fs::read_to_string(d.dir().join(".gitignore")).unwrap();
    assert!(
        ignore.starts_with("target/\nnode_modules\n"),
        "existing lines kept: {ignore:?}"
    );
    assert!(
        ignore.ends_with(".env\n.env.*\n*.env\n!.env.example\n"),
        "{ignore:?}"
    );

    // Again: nothing changes.
    let out = d.run_ctl(&["init", "my-app"]);
    assert!(
        stdout(&out).contains("already names project my-app"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains(".gitignore already keeps .env, .env.* and *.env out of git"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        std::fs::read_to_string(d.dir().join(".gitignore")).unwrap(),
        ignore
    );

    // Another name needs --force.
    let out = d.run_ctl(&["init", "other"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("pass --force"), "{}", stderr(&out));
    // And fluxctl now finds the project from flux.json.
    let out = d.run_ctl(&["secrets", "list"]);
    assert!(stderr(&out).contains("my-app"), "{}", stderr(&out));
}

#[test]
fn import_sets_a_whole_env_file_in_one_write() {
    let d = TestDaemon::start_with_config("[limits]\nmax_secrets_per_project = 4\n");
    d.create_project("app");
    d.ctl_ok(&["secrets", "set", "EXISTING", "old", "-p", "app"]);
    let env = d.dir().join("prod.env");
    std::fs::write(&env, "EXISTING=new\nA_KEY=a\nexport B_KEY=\"b b\"\n").unwrap();
    let env = env.to_str().unwrap();

    let out = d.ctl_ok(&["secrets", "import", env, "--dry-run", "-p", "app"]);
    assert!(out.contains("would create: A_KEY, B_KEY"), "{out}");
    assert!(out.contains("would update: EXISTING"), "{out}");
    assert!(
        out.ends_with("2 created, 1 updated, 0 unchanged\n"),
        "{out}"
    );
    assert_eq!(
        d.client("app").list().unwrap().len(),
        1,
        "a dry run writes nothing"
    );

    let mut sub = d.client("app");
    sub.subscribe().unwrap();
    let out = d.ctl_ok(&["secrets", "import", env, "-p", "app"]);
    assert!(out.contains("updated: EXISTING\n"), "{out}");
    assert!(
        out.ends_with("2 created, 1 updated, 0 unchanged\n"),
        "{out}"
    );
    let mut c = d.client("app");
    assert_value(&mut c, "EXISTING", "new");
    assert_value(&mut c, "B_KEY", "b b");
    let event = sub.next_event(Duration::from_secs(10)).unwrap().unwrap();
    assert_eq!(
        event.names,
        ["A_KEY", "B_KEY", "EXISTING"],
        "one write, one event"
    );
    assert!(
        sub.next_event(Duration::from_millis(200))
            .unwrap()
            .is_none()
    );

    // All or nothing: over the limit, nothing is written.
    std::fs::write(d.dir().join("more.env"), "C_KEY=c\nD_KEY=d\n").unwrap();
    let out = d.run_ctl(&[
        "secrets",
        "import",
        d.dir().join("more.env").to_str().unwrap(),
        "-p",
        "app",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("over the limit"), "{}", stderr(&out));
    assert_eq!(c.list().unwrap().len(), 3);

    // A parse error names the line and writes nothing; stdin works too.
    let mut child = d
        .ctl()
        .args(["secrets", "import", "-", "-p", "app"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"OK=1\nBAD LINE secret-ish\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("<stdin>:2:5"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("secret-ish"));
    assert_eq!(c.list().unwrap().len(), 3);
}

#[test]
fn fluxd_dev_serves_the_rest_of_a_file_and_warns_once_per_flagged_line() {
    let tmp = tempfile::Builder::new()
        .prefix("fxd")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = tmp.path();
    std::fs::write(
        dir.join(".env"),
        "OK=fine-value\nFOO.BAR=dotted-secret\nHASH=kept#dropped-part\nEXP=${OK}-expanded\nBAD LINE bare-secret\nTICK=`ticked-secret`\n",
    )
    .unwrap();
    let log_path = dir.join("fluxd.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let (mut child, socket) = spawn_dev_logged(dir, &["--project", "app"], log);
    let mut c = Client::connect(&socket).unwrap();
    assert_value(&mut c, "OK", "fine-value");
    // Served as Node's dotenv reads them, with a warning each.
    assert_value(&mut c, "HASH", "kept");
    assert_value(&mut c, "EXP", "${OK}-expanded");
    assert_value(&mut c, "TICK", "ticked-secret");
    let mut names: Vec<String> = c.list().unwrap().into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(names, ["EXP", "HASH", "OK", "TICK"]);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    let log = std::fs::read_to_string(&log_path).unwrap();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains(" WARN ")).collect();
    assert_eq!(warnings.len(), 5, "{log}");
    for (line, at) in [
        (2, ".env:2:1: "),
        (3, ".env:3:10: HASH"),
        (4, ".env:4:5: EXP"),
        (5, ".env:5:5: "),
        (6, ".env:6:6: TICK"),
    ] {
        assert!(
            warnings.iter().any(|w| w.contains(at)),
            "line {line}: no warning with {at:?}:\n{log}"
        );
    }
    for value in [
        "fine-value",
        "dotted-secret",
        "dropped-part",
        "expanded",
        "bare-secret",
        "ticked-secret",
    ] {
        flux_e2e::assert_no_secret(log.as_bytes(), value, "fluxd dev's log");
    }

    // --expand: ${NAME} from the lines above.
    let (mut child, socket) = spawn_dev(dir, &["--project", "app", "--expand"]);
    assert_value(
        &mut Client::connect(&socket).unwrap(),
        "EXP",
        "fine-value-expanded",
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn import_refuses_flagged_lines_unless_told_to_skip_them() {
    let d = TestDaemon::start();
    d.create_project("app");
    let env = d.dir().join("mixed.env");
    std::fs::write(
        &env,
        "OK=fine-value\nOPTION-B=dashed-secret\nHASH=kept#dropped-part\nEXP=${OK}-expanded\n",
    )
    .unwrap();
    let env = env.to_str().unwrap();
    let check_list = |text: &str| {
        assert!(text.contains("3 lines need attention"), "{text}");
        assert!(text.contains("mixed.env:2:1: "), "{text}");
        assert!(text.contains("mixed.env:3:10: HASH: "), "{text}");
        assert!(text.contains("mixed.env:4:5: EXP: "), "{text}");
        assert!(text.contains("--skip-invalid"), "{text}");
        for value in ["fine-value", "dashed-secret", "dropped-part", "expanded"] {
            flux_e2e::assert_no_secret(text.as_bytes(), value, "fluxctl's output");
        }
    };

    // Refused by default, with the full list; nothing is written.
    let out = d.run_ctl(&["secrets", "import", env, "-p", "app"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    check_list(&stderr(&out));
    assert!(
        stderr(&out).contains("nothing was imported"),
        "{}",
        stderr(&out)
    );
    assert!(d.client("app").list().unwrap().is_empty());

    // --dry-run shows the same list.
    let out = d.run_ctl(&["secrets", "import", env, "--dry-run", "-p", "app"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    check_list(&stderr(&out));

    // --skip-invalid --dry-run: the plan, and the lines as warnings.
    let out = d.run_ctl(&[
        "secrets",
        "import",
        env,
        "--dry-run",
        "--skip-invalid",
        "-p",
        "app",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("would create: EXP, HASH, OK"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("would skip: 1 line"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        stderr(&out).matches("fluxctl: warning: ").count(),
        3,
        "{}",
        stderr(&out)
    );
    assert!(d.client("app").list().unwrap().is_empty());

    // --skip-invalid: the rest, as fluxd dev serves it.
    let out = d.run_ctl(&["secrets", "import", env, "--skip-invalid", "-p", "app"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).ends_with("3 created, 0 updated, 0 unchanged\n"),
        "{}",
        stdout(&out)
    );
    let mut c = d.client("app");
    assert_value(&mut c, "OK", "fine-value");
    assert_value(&mut c, "HASH", "kept");
    assert_value(&mut c, "EXP", "${OK}-expanded");

    // --expand expands from the lines above.
    let out = d.run_ctl(&[
        "secrets",
        "import",
        env,
        "--skip-invalid",
        "--expand",
        "-p",
        "app",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_value(&mut c, "EXP", "fine-value-expanded");
}

#[test]
fn fluxd_dev_runs_a_command_against_the_env_file_and_exits_with_its_status() {
    let tmp = tempfile::Builder::new()
        .prefix("fxd")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join(".env"), "TOKEN=dev-token-value\n").unwrap();
    std::fs::write(dir.join("flux.json"), r#"{"name": "app"}"#).unwrap();
    let fluxd = |cmd: &[&str]| {
        Command::new(bin("fluxd"))
            .args([
                "--runtime-dir",
                dir.join("run").to_str().unwrap(),
                "dev",
                "--",
            ])
            .args(cmd)
            .current_dir(dir)
            .env_remove("FLUX_PROJECT")
            .env("FLUXCTL", bin("fluxctl"))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    // The command reads the file's value through the socket it is handed
    // (with fluxctl run, from the socket's runtime folder), and its exit
    // status is fluxd's.
    let out = fluxd(&[
        "sh",
        "-c",
        r#"echo "socket=$FLUX_SECRETS_SOCKET"; runtime=$(dirname "$(dirname "$FLUX_SECRETS_SOCKET")"); "$FLUXCTL" --runtime-dir "$runtime" -p app run -- sh -c 'test "$TOKEN" = dev-token-value' && exit 7"#,
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    // stdout is the command's alone: no export line.
    let text = stdout(&out);
    assert!(
        text.starts_with("socket=/") && text.ends_with("/dev/app/projects/app.sock\n"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1, "{text}");
    flux_e2e::assert_no_secret(&out.stderr, "dev-token-value", "fluxd dev's log");

    let out = fluxd(&["/nonexistent/command"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot run /nonexistent/command"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn fluxd_dev_passes_sigterm_on_to_its_command() {
    let tmp = tempfile::Builder::new()
        .prefix("fxd")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join(".env"), "K=v\n").unwrap();
    let ready = dir.join("ready");
    let mut child = Command::new(bin("fluxd"))
        .args(["--runtime-dir", dir.join("run").to_str().unwrap(), "dev"])
        .args(["--project", "app", "--", "sh", "-c"])
        .arg(r#"trap 'exit 42' TERM; touch "$READY"; while :; do sleep 0.05; done"#)
        .env("READY", &ready)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually("the command started", || ready.exists());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(42), "the command's own exit status");
}

#[test]
fn fluxd_writes_its_man_pages() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(bin("fluxd"))
        .arg("--write-man-pages")
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let page = std::fs::read_to_string(tmp.path().join("fluxd.8")).unwrap();
    assert!(page.contains(".TH fluxd 8 "), "{page}");
    let dev = std::fs::read_to_string(tmp.path().join("fluxd-dev.8")).unwrap();
    assert!(dev.contains("FLUX_SECRETS_SOCKET"), "{dev}");
    assert!(!tmp.path().join("fluxd-help.8").exists());
    for (file, text) in [("fluxd.8", &page), ("fluxd-dev.8", &dev)] {
        for section in [".SH \"EXIT STATUS\"", ".SH EXAMPLES"] {
            assert!(text.contains(section), "{file}: {section}: {text}");
        }
    }
    assert!(page.contains("\\fB78\\fR"), "EX_CONFIG: {page}");
    assert!(dev.contains("fluxd dev \\-\\- node server.js"), "{dev}");
    // The option is in fluxd's help, as every other.
    let help = Command::new(bin("fluxd")).arg("--help").output().unwrap();
    assert!(
        stdout(&help).contains("--write-man-pages <DIR>"),
        "{}",
        stdout(&help)
    );
}

#[test]
fn a_file_over_the_request_limit_is_refused_whole_with_what_to_do() {
    // 5,000 secrets of about 60 bytes: some 300 KiB in one request, over
    // the default 256 KiB.
    let mut text = String::new();
    for i in 0..5000 {
        text.push_str(&format!(
            "KEY_{i:05}=import-limit-value-{i:05}-padding-padding\n"
        ));
    }
    let d = TestDaemon::start();
    d.create_project("app");
    let env = d.dir().join("big.env");
    std::fs::write(&env, &text).unwrap();
    let env = env.to_str().unwrap();
    for args in [
        vec!["secrets", "import", env, "-p", "app"],
        vec!["secrets", "import", env, "--dry-run", "-p", "app"],
        vec!["secrets", "diff", env, "-p", "app"],
    ] {
        let out = d.run_ctl(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("goes to fluxd as one request (5000 secrets")
                && err.contains("max_request_bytes"),
            "{args:?}: {err}"
        );
    }
    assert!(
        d.client("app").list().unwrap().is_empty(),
        "nothing imported"
    );

    // With the limit raised, the same file goes in whole.
    let d = TestDaemon::start_with_config("[limits]\nmax_request_bytes = 1048576\n");
    d.create_project("app");
    std::fs::write(d.dir().join("big.env"), &text).unwrap();
    let env = d.dir().join("big.env");
    d.ctl_ok(&["secrets", "import", env.to_str().unwrap(), "-p", "app"]);
    assert_eq!(d.client("app").list().unwrap().len(), 5000);

    // A value over the protocol's limit is a flagged line: refused before
    // anything is sent, naming the secret and not the value.
    let big = d.dir().join("value.env");
    std::fs::write(&big, format!("OK=1\nHUGE={}\n", "v".repeat(70_000))).unwrap();
    let out = d.run_ctl(&["secrets", "import", big.to_str().unwrap(), "-p", "app"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("HUGE: value is 70000 bytes") && err.contains("nothing was imported"),
        "{err}"
    );
    assert!(!err.contains("vvvvvvvv"), "the value was printed");
}

/// `fluxd dev --runtime-dir DIR/run ARGS` in `dir`, run to the end.
fn dev_output(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(bin("fluxd"));
    cmd.args(["--runtime-dir", dir.join("run").to_str().unwrap(), "dev"])
        .args(args)
        .current_dir(dir)
        .env_remove("FLUX_PROJECT")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn fluxd_dev_refuses_a_file_that_is_not_utf8_at_start() {
    let tmp = tempfile::Builder::new()
        .prefix("fxd")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = tmp.path();
    // Latin-1: "DB_PASSWORD=café-latin-secret".
    std::fs::write(
        dir.join("latin1.env"),
        b"A=1\nDB_PASSWORD=caf\xe9-latin-secret\n",
    )
    .unwrap();
    let out = dev_output(
        dir,
        &[
            "--project",
            "my-app",
            "--env-file",
            "latin1.env",
            "--",
            "true",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("latin1.env:2:16: not UTF-8 text: fluxd dev cannot serve this file"),
        "{err}"
    );
    flux_e2e::assert_no_secret(&out.stderr, "caf", "fluxd dev's error");
    flux_e2e::assert_no_secret(&out.stderr, "latin-secret", "fluxd dev's error");
    assert!(
        !dir.join("run").exists(),
        "nothing is created for a refused file"
    );
}

#[test]
fn fluxd_dev_running_a_command_logs_only_warnings_unless_asked() {
    let tmp = tempfile::Builder::new()
        .prefix("fxd")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join(".env"), "K=v\n").unwrap();
    let cmd = [
        "--project",
        "app",
        "--",
        "sh",
        "-c",
        "echo from-the-app >&2",
    ];
    let out = dev_output(dir, &cmd, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("from-the-app\n"), "{err}");
    // Only warnings and errors (a machine that cannot lock memory, say).
    assert!(
        err.lines()
            .all(|l| l == "from-the-app" || l.contains(" WARN ") || l.contains(" ERROR ")),
        "fluxd's info lines mixed in: {err}"
    );
    // Asked for, the log is there.
    let out = dev_output(dir, &cmd, &[("RUST_LOG", "info")]);
    assert!(stderr(&out).contains("fluxd ready"), "{}", stderr(&out));
    let mut with_flag = Command::new(bin("fluxd"));
    with_flag
        .args([
            "--runtime-dir",
            dir.join("run").to_str().unwrap(),
            "--log-level",
            "info",
            "dev",
        ])
        .args(cmd)
        .current_dir(dir)
        .env_remove("RUST_LOG");
    let out = with_flag.output().unwrap();
    assert!(stderr(&out).contains("fluxd ready"), "{}", stderr(&out));
    // Serving for a shell, it still says what it does.
    let (child, _) = spawn_dev_logged(dir, &["--project", "app"], Stdio::piped());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(stderr(&out).contains("fluxd ready"), "{}", stderr(&out));
}

#[test]
fn every_request_after_a_save_sees_it() {
    let d = dev("V=0000\n");
    let mut c = Client::connect(&d.socket).unwrap();
    let env = d.dir.join(".env");
    let staged = d.dir.join(".env.swp");
    for i in 1..=400 {
        // Same size every time. Half the saves are written in place (same
        // inode), half renamed over the file as editors do.
        let want = format!("{i:04}");
        let text = format!("V={want}\n");
        if i % 2 == 0 {
            std::fs::write(&env, &text).unwrap();
        } else {
            std::fs::write(&staged, &text).unwrap();
            std::fs::rename(&staged, &env).unwrap();
        }
        let got = c.get("V").unwrap();
        assert!(
            got.expose() == want,
            "save {i}: a get after it saw an older value"
        );
    }
}

#[test]
fn fluxd_dev_removes_the_folders_it_created_and_nothing_else() {
    let tmp = tempfile::Builder::new()
        .prefix("fxd")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join(".env"), "K=v\n").unwrap();
    let run = dir.join("run");
    let stop = |mut child: Child| {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        assert!(child.wait().unwrap().success());
    };
    // It created every folder from the runtime folder down: all gone.
    let (child, socket) = spawn_dev(dir, &["--project", "app"]);
    assert!(std::path::Path::new(&socket).exists());
    stop(child);
    assert!(
        !run.exists(),
        "the runtime folder it created is left behind"
    );
    // The runtime folder and another project's dev folder were there
    // before: kept, with what they hold.
    std::fs::create_dir_all(run.join("dev/other")).unwrap();
    std::fs::write(run.join("dev/other/keep"), "").unwrap();
    let (child, _) = spawn_dev(dir, &["--project", "app"]);
    assert!(run.join("dev/app/projects").is_dir());
    stop(child);
    assert!(!run.join("dev/app").exists(), "its own folder is removed");
    assert!(
        run.join("dev/other/keep").exists(),
        "another's file is kept"
    );
    // A run by the command's exit cleans up too.
    let out = dev_output(dir, &["--project", "app", "--", "true"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!run.join("dev/app").exists());
}

/// The command every `--watch` test runs: it reads TOKEN through the
/// socket it is handed (fluxctl run, on `$RT`, the dev runtime folder)
/// and appends it to `$STARTS`, then runs `$THEN` (by default it sleeps,
/// dying on SIGTERM).
const RECORD: &str = r#""$FLUXCTL" --runtime-dir "$RT" -p app run -- sh -c 'echo "$TOKEN" >> "$STARTS"' || exit 9; eval "${THEN:-exec sleep 600}""#;

/// How long any eventual state of a watch test may take: far beyond what
/// it needs.
const WATCH_DEADLINE: Duration = Duration::from_secs(30);

/// `fluxd dev --watch …` (or `flux dev`) in a fresh folder, its stderr
/// collected.
struct Watched {
    child: Child,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    dir: std::path::PathBuf,
    _tmp: tempfile::TempDir,
}

impl Watched {
    /// Runs `PROGRAM --runtime-dir DIR/run dev FLAGS -- sh -c RECORD` in a
    /// folder holding `env` as `.env` and a flux.json naming `app`, with
    /// `env` variables added; returns once the command started once.
    fn start(program: &str, flags: &[&str], env_file: &str, env: &[(&str, &str)]) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("fxd")
            .tempdir_in("/tmp")
            .unwrap();
        let dir = tmp.path().to_path_buf();
        std::fs::write(dir.join(".env"), env_file).unwrap();
        std::fs::write(dir.join("flux.json"), r#"{"name": "app"}"#).unwrap();
        let mut child = Command::new(bin(program))
            .args(["--runtime-dir", dir.join("run").to_str().unwrap(), "dev"])
            .args(flags)
            .args(["--", "sh", "-c", RECORD])
            .current_dir(&dir)
            .env_remove("FLUX_PROJECT")
            .env("FLUXCTL", bin("fluxctl"))
            .env("RT", dir.join("run/dev/app"))
            .env("STARTS", dir.join("starts"))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stream = child.stderr.take().unwrap();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = stderr.clone();
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
            dir,
            _tmp: tmp,
        };
        w.until_started(1);
        w
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// How many lines of stderr contain `text`.
    fn said(&self, text: &str) -> usize {
        self.stderr().lines().filter(|l| l.contains(text)).count()
    }

    fn until_said(&self, text: &str, n: usize) {
        flux_e2e::eventually_within(
            WATCH_DEADLINE,
            &format!("{n} × {text:?} on stderr"),
            || self.said(text) >= n,
        );
    }

    /// The values the command read, one per start.
    fn starts(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("starts"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn until_started(&self, n: usize) {
        flux_e2e::eventually_within(WATCH_DEADLINE, &format!("{n} starts"), || {
            self.starts().len() >= n
        });
    }

    /// Asserts the starts so far read `want`, in order, without showing
    /// a value.
    fn assert_starts(&self, want: &[&str], what: &str) {
        let starts = self.starts();
        assert!(
            starts.len() == want.len(),
            "{what}: {} starts, expected {}; stderr:\n{}",
            starts.len(),
            want.len(),
            self.stderr()
        );
        assert!(starts == want, "{what}: a start read another value");
    }

    /// Saves `.env` with `text`, in place.
    fn save(&self, text: &str) {
        std::fs::write(self.dir.join(".env"), text).unwrap();
    }

    /// A request through the socket: by its answer fluxd has read every
    /// save that returned before it.
    fn read_through(&self) {
        let socket = self.dir.join("run/dev/app/projects/app.sock");
        let mut c = Client::connect(&socket).unwrap();
        let _ = c.get("TOKEN");
    }

    /// Waits for fluxd dev to exit; its status.
    fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + WATCH_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "fluxd dev did not exit; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM to fluxd, which passes it on; its status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        self.wait()
    }

    /// No value reached fluxd's stderr.
    fn assert_no_values(&self, values: &[&str]) {
        let text = self.stderr();
        for value in values {
            flux_e2e::assert_no_secret(text.as_bytes(), value, "fluxd dev's stderr");
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn fluxd_dev_watch_restarts_once_on_a_real_change_and_never_on_a_save_that_changes_nothing() {
    let text = "TOKEN=tok-value-1\nOTHER=other-value\n";
    let mut w = Watched::start("fluxd", &["--watch", "--debounce", "100ms"], text, &[]);
    w.assert_starts(&["tok-value-1"], "the first start");

    // Saves that change no value: a touch, the same bytes written again,
    // the same file renamed over it (how editors save), a comment added
    // and the lines reordered. Each is read (a request after it), then
    // given ten times the debounce.
    let env = w.dir.join(".env");
    let saves: [&dyn Fn(); 4] = [
        &|| {
            std::fs::File::options()
                .write(true)
                .open(&env)
                .unwrap()
                .set_modified(std::time::SystemTime::now())
                .unwrap();
        },
        &|| w.save(text),
        &|| {
            let tmp = w.dir.join(".env.tmp");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, &env).unwrap();
        },
        &|| w.save("# a comment\nOTHER=other-value\nTOKEN=tok-value-1\n"),
    ];
    for save in saves {
        save();
        w.read_through();
        std::thread::sleep(Duration::from_millis(1000));
    }
    w.assert_starts(&["tok-value-1"], "saves that change no value");
    assert_eq!(w.said("restarting"), 0, "{}", w.stderr());

    // A file saved broken (not UTF-8) is no change: the command keeps
    // running. Fixed with the same values, it is none either, though
    // the names went away and came back.
    std::fs::write(&env, b"TOKEN=tok-\xff\n").unwrap();
    w.until_said("fluxd dev: .env cannot be served (see the error above): `sh` keeps running until it is fixed", 1);
    w.save(text);
    w.read_through();
    std::thread::sleep(Duration::from_millis(1000));
    w.assert_starts(&["tok-value-1"], "a broken save fixed with the same values");
    assert_eq!(w.said("restarting"), 0, "{}", w.stderr());

    // One real change: exactly one restart, and the new command reads the
    // new value.
    w.save("TOKEN=tok-value-2\nOTHER=other-value\n");
    w.until_started(2);
    w.until_said("fluxd dev: TOKEN changed in .env: restarting `sh`", 1);
    w.until_said("fluxd dev: restarted `sh`", 1);
    std::thread::sleep(Duration::from_millis(1000));
    w.assert_starts(&["tok-value-1", "tok-value-2"], "one real change");

    // A name added to the file is a value the command could not have
    // read at start: one restart too.
    w.save("TOKEN=tok-value-2\nOTHER=other-value\nADDED=added-value\n");
    w.until_said("fluxd dev: ADDED changed in .env: restarting `sh`", 1);
    w.until_started(3);

    // Signals and exit status pass through as without --watch: SIGTERM
    // ends the command (sleep), and fluxd exits 128+15.
    assert_eq!(w.terminate().code(), Some(143), "{}", w.stderr());
    w.assert_no_values(&["tok-value-1", "tok-value-2", "other-value", "added-value"]);
}

#[test]
fn flux_dev_watch_takes_five_quick_saves_in_one_restart() {
    let mut w = Watched::start(
        "flux",
        &["--watch", "--debounce", "1500ms"],
        "TOKEN=tok-value-0\n",
        &[],
    );
    // Five saves, each well within the debounce time of the one before.
    for i in 1..=5 {
        w.save(&format!("TOKEN=tok-value-{i}\n"));
        std::thread::sleep(Duration::from_millis(50));
    }
    w.until_started(2);
    // Longer than the debounce time again: no second restart.
    std::thread::sleep(Duration::from_millis(3000));
    w.assert_starts(&["tok-value-0", "tok-value-5"], "five quick saves");
    assert_eq!(w.said("restarting"), 1, "{}", w.stderr());
    assert_eq!(w.terminate().code(), Some(143), "{}", w.stderr());
}

#[test]
fn fluxd_dev_watch_kills_a_command_that_ignores_sigterm_after_the_grace_period() {
    // After it recorded its start, the command ignores SIGTERM and says
    // its pid.
    let mut w = Watched::start(
        "fluxd",
        &["--watch", "--debounce", "50ms", "--grace", "1s"],
        "TOKEN=tok-value-1\n",
        &[(
            "THEN",
            r#"trap '' TERM; echo $$ > "$STARTS.pid"; while :; do sleep 0.1; done"#,
        )],
    );
    let pid_file = w.dir.join("starts.pid");
    let command_pid = || {
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
    };
    flux_e2e::eventually_within(WATCH_DEADLINE, "the command ignores SIGTERM", || {
        command_pid().is_some()
    });
    std::fs::remove_file(&pid_file).unwrap();
    let started = std::time::Instant::now();
    w.save("TOKEN=tok-value-2\n");
    w.until_started(2);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "restarted before the grace period was over"
    );
    w.until_said("did not exit within 1s of SIGTERM: sending SIGKILL", 1);
    w.assert_starts(&["tok-value-1", "tok-value-2"], "the restart after SIGKILL");

    // SIGTERM to fluxd reaches the restarted command, which ignores it:
    // fluxd serves on until the command exits, and then exits with its
    // status (128+9 here).
    flux_e2e::eventually_within(WATCH_DEADLINE, "the restarted command's pid", || {
        command_pid().is_some()
    });
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(w.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        w.child.try_wait().unwrap().is_none(),
        "fluxd ended while its command still ran"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(command_pid().unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert_eq!(w.wait().code(), Some(137), "{}", w.stderr());
}

#[test]
fn fluxd_dev_watch_signal_hup_signals_the_command_instead_of_restarting() {
    let mut w = Watched::start(
        "fluxd",
        &["--watch", "--debounce", "50ms", "--signal", "HUP"],
        "TOKEN=tok-value-1\n",
        &[(
            "THEN",
            r#"trap 'echo hup >> "$STARTS.hups"' HUP; touch "$STARTS.ready"; while :; do sleep 0.05; done"#,
        )],
    );
    flux_e2e::eventually_within(WATCH_DEADLINE, "the command traps SIGHUP", || {
        w.dir.join("starts.ready").exists()
    });
    let hups = || {
        std::fs::read_to_string(w.dir.join("starts.hups"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    w.save("TOKEN=tok-value-2\n");
    flux_e2e::eventually_within(WATCH_DEADLINE, "one SIGHUP", || hups() == 1);
    w.until_said(
        "fluxd dev: TOKEN changed in .env: sending SIGHUP to `sh`",
        1,
    );
    // Signalled for that value: the same value saved again signals
    // nothing; the next change signals again.
    w.save("# again\nTOKEN=tok-value-2\n");
    w.read_through();
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(hups(), 1, "{}", w.stderr());
    w.save("TOKEN=tok-value-3\n");
    flux_e2e::eventually_within(WATCH_DEADLINE, "a second SIGHUP", || hups() == 2);
    w.assert_starts(&["tok-value-1"], "--signal restarts nothing");
    // The shell exits 143 on SIGTERM after its trap-free loop.
    let status = w.terminate();
    assert_eq!(status.code(), Some(143), "{}", w.stderr());
}

#[test]
fn fluxd_dev_watch_stops_the_command_when_a_value_it_started_with_is_deleted() {
    // By default: stopped, and fluxd exits 3.
    let mut w = Watched::start(
        "fluxd",
        &["--watch", "--debounce", "50ms"],
        "TOKEN=tok-value-1\nOTHER=other-value\n",
        &[],
    );
    w.save("TOKEN=tok-value-1\n");
    assert_eq!(w.wait().code(), Some(3), "{}", w.stderr());
    assert_eq!(
        w.said("fluxd dev: OTHER deleted from .env: stopping `sh`"),
        1,
        "{}",
        w.stderr()
    );
    w.assert_starts(&["tok-value-1"], "stopped, not restarted");

    // --on-delete keep: it keeps running, and the value back as it was
    // restarts nothing.
    let mut w = Watched::start(
        "fluxd",
        &["--watch", "--debounce", "50ms", "--on-delete", "keep"],
        "TOKEN=tok-value-1\nOTHER=other-value\n",
        &[],
    );
    w.save("TOKEN=tok-value-1\n");
    w.until_said("OTHER deleted from .env: `sh` keeps running", 1);
    w.save("TOKEN=tok-value-1\nOTHER=other-value\n");
    w.read_through();
    std::thread::sleep(Duration::from_millis(1000));
    w.assert_starts(&["tok-value-1"], "--on-delete keep");
    assert_eq!(w.terminate().code(), Some(143), "{}", w.stderr());
}

#[test]
fn fluxd_dev_refuses_watch_options_without_watch_or_a_command() {
    let tmp = tempfile::tempdir().unwrap();
    for (args, says) in [
        (&["--watch"][..], "<CMD>"),
        (&["--grace", "1s", "--", "true"][..], "--watch"),
        (
            &["--watch", "--signal", "KILL", "--", "true"][..],
            "SIGKILL cannot be caught",
        ),
        (
            &["--watch", "--debounce", "soon", "--", "true"][..],
            "300ms or 10s",
        ),
    ] {
        let out = dev_output(tmp.path(), &[&["-p", "app"][..], args].concat(), &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
}

/// Measures the time from a save of `.env` to the restarted command
/// serving the new value, for README.md and docs/DOTENV.md:
/// `cargo test -p flux-e2e --test e2e -- --ignored --nocapture
/// measure_env_edit_to_restarted_command`.
#[test]
#[ignore = "a measurement, not a check"]
fn measure_env_edit_to_restarted_command() {
    for debounce in ["300ms", "50ms"] {
        let tmp = tempfile::Builder::new()
            .prefix("fxd")
            .tempdir_in("/tmp")
            .unwrap();
        let dir = tmp.path();
        std::fs::write(dir.join(".env"), "TOKEN=tok-value-0\n").unwrap();
        let mut child = Command::new(bin("fluxd"))
            .args(["--runtime-dir", dir.join("run").to_str().unwrap(), "dev"])
            .args(["-p", "app", "--watch", "--debounce", debounce, "--"])
            .arg(bin("fluxctl"))
            .args(["--runtime-dir", dir.join("run/dev/app").to_str().unwrap()])
            .args([
                "-p",
                "app",
                "run",
                "--",
                "sh",
                "-c",
                r#"echo "$TOKEN"; exec sleep 600"#,
            ])
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        assert!(first == "tok-value-0", "the first start read another value");
        let mut times = Vec::new();
        for i in 1..=20 {
            let value = format!("tok-value-{i}");
            let start = std::time::Instant::now();
            std::fs::write(dir.join(".env"), format!("TOKEN={value}\n")).unwrap();
            let line = lines.next().unwrap().unwrap();
            assert!(line == value, "a restart read another value");
            times.push(start.elapsed());
        }
        flux_e2e::terminate(&mut child, Duration::from_secs(10));
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "--debounce {debounce}: save → restarted command serving the new value over {} edits: min {:.0} ms, median {:.0} ms, max {:.0} ms",
            times.len(),
            ms(times[0]),
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1])
        );
    }
}
