//! The template language of `fluxctl render`: text, with tags that name
//! secrets.
//!
//! ```text
//! password = {{ secret "DB_PASSWORD" }}
//! region   = {{ secret "REGION" default "eu-west-1" }}
//! literal  = \{{ stays as two braces }}
//! ```
//!
//! - `{{ secret "NAME" }}` is the value of secret NAME. A name the project
//!   does not have is an error, unless the tag gives a `default "TEXT"`.
//! - `\{{` is a literal `{{`; `\\{{` is a literal backslash followed by a
//!   tag. A backslash anywhere else, and `}}` outside a tag, are plain
//!   text.
//! - Inside quotes, `\"` is a quote and `\\` a backslash. Spaces, tabs and
//!   line breaks between the words of a tag are free.
//!
//! Errors name `FILE:LINE:COL` (both from 1, the column in characters) and
//! what was expected; they never quote a value, and a template holds none.

use flux_protocol::SecretValue;
use std::collections::BTreeMap;
use std::fmt;
use zeroize::Zeroizing;

/// A place in the template, 1-based; the column counts characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Secret {
        name: String,
        default: Option<String>,
        at: Pos,
    },
}

/// A parsed template.
#[derive(Debug)]
pub(crate) struct Template {
    pieces: Vec<Piece>,
}

/// A template that does not parse: where, and what was wrong.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub at: Pos,
    pub what: String,
}

/// A name the project does not have, used without a default.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Missing {
    pub name: String,
    pub at: Pos,
}

/// A scanner over the template that knows its line and column.
struct Cursor<'a> {
    src: &'a str,
    i: usize,
    line: usize,
    line_start: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a str {
        &self.src[self.i..]
    }

    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            col: self.src[self.line_start..self.i].chars().count() + 1,
        }
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.line_start = self.i;
        }
        Some(c)
    }

    /// Skips `n` bytes that hold no line break.
    fn skip(&mut self, n: usize) {
        self.i += n;
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    /// A word of letters, digits and `_`.
    fn word(&mut self) -> &'a str {
        let start = self.i;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            self.bump();
        }
        &self.src[start..self.i]
    }

    fn error(&self, at: Pos, what: impl Into<String>) -> SyntaxError {
        SyntaxError {
            at,
            what: what.into(),
        }
    }

    /// A double-quoted string, with `\"` and `\\`.
    fn string(&mut self, of: &str) -> Result<String, SyntaxError> {
        let at = self.pos();
        if self.peek() != Some('"') {
            return Err(self.error(at, format!("expected {of} in double quotes")));
        }
        self.bump();
        let mut out = String::new();
        loop {
            let here = self.pos();
            match self.bump() {
                None => return Err(self.error(at, format!("{of} has no closing quote"))),
                Some('"') => return Ok(out),
                Some('\\') => match self.bump() {
                    Some(c @ ('"' | '\\')) => out.push(c),
                    _ => {
                        return Err(self.error(
                            here,
                            "unknown escape in quotes: only \\\" and \\\\ are escapes",
                        ));
                    }
                },
                Some(c) => out.push(c),
            }
        }
    }

    /// A tag, from just after its `{{` (at `open`) to just after its `}}`.
    fn tag(&mut self, open: Pos) -> Result<Piece, SyntaxError> {
        self.skip_space();
        let at = self.pos();
        if self.rest().is_empty() {
            return Err(self.error(open, "{{ is not closed by }} (write \\{{ for a literal {{)"));
        }
        let word = self.word();
        if word != "secret" {
            return Err(self.error(
                at,
                "expected `secret \"NAME\"` after {{ (write \\{{ for a literal {{)",
            ));
        }
        self.skip_space();
        let name_at = self.pos();
        let name = self.string("the secret's name")?;
        if name.is_empty() {
            return Err(self.error(name_at, "the secret's name is empty"));
        }
        if name.chars().any(char::is_control) {
            return Err(self.error(name_at, "the secret's name holds a control character"));
        }
        self.skip_space();
        let mut default = None;
        if !self.rest().starts_with("}}") && !self.rest().is_empty() {
            let word_at = self.pos();
            if self.word() != "default" {
                return Err(self.error(word_at, "expected }} or default \"TEXT\""));
            }
            self.skip_space();
            default = Some(self.string("the default")?);
            self.skip_space();
        }
        if self.rest().starts_with("}}") {
            self.skip(2);
            return Ok(Piece::Secret {
                name,
                default,
                at: name_at,
            });
        }
        if self.rest().is_empty() {
            return Err(self.error(open, "{{ is not closed by }} (write \\{{ for a literal {{)"));
        }
        Err(self.error(self.pos(), "expected }}"))
    }
}

impl Template {
    /// Parses a template.
    pub(crate) fn parse(src: &str) -> Result<Self, SyntaxError> {
        let mut cur = Cursor {
            src,
            i: 0,
            line: 1,
            line_start: 0,
        };
        let mut pieces = Vec::new();
        let mut text = String::new();
        while !cur.rest().is_empty() {
            let rest = cur.rest();
            if rest.starts_with("\\{{") {
                text.push_str("{{");
                cur.skip(3);
            } else if rest.starts_with("\\\\{{") {
                text.push('\\');
                cur.skip(2);
            } else if rest.starts_with("{{") {
                let open = cur.pos();
                cur.skip(2);
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(cur.tag(open)?);
            } else if let Some(c) = cur.bump() {
                text.push(c);
            }
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Self { pieces })
    }

