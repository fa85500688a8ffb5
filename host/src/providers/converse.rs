//! OpenAI chat completions ↔ Bedrock Converse / ConverseStream, for the compat endpoint.
//!
//! Request: system messages become `system`; turns become `messages` (`user` / `assistant`,
//! consecutive turns of one role merged) of content blocks: `text`, `image` (data URLs; Bedrock
//! takes no image URLs), assistant tool calls as `toolUse`, tool results as `toolResult`;
//! tools become `toolConfig.tools[].toolSpec` with the JSON Schema as `inputSchema.json`, and
//! `tool_choice` its `toolChoice`; `max_tokens`, `temperature`, `top_p` and `stop` go to
//! `inferenceConfig`. Answer: text and `toolUse` blocks back as content and `tool_calls`,
//! `stopReason` as OpenAI's finish reason, `usage` (cache reads and writes inside the prompt
//! tokens, as for Anthropic). ConverseStream's event stream translates frame by frame.

use super::chat_chunk::ChunkWriter;
use super::chat_request::{content_items, content_text, push_turn, tool_calls};
use super::eventstream::{Frame, take_frame};
use serde_json::{Map, Value, json};

/// The Converse request for an OpenAI chat request; whether it asks for a stream.
pub fn request_from_chat(chat: &Value) -> Result<(Value, bool), String> {
    let messages = chat
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("messages: expected an array")?;
    let mut system: Vec<Value> = Vec::new();
    let mut turns: Vec<Value> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let at = |what: &str| format!("messages[{i}].{what}");
        match m.get("role").and_then(Value::as_str).unwrap_or("") {
            "system" | "developer" => system.extend(blocks(m.get("content"), &at("content"))?),
            "user" => push_turn(
                &mut turns,
                "user",
                "content",
                blocks(m.get("content"), &at("content"))?,
            ),
            "assistant" => {
                let mut content = blocks(m.get("content"), &at("content"))?;
                for (k, call) in tool_calls(m, i)?.into_iter().enumerate() {
                    content.push(json!({"toolUse": {
                        "toolUseId": call.id.map(str::to_string).unwrap_or_else(|| format!("call_{k}")),
                        "name": call.name,
                        "input": call.args,
                    }}));
                }
                push_turn(&mut turns, "assistant", "content", content);
            }
            "tool" => {
                let id = m.get("tool_call_id").and_then(Value::as_str).unwrap_or("");
                let text = content_text(m.get("content"));
                let content = match serde_json::from_str::<Value>(&text) {
                    Ok(v @ Value::Object(_)) => json!([{"json": v}]),
                    _ => json!([{"text": text}]),
                };
                push_turn(
                    &mut turns,
                    "user",
                    "content",
                    vec![json!({"toolResult": {"toolUseId": id, "content": content}})],
                );
            }
            other => return Err(at(&format!("role: '{other}' is not a chat role"))),
        }
    }
    let mut out = Map::new();
    out.insert("messages".into(), Value::Array(turns));
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    let tools: Vec<Value> = chat
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.get("function"))
        .map(|f| {
            let mut spec = json!({
                "name": f.get("name").cloned().unwrap_or(Value::Null),
                "inputSchema": {"json": f.get("parameters").cloned().unwrap_or(json!({"type": "object"}))},
            });
            if let Some(d) = f.get("description") {
                spec["description"] = d.clone();
            }
            json!({"toolSpec": spec})
        })
        .collect();
    let choice = match chat.get("tool_choice") {
        None => None,
        Some(Value::String(s)) if s == "auto" => Some(json!({"auto": {}})),
        Some(Value::String(s)) if s == "required" => Some(json!({"any": {}})),
        // Converse has no "none": the tools are not offered.
        Some(Value::String(s)) if s == "none" => Some(Value::Null),
        Some(v) => match v.pointer("/function/name") {
            Some(name) => Some(json!({"tool": {"name": name}})),
            None => return Err("tool_choice: expected a mode or a function".into()),
        },
    };
    if !tools.is_empty() && choice != Some(Value::Null) {
        let mut config = json!({"tools": tools});
        if let Some(c) = choice {
            config["toolChoice"] = c;
        }
        out.insert("toolConfig".into(), config);
    }
    let mut inference = Map::new();
    for (from, to) in [
        ("max_tokens", "maxTokens"),
        ("max_completion_tokens", "maxTokens"),
        ("temperature", "temperature"),
        ("top_p", "topP"),
    ] {
        if let Some(v) = chat.get(from).filter(|v| !v.is_null()) {
            inference.insert(to.into(), v.clone());
        }
    }
    match chat.get("stop") {
        Some(Value::String(s)) => {
            inference.insert("stopSequences".into(), json!([s]));
        }
        Some(v @ Value::Array(_)) => {
            inference.insert("stopSequences".into(), v.clone());
        }
        _ => {}
    }
    if !inference.is_empty() {
        out.insert("inferenceConfig".into(), Value::Object(inference));
    }
    let stream = chat.get("stream").and_then(Value::as_bool).unwrap_or(false);
    Ok((Value::Object(out), stream))
}

