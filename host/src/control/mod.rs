//! The control plane: who is calling (virtual keys and teams), and the admin API that manages
//! them. The request path reads only [`ring::KeyRing`]'s snapshot; changes go to the database
//! and reach every replica through it.

pub mod api;
pub mod changes;
pub mod keys;
pub mod manage;
pub mod ring;
pub mod store;

use crate::config::KeyMode;
use crate::http::error::GatewayError;
use hyper::{HeaderMap, StatusCode};
use keys::KEY_PREFIX;
use ring::{Consumer, KeyRing};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Where SDKs put an API key, in the order they are read, and whether the value is a
/// `Bearer` credential.
pub const KEY_HEADERS: [(&str, bool); 5] = [
    ("cf-aig-authorization", true),
    ("authorization", true),
    ("x-api-key", false),
    ("api-key", false),
    ("x-goog-api-key", false),
];

/// A request's consumer and the headers its key came in (all removed before any filter or
/// provider sees the request).
#[derive(Debug, Clone)]
pub struct Identified {
    /// Who is calling.
    pub consumer: Arc<Consumer>,
    /// The first header that carried the key.
    pub header: &'static str,
    /// Every header that carried it.
    pub headers: Vec<&'static str>,
}

/// The secret in one header value: after an optional `Bearer` (any case, any blank), when it
/// is a virtual key.
fn secret_in(value: &str) -> Option<&str> {
    let v = value.trim();
    let v = match v.get(..6) {
        Some(p) if p.eq_ignore_ascii_case("bearer") => v[6..].trim_start(),
        _ => v,
    };
    v.starts_with(KEY_PREFIX).then_some(v)
}

/// The virtual keys a request carries: each header holding one, with the secret. A header
/// that mentions a virtual key in any other form is returned with `None`.
pub fn presented_keys(headers: &HeaderMap) -> Vec<(&'static str, Option<&str>)> {
    KEY_HEADERS
        .iter()
        .filter_map(|(name, _)| {
            let raw = headers.get(*name)?;
            let value = match raw.to_str() {
                Ok(v) => v,
                Err(_) => {
                    let mentions = raw
                        .as_bytes()
                        .windows(KEY_PREFIX.len())
                        .any(|w| w == KEY_PREFIX.as_bytes());
                    return mentions.then_some((*name, None));
                }
            };
            match secret_in(value) {
                Some(s) => Some((*name, Some(s))),
                None if value.contains(KEY_PREFIX) => Some((*name, None)),
                None => None,
            }
        })
        .collect()
}

/// The first virtual key a request carries, if any: the header and the secret.
pub fn presented_key(headers: &HeaderMap) -> Option<(&'static str, &str)> {
    presented_keys(headers)
        .into_iter()
        .find_map(|(h, s)| s.map(|s| (h, s)))
}

