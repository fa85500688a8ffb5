//! OpenAI chat completions ⇄ Anthropic Messages, for the compat endpoint:
//! requests (system prompt, roles, max_tokens, stop, temperature, tools and
//! tool results, images), responses (text, tool calls, finish reasons, usage)
//! and streams (Anthropic SSE events → OpenAI chunks, ending in `[DONE]`).

use super::chat_chunk::ChunkWriter;
use serde_json::{Map, Value, json};

/// Anthropic requires `max_tokens`; used when the client gave none.
const DEFAULT_MAX_TOKENS: u64 = 4096;

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

fn image_block(part: &Value) -> Option<Value> {
    let url = part.get("image_url")?.get("url")?.as_str()?;
    if let Some(rest) = url.strip_prefix("data:") {
        let (media, data) = rest.split_once(";base64,")?;
        return Some(
            json!({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}),
        );
    }
    Some(json!({"type": "image", "source": {"type": "url", "url": url}}))
}

fn content_blocks(content: &Value) -> Vec<Value> {
    match content {
        Value::String(s) if s.is_empty() => vec![],
        Value::String(s) => vec![json!({"type": "text", "text": s})],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p.get("type").and_then(Value::as_str) {
                Some("text") => Some(
                    json!({"type": "text", "text": p.get("text").cloned().unwrap_or(Value::Null)}),
                ),
                Some("image_url") => image_block(p),
                _ => None,
            })
            .collect(),
        _ => vec![],
    }
}

/// Appends blocks to the last message when it has the same role (Anthropic
/// wants alternating roles), else starts a new message.
fn push(messages: &mut Vec<Value>, role: &str, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    if let Some(last) = messages.last_mut()
        && last.get("role").and_then(Value::as_str) == Some(role)
        && let Some(Value::Array(existing)) = last.get_mut("content")
    {
        existing.extend(blocks);
        return;
    }
    messages.push(json!({"role": role, "content": blocks}));
}

