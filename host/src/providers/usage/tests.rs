use super::*;

#[test]
fn openai_json_usage() {
    let mut r = UsageReader::for_content_type(Some("application/json"));
    r.feed(br#"{"id":"x","usage":{"prompt_tokens":12,"#);
    r.feed(br#""completion_tokens":7}}"#);
    assert_eq!(
        r.finish(),
        Usage {
            tokens_in: Some(12),
            tokens_out: Some(7),
            ..Usage::default()
        }
    );
}

#[test]
fn cached_and_reasoning_tokens() {
    let mut r = UsageReader::for_content_type(Some("application/json"));
    r.feed(br#"{"usage":{"prompt_tokens":100,"completion_tokens":40,
        "prompt_tokens_details":{"cached_tokens":64},"completion_tokens_details":{"reasoning_tokens":30}}}"#);
    let u = r.finish();
    assert_eq!((u.tokens_cached, u.tokens_reasoning), (Some(64), Some(30)));
    let mut r = UsageReader::for_content_type(Some("application/json"));
    r.feed(br#"{"usage":{"input_tokens":10,"output_tokens":2,"cache_read_input_tokens":8}}"#);
    let u = r.finish();
    assert_eq!((u.tokens_in, u.tokens_cached), (Some(18), Some(8)));
}

/// Anthropic bills cache reads and writes apart from `input_tokens`: all count as input.
#[test]
fn anthropic_prompt_cache_tokens_are_input() {
    let mut r = UsageReader::for_content_type(Some("application/json"));
    r.feed(
        br#"{"type":"message","usage":{"input_tokens":21,"cache_creation_input_tokens":1000,
        "cache_read_input_tokens":3000,"output_tokens":50}}"#,
    );
    assert_eq!(
        r.finish(),
        Usage {
            tokens_in: Some(4021),
            tokens_out: Some(50),
            tokens_cached: Some(3000),
            tokens_reasoning: None,
            tokens_cache_write: Some(1000),
            tokens_image_in: None,
            tokens_audio: None,
        }
    );
}

/// The Responses API: JSON and the stream's `response.completed` event (earlier events carry
/// `usage: null`), with cached and reasoning tokens.
#[test]
fn responses_api_usage_in_json_and_stream() {
    let usage = r#"{"input_tokens":328,"input_tokens_details":{"cached_tokens":256},
        "output_tokens":52,"output_tokens_details":{"reasoning_tokens":32},"total_tokens":380}"#;
    let expected = Usage {
        tokens_in: Some(328),
        tokens_out: Some(52),
        tokens_cached: Some(256),
        tokens_reasoning: Some(32),
        tokens_cache_write: None,
        tokens_image_in: None,
        tokens_audio: None,
    };
    let mut r = UsageReader::for_content_type(Some("application/json"));
    r.feed(
        format!(r#"{{"id":"resp_1","object":"response","status":"completed","usage":{usage}}}"#)
            .as_bytes(),
    );
    assert_eq!(r.finish(), expected);
    let mut r = UsageReader::for_content_type(Some("text/event-stream"));
    r.feed(b"event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"usage\":null}}\n\n");
    r.feed(b"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n");
    let completed = format!(
        "event: response.completed\ndata: {{\"type\":\"response.completed\",\"response\":{{\"id\":\"resp_1\",\"usage\":{}}}}}\n\n",
        usage.replace('\n', "")
    );
    let (a, b) = completed.as_bytes().split_at(70);
    r.feed(a);
    r.feed(b);
    assert_eq!(r.finish(), expected);
}

/// Embeddings report only input tokens.
#[test]
fn embeddings_usage_has_input_only() {
    let mut r = UsageReader::for_content_type(Some("application/json"));
    r.feed(
        br#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1]}],
        "model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}"#,
    );
    let u = r.finish();
    assert_eq!((u.tokens_in, u.tokens_out), (Some(8), None));
}

