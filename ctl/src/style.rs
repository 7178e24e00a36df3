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

#[cfg(test)]
mod tests {
    #[test]
    fn marks_only_on_a_terminal() {
        // The environment decides the rest; a pipe is never decorated.
        assert!(!super::decorate(false));
    }
}