    /// Every name the template refers to, and whether each has a default
    /// everywhere it is used.
    pub(crate) fn names(&self) -> BTreeMap<String, bool> {
        let mut names = BTreeMap::new();
        for piece in &self.pieces {
            if let Piece::Secret { name, default, .. } = piece {
                let all_default = names.entry(name.clone()).or_insert(true);
                *all_default &= default.is_some();
            }
        }
        names
    }

    /// The template filled in with `values` (those it names): a buffer
    /// allocated once at its final size, wiped when dropped. Every name
    /// missing without a default is an error.
    pub(crate) fn render(
        &self,
        values: &BTreeMap<String, SecretValue>,
    ) -> Result<Zeroizing<Vec<u8>>, Vec<Missing>> {
        let mut missing = Vec::new();
        let mut len = 0;
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => len += text.len(),
                Piece::Secret { name, default, at } => match (values.get(name), default) {
                    (Some(value), _) => len += value.len(),
                    (None, Some(default)) => len += default.len(),
                    (None, None) => missing.push(Missing {
                        name: name.clone(),
                        at: *at,
                    }),
                },
            }
        }
        if !missing.is_empty() {
            return Err(missing);
        }
        let mut out = Zeroizing::new(Vec::with_capacity(len));
        for piece in &self.pieces {
            let bytes = match piece {
                Piece::Text(text) => text.as_bytes(),
                Piece::Secret { name, default, .. } => match values.get(name) {
                    Some(value) => value.expose().as_bytes(),
                    None => default.as_deref().unwrap_or_default().as_bytes(),
                },
            };
            out.extend_from_slice(bytes);
        }
        debug_assert_eq!(out.len(), len);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, SecretValue> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), SecretValue::from(*v)))
            .collect()
    }

    fn render(src: &str, pairs: &[(&str, &str)]) -> String {
        let out = Template::parse(src)
            .unwrap()
            .render(&values(pairs))
            .unwrap();
        String::from_utf8(out.to_vec()).unwrap()
    }

    fn syntax(src: &str) -> (usize, usize, String) {
        let e = Template::parse(src).unwrap_err();
        (e.at.line, e.at.col, e.what)
    }

    #[test]
    fn fills_in_values_defaults_and_escapes() {
        assert_eq!(
            render(
                "a={{ secret \"A\" }}\nb={{secret \"B\" default \"x\\\"y\"}}!",
                &[("A", "1")]
            ),
            "a=1\nb=x\"y!"
        );
        assert_eq!(
            render("{{ secret \"B\" default \"d\" }}", &[("B", "v")]),
            "v"
        );
        assert_eq!(render("\\{{ secret \"A\" }}", &[]), "{{ secret \"A\" }}");
        assert_eq!(render("\\\\{{ secret \"A\" }}", &[("A", "1")]), "\\1");
        assert_eq!(render("a\\b }} {x} é", &[]), "a\\b }} {x} é");
        assert_eq!(
            render("{{\n  secret\n  \"A\"\n}}", &[("A", "multi\nline")]),
            "multi\nline"
        );
        assert_eq!(render("", &[]), "");
    }

    #[test]
    fn names_and_whether_they_have_defaults() {
        let t = Template::parse(
            "{{ secret \"A\" }}{{ secret \"B\" default \"\" }}{{ secret \"A\" default \"\" }}",
        )
        .unwrap();
        let names = t.names();
        assert_eq!(names.get("A"), Some(&false));
        assert_eq!(names.get("B"), Some(&true));
    }

    #[test]
    fn a_missing_name_without_default_is_named_with_its_place() {
        let t = Template::parse("x\n  é{{ secret \"NOPE\" }} {{ secret \"A\" }}").unwrap();
        let missing = t.render(&values(&[("A", "v")])).unwrap_err();
        assert_eq!(
            missing,
            [Missing {
                name: "NOPE".into(),
                at: Pos { line: 2, col: 14 }
            }]
        );
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        assert_eq!(syntax("ab\ncd {{ secret \"A\" ").0, 2);
        assert_eq!(syntax("ab\ncd {{ secret \"A\" ").1, 4);
        assert!(syntax("{{ secret \"A\"").2.contains("not closed"));
        let (line, col, what) = syntax("x\n{{ password \"A\" }}");
        assert_eq!((line, col), (2, 4));
        assert!(what.contains("expected `secret"), "{what}");
        let (line, col, what) = syntax("{{ secret A }}");
        assert_eq!((line, col), (1, 11));
        assert!(what.contains("double quotes"), "{what}");
        let (_, _, what) = syntax("{{ secret \"A }}");
        assert!(what.contains("no closing quote"), "{what}");
        let (_, col, what) = syntax("{{ secret \"A\" dflt \"x\" }}");
        assert_eq!(col, 15);
        assert!(what.contains("default"), "{what}");
        let (_, col, what) = syntax("{{ secret \"\" }}");
        assert_eq!(col, 11);
        assert!(what.contains("empty"), "{what}");
        let (_, _, what) = syntax("{{ secret \"A\\n\" }}");
        assert!(what.contains("escape"), "{what}");
        assert!(syntax("{{").2.contains("not closed"));
    }
}
