//! The built-in cache filter. Key: sha256 over provider, path, model, the
//! provider auth header and the canonical JSON body (sorted keys, no
//! whitespace), or `cf-aig-cache-key`. Stores complete 2xx responses in the
//! host key-value store; a HIT replays the stored bytes (a streamed response is
//! replayed as the same SSE stream) and never reaches the upstream.
//!
//! Config: `ttl_s` (default 3600), `max_entry_bytes` (default 4 MiB).
//! Per request: `cf-aig-cache-ttl` (seconds, 0 = don't store),
//! `cf-aig-skip-cache: true`, `cf-aig-cache-key`.
//! Response: `cf-aig-cache-status: HIT | MISS`.

use aigw_plugin_sdk::host::{kv_get, kv_set};
use aigw_plugin_sdk::{
    BodyDecision, BodyMode, ChunkDecision, Decision, Filter, FilterInfo, HeaderEdits,
    LocalResponse, OnError, Request, Response, ResponseDecision, cf, config,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Auth headers that separate callers: two keys never share an entry.
const AUTH_HEADERS: &[&str] = &["authorization", "x-api-key", "api-key", "x-goog-api-key"];
/// Longest accepted `cf-aig-cache-key`.
const MAX_CUSTOM_KEY: usize = 1024;

/// The filter's table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct RawConfig {
    /// How long a stored response stays, in seconds (0: nothing is stored).
    #[serde(default = "default_ttl_s")]
    ttl_s: u64,
    /// Responses larger than this are passed on but not stored; above 0.
    #[serde(default = "default_max_entry_bytes")]
    max_entry_bytes: u64,
    /// Part of every cache key: changing it (the management API does on an update with
    /// `cache_invalidate_on_update`) leaves every earlier answer unused.
    #[serde(default)]
    namespace: String,
}

fn default_ttl_s() -> u64 {
    3600
}

fn default_max_entry_bytes() -> u64 {
    4 * 1024 * 1024
}

/// The cache filter for one request.
#[derive(Debug)]
pub struct Cache {
    ttl_s: u64,
    namespace: String,
    max_entry_bytes: usize,
    /// Key prefix material collected from the request head.
    provider: String,
    /// Method, account, gateway, path and query: what separates two requests
    /// besides the body and the key.
    route: String,
    auth: String,
    key: Option<String>,
    bypass: bool,
    storing: bool,
    content_type: String,
    collected: Vec<u8>,
}

/// What is stored: a small JSON head line, then the body bytes.
fn encode_entry(content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = serde_json::json!({ "content_type": content_type })
        .to_string()
        .into_bytes();
    out.push(b'\n');
    out.extend_from_slice(body);
    out
}

fn decode_entry(bytes: &[u8]) -> Option<(String, &[u8])> {
    let nl = bytes.iter().position(|&b| b == b'\n')?;
    let head: serde_json::Value = serde_json::from_slice(&bytes[..nl]).ok()?;
    let ct = head.get("content_type")?.as_str()?.to_string();
    Some((ct, &bytes[nl + 1..]))
}

/// Canonical form of a JSON body (the SDK's, which the host computes natively in a
/// hook): keys sorted, no whitespace; non-JSON bodies, and bodies holding a number a float
/// cannot keep exactly, as they are.
pub use aigw_plugin_sdk::body::canonical_json as canonical_body;

fn model_of(body: &[u8]) -> String {
    aigw_plugin_sdk::body::model(body).unwrap_or_default()
}

impl Cache {
    fn hit(&self, key: &str) -> Option<LocalResponse> {
        let stored = kv_get(key)?;
        let (content_type, body) = decode_entry(&stored)?;
        Some(
            LocalResponse {
                status: 200,
                headers: vec![],
                body: body.to_vec(),
            }
            .with_header("content-type", &content_type)
            .with_header("cf-aig-cache-status", "HIT"),
        )
    }
}

impl Filter for Cache {
    fn describe() -> FilterInfo {
        // A cache that fails only costs a miss: open.
        FilterInfo::new()
            .on_request_headers()
            .on_request_body(BodyMode::Buffered(32 * 1024 * 1024))
            .on_response_headers()
            .on_response_body(BodyMode::Streaming)
            .on_error(OnError::Open)
    }

