use super::*;
use aigw_plugin_sdk::Headers;
use aigw_plugin_sdk::body::EXACT_FLOAT_LIMIT;
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
fn config_errors_name_the_key_and_defaults_hold() {
    let err = |v| Cache::configure(v).unwrap_err();
    let misspelt = err(serde_json::json!({"ttl_s": 5, "max_entry_byte": 10}));
    assert!(misspelt.contains("`max_entry_byte`"), "{misspelt}");
    let typed = err(serde_json::json!({"ttl_s": "long"}));
    assert!(typed.starts_with("ttl_s:"), "{typed}");
    let negative = err(serde_json::json!({"ttl_s": -1}));
    assert!(negative.starts_with("ttl_s:"), "{negative}");
    let typed = err(serde_json::json!({"max_entry_bytes": 1.5}));
    assert!(typed.starts_with("max_entry_bytes:"), "{typed}");
    let zero = err(serde_json::json!({"max_entry_bytes": 0}));
    assert!(zero.starts_with("max_entry_bytes:"), "{zero}");
    assert!(err(serde_json::json!("x")).contains("expected a table"));

    let f = Cache::configure(serde_json::json!({})).unwrap();
    assert_eq!((f.ttl_s, f.max_entry_bytes), (3600, 4 * 1024 * 1024));
    let f = Cache::configure(serde_json::json!({"ttl_s": 0, "max_entry_bytes": 1})).unwrap();
    assert_eq!((f.ttl_s, f.max_entry_bytes), (0, 1));
}

#[test]
fn canonical_json_ignores_order_and_space() {
    assert_eq!(
        canonical_body(br#"{"b":1, "a":[1, 2]}"#),
        canonical_body(br#"{"a":[1,2],"b":1}"#)
    );
}

#[test]
fn different_numbers_never_share_a_key() {
    // Found by `different_integers_give_different_keys`: integers past
    // u64 were read as the same float.
    assert_ne!(
        canonical_body(br#"{"seed":100000000000000000000}"#),
        canonical_body(br#"{"seed":100000000000000000001}"#)
    );
    // Found by `key_order_and_whitespace_never_change_the_key`: without
    // serde_json's float_roundtrip, this float was read one bit off
    // (-3.8277172205033855e-21), so two floats could share a key.
    assert_eq!(
        canonical_body(b"[-3.827717220503386e-21]"),
        b"[-3.827717220503386e-21]"
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

mod properties {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    /// Any JSON value, a few levels deep.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            // Larger floats make the body fall back to its raw bytes
            // (`big_numbers_keep_the_body_as_it_is`).
            any::<f64>()
                .prop_filter("finite, below 2^53", |f| f.abs() < EXACT_FLOAT_LIMIT)
                .prop_map(Value::from),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Small deterministic choices for one rendering.
    struct Choices(u64);

    impl Choices {
        fn next(&mut self, n: u64) -> u64 {
            // xorshift64
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }

        fn space(&mut self, out: &mut String) {
            for _ in 0..self.next(3) {
                out.push([' ', '\n', '\t', '\r'][self.next(4) as usize]);
            }
        }
    }

    /// `v` as JSON text with keys in a shuffled order, whitespace between
    /// tokens, and some characters written as `\uXXXX` escapes.
    fn render(v: &Value, c: &mut Choices, out: &mut String) {
        c.space(out);
        match v {
            Value::String(s) => render_str(s, c, out),
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    render(item, c, out);
                }
                c.space(out);
                out.push(']');
            }
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                for i in (1..entries.len()).rev() {
                    entries.swap(i, c.next(i as u64 + 1) as usize);
                }
                out.push('{');
                for (i, (k, item)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    c.space(out);
                    render_str(k, c, out);
                    c.space(out);
                    out.push(':');
                    render(item, c, out);
                }
                c.space(out);
                out.push('}');
            }
            other => out.push_str(&other.to_string()),
        }
        c.space(out);
    }

    fn render_str(s: &str, c: &mut Choices, out: &mut String) {
        out.push('"');
        for ch in s.chars() {
            if c.next(4) == 0 {
                let mut units = [0u16; 2];
                for u in ch.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            } else {
                let one = serde_json::to_string(&ch.to_string()).unwrap();
                out.push_str(&one[1..one.len() - 1]);
            }
        }
        out.push('"');
    }

    fn rendered(v: &Value, seed: u64) -> String {
        let mut out = String::new();
        render(v, &mut Choices(seed | 1), &mut out);
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = canonical_body(&body);
            let _ = model_of(&body);
            let _ = decode_entry(&body);
        }

        #[test]
        fn key_order_and_whitespace_never_change_the_key(
            v in json_value(), seed_a in any::<u64>(), seed_b in any::<u64>(),
        ) {
            let a = rendered(&v, seed_a);
            let b = rendered(&v, seed_b);
            prop_assert_eq!(canonical_body(a.as_bytes()), canonical_body(b.as_bytes()));
            prop_assert_eq!(canonical_body(a.as_bytes()), v.to_string().into_bytes());
        }

        #[test]
        fn canonical_text_holds_the_same_value(v in json_value(), seed in any::<u64>()) {
            // So two different values never share canonical text (a key).
            let canonical = canonical_body(rendered(&v, seed).as_bytes());
            let back: Value = serde_json::from_slice(&canonical).unwrap();
            prop_assert_eq!(back, v);
        }

        #[test]
        fn different_integers_give_different_keys(
            sign in prop_oneof![Just(""), Just("-")],
            digits in "[1-9][0-9]{0,25}",
            last_a in 0u8..10,
            last_b in 0u8..10,
        ) {
            // Integers that differ only in their last digit, of any length.
            prop_assume!(last_a != last_b);
            let a = format!("{sign}{digits}{last_a}");
            let b = format!("{sign}{digits}{last_b}");
            let body = |n: &str| format!("{{\"model\":\"m\",\"seed\":{n}}}");
            prop_assert_ne!(
                canonical_body(body(&a).as_bytes()),
                canonical_body(body(&b).as_bytes())
            );
        }

        #[test]
        fn big_numbers_keep_the_body_as_it_is(
            v in json_value(), big in EXACT_FLOAT_LIMIT..f64::MAX, seed in any::<u64>(),
        ) {
            let body = rendered(&serde_json::json!({"x": v, "big": big}), seed);
            prop_assert_eq!(canonical_body(body.as_bytes()), body.into_bytes());
        }

        #[test]
        fn entries_round_trip(
            content_type in any::<String>(),
            body in prop::collection::vec(any::<u8>(), 0..256),
        ) {
            let entry = encode_entry(&content_type, &body);
            prop_assert_eq!(decode_entry(&entry), Some((content_type, body.as_slice())));
        }
    }
}