/// Gemini: `usageMetadata` in JSON and in `alt=sse` chunks (the last one counts); thinking
/// tokens are output.
#[test]
fn gemini_usage_metadata() {
    let meta = r#"{"promptTokenCount":120,"candidatesTokenCount":40,"thoughtsTokenCount":25,
        "cachedContentTokenCount":100,"totalTokenCount":185}"#;
    let expected = Usage {
        tokens_in: Some(120),
        tokens_out: Some(65),
        tokens_cached: Some(100),
        tokens_reasoning: Some(25),
        tokens_cache_write: None,
        tokens_image_in: None,
        tokens_audio: None,
    };
    let mut r = UsageReader::for_content_type(Some("application/json; charset=UTF-8"));
    r.feed(format!(r#"{{"candidates":[{{"content":{{"parts":[{{"text":"hi"}}]}}}}],"usageMetadata":{meta}}}"#).as_bytes());
    assert_eq!(r.finish(), expected);
    let mut r = UsageReader::for_content_type(Some("text/event-stream"));
    r.feed(b"data: {\"candidates\":[],\"usageMetadata\":{\"promptTokenCount\":120,\"candidatesTokenCount\":3}}\r\n\r\n");
    r.feed(
        format!(
            "data: {{\"candidates\":[],\"usageMetadata\":{}}}\r\n\r\n",
            meta.replace('\n', "")
        )
        .as_bytes(),
    );
    assert_eq!(r.finish(), expected);
}

/// Cohere v2: the billed units are the counts that cost money.
#[test]
fn cohere_billed_units() {
    let mut r = UsageReader::for_content_type(Some("application/json"));
    r.feed(br#"{"id":"c","finish_reason":"COMPLETE","usage":{"billed_units":{"input_tokens":5,"output_tokens":418},
        "tokens":{"input_tokens":71,"output_tokens":420}}}"#);
    let u = r.finish();
    assert_eq!((u.tokens_in, u.tokens_out), (Some(5), Some(418)));
    // Cohere types its counts as floats: an integral one counts, a fractional one does not.
    let mut r = UsageReader::for_content_type(Some("text/event-stream"));
    r.feed(b"event: message-end\ndata: {\"type\":\"message-end\",\"delta\":{\"finish_reason\":\"COMPLETE\",\"usage\":{\"billed_units\":{\"input_tokens\":18.0,\"output_tokens\":2.5}}}}\n\ndata: [DONE]\n\n");
    let u = r.finish();
    assert_eq!((u.tokens_in, u.tokens_out), (Some(18), None));
}

#[test]
fn openai_sse_usage_split_across_chunks() {
    let mut r = UsageReader::for_content_type(Some("text/event-stream"));
    r.feed(b"data: {\"choices\":[]}\n\ndata: {\"choices\":[],\"us");
    r.feed(b"age\":{\"prompt_tokens\":3,\"completion_tokens\":9}}\n\ndata: [DONE]\n\n");
    assert_eq!(
        r.finish(),
        Usage {
            tokens_in: Some(3),
            tokens_out: Some(9),
            ..Usage::default()
        }
    );
}

