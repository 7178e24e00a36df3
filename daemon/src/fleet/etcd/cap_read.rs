//! The envelope cap on etcd's answers, as they stream in: [`CapRead`]
//! replaces every JSON string over the cap with its length, so a value
//! too big for this host is measured, never held.

use std::io::Read;

/// What [`CapRead`] puts in place of a string over its cap, followed by
/// the string's length (never base64, which has no `!`).
pub(super) const OVERSIZE: &str = "!oversize:";

/// Reads a JSON answer of etcd's, replacing every string longer than `cap`
/// bytes with `"!oversize:<its length>"` as the answer streams by: an
/// oversize value is measured, never held whole (at most `cap` bytes of
/// it are buffered, then dropped).
pub(super) struct CapRead<R> {
    inner: R,
    cap: usize,
    /// In a string: its length so far, whether the next byte is escaped,
    /// and whether it went over the cap.
    string: Option<(usize, bool, bool)>,
    /// The string's bytes so far, while under the cap.
    held: Vec<u8>,
    out: Vec<u8>,
    at: usize,
    buf: Box<[u8]>,
}

impl<R: Read> CapRead<R> {
    pub(super) fn new(inner: R, cap: usize) -> Self {
        Self {
            inner,
            cap,
            string: None,
            held: Vec::new(),
            out: Vec::new(),
            at: 0,
            buf: vec![0; 64 * 1024].into_boxed_slice(),
        }
    }

    fn take(&mut self, b: u8) {
        match &mut self.string {
            None => {
                self.out.push(b);
                if b == b'"' {
                    self.string = Some((0, false, false));
                }
            }
            Some((len, escaped, over)) => {
                if !*escaped && b == b'"' {
                    if *over {
                        self.out
                            .extend_from_slice(format!("{OVERSIZE}{len}").as_bytes());
                    } else {
                        self.out.extend_from_slice(&self.held);
                    }
                    self.held.clear();
                    self.out.push(b);
                    self.string = None;
                    return;
                }
                *escaped = !*escaped && b == b'\\';
                *len += 1;
                if !*over {
                    if self.held.len() < self.cap {
                        self.held.push(b);
                    } else {
                        *over = true;
                        self.held = Vec::new();
                    }
                }
            }
        }
    }
}

impl<R: Read> Read for CapRead<R> {
    fn read(&mut self, to: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.out.len() {
            self.out.clear();
            self.at = 0;
            let n = self.inner.read(&mut self.buf)?;
            if n == 0 {
                // Cut off inside a string: what was held goes out, and the
                // JSON parser reports the end it did not expect.
                self.out.append(&mut self.held);
                self.string = None;
                if self.out.is_empty() {
                    return Ok(0);
                }
                break;
            }
            let mut i = 0;
            while i < n {
                // Runs of plain bytes, in bulk: outside a string up to a
                // quote, inside one up to a quote or a backslash.
                let (inside, escaped) = match self.string {
                    Some((_, escaped, _)) => (true, escaped),
                    None => (false, false),
                };
                let plain = if escaped {
                    0
                } else {
                    self.buf[i..n]
                        .iter()
                        .position(|&b| b == b'"' || (inside && b == b'\\'))
                        .unwrap_or(n - i)
                };
                let run = &self.buf[i..i + plain];
                match &mut self.string {
                    None => self.out.extend_from_slice(run),
                    Some((len, _, over)) => {
                        *len += plain;
                        if !*over {
                            if self.held.len() + plain <= self.cap {
                                self.held.extend_from_slice(run);
                            } else {
                                *over = true;
                                self.held = Vec::new();
                            }
                        }
                    }
                }
                i += plain;
                if i < n {
                    let b = self.buf[i];
                    self.take(b);
                    i += 1;
                }
            }
        }
        let n = to.len().min(self.out.len() - self.at);
        to[..n].copy_from_slice(&self.out[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::etcd::json::kv;
    use serde_json::Value;

    #[test]
    fn strings_over_the_cap_are_measured_not_held() {
        let value = "QUJD".repeat(1000);
        let answer = format!(
            r#"{{"kvs":[{{"key":"a2V5","value":"{value}","mod_revision":"7"}},{{"key":"c21hbGw=","value":"QUJD","x":"a\"b"}}]}}"#
        );
        for chunk in [1, 3, 64 * 1024] {
            // Read in small pieces too, so runs split anywhere.
            let mut read = CapRead::new(std::io::Cursor::new(answer.clone()), 100);
            let mut out = Vec::new();
            let mut piece = vec![0; chunk];
            loop {
                let n = read.read(&mut piece).unwrap();
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&piece[..n]);
            }
            let v: Value = serde_json::from_slice(&out).unwrap();
            let big = kv(&v["kvs"][0]);
            assert_eq!(big.oversize, Some(3000));
            assert!(big.value.is_empty());
            assert_eq!((big.key.as_str(), big.mod_revision), ("key", 7));
            let small = kv(&v["kvs"][1]);
            assert_eq!(
                (small.value.as_slice(), small.oversize),
                (&b"ABC"[..], None)
            );
            assert_eq!(v["kvs"][1]["x"], "a\"b", "escapes pass through");
            assert!(read.held.capacity() <= 101, "at most the cap is buffered");
        }
    }
}
