//! The built-in logging filter: one entry per request in the host log store,
//! with the id returned to the client as `cf-aig-log-id`. Records gateway,
//! provider, model, path, status, success, cached, duration, tokens, cost,
//! attempts, sizes, metadata and (unless turned off) the bodies.
//!
//! Config: `collect_logs` (default true), `collect_payload` (default true),
//! `max_payload_bytes` (default 65536).
//! Per request: `cf-aig-collect-log`, `cf-aig-collect-log-payload`,
//! `cf-aig-metadata` (flat JSON object, ≤ 5 keys, string/number/bool values),
//! `cf-aig-custom-cost` (`{"per_token_in":x,"per_token_out":y}` or
//! `{"total_cost":z}`), `cf-aig-event-id`. Bad values are a 400 naming the header.

use aigw_plugin_sdk::host::{Level, append_log, log};
use aigw_plugin_sdk::{
    BodyDecision, BodyMode, ChunkDecision, Decision, Filter, FilterInfo, HeaderEdits, OnError,
    Request, Response, ResponseDecision, Summary, cf, config,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// Custom cost from `cf-aig-custom-cost`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum CustomCost {
    PerToken { input: f64, output: f64 },
    Total(f64),
}

/// The logging filter for one request.
#[derive(Debug)]
pub struct Logging {
    collect: bool,
    payload: bool,
    max_payload: usize,
    metadata: Option<Map<String, Value>>,
    custom_cost: Option<CustomCost>,
    event_id: Option<String>,
    request_id: String,
    request_body: Vec<u8>,
    response_body: Vec<u8>,
    response_truncated: bool,
    request_truncated: bool,
}

/// The filter's table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct RawConfig {
    /// Write an entry for each request (a request may turn it off or on).
    #[serde(default = "yes")]
    collect_logs: bool,
    /// Keep the request and response bodies in the entry.
    #[serde(default = "yes")]
    collect_payload: bool,
    /// Bytes kept of each body; the rest is marked truncated.
    #[serde(default = "default_max_payload_bytes")]
    max_payload_bytes: u64,
    /// Most entries the gateway's log keeps (the host's log store enforces it;
    /// Cloudflare's `log_management`).
    #[serde(default)]
    max_entries: Option<u64>,
    /// What a full log does with a new entry (Cloudflare's `log_management_strategy`).
    #[serde(default)]
    when_full: Option<WhenFull>,
}

/// What a full log does with a new entry.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum WhenFull {
    /// The oldest entries make room.
    DeleteOldest,
    /// New entries are not stored.
    StopInserting,
}

fn yes() -> bool {
    true
}

fn default_max_payload_bytes() -> u64 {
    65_536
}

fn parse_metadata(text: &str) -> Result<Map<String, Value>, String> {
    cf::parse_metadata(text)
}

fn parse_cost(text: &str) -> Result<CustomCost, String> {
    let expected =
        "{\"per_token_in\":x,\"per_token_out\":y} or {\"total_cost\":z} with numbers >= 0";
    let v: Value = serde_json::from_str(text).map_err(|_| expected.to_string())?;
    let num = |k: &str| {
        v.get(k)
            .and_then(Value::as_f64)
            .filter(|n| *n >= 0.0 && n.is_finite())
    };
    if let Some(total) = num("total_cost") {
        return Ok(CustomCost::Total(total));
    }
    match (num("per_token_in"), num("per_token_out")) {
        (Some(input), Some(output)) => Ok(CustomCost::PerToken { input, output }),
        _ => Err(expected.into()),
    }
}

fn body_text(bytes: &[u8], truncated: bool) -> Value {
    let mut text = String::from_utf8_lossy(bytes).into_owned();
    if truncated {
        text.push_str("…[truncated]");
    }
    Value::String(text)
}

impl Filter for Logging {
    fn describe() -> FilterInfo {
        // An observer: its failure must not cost the client its answer.
        FilterInfo::new()
            .on_request_headers()
            .on_request_body(BodyMode::Buffered(32 * 1024 * 1024))
            .on_response_headers()
            .on_response_body(BodyMode::Streaming)
            .on_done()
            .on_error(OnError::Open)
    }

