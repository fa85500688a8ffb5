//! Helpers for Cloudflare-compatible `cf-aig-*` request headers: parse a
//! value or produce the 400 response that names the header.
//!
//! ```
//! use aigw_plugin_sdk::{cf, Headers};
//! let h = Headers::from_pairs([("cf-aig-skip-cache", "maybe")]);
//! let err = cf::bool_header(&h, "cf-aig-skip-cache").unwrap_err();
//! assert_eq!(err.status, 400);
//! assert!(String::from_utf8(err.body).unwrap().contains("cf-aig-skip-cache"));
//! ```

use crate::{Headers, LocalResponse};

/// The 400 answer for a bad header value.
///
/// ```
/// let r = aigw_plugin_sdk::cf::bad_header("cf-aig-cache-ttl", "seconds, an integer >= 0");
/// assert_eq!(r.status, 400);
/// ```
pub fn bad_header(name: &str, expected: &str) -> LocalResponse {
    LocalResponse::error(
        400,
        "bad_request",
        &format!("invalid {name} header: expected {expected}"),
    )
}

/// Parses a `cf-aig-metadata` value: a flat JSON object of at most 5 keys
/// whose values are strings, numbers or booleans. The error says what was
/// expected.
///
/// ```
/// let m = aigw_plugin_sdk::cf::parse_metadata(r#"{"team":"search","tier":2}"#).unwrap();
/// assert_eq!(m["team"], "search");
/// assert!(aigw_plugin_sdk::cf::parse_metadata(r#"{"a":{"nested":1}}"#).is_err());
/// ```
pub fn parse_metadata(text: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|_| "a JSON object".to_string())?;
    let obj = v.as_object().ok_or("a JSON object")?;
    if obj.len() > 5 {
        return Err("a JSON object with at most 5 keys".into());
    }
    for value in obj.values() {
        if !(value.is_string() || value.is_number() || value.is_boolean()) {
            return Err("a flat JSON object whose values are strings, numbers or booleans".into());
        }
    }
    Ok(obj.clone())
}

/// The request's `cf-aig-metadata` (absent → `None`); a bad value is the 400
/// answer naming the header.
///
/// ```
/// use aigw_plugin_sdk::{cf, Headers};
/// let h = Headers::from_pairs([("cf-aig-metadata", r#"{"user":"ada"}"#)]);
/// assert_eq!(cf::metadata(&h).unwrap().unwrap()["user"], "ada");
/// let bad = Headers::from_pairs([("cf-aig-metadata", "[1]")]);
/// assert_eq!(cf::metadata(&bad).unwrap_err().status, 400);
/// ```
pub fn metadata(
    headers: &Headers,
) -> Result<Option<serde_json::Map<String, serde_json::Value>>, LocalResponse> {
    match headers.get("cf-aig-metadata") {
        None => Ok(None),
        Some(text) => parse_metadata(text)
            .map(Some)
            .map_err(|expected| bad_header("cf-aig-metadata", &expected)),
    }
}

/// `true`/`false` (case-insensitive), absent → `None`.
///
/// ```
/// let h = aigw_plugin_sdk::Headers::from_pairs([("x", "TRUE")]);
/// assert_eq!(aigw_plugin_sdk::cf::bool_header(&h, "x").unwrap(), Some(true));
/// ```
pub fn bool_header(headers: &Headers, name: &str) -> Result<Option<bool>, LocalResponse> {
    match headers.get(name).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(None),
        Some(v) if v == "true" => Ok(Some(true)),
        Some(v) if v == "false" => Ok(Some(false)),
        Some(_) => Err(bad_header(name, "true or false")),
    }
}