/// A message's content as Converse content blocks.
fn blocks(content: Option<&Value>, at: &str) -> Result<Vec<Value>, String> {
    content_items(content, at, "Bedrock", |at, url| {
        let Some((mime, data)) = url
            .unwrap_or("")
            .strip_prefix("data:")
            .and_then(|r| r.split_once(";base64,"))
        else {
            return Err(format!(
                "{at}: Bedrock takes images inline only (a data: URL)"
            ));
        };
        let format = mime.strip_prefix("image/").unwrap_or(mime);
        Ok(json!({"image": {"format": format, "source": {"bytes": data}}}))
    })
}

/// Converse's stop reason as OpenAI's finish reason.
fn finish_reason(stop: &str) -> &'static str {
    match stop {
        "max_tokens" => "length",
        "tool_use" => "tool_calls",
        "guardrail_intervened" | "content_filtered" => "content_filter",
        _ => "stop",
    }
}

/// Converse's `usage` as OpenAI's.
fn usage(u: &Value) -> Value {
    if !u.is_object() {
        return Value::Null;
    }
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let read = n("cacheReadInputTokens");
    let prompt = n("inputTokens") + read + n("cacheWriteInputTokens");
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": n("outputTokens"),
        "total_tokens": prompt + n("outputTokens"),
        "prompt_tokens_details": {"cached_tokens": read},
    })
}

/// A Converse answer as an OpenAI chat completion.
pub fn response_to_chat(c: &Value, model: &str, created: u64) -> Value {
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in c
        .pointer("/output/message/content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(t) = block.get("text").and_then(Value::as_str) {
            text.push_str(t);
        }
        if let Some(u) = block.get("toolUse") {
            calls.push(json!({
                "id": u.get("toolUseId").cloned().unwrap_or(Value::Null),
                "type": "function",
                "function": {
                    "name": u.get("name").cloned().unwrap_or(Value::Null),
                    "arguments": u.get("input").cloned().unwrap_or(json!({})).to_string(),
                },
            }));
        }
    }
    let stop = c
        .get("stopReason")
        .and_then(Value::as_str)
        .unwrap_or("end_turn");
    let mut message = json!({"role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) }});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    json!({
        "id": "chatcmpl-aigw",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(stop), "logprobs": null}],
        "usage": usage(c.get("usage").unwrap_or(&Value::Null)),
    })
}

/// A Bedrock error (`{"message": …}`, its kind in `x-amzn-errortype`) in OpenAI's shape.
pub fn error_to_openai(body: &[u8]) -> Value {
    super::responses::error_to_openai(body)
}

/// ConverseStream's event stream as OpenAI chat completion chunks, frame by frame.
pub struct StreamToChat {
    out: ChunkWriter,
    pending: Vec<u8>,
    /// Converse content-block index → OpenAI tool-call index.
    tools: Vec<(u64, usize)>,
    finish: Option<&'static str>,
    done: bool,
    include_usage: bool,
}

impl StreamToChat {
    /// A translator for one stream.
    pub fn new(model: &str, created: u64, include_usage: bool) -> Self {
        StreamToChat {
            out: ChunkWriter::new(model, created),
            pending: Vec::new(),
            tools: Vec::new(),
            finish: None,
            done: false,
            include_usage,
        }
    }

    fn chunk(&self, delta: Value, finish: Value) -> String {
        self.out.delta(delta, finish)
    }

    fn frame(&mut self, frame: &Frame, out: &mut String) {
        let Ok(p) = serde_json::from_slice::<Value>(&frame.payload) else {
            return;
        };
        if frame.header(":message-type").as_deref() == Some("exception") {
            let kind = frame.header(":exception-type").unwrap_or_default();
            let message = p.get("message").and_then(Value::as_str).unwrap_or("");
            let e = json!({"error": {"message": format!("{kind}: {message}"), "type": kind}});
            out.push_str(&format!("data: {e}\n\n"));
            return;
        }
        let block = p
            .get("contentBlockIndex")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        match frame.header(":event-type").as_deref().unwrap_or("") {
            "messageStart" => {
                out.push_str(&self.chunk(json!({"role": "assistant", "content": ""}), Value::Null));
            }
            "contentBlockStart" => {
                if let Some(u) = p.pointer("/start/toolUse") {
                    let index = self.tools.len();
                    self.tools.push((block, index));
                    let call = json!({"index": index, "id": u.get("toolUseId"), "type": "function",
                        "function": {"name": u.get("name"), "arguments": ""}});
                    out.push_str(&self.chunk(json!({"tool_calls": [call]}), Value::Null));
                }
            }
            "contentBlockDelta" => {
                if let Some(t) = p.pointer("/delta/text").and_then(Value::as_str) {
                    out.push_str(&self.chunk(json!({"content": t}), Value::Null));
                }
                if let Some(args) = p.pointer("/delta/toolUse/input").and_then(Value::as_str)
                    && let Some(&(_, index)) = self.tools.iter().find(|(b, _)| *b == block)
                {
                    let call = json!({"index": index, "function": {"arguments": args}});
                    out.push_str(&self.chunk(json!({"tool_calls": [call]}), Value::Null));
                }
            }
            "messageStop" => {
                let stop = p
                    .get("stopReason")
                    .and_then(Value::as_str)
                    .unwrap_or("end_turn");
                self.finish = Some(finish_reason(stop));
            }
            "metadata" => {
                let finish = self.finish.unwrap_or("stop");
                let usage = self
                    .include_usage
                    .then(|| usage(p.get("usage").unwrap_or(&Value::Null)));
                out.push_str(&self.out.end(json!(finish), usage));
                self.done = true;
            }
            _ => {}
        }
    }