    fn configure(value: serde_json::Value) -> Result<Self, String> {
        let raw: RawConfig = config::parse(value)?;
        if raw.max_entries == Some(0) {
            return Err("max_entries: expected at least 1 (leave it out for no limit)".into());
        }
        if raw.when_full.is_some() && raw.max_entries.is_none() {
            return Err("when_full: needs max_entries".into());
        }
        Ok(Logging {
            collect: raw.collect_logs,
            payload: raw.collect_payload,
            // A cap past the address space (wasm32) means no cap.
            max_payload: usize::try_from(raw.max_payload_bytes).unwrap_or(usize::MAX),
            metadata: None,
            custom_cost: None,
            event_id: None,
            request_id: String::new(),
            request_body: Vec::new(),
            response_body: Vec::new(),
            response_truncated: false,
            request_truncated: false,
        })
    }

    fn on_request_headers(&mut self, req: &Request) -> Decision {
        match cf::bool_header(&req.headers, "cf-aig-collect-log") {
            Ok(Some(v)) => self.collect = v,
            Ok(None) => {}
            Err(r) => return Decision::Respond(r),
        }
        match cf::bool_header(&req.headers, "cf-aig-collect-log-payload") {
            Ok(Some(v)) => self.payload = v,
            Ok(None) => {}
            Err(r) => return Decision::Respond(r),
        }
        if let Some(m) = req.headers.get("cf-aig-metadata") {
            match parse_metadata(m) {
                Ok(m) => self.metadata = Some(m),
                Err(expected) => {
                    return Decision::Respond(cf::bad_header("cf-aig-metadata", &expected));
                }
            }
        }
        if let Some(c) = req.headers.get("cf-aig-custom-cost") {
            match parse_cost(c) {
                Ok(c) => self.custom_cost = Some(c),
                Err(expected) => {
                    return Decision::Respond(cf::bad_header("cf-aig-custom-cost", &expected));
                }
            }
        }
        self.event_id = req.headers.get("cf-aig-event-id").map(str::to_string);
        self.request_id = req.request_id.clone();
        Decision::proceed()
    }

    fn on_request_body(&mut self, body: &[u8]) -> BodyDecision {
        if self.collect && self.payload {
            let n = body.len().min(self.max_payload);
            self.request_body = body[..n].to_vec();
            self.request_truncated = n < body.len();
        }
        BodyDecision::Continue
    }

    fn on_response_headers(&mut self, _resp: &Response) -> ResponseDecision {
        self.response_body.clear();
        self.response_truncated = false;
        if self.collect && !self.request_id.is_empty() {
            ResponseDecision::Continue(
                HeaderEdits::default().set("cf-aig-log-id", &self.request_id),
            )
        } else {
            ResponseDecision::proceed()
        }
    }

    fn on_response_body(&mut self, chunk: &[u8], _end_of_stream: bool) -> ChunkDecision {
        if self.collect && self.payload {
            let room = self.max_payload.saturating_sub(self.response_body.len());
            let n = chunk.len().min(room);
            self.response_body.extend_from_slice(&chunk[..n]);
            self.response_truncated |= n < chunk.len();
        }
        ChunkDecision::Continue
    }

    fn on_done(&mut self, s: &Summary) {
        if !self.collect {
            return;
        }
        let cost = match self.custom_cost {
            _ if s.cached => Some(0.0),
            Some(CustomCost::Total(t)) => Some(t),
            Some(CustomCost::PerToken { input, output }) => Some(
                input * s.tokens_in.unwrap_or(0) as f64 + output * s.tokens_out.unwrap_or(0) as f64,
            ),
            None => s.cost,
        };
        // Filters' annotations (redaction counts, routing decisions) join the
        // client's metadata; the client's own keys win on a clash.
        let mut metadata = self.metadata.clone();
        for (k, v) in aigw_plugin_sdk::host::annotations() {
            metadata
                .get_or_insert_with(Map::new)
                .entry(k)
                .or_insert(Value::String(v));
        }
        let mut entry = json!({
            "id": s.request_id,
            "created_at": s.created_at_ms,
            "account": s.account,
            "gateway": s.gateway,
            "provider": s.provider,
            "model": s.model,
            "method": s.method,
            "path": s.path,
            "status": s.status,
            "success": s.success,
            "cached": s.cached,
            "streamed": s.streamed,
            "outcome": format!("{:?}", s.outcome),
            "duration_ms": s.duration_ms,
            "tokens_in": s.tokens_in,
            "tokens_out": s.tokens_out,
            "tokens_cached": s.tokens_cached,
            "tokens_reasoning": s.tokens_reasoning,
            "cost": cost,
            "cost_source": match self.custom_cost {
                _ if s.cached => "cache",
                Some(_) => "custom",
                None => "catalog",
            },
            "attempts": s.attempts,
            "request_size": s.request_bytes,
            "response_size": s.response_bytes,
            "metadata": metadata.map(Value::Object).unwrap_or(Value::Null),
            "event_id": self.event_id,
        });
        if self.payload
            && let Some(obj) = entry.as_object_mut()
        {
            obj.insert(
                "request_body".into(),
                body_text(&self.request_body, self.request_truncated),
            );
            obj.insert(
                "response_body".into(),
                body_text(&self.response_body, self.response_truncated),
            );
        }
        if let Err(e) = append_log(&entry) {
            log(
                Level::Warn,
                &format!("log entry {} not stored: {e}", s.request_id),
            );
        }
    }
}

