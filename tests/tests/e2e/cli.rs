//! fluxctl's conventions, through the real binaries: `--json` prints one
//! document, `audit` shows every project unless `--project` narrows it,
//! `run` hands the child the project socket and keeps variables with
//! `--no-override`, and empty values need `--allow-empty`; fluxd colours
//! its log only on a terminal, never with `NO_COLOR` or `TERM=dumb`.

use crate::{assert_value, stderr, stdout};
use flux_e2e::TestDaemon;
use serde_json::Value;

/// Runs `fluxctl ARGS`, asserting success, and parses stdout as exactly
/// one JSON document.
fn json(d: &TestDaemon, args: &[&str]) -> Value {
    let out = d.ctl_ok(args);
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("{args:?}: not one JSON document ({e}): {out}"))
}

#[test]
fn json_results_are_one_document_each() {
    let d = TestDaemon::start();
    let created = json(&d, &["projects", "create", "app", "--json"]);
    assert_eq!(created["name"], "app");
    assert!(
        created["socket"]
            .as_str()
            .unwrap()
            .ends_with("/projects/app.sock"),
        "{created}"
    );

    let set = json(
        &d,
        &["secrets", "set", "K", "v1-value", "-p", "app", "--json"],
    );
    assert_eq!(set["project"], "app");
    assert_eq!(set["name"], "K");
    assert_eq!(set["created"], true);
    let again = json(
        &d,
        &["secrets", "set", "K", "v2-value", "-p", "app", "--json"],
    );
    assert_eq!(again["created"], false);
    assert_eq!(again["outcome"], "updated");
    assert!(again["generation"].as_u64() > set["generation"].as_u64());
    assert_eq!(set["outcome"], "created");
    // The same value again: the daemon says it kept no new version.
    let same = json(
        &d,
        &["secrets", "set", "K", "v2-value", "-p", "app", "--json"],
    );
    assert_eq!(same["created"], false);
    assert_eq!(same["outcome"], "unchanged");
    for doc in [&set, &again, &same] {
        let text = doc.to_string();
        assert!(!text.contains("v1-value") && !text.contains("v2-value"));
    }

    let env = d.dir().join("prod.env");
    std::fs::write(&env, "K=v2-value\nNEW=n\n").unwrap();
    let env = env.to_str().unwrap();
    let plan = json(
        &d,
        &["secrets", "import", env, "--dry-run", "-p", "app", "--json"],
    );
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["created"], serde_json::json!(["NEW"]));
    // K holds v2-value already: the daemon compared the values.
    assert_eq!(plan["updated"], serde_json::json!([]));
    assert_eq!(plan["unchanged"], serde_json::json!(["K"]));
    assert_eq!(plan["values_compared"], true);
    assert_eq!(plan["generation"], Value::Null);
    let imported = json(&d, &["secrets", "import", env, "-p", "app", "--json"]);
    assert_eq!(imported["dry_run"], false);
    assert_eq!(imported["replaced"], serde_json::json!(["K"]));
    // The import says what the dry run said: K was already v2-value.
    assert_eq!(imported["created"], serde_json::json!(["NEW"]));
    assert_eq!(imported["updated"], serde_json::json!([]));
    assert_eq!(imported["unchanged"], serde_json::json!(["K"]));
    assert_eq!(imported["values_compared"], true);
    assert!(imported["generation"].as_u64().is_some(), "{imported}");

    let deleted = json(&d, &["secrets", "delete", "NEW", "-p", "app", "--json"]);
    assert_eq!(deleted["deleted"], true);
    assert_eq!(deleted["name"], "NEW");

    let hosts = json(&d, &["hosts", "list", "--json"]);
    assert_eq!(hosts["this_host"], Value::Null, "no fleet: {hosts}");

    let gone = json(&d, &["projects", "delete", "app", "--yes", "--json"]);
    assert_eq!(
        gone,
        serde_json::json!({ "name": "app", "deleted": true, "remains": [] })
    );
}