#[test]
fn anthropic_sse_usage() {
    let mut r = UsageReader::for_content_type(Some("text/event-stream; charset=utf-8"));
    r.feed(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n");
    r.feed(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":15}}\n\n");
    assert_eq!(
        r.finish(),
        Usage {
            tokens_in: Some(25),
            tokens_out: Some(15),
            ..Usage::default()
        }
    );
}

#[test]
fn usage_is_requested_and_its_chunk_hidden() {
    let body =
        with_stream_usage(br#"{"model":"m","stream":true,"stream_options":{"x":1}}"#).unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["stream_options"]["include_usage"], true);
    assert_eq!(v["stream_options"]["x"], 1);
    assert!(with_stream_usage(br#"{"stream":false}"#).is_none());
    assert!(
        with_stream_usage(br#"{"stream":true,"stream_options":{"include_usage":true}}"#).is_none()
    );
    let sse = b"data: {\"choices\":[{\"delta\":{}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\n\ndata: [DONE]\n\n";
    let mut f = UsageChunkFilter::default();
    let mut out = Vec::new();
    for piece in sse.chunks(5) {
        out.extend(f.push(piece, false));
    }
    out.extend(f.push(b"", true));
    let text = String::from_utf8(out).unwrap();
    assert!(!text.contains("usage"), "{text}");
    assert!(text.contains("[DONE]") && text.contains("delta"));
}

#[test]
fn model_and_stream_from_request() {
    assert_eq!(
        request_model(br#"{"model":"gpt-4o","stream":true,"messages":[]}"#),
        (Some("gpt-4o".into()), true)
    );
    assert_eq!(request_model(b"not json"), (None, false));
}

#[test]
fn crlf_and_cr_streams_are_split_into_events() {
    // Found by `usage_chunk_is_removed_and_nothing_else`: events separated
    // by `\r\n\r\n` were never split, so a CRLF stream was held back whole
    // (no streaming) and its usage chunk was not removed.
    for eol in ["\r\n", "\r"] {
        let sse = format!(
            "data: {{\"choices\":[{{\"delta\":{{}}}}]}}{eol}{eol}data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":1}}}}{eol}{eol}"
        );
        let mut f = UsageChunkFilter::default();
        let out = f.push(sse.as_bytes(), false);
        let expected = format!("data: {{\"choices\":[{{\"delta\":{{}}}}]}}{eol}{eol}");
        assert_eq!(String::from_utf8_lossy(&out), expected, "{eol:?}");
        assert!(f.push(b"", true).is_empty());
    }
    // A `\r` at the end of a chunk may be half of `\r\n`: wait for the next byte.
    let mut f = UsageChunkFilter::default();
    assert!(f.push(b"data: x\r\n\r", false).is_empty());
    assert_eq!(f.push(b"\ndata: y", false), b"data: x\r\n\r\n");
    assert_eq!(f.push(b"", true), b"data: y");
}

#[test]
fn cr_only_stream_usage() {
    let mut r = UsageReader::for_content_type(Some("text/event-stream"));
    r.feed(b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":5}}\r\rdata: [DONE]\r\r");
    assert_eq!(r.finish().tokens_out, Some(5));
}

mod properties {
    use super::super::*;
    use crate::providers::sse_strategies::{cuts, line_ending, pieces, sse_soup};
    use proptest::prelude::*;
    use serde_json::json;

    fn read_usage(content_type: &str, pieces: &[&[u8]]) -> Usage {
        let mut r = UsageReader::for_content_type(Some(content_type));
        for p in pieces {
            r.feed(p);
        }
        r.finish()
    }

    fn filter(pieces: &[&[u8]]) -> Vec<u8> {
        let mut f = UsageChunkFilter::default();
        let mut out = Vec::new();
        for p in pieces {
            out.extend(f.push(p, false));
        }
        out.extend(f.push(b"", true));
        out
    }

    /// A synthetic OpenAI chat stream: its events (the usage chunk flagged)
    /// and the usage it reports.
    fn openai_stream() -> impl Strategy<Value = (Vec<(String, bool)>, Usage)> {
        (
            prop::collection::vec(any::<String>(), 0..6),
            any::<u32>(),
            any::<u32>(),
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<u32>()),
            line_ending(),
        )
            .prop_map(|(texts, tokens_in, tokens_out, cached, reasoning, eol)| {
                let event = |v: serde_json::Value| format!("data: {v}{eol}{eol}");
                let mut events: Vec<(String, bool)> = texts
                    .iter()
                    .map(|t| {
                        let chunk = json!({"id": "c", "object": "chat.completion.chunk",
                            "choices": [{"index": 0, "delta": {"content": t}}], "usage": null});
                        (event(chunk), false)
                    })
                    .collect();
                let mut usage = json!({"prompt_tokens": tokens_in, "completion_tokens": tokens_out,
                    "total_tokens": u64::from(tokens_in) + u64::from(tokens_out)});
                if let Some(c) = cached {
                    usage["prompt_tokens_details"] = json!({"cached_tokens": c});
                }
                if let Some(r) = reasoning {
                    usage["completion_tokens_details"] = json!({"reasoning_tokens": r});
                }
                events.push((
                    event(json!({"id": "c", "choices": [], "usage": usage})),
                    true,
                ));
                events.push((format!("data: [DONE]{eol}{eol}"), false));
                let expected = Usage {
                    tokens_in: Some(tokens_in),
                    tokens_out: Some(tokens_out),
                    tokens_cached: cached,
                    tokens_reasoning: reasoning,
                    tokens_cache_write: None,
                    tokens_image_in: None,
                    tokens_audio: None,
                };
                (events, expected)
            })
    }

    /// A synthetic Anthropic Messages stream and the usage it reports.
    fn anthropic_stream() -> impl Strategy<Value = (String, Usage)> {
        (
            prop::collection::vec(any::<String>(), 0..6),
            any::<u32>(),
            any::<u32>(),
            proptest::option::of(any::<u32>()),
            line_ending(),
        )
            .prop_map(|(texts, tokens_in, tokens_out, cached, eol)| {
                let event = |name: &str, v: serde_json::Value| {
                    format!("event: {name}{eol}data: {v}{eol}{eol}")
                };
                let mut usage = json!({"input_tokens": tokens_in, "output_tokens": 1});
                if let Some(c) = cached {
                    usage["cache_read_input_tokens"] = json!(c);
                }
                let mut sse = event(
                    "message_start",
                    json!({"type": "message_start",
                    "message": {"id": "msg", "usage": usage}}),
                );
                for t in &texts {
                    sse += &event(
                        "content_block_delta",
                        json!({"type": "content_block_delta",
                        "index": 0, "delta": {"type": "text_delta", "text": t}}),
                    );
                }
                sse += &event(
                    "message_delta",
                    json!({"type": "message_delta",
                    "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": tokens_out}}),
                );
                sse += &event("message_stop", json!({"type": "message_stop"}));
                // Anthropic's input_tokens excludes cache reads: the normalised count adds them.
                let expected = Usage {
                    tokens_in: Some(tokens_in.saturating_add(cached.unwrap_or(0))),
                    tokens_out: Some(tokens_out),
                    tokens_cached: cached,
                    tokens_reasoning: None,
                    tokens_cache_write: None,
                    tokens_image_in: None,
                    tokens_audio: None,
                };
                (sse, expected)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn reader_never_panics_on_arbitrary_bytes(
            bytes in prop::collection::vec(any::<u8>(), 0..1024),
            cuts in cuts(),
            content_type in prop_oneof![
                Just("text/event-stream"), Just("application/json"), Just("text/plain"),
                Just("application/vnd.amazon.eventstream")],
        ) {
            let _ = read_usage(content_type, &pieces(&bytes, &cuts));
            let _ = filter(&pieces(&bytes, &cuts));
            let _ = request_model(&bytes);
            let _ = with_stream_usage(&bytes);
            let _ = model_from_path(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn chunk_boundaries_do_not_change_usage_or_output(soup in sse_soup(), cuts in cuts()) {
            let split = pieces(&soup, &cuts);
            for ct in ["text/event-stream", "application/json"] {
                prop_assert_eq!(read_usage(ct, &split), read_usage(ct, &[&soup]));
            }
            prop_assert_eq!(filter(&split), filter(&[&soup]));
        }

        #[test]
        fn openai_stream_usage_is_the_generated_usage(
            (events, expected) in openai_stream(), cuts in cuts(),
        ) {
            let sse: String = events.iter().map(|(e, _)| e.as_str()).collect();
            let found = read_usage("text/event-stream", &pieces(sse.as_bytes(), &cuts));
            prop_assert_eq!(found, expected);
        }

        #[test]
        fn anthropic_stream_usage_is_the_generated_usage(
            (sse, expected) in anthropic_stream(), cuts in cuts(),
        ) {
            let found = read_usage("text/event-stream", &pieces(sse.as_bytes(), &cuts));
            prop_assert_eq!(found, expected);
        }

        #[test]
        fn usage_chunk_is_removed_and_nothing_else(
            (events, _) in openai_stream(), cuts in cuts(),
        ) {
            let sse: String = events.iter().map(|(e, _)| e.as_str()).collect();
            let kept: String = events
                .iter()
                .filter(|(_, usage_only)| !usage_only)
                .map(|(e, _)| e.as_str())
                .collect();
            let out = filter(&pieces(sse.as_bytes(), &cuts));
            prop_assert_eq!(String::from_utf8_lossy(&out), kept);
        }

        #[test]
        fn json_body_usage_is_the_generated_usage(
            tokens_in in any::<u64>(), tokens_out in any::<u64>(), anthropic in any::<bool>(),
            cuts in cuts(),
        ) {
            let body = if anthropic {
                json!({"id": "m", "usage": {"input_tokens": tokens_in, "output_tokens": tokens_out}})
            } else {
                json!({"id": "c", "usage": {"prompt_tokens": tokens_in, "completion_tokens": tokens_out}})
            }
            .to_string();
            let found = read_usage("application/json", &pieces(body.as_bytes(), &cuts));
            // Counts past u32 are clamped, never wrapped.
            let clamp = |n: u64| Some(u32::try_from(n).unwrap_or(u32::MAX));
            prop_assert_eq!((found.tokens_in, found.tokens_out), (clamp(tokens_in), clamp(tokens_out)));
        }

        #[test]
        fn request_fields_round_trip(
            model in proptest::option::of(any::<String>()),
            stream in proptest::option::of(any::<bool>()),
            include_usage in proptest::option::of(any::<bool>()),
            extra in any::<String>(),
        ) {
            let mut req = json!({"messages": [{"role": "user", "content": extra}]});
            if let Some(m) = &model {
                req["model"] = json!(m);
            }
            if let Some(s) = stream {
                req["stream"] = json!(s);
            }
            if let Some(i) = include_usage {
                req["stream_options"] = json!({"include_usage": i, "other": 1});
            }
            let body = serde_json::to_vec(&req).unwrap();
            prop_assert_eq!(request_model(&body), (model, stream.unwrap_or(false)));
            match with_stream_usage(&body) {
                None => prop_assert!(stream != Some(true) || include_usage == Some(true)),
                Some(rewritten) => {
                    prop_assert!(stream == Some(true) && include_usage != Some(true));
                    let mut v: serde_json::Value = serde_json::from_slice(&rewritten).unwrap();
                    prop_assert_eq!(&v["stream_options"]["include_usage"], &json!(true));
                    // Nothing else changed, and asking again changes nothing.
                    prop_assert!(with_stream_usage(&rewritten).is_none());
                    let options = v["stream_options"].as_object_mut().unwrap();
                    options.remove("include_usage");
                    if options.is_empty() && include_usage.is_none() {
                        v.as_object_mut().unwrap().remove("stream_options");
                    } else if let Some(i) = include_usage {
                        options.insert("include_usage".into(), json!(i));
                    }
                    prop_assert_eq!(v, req);
                }
            }
        }
    }
}

#[test]
fn model_from_the_path_of_apis_that_put_it_there() {
    assert_eq!(
        model_from_path("/v1beta/models/gemini-2.5-flash:streamGenerateContent").as_deref(),
        Some("gemini-2.5-flash")
    );
    assert_eq!(
        model_from_path(
            "/v1/projects/p/locations/us/publishers/google/models/gemini-2.0-flash:generateContent"
        )
        .as_deref(),
        Some("gemini-2.0-flash")
    );
    assert_eq!(
        model_from_path("/model/anthropic.claude-3-haiku-20240307-v1:0/converse").as_deref(),
        Some("anthropic.claude-3-haiku-20240307-v1:0")
    );
    assert_eq!(
        model_from_path("/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream")
            .as_deref(),
        Some("anthropic.claude-3-haiku-20240307-v1:0")
    );
    assert_eq!(model_from_path("/chat/completions"), None);
    assert_eq!(model_from_path("/v1beta/models/"), None);
}

/// One AWS event-stream frame with `event_type` and a JSON payload (CRCs are not checked by
/// the reader, so zeros do).
pub(super) fn event_frame(event_type: &str, payload: &str) -> Vec<u8> {
    let mut headers = Vec::new();
    for (name, value) in [(":event-type", event_type), (":message-type", "event")] {
        headers.push(name.len() as u8);
        headers.extend_from_slice(name.as_bytes());
        headers.push(7); // string
        headers.extend_from_slice(&(value.len() as u16).to_be_bytes());
        headers.extend_from_slice(value.as_bytes());
    }
    let total = 12 + headers.len() + payload.len() + 4;
    let mut frame = Vec::new();
    frame.extend_from_slice(&(total as u32).to_be_bytes());
    frame.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    frame.extend_from_slice(&[0; 4]);
    frame.extend_from_slice(&headers);
    frame.extend_from_slice(payload.as_bytes());
    frame.extend_from_slice(&[0; 4]);
    frame
}

/// Bedrock Converse: JSON usage (camelCase, cache reads and writes apart from input), and the
/// ConverseStream event stream's `metadata` event, however the frames are cut.
#[test]
fn bedrock_converse_json_and_event_stream() {
    let expected = Usage {
        tokens_in: Some(30 + 100 + 20),
        tokens_out: Some(12),
        tokens_cached: Some(100),
        tokens_reasoning: None,
        tokens_cache_write: Some(20),
        tokens_image_in: None,
        tokens_audio: None,
    };
    let usage = r#"{"inputTokens":30,"outputTokens":12,"totalTokens":162,"cacheReadInputTokens":100,"cacheWriteInputTokens":20}"#;
    let mut r = UsageReader::for_content_type(Some("application/json"));
    r.feed(format!(r#"{{"output":{{"message":{{"role":"assistant","content":[{{"text":"hi"}}]}}}},"stopReason":"end_turn","usage":{usage},"metrics":{{"latencyMs":120}}}}"#).as_bytes());
    assert_eq!(r.finish(), expected);
    let mut stream = Vec::new();
    stream.extend(event_frame("messageStart", r#"{"role":"assistant"}"#));
    stream.extend(event_frame(
        "contentBlockDelta",
        r#"{"contentBlockIndex":0,"delta":{"text":"hello \"usage\" text"}}"#,
    ));
    stream.extend(event_frame("messageStop", r#"{"stopReason":"end_turn"}"#));
    stream.extend(event_frame(
        "metadata",
        &format!(r#"{{"usage":{usage},"metrics":{{"latencyMs":120}}}}"#),
    ));
    for cut in [1, 7, 13, 50, stream.len() - 3] {
        let mut r = UsageReader::for_content_type(Some("application/vnd.amazon.eventstream"));
        for piece in stream.chunks(cut) {
            r.feed(piece);
        }
        assert_eq!(r.finish(), expected, "cut every {cut} bytes");
    }
}

/// Workers AI wraps its answer in `result`.
#[test]
fn workers_ai_result_usage() {
    let mut r = UsageReader::for_content_type(Some("application/json"));
    r.feed(br#"{"result":{"response":"hi","usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}},"success":true,"errors":[],"messages":[]}"#);
    let u = r.finish();
    assert_eq!((u.tokens_in, u.tokens_out), (Some(9), Some(4)));
}

/// Generated images: megabytes of base64 before the `usage` object, fed in pieces. Past the
/// JSON buffer the usage is read from the body's end; image input tokens are kept apart.
#[test]
fn image_usage_after_megabytes_of_base64() {
    let image = "A".repeat(5 * 1024 * 1024);
    let body = format!(
        r#"{{"created":1,"data":[{{"b64_json":"{image}"}},{{"b64_json":"{image}"}}],"quality":"high",
        "usage": {{"input_tokens":50,"output_tokens":8320,"total_tokens":8370,
        "input_tokens_details":{{"text_tokens":40,"image_tokens":10}}}}}}"#
    );
    for piece in [4096, 65_537, 1 << 20] {
        let mut r = UsageReader::for_content_type(Some("application/json"));
        for chunk in body.as_bytes().chunks(piece) {
            r.feed(chunk);
        }
        let u = r.finish();
        assert_eq!(
            (u.tokens_in, u.tokens_out, u.tokens_image_in),
            (Some(50), Some(8320), Some(10)),
            "pieces of {piece}"
        );
    }
    // A large body whose end has no usage has none: never a guess.
    let mut r = UsageReader::for_content_type(Some("application/json"));
    r.feed(format!(r#"{{"data":"{image}","note":"no usage"}}"#).as_bytes());
    assert_eq!(r.finish(), Usage::default());
}
