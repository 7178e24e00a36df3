//! Names and sizes: the grammar every secret and project name must match and
//! the byte limits on values and frames. Both ends check them — the client to
//! fail early with a precise message, the daemon because it trusts no client.

use std::fmt;

/// Longest secret name, in bytes.
pub const MAX_SECRET_NAME_LEN: usize = 128;
/// Longest project name, in bytes (it becomes a file and socket name).
pub const MAX_PROJECT_NAME_LEN: usize = 64;
/// Largest secret value, in bytes of UTF-8.
pub const MAX_VALUE_LEN: usize = 64 * 1024;
/// Largest frame a daemon accepts from a client. Checked against the length
/// prefix before any buffer is allocated.
pub const MAX_REQUEST_FRAME_LEN: usize = 256 * 1024;
/// Largest frame a client accepts from the daemon.
pub const MAX_RESPONSE_FRAME_LEN: usize = 64 * 1024 * 1024;

/// Why a name was refused. The message quotes the name (names are not
/// secret) and states the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError {
    kind: &'static str,
    name: String,
    rule: &'static str,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names are shown shortened and with control characters escaped, so
        // a hostile name cannot flood or garble a terminal.
        let shown: String = self.name.chars().take(80).collect();
        let more = if self.name.chars().count() > 80 {
            "…"
        } else {
            ""
        };
        write!(
            f,
            "invalid {} name {:?}{more}: {}",
            self.kind, shown, self.rule
        )
    }
}

impl std::error::Error for NameError {}

const SECRET_RULE: &str = "use letters, digits and '_', start with a letter or '_', at most 128 characters (e.g. OPENAI_API_KEY)";
const PROJECT_RULE: &str = "use letters, digits, '-' and '_', start with a letter or digit, at most 64 characters (e.g. my-app)";

/// Checks a secret name against `^[A-Za-z_][A-Za-z0-9_]{0,127}$`, the
/// grammar of a POSIX environment variable name, so every secret can be
/// exported by `fluxctl run`.
pub fn validate_secret_name(name: &str) -> Result<(), NameError> {
    let bytes = name.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= MAX_SECRET_NAME_LEN
        && (bytes[0].is_ascii_alphabetic() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_');
    if ok {
        Ok(())
    } else {
        Err(NameError {
            kind: "secret",
            name: name.to_owned(),
            rule: SECRET_RULE,
        })
    }
}

/// Checks a project name against `^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`. Project
/// names become file names (`<name>.age`, `<name>.key`, `<name>.sock`), so
/// no dots, slashes or leading dashes.
pub fn validate_project_name(name: &str) -> Result<(), NameError> {
    let bytes = name.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= MAX_PROJECT_NAME_LEN
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-');
    if ok {
        Ok(())
    } else {
        Err(NameError {
            kind: "project",
            name: name.to_owned(),
            rule: PROJECT_RULE,
        })
    }
}

/// Checks a value's size; returns a message naming the limit, never the value.
pub fn validate_value_len(len: usize) -> Result<(), String> {
    if len > MAX_VALUE_LEN {
        Err(format!(
            "value is {len} bytes; the limit is {MAX_VALUE_LEN} bytes (64 KiB)"
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names() {
        for ok in ["A", "_", "OPENAI_API_KEY", "a1", &"A".repeat(128)] {
            assert!(validate_secret_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1A",
            "A-B",
            "A B",
            "A.B",
            "Ä",
            "A\n",
            "../x",
            &"A".repeat(129),
        ] {
            assert!(validate_secret_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn project_names() {
        for ok in ["a", "my-app", "App_2", "0x", &"p".repeat(64)] {
            assert!(validate_project_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "_a", "a.b", "..", "a/b", "a b", &"p".repeat(65)] {
            assert!(validate_project_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn name_error_says_the_rule_and_escapes() {
        let e = validate_secret_name("bad\u{1b}[2Jname")
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid secret name"), "{e}");
        assert!(e.contains("\\u{1b}"), "{e}");
        assert!(e.contains("start with a letter"), "{e}");
    }

    #[test]
    fn value_limit() {
        assert!(validate_value_len(MAX_VALUE_LEN).is_ok());
        let e = validate_value_len(MAX_VALUE_LEN + 1).unwrap_err();
        assert!(e.contains("65537 bytes"), "{e}");
    }
}
