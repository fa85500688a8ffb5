//! OpenAI chat completions ↔ Cohere's native v2 chat (`POST /v2/chat`), for the compat endpoint.
//!
//! Request: messages keep their roles (`developer` becomes `system`); text and `image_url`
//! parts pass as Cohere's content items; assistant tool calls and tool results keep OpenAI's
//! shape, which Cohere shares; function tools pass as they are; `tool_choice` `required` and
//! `none` become `REQUIRED` and `NONE`, and a named function is required with only that tool
//! offered; sampling settings are renamed (`top_p` → `p`, `stop` → `stop_sequences`); a JSON
//! `response_format` becomes Cohere's `json_object` (with its schema). Answer: text items
//! joined (thinking left out), tool calls, `finish_reason` in OpenAI's terms, and usage from
//! the billed units (what Cohere charges). A stream's events (`message-start`,
//! `content-delta`, `tool-call-start`, `tool-call-delta`, `message-end`) translate one by one.

use super::anthropic::SseLines;
use super::chat_chunk::ChunkWriter;
use super::chat_request::content_items;
use serde_json::{Map, Value, json};

/// The Cohere v2 chat request for an OpenAI chat request to `model`.
pub fn request_from_chat(chat: &Value, model: &str) -> Result<Value, String> {
    let messages = chat
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("messages: expected an array")?;
    let mut out_messages = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let at = |what: &str| format!("messages[{i}].{what}");
        let content = m.get("content");
        let message = match role {
            "system" | "developer" => {
                json!({"role": "system", "content": super::chat_request::content_text(content)})
            }
            "user" => json!({"role": "user", "content": content_value(content, &at("content"))?}),
            "assistant" => {
                let mut a = json!({"role": "assistant"});
                let text = content_value(content, &at("content"))?;
                if !text.is_null() {
                    a["content"] = text;
                }
                if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
                    let calls: Result<Vec<Value>, String> = calls
                        .iter()
                        .enumerate()
                        .map(|(k, c)| {
                            let at = at(&format!("tool_calls[{k}]"));
                            let name = c
                                .pointer("/function/name")
                                .and_then(Value::as_str)
                                .ok_or_else(|| format!("{at}.function.name: required"))?;
                            Ok(json!({
                                "id": c.get("id").and_then(Value::as_str).unwrap_or(""),
                                "type": "function",
                                "function": {
                                    "name": name,
                                    "arguments": c.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}"),
                                },
                            }))
                        })
                        .collect();
                    let calls = calls?;
                    if !calls.is_empty() {
                        a["tool_calls"] = Value::Array(calls);
                    }
                }
                a
            }
            "tool" => json!({
                "role": "tool",
                "tool_call_id": m.get("tool_call_id").and_then(Value::as_str)
                    .ok_or_else(|| at("tool_call_id: required"))?,
                "content": super::chat_request::content_text(content),
            }),
            other => return Err(at(&format!("role: '{other}' is not a chat role"))),
        };
        out_messages.push(message);
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    out.insert("messages".into(), Value::Array(out_messages));
    for field in ["logprobs", "top_logprobs", "reasoning_effort"] {
        if chat
            .get(field)
            .is_some_and(|v| !v.is_null() && *v != json!(false))
        {
            return Err(format!("{field}: not translated to Cohere's v2 chat"));
        }
    }
    if chat.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err("n: Cohere's v2 chat gives one answer (n = 1)".into());
    }
    let mut tools: Vec<Value> = Vec::new();
    if let Some(list) = chat.get("tools").and_then(Value::as_array) {
        for (k, t) in list.iter().enumerate() {
            if t.get("type").and_then(Value::as_str) != Some("function") {
                return Err(format!(
                    "tools[{k}].type: only function tools can be sent to Cohere"
                ));
            }
            let f = t
                .get("function")
                .ok_or_else(|| format!("tools[{k}].function: required"))?;
            let mut function = json!({"name": f.get("name").cloned().unwrap_or(Value::Null)});
            for key in ["description", "parameters"] {
                if let Some(v) = f.get(key) {
                    function[key] = v.clone();
                }
            }
            tools.push(json!({"type": "function", "function": function}));
        }
    }
    if let Some(choice) = chat.get("tool_choice") {
        match choice {
            Value::String(s) if s == "none" => {
                out.insert("tool_choice".into(), json!("NONE"));
            }
            Value::String(s) if s == "required" => {
                out.insert("tool_choice".into(), json!("REQUIRED"));
            }
            Value::String(s) if s == "auto" => {}
            Value::String(s) => {
                return Err(format!(
                    "tool_choice: '{s}' is not one of none, auto, required"
                ));
            }
            other => {
                // Cohere cannot name the tool to call: require a call, offering only that one.
                let name = other
                    .pointer("/function/name")
                    .ok_or("tool_choice: expected a mode or a function")?;
                tools.retain(|t| t.pointer("/function/name") == Some(name));
                if tools.is_empty() {
                    return Err(format!("tool_choice: {name} is not one of the tools"));
                }
                out.insert("tool_choice".into(), json!("REQUIRED"));
            }
        }
    }
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
    }
    let mut copy = |from: &str, to: &str| {
        if let Some(v) = chat.get(from).filter(|v| !v.is_null()) {
            out.insert(to.into(), v.clone());
        }
    };
    copy("max_tokens", "max_tokens");
    copy("max_completion_tokens", "max_tokens");
    copy("temperature", "temperature");
    copy("top_p", "p");
    copy("seed", "seed");
    copy("frequency_penalty", "frequency_penalty");
    copy("presence_penalty", "presence_penalty");
    match chat.get("stop") {
        Some(Value::String(s)) => {
            out.insert("stop_sequences".into(), json!([s]));
        }
        Some(v @ Value::Array(_)) => {
            out.insert("stop_sequences".into(), v.clone());
        }
        _ => {}
    }
    match chat
        .pointer("/response_format/type")
        .and_then(Value::as_str)
    {
        Some("json_object") => {
            out.insert("response_format".into(), json!({"type": "json_object"}));
        }
        Some("json_schema") => {
            let mut format = json!({"type": "json_object"});
            if let Some(schema) = chat.pointer("/response_format/json_schema/schema") {
                format["json_schema"] = schema.clone();
            }
            out.insert("response_format".into(), format);
        }
        _ => {}
    }
    if chat.get("stream").and_then(Value::as_bool) == Some(true) {
        out.insert("stream".into(), json!(true));
    }
    Ok(Value::Object(out))
}