fn unauthorized(message: String) -> GatewayError {
    GatewayError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

/// Resolves the request's virtual key under the gateway's `keys` mode. A key that is not
/// valid is refused in every mode: it is never forwarded to a provider.
pub fn identify(
    ring: Option<&KeyRing>,
    mode: KeyMode,
    gateway: &str,
    headers: &HeaderMap,
    query: Option<&str>,
    now_ms: u64,
) -> Result<Option<Identified>, GatewayError> {
    // A key in the URL would be forwarded with it (and logged by proxies on the way).
    if let Some(q) = query
        && form_urlencoded::parse(q.as_bytes()).any(|(_, v)| v.contains(KEY_PREFIX))
    {
        return Err(unauthorized(format!(
            "the query string holds a virtual key ({KEY_PREFIX}…): send it in a header \
             ('Authorization: Bearer', 'x-api-key', 'api-key', 'x-goog-api-key')"
        )));
    }
    let presented = presented_keys(headers);
    if let Some((header, _)) = presented.iter().find(|(_, s)| s.is_none()) {
        return Err(unauthorized(format!(
            "{header}: holds a virtual key in a form that is not understood (expected \
             '{KEY_PREFIX}…' or 'Bearer {KEY_PREFIX}…')"
        )));
    }
    let secrets: Vec<&str> = presented.iter().filter_map(|(_, s)| *s).collect();
    if secrets.windows(2).any(|w| w[0] != w[1]) {
        return Err(unauthorized(format!(
            "{}: different virtual keys in one request",
            presented
                .iter()
                .map(|(h, _)| *h)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let all_headers: Vec<&'static str> = presented.iter().map(|(h, _)| *h).collect();
    let Some((header, secret)) = presented_key(headers) else {
        return match mode {
            KeyMode::Required => Err(unauthorized(format!(
                "gateway '{gateway}' requires a virtual key ({KEY_PREFIX}…): send it as \
                 'Authorization: Bearer', 'x-api-key', 'api-key', 'x-goog-api-key' or \
                 'cf-aig-authorization: Bearer'"
            ))),
            _ => Ok(None),
        };
    };
    if mode == KeyMode::Off {
        return Err(unauthorized(format!(
            "{header}: gateway '{gateway}' does not take virtual keys ([gateways.{gateway}] keys \
             is \"off\"); the key was not sent to the provider"
        )));
    }
    let Some(ring) = ring else {
        return Err(GatewayError::unavailable(
            "virtual keys need the log store's database, which is not open",
        ));
    };
    let Some(consumer) = ring.resolve(secret) else {
        return Err(unauthorized(format!(
            "{header}: the virtual key is not valid (unknown or revoked)"
        )));
    };
    if consumer.expired(now_ms) {
        return Err(unauthorized(format!(
            "{header}: virtual key '{}' ({}) has expired",
            consumer.name(),
            consumer.key_id
        )));
    }
    if !consumer.spec.gateways.allows(gateway) {
        return Err(GatewayError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "virtual key '{}' ({}) may not use gateway '{gateway}'",
                consumer.name(),
                consumer.key_id
            ),
        ));
    }
    consumer
        .last_used_ms
        .fetch_max(now_ms as i64, Ordering::Relaxed);
    Ok(Some(Identified {
        consumer,
        header,
        headers: all_headers,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_key_is_found_where_sdks_put_it() {
        let k = "aigw-abc";
        for (name, value) in [
            ("authorization", format!("Bearer {k}")),
            ("authorization", format!("bearer  {k}")),
            ("x-api-key", k.to_string()),
            ("api-key", k.to_string()),
            ("x-goog-api-key", k.to_string()),
            ("cf-aig-authorization", format!("Bearer {k}")),
        ] {
            let h = headers(&[(name, &value)]);
            assert_eq!(presented_key(&h), Some((name, k)), "{name}: {value}");
        }
        // Provider keys and gateway tokens are not virtual keys.
        let h = headers(&[
            ("authorization", "Bearer sk-abc"),
            ("cf-aig-authorization", "Bearer tok"),
        ]);
        assert_eq!(presented_key(&h), None);
        // A gateway token and a virtual key: the key is found.
        let h = headers(&[("cf-aig-authorization", "Bearer tok"), ("x-api-key", k)]);
        assert_eq!(presented_key(&h), Some(("x-api-key", k)));
    }

    #[test]
    fn modes_without_a_ring() {
        let none = headers(&[("authorization", "Bearer sk-provider")]);
        assert!(
            identify(None, KeyMode::Off, "g", &none, None, 0)
                .unwrap()
                .is_none()
        );
        assert!(
            identify(None, KeyMode::Optional, "g", &none, None, 0)
                .unwrap()
                .is_none()
        );
        let e = identify(None, KeyMode::Required, "g", &none, None, 0).unwrap_err();
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        let with_key = headers(&[("x-api-key", "aigw-secret-value")]);
        let e = identify(None, KeyMode::Off, "g", &with_key, None, 0).unwrap_err();
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        assert!(!e.message.contains("aigw-secret-value"), "{}", e.message);
        // Malformed, disagreeing or in the query: refused in every mode, never forwarded.
        for (h, q) in [
            (headers(&[("authorization", "Token aigw-abc")]), None),
            (
                headers(&[("authorization", "Bearer aigw-a"), ("x-api-key", "aigw-b")]),
                None,
            ),
            (headers(&[]), Some("key=aigw-abc")),
        ] {
            let e = identify(None, KeyMode::Optional, "g", &h, q, 0).unwrap_err();
            assert_eq!(e.status, StatusCode::UNAUTHORIZED, "{}", e.message);
        }
        let both = headers(&[("authorization", "Bearer aigw-a"), ("x-api-key", "aigw-a")]);
        assert_eq!(presented_keys(&both).len(), 2);
    }
}
