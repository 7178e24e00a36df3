//! Decoration of text output, decided once per stream.
//!
//! fluxctl's only decoration is a mark before a result — ✔ for done, ⚠ for
//! a warning that follows one. As gh does, it is shown only when the
//! stream is a terminal: piped or redirected output, which scripts read,
//! is plain text. `NO_COLOR` (set and not empty, <https://no-color.org>)
//! and `TERM=dumb` turn it off on a terminal too: people who ask for no
//! colour want no symbols either.

use std::io::IsTerminal;
use std::sync::OnceLock;

/// Whether a stream that is a terminal (or not) gets marks.
fn decorate(is_terminal: bool) -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
    is_terminal && !no_color && !dumb
}

fn stdout_decorated() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| decorate(std::io::stdout().is_terminal()))
}

fn stderr_decorated() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| decorate(std::io::stderr().is_terminal()))
}

/// `text` as a line reporting something done, for stdout: `✔ text` on a
/// terminal, `text` otherwise.
pub(crate) fn done(text: &str) -> String {
    if stdout_decorated() {
        format!("✔ {text}")
    } else {
        text.to_owned()
    }
}

/// [`done`] for a line written to stderr.
pub(crate) fn done_stderr(text: &str) -> String {
    if stderr_decorated() {
        format!("✔ {text}")
    } else {
        text.to_owned()
    }
}

/// `text` as a warning line on stdout: `⚠ text` on a terminal,
/// `warning: text` otherwise.
pub(crate) fn caution(text: &str) -> String {
    if stdout_decorated() {
        format!("⚠ {text}")
    } else {
        format!("warning: {text}")
    }
}

/// True for a character a terminal acts on rather than shows: C0 and C1
/// controls, DEL, and the bidirectional overrides and isolates that
/// reorder what follows them.
fn is_hostile(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every control character (newlines and tabs included) and
/// bidirectional override shown as `\u{…}`: for a field that came from
/// outside (an executable path, an error, a name) in one cell or line of
/// text output, so that it can neither move the cursor, clear the screen,
/// nor start a line of its own.
pub(crate) fn clean(text: &str) -> std::borrow::Cow<'_, str> {
    clean_but(text, &[])
}

/// [`clean`], keeping the characters in `keep` (a whole output's own
/// newlines and tabs).
pub(crate) fn clean_but<'a>(text: &'a str, keep: &[char]) -> std::borrow::Cow<'a, str> {
    if !text.chars().any(|c| is_hostile(c) && !keep.contains(&c)) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_hostile(c) && !keep.contains(&c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_not_acted_on() {
        assert_eq!(clean("/usr/bin/node"), "/usr/bin/node");
        assert_eq!(
            clean("/tmp/x\u{1b}[2J\nFAKE\u{202e}"),
            "/tmp/x\\u{1b}[2J\\u{a}FAKE\\u{202e}"
        );
        assert_eq!(clean_but("a\nb\u{7}\t", &['\n', '\t']), "a\nb\\u{7}\t");
        assert_eq!(clean("\u{9b}31m"), "\\u{9b}31m", "a C1 CSI too");
    }

    #[test]
    fn marks_only_on_a_terminal() {
        // The environment decides the rest; a pipe is never decorated.
        assert!(!super::decorate(false));
    }
}
