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
    BodyDecision, BodyMode, ChunkDecision, Decision, Filter, FilterInfo, HeaderEdits, Hooks,
    LocalResponse, Request, Response, ResponseDecision, cf,
};
use sha2::{Digest, Sha256};

/// Auth headers that separate callers: two keys never share an entry.
const AUTH_HEADERS: &[&str] = &["authorization", "x-api-key", "api-key", "x-goog-api-key"];
/// Longest accepted `cf-aig-cache-key`.
const MAX_CUSTOM_KEY: usize = 1024;

/// The cache filter for one request.
#[derive(Debug)]
pub struct Cache {
    ttl_s: u64,
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

/// Canonical form of a JSON body: keys sorted, no whitespace. Non-JSON bodies
/// are used as they are.
pub fn canonical_body(body: &[u8]) -> Vec<u8> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        // serde_json's map is ordered by key (no preserve_order feature).
        Ok(v) => v.to_string().into_bytes(),
        Err(_) => body.to_vec(),
    }
}

fn model_of(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("model").and_then(|m| m.as_str()).map(str::to_string))
        .unwrap_or_default()
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
        FilterInfo {
            hooks: Hooks {
                request_headers: true,
                request_body: true,
                response_headers: true,
                response_body: true,
                done: false,
            },
            request_body: BodyMode::Buffered(32 * 1024 * 1024),
            response_body: BodyMode::Streaming,
        }
    }

    fn configure(config: serde_json::Value) -> Result<Self, String> {
        let obj = config.as_object().ok_or("expected a table")?;
        for key in obj.keys() {
            if key != "ttl_s" && key != "max_entry_bytes" {
                return Err(format!(
                    "unknown key '{key}' (known: ttl_s, max_entry_bytes)"
                ));
            }
        }
        let ttl_s = match obj.get("ttl_s") {
            None => 3600,
            Some(v) => v
                .as_u64()
                .ok_or("ttl_s: expected seconds, an integer >= 0")?,
        };
        let max_entry_bytes = match obj.get("max_entry_bytes") {
            None => 4 * 1024 * 1024,
            Some(v) => {
                v.as_u64()
                    .filter(|n| *n > 0)
                    .ok_or("max_entry_bytes: expected a positive integer")? as usize
            }
        };
        Ok(Cache {
            ttl_s,
            max_entry_bytes,
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
            "{} {}/{} {}?{}",
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
        let mut h = Sha256::new();
        for part in [
            self.provider.as_bytes(),
            self.route.as_bytes(),
            model_of(body).as_bytes(),
            self.auth.as_bytes(),
        ] {
            h.update(part);
            h.update([0u8]);
        }
        h.update(canonical_body(body));
        let key = hex::encode(h.finalize());
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
mod tests {
    use super::*;
    use aigw_plugin_sdk::Headers;
    use aigw_plugin_sdk::testing::MockHost;

    fn request(headers: &[(&str, &str)]) -> Request {
        Request {
            method: "POST".into(),
            provider: "openai".into(),
            path: "/chat/completions".into(),
            headers: Headers::from_pairs(headers.iter().copied()),
            ..Request::default()
        }
    }

    fn ok_response() -> Response {
        Response {
            status: 200,
            headers: Headers::from_pairs([("content-type", "application/json")]),
            attempt: 1,
            ..Response::default()
        }
    }

    /// Runs one request through the filter; `Some(body)` when it was a HIT.
    fn run(headers: &[(&str, &str)], body: &[u8], upstream: &[u8]) -> Option<Vec<u8>> {
        let mut f = Cache::configure(serde_json::json!({"ttl_s": 60})).unwrap();
        if let Decision::Respond(r) = f.on_request_headers(&request(headers)) {
            return Some(r.body);
        }
        if let BodyDecision::Respond(r) = f.on_request_body(body) {
            assert!(
                r.headers
                    .iter()
                    .any(|h| h.name == "cf-aig-cache-status" && h.value == "HIT")
            );
            return Some(r.body);
        }
        f.on_response_headers(&ok_response());
        f.on_response_body(upstream, true);
        None
    }

    #[test]
    fn second_identical_request_hits() {
        MockHost::reset();
        let auth = [("authorization", "Bearer a")];
        assert_eq!(run(&auth, br#"{"model":"m","x":1}"#, b"answer"), None);
        assert_eq!(
            run(&auth, br#"{ "x": 1, "model": "m" }"#, b"other"),
            Some(b"answer".to_vec())
        );
    }

    #[test]
    fn different_auth_never_shares() {
        MockHost::reset();
        assert_eq!(run(&[("authorization", "Bearer a")], b"{}", b"A"), None);
        assert_eq!(run(&[("authorization", "Bearer b")], b"{}", b"B"), None);
        assert_eq!(
            run(&[("authorization", "Bearer b")], b"{}", b"x"),
            Some(b"B".to_vec())
        );
    }

    #[test]
    fn ttl_expiry_and_skip() {
        MockHost::reset();
        assert_eq!(run(&[], b"{}", b"A"), None);
        assert_eq!(run(&[("cf-aig-skip-cache", "true")], b"{}", b"B"), None);
        MockHost::advance_ms(61_000);
        assert_eq!(run(&[], b"{}", b"C"), None);
        assert_eq!(run(&[], b"{}", b"x"), Some(b"C".to_vec()));
    }

    #[test]
    fn bad_headers_are_400() {
        MockHost::reset();
        let mut f = Cache::configure(serde_json::json!({})).unwrap();
        match f.on_request_headers(&request(&[("cf-aig-cache-ttl", "-1")])) {
            Decision::Respond(r) => {
                assert_eq!(r.status, 400);
                assert!(
                    String::from_utf8(r.body)
                        .unwrap()
                        .contains("cf-aig-cache-ttl")
                );
            }
            other => panic!("expected 400, got {other:?}"),
        }
    }

    #[test]
    fn config_is_validated() {
        assert!(
            Cache::configure(serde_json::json!({"ttl": 5}))
                .unwrap_err()
                .contains("ttl")
        );
        assert!(Cache::configure(serde_json::json!({"ttl_s": "x"})).is_err());
    }

    #[test]
    fn canonical_json_ignores_order_and_space() {
        assert_eq!(
            canonical_body(br#"{"b":1, "a":[1, 2]}"#),
            canonical_body(br#"{"a":[1,2],"b":1}"#)
        );
    }

    #[test]
    fn query_and_method_separate_entries() {
        MockHost::reset();
        let with_query = |q: &str| Request {
            method: "POST".into(),
            provider: "google-ai-studio".into(),
            path: "/v1beta/models/gemini:generateContent".into(),
            query: Some(q.to_string()),
            ..Request::default()
        };
        let mut f = Cache::configure(serde_json::json!({})).unwrap();
        f.on_request_headers(&with_query("key=user-a"));
        assert_eq!(f.on_request_body(b"{}"), BodyDecision::Continue);
        f.on_response_headers(&ok_response());
        f.on_response_body(b"for a", true);
        let mut g = Cache::configure(serde_json::json!({})).unwrap();
        g.on_request_headers(&with_query("key=user-b"));
        assert_eq!(
            g.on_request_body(b"{}"),
            BodyDecision::Continue,
            "another ?key= got a HIT"
        );
        let mut h = Cache::configure(serde_json::json!({})).unwrap();
        h.on_request_headers(&with_query("key=user-a"));
        assert!(matches!(h.on_request_body(b"{}"), BodyDecision::Respond(_)));
    }
}