/// An integer within `min..=max`, absent → `None`.
///
/// ```
/// let h = aigw_plugin_sdk::Headers::from_pairs([("n", "7")]);
/// assert_eq!(aigw_plugin_sdk::cf::int_header(&h, "n", 1, 5).unwrap_err().status, 400);
/// assert_eq!(aigw_plugin_sdk::cf::int_header(&h, "n", 1, 10).unwrap(), Some(7));
/// ```
pub fn int_header(
    headers: &Headers,
    name: &str,
    min: u64,
    max: u64,
) -> Result<Option<u64>, LocalResponse> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => match v.trim().parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(bad_header(name, &format!("an integer from {min} to {max}"))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one(name: &str, value: &str) -> Headers {
        Headers::from_pairs([(name, value)])
    }

    /// The error's body names the header, and the status is 400.
    fn names_header(r: &LocalResponse, name: &str) -> bool {
        r.status == 400 && String::from_utf8_lossy(&r.body).contains(name)
    }

    /// Header-value whitespace that `trim` removes.
    fn padding() -> impl Strategy<Value = String> {
        "[ \t]{0,3}"
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_values_never_panic(
            value in any::<String>(), min in any::<u64>(), max in any::<u64>(),
        ) {
            let h = one("cf-aig-x", &value);
            let _ = bool_header(&h, "cf-aig-x");
            let _ = int_header(&h, "cf-aig-x", min, max);
        }

        #[test]
        fn bools_round_trip_in_any_case(
            b in any::<bool>(), upper in prop::collection::vec(any::<bool>(), 5),
            before in padding(), after in padding(),
        ) {
            let text: String = b
                .to_string()
                .chars()
                .zip(&upper)
                .map(|(c, u)| if *u { c.to_ascii_uppercase() } else { c })
                .collect();
            let h = one("cf-aig-skip-cache", &format!("{before}{text}{after}"));
            prop_assert_eq!(bool_header(&h, "cf-aig-skip-cache").ok(), Some(Some(b)));
        }

        #[test]
        fn other_bool_values_are_400_naming_the_header(value in any::<String>()) {
            let v = value.trim().to_ascii_lowercase();
            prop_assume!(v != "true" && v != "false");
            let h = one("cf-aig-collect-log", &value);
            let err = bool_header(&h, "cf-aig-collect-log").err();
            prop_assert!(err.is_some_and(|r| names_header(&r, "cf-aig-collect-log")));
        }

        #[test]
        fn integers_round_trip_inside_the_range(
            (min, n, max) in (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(a, b, c)| {
                let mut v = [a, b, c];
                v.sort_unstable();
                (v[0], v[1], v[2])
            }),
            before in padding(), after in padding(),
        ) {
            let h = one("cf-aig-cache-ttl", &format!("{before}{n}{after}"));
            prop_assert_eq!(int_header(&h, "cf-aig-cache-ttl", min, max).ok(), Some(Some(n)));
        }

        #[test]
        fn integers_outside_the_range_are_400_naming_the_header(
            n in any::<u64>(), min in any::<u64>(), max in any::<u64>(),
        ) {
            prop_assume!(n < min || n > max);
            let h = one("cf-aig-cache-ttl", &n.to_string());
            let err = int_header(&h, "cf-aig-cache-ttl", min, max).err();
            prop_assert!(err.is_some_and(|r| names_header(&r, "cf-aig-cache-ttl")));
        }

        #[test]
        fn non_integers_are_400_naming_the_header(value in any::<String>()) {
            prop_assume!(value.trim().parse::<u64>().is_err());
            let h = one("cf-aig-cache-ttl", &value);
            let err = int_header(&h, "cf-aig-cache-ttl", 0, u64::MAX).err();
            prop_assert!(err.is_some_and(|r| names_header(&r, "cf-aig-cache-ttl")));
        }

        #[test]
        fn absent_headers_are_none(name in "cf-aig-[a-z-]{1,12}") {
            let h = one("cf-aig-other!", "true");
            prop_assert_eq!(bool_header(&h, &name).ok(), Some(None));
            prop_assert_eq!(int_header(&h, &name, 0, 1).ok(), Some(None));
        }
    }
}
