//! The operator CLI as the product page shows it, and where people
//! stumble first: `flux secrets set/list/delete` and `flux dev` (the same
//! program as `fluxctl`, under the page's name), `secrets get` answered
//! with what to use instead, `status` failing a health check when a
//! project cannot be served, `audit` fitting a terminal, and completions
//! that offer the daemon's project and secret names in bash, zsh and fish.

use crate::{assert_value, stderr, stdout};
use flux_e2e::{TestDaemon, assert_no_secret, bin, eventually, have_tool};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `flux ARGS` pointed at `d`, with no project set.
fn flux(d: &TestDaemon, args: &[&str]) -> Output {
    Command::new(bin("flux"))
        .args(args)
        .env("FLUX_RUNTIME_DIR", d.runtime_dir())
        .env_remove("FLUX_PROJECT")
        .current_dir(d.dir())
        .stdin(Stdio::null())
        .output()
        .expect("run flux")
}

#[test]
fn flux_secrets_set_list_delete_as_the_product_page_shows_them() {
    let d = TestDaemon::start();
    d.create_project("my-app");
    std::fs::write(d.dir().join("flux.json"), r#"{"name":"my-app"}"#).unwrap();

    let out = flux(&d, &["secrets", "set", "OPENAI_API_KEY", "sk-abc123"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Secret set: OPENAI_API_KEY\n");
    assert_no_secret(&out.stdout, "sk-abc123", "flux secrets set's output");
    assert_value(&mut d.client("my-app"), "OPENAI_API_KEY", "sk-abc123");

    let out = flux(&d, &["secrets", "set", "OPENAI_API_KEY", "sk-newkey456"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("Secret updated: OPENAI_API_KEY\n"),
        "{}",
        stdout(&out)
    );
    assert_value(&mut d.client("my-app"), "OPENAI_API_KEY", "sk-newkey456");

    let out = flux(&d, &["secrets", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list = stdout(&out);
    assert!(
        list.starts_with("OPENAI_API_KEY ") && list.contains("set just now"),
        "{list}"
    );
    assert_no_secret(&out.stdout, "sk-newkey456", "flux secrets list");

    let out = flux(&d, &["secrets", "delete", "OPENAI_API_KEY"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("Secret deleted: OPENAI_API_KEY\n"),
        "{}",
        stdout(&out)
    );
    assert!(d.client("my-app").list().unwrap().is_empty());

    // Errors and usage name the program as it was called, and the
    // commands they suggest work under that name.
    let out = flux(&d, &["secrets", "delete", "OPENAI_API_KEY"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("flux: error: "),
        "{}",
        stderr(&out)
    );
    let out = flux(&d, &["secrets", "list", "-p", "nope"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("`flux projects create nope`"),
        "{}",
        stderr(&out)
    );
    let out = flux(&d, &["bogus"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("Usage: flux [OPTIONS] <COMMAND>"),
        "{}",
        stderr(&out)
    );
    let help = stdout(&flux(&d, &["--help"]));
    assert!(help.contains("Usage: flux "), "{help}");
    assert!(help.contains("\n  dev "), "dev is listed: {help}");
}

#[test]
fn flux_dev_runs_fluxd_dev_on_the_env_file() {
    let tmp = tempfile::Builder::new()
        .prefix("fxfd")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join(".env"), "OPENAI_API_KEY=sk-local-dev-key\n").unwrap();
    let socket_file = dir.join("socket");
    let done = dir.join("done");
    // The project comes from -p before `dev`; the rest goes to fluxd dev
    // as it is, `--` and the command included.
    let mut child = Command::new(bin("flux"))
        .args(["-p", "app", "--runtime-dir"])
        .arg(dir.join("run"))
        .args(["dev", "--", "sh", "-c"])
        .arg(r#"echo "$FLUX_SECRETS_SOCKET" > "$OUT.tmp" && mv "$OUT.tmp" "$OUT"; while [ ! -e "$DONE" ]; do sleep 0.02; done; exit 42"#)
        .env("OUT", &socket_file)
        .env("DONE", &done)
        .env_remove("FLUX_PROJECT")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually("the command under flux dev started", || {
        socket_file.exists()
    });
    // flux became fluxd: the same process, not a child of it.
    let exe = std::fs::read_link(format!("/proc/{}/exe", child.id())).unwrap();
    assert_eq!(exe, bin("fluxd"), "flux dev execs fluxd");
    let socket = std::fs::read_to_string(&socket_file).unwrap();
    let mut client = flux_protocol::blocking::Client::connect(socket.trim()).unwrap();
    assert_value(&mut client, "OPENAI_API_KEY", "sk-local-dev-key");
    std::fs::write(&done, "").unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(42), "the command's exit status");

    // `flux dev --help` is fluxd dev's help.
    let out = Command::new(bin("flux"))
        .args(["dev", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("--env-file"), "{}", stdout(&out));
}

#[test]
fn flux_dev_without_fluxd_says_so() {
    // A flux alone in a folder, with no fluxd on PATH either.
    let tmp = tempfile::tempdir().unwrap();
    let lone = tmp.path().join("flux");
    std::fs::copy(bin("flux"), &lone).unwrap();
    let out = Command::new(&lone)
        .args(["dev", "--", "true"])
        .env("PATH", tmp.path())
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("`flux dev` runs `fluxd dev`, and no fluxd was found") && err.contains("PATH"),
        "{err}"
    );
}

#[test]
fn secrets_get_says_why_not_and_what_to_use() {
    let d = TestDaemon::start();
    d.create_project("app");
    d.ctl_ok(&["secrets", "set", "OPENAI_API_KEY", "sk-abc123", "-p", "app"]);
    for (program, out) in [
        (
            "fluxctl",
            d.run_ctl(&["secrets", "get", "OPENAI_API_KEY", "-p", "app"]),
        ),
        (
            "flux",
            flux(&d, &["secrets", "get", "-p", "app", "OPENAI_API_KEY"]),
        ),
    ] {
        assert_eq!(out.status.code(), Some(2), "{program}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{program}: nothing on stdout");
        assert_no_secret(&out.stderr, "sk-abc123", "the answer to secrets get");
        let err = stderr(&out);
        for hint in [
            format!("{program}: error: `{program} secrets get` does not exist, on purpose"),
            "never shows a secret's value".to_owned(),
            format!("`{program} run -- CMD`"),
            "`fluxd dev`".to_owned(),
            "ctx.secrets.get(\"OPENAI_API_KEY\")".to_owned(),
        ] {
            assert!(err.contains(&hint), "{program}: {hint}: {err}");
        }
        assert!(!err.contains("similar subcommand"), "{err}");
    }
    // It is not offered as a command.
    let help = d.ctl_ok(&["secrets", "--help"]);
    assert!(!help.contains("get"), "{help}");
}

/// Puts `bytes` in place of `vault`, atomically.
fn replace_vault(vault: &Path, bytes: &[u8]) {
    let staging = vault.with_extension("staging");
    std::fs::write(&staging, bytes).unwrap();
    std::fs::rename(&staging, vault).unwrap();
}

#[test]
fn status_exits_7_when_a_project_cannot_be_served() {
    let d = TestDaemon::start();
    d.create_project("app");
    d.create_project("billing");
    let out = d.run_ctl(&["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = d.run_ctl(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["healthy"], true);

    replace_vault(&d.vault_path("billing"), b"not a vault at all");
    eventually("the broken vault is reported", || {
        crate::last_error(&d, "billing").is_some()
    });
    let out = d.run_ctl(&["status"]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("\n! billing: "), "{text}");
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    let out = d.run_ctl(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["healthy"], false);
}

#[test]
fn audit_lines_fit_the_terminal_and_json_keeps_everything() {
    let d = TestDaemon::start();
    let project = "billing-service-production-eu-west";
    let name = "OPENAI_API_KEY_FOR_THE_NIGHTLY_SUMMARISER_WORKER_POOL";
    d.create_project(project);
    d.ctl_ok(&["secrets", "set", name, "v", "-p", project]);
    d.ctl_ok(&["secrets", "list", "-p", project]);
    // A denial, with its reason, too.
    let _ = d.run_ctl(&["secrets", "delete", "NO_SUCH_SECRET", "-p", project]);

    for width in ["80", "100", "120"] {
        let out = d
            .ctl()
            .args(["audit"])
            .env("COLUMNS", width)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let text = stdout(&out);
        assert!(text.lines().count() > 3, "{text}");
        let width: usize = width.parse().unwrap();
        for line in text.lines() {
            assert!(line.chars().count() <= width, "{width}: {line}");
        }
        assert!(text.starts_with("TIME (UTC)"), "{text}");
    }
    // Piped with no COLUMNS: whole cells, and still no 250-column lines.
    let out = d
        .ctl()
        .args(["audit"])
        .env_remove("COLUMNS")
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(text.contains(name), "{text}");
    assert!(text.contains("fluxctl["), "the peer as exe[pid]: {text}");
    let longest = text.lines().map(|l| l.chars().count()).max().unwrap();
    assert!(longest < 160, "{longest}: {text}");

    // On a terminal, its own width.
    if have_tool("script", "audit_fits_a_terminal") {
        let out = Command::new("script")
            .args(["-qec"])
            .arg(format!("stty cols 90; {} audit", bin("fluxctl").display()))
            .arg("/dev/null")
            .env("FLUX_RUNTIME_DIR", d.runtime_dir())
            .env_remove("COLUMNS")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let screen = stdout(&out);
        assert!(screen.contains("TIME (UTC)"), "{screen}");
        for line in screen.lines() {
            assert!(line.trim_end_matches('\r').chars().count() <= 90, "{line}");
        }
    }

    // --json keeps every field, whole.
    let json = d.ctl_ok(&["audit", "--json"]);
    let set = json
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["op"] == "write")
        .expect("the set (a Write) is logged");
    assert_eq!(set["name"], name);
    assert_eq!(set["project"], project);
    assert!(set["exe"].as_str().unwrap().ends_with("/fluxctl"), "{set}");
    for field in [
        "time", "first", "count", "uid", "gid", "pid", "allowed", "result", "detail",
    ] {
        assert!(set.get(field).is_some(), "{field}: {set}");
    }
}

/// What `shell` completes for the words of `line` (its last word, maybe
/// empty, is the one completed), with the completion script `program
/// completions SHELL` prints installed, against `runtime`.
fn complete_in(shell: &str, program: &str, line: &[&str], runtime: &Path) -> (Vec<String>, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin(program))
        .args(["completions", shell])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let script = dir.path().join("script");
    std::fs::write(&script, &out.stdout).unwrap();
    let quoted: Vec<String> = line.iter().map(|w| format!("'{w}'")).collect();
    let words = quoted.join(" ");
    let code = match shell {
        "bash" => format!(
            "source {s}\nCOMP_WORDS=({words}); COMP_CWORD={i}; COMP_TYPE=9\n_clap_complete_{program} {program} {cur} {prev}\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"",
            s = script.display(),
            i = line.len() - 1,
            cur = quoted[line.len() - 1],
            prev = quoted[line.len() - 2],
        ),
        // The completion system's functions stood in for: _describe
        // prints the candidates it is given.
        "zsh" => format!(
            "compdef() {{ : }}\n_describe() {{ local arr=${{@[-1]}}; print -rl -- ${{(P)arr}} }}\nsource {s}\nwords=({words}); CURRENT={n}\n_clap_dynamic_completer_{program}",
            s = script.display(),
            n = line.len(),
        ),
        "fish" => format!(
            "source {s}\ncomplete -C '{cmd}'",
            s = script.display(),
            cmd = line.join(" "),
        ),
        _ => unreachable!(),
    };
    let path = format!(
        "{}:{}",
        bin(program).parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(shell)
        .args(["-c", &code])
        .env("PATH", path)
        .env("FLUX_RUNTIME_DIR", runtime)
        .env_remove("FLUX_PROJECT")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let got = stdout(&out)
        .lines()
        // fish adds a tab and zsh a colon before a description.
        .map(|l| l.split(['\t', ':']).next().unwrap_or_default().to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    (got, stderr(&out))
}

#[test]
fn completions_offer_the_daemons_projects_and_secret_names() {
    let d = TestDaemon::start();
    d.create_project("app");
    d.create_project("billing");
    d.ctl_ok(&["secrets", "set", "OPENAI_API_KEY", "sk-abc123", "-p", "app"]);
    d.ctl_ok(&[
        "secrets",
        "set",
        "STRIPE_SECRET_KEY",
        "sk-def456",
        "-p",
        "app",
    ]);
    d.ctl_ok(&[
        "secrets",
        "set",
        "BILLING_ONLY",
        "x-ghi789",
        "-p",
        "billing",
    ]);
    for shell in ["bash", "zsh", "fish"] {
        if !have_tool(shell, &format!("completions_from_the_daemon_{shell}")) {
            continue;
        }
        for program in ["fluxctl", "flux"] {
            let (got, err) = complete_in(
                shell,
                program,
                &[program, "--project", ""],
                &d.runtime_dir(),
            );
            assert!(
                got.contains(&"app".to_owned()) && got.contains(&"billing".to_owned()),
                "{shell} {program} --project: {got:?} {err}"
            );
            let (got, err) = complete_in(
                shell,
                program,
                &[program, "-p", "app", "secrets", "delete", ""],
                &d.runtime_dir(),
            );
            for name in ["OPENAI_API_KEY", "STRIPE_SECRET_KEY"] {
                assert!(
                    got.contains(&name.to_owned()),
                    "{shell} {program}: {name} in {got:?} {err}"
                );
            }
            assert!(
                !got.contains(&"BILLING_ONLY".to_owned()),
                "{shell}: another project's: {got:?}"
            );
            let all = got.join("\n");
            for value in ["sk-abc123", "sk-def456", "x-ghi789"] {
                assert_no_secret(all.as_bytes(), value, "completion candidates");
            }
        }
        // The project named after the command, and a prefix typed.
        let (got, err) = complete_in(
            shell,
            "fluxctl",
            &[
                "fluxctl",
                "secrets",
                "history",
                "--project",
                "billing",
                "BIL",
            ],
            &d.runtime_dir(),
        );
        assert!(
            got.contains(&"BILLING_ONLY".to_owned()),
            "{shell}: {got:?} {err}"
        );
        // Subcommands come from the binary too.
        let (got, err) = complete_in(
            shell,
            "fluxctl",
            &["fluxctl", "secrets", "im"],
            &d.runtime_dir(),
        );
        assert!(got.contains(&"import".to_owned()), "{shell}: {got:?} {err}");
    }
}

#[test]
fn completions_without_a_daemon_offer_no_names_quietly_and_fast() {
    let tmp = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        if !have_tool(shell, &format!("completions_without_a_daemon_{shell}")) {
            continue;
        }
        let started = Instant::now();
        let (got, err) = complete_in(shell, "fluxctl", &["fluxctl", "--project", ""], tmp.path());
        let (names, err2) = complete_in(
            shell,
            "fluxctl",
            &["fluxctl", "-p", "app", "secrets", "delete", ""],
            tmp.path(),
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{shell}: {:?}",
            started.elapsed()
        );
        assert!(got.is_empty(), "{shell}: {got:?}");
        assert!(
            names.iter().all(|n| n.starts_with('-')),
            "{shell}: only flags: {names:?}"
        );
        assert!(err.is_empty() && err2.is_empty(), "{shell}: {err} {err2}");
    }

    // A daemon that accepts and never answers: the TAB gives up in time.
    let hung = tempfile::Builder::new()
        .prefix("fxh")
        .tempdir_in("/tmp")
        .unwrap();
    let _listener =
        std::os::unix::net::UnixListener::bind(hung.path().join("control.sock")).unwrap();
    if have_tool("bash", "completions_with_a_hung_daemon") {
        let started = Instant::now();
        let (got, err) = complete_in(
            "bash",
            "fluxctl",
            &["fluxctl", "--project", ""],
            hung.path(),
        );
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(3),
            "a hung daemon held the TAB for {took:?}"
        );
        assert!(got.is_empty() && err.is_empty(), "{got:?} {err}");
    }
}