    /// Translates the bytes a provider sent; returns the client's.
    pub fn feed(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        while !self.done {
            match take_frame(&mut self.pending) {
                Ok(Some(frame)) => self.frame(&frame, &mut out),
                Ok(None) => break,
                Err(_) => {
                    self.pending.clear();
                    break;
                }
            }
        }
        out
    }

    /// Whatever the end of the provider's stream completes.
    pub fn finish(&mut self) -> String {
        String::new()
    }

    /// Whether the terminal chunk was sent.
    pub fn finished(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::super::eventstream::encode;
    use super::*;

    #[test]
    fn a_conversation_with_tools_translates_to_converse() {
        let chat = json!({"max_tokens": 40, "stop": ["END"], "tool_choice": "required",
        "tools": [{"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "t1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "t1", "content": "18 degrees"},
        ]});
        let (c, stream) = request_from_chat(&chat).unwrap();
        assert!(!stream);
        assert_eq!(c["system"][0]["text"], "be brief");
        assert_eq!(
            c["messages"][1]["content"][0]["toolUse"]["input"]["city"],
            "Paris"
        );
        assert_eq!(
            c["messages"][2]["content"][0]["toolResult"]["toolUseId"],
            "t1"
        );
        assert_eq!(
            c["messages"][2]["content"][0]["toolResult"]["content"][0]["text"],
            "18 degrees"
        );
        assert_eq!(c["toolConfig"]["toolChoice"], json!({"any": {}}));
        assert_eq!(
            c["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]["type"],
            "object"
        );
        assert_eq!(
            c["inferenceConfig"],
            json!({"maxTokens": 40, "stopSequences": ["END"]})
        );
        let url = json!({"messages": [{"role": "user", "content": [{"type": "image_url",
            "image_url": {"url": "https://x/y.png"}}]}]});
        assert!(request_from_chat(&url).unwrap_err().contains("inline only"));
    }

    #[test]
    fn answers_and_event_streams_translate_back() {
        let answer = json!({"output": {"message": {"role": "assistant", "content": [
            {"toolUse": {"toolUseId": "t9", "name": "get_weather", "input": {"city": "Oslo"}}}]}},
            "stopReason": "tool_use", "usage": {"inputTokens": 10, "outputTokens": 4, "cacheReadInputTokens": 6}});
        let c = response_to_chat(&answer, "amazon.nova-lite-v1:0", 1);
        assert_eq!(c["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(c["choices"][0]["message"]["tool_calls"][0]["id"], "t9");
        assert_eq!(c["usage"]["prompt_tokens"], 16);
        assert_eq!(c["usage"]["prompt_tokens_details"]["cached_tokens"], 6);

        let frame = |event: &str, payload: Value| {
            encode(
                &[(":event-type", event), (":message-type", "event")],
                payload.to_string().as_bytes(),
            )
        };
        let stream = [
            frame("messageStart", json!({"role": "assistant"})),
            frame("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"text": "Hi "}})),
            frame("contentBlockStart", json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "t1", "name": "f"}}})),
            frame("contentBlockDelta", json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"a\":"}}})),
            frame("contentBlockDelta", json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "1}"}}})),
            frame("messageStop", json!({"stopReason": "tool_use"})),
            frame("metadata", json!({"usage": {"inputTokens": 3, "outputTokens": 7}})),
        ]
        .concat();
        for cut in [1, 13, 100, stream.len() - 1] {
            let mut t = StreamToChat::new("m", 1, true);
            let mut out = t.feed(&stream[..cut]);
            out.push_str(&t.feed(&stream[cut..]));
            assert!(t.finished(), "cut {cut}");
            let chunks = super::super::chat_chunk::data_values(&out);
            let args: String = chunks
                .iter()
                .filter_map(|c| {
                    c.pointer("/choices/0/delta/tool_calls/0/function/arguments")
                        .and_then(Value::as_str)
                })
                .collect();
            assert_eq!(args, "{\"a\":1}");
            assert!(
                chunks
                    .iter()
                    .any(|c| c.pointer("/choices/0/finish_reason") == Some(&json!("tool_calls")))
            );
            assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 7);
        }
    }
}