/// An OpenAI chat completion request as an Anthropic Messages request.
pub fn request_to_anthropic(req: &Value, model: &str) -> Result<Value, String> {
    let msgs = req
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("messages: expected an array")?;
    let mut system = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let content = m.get("content").cloned().unwrap_or(Value::Null);
        match role {
            "system" | "developer" => system.push(text_of(&content)),
            "user" => push(&mut messages, "user", content_blocks(&content)),
            "assistant" => {
                let mut blocks = content_blocks(&content);
                for call in m
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let f = call.get("function").cloned().unwrap_or(Value::Null);
                    let args = f.get("arguments").and_then(Value::as_str).unwrap_or("{}");
                    let input: Value = serde_json::from_str(args).unwrap_or_else(|_| json!({}));
                    blocks.push(json!({"type": "tool_use", "id": call.get("id"), "name": f.get("name"), "input": input}));
                }
                push(&mut messages, "assistant", blocks);
            }
            "tool" => {
                let id = m.get("tool_call_id").and_then(Value::as_str).unwrap_or("");
                push(
                    &mut messages,
                    "user",
                    vec![
                        json!({"type": "tool_result", "tool_use_id": id, "content": text_of(&content)}),
                    ],
                );
            }
            other => return Err(format!("messages[{i}].role: unsupported role '{other}'")),
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    out.insert("messages".into(), Value::Array(messages));
    if !system.is_empty() {
        out.insert("system".into(), json!(system.join("\n\n")));
    }
    let max = req
        .get("max_completion_tokens")
        .or_else(|| req.get("max_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    out.insert("max_tokens".into(), json!(max));
    match req.get("stop") {
        Some(Value::String(s)) => {
            out.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) => {
            out.insert("stop_sequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    for key in ["temperature", "top_p", "stream"] {
        if let Some(v) = req.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    if let Some(tools) = req.get("tools").and_then(Value::as_array) {
        let converted: Vec<Value> = tools
            .iter()
            .filter_map(|t| t.get("function"))
            .map(|f| {
                json!({
                    "name": f.get("name"),
                    "description": f.get("description").cloned().unwrap_or(json!("")),
                    "input_schema": f.get("parameters").cloned().unwrap_or(json!({"type": "object"})),
                })
            })
            .collect();
        out.insert("tools".into(), Value::Array(converted));
    }
    match req.get("tool_choice") {
        Some(Value::String(s)) if s == "required" => {
            out.insert("tool_choice".into(), json!({"type": "any"}));
        }
        Some(Value::String(s)) if s == "auto" => {
            out.insert("tool_choice".into(), json!({"type": "auto"}));
        }
        Some(Value::String(s)) if s == "none" => {
            out.insert("tool_choice".into(), json!({"type": "none"}));
        }
        Some(Value::Object(o)) => {
            if let Some(name) = o.get("function").and_then(|f| f.get("name")) {
                out.insert("tool_choice".into(), json!({"type": "tool", "name": name}));
            }
        }
        _ => {}
    }
    Ok(Value::Object(out))
}

/// Anthropic `stop_reason` → OpenAI `finish_reason`.
pub fn finish_reason(stop: Option<&str>) -> Value {
    match stop {
        Some("end_turn") | Some("stop_sequence") => json!("stop"),
        Some("max_tokens") => json!("length"),
        Some("tool_use") => json!("tool_calls"),
        Some(_) => json!("stop"),
        None => Value::Null,
    }
}

fn usage(input: u64, output: u64) -> Value {
    // Saturating: the counts come from the provider, and a sum past u64 must
    // neither panic (debug) nor wrap (release).
    json!({"prompt_tokens": input, "completion_tokens": output, "total_tokens": input.saturating_add(output)})
}

/// An Anthropic Messages response (or error) as an OpenAI chat completion. An error keeps
/// OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`: `param` and `code`
/// are carried over when the answer has them (a filter's `LocalResponse::error_with`, an
/// Anthropic-shaped provider that sends them) and `null` otherwise.
pub fn response_to_openai(resp: &Value, model: &str, created: u64) -> Value {
    if let Some(err) = resp.get("error") {
        let field = |k: &str| err.get(k).cloned().unwrap_or(Value::Null);
        return json!({"error": {
            "message": err.get("message").cloned().unwrap_or(json!("provider error")),
            "type": err.get("type").cloned().unwrap_or(json!("provider_error")),
            "param": field("param"),
            "code": field("code"),
        }});
    }
    let blocks = resp
        .get("content")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let text: String = blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect();
    let calls: Vec<Value> = blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_use"))
        .map(|b| {
            json!({"id": b.get("id"), "type": "function", "function": {
                "name": b.get("name"),
                "arguments": b.get("input").map(Value::to_string).unwrap_or_else(|| "{}".into()),
            }})
        })
        .collect();
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) }});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let u = resp.get("usage");
    let n = |k: &str| {
        u.and_then(|u| u.get(k))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    json!({
        "id": resp.get("id").cloned().unwrap_or(json!("chatcmpl-aigw")),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message,
                     "finish_reason": finish_reason(resp.get("stop_reason").and_then(Value::as_str))}],
        "usage": usage(n("input_tokens"), n("output_tokens")),
    })
}

/// Anthropic SSE → OpenAI chunks, fed as bytes arrive (events may be split
/// across chunks; a line is buffered until its `\n`, `\r\n` or `\r`, bounded).
#[derive(Debug)]
pub struct StreamTranslator {
    model: String,
    created: u64,
    id: String,
    lines: SseLines,
    input_tokens: u64,
    output_tokens: u64,
    finish: Value,
    /// Anthropic content-block index → OpenAI tool-call index.
    tools: Vec<(u64, usize)>,
    done: bool,
    include_usage: bool,
}

const MAX_LINE: usize = 4 * 1024 * 1024;

/// Cuts a provider's SSE bytes into lines across chunk boundaries, for the stream translators:
/// `\n`, `\r` and `\r\n` end a line (`\r\n` adds an empty line, which they ignore); a line
/// longer than 4 MiB is cut rather than buffered without end.
#[derive(Debug, Default)]
pub struct SseLines {
    line: Vec<u8>,
}

