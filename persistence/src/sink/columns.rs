//! How record fields become column values and back: keys as text, LSNs and versions as bigint,
//! milliseconds within what timestamptz can hold, and JSON that jsonb accepts.

use crate::record::Lsn;

/// Prefix of a key stored as hex (PostgreSQL's own spelling of bytes).
const HEX_PREFIX: &str = "\\x";

/// Milliseconds beyond these are stored as ±infinity: timestamptz covers 4713 BC to 294276 AD,
/// and these bounds keep well inside it.
const TIMESTAMP_MS_MIN: i64 = -200_000_000_000_000; // about 4400 BC
const TIMESTAMP_MS_MAX: i64 = 9_000_000_000_000_000; // about 287,000 AD

/// The `text` a key is stored as: itself when it is UTF-8 without NUL and does not look like
/// hex; otherwise `\x` and its bytes in lowercase hex. One-to-one, so keys never collide.
pub fn key_text(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(text) if !text.contains('\0') && !text.starts_with(HEX_PREFIX) => text.to_owned(),
        _ => {
            let mut out = String::with_capacity(HEX_PREFIX.len() + 2 * key.len());
            out.push_str(HEX_PREFIX);
            for byte in key {
                out.push_str(&format!("{byte:02x}"));
            }
            out
        }
    }
}

/// The key a `text` column holds, the inverse of [`key_text`]; `None` for a malformed hex key.
pub fn key_bytes(text: &str) -> Option<Vec<u8>> {
    let Some(hex) = text.strip_prefix(HEX_PREFIX) else {
        return Some(text.as_bytes().to_vec());
    };
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(hex.get(at..at + 2)?, 16).ok())
        .collect()
}

/// An LSN as a bigint. The log numbers records from 1 and would need 2^63 of them to reach
/// the limit, so saturating is never reached in practice and cannot panic on odd input.
pub fn lsn_to_db(lsn: Lsn) -> i64 {
    i64::try_from(lsn).unwrap_or(i64::MAX)
}

/// An LSN read from a bigint column; a negative one (never written by cartd) reads as 0.
pub fn lsn_from_db(lsn: i64) -> Lsn {
    Lsn::try_from(lsn).unwrap_or(0)
}

/// A version as a bigint, saturating like [`lsn_to_db`].
pub fn version_to_db(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(i64::MAX)
}

/// Milliseconds `cartd_ms_to_ts` can turn into a timestamptz: out-of-range values become the
/// infinities (`i64::MIN`/`i64::MAX`), which the function maps to '-infinity'/'infinity'.
pub fn ms_to_db(ms: i64) -> i64 {
    if ms > TIMESTAMP_MS_MAX {
        i64::MAX
    } else if ms < TIMESTAMP_MS_MIN {
        i64::MIN
    } else {
        ms
    }
}

/// Whether any string or object key in `value` holds a NUL, which jsonb refuses.
pub fn json_has_nul(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(values) => values.iter().any(json_has_nul),
        Value::Object(map) => map
            .iter()
            .any(|(name, value)| name.contains('\0') || json_has_nul(value)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// `value` with every NUL in its strings and object keys replaced by U+FFFD, for jsonb.
pub fn json_without_nul(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    const REPLACEMENT: &str = "\u{fffd}";
    match value {
        Value::String(text) => Value::String(text.replace('\0', REPLACEMENT)),
        Value::Array(values) => Value::Array(values.into_iter().map(json_without_nul).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(name, value)| (name.replace('\0', REPLACEMENT), json_without_nul(value)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_never_collide() {
        let keys: [&[u8]; 6] = [
            b"cart:1",
            b"\\x636172743a31",
            b"\xff\xfe",
            b"a\0b",
            b"",
            "\u{e9}t\u{e9}".as_bytes(),
        ];
        let texts: Vec<String> = keys.iter().map(|key| key_text(key)).collect();
        for (key, text) in keys.iter().zip(&texts) {
            assert_eq!(key_bytes(text).as_deref(), Some(*key), "{text}");
            assert!(!text.contains('\0'));
        }
        assert_eq!(texts[0], "cart:1");
        assert_eq!(texts[2], "\\xfffe");
        let mut unique = texts.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), texts.len());
        assert_eq!(key_bytes("\\xabc"), None);
        assert_eq!(key_bytes("\\xzz"), None);
    }

    #[test]
    fn times_outside_timestamptz_become_infinities() {
        assert_eq!(ms_to_db(1_700_000_000_123), 1_700_000_000_123);
        assert_eq!(ms_to_db(i64::MAX - 1), i64::MAX);
        assert_eq!(ms_to_db(i64::MIN + 1), i64::MIN);
    }

    #[test]
    fn nul_is_found_and_replaced_anywhere_in_json() {
        let value = serde_json::json!({"a": [1, {"b\u{0}": "c"}], "d": "e\u{0}"});
        assert!(json_has_nul(&value));
        let clean = json_without_nul(value);
        assert!(!json_has_nul(&clean));
        assert_eq!(clean["d"], "e\u{fffd}");
    }
}
