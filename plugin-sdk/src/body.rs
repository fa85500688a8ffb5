//! Helpers for request bodies that the host does natively when it can: given the body a
//! hook received, in a hook the host runs, they are one call into the host (no JSON parse
//! or hashing in the filter); given other bytes, or in a unit test, they compute the same
//! answer in the filter.

use sha2::{Digest, Sha256};

/// Hex SHA-256 over each of `prefix` followed by a zero byte, then `body` in canonical
/// JSON: object keys sorted, no whitespace, numbers as parsed. A body that is not JSON,
/// or holds a number a float cannot keep exactly (an integer of 2^53 or more written as a
/// float, which stands for several integers), is hashed as it is. Cache keys: two bodies
/// that differ only in key order or spacing share a key, different values never do.
///
/// ```
/// use aigw_plugin_sdk::body::canonical_sha256;
/// assert_eq!(
///     canonical_sha256(&["openai"], br#"{"b": 1, "a": [1, 2]}"#),
///     canonical_sha256(&["openai"], br#"{"a":[1,2],"b":1}"#),
/// );
/// assert_ne!(canonical_sha256(&["openai"], b"{}"), canonical_sha256(&["groq"], b"{}"));
/// ```
pub fn canonical_sha256(prefix: &[&str], body: &[u8]) -> String {
    let lent = crate::lent::with_body(body, |b| {
        let owned: Vec<String> = prefix.iter().map(|p| p.to_string()).collect();
        b.canonical_sha256(&owned)
    });
    lent.unwrap_or_else(|| {
        let mut h = Sha256::new();
        for part in prefix {
            h.update(part.as_bytes());
            h.update([0u8]);
        }
        h.update(canonical_json(body));
        hex::encode(h.finalize())
    })
}

/// The top-level `model` of a JSON object body, when it is a string (the last one, when a
/// body names it twice, as providers read it).
///
/// ```
/// use aigw_plugin_sdk::body::model;
/// assert_eq!(model(br#"{"model":"gpt-4o","messages":[]}"#).as_deref(), Some("gpt-4o"));
/// assert_eq!(model(br#"{"model":"a","model":"b"}"#).as_deref(), Some("b"));
/// assert_eq!(model(br#"{"model":4}"#), None);
/// assert_eq!(model(br#"["gpt-4o"]"#), None);
/// ```
pub fn model(body: &[u8]) -> Option<String> {
    crate::lent::with_body(body, |b| b.model()).unwrap_or_else(|| {
        match serde_json::from_slice::<serde_json::Value>(body).ok()? {
            serde_json::Value::Object(mut o) => match o.remove("model")? {
                serde_json::Value::String(s) => Some(s),
                _ => None,
            },
            _ => None,
        }
    })
}

/// The canonical form `canonical_sha256` hashes: keys sorted, no whitespace; bodies that
/// are not JSON, or hold an inexact number, as they are.
///
/// ```
/// use aigw_plugin_sdk::body::canonical_json;
/// assert_eq!(canonical_json(br#"{"b":1, "a":[1, 2]}"#), br#"{"a":[1,2],"b":1}"#);
/// assert_eq!(canonical_json(b"not json"), b"not json");
/// ```
pub fn canonical_json(body: &[u8]) -> Vec<u8> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        // serde_json's map is ordered by key (no preserve_order feature), and it parses
        // floats exactly (float_roundtrip), so distinct floats stay distinct.
        Ok(v) if !has_inexact_number(&v) => v.to_string().into_bytes(),
        _ => body.to_vec(),
    }
}

/// Float magnitude from which not every integer is representable (2^53).
pub const EXACT_FLOAT_LIMIT: f64 = 9_007_199_254_740_992.0;

/// Whether `v` holds a float of magnitude 2^53 or more. Recursion is bounded by
/// serde_json's nesting limit.
fn has_inexact_number(v: &serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Number(n) => n.is_f64() && n.as_f64().is_some_and(|f| f.abs() >= EXACT_FLOAT_LIMIT),
        Value::Array(items) => items.iter().any(has_inexact_number),
        Value::Object(map) => map.values().any(has_inexact_number),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host computes the same digest (host/src/runtime/v2.rs has the same vector; the
    /// value was checked with Python's hashlib over the canonical text): a
    /// filter's cache keys do not depend on where the hash was taken.
    #[test]
    fn the_digest_matches_the_hosts() {
        assert_eq!(
            canonical_sha256(
                &["openai", "/chat/completions"],
                br#"{"z":1.5,"a":{"y":[true,null],"b":"x"}}"#
            ),
            "064cd12521639019de010d1657f9fa29afb6d24feb95d771bf897ca77b0d0239"
        );
    }
}