aigw_plugin_sdk::export_filter!(Logging);

#[cfg(test)]
mod tests {
    use super::*;
    use aigw_plugin_sdk::Headers;
    use aigw_plugin_sdk::testing::MockHost;

    fn req(headers: &[(&str, &str)]) -> Request {
        Request {
            request_id: "r1".into(),
            headers: Headers::from_pairs(headers.iter().copied()),
            ..Request::default()
        }
    }

    #[test]
    fn one_entry_with_tokens_metadata_and_bodies() {
        MockHost::reset();
        let mut f = Logging::configure(json!({})).unwrap();
        assert!(matches!(
            f.on_request_headers(&req(&[("cf-aig-metadata", r#"{"user":"ada","n":1}"#)])),
            Decision::Continue(_)
        ));
        f.on_request_body(b"{\"q\":1}");
        f.on_response_headers(&Response {
            status: 200,
            ..Response::default()
        });
        f.on_response_body(b"{\"a\":", false);
        f.on_response_body(b"2}", true);
        aigw_plugin_sdk::host::annotate("routed_by", "test");
        f.on_done(&Summary {
            request_id: "r1".into(),
            status: 200,
            success: true,
            tokens_in: Some(3),
            tokens_out: Some(4),
            ..Summary::default()
        });
        let entries = MockHost::with(|m| m.log_entries.clone());
        assert_eq!(entries.len(), 1);
        let e = &entries[0];
        assert_eq!(e["id"], "r1");
        assert_eq!(
            e["metadata"]["routed_by"], "test",
            "annotations join the metadata"
        );
        assert_eq!(e["tokens_in"], 3);
        assert_eq!(e["metadata"]["user"], "ada");
        assert_eq!(e["response_body"], "{\"a\":2}");
    }

    #[test]
    fn bad_headers_name_themselves() {
        MockHost::reset();
        for (h, v) in [
            ("cf-aig-metadata", r#"{"a":{"nested":1}}"#),
            (
                "cf-aig-metadata",
                r#"{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6}"#,
            ),
            ("cf-aig-collect-log", "yes"),
            ("cf-aig-custom-cost", r#"{"per_token_in":1}"#),
        ] {
            let mut f = Logging::configure(json!({})).unwrap();
            match f.on_request_headers(&req(&[(h, v)])) {
                Decision::Respond(r) => {
                    assert_eq!(r.status, 400);
                    assert!(String::from_utf8(r.body).unwrap().contains(h));
                }
                other => panic!("expected 400 for {h}: {v}, got {other:?}"),
            }
        }
    }

    #[test]
    fn collect_log_false_writes_nothing_and_payload_false_drops_bodies() {
        MockHost::reset();
        let mut f = Logging::configure(json!({})).unwrap();
        f.on_request_headers(&req(&[("cf-aig-collect-log", "false")]));
        f.on_done(&Summary::default());
        assert!(MockHost::with(|m| m.log_entries.is_empty()));
        let mut f = Logging::configure(json!({"collect_payload": false})).unwrap();
        f.on_request_headers(&req(&[]));
        f.on_request_body(b"secret prompt");
        f.on_done(&Summary {
            request_id: "x".into(),
            ..Summary::default()
        });
        let e = MockHost::with(|m| m.log_entries[0].clone());
        assert!(e.get("request_body").is_none());
    }

    #[test]
    fn config_errors_name_the_key_and_defaults_hold() {
        let err = |v| Logging::configure(v).unwrap_err();
        let misspelt = err(json!({"collect_log": false}));
        assert!(misspelt.contains("`collect_log`"), "{misspelt}");
        let typed = err(json!({"collect_payload": "yes"}));
        assert!(typed.starts_with("collect_payload:"), "{typed}");
        let typed = err(json!({"collect_logs": 1}));
        assert!(typed.starts_with("collect_logs:"), "{typed}");
        let negative = err(json!({"max_payload_bytes": -1}));
        assert!(negative.starts_with("max_payload_bytes:"), "{negative}");
        assert!(err(json!("x")).contains("expected a table"));

        let f = Logging::configure(json!({})).unwrap();
        assert!(f.collect && f.payload);
        assert_eq!(f.max_payload, 65_536);
        let f = Logging::configure(
            json!({"collect_logs": false, "collect_payload": false, "max_payload_bytes": 0}),
        )
        .unwrap();
        assert!(!f.collect && !f.payload);
        assert_eq!(f.max_payload, 0);
    }

    #[test]
    fn custom_cost() {
        assert_eq!(
            parse_cost(r#"{"total_cost":0.5}"#).unwrap(),
            CustomCost::Total(0.5)
        );
        assert!(parse_cost("nope").is_err());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// A metadata value the header accepts.
        fn flat_value() -> impl Strategy<Value = Value> {
            prop_oneof![
                any::<String>().prop_map(Value::String),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                any::<f64>()
                    .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
                    .prop_map(Value::from),
                any::<bool>().prop_map(Value::Bool),
            ]
        }

        /// A value the header refuses inside the object.
        fn nested_value() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(Value::Null),
                prop::collection::vec(flat_value(), 0..3).prop_map(Value::Array),
                prop::collection::btree_map(any::<String>(), flat_value(), 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        }

        /// The 400 for `header` when the filter sees `value`.
        fn rejection(header: &str, value: &str) -> Option<String> {
            let mut f = Logging::configure(json!({})).ok()?;
            match f.on_request_headers(&req(&[(header, value)])) {
                Decision::Respond(r) if r.status == 400 => {
                    Some(String::from_utf8_lossy(&r.body).into_owned())
                }
                _ => None,
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn arbitrary_header_values_never_panic(text in any::<String>()) {
                let _ = parse_metadata(&text);
                let _ = parse_cost(&text);
                for h in ["cf-aig-metadata", "cf-aig-custom-cost", "cf-aig-collect-log"] {
                    if let Some(body) = rejection(h, &text) {
                        prop_assert!(body.contains(h), "{}", body);
                    }
                }
            }

            #[test]
            fn accepted_metadata_round_trips(
                map in prop::collection::btree_map(any::<String>(), flat_value(), 0..=5),
                pretty in any::<bool>(),
            ) {
                let object: Map<String, Value> = map.into_iter().collect();
                let text = if pretty {
                    serde_json::to_string_pretty(&object).unwrap()
                } else {
                    serde_json::to_string(&object).unwrap()
                };
                prop_assert_eq!(parse_metadata(&text), Ok(object));
                prop_assert_eq!(rejection("cf-aig-metadata", &text), None);
            }

            #[test]
            fn nested_or_too_many_values_are_400_naming_the_header(
                map in prop::collection::btree_map(any::<String>(), flat_value(), 0..=5),
                key in any::<String>(),
                bad in nested_value(),
                extra in prop::collection::btree_map("[a-z]{8}", flat_value(), 6..9),
            ) {
                let mut nested: Map<String, Value> = map.into_iter().collect();
                nested.insert(key, bad);
                let too_many: Map<String, Value> = extra.into_iter().collect();
                for object in [nested, too_many] {
                    let text = Value::Object(object).to_string();
                    prop_assert!(parse_metadata(&text).is_err());
                    let body = rejection("cf-aig-metadata", &text);
                    prop_assert!(body.is_some_and(|b| b.contains("cf-aig-metadata")));
                }
            }

            #[test]
            fn non_objects_are_400_naming_the_header(value in prop_oneof![
                flat_value(), nested_value().prop_filter("not an object", |v| !v.is_object()),
            ]) {
                let text = value.to_string();
                prop_assert!(parse_metadata(&text).is_err());
                let body = rejection("cf-aig-metadata", &text);
                prop_assert!(body.is_some_and(|b| b.contains("cf-aig-metadata")));
            }

            #[test]
            fn costs_round_trip_and_negatives_are_400(
                a in 0f64..1e12,
                b in 0f64..1e12,
                negative in -1e12f64..-1e-12,
                total in any::<bool>(),
            ) {
                let (text, expected) = if total {
                    (json!({"total_cost": a}).to_string(), CustomCost::Total(a))
                } else {
                    (
                        json!({"per_token_in": a, "per_token_out": b}).to_string(),
                        CustomCost::PerToken { input: a, output: b },
                    )
                };
                prop_assert_eq!(parse_cost(&text), Ok(expected));
                let bad = json!({"total_cost": negative}).to_string();
                prop_assert!(parse_cost(&bad).is_err());
                let body = rejection("cf-aig-custom-cost", &bad);
                prop_assert!(body.is_some_and(|b| b.contains("cf-aig-custom-cost")));
            }
        }
    }
}
