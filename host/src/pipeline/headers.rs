//! Header plumbing between hyper's `HeaderMap` and the filters' view:
//! hop-by-hop removal, the filter view (UTF-8 values only), applying a
//! filter's edits to both, and redaction of secrets for summaries.

use crate::providers::is_secret_header;
use crate::runtime::bindings::types::{Header, HeaderEdits};
use hyper::HeaderMap;
use hyper::header::{HeaderName, HeaderValue};

/// Headers that belong to one connection and are never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Most header edits (or local response headers) one filter answer may carry.
pub const MAX_HEADER_EDITS: usize = 256;

/// Removes hop-by-hop headers, including those named in `Connection`.
pub fn strip_hop_by_hop(map: &mut HeaderMap) {
    // Usually there is none: one pass over the names, no lookups.
    if !map.keys().any(|k| HOP_BY_HOP.contains(&k.as_str())) {
        return;
    }
    if map.contains_key(hyper::header::CONNECTION) {
        let named: Vec<String> = map
            .get_all(hyper::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect();
        for name in named {
            map.remove(name.as_str());
        }
    }
    for name in HOP_BY_HOP {
        map.remove(*name);
    }
}

/// The filter view of a header map.
pub fn view(map: &HeaderMap) -> Vec<Header> {
    map.iter()
        .filter_map(|(n, v)| {
            v.to_str().ok().map(|v| Header {
                name: n.as_str().to_string(),
                value: v.to_string(),
            })
        })
        .collect()
}

/// The filter view without secrets (provider keys, gateway tokens, cookies).
pub fn redacted_view(map: &HeaderMap) -> Vec<Header> {
    view(map)
        .into_iter()
        .filter(|h| !is_secret_header(&h.name))
        .map(|mut h| {
            // Browsers cannot set headers on a WebSocket: OpenAI takes their key as a
            // subprotocol, `openai-insecure-api-key.<key>`.
            if h.name == "sec-websocket-protocol" {
                h.value = h
                    .value
                    .split(',')
                    .map(|t| match t.trim().split_once("api-key.") {
                        Some((prefix, _)) => format!("{prefix}api-key.[redacted]"),
                        None => t.trim().to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
            }
            h
        })
        .collect()
}

/// Applies a filter's edits to the map and the view. An invalid name or value
/// is an error naming it.
pub fn apply(
    edits: &HeaderEdits,
    map: &mut HeaderMap,
    view: &mut Vec<Header>,
) -> Result<(), String> {
    if edits.set.len() + edits.remove.len() > MAX_HEADER_EDITS {
        return Err(format!("more than {MAX_HEADER_EDITS} header edits"));
    }
    check_size(&edits.set)?;
    for name in &edits.remove {
        let lower = name.to_ascii_lowercase();
        map.remove(lower.as_str());
        view.retain(|h| h.name != lower);
    }
    for h in &edits.set {
        let name = HeaderName::from_bytes(h.name.to_ascii_lowercase().as_bytes())
            .map_err(|_| format!("invalid header name '{}'", h.name))?;
        let value = HeaderValue::from_str(&h.value)
            .map_err(|_| format!("invalid value for header '{}'", h.name))?;
        map.insert(name.clone(), value);
        view.retain(|v| v.name != name.as_str());
        view.push(Header {
            name: name.as_str().to_string(),
            value: h.value.clone(),
        });
    }
    Ok(())
}

/// Most bytes of header names and values a filter may set in one answer.
pub const MAX_FILTER_HEADER_BYTES: usize = 64 * 1024;

/// Refuses header sets a client could not take (over 64 KiB in all).
pub fn check_size(headers: &[Header]) -> Result<(), String> {
    if headers.len() > MAX_HEADER_EDITS {
        return Err(format!("more than {MAX_HEADER_EDITS} headers"));
    }
    let bytes: usize = headers.iter().map(|h| h.name.len() + h.value.len()).sum();
    if bytes > MAX_FILTER_HEADER_BYTES {
        return Err(format!(
            "{bytes} bytes of headers, over the limit of {MAX_FILTER_HEADER_BYTES}"
        ));
    }
    Ok(())
}

/// A header map from a filter's local response headers (invalid ones skipped).
pub fn map_from(list: &[Header]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for h in list.iter().take(MAX_HEADER_EDITS) {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(h.name.to_ascii_lowercase().as_bytes()),
            HeaderValue::from_str(&h.value),
        ) {
            map.append(n, v);
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_carried_as_a_websocket_subprotocol_is_redacted() {
        let mut map = HeaderMap::new();
        map.insert(
            "sec-websocket-protocol",
            hyper::header::HeaderValue::from_static(
                "realtime, openai-insecure-api-key.sk-live-123",
            ),
        );
        let view = redacted_view(&map);
        assert_eq!(
            view[0].value,
            "realtime, openai-insecure-api-key.[redacted]"
        );
        assert!(!format!("{view:?}").contains("sk-live"));
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut m = HeaderMap::new();
        m.insert("connection", HeaderValue::from_static("close, x-private"));
        m.insert("x-private", HeaderValue::from_static("1"));
        m.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        m.insert("authorization", HeaderValue::from_static("Bearer k"));
        strip_hop_by_hop(&mut m);
        assert!(m.get("x-private").is_none() && m.get("transfer-encoding").is_none());
        assert!(m.get("authorization").is_some());
    }

    #[test]
    fn edits_apply_to_map_and_view() {
        let mut m = HeaderMap::new();
        m.insert("x-a", HeaderValue::from_static("1"));
        m.insert("x-b", HeaderValue::from_static("2"));
        let mut v = view(&m);
        let edits = HeaderEdits {
            set: vec![Header {
                name: "X-A".into(),
                value: "9".into(),
            }],
            remove: vec!["x-b".into()],
        };
        apply(&edits, &mut m, &mut v).unwrap();
        assert_eq!(m.get("x-a").unwrap(), "9");
        assert!(m.get("x-b").is_none());
        assert_eq!(v.len(), 1);
        let bad = HeaderEdits {
            set: vec![Header {
                name: "bad name".into(),
                value: "x".into(),
            }],
            remove: vec![],
        };
        assert!(
            apply(&bad, &mut m, &mut v)
                .unwrap_err()
                .contains("bad name")
        );
    }

    #[test]
    fn redaction_drops_keys() {
        let mut m = HeaderMap::new();
        m.insert(
            "authorization",
            HeaderValue::from_static("Bearer sk-secret"),
        );
        m.insert("x-api-key", HeaderValue::from_static("sk-ant"));
        m.insert("content-type", HeaderValue::from_static("application/json"));
        let v = redacted_view(&m);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].name, "content-type");
    }
}
