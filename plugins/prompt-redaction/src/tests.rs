use super::*;
use aigw_plugin_sdk::Headers;
use aigw_plugin_sdk::testing::MockHost;
use serde_json::{Value, json};

fn filter(config: Value) -> PromptRedaction {
    MockHost::reset();
    PromptRedaction::configure(config).unwrap()
}

fn config_error(config: Value) -> String {
    PromptRedaction::configure(config).unwrap_err()
}

/// The replaced body, parsed.
fn replaced(d: BodyDecision) -> Value {
    match d {
        BodyDecision::Replace(b) => serde_json::from_slice(&b).unwrap(),
        other => panic!("expected a replaced body, got {other:?}"),
    }
}

fn annotations() -> Vec<(String, String)> {
    aigw_plugin_sdk::host::annotations()
}

fn counter(name: &str) -> u64 {
    MockHost::with(|m| m.counters.get(name).copied().unwrap_or(0))
}

fn response(content_type: &str) -> Response {
    Response {
        status: 200,
        headers: Headers::from_pairs([("content-type", content_type), ("content-length", "123")]),
        attempt: 1,
        ..Response::default()
    }
}

/// Runs `chunks` through the response-body hook and the end of stream,
/// applying each decision the way the host does.
fn respond(f: &mut PromptRedaction, chunks: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    let last = chunks.len();
    for (i, c) in chunks.iter().copied().chain([&b""[..]]).enumerate() {
        match f.on_response_body(c, i == last) {
            ChunkDecision::Continue => out.extend_from_slice(c),
            ChunkDecision::Replace(b) => out.extend(b),
            ChunkDecision::Hold => {}
        }
    }
    out
}

#[test]
fn masks_openai_string_and_part_contents() {
    let mut f = filter(json!({}));
    let body = json!({"model": "gpt-4o", "messages": [
        {"role": "system", "content": "Reply to ada@example.com only."},
        {"role": "user", "content": [
            {"type": "text", "text": "My card is 4111 1111 1111 1111 and my mail ada@example.com"},
            {"type": "image_url", "image_url": {"url": "https://example.com/ada@example.com.png"}}]}]});
    let out = replaced(f.on_request_body(body.to_string().as_bytes()));
    assert_eq!(out["messages"][0]["content"], "Reply to [EMAIL_1] only.");
    assert_eq!(
        out["messages"][1]["content"][0]["text"],
        "My card is [CREDIT_CARD_1] and my mail [EMAIL_1]"
    );
    // Non-text parts are left alone.
    assert_eq!(
        out["messages"][1]["content"][1],
        body["messages"][1]["content"][1]
    );
    assert_eq!(out["model"], "gpt-4o");
    assert_eq!(
        annotations(),
        vec![
            ("redacted_email".to_string(), "2".to_string()),
            ("redacted_credit_card".to_string(), "1".to_string())
        ]
    );
    assert_eq!(counter("redactions"), 3);
}

#[test]
fn masks_anthropic_system_and_blocks() {
    let mut f = filter(json!({}));
    let body = json!({"model": "claude-sonnet-4", "max_tokens": 100,
        "system": [{"type": "text", "text": "Server 10.0.0.1, key sk-ant-api03-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe"}],
        "messages": [
            {"role": "user", "content": "Call +44 20 7946 0958"},
            {"role": "user", "content": [
                {"type": "text", "text": "IBAN DE89 3704 0044 0532 0130 00"},
                {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "bob@example.org"}]}]}]});
    let out = replaced(f.on_request_body(body.to_string().as_bytes()));
    assert_eq!(
        out["system"][0]["text"],
        "Server [IP_ADDRESS_1], key [SECRET_1]"
    );
    assert_eq!(out["messages"][0]["content"], "Call [PHONE_1]");
    assert_eq!(out["messages"][1]["content"][0]["text"], "IBAN [IBAN_1]");
    assert_eq!(
        out["messages"][1]["content"][1]["content"][0]["text"],
        "[EMAIL_1]"
    );
    assert_eq!(out["max_tokens"], 100);
}

