//! Anthropic Messages in, OpenAI chat completions out: the compat endpoint's `messages`
//! entry point for providers that speak OpenAI's API (Claude Code and the Anthropic SDKs
//! pointed at any model). The request is translated to a chat completion, sent through the
//! gateway like any other, and the answer (JSON, stream or error) translated back, event by
//! event for streams.

use serde_json::{Map, Value, json};

/// The text of a `tool_result` content (a string or text blocks).
fn result_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// An Anthropic image block as an OpenAI `image_url` part.
fn image_part(block: &Value) -> Option<Value> {
    let source = block.get("source")?;
    let url = match source.get("type").and_then(Value::as_str)? {
        "base64" => format!(
            "data:{};base64,{}",
            source.get("media_type")?.as_str()?,
            source.get("data")?.as_str()?
        ),
        "url" => source.get("url")?.as_str()?.to_string(),
        _ => return None,
    };
    Some(json!({"type": "image_url", "image_url": {"url": url}}))
}

/// The messages of one Anthropic turn, in OpenAI's shape: tool results become `tool`
/// messages (first, as OpenAI wants them right after the call), tool uses become the
/// assistant's `tool_calls`, the rest its content.
fn turn(role: &str, content: &Value, out: &mut Vec<Value>) -> Result<(), String> {
    let blocks = match content {
        Value::String(s) => {
            out.push(json!({"role": role, "content": s}));
            return Ok(());
        }
        Value::Array(blocks) => blocks,
        _ => return Err("messages[].content: expected a string or a list of blocks".into()),
    };
    let mut parts: Vec<Value> = Vec::new();
    let mut calls: Vec<Value> = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str).unwrap_or("") {
            "text" => parts.push(json!({"type": "text", "text": block.get("text").and_then(Value::as_str).unwrap_or("")})),
            "image" => parts.extend(image_part(block)),
            "tool_use" => calls.push(json!({
                "id": block.get("id").and_then(Value::as_str).unwrap_or(""),
                "type": "function",
                "function": {
                    "name": block.get("name").and_then(Value::as_str).unwrap_or(""),
                    "arguments": block.get("input").map(Value::to_string).unwrap_or_else(|| "{}".into()),
                },
            })),
            "tool_result" => {
                let mut text = result_text(block.get("content"));
                if block.get("is_error").and_then(Value::as_bool) == Some(true) {
                    text = format!("Error: {text}");
                }
                out.push(json!({
                    "role": "tool",
                    "tool_call_id": block.get("tool_use_id").and_then(Value::as_str).unwrap_or(""),
                    "content": text,
                }));
            }
            // Thinking, documents and other blocks a chat completion cannot carry.
            _ => {}
        }
    }
    let only_text = parts.iter().all(|p| p["type"] == "text");
    let content = if parts.is_empty() {
        Value::Null
    } else if only_text {
        Value::String(
            parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        )
    } else {
        Value::Array(parts)
    };
    if role == "assistant" && !calls.is_empty() {
        out.push(json!({"role": "assistant", "content": content, "tool_calls": calls}));
    } else if !content.is_null() {
        out.push(json!({"role": role, "content": content}));
    }
    Ok(())
}