    fn configure(value: serde_json::Value) -> Result<Self, String> {
        let raw: RawConfig = config::parse(value)?;
        if raw.max_entry_bytes == 0 {
            return Err("max_entry_bytes: expected a positive integer".into());
        }
        Ok(Cache {
            ttl_s: raw.ttl_s,
            namespace: raw.namespace,
            // A limit past the address space (wasm32) means no limit.
            max_entry_bytes: usize::try_from(raw.max_entry_bytes).unwrap_or(usize::MAX),
            provider: String::new(),
            route: String::new(),
            auth: String::new(),
            key: None,
            bypass: false,
            storing: false,
            content_type: String::new(),
            collected: Vec::new(),
        })
    }

    fn on_request_headers(&mut self, req: &Request) -> Decision {
        let skip = match cf::bool_header(&req.headers, "cf-aig-skip-cache") {
            Ok(v) => v.unwrap_or(false),
            Err(r) => return Decision::Respond(r),
        };
        match cf::int_header(&req.headers, "cf-aig-cache-ttl", 0, 31_536_000) {
            Ok(Some(ttl)) => self.ttl_s = ttl,
            Ok(None) => {}
            Err(r) => return Decision::Respond(r),
        }
        let method_cacheable = req.method == "POST" || req.method == "GET";
        self.bypass = skip || !method_cacheable;
        self.provider = req.provider.clone();
        // The query matters (`?key=` auth, `?alt=sse`, GET parameters).
        self.route = format!(
            "{}{} {}/{} {}?{}",
            self.namespace,
            req.method,
            req.account,
            req.gateway,
            req.path,
            req.query.as_deref().unwrap_or("")
        );
        self.auth = AUTH_HEADERS
            .iter()
            .filter_map(|h| req.headers.get(h))
            .collect::<Vec<_>>()
            .join("\u{1f}");
        if let Some(custom) = req.headers.get("cf-aig-cache-key") {
            if custom.is_empty() || custom.len() > MAX_CUSTOM_KEY {
                return Decision::Respond(cf::bad_header(
                    "cf-aig-cache-key",
                    &format!("a non-empty string of at most {MAX_CUSTOM_KEY} bytes"),
                ));
            }
            // Still separated by provider auth: a custom key never leaks across keys.
            let key = hex::encode(Sha256::digest(format!(
                "custom\u{0}{}\u{0}{}\u{0}{custom}",
                self.route, self.auth
            )));
            if !self.bypass
                && let Some(hit) = self.hit(&key)
            {
                return Decision::Respond(hit);
            }
            self.key = Some(key);
        }
        Decision::proceed()
    }

    fn on_request_body(&mut self, body: &[u8]) -> BodyDecision {
        if self.bypass || self.key.is_some() {
            return BodyDecision::Continue;
        }
        // Done by the host when it lends the body: no JSON parse or hashing in here.
        let model = model_of(body);
        let key = aigw_plugin_sdk::body::canonical_sha256(
            &[&self.provider, &self.route, &model, &self.auth],
            body,
        );
        if let Some(hit) = self.hit(&key) {
            return BodyDecision::Respond(hit);
        }
        self.key = Some(key);
        BodyDecision::Continue
    }

    fn on_response_headers(&mut self, resp: &Response) -> ResponseDecision {
        if resp.local {
            // Somebody else's answer (e.g. a 429): not ours to label or store.
            return ResponseDecision::proceed();
        }
        self.storing = !self.bypass
            && self.ttl_s > 0
            && self.key.is_some()
            && (200..300).contains(&resp.status)
            && resp.upstream_error.is_none();
        self.content_type = resp
            .headers
            .get("content-type")
            .unwrap_or("application/octet-stream")
            .to_string();
        self.collected.clear();
        ResponseDecision::Continue(HeaderEdits::default().set("cf-aig-cache-status", "MISS"))
    }

    fn on_response_body(&mut self, chunk: &[u8], end_of_stream: bool) -> ChunkDecision {
        if !self.storing {
            return ChunkDecision::Continue;
        }
        if self.collected.len() + chunk.len() > self.max_entry_bytes {
            self.storing = false;
            self.collected = Vec::new();
            return ChunkDecision::Continue;
        }
        self.collected.extend_from_slice(chunk);
        if end_of_stream {
            if let Some(key) = &self.key {
                let entry = encode_entry(&self.content_type, &self.collected);
                kv_set(key, &entry, self.ttl_s.saturating_mul(1000));
            }
            self.storing = false;
        }
        ChunkDecision::Continue
    }
}

aigw_plugin_sdk::export_filter!(Cache);

#[cfg(test)]
mod tests;
