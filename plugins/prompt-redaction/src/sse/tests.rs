use super::*;

fn ph() -> Placeholders {
    let mut p = Placeholders::default();
    p.insert("[EMAIL_1]", "ada@example.com");
    p.insert("[PHONE_1]", "+1 415 555 2671");
    p.insert("[CUSTOM_EMPLOYEE_ID_1]", "EMP-123456");
    p
}

fn openai_event(delta: Value, finish: Value) -> String {
    let v = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
        "model": "gpt-4o", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    format!("data: {v}\n\n")
}

/// A chat stream whose placeholders are cut token by token.
fn openai_stream() -> String {
    let mut s = openai_event(json!({"role": "assistant", "content": ""}), Value::Null);
    for piece in [
        "Write to ",
        "[EM",
        "AIL_1",
        "]",
        " or call [PHONE_1].",
        " Array[0] stays. [",
        "EMAIL_1] again [",
    ] {
        s += &openai_event(json!({ "content": piece }), Value::Null);
    }
    s += &openai_event(json!({}), json!("stop"));
    s += "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":12}}\n\n";
    s += "data: [DONE]\n\n";
    s
}

const OPENAI_TEXT: &str =
    "Write to ada@example.com or call +1 415 555 2671. Array[0] stays. ada@example.com again [";

fn anthropic_event(kind: &str, data: Value) -> String {
    format!("event: {kind}\ndata: {data}\n\n")
}

fn anthropic_stream() -> String {
    let text = |index: u64, t: &str| {
        anthropic_event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": t}}),
        )
    };
    let tool = |t: &str| {
        anthropic_event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": t}}),
        )
    };
    let ping = anthropic_event("ping", json!({"type": "ping"}));
    let mut s = anthropic_event(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_1", "role": "assistant", "content": []}}),
    );
    s += &anthropic_event(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    );
    s += &ping;
    s += &text(0, "Hi [EM");
    s += &ping;
    s += &text(0, "AIL_1] and [CUS");
    s += &text(0, "TOM_EMPLOYEE_ID_1]. Bye [");
    s += &anthropic_event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    );
    s += &anthropic_event(
        "content_block_start",
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "t1", "name": "send", "input": {}}}),
    );
    s += &tool("{\"to\": \"[EMAIL");
    s += &tool("_1]\"}");
    s += &anthropic_event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 1}),
    );
    s += &anthropic_event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}}),
    );
    s += &anthropic_event("message_stop", json!({"type": "message_stop"}));
    s
}

/// Feeds `chunks`, then the end of stream; returns everything emitted.
fn run(chunks: &[&[u8]]) -> Vec<u8> {
    let p = ph();
    let mut r = SseRestorer::default();
    let mut out = Vec::new();
    for c in chunks {
        out.extend(r.push(c, false, &p));
    }
    out.extend(r.push(b"", true, &p));
    out
}

/// The data of every event, in order.
fn events(out: &[u8]) -> Vec<String> {
    let text = String::from_utf8(out.to_vec()).unwrap();
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            e.lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap_or_else(|| panic!("event without data: {e:?}"))
                .to_string()
        })
        .collect()
}

/// The concatenated OpenAI `delta.content`.
fn openai_text(out: &[u8]) -> String {
    let mut text = String::new();
    for data in events(out) {
        if data == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(&data).unwrap();
        for c in v["choices"].as_array().unwrap() {
            if let Some(s) = c["delta"]["content"].as_str() {
                text += s;
            }
        }
    }
    text
}

/// The concatenated Anthropic text and tool JSON of blocks 0 and 1.
fn anthropic_texts(out: &[u8]) -> (String, String) {
    let (mut text, mut tool) = (String::new(), String::new());
    for data in events(out) {
        let v: Value = serde_json::from_str(&data).unwrap();
        if v["type"] == "content_block_delta" {
            match v["index"].as_u64() {
                Some(0) => text += v["delta"]["text"].as_str().unwrap(),
                Some(1) => tool += v["delta"]["partial_json"].as_str().unwrap(),
                other => panic!("unexpected block {other:?}"),
            }
        }
    }
    (text, tool)
}

#[test]
fn openai_deltas_split_across_events_are_restored() {
    let stream = openai_stream();
    let out = run(&[stream.as_bytes()]);
    assert_eq!(openai_text(&out), OPENAI_TEXT);
    let data = events(&out);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    // The held "[" goes out before the finishing chunk, not after it.
    let finish = data.iter().position(|d| d.contains("\"stop\"")).unwrap();
    assert!(data[finish - 1].contains("\"content\":\"[\""), "{data:?}");
    // Events without placeholders pass byte for byte.
    assert!(String::from_utf8(out).unwrap().starts_with(&openai_event(
        json!({"role": "assistant", "content": ""}),
        Value::Null
    )));
}

