//! [`SecretValue`]: a secret's value in memory.
//!
//! The bytes live in a zeroizing buffer that is wiped when the value is
//! dropped. `Debug` prints `<redacted>` and there is no `Display`, so a value
//! cannot reach a log line, an error message or a panic by accident: the only
//! way to the bytes is the explicit [`SecretValue::expose`].

use serde::{Deserialize, Serialize};
use std::fmt;
use zeroize::Zeroizing;

/// A secret value, UTF-8, wiped on drop. On the wire it is a bincode string.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct SecretValue(Zeroizing<String>);

impl SecretValue {
    /// Wraps `value`; the `String`'s buffer is wiped when this is dropped.
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    /// The value itself. Every call site is a place a value leaves the vault.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretValue {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl From<&str> for SecretValue {
    fn from(value: &str) -> Self {
        Self::new(value.to_owned())
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let v = SecretValue::from("sk-do-not-print");
        let shown = format!("{v:?} {:?}", vec![v.clone()]);
        assert!(!shown.contains("sk-do-not-print"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }
}
