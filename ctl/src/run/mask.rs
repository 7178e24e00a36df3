//! The filter behind `fluxctl run --mask`: every secret value in a byte
//! stream becomes `<redacted:NAME>`.
//!
//! The stream comes in chunks as the child writes them, so a value may be
//! split across two of them. [`Masker`] decides byte by byte, left to
//! right, and holds back only what it cannot decide yet: the end of a
//! chunk that is the beginning of some value. Where values overlap, the
//! longest one that matches wins, so the result is the same however the
//! stream was cut (a property the tests check at every cut). What is held
//! is at most the longest value's length less one byte; the caller flushes
//! it when the stream goes quiet or ends ([`Masker::flush`]), so output is
//! never held back for long.
//!
//! Values shorter than [`MIN_MASKED_LEN`] bytes are not masked: `1`, `on`
//! or `dev` would blank out ordinary output. The caller says which names
//! that leaves unmasked.

use flux_protocol::SecretValue;
use zeroize::Zeroizing;

/// Values shorter than this many bytes are left as they are.
pub(crate) const MIN_MASKED_LEN: usize = 4;

#[derive(Debug)]
struct Pattern {
    name: String,
    value: SecretValue,
    replacement: Vec<u8>,
}

/// What [`Patterns::add`] did with a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Added {
    /// It is masked from now on.
    Masked,
    /// It was already masked (under this name or another).
    Known,
    /// It is shorter than [`MIN_MASKED_LEN`] bytes: not masked.
    TooShort,
}

/// The values to mask, longest first.
#[derive(Debug)]
pub(crate) struct Patterns {
    list: Vec<Pattern>,
    /// For each first byte, the indices into `list` of the values that
    /// start with it, longest first.
    by_first: Vec<Vec<usize>>,
}

impl Default for Patterns {
    fn default() -> Self {
        Self {
            list: Vec::new(),
            by_first: vec![Vec::new(); 256],
        }
    }
}

impl Patterns {
    /// Masks `value` as `<redacted:NAME>` from now on. A value masked
    /// already keeps the name it was first masked under.
    pub(crate) fn add(&mut self, name: &str, value: &SecretValue) -> Added {
        if value.len() < MIN_MASKED_LEN {
            return Added::TooShort;
        }
        if self.list.iter().any(|p| p.value == *value) {
            return Added::Known;
        }
        self.list.push(Pattern {
            name: name.to_owned(),
            value: value.clone(),
            replacement: format!("<redacted:{name}>").into_bytes(),
        });
        self.list
            .sort_by(|a, b| b.value.len().cmp(&a.value.len()).then(a.name.cmp(&b.name)));
        for slot in &mut self.by_first {
            slot.clear();
        }
        for (i, p) in self.list.iter().enumerate() {
            self.by_first[usize::from(p.value.expose().as_bytes()[0])].push(i);
        }
        Added::Masked
    }

    /// How many values are masked.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    fn candidates(&self, first: u8) -> impl Iterator<Item = &Pattern> {
        self.by_first[usize::from(first)]
            .iter()
            .map(|&i| &self.list[i])
    }

    /// What to do at the start of `rest`: `Some(Some(p))` replace `p`'s
    /// value, `Some(None)` pass one byte on, `None` wait for more bytes
    /// (unless `end`: nothing more is coming for now).
    fn decide(&self, rest: &[u8], end: bool) -> Option<Option<&Pattern>> {
        for p in self.candidates(rest[0]) {
            let value = p.value.expose().as_bytes();
            if value.len() <= rest.len() {
                // Longest first: the first full match is the longest that
                // can still happen here.
                if rest.starts_with(value) {
                    return Some(Some(p));
                }
            } else if !end && value.starts_with(rest) {
                // A longer value may still match once more bytes come.
                return None;
            }
        }
        Some(None)
    }
}

/// One stream's filter state: the bytes held back, undecided.
#[derive(Default)]
pub(crate) struct Masker {
    /// The beginning of a value, perhaps: never shown, wiped when dropped.
    held: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Masker {{ held: {} bytes }}", self.held.len())
    }
}

impl Masker {
    /// Filters `chunk`, the next bytes of the stream, appending to `out`
    /// what can be decided now.
    pub(crate) fn feed(&mut self, patterns: &Patterns, chunk: &[u8], out: &mut Vec<u8>) {
        if self.held.is_empty() {
            self.scan(patterns, chunk, false, out);
        } else {
            let mut buf = Zeroizing::new(Vec::with_capacity(self.held.len() + chunk.len()));
            buf.extend_from_slice(&self.held);
            buf.extend_from_slice(chunk);
            self.held.clear();
            self.scan(patterns, &buf, false, out);
        }
    }

    /// Decides what is held as if the stream ended here (it went quiet or
    /// closed), appending it to `out`.
    pub(crate) fn flush(&mut self, patterns: &Patterns, out: &mut Vec<u8>) {
        if self.held.is_empty() {
            return;
        }
        let held = std::mem::take(&mut self.held);
        self.scan(patterns, &held, true, out);
    }