#[test]
fn audit_shows_every_project_unless_the_flag_narrows_it() {
    let d = TestDaemon::start();
    for p in ["alpha", "beta"] {
        d.create_project(p);
        d.ctl_ok(&["secrets", "set", "K", "value", "-p", p]);
    }
    let projects = |out: &str| -> Vec<String> {
        let mut seen: Vec<String> = out
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("one JSON object per line"))
            .filter_map(|r| r["project"].as_str().map(str::to_owned))
            .collect();
        seen.sort();
        seen.dedup();
        seen
    };
    // FLUX_PROJECT, exported for project work, does not narrow the log.
    let out = d
        .ctl()
        .args(["audit", "--json"])
        .env("FLUX_PROJECT", "alpha")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(projects(&stdout(&out)), ["alpha", "beta"]);
    // Nor does flux.json.
    std::fs::write(d.dir().join("flux.json"), r#"{"name": "alpha"}"#).unwrap();
    assert_eq!(projects(&d.ctl_ok(&["audit", "--json"])), ["alpha", "beta"]);
    // --project does.
    assert_eq!(
        projects(&d.ctl_ok(&["audit", "--json", "--project", "beta"])),
        ["beta"]
    );
}

#[test]
fn run_hands_over_the_socket_and_keeps_variables_when_told() {
    let d = TestDaemon::start();
    d.create_project("app");
    d.ctl_ok(&["secrets", "set", "TOKEN", "from-flux", "-p", "app"]);
    let socket = d.project_socket("app");
    let check = r#"test "$TOKEN" = "$WANT_TOKEN" && test "$FLUX_SECRETS_SOCKET" = "$WANT_SOCKET" && echo ok"#;
    let run = |extra: &[&str], token: &str, want_token: &str, sock: &str, want_sock: &str| {
        let out = d
            .ctl()
            .args(["run", "-p", "app"])
            .args(extra)
            .args(["--", "sh", "-c", check])
            .env("TOKEN", token)
            .env("WANT_TOKEN", want_token)
            .env("FLUX_SECRETS_SOCKET", sock)
            .env("WANT_SOCKET", want_sock)
            .output()
            .unwrap();
        assert_eq!(stdout(&out), "ok\n", "{extra:?}: {}", stderr(&out));
    };
    let socket = socket.to_str().unwrap();
    // By default the project wins: its secret and its socket.
    run(&[], "local", "from-flux", "/elsewhere.sock", socket);
    // --no-override keeps what the environment already has.
    run(
        &["--no-override"],
        "local",
        "local",
        "/elsewhere.sock",
        "/elsewhere.sock",
    );
    // … and adds what it lacks.
    let out = d
        .ctl()
        .args(["run", "-p", "app", "--no-override", "--", "sh", "-c"])
        .arg(r#"test "$TOKEN" = from-flux && test -S "$FLUX_SECRETS_SOCKET" && echo ok"#)
        .env_remove("TOKEN")
        .env_remove("FLUX_SECRETS_SOCKET")
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "ok\n", "{}", stderr(&out));
}

