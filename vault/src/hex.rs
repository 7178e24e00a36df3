//! Lowercase hex as the vault seal and the audit chain write it, and the
//! reading of it back: the one place this crate spells bytes as text.

/// `bytes` as lowercase hex, two digits a byte.
pub(crate) fn encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes `text` spells two hex digits each (either case); `None` for
/// an odd length or anything that is not hex.
pub(crate) fn decode(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// Fills `out` with the bytes `text` spells, which must be exactly
/// `2 * out.len()` hex digits; `None` (and `out` partly written) otherwise.
pub(crate) fn decode_into(text: &str, out: &mut [u8]) -> Option<()> {
    if text.len() != 2 * out.len() {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_what_is_not_hex() {
        let bytes = [0x00, 0x0f, 0xa5, 0xff];
        assert_eq!(encode(&bytes), "000fa5ff");
        assert_eq!(decode("000fa5ff").as_deref(), Some(&bytes[..]));
        assert_eq!(decode("000FA5FF").as_deref(), Some(&bytes[..]));
        assert_eq!(decode("000fa5f"), None, "odd length");
        assert_eq!(decode("000fa5fg"), None, "not a hex digit");
        assert_eq!(decode("00é0"), None, "not ASCII");
        let mut out = [0u8; 4];
        assert_eq!(decode_into("000fa5ff", &mut out), Some(()));
        assert_eq!(out, bytes);
        assert_eq!(decode_into("000fa5", &mut out), None, "too short");
        assert_eq!(decode_into("000fa5ff00", &mut out), None, "too long");
        assert_eq!(decode_into("000fa5fz", &mut out), None);
    }
}