/// A message's content for Cohere: a string as it is, parts as content items, none as null.
fn content_value(content: Option<&Value>, at: &str) -> Result<Value, String> {
    match content {
        None | Some(Value::Null) => Ok(Value::Null),
        Some(Value::String(s)) => Ok(json!(s)),
        Some(_) => {
            let items = content_items(content, at, "Cohere", |at, url| {
                let url = url.ok_or_else(|| format!("{at}: required"))?;
                Ok(json!({"type": "image_url", "image_url": {"url": url}}))
            })?;
            Ok(Value::Array(
                items
                    .into_iter()
                    .map(|i| match i.get("text") {
                        Some(t) if i.get("type").is_none() => json!({"type": "text", "text": t}),
                        _ => i,
                    })
                    .collect(),
            ))
        }
    }
}

/// Cohere's finish reason as OpenAI's.
fn finish_reason(reason: &str) -> &'static str {
    match reason {
        "TOOL_CALL" => "tool_calls",
        // A generation that failed or timed out is cut short, never a complete answer.
        "MAX_TOKENS" | "ERROR" | "TIMEOUT" => "length",
        "ERROR_TOXIC" => "content_filter",
        _ => "stop",
    }
}

/// Cohere's usage as OpenAI's: the billed units, which are what Cohere charges (none when
/// Cohere reported none: never invented).
fn usage(u: &Value) -> Value {
    let Some(billed) = u.get("billed_units").filter(|b| b.is_object()) else {
        return Value::Null;
    };
    let n = |k: &str| billed.get(k).and_then(Value::as_f64).unwrap_or(0.0) as u64;
    let (prompt, completion) = (n("input_tokens"), n("output_tokens"));
    let mut out = json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    });
    if let Some(cached) = u.get("cached_tokens").and_then(Value::as_f64) {
        out["prompt_tokens_details"] = json!({"cached_tokens": cached as u64});
    }
    out
}