#[test]
fn empty_values_need_allow_empty() {
    let d = TestDaemon::start();
    d.create_project("app");
    let out = d.run_ctl(&["secrets", "set", "EMPTY", "", "-p", "app"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(d.client("app").list().unwrap().is_empty());
    d.ctl_ok(&["secrets", "set", "EMPTY", "", "--allow-empty", "-p", "app"]);
    assert_value(&mut d.client("app"), "EMPTY", "");

    // An import with `KEY=` lines: refused with the names, all or nothing.
    let env = d.dir().join("template.env");
    std::fs::write(&env, "SET=value\nBLANK=\nALSO_BLANK=''\n").unwrap();
    let env = env.to_str().unwrap();
    let out = d.run_ctl(&["secrets", "import", env, "-p", "app"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("2 names have an empty value: ALSO_BLANK, BLANK"),
        "{err}"
    );
    assert!(err.contains("--allow-empty"), "{err}");
    assert_eq!(d.client("app").list().unwrap().len(), 1, "nothing imported");
    let out = d.ctl_ok(&["secrets", "import", env, "--allow-empty", "-p", "app"]);
    assert!(
        out.ends_with("3 created, 0 updated, 0 unchanged\n"),
        "{out}"
    );
    assert_value(&mut d.client("app"), "BLANK", "");
}

/// fluxd's log on a terminal (a pty from `script`), for a start that fails
/// at once: a relative state folder is a configuration error.
fn fluxd_log_on_a_terminal(env: &[(&str, &str)]) -> String {
    let command = format!(
        "{} --state-dir relative/state --runtime-dir /tmp/fx-colour-unused",
        flux_e2e::bin("fluxd").display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_remove("NO_COLOR")
        .env("TERM", "xterm")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn fluxd_colours_its_log_only_on_a_terminal_without_no_color() {
    if !flux_e2e::have_tool(
        "script",
        "fluxd_colours_its_log_only_on_a_terminal_without_no_color",
    ) {
        return;
    }
    let coloured = fluxd_log_on_a_terminal(&[]);
    assert!(coloured.contains("must be an absolute path"), "{coloured}");
    assert!(
        coloured.contains("\x1b["),
        "no colour on a terminal: {coloured:?}"
    );
    for env in [("NO_COLOR", "1"), ("TERM", "dumb")] {
        let plain = fluxd_log_on_a_terminal(&[env]);
        assert!(plain.contains("must be an absolute path"), "{plain}");
        assert!(!plain.contains("\x1b["), "colour with {env:?}: {plain:?}");
    }
    // Off a terminal there is no colour either.
    let out = std::process::Command::new(flux_e2e::bin("fluxd"))
        .args(["--state-dir", "relative/state"])
        .env_remove("NO_COLOR")
        .env("TERM", "xterm")
        .output()
        .unwrap();
    assert!(!out.stderr.contains(&0x1b), "{}", stderr(&out));
}

#[test]
fn set_and_import_say_unchanged_when_the_value_is_already_current() {
    let d = TestDaemon::start();
    d.create_project("app");
    d.ctl_ok(&["secrets", "set", "DB_PASSWORD", "pw-current-1", "-p", "app"]);
    let versions = || {
        d.client("app")
            .history("DB_PASSWORD")
            .unwrap()
            .versions
            .len()
    };

    // `echo pw | fluxctl secrets set`: the same value, no new version, and
    // fluxctl says so instead of "updated … live immediately".
    let mut child = d
        .ctl()
        .args(["secrets", "set", "DB_PASSWORD", "-p", "app"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"pw-current-1\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "Secret unchanged: DB_PASSWORD already holds this value (no new version)\n"
    );
    assert_eq!(versions(), 1);

    // import agrees with its own dry run: unchanged, not "replaced".
    let env = d.dir().join("prod.env");
    std::fs::write(&env, "DB_PASSWORD=pw-current-1\n").unwrap();
    let env = env.to_str().unwrap();
    let plan = d.ctl_ok(&["secrets", "import", env, "--dry-run", "-p", "app"]);
    let out = d.ctl_ok(&["secrets", "import", env, "-p", "app"]);
    let listed = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("unchanged") || l.ends_with(" unchanged"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        listed(&out),
        listed(&plan),
        "import: {out}\ndry run: {plan}"
    );
    assert!(
        out.contains("unchanged (same value, no new version): DB_PASSWORD\n"),
        "{out}"
    );
    assert!(
        out.starts_with(&format!(
            "Project app already holds every value in {env}: nothing changed\n"
        )),
        "{out}"
    );
    assert!(
        out.ends_with("0 created, 0 updated, 1 unchanged\n"),
        "{out}"
    );
    assert!(!out.contains("replaced"), "{out}");
    assert_eq!(versions(), 1);

    // A changed value is still an update, in both.
    let out = d.ctl_ok(&["secrets", "set", "DB_PASSWORD", "pw-current-2", "-p", "app"]);
    assert!(out.starts_with("Secret updated: DB_PASSWORD\n"), "{out}");
    std::fs::write(env, "DB_PASSWORD=pw-current-3\nNEW_ONE=n\n").unwrap();
    let out = d.ctl_ok(&["secrets", "import", env, "-p", "app"]);
    assert!(
        out.starts_with("Imported 2 secrets into project app (live now)\n"),
        "{out}"
    );
    assert!(out.contains("updated: DB_PASSWORD\n"), "{out}");
    assert!(
        out.ends_with("1 created, 1 updated, 0 unchanged\n"),
        "{out}"
    );
    assert_eq!(versions(), 3);
}
