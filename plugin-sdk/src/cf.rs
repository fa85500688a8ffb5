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