#[test]
fn openai_stream_split_at_every_byte_position() {
    let stream = openai_stream();
    let bytes = stream.as_bytes();
    let whole = run(&[bytes]);
    for cut in 0..=bytes.len() {
        let out = run(&[&bytes[..cut], &bytes[cut..]]);
        assert_eq!(out, whole, "split at byte {cut}");
    }
    let one_by_one: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(run(&one_by_one), whole);
    assert_eq!(openai_text(&whole), OPENAI_TEXT);
}

#[test]
fn anthropic_stream_split_at_every_byte_position() {
    let stream = anthropic_stream();
    let bytes = stream.as_bytes();
    let whole = run(&[bytes]);
    let (text, tool) = anthropic_texts(&whole);
    assert_eq!(text, "Hi ada@example.com and EMP-123456. Bye [");
    assert_eq!(tool, "{\"to\": \"ada@example.com\"}");
    let data = events(&whole);
    let stop = data
        .iter()
        .position(|d| d.contains("content_block_stop"))
        .unwrap();
    assert!(data[stop - 1].contains("\"text\":\"[\""), "{data:?}");
    for cut in 0..=bytes.len() {
        assert_eq!(
            run(&[&bytes[..cut], &bytes[cut..]]),
            whole,
            "split at byte {cut}"
        );
    }
    for size in [2, 3, 7, 64] {
        let chunks: Vec<&[u8]> = bytes.chunks(size).collect();
        assert_eq!(run(&chunks), whole, "chunks of {size}");
    }
}

#[test]
fn openai_tool_call_arguments_are_restored_json_escaped() {
    let mut p = ph();
    p.insert("[CUSTOM_QUOTE_1]", "say \"hi\"");
    let ev = |args: &str, finish: Value| {
        let v = json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0,
            "delta": {"tool_calls": [{"index": 0, "function": {"arguments": args}}]}, "finish_reason": finish}]});
        format!("data: {v}\n\n")
    };
    let stream = ev("{\"to\":\"[EMA", Value::Null)
        + &ev("IL_1]\",\"note\":\"[CUSTOM_QUOTE_1]\"}", Value::Null)
        + &ev("", json!("tool_calls"));
    let mut r = SseRestorer::default();
    let mut out = r.push(stream.as_bytes(), false, &p);
    out.extend(r.push(b"", true, &p));
    let mut args = String::new();
    for data in events(&out) {
        let v: Value = serde_json::from_str(&data).unwrap();
        args += v["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap_or("");
    }
    let parsed: Value = serde_json::from_str(&args).unwrap();
    assert_eq!(
        parsed,
        json!({"to": "ada@example.com", "note": "say \"hi\""})
    );
    assert_eq!(r.restored, 2);
}

#[test]
fn held_text_is_flushed_at_the_end_of_a_truncated_stream() {
    let stream = openai_event(json!({"content": "mail [EMAIL_"}), Value::Null);
    let out = run(&[stream.as_bytes()]);
    assert_eq!(openai_text(&out), "mail [EMAIL_");
    assert_eq!(events(&out).len(), 2);
}

#[test]
fn crlf_events_and_other_json_events() {
    let stream = "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"a [EM\"}}\r\n\r\n\
                  data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"AIL_1]\"}}\r\n\r\n\
                  data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"gemini [EMAIL_1]\"}]}}]}\r\n\r\n";
    let out = String::from_utf8(run(&[stream.as_bytes()])).unwrap();
    assert!(out.contains("\"text\":\"a \""), "{out}");
    assert!(out.contains("\"text\":\"ada@example.com\""), "{out}");
    assert!(out.contains("gemini ada@example.com"), "{out}");
    assert_eq!(out.matches("\r\n\r\n").count(), 3, "{out}");
}

#[test]
fn non_sse_and_non_json_pass_unchanged() {
    for body in [
        ": keep-alive\n\n".to_string(),
        "event: ping\n\n".to_string(),
        "data: [DONE]\n\n".to_string(),
        "data: not json [EMAIL_1]\n\n".to_string(),
        "plain text without any blank line [EMAIL_".to_string(),
    ] {
        assert_eq!(run(&[body.as_bytes()]), body.as_bytes(), "{body:?}");
    }
    let bin = [0xffu8, 0xfe, b'\n', b'\n'];
    assert_eq!(run(&[&bin]), bin);
}