impl SseLines {
    /// Calls `on_line` with each line these bytes complete.
    pub fn feed(&mut self, bytes: &[u8], mut on_line: impl FnMut(&[u8])) {
        for &b in bytes {
            if b == b'\n' || b == b'\r' {
                let line = std::mem::take(&mut self.line);
                on_line(&line);
            } else if self.line.len() < MAX_LINE {
                self.line.push(b);
            }
        }
    }

    /// The JSON of each `data:` line these bytes complete (other lines, and data that is not
    /// JSON such as `[DONE]`, left out).
    pub fn data_json(&mut self, bytes: &[u8]) -> Vec<serde_json::Value> {
        let mut events = Vec::new();
        self.feed(bytes, |line| {
            if let Some(data) = line.strip_prefix(b"data:")
                && let Ok(v) = serde_json::from_slice(data.trim_ascii())
            {
                events.push(v);
            }
        });
        events
    }
}

impl StreamTranslator {
    /// A translator for one stream.
    pub fn new(model: &str, created: u64, include_usage: bool) -> Self {
        StreamTranslator {
            model: model.to_string(),
            created,
            id: "chatcmpl-aigw".into(),
            lines: SseLines::default(),
            input_tokens: 0,
            output_tokens: 0,
            finish: Value::Null,
            tools: Vec::new(),
            done: false,
            include_usage,
        }
    }

    fn chunk(&self, delta: Value, finish: Value) -> String {
        ChunkWriter {
            id: self.id.clone(),
            model: self.model.clone(),
            created: self.created,
        }
        .delta(delta, finish)
    }

    /// Translates the bytes; returns the OpenAI SSE text to send now.
    pub fn feed(&mut self, bytes: &[u8]) -> String {
        let mut out = String::new();
        let mut lines = std::mem::take(&mut self.lines);
        lines.feed(bytes, |line| out.push_str(&self.line_done(line)));
        self.lines = lines;
        out
    }

    /// Whether `message_stop` was seen (the stream is complete).
    pub fn finished(&self) -> bool {
        self.done
    }

    fn line_done(&mut self, line: &[u8]) -> String {
        let Some(data) = line.strip_prefix(b"data:") else {
            return String::new();
        };
        let Ok(ev) = serde_json::from_slice::<Value>(data) else {
            return String::new();
        };
        match ev.get("type").and_then(Value::as_str).unwrap_or("") {
            "message_start" => {
                if let Some(id) = ev.pointer("/message/id").and_then(Value::as_str) {
                    self.id = id.to_string();
                }
                self.input_tokens = ev
                    .pointer("/message/usage/input_tokens")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                self.chunk(json!({"role": "assistant", "content": ""}), Value::Null)
            }
            "content_block_start" => {
                let block = ev.get("content_block").cloned().unwrap_or(Value::Null);
                if block.get("type").and_then(Value::as_str) == Some("tool_use") {
                    let index = ev.get("index").and_then(Value::as_u64).unwrap_or(0);
                    let tool_index = self.tools.len();
                    self.tools.push((index, tool_index));
                    return self.chunk(
                        json!({"tool_calls": [{"index": tool_index, "id": block.get("id"), "type": "function",
                                               "function": {"name": block.get("name"), "arguments": ""}}]}),
                        Value::Null,
                    );
                }
                String::new()
            }
            "content_block_delta" => {
                let delta = ev.get("delta").cloned().unwrap_or(Value::Null);
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        self.chunk(json!({"content": delta.get("text")}), Value::Null)
                    }
                    Some("input_json_delta") => {
                        let index = ev.get("index").and_then(Value::as_u64).unwrap_or(0);
                        let tool_index = self
                            .tools
                            .iter()
                            .find(|(i, _)| *i == index)
                            .map(|(_, t)| *t)
                            .unwrap_or(0);
                        self.chunk(
                            json!({"tool_calls": [{"index": tool_index, "function": {"arguments": delta.get("partial_json")}}]}),
                            Value::Null,
                        )
                    }
                    _ => String::new(),
                }
            }
            "message_delta" => {
                self.finish =
                    finish_reason(ev.pointer("/delta/stop_reason").and_then(Value::as_str));
                if let Some(n) = ev.pointer("/usage/output_tokens").and_then(Value::as_u64) {
                    self.output_tokens = n;
                }
                String::new()
            }
            "message_stop" => {
                self.done = true;
                let finish = if self.finish.is_null() {
                    json!("stop")
                } else {
                    self.finish.clone()
                };
                let usage = self
                    .include_usage
                    .then(|| usage(self.input_tokens, self.output_tokens));
                ChunkWriter {
                    id: self.id.clone(),
                    model: self.model.clone(),
                    created: self.created,
                }
                .end(finish, usage)
            }
            "error" => {
                let err = ev
                    .get("error")
                    .cloned()
                    .unwrap_or(json!({"message": "provider error"}));
                format!("event: error\ndata: {}\n\n", json!({"error": err}))
            }
            _ => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_moves_system_merges_roles_and_maps_tools() {
        let req = json!({
            "model": "anthropic/claude", "max_tokens": 50, "stop": "END", "temperature": 0.2,
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "hi"},
                {"role": "user", "content": [{"type": "text", "text": "again"}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "cold"}
            ],
            "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
            "tool_choice": "required"
        });
        let out = request_to_anthropic(&req, "claude").unwrap();
        assert_eq!(out["system"], "be brief");
        assert_eq!(out["max_tokens"], 50);
        assert_eq!(out["stop_sequences"], json!(["END"]));
        let msgs = out["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 3);
        assert_eq!(msgs[0]["content"].as_array().unwrap().len(), 2);
        assert_eq!(msgs[1]["content"][0]["type"], "tool_use");
        assert_eq!(msgs[1]["content"][0]["input"]["city"], "Oslo");
        assert_eq!(msgs[2]["content"][0]["tool_use_id"], "call_1");
        assert_eq!(out["tools"][0]["input_schema"]["type"], "object");
        assert_eq!(out["tool_choice"]["type"], "any");
    }