/// A Cohere v2 chat answer as an OpenAI chat completion.
pub fn response_to_chat(c: &Value, model: &str, created: u64) -> Value {
    let message = c.get("message").unwrap_or(&Value::Null);
    let text: String = message
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|i| i.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|i| i.get("text").and_then(Value::as_str))
        .collect();
    let calls: Vec<Value> = message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|call| {
            json!({
                "id": call.get("id").cloned().unwrap_or(Value::Null),
                "type": "function",
                "function": {
                    "name": call.pointer("/function/name").cloned().unwrap_or(Value::Null),
                    "arguments": call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}"),
                },
            })
        })
        .collect();
    let mut out_message = json!({"role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) }});
    if !calls.is_empty() {
        out_message["tool_calls"] = Value::Array(calls);
    }
    let reason = c
        .get("finish_reason")
        .and_then(Value::as_str)
        .unwrap_or("COMPLETE");
    json!({
        "id": c.get("id").and_then(Value::as_str).map(|i| format!("chatcmpl-{i}")).unwrap_or_else(|| "chatcmpl-aigw".into()),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": out_message, "finish_reason": finish_reason(reason), "logprobs": null}],
        "usage": usage(c.get("usage").unwrap_or(&Value::Null)),
    })
}

/// Cohere's SSE stream as OpenAI chat completion chunks, event by event.
pub struct StreamToChat {
    out: ChunkWriter,
    lines: SseLines,
    started: bool,
    /// Tool calls started so far (the next one's OpenAI index).
    calls: usize,
    done: bool,
    include_usage: bool,
}

impl StreamToChat {
    /// A translator for one stream.
    pub fn new(model: &str, created: u64, include_usage: bool) -> Self {
        StreamToChat {
            out: ChunkWriter::new(model, created),
            lines: SseLines::default(),
            started: false,
            calls: 0,
            done: false,
            include_usage,
        }
    }

    fn start(&mut self, out: &mut String) {
        if !self.started {
            self.started = true;
            out.push_str(
                &self
                    .out
                    .delta(json!({"role": "assistant", "content": ""}), Value::Null),
            );
        }
    }

    fn event(&mut self, e: &Value, out: &mut String) {
        let kind = e.get("type").and_then(Value::as_str).unwrap_or("");
        if kind == "message-start"
            && let Some(id) = e.get("id").and_then(Value::as_str)
        {
            self.out.id = format!("chatcmpl-{id}");
        }
        self.start(out);
        match kind {
            "content-start" | "content-delta" => {
                if let Some(text) = e
                    .pointer("/delta/message/content/text")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                {
                    out.push_str(&self.out.delta(json!({"content": text}), Value::Null));
                }
            }
            "tool-call-start" => {
                let call = e
                    .pointer("/delta/message/tool_calls")
                    .unwrap_or(&Value::Null);
                let delta = json!({"tool_calls": [{
                    "index": self.calls,
                    "id": call.get("id").cloned().unwrap_or(Value::Null),
                    "type": "function",
                    "function": {
                        "name": call.pointer("/function/name").cloned().unwrap_or(Value::Null),
                        "arguments": call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or(""),
                    },
                }]});
                self.calls += 1;
                out.push_str(&self.out.delta(delta, Value::Null));
            }
            "tool-call-delta" => {
                if let Some(args) = e
                    .pointer("/delta/message/tool_calls/function/arguments")
                    .and_then(Value::as_str)
                    .filter(|a| !a.is_empty())
                {
                    let index = self.calls.saturating_sub(1);
                    let delta =
                        json!({"tool_calls": [{"index": index, "function": {"arguments": args}}]});
                    out.push_str(&self.out.delta(delta, Value::Null));
                }
            }
            "message-end" if e.pointer("/delta/error").is_some_and(|v| !v.is_null()) => {
                // The generation failed: the client's stream ends in an error, not a finish.
                let message = e
                    .pointer("/delta/error")
                    .and_then(Value::as_str)
                    .unwrap_or("the provider's generation failed");
                let err = json!({"error": {"message": message, "type": "api_error", "code": null, "param": null}});
                out.push_str(&format!("data: {err}\n\n"));
                self.done = true;
            }
            "message-end" => {
                let reason = e
                    .pointer("/delta/finish_reason")
                    .and_then(Value::as_str)
                    .unwrap_or("COMPLETE");
                let usage = self
                    .include_usage
                    .then(|| usage(e.pointer("/delta/usage").unwrap_or(&Value::Null)));
                out.push_str(&self.out.end(json!(finish_reason(reason)), usage));
                self.done = true;
            }
            _ => {}
        }
    }

    /// Translates the bytes a provider sent; returns the client's.
    pub fn feed(&mut self, bytes: &[u8]) -> String {
        let mut out = String::new();
        for e in self.lines.data_json(bytes) {
            if !self.done {
                self.event(&e, &mut out);
            }
        }
        out
    }

    /// Whatever the end of the provider's stream completes.
    pub fn finish(&mut self) -> String {
        self.feed(b"\n")
    }

    /// Whether the terminal chunk was sent.
    pub fn finished(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::super::chat_chunk::data_values;
    use super::*;

    #[test]
    fn a_conversation_with_tools_translates_to_cohere() {
        let chat = json!({
            "model": "cohere/command-a-03-2025", "max_tokens": 100, "top_p": 0.9, "stop": "END",
            "messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "look", "arguments": "{\"x\":1}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "a cat"},
            ],
            "tools": [
                {"type": "function", "function": {"name": "look", "parameters": {"type": "object"}}},
                {"type": "function", "function": {"name": "other"}},
            ],
            "tool_choice": {"type": "function", "function": {"name": "look"}},
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
            "stream": true,
        });
        let c = request_from_chat(&chat, "command-a-03-2025").unwrap();
        assert_eq!(c["model"], "command-a-03-2025");
        assert_eq!(
            c["messages"][0],
            json!({"role": "system", "content": "be brief"})
        );
        assert_eq!(
            c["messages"][1]["content"][0],
            json!({"type": "text", "text": "what is this?"})
        );
        assert_eq!(
            c["messages"][1]["content"][1]["image_url"]["url"],
            "data:image/png;base64,AAA"
        );
        assert_eq!(
            c["messages"][2]["tool_calls"][0]["function"]["name"],
            "look"
        );
        assert!(c["messages"][2].get("content").is_none(), "{c}");
        assert_eq!(
            c["messages"][3],
            json!({"role": "tool", "tool_call_id": "c1", "content": "a cat"})
        );
        // A named function: required, and the only one offered.
        assert_eq!(c["tool_choice"], "REQUIRED");
        assert_eq!(c["tools"].as_array().unwrap().len(), 1);
        assert_eq!(c["p"], 0.9);
        assert_eq!(c["stop_sequences"], json!(["END"]));
        assert_eq!(c["max_tokens"], 100);
        assert_eq!(
            c["response_format"]["json_schema"],
            json!({"type": "object"})
        );
        assert_eq!(c["stream"], true);
        for (bad, field) in [
            (json!({"messages": [], "n": 2}), "n"),
            (json!({"messages": [], "logprobs": true}), "logprobs"),
            (json!({"messages": [{"role": "robot"}]}), "messages[0].role"),
            (
                json!({"messages": [{"role": "tool", "content": "x"}]}),
                "messages[0].tool_call_id",
            ),
            (
                json!({"messages": [], "tools": [{"type": "web_search"}]}),
                "tools[0].type",
            ),
        ] {
            let e = request_from_chat(&bad, "m").unwrap_err();
            assert!(e.starts_with(field), "{e}");
        }
    }

    #[test]
    fn answers_translate_back_with_billed_usage() {
        let c = json!({"id": "abc", "finish_reason": "TOOL_CALL",
            "message": {"role": "assistant", "tool_plan": "I will look.",
                "tool_calls": [{"id": "look_1", "type": "function", "function": {"name": "look", "arguments": "{\"x\":1}"}}]},
            "usage": {"billed_units": {"input_tokens": 12, "output_tokens": 7}, "tokens": {"input_tokens": 300, "output_tokens": 40}}});
        let r = response_to_chat(&c, "command-a", 5);
        assert_eq!(r["id"], "chatcmpl-abc");
        assert_eq!(r["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(r["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(r["choices"][0]["message"]["tool_calls"][0]["id"], "look_1");
        assert_eq!(r["usage"]["prompt_tokens"], 12);
        assert_eq!(r["usage"]["completion_tokens"], 7);
        let c = json!({"id": "t", "finish_reason": "MAX_TOKENS", "message": {"role": "assistant",
            "content": [{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]}});
        let r = response_to_chat(&c, "command-a", 5);
        assert_eq!(r["choices"][0]["message"]["content"], "Hi there");
        assert_eq!(r["choices"][0]["finish_reason"], "length");
        assert_eq!(r["usage"], Value::Null);
    }

    #[test]
    fn streams_translate_event_by_event_whatever_the_cuts() {
        let events = [
            json!({"type": "message-start", "id": "s1", "delta": {"message": {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}}}),
            json!({"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}}),
            json!({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "Hel"}}}}),
            json!({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "lo"}}}}),
            json!({"type": "content-end", "index": 0}),
            json!({"type": "tool-plan-delta", "delta": {"message": {"tool_plan": "plan"}}}),
            json!({"type": "tool-call-start", "index": 0, "delta": {"message": {"tool_calls": {"id": "a_1", "type": "function", "function": {"name": "a", "arguments": ""}}}}}),
            json!({"type": "tool-call-delta", "index": 0, "delta": {"message": {"tool_calls": {"function": {"arguments": "{\"x\":"}}}}}),
            json!({"type": "tool-call-delta", "index": 0, "delta": {"message": {"tool_calls": {"function": {"arguments": "1}"}}}}}),
            json!({"type": "tool-call-end", "index": 0}),
            json!({"type": "tool-call-start", "index": 1, "delta": {"message": {"tool_calls": {"id": "b_2", "type": "function", "function": {"name": "b", "arguments": "{}"}}}}}),
            json!({"type": "tool-call-end", "index": 1}),
            json!({"type": "message-end", "delta": {"finish_reason": "TOOL_CALL", "usage": {"billed_units": {"input_tokens": 9, "output_tokens": 4}}}}),
        ];
        let wire: String = events
            .iter()
            .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
            .collect();
        let bytes = wire.as_bytes();
        for cut in [1, 7, 64, bytes.len()] {
            let mut t = StreamToChat::new("command-a", 1, true);
            let mut out = String::new();
            for piece in bytes.chunks(cut) {
                out.push_str(&t.feed(piece));
            }
            out.push_str(&t.finish());
            assert!(t.finished());
            assert!(out.ends_with("data: [DONE]\n\n"), "{out}");
            let chunks = data_values(&out);
            assert!(chunks.iter().all(|c| c["id"] == "chatcmpl-s1"), "{out}");
            let text: String = chunks
                .iter()
                .filter_map(|c| {
                    c.pointer("/choices/0/delta/content")
                        .and_then(Value::as_str)
                })
                .collect();
            assert_eq!(text, "Hello");
            let args: String = chunks
                .iter()
                .filter_map(|c| c.pointer("/choices/0/delta/tool_calls/0"))
                .filter(|c| c["index"] == 0)
                .filter_map(|c| c.pointer("/function/arguments").and_then(Value::as_str))
                .collect();
            assert_eq!(args, "{\"x\":1}");
            let second: Vec<&Value> = chunks
                .iter()
                .filter_map(|c| c.pointer("/choices/0/delta/tool_calls/0"))
                .filter(|c| c["index"] == 1)
                .collect();
            assert_eq!(second[0]["id"], "b_2");
            let finish = chunks.iter().find_map(|c| {
                c.pointer("/choices/0/finish_reason")
                    .and_then(Value::as_str)
            });
            assert_eq!(finish, Some("tool_calls"));
            assert_eq!(chunks.last().unwrap()["usage"]["prompt_tokens"], 9);
        }
        // A generation that failed ends the client's stream in an error.
        let mut t = StreamToChat::new("command-a", 1, false);
        let out = t.feed(
            b"data: {\"type\":\"message-end\",\"delta\":{\"finish_reason\":\"ERROR\",\"error\":\"overloaded\"}}\n\n",
        );
        assert!(t.finished());
        assert!(
            out.contains("\"error\"") && out.contains("overloaded"),
            "{out}"
        );
        assert!(!out.contains("[DONE]"), "{out}");
        // A stream cut before message-end is not finished.
        let mut t = StreamToChat::new("command-a", 1, false);
        t.feed(&bytes[..bytes.len() / 2]);
        t.finish();
        assert!(!t.finished());
    }
}
