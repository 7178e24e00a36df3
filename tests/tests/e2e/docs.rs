//! The attacker tables of README.md (local attackers) and docs/FLEET.md
//! (etcd attackers) name, for each promise, the tests that play that
//! attacker. Every name must be a test that exists, so renaming or deleting
//! one cannot silently leave a promise unproved.

use std::path::Path;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// `module::function` names in backticks on the table rows of `doc`.
fn named_tests(doc: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(Path::new(ROOT).join(doc)).unwrap();
    let mut names = Vec::new();
    for line in text.lines().filter(|l| l.starts_with('|')) {
        for (i, quoted) in line.split('`').enumerate() {
            if i % 2 == 0 {
                continue;
            }
            let Some((module, function)) = quoted.split_once("::") else {
                continue;
            };
            let ident = |s: &str| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            };
            if ident(module) && ident(function) {
                names.push((module.to_owned(), function.to_owned()));
            }
        }
    }
    names
}

/// Fails unless each name is a `#[test]` function in `<dir>/<module>.rs`.
fn assert_tests_exist(doc: &str, dir: &str, at_least: usize) {
    let names = named_tests(doc);
    assert!(
        names.len() >= at_least,
        "{doc}: expected at least {at_least} test names in its attacker table, found {}",
        names.len()
    );
    for (module, function) in names {
        let file = Path::new(ROOT).join(dir).join(format!("{module}.rs"));
        let source = std::fs::read_to_string(&file).unwrap_or_else(|e| {
            panic!("{doc} names {module}::{function}: {}: {e}", file.display())
        });
        let lines: Vec<&str> = source.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.starts_with(&format!("fn {function}(")))
            .unwrap_or_else(|| {
                panic!(
                    "{doc} names {module}::{function}, which is not in {}",
                    file.display()
                )
            });
        assert!(
            lines[..at]
                .iter()
                .rev()
                .take(3)
                .any(|l| l.trim() == "#[test]"),
            "{doc} names {module}::{function}, which is not a #[test]"
        );
    }
}

#[test]
fn the_readme_attacker_table_names_tests_that_exist() {
    assert_tests_exist("README.md", "tests/tests/e2e", 10);
}

#[test]
fn the_fleet_threat_model_names_tests_that_exist() {
    assert_tests_exist("docs/FLEET.md", "tests/tests/fleet", 5);
}