    /// True while bytes are held back.
    pub(crate) fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    fn scan(&mut self, patterns: &Patterns, buf: &[u8], end: bool, out: &mut Vec<u8>) {
        let mut i = 0;
        // Bytes passed on as they are, copied in runs.
        let mut run_from = 0;
        while i < buf.len() {
            match patterns.decide(&buf[i..], end) {
                Some(None) => i += 1,
                Some(Some(p)) => {
                    out.extend_from_slice(&buf[run_from..i]);
                    out.extend_from_slice(&p.replacement);
                    i += p.value.len();
                    run_from = i;
                }
                None => {
                    self.held.extend_from_slice(&buf[i..]);
                    break;
                }
            }
        }
        out.extend_from_slice(&buf[run_from..i]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(list: &[(&str, &str)]) -> Patterns {
        let mut p = Patterns::default();
        for (name, value) in list {
            p.add(name, &SecretValue::from(*value));
        }
        p
    }

    /// The stream `input`, fed in the given chunks, then flushed.
    fn masked(p: &Patterns, chunks: &[&[u8]]) -> String {
        let mut m = Masker::default();
        let mut out = Vec::new();
        for chunk in chunks {
            m.feed(p, chunk, &mut out);
        }
        m.flush(p, &mut out);
        assert!(!m.holding());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn values_are_replaced_by_their_names() {
        let p = patterns(&[("TOKEN", "sk-live-123"), ("DB_PASSWORD", "hunter2!")]);
        assert_eq!(
            masked(&p, &[b"token=sk-live-123 db=hunter2! again sk-live-123\n"]),
            "token=<redacted:TOKEN> db=<redacted:DB_PASSWORD> again <redacted:TOKEN>\n"
        );
        assert_eq!(masked(&p, &[b"nothing secret\n"]), "nothing secret\n");
        assert_eq!(
            masked(&p, &[b"sk-live-12 is not it\n"]),
            "sk-live-12 is not it\n"
        );
    }

    #[test]
    fn a_value_split_across_chunks_is_masked_wherever_it_is_cut() {
        let p = patterns(&[
            ("TOKEN", "sk-live-123"),
            ("LONG", "sk-live-123-and-more"),
            ("OTHER", "abcabcabd"),
        ]);
        let input =
            b"a sk-live-123-and-more b sk-live-123 c sk-live-12 abcabcabcabd sk-live-123-and-mor\n";
        let want = "a <redacted:LONG> b <redacted:TOKEN> c sk-live-12 abc<redacted:OTHER> <redacted:TOKEN>-and-mor\n";
        assert_eq!(masked(&p, &[input]), want);
        for cut in 0..=input.len() {
            let (a, b) = input.split_at(cut);
            assert_eq!(masked(&p, &[a, b]), want, "cut at {cut}");
            for cut2 in cut..=input.len() {
                let (b1, b2) = input[cut..].split_at(cut2 - cut);
                assert_eq!(masked(&p, &[a, b1, b2]), want, "cuts at {cut}, {cut2}");
            }
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(masked(&p, &bytes), want, "one byte at a time");
    }

    #[test]
    fn the_longest_value_wins() {
        let p = patterns(&[("SHORT", "secret"), ("LONG", "secret-and-more")]);
        assert_eq!(
            masked(&p, &[b"secret-and-more secret-and secret\n"]),
            "<redacted:LONG> <redacted:SHORT>-and <redacted:SHORT>\n"
        );
        // Cut inside the longer value after the shorter one is complete:
        // the filter waits rather than settling for the shorter one.
        assert_eq!(
            masked(&p, &[b"x secret-an", b"d-more\n"]),
            "x <redacted:LONG>\n"
        );
    }

    #[test]
    fn only_the_undecided_end_is_held() {
        let p = patterns(&[("TOKEN", "sk-live-123")]);
        let mut m = Masker::default();
        let mut out = Vec::new();
        m.feed(&p, b"line one\nstarts sk-li", &mut out);
        assert_eq!(out, b"line one\nstarts ");
        assert!(m.holding());
        // Nothing more comes for a while: the prefix is let go as it is.
        m.flush(&p, &mut out);
        assert_eq!(out, b"line one\nstarts sk-li");
        out.clear();
        m.feed(&p, b"no prefix at the end\n", &mut out);
        assert!(!m.holding());
        assert_eq!(out, b"no prefix at the end\n");
    }

    #[test]
    fn short_and_repeated_values_are_said_so() {
        let mut p = Patterns::default();
        assert_eq!(p.add("A", &"abc".into()), Added::TooShort);
        assert_eq!(p.add("E", &"".into()), Added::TooShort);
        assert_eq!(p.add("B", &"abcd".into()), Added::Masked);
        assert_eq!(p.add("C", &"abcd".into()), Added::Known);
        assert_eq!(p.len(), 1);
        assert_eq!(masked(&p, &[b"abc abcd\n"]), "abc <redacted:B>\n");
    }

    #[test]
    fn multibyte_values_and_binary_output() {
        let p = patterns(&[("PASS", "pässwörd")]);
        let input = "→ pässwörd ←".as_bytes();
        for cut in 0..=input.len() {
            let (a, b) = input.split_at(cut);
            assert_eq!(masked(&p, &[a, b]), "→ <redacted:PASS> ←");
        }
        let mut m = Masker::default();
        let mut out = Vec::new();
        m.feed(&p, &[0xff, 0x00, b'p', 0xc3], &mut out);
        m.flush(&p, &mut out);
        assert_eq!(out, [0xff, 0x00, b'p', 0xc3]);
    }
}
