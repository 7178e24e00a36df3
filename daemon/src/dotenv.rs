//! `.env` files, as `fluxd dev` and `fluxctl secrets import` read them.
//!
//! The syntax is what users of dotenv expect:
//!
//! ```text
//! # a comment
//! OPENAI_API_KEY=sk-local-dev-key
//! export STRIPE_SECRET_KEY = sk_test_xyz   # `export`, spaces, inline comment
//! GREETING="hello\nworld"                  # escapes in double quotes
//! LITERAL='no $expansion, no \escapes'     # single quotes are literal
//! PEM="-----BEGIN KEY-----
//! abc
//! -----END KEY-----"                       # quoted values may span lines
//! ```
//!
//! - A UTF-8 byte order mark at the start is skipped; CRLF line ends are
//!   read as LF.
//! - Unquoted values end at the end of the line or at ` #`; surrounding
//!   whitespace is trimmed.
//! - In double quotes: `\n`, `\r`, `\t`, `\"`, `\\` and `\$` are escapes;
//!   any other backslash is kept as is. Single quotes take everything
//!   literally.
//! - No `$VAR` expansion, ever: `$` is an ordinary character, so a value is
//!   exactly what the file says.
//! - Names follow the secret grammar (`^[A-Za-z_][A-Za-z0-9_]{0,127}$`).
//!   When a name appears twice, the later line wins.
//!
//! A parse error names the file, line and column and what was expected —
//! never any part of a value.

use flux_protocol::SecretValue;
use flux_protocol::limits::{validate_secret_name, validate_value_len};
use std::fmt;
use std::path::Path;
use zeroize::Zeroizing;

/// Why a `.env` file could not be read. Holds no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub reason: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.reason
        )
    }
}

impl std::error::Error for ParseError {}

/// Reads and parses a `.env` file.
pub fn read(path: &Path) -> Result<Vec<(String, SecretValue)>, ParseError> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| ParseError {
        file: path.display().to_string(),
        line: 0,
        column: 0,
        reason: format!("cannot read: {e}"),
    })?);
    parse(&bytes, &path.display().to_string())
}

/// Parses `.env` text; `file` names it in errors. Later duplicates win.
pub fn parse(bytes: &[u8], file: &str) -> Result<Vec<(String, SecretValue)>, ParseError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let before = &bytes[..e.valid_up_to()];
        let line = before.iter().filter(|b| **b == b'\n').count() + 1;
        let column = before.len()
            - before
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i + 1)
            + 1;
        ParseError {
            file: file.to_owned(),
            line,
            column,
            reason: "not UTF-8 text".into(),
        }
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let text: Zeroizing<String> = Zeroizing::new(text.replace("\r\n", "\n"));
    let mut p = Parser {
        chars: text.chars().collect(),
        at: 0,
        line: 1,
        column: 1,
        file,
    };
    let out = p.entries();
    p.chars.iter_mut().for_each(|c| *c = '\0');
    let mut entries = out?;
    // Later lines win.
    let mut seen = std::collections::HashSet::new();
    entries.reverse();
    entries.retain(|(name, _)| seen.insert(name.clone()));
    entries.reverse();
    Ok(entries)
}