    #[test]
    fn response_maps_text_tools_finish_and_usage() {
        let resp = json!({"id": "msg_1", "content": [
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}}],
            "stop_reason": "tool_use", "usage": {"input_tokens": 10, "output_tokens": 5}});
        let out = response_to_openai(&resp, "claude", 1);
        assert_eq!(out["choices"][0]["message"]["content"], "Let me check.");
        assert_eq!(
            out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Oslo\"}"
        );
        assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(out["usage"]["total_tokens"], 15);
    }

    #[test]
    fn errors_keep_their_code_and_param() {
        let resp = json!({"type": "error", "error": {"type": "invalid_request_error",
            "message": "max_tokens: at most 4096", "code": "max_tokens_too_large",
            "param": "max_tokens"}});
        assert_eq!(
            response_to_openai(&resp, "claude", 1),
            json!({"error": {"type": "invalid_request_error",
                "message": "max_tokens: at most 4096", "code": "max_tokens_too_large",
                "param": "max_tokens"}})
        );
        // Anthropic's own errors have neither: both are null, as in OpenAI's errors.
        let resp = json!({"type": "error", "error": {"type": "overloaded_error",
            "message": "Overloaded"}});
        assert_eq!(
            response_to_openai(&resp, "claude", 1),
            json!({"error": {"type": "overloaded_error", "message": "Overloaded",
                "code": null, "param": null}})
        );
    }

    #[test]
    fn stream_translation_survives_split_events() {
        let sse = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_9\",\"usage\":{\"input_tokens\":7}}}\n\n\
                   event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hel\"}}\n\n\
                   event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"lo\"}}\n\n\
                   event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\"},\"usage\":{\"output_tokens\":2}}\n\n\
                   event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        let mut t = StreamTranslator::new("claude", 1, true);
        let mut out = String::new();
        for piece in sse.as_bytes().chunks(7) {
            out.push_str(&t.feed(piece));
        }
        assert!(t.finished());
        let chunks: Vec<Value> = out
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "Hello");
        assert!(
            chunks
                .iter()
                .any(|c| c["choices"][0]["finish_reason"] == "length")
        );
        assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 2);
        assert!(out.ends_with("data: [DONE]\n\n"));
    }

    #[test]
    fn huge_token_counts_do_not_overflow() {
        // Found by `generated_stream_translates_to_its_text_and_usage`:
        // `input + output` overflowed (a panic in debug builds, a wrapped
        // total in release).
        let sse = format!(
            "data: {{\"type\":\"message_start\",\"message\":{{\"usage\":{{\"input_tokens\":{max}}}}}}}\n\
             data: {{\"type\":\"message_delta\",\"usage\":{{\"output_tokens\":{max}}}}}\n\
             data: {{\"type\":\"message_stop\"}}\n",
            max = u64::MAX
        );
        let out = StreamTranslator::new("m", 1, true).feed(sse.as_bytes());
        assert!(
            out.contains(&format!("\"total_tokens\":{}", u64::MAX)),
            "{out}"
        );
        let resp = json!({"usage": {"input_tokens": u64::MAX, "output_tokens": 1}});
        assert_eq!(
            response_to_openai(&resp, "m", 1)["usage"]["total_tokens"],
            u64::MAX
        );
    }

    mod properties {
        use super::super::*;
        use crate::providers::sse_strategies::{cuts, line_ending, pieces, sse_soup};
        use proptest::prelude::*;

        fn translate(pieces: &[&[u8]]) -> (String, bool) {
            let mut t = StreamTranslator::new("claude", 7, true);
            let out: String = pieces.iter().map(|p| t.feed(p)).collect();
            (out, t.finished())
        }

        /// The OpenAI chunks of a translated stream, `[DONE]` left out.
        fn chunks(out: &str) -> Result<Vec<Value>, TestCaseError> {
            out.lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .filter(|d| *d != "[DONE]")
                .map(|d| {
                    serde_json::from_str(d).map_err(|e| TestCaseError::fail(format!("{e}: {d}")))
                })
                .collect()
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn arbitrary_bytes_never_panic(
                bytes in prop::collection::vec(any::<u8>(), 0..1024), cuts in cuts(),
            ) {
                let _ = translate(&pieces(&bytes, &cuts));
                if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
                    let _ = response_to_openai(&v, "m", 0);
                    let _ = request_to_anthropic(&v, "m");
                }
            }

            #[test]
            fn chunk_boundaries_do_not_change_the_output(soup in sse_soup(), cuts in cuts()) {
                prop_assert_eq!(translate(&pieces(&soup, &cuts)), translate(&[&soup]));
            }

            #[test]
            fn every_output_event_is_valid_json(soup in sse_soup()) {
                let (out, _) = translate(&[&soup]);
                chunks(&out)?;
                prop_assert!(out.is_empty() || out.ends_with("\n\n"));
            }

            #[test]
            fn generated_stream_translates_to_its_text_and_usage(
                texts in prop::collection::vec(any::<String>(), 0..6),
                input_tokens in any::<u64>(),
                output_tokens in any::<u64>(),
                eol in line_ending(),
                cuts in cuts(),
            ) {
                let event = |v: Value| format!("event: x{eol}data: {v}{eol}{eol}");
                let mut sse = event(json!({"type": "message_start",
                    "message": {"id": "msg_1", "usage": {"input_tokens": input_tokens, "output_tokens": 1}}}));
                for t in &texts {
                    sse += &event(json!({"type": "content_block_delta", "index": 0,
                        "delta": {"type": "text_delta", "text": t}}));
                }
                sse += &event(json!({"type": "message_delta", "delta": {"stop_reason": "max_tokens"},
                    "usage": {"output_tokens": output_tokens}}));
                sse += &event(json!({"type": "message_stop"}));
                let (out, finished) = translate(&pieces(sse.as_bytes(), &cuts));
                prop_assert!(finished);
                prop_assert!(out.ends_with("data: [DONE]\n\n"));
                let chunks = chunks(&out)?;
                let text: String = chunks
                    .iter()
                    .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
                    .collect();
                prop_assert_eq!(text, texts.concat());
                prop_assert!(chunks.iter().all(|c| c["id"] == "msg_1"));
                let usage = &chunks[chunks.len() - 1]["usage"];
                prop_assert_eq!(&usage["prompt_tokens"], &json!(input_tokens));
                prop_assert_eq!(&usage["completion_tokens"], &json!(output_tokens));
                let total = input_tokens.saturating_add(output_tokens);
                prop_assert_eq!(&usage["total_tokens"], &json!(total));
            }
        }
    }
}
