//! Outbound HTTP from a filter: [`fetch`] calls another service (a moderation model, an
//! embeddings endpoint) and waits for its whole answer.
//!
//! The host only lets a filter reach the origins its TOML table grants, and bounds the wait
//! and the size of the answer:
//!
//! ```toml
//! [gateways.app.filters.my-filter]
//! allow_http = ["https://moderation.internal:8443"]
//! http_timeout_ms = 2000             # default 5000
//! http_max_response_bytes = 262144   # default 1 MiB
//! api_key = { env = "MODERATION_KEY" }   # a secret the host resolves; never shown
//! ```
//!
//! A call to any other origin fails with an error naming it; so do a timeout, an answer over
//! the cap and network errors. Compiled natively (unit tests), [`fetch`] answers from
//! [`crate::testing::MockHost::http`].

/// A request to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRequest {
    /// GET, POST, PUT, PATCH, DELETE or HEAD.
    pub method: String,
    /// An absolute http or https URL.
    pub url: String,
    /// Headers (name, value).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl OutboundRequest {
    /// A GET of `url`.
    pub fn get(url: &str) -> OutboundRequest {
        OutboundRequest {
            method: "GET".into(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A POST of `json` to `url`, with `content-type: application/json`.
    ///
    /// ```
    /// use aigw_plugin_sdk::http::OutboundRequest;
    /// let r = OutboundRequest::post_json("https://m.internal/v1/moderations", &serde_json::json!({"input": "hi"}))
    ///     .header("authorization", "Bearer k");
    /// assert_eq!(r.method, "POST");
    /// assert_eq!(r.body, br#"{"input":"hi"}"#);
    /// ```
    pub fn post_json(url: &str, json: &serde_json::Value) -> OutboundRequest {
        OutboundRequest {
            method: "POST".into(),
            url: url.into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: json.to_string().into_bytes(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> OutboundRequest {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutboundResponse {
    /// Status code.
    pub status: u16,
    /// Headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// The whole body (at most the table's `http_max_response_bytes`).
    pub body: Vec<u8>,
}

impl OutboundResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> Result<serde_json::Value, String> {
        serde_json::from_slice(&self.body).map_err(|e| format!("the answer is not JSON: {e}"))
    }
}

/// Sends `request` and returns the whole answer; an error says why it could not (an origin
/// not granted, a bad URL, the timeout, an answer over the cap, the network).
///
/// ```
/// use aigw_plugin_sdk::http::{fetch, OutboundRequest, OutboundResponse};
/// use aigw_plugin_sdk::testing::MockHost;
/// MockHost::reset();
/// MockHost::with(|m| {
///     m.http.insert(
///         "https://m.internal/ok".into(),
///         Ok(OutboundResponse { status: 200, body: b"{}".to_vec(), ..Default::default() }),
///     )
/// });
/// assert_eq!(fetch(&OutboundRequest::get("https://m.internal/ok")).unwrap().status, 200);
/// assert!(fetch(&OutboundRequest::get("https://elsewhere/")).is_err());
/// ```
pub fn fetch(request: &OutboundRequest) -> Result<OutboundResponse, String> {
    imp::fetch(request)
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::{OutboundRequest, OutboundResponse};
    use crate::bindings::services::http_client;
    use crate::bindings::services::types::Header;

    pub fn fetch(r: &OutboundRequest) -> Result<OutboundResponse, String> {
        let request = http_client::OutboundRequest {
            method: r.method.clone(),
            url: r.url.clone(),
            headers: r
                .headers
                .iter()
                .map(|(name, value)| Header {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
            body: r.body.clone(),
        };
        http_client::fetch(&request).map(|a| OutboundResponse {
            status: a.status,
            headers: a.headers.into_iter().map(|h| (h.name, h.value)).collect(),
            body: a.body,
        })
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::{OutboundRequest, OutboundResponse};
    use crate::testing::with_mock;

    pub fn fetch(r: &OutboundRequest) -> Result<OutboundResponse, String> {
        with_mock(|m| {
            m.http_requests.push(r.clone());
            m.http.get(&r.url).cloned().unwrap_or_else(|| {
                Err(format!(
                    "no answer for {} (set one in MockHost::http)",
                    r.url
                ))
            })
        })
    }
}
