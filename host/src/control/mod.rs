//! The control plane: who is calling (virtual keys and teams), and the admin API that manages
//! them. The request path reads only [`ring::KeyRing`]'s snapshot; changes go to the database
//! and reach every replica through it.

pub mod api;
pub mod keys;
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

/// A request's consumer and the header its key came in (removed before any filter or
/// provider sees the request).
#[derive(Debug, Clone)]
pub struct Identified {
    /// Who is calling.
    pub consumer: Arc<Consumer>,
    /// The header that carried the key.
    pub header: &'static str,
}

/// The virtual key a request carries, if any: the header and the secret.
pub fn presented_key(headers: &HeaderMap) -> Option<(&'static str, &str)> {
    KEY_HEADERS.iter().find_map(|(name, bearer)| {
        let value = headers.get(*name)?.to_str().ok()?.trim();
        let secret = if *bearer {
            value
                .get(..7)
                .filter(|p| p.eq_ignore_ascii_case("bearer "))
                .map(|_| value[7..].trim_start())?
        } else {
            value
        };
        secret.starts_with(KEY_PREFIX).then_some((*name, secret))
    })
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
    now_ms: u64,
) -> Result<Option<Identified>, GatewayError> {
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
    Ok(Some(Identified { consumer, header }))
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
            identify(None, KeyMode::Off, "g", &none, 0)
                .unwrap()
                .is_none()
        );
        assert!(
            identify(None, KeyMode::Optional, "g", &none, 0)
                .unwrap()
                .is_none()
        );
        let e = identify(None, KeyMode::Required, "g", &none, 0).unwrap_err();
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        let with_key = headers(&[("x-api-key", "aigw-secret-value")]);
        let e = identify(None, KeyMode::Off, "g", &with_key, 0).unwrap_err();
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        assert!(!e.message.contains("aigw-secret-value"), "{}", e.message);
    }
}