/// An Anthropic Messages request as an OpenAI chat completion request for `model`.
pub fn request_to_openai(req: &Value, model: &str) -> Result<Value, String> {
    let mut messages: Vec<Value> = Vec::new();
    match req.get("system") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => messages.push(json!({"role": "system", "content": s})),
        Some(Value::Array(blocks)) => {
            let text = result_text(Some(&Value::Array(blocks.clone())));
            messages.push(json!({"role": "system", "content": text}));
        }
        Some(_) => return Err("system: expected a string or a list of text blocks".into()),
    }
    let list = req
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("messages: expected a list of messages")?;
    for (i, m) in list.iter().enumerate() {
        // `system` turns mid-conversation are a beta of Anthropic's that Claude Code uses.
        let role = match m.get("role").and_then(Value::as_str) {
            Some(r @ ("user" | "assistant" | "system")) => r,
            _ => {
                return Err(format!(
                    "messages[{i}].role: expected \"user\", \"assistant\" or \"system\""
                ));
            }
        };
        turn(
            role,
            m.get("content").unwrap_or(&Value::Null),
            &mut messages,
        )
        .map_err(|e| e.replace("messages[]", &format!("messages[{i}]")))?;
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    out.insert("messages".into(), Value::Array(messages));
    if let Some(n) = req.get("max_tokens") {
        out.insert("max_tokens".into(), n.clone());
    }
    for key in ["temperature", "top_p"] {
        if let Some(v) = req.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    if let Some(stop) = req.get("stop_sequences") {
        out.insert("stop".into(), stop.clone());
    }
    if let Some(user) = req.pointer("/metadata/user_id") {
        out.insert("user".into(), user.clone());
    }
    if req.get("stream").and_then(Value::as_bool) == Some(true) {
        out.insert("stream".into(), json!(true));
        // The usage chunk feeds the final `message_delta` (and the gateway's accounting).
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if let Some(tools) = req.get("tools").and_then(Value::as_array) {
        let tools: Vec<Value> = tools
            .iter()
            .filter(|t| t.get("input_schema").is_some())
            .map(|t| {
                json!({"type": "function", "function": {
                    "name": t.get("name"),
                    "description": t.get("description").cloned().unwrap_or(json!("")),
                    "parameters": t.get("input_schema"),
                }})
            })
            .collect();
        if !tools.is_empty() {
            out.insert("tools".into(), Value::Array(tools));
        }
    }
    if let Some(choice) = req.get("tool_choice") {
        let mapped = match choice.get("type").and_then(Value::as_str) {
            Some("auto") => json!("auto"),
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => {
                json!({"type": "function", "function": {"name": choice.get("name")}})
            }
            _ => return Err("tool_choice: expected auto, any, none or tool".into()),
        };
        out.insert("tool_choice".into(), mapped);
        if choice
            .get("disable_parallel_tool_use")
            .and_then(Value::as_bool)
            == Some(true)
        {
            out.insert("parallel_tool_calls".into(), json!(false));
        }
    }
    Ok(Value::Object(out))
}

/// OpenAI's `finish_reason` as Anthropic's `stop_reason`.
pub fn stop_reason(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// Anthropic's usage from OpenAI's (cached prompt tokens are reported apart, as Anthropic
/// does).
fn usage_of(usage: Option<&Value>) -> Value {
    let n = |p: &str| {
        usage
            .and_then(|u| u.pointer(p))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let cached = n("/prompt_tokens_details/cached_tokens");
    json!({
        "input_tokens": n("/prompt_tokens").saturating_sub(cached),
        "output_tokens": n("/completion_tokens"),
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": 0,
    })
}

/// A tool call's arguments as Anthropic's `input` object (unparsable text is kept under
/// `_raw` rather than lost).
fn input_of(arguments: Option<&Value>) -> Value {
    let text = arguments.and_then(Value::as_str).unwrap_or("");
    if text.trim().is_empty() {
        return json!({});
    }
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({"_raw": text}),
    }
}

/// An OpenAI chat completion as an Anthropic message.
pub fn response_to_anthropic(resp: &Value, model: &str) -> Value {
    let choice = resp.pointer("/choices/0");
    let message = choice.and_then(|c| c.get("message"));
    let mut content: Vec<Value> = Vec::new();
    if let Some(text) = message
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        content.push(json!({"type": "text", "text": text}));
    }
    for call in message
        .and_then(|m| m.get("tool_calls"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        content.push(json!({
            "type": "tool_use",
            "id": call.get("id").and_then(Value::as_str).unwrap_or(""),
            "name": call.pointer("/function/name").and_then(Value::as_str).unwrap_or(""),
            "input": input_of(call.pointer("/function/arguments")),
        }));
    }
    let id = resp.get("id").and_then(Value::as_str).unwrap_or("aigw");
    json!({
        "id": format!("msg_{id}"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(choice.and_then(|c| c.get("finish_reason")).and_then(Value::as_str)),
        "stop_sequence": null,
        "usage": usage_of(resp.get("usage")),
    })
}

/// Anthropic's error type for an HTTP status.
fn error_type(status: u16) -> &'static str {
    match status {
        400 | 413 | 422 | 424 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        _ => "api_error",
    }
}

/// An error answer (OpenAI's shape, a gateway's, or any JSON) in Anthropic's shape.
pub fn error_to_anthropic(status: u16, body: &[u8]) -> Value {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let message = parsed
        .pointer("/error/message")
        .or_else(|| parsed.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(500).collect());
    let mut error = json!({"type": error_type(status), "message": message});
    if let Some(code) = parsed.pointer("/error/code").filter(|c| !c.is_null()) {
        error["code"] = code.clone();
    }
    json!({"type": "error", "error": error})
}

/// What block of the Anthropic message is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Text,
    /// A tool use, by OpenAI's tool-call index.
    Tool(u64),
}

/// Translates one OpenAI chat completion stream into Anthropic's message events.
#[derive(Debug)]
pub struct StreamToAnthropic {
    model: String,
    lines: super::anthropic::SseLines,
    started: bool,
    open: Open,
    /// Index of the next content block.
    next_block: u64,
    stop: Option<String>,
    usage: Option<Value>,
    done: bool,
}

fn event(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

impl StreamToAnthropic {
    /// A translator for one stream answering for `model`.
    pub fn new(model: &str) -> Self {
        StreamToAnthropic {
            model: model.to_string(),
            lines: Default::default(),
            started: false,
            open: Open::None,
            next_block: 0,
            stop: None,
            usage: None,
            done: false,
        }
    }

    /// Translates the bytes; returns the Anthropic SSE text to send now.
    pub fn feed(&mut self, bytes: &[u8]) -> String {
        let mut out = String::new();
        let mut lines = std::mem::take(&mut self.lines);
        lines.feed(bytes, |line| self.line_done(line, &mut out));
        self.lines = lines;
        out
    }

    /// Whether the message ended (`message_stop` was sent).
    pub fn finished(&self) -> bool {
        self.done
    }

    /// Ends the message if the provider's stream ended without `[DONE]` but said how it
    /// stopped; the text to send (empty when nothing is to be closed).
    pub fn finish(&mut self) -> String {
        let mut out = String::new();
        if self.started && !self.done && self.stop.is_some() {
            self.end(&mut out);
        }
        out
    }

    fn start(&mut self, id: Option<&str>, out: &mut String) {
        if self.started {
            return;
        }
        self.started = true;
        let message = json!({
            "id": format!("msg_{}", id.unwrap_or("aigw")), "type": "message", "role": "assistant",
            "model": self.model, "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        });
        out.push_str(&event(
            "message_start",
            &json!({"type": "message_start", "message": message}),
        ));
    }

    fn close(&mut self, out: &mut String) {
        if self.open != Open::None {
            out.push_str(&event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": self.next_block - 1}),
            ));
            self.open = Open::None;
        }
    }

    fn open(&mut self, block: Open, content_block: Value, out: &mut String) {
        self.close(out);
        out.push_str(&event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": self.next_block, "content_block": content_block}),
        ));
        self.next_block += 1;
        self.open = block;
    }

    fn delta(&self, delta: Value, out: &mut String) {
        out.push_str(&event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": self.next_block - 1, "delta": delta}),
        ));
    }

    fn end(&mut self, out: &mut String) {
        self.close(out);
        let usage = usage_of(self.usage.as_ref());
        out.push_str(&event(
            "message_delta",
            &json!({"type": "message_delta",
                    "delta": {"stop_reason": stop_reason(self.stop.as_deref()), "stop_sequence": null},
                    "usage": usage}),
        ));
        out.push_str(&event("message_stop", &json!({"type": "message_stop"})));
        self.done = true;
    }

    fn line_done(&mut self, line: &[u8], out: &mut String) {
        if self.done {
            return;
        }
        let Some(data) = line.strip_prefix(b"data:") else {
            return;
        };
        let data = data.strip_prefix(b" ").unwrap_or(data);
        if data.starts_with(b"[DONE]") {
            self.start(None, out);
            self.end(out);
            return;
        }
        let Ok(chunk) = serde_json::from_slice::<Value>(data) else {
            return;
        };
        if let Some(err) = chunk.get("error").filter(|e| !e.is_null()) {
            let body = json!({"error": err}).to_string();
            out.push_str(&event("error", &error_to_anthropic(500, body.as_bytes())));
            self.done = true;
            return;
        }
        self.start(chunk.get("id").and_then(Value::as_str), out);
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.usage = Some(u.clone());
        }
        let Some(choice) = chunk.pointer("/choices/0") else {
            return;
        };
        let delta = choice.get("delta").cloned().unwrap_or(Value::Null);
        if let Some(text) = delta
            .get("content")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            if self.open != Open::Text {
                self.open(Open::Text, json!({"type": "text", "text": ""}), out);
            }
            self.delta(json!({"type": "text_delta", "text": text}), out);
        }
        for call in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            if self.open != Open::Tool(index) {
                let block = json!({
                    "type": "tool_use",
                    "id": call.get("id").and_then(Value::as_str).unwrap_or(""),
                    "name": call.pointer("/function/name").and_then(Value::as_str).unwrap_or(""),
                    "input": {},
                });
                self.open(Open::Tool(index), block, out);
            }
            if let Some(args) = call
                .pointer("/function/arguments")
                .and_then(Value::as_str)
                .filter(|a| !a.is_empty())
            {
                self.delta(
                    json!({"type": "input_json_delta", "partial_json": args}),
                    out,
                );
            }
        }
        if let Some(finish) = choice.get("finish_reason").and_then(Value::as_str) {
            self.stop = Some(finish.to_string());
            self.close(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_translate_system_tools_and_tool_turns() {
        let req = json!({
            "model": "openai/gpt-4o-mini", "max_tokens": 100, "stream": true,
            "system": [{"type": "text", "text": "be terse"}],
            "stop_sequences": ["END"],
            "tools": [{"name": "weather", "description": "w", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any"},
            "messages": [
                {"role": "user", "content": "weather in Paris?"},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "checking"},
                    {"type": "tool_use", "id": "tu_1", "name": "weather", "input": {"city": "Paris"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "tu_1", "content": [{"type": "text", "text": "18C"}]},
                    {"type": "text", "text": "thanks"}]},
            ],
        });
        let out = request_to_openai(&req, "gpt-4o-mini").unwrap();
        assert_eq!(out["model"], "gpt-4o-mini");
        assert_eq!(out["stop"], json!(["END"]));
        assert_eq!(out["stream_options"]["include_usage"], true);
        assert_eq!(out["tool_choice"], "required");
        assert_eq!(out["tools"][0]["function"]["parameters"]["type"], "object");
        let m = out["messages"].as_array().unwrap();
        assert_eq!(m[0], json!({"role": "system", "content": "be terse"}));
        assert_eq!(
            m[2]["tool_calls"][0]["function"]["arguments"],
            r#"{"city":"Paris"}"#
        );
        assert_eq!(m[2]["content"], "checking");
        assert_eq!(
            m[3],
            json!({"role": "tool", "tool_call_id": "tu_1", "content": "18C"})
        );
        assert_eq!(m[4], json!({"role": "user", "content": "thanks"}));
        let err = request_to_openai(
            &json!({"messages": [{"role": "tool", "content": "x"}]}),
            "m",
        )
        .unwrap_err();
        assert!(err.starts_with("messages[0].role"), "{err}");
    }

    #[test]
    fn responses_translate_text_tools_stop_and_usage() {
        let resp = json!({"id": "c1", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "sure",
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 4}}});
        let out = response_to_anthropic(&resp, "gpt-4o-mini");
        assert_eq!(out["stop_reason"], "tool_use");
        assert_eq!(out["content"][0]["text"], "sure");
        assert_eq!(out["content"][1]["input"]["city"], "Paris");
        assert_eq!(out["usage"]["input_tokens"], 6);
        assert_eq!(out["usage"]["cache_read_input_tokens"], 4);
        assert_eq!(out["usage"]["output_tokens"], 5);
        let e = error_to_anthropic(
            429,
            br#"{"error":{"message":"slow down","type":"rate_limited"}}"#,
        );
        assert_eq!(e["error"]["type"], "rate_limit_error");
        assert_eq!(e["error"]["message"], "slow down");
    }

    fn events(out: &str) -> Vec<(String, Value)> {
        out.split("\n\n")
            .filter(|e| !e.trim().is_empty())
            .map(|e| {
                let name = e
                    .lines()
                    .find_map(|l| l.strip_prefix("event: "))
                    .unwrap()
                    .to_string();
                let data = e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
                (name, serde_json::from_str(data).unwrap())
            })
            .collect()
    }

    #[test]
    fn streams_translate_event_by_event_whatever_the_cuts() {
        let chunk = |delta: Value, finish: Value| {
            format!(
                "data: {}\n\n",
                json!({"id": "c1", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
            )
        };
        let stream = [
            chunk(json!({"role": "assistant", "content": ""}), Value::Null),
            chunk(json!({"content": "Hel"}), Value::Null),
            chunk(json!({"content": "lo"}), Value::Null),
            chunk(json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "weather", "arguments": ""}}]}), Value::Null),
            chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}), Value::Null),
            chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}), Value::Null),
            chunk(json!({}), json!("tool_calls")),
            format!("data: {}\n\n", json!({"id": "c1", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 7}})),
            "data: [DONE]\n\n".to_string(),
        ]
        .concat();
        let whole = {
            let mut t = StreamToAnthropic::new("gpt-4o-mini");
            t.feed(stream.as_bytes())
        };
        for cut in [1, 7, 13, 64] {
            let mut t = StreamToAnthropic::new("gpt-4o-mini");
            let pieces: String = stream.as_bytes().chunks(cut).map(|c| t.feed(c)).collect();
            assert_eq!(pieces, whole, "cut {cut}");
            assert!(t.finished());
        }
        let ev = events(&whole);
        let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(ev[5].1["content_block"]["name"], "weather");
        assert_eq!(ev[5].1["index"], 1);
        assert_eq!(ev[9].1["delta"]["stop_reason"], "tool_use");
        assert_eq!(ev[9].1["usage"]["output_tokens"], 7);
        let partial: String = ev[6..8]
            .iter()
            .map(|(_, v)| v["delta"]["partial_json"].as_str().unwrap())
            .collect();
        assert_eq!(partial, r#"{"city":"Paris"}"#);
    }

    #[test]
    fn a_provider_error_mid_stream_is_an_error_event() {
        let mut t = StreamToAnthropic::new("m");
        let out = t.feed(b"data: {\"error\":{\"message\":\"blocked\",\"code\":2017}}\n\n");
        let ev = events(&out);
        assert_eq!(ev.last().unwrap().0, "error");
        assert_eq!(ev.last().unwrap().1["error"]["message"], "blocked");
    }
}