#[test]
fn masks_legacy_prompts() {
    let mut f = filter(json!({}));
    let out =
        replaced(f.on_request_body(br#"{"model":"x","prompt":["a@b.io","c@d.io","a@b.io"]}"#));
    assert_eq!(
        out["prompt"],
        json!(["[EMAIL_1]", "[EMAIL_2]", "[EMAIL_1]"])
    );
}

#[test]
fn numbering_is_stable_and_cache_friendly() {
    let body = json!({"model": "m", "messages": [
        {"role": "user", "content": "x@a.io, y@a.io, x@a.io, 192.168.0.1, z@a.io, y@a.io"}]})
    .to_string();
    let first = replaced(filter(json!({})).on_request_body(body.as_bytes()));
    assert_eq!(
        first["messages"][0]["content"],
        "[EMAIL_1], [EMAIL_2], [EMAIL_1], [IP_ADDRESS_1], [EMAIL_3], [EMAIL_2]"
    );
    // Another instance, another request: the same bytes out.
    let again = filter(json!({})).on_request_body(body.as_bytes());
    assert_eq!(again, BodyDecision::Replace(first.to_string().into_bytes()));
    // Different values in the same places give the same redacted body.
    let other = body.replace("x@a.io", "q@b.io");
    assert_eq!(
        filter(json!({})).on_request_body(other.as_bytes()),
        BodyDecision::Replace(first.to_string().into_bytes())
    );
}

#[test]
fn placeholders_already_in_the_body_are_not_reused() {
    let mut f = filter(json!({"mode": "restore"}));
    let body = json!({"model": "m", "messages": [
        {"role": "assistant", "content": "I wrote to [EMAIL_1] yesterday."},
        {"role": "user", "content": "Now write to new@example.com"}]});
    let out = replaced(f.on_request_body(body.to_string().as_bytes()));
    assert_eq!(
        out["messages"][0]["content"],
        "I wrote to [EMAIL_1] yesterday."
    );
    assert_eq!(out["messages"][1]["content"], "Now write to [EMAIL_2]");
    f.on_response_headers(&response("application/json"));
    let restored = respond(&mut f, &[br#"{"text":"[EMAIL_1] and [EMAIL_2]"}"#]);
    assert_eq!(restored, br#"{"text":"[EMAIL_1] and new@example.com"}"#);
}

#[test]
fn custom_patterns_get_their_own_labels() {
    let mut f = filter(json!({"entities": ["email"],
        "custom": [{"name": "employee_id", "pattern": "EMP-[0-9]{6}"}]}));
    let out = replaced(f.on_request_body(
        br#"{"messages":[{"role":"user","content":"EMP-004211 and EMP-000001 (a@b.io, 4111111111111111)"}]}"#,
    ));
    assert_eq!(
        out["messages"][0]["content"],
        "[CUSTOM_EMPLOYEE_ID_1] and [CUSTOM_EMPLOYEE_ID_2] ([EMAIL_1], 4111111111111111)"
    );
    assert!(annotations().contains(&("redacted_employee_id".to_string(), "2".to_string())));
}

#[test]
fn block_mode_names_types_never_values() {
    let mut f = filter(json!({"mode": "block"}));
    let body = br#"{"messages":[{"role":"user","content":"card 4111 1111 1111 1111, mail ada@example.com"}]}"#;
    let BodyDecision::Respond(r) = f.on_request_body(body) else {
        panic!("expected a 400");
    };
    assert_eq!(r.status, 400);
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        v["error"]["message"],
        "Request content blocked due to DLP policy violations (prompt-redaction: contains email, credit_card)"
    );
    assert_eq!(v["error"]["type"], "prompt_blocked");
    let text = String::from_utf8(r.body).unwrap();
    assert!(!text.contains("ada@") && !text.contains("4111"), "{text}");
    assert_eq!(
        annotations(),
        vec![(
            "redaction_blocked".to_string(),
            "email,credit_card".to_string()
        )]
    );
    assert_eq!(counter("blocked"), 1);
    // A clean request goes through untouched.
    let clean = br#"{"messages":[{"role":"user","content":"What is 2 + 2?"}]}"#;
    assert_eq!(f.on_request_body(clean), BodyDecision::Continue);
}

#[test]
fn clean_and_non_chat_bodies_pass_unchanged() {
    let mut f = filter(json!({}));
    assert_eq!(
        f.on_request_body(br#"{"model":"m","messages":[{"role":"user","content":"Summarise RFC 9110 in 3 lines."}]}"#),
        BodyDecision::Continue
    );
    assert_eq!(
        f.on_request_body(b"not json ada@example.com"),
        BodyDecision::Continue
    );
    assert_eq!(
        f.on_request_body(b"[\"ada@example.com\"]"),
        BodyDecision::Continue
    );
    assert!(annotations().is_empty());
    assert_eq!(counter("redactions"), 0);
}

#[test]
fn bodies_over_max_body_bytes_are_refused() {
    let mut f = filter(json!({"max_body_bytes": 64}));
    let body = format!(
        r#"{{"messages":[{{"role":"user","content":"{}"}}]}}"#,
        "a".repeat(100)
    );
    let BodyDecision::Respond(r) = f.on_request_body(body.as_bytes()) else {
        panic!("expected a 413");
    };
    assert_eq!(r.status, 413);
    assert!(
        String::from_utf8(r.body)
            .unwrap()
            .contains("max_body_bytes")
    );
}

#[test]
fn config_errors_name_the_key() {
    assert!(config_error(json!({"mode": "scrub"})).starts_with("mode:"));
    assert!(config_error(json!({"entities": ["email", "passport"]})).starts_with("entities[1]:"));
    assert!(config_error(json!({"max_body_bytes": "1MB"})).starts_with("max_body_bytes:"));
    assert!(config_error(json!({"colour": 1})).contains("unknown key 'colour'"));
    let e = config_error(
        json!({"custom": [{"name": "ok", "pattern": "A+"}, {"name": "bad", "pattern": "(unclosed"}]}),
    );
    assert!(e.starts_with("custom[1].pattern:"), "{e}");
    let e = config_error(json!({"custom": [{"name": "any", "pattern": ".*"}]}));
    assert!(e.starts_with("custom[0].pattern:"), "{e}");
}

#[test]
fn configure_reuses_the_compiled_detector() {
    let a = filter(json!({"custom": [{"name": "x", "pattern": "X-[0-9]+"}]}));
    let b = filter(json!({"custom": [{"name": "x", "pattern": "X-[0-9]+"}]}));
    assert!(Rc::ptr_eq(&a.detector, &b.detector));
    let c = filter(json!({"custom": [{"name": "x", "pattern": "Y-[0-9]+"}]}));
    assert!(!Rc::ptr_eq(&a.detector, &c.detector));
}

#[test]
fn mask_mode_leaves_responses_alone() {
    let mut f = filter(json!({}));
    replaced(f.on_request_body(br#"{"messages":[{"role":"user","content":"ada@example.com"}]}"#));
    assert_eq!(
        f.on_response_headers(&response("application/json")),
        ResponseDecision::proceed()
    );
    assert_eq!(
        f.on_response_body(b"{\"a\":\"[EMAIL_1]\"}", true),
        ChunkDecision::Continue
    );
}

fn restoring() -> PromptRedaction {
    let mut f = filter(json!({"mode": "restore"}));
    let out = replaced(f.on_request_body(
        br#"{"model":"gpt-4o","messages":[{"role":"user","content":"Mail ada@example.com, call +1 415 555 2671"}]}"#,
    ));
    assert_eq!(
        out["messages"][0]["content"],
        "Mail [EMAIL_1], call [PHONE_1]"
    );
    f
}

#[test]
fn restore_mode_restores_a_whole_json_body_split_anywhere() {
    let body = json!({"id": "chatcmpl-1", "object": "chat.completion", "choices": [{"index": 0,
        "message": {"role": "assistant", "content": "I will mail [EMAIL_1] and call [PHONE_1]. [EMAIL_9] is unknown."},
        "finish_reason": "stop"}]})
    .to_string();
    let want = body
        .replace("[EMAIL_1]", "ada@example.com")
        .replace("[PHONE_1]", "+1 415 555 2671");
    for cut in 0..=body.len() {
        let mut f = restoring();
        let ResponseDecision::Continue(edits) =
            f.on_response_headers(&response("application/json"))
        else {
            panic!("expected continue");
        };
        assert_eq!(edits.remove, vec!["content-length".to_string()]);
        let out = respond(&mut f, &[&body.as_bytes()[..cut], &body.as_bytes()[cut..]]);
        assert_eq!(String::from_utf8(out).unwrap(), want, "split at {cut}");
    }
    assert_eq!(counter("restored"), 2);
}

#[test]
fn restore_mode_restores_an_sse_stream_split_anywhere() {
    let ev = |content: &str, finish: Value| {
        let v = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]});
        format!("data: {v}\n\n")
    };
    let stream = ev("Mail ", Value::Null)
        + &ev("[EM", Value::Null)
        + &ev("AIL", Value::Null)
        + &ev("_1", Value::Null)
        + &ev("] or [PHONE_1", Value::Null)
        + &ev("]", json!("stop"))
        + "data: [DONE]\n\n";
    let text_of = |out: &[u8]| -> String {
        String::from_utf8(out.to_vec())
            .unwrap()
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| {
                let v: Value = serde_json::from_str(d).unwrap();
                v["choices"][0]["delta"]["content"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect()
    };
    let bytes = stream.as_bytes();
    let mut whole = None;
    for cut in 0..=bytes.len() {
        let mut f = restoring();
        f.on_response_headers(&response("text/event-stream; charset=utf-8"));
        let out = respond(&mut f, &[&bytes[..cut], &bytes[cut..]]);
        assert_eq!(
            text_of(&out),
            "Mail ada@example.com or +1 415 555 2671",
            "split at {cut}"
        );
        assert!(out.ends_with(b"data: [DONE]\n\n"));
        match &whole {
            None => whole = Some(out),
            Some(w) => assert_eq!(&out, w, "split at {cut}"),
        }
    }
}

#[test]
fn restore_mode_holds_chunks_that_are_only_a_placeholder_prefix() {
    let mut f = restoring();
    f.on_response_headers(&response("application/json"));
    assert_eq!(
        f.on_response_body(b"{\"a\":\"x", false),
        ChunkDecision::Continue
    );
    assert_eq!(f.on_response_body(b"[EMA", false), ChunkDecision::Hold);
    assert_eq!(
        f.on_response_body(b"IL_1]\"}", false),
        ChunkDecision::Replace(b"ada@example.com\"}".to_vec())
    );
    assert_eq!(f.on_response_body(b"", true), ChunkDecision::Continue);
}

#[test]
fn restore_mode_skips_binary_and_encoded_responses() {
    let mut f = restoring();
    assert_eq!(
        f.on_response_headers(&response("image/png")),
        ResponseDecision::proceed()
    );
    assert_eq!(
        f.on_response_body(b"[EMAIL_1]", true),
        ChunkDecision::Continue
    );
    let mut gz = response("application/json");
    gz.headers = Headers::from_pairs([
        ("content-type", "application/json"),
        ("content-encoding", "gzip"),
    ]);
    assert_eq!(f.on_response_headers(&gz), ResponseDecision::proceed());
    assert_eq!(
        f.on_response_body(b"[EMAIL_1]", true),
        ChunkDecision::Continue
    );
    // A later attempt with a JSON body is restored again.
    f.on_response_headers(&response("application/json"));
    assert_eq!(
        f.on_response_body(b"[EMAIL_1]", true),
        ChunkDecision::Replace(b"ada@example.com".to_vec())
    );
}

/// A realistic 2 KB support conversation.
fn typical_chat() -> String {
    let filler = "Our deployment runs on Kubernetes 1.29 with 3 replicas; p95 latency is 240 ms \
                  and we used 15234 prompt tokens yesterday. The build on 2024-05-02 failed at step 4.";
    json!({
        "model": "gpt-4o-mini",
        "temperature": 0.2,
        "stream": true,
        "messages": [
            {"role": "system", "content": format!("You are a support assistant. {filler} {filler}")},
            {"role": "user", "content": format!(
                "Hi, I'm Ada Lovelace (ada.lovelace@example.com, +44 20 7946 0958). {filler} \
                 Please refund card 4111 1111 1111 1111 to IBAN GB82 WEST 1234 5698 7654 32. \
                 The API key we rotated is sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7cDe0fGh3iJk6l \
                 and the server is 203.0.113.42. {filler}")},
            {"role": "assistant", "content": format!("Thanks Ada, I see the account. {filler} {filler}")},
            {"role": "user", "content": format!(
                "Also my colleague bob@example.org asked about order 7781-2231. {filler} {filler}")}
        ]
    })
    .to_string()
}

#[test]
fn typical_2kb_chat_is_redacted() {
    let body = typical_chat();
    assert!((1800..=2600).contains(&body.len()), "{}", body.len());
    let mut f = filter(json!({}));
    let started = std::time::Instant::now();
    let out = replaced(f.on_request_body(body.as_bytes()));
    let took = started.elapsed();
    let text = out.to_string();
    for secret in [
        "ada.lovelace@example.com",
        "+44 20 7946 0958",
        "4111 1111 1111 1111",
        "GB82 WEST",
        "sk-proj-",
        "203.0.113.42",
        "bob@example.org",
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    for kept in [
        "Kubernetes 1.29",
        "15234 prompt tokens",
        "2024-05-02",
        "order 7781-2231",
        "Ada Lovelace",
    ] {
        assert!(text.contains(kept), "{kept} was redacted: {text}");
    }
    assert_eq!(
        annotations(),
        [
            ("redacted_email", "2"),
            ("redacted_phone", "1"),
            ("redacted_credit_card", "1"),
            ("redacted_iban", "1"),
            ("redacted_ip_address", "1"),
            ("redacted_secret", "1"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
    );
    assert_eq!(out["stream"], true);
    assert!(took.as_millis() < 200, "{took:?}");
}

fn dlp_header_of(d: &ResponseDecision) -> Value {
    let ResponseDecision::Continue(edits) = d else {
        panic!("expected continue, got {d:?}")
    };
    let h = edits
        .set
        .iter()
        .find(|h| h.name == DLP_HEADER)
        .unwrap_or_else(|| panic!("no {DLP_HEADER} in {edits:?}"));
    serde_json::from_str(&h.value).unwrap()
}

#[test]
fn flag_mode_changes_nothing_and_reports_the_request_findings() {
    let mut f = filter(json!({"mode": "flag"}));
    let body =
        json!({"model": "m", "messages": [{"role": "user", "content": "mail ada@example.com"}]});
    let raw = body.to_string().into_bytes();
    assert_eq!(f.on_request_body(&raw), BodyDecision::Continue);
    assert!(annotations().contains(&("dlp_request".into(), "email".into())));
    assert_eq!(counter("flagged"), 1);
    let header = dlp_header_of(&f.on_response_headers(&response("application/json")));
    assert_eq!(header["action"], "FLAG");
    assert_eq!(header["findings"][0]["profile"]["entry_ids"][0], "email");
    assert_eq!(header["findings"][0]["check"], "REQUEST");
}

#[test]
fn block_mode_names_the_findings_in_the_dlp_header() {
    let mut f = filter(json!({"mode": "block"}));
    let raw = json!({"messages": [{"role": "user", "content": "card 4111 1111 1111 1111"}]})
        .to_string()
        .into_bytes();
    let BodyDecision::Respond(r) = f.on_request_body(&raw) else {
        panic!("expected a refusal")
    };
    let h = r.headers.iter().find(|h| h.name == DLP_HEADER).unwrap();
    let v: Value = serde_json::from_str(&h.value).unwrap();
    assert_eq!(v["action"], "BLOCK");
    assert_eq!(v["findings"][0]["profile"]["entry_ids"][0], "credit_card");
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["error"]["code"], 2029);
}

#[test]
fn answers_with_findings_are_flagged_or_refused_whole() {
    let answer = json!({"choices": [{"index": 0, "message": {"role": "assistant",
        "content": "Write to bob@example.org"}}]})
    .to_string()
    .into_bytes();
    // Flag: passed unchanged, reported in the held head.
    let mut f = filter(json!({"response": "flag"}));
    MockHost::with(|m| m.head_held = true);
    f.on_response_headers(&response("application/json"));
    assert_eq!(respond(&mut f, &[&answer]), answer);
    let edits = MockHost::with(|m| m.response_head_edits.clone());
    let v: Value = serde_json::from_str(&edits[0].set[0].value).unwrap();
    assert_eq!(v["findings"][0]["check"], "RESPONSE");
    assert_eq!(v["action"], "FLAG");
    assert_eq!(counter("response_flagged"), 1);
    // Block: a 400 with code 2030 instead of the answer.
    let mut f = filter(json!({"response": "block"}));
    MockHost::with(|m| m.head_held = true);
    f.on_response_headers(&response("application/json"));
    let out: Value =
        serde_json::from_slice(&respond(&mut f, &[&answer[..10], &answer[10..]])).unwrap();
    assert_eq!(out["error"]["code"], 2030, "{out}");
    assert_eq!(MockHost::with(|m| m.response_status), Some(400));
    assert!(annotations().contains(&("dlp_response_action".into(), "block".into())));
    // An answer without findings passes byte for byte.
    let mut f = filter(json!({"response": "block"}));
    f.on_response_headers(&response("application/json"));
    let clean = br#"{"choices":[{"index":0,"message":{"content":"nothing here"}}]}"#;
    assert_eq!(respond(&mut f, &[clean]), clean);
}

#[test]
fn a_stream_with_a_finding_ends_with_an_error_event() {
    let mut f = filter(json!({"response": "block", "window_chars": 50}));
    f.on_response_headers(&response("text/event-stream"));
    let event = |t: &str| {
        format!(
            "data: {}\n\n",
            json!({"choices": [{"index": 0, "delta": {"content": t}}]})
        )
    };
    let words: Vec<String> = (0..20).map(|i| event(&format!("word{i:02} "))).collect();
    let mut chunks: Vec<String> = words.clone();
    chunks.push(event("mail me at eve@example.net "));
    chunks.extend((20..40).map(|i| event(&format!("word{i:02} "))));
    chunks.push("data: [DONE]\n\n".into());
    let refs: Vec<&[u8]> = chunks.iter().map(|c| c.as_bytes()).collect();
    let out = String::from_utf8(respond(&mut f, &refs)).unwrap();
    assert!(out.contains("word00"), "{out}");
    assert!(!out.contains("eve@example.net"), "{out}");
    assert!(!out.contains("word30"), "{out}");
    assert!(out.contains("\"code\":2030"), "{out}");
    // Flag only: every byte passes, the finding is logged.
    let mut f = filter(json!({"response": "flag"}));
    f.on_response_headers(&response("text/event-stream"));
    let out = respond(&mut f, &refs);
    assert_eq!(out, chunks.concat().into_bytes());
    assert!(annotations().contains(&("dlp_response".into(), "email".into())));
}