struct Parser<'a> {
    chars: Vec<char>,
    at: usize,
    line: usize,
    column: usize,
    file: &'a str,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += 1;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn error(&self, line: usize, column: usize, reason: impl Into<String>) -> ParseError {
        ParseError {
            file: self.file.to_owned(),
            line,
            column,
            reason: reason.into(),
        }
    }

    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.bump();
        }
    }

    fn skip_line(&mut self) {
        while let Some(c) = self.bump() {
            if c == '\n' {
                break;
            }
        }
    }

    fn entries(&mut self) -> Result<Vec<(String, SecretValue)>, ParseError> {
        let mut out = Vec::new();
        loop {
            self.skip_blanks();
            match self.peek() {
                None => return Ok(out),
                Some('\n') => {
                    self.bump();
                }
                Some('#') => self.skip_line(),
                Some(_) => out.push(self.entry()?),
            }
        }
    }

    fn word(&mut self) -> String {
        let mut w = String::new();
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                w.push(c);
                self.bump();
            } else {
                break;
            }
        }
        w
    }

    fn entry(&mut self) -> Result<(String, SecretValue), ParseError> {
        let (line, column) = (self.line, self.column);
        let mut name = self.word();
        if name == "export" && matches!(self.peek(), Some(' ' | '\t')) {
            self.skip_blanks();
            name = self.word();
        }
        if name.is_empty() {
            return Err(self.error(self.line, self.column, "expected a name like API_KEY"));
        }
        validate_secret_name(&name).map_err(|e| self.error(line, column, e.to_string()))?;
        self.skip_blanks();
        if self.peek() != Some('=') {
            return Err(self.error(self.line, self.column, format!("expected '=' after {name}")));
        }
        self.bump();
        self.skip_blanks();
        let (vline, vcolumn) = (self.line, self.column);
        let value = match self.peek() {
            Some('\'') => self.quoted('\'', vline, vcolumn)?,
            Some('"') => self.quoted('"', vline, vcolumn)?,
            _ => self.unquoted(),
        };
        // After a value: blanks, then a comment or the end of the line.
        self.skip_blanks();
        match self.peek() {
            None | Some('\n') => {}
            Some('#') => self.skip_line(),
            Some(_) => {
                return Err(self.error(
                    self.line,
                    self.column,
                    format!("unexpected text after the value of {name} (quote the whole value)"),
                ));
            }
        }
        validate_value_len(value.len())
            .map_err(|e| self.error(vline, vcolumn, format!("{name}: {e}")))?;
        Ok((name, SecretValue::new(value)))
    }

    fn unquoted(&mut self) -> String {
        let mut v = String::new();
        while let Some(c) = self.peek() {
            if c == '\n' || (c == '#' && v.ends_with([' ', '\t'])) {
                break;
            }
            v.push(c);
            self.bump();
        }
        let trimmed = v.trim_end().to_owned();
        v.clear();
        trimmed
    }

    fn quoted(&mut self, quote: char, line: usize, column: usize) -> Result<String, ParseError> {
        self.bump();
        let mut v = String::new();
        loop {
            match self.bump() {
                None => {
                    return Err(self.error(
                        line,
                        column,
                        format!("the {quote} quote opened here is never closed"),
                    ));
                }
                Some(c) if c == quote => return Ok(v),
                Some('\\') if quote == '"' => match self.peek() {
                    Some('n') => {
                        self.bump();
                        v.push('\n');
                    }
                    Some('r') => {
                        self.bump();
                        v.push('\r');
                    }
                    Some('t') => {
                        self.bump();
                        v.push('\t');
                    }
                    Some(c @ ('"' | '\\' | '$')) => {
                        self.bump();
                        v.push(c);
                    }
                    _ => v.push('\\'),
                },
                Some(c) => v.push(c),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Vec<(String, String)> {
        parse(text.as_bytes(), ".env")
            .unwrap()
            .into_iter()
            .map(|(n, v)| (n, v.expose().to_owned()))
            .collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_syntax_users_expect() {
        let text = "\u{feff}# comment\r\nA=1\r\n\nexport B = two words  # note\nC=\"line\\nnext \\\"q\\\" \\$HOME\"\nD='lit $HOME \\n'\nE=\nF=a#b\nG=\"multi\nline\"\n  H=spaced\n";
        assert_eq!(
            parse_ok(text),
            pairs(&[
                ("A", "1"),
                ("B", "two words"),
                ("C", "line\nnext \"q\" $HOME"),
                ("D", "lit $HOME \\n"),
                ("E", ""),
                ("F", "a#b"),
                ("G", "multi\nline"),
                ("H", "spaced"),
            ])
        );
    }

    #[test]
    fn no_variable_expansion() {
        assert_eq!(
            parse_ok("A=x\nB=$A ${A}\n"),
            pairs(&[("A", "x"), ("B", "$A ${A}")])
        );
    }

    #[test]
    fn later_duplicates_win() {
        assert_eq!(
            parse_ok("A=1\nB=2\nA=3\n"),
            pairs(&[("B", "2"), ("A", "3")])
        );
    }

    #[test]
    fn errors_name_line_and_column_never_the_value() {
        let cases = [
            ("A=1\nB \"secretvalue\"\n", 2, 3, "expected '='"),
            ("A=\"unclosed secretvalue\n", 1, 3, "never closed"),
            ("OK=1\n1BAD=secretvalue\n", 2, 1, "invalid secret name"),
            ("A-B=secretvalue\n", 1, 2, "expected '='"),
            ("A=\"secretvalue\" trailing\n", 1, 17, "unexpected text"),
            ("=secretvalue\n", 1, 1, "expected a name"),
        ];
        for (text, line, column, want) in cases {
            let e = parse(text.as_bytes(), "dev/.env").unwrap_err();
            assert_eq!((e.line, e.column), (line, column), "{text:?}: {e}");
            assert!(e.reason.contains(want), "{text:?}: {e}");
            let shown = e.to_string();
            assert!(
                shown.starts_with(&format!("dev/.env:{line}:{column}: ")),
                "{shown}"
            );
            assert!(!shown.contains("secretvalue"), "{shown}");
        }
        let e = parse(b"A=\xff\n", ".env").unwrap_err();
        assert_eq!((e.line, e.column), (1, 3));
    }
}
