//! OpenAI chat completions ↔ Gemini `generateContent` / `streamGenerateContent` (`alt=sse`),
//! for the compat endpoint.
//!
//! Request: system messages become `systemInstruction`; user and assistant turns become
//! `contents` with roles `user` and `model` (consecutive turns of one role merged); text and
//! images (data URLs inline, other URLs as `fileData`); assistant tool calls become
//! `functionCall` parts and tool results `functionResponse` parts (named after the call they
//! answer); tools become `functionDeclarations` with their JSON Schema as
//! `parametersJsonSchema`; `tool_choice` becomes `toolConfig`; sampling settings go to
//! `generationConfig`. Answer: text and `functionCall` parts back as content and `tool_calls`,
//! `finishReason` as OpenAI's, `usageMetadata` as `usage` (thinking tokens counted in the
//! completion, as Google bills them). Streams translate chunk by chunk.

use super::anthropic::SseLines;
use super::chat_chunk::ChunkWriter;
use super::chat_request::{content_items, content_text, push_turn, tool_calls};
use serde_json::{Map, Value, json};

/// The Gemini request for an OpenAI chat request; whether it asks for a stream.
pub fn request_from_chat(chat: &Value) -> Result<(Value, bool), String> {
    let messages = chat
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("messages: expected an array")?;
    let mut system: Vec<Value> = Vec::new();
    let mut contents: Vec<Value> = Vec::new();
    // Tool-call id → function name, to name the results.
    let mut call_names: Vec<(String, String)> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let at = |what: &str| format!("messages[{i}].{what}");
        match role {
            "system" | "developer" => {
                system.extend(content_parts(m.get("content"), &at("content"))?)
            }
            "user" => push_turn(
                &mut contents,
                "user",
                "parts",
                content_parts(m.get("content"), &at("content"))?,
            ),
            "assistant" => {
                let mut parts = content_parts(m.get("content"), &at("content"))?;
                for call in tool_calls(m, i)? {
                    if let Some(id) = call.id {
                        call_names.push((id.to_string(), call.name.to_string()));
                    }
                    let mut part = json!({"functionCall": {"name": call.name, "args": call.args}});
                    // Gemini 3 wants each call's thought signature back with the history.
                    if let Some(sig) = call.call.pointer("/extra_content/google/thought_signature")
                    {
                        part["thoughtSignature"] = sig.clone();
                    }
                    parts.push(part);
                }
                push_turn(&mut contents, "model", "parts", parts);
            }
            "tool" => {
                let id = m.get("tool_call_id").and_then(Value::as_str).unwrap_or("");
                let name = call_names
                    .iter()
                    .rev()
                    .find(|(c, _)| c == id)
                    .map(|(_, n)| n.clone())
                    .ok_or_else(|| {
                        at(&format!(
                            "tool_call_id: '{id}' answers no earlier tool call"
                        ))
                    })?;
                let text = content_text(m.get("content"));
                let response = match serde_json::from_str::<Value>(&text) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => json!({"content": text}),
                };
                push_turn(
                    &mut contents,
                    "user",
                    "parts",
                    vec![json!({"functionResponse": {"name": name, "response": response}})],
                );
            }
            other => return Err(at(&format!("role: '{other}' is not a chat role"))),
        }
    }
    let mut out = Map::new();
    out.insert("contents".into(), Value::Array(contents));
    if !system.is_empty() {
        out.insert("systemInstruction".into(), json!({"parts": system}));
    }
    for field in ["logprobs", "top_logprobs"] {
        if chat
            .get(field)
            .is_some_and(|v| !v.is_null() && *v != json!(false))
        {
            return Err(format!(
                "{field}: Gemini's generateContent gives no log probabilities"
            ));
        }
    }
    if let Some(tools) = chat.get("tools").and_then(Value::as_array) {
        if let Some((k, _)) = tools
            .iter()
            .enumerate()
            .find(|(_, t)| t.get("type").and_then(Value::as_str) != Some("function"))
        {
            return Err(format!(
                "tools[{k}].type: only function tools can be sent to Gemini"
            ));
        }
        let declarations: Vec<Value> = tools
            .iter()
            .filter_map(|t| t.get("function"))
            .map(|f| {
                let mut d = json!({"name": f.get("name").cloned().unwrap_or(Value::Null)});
                if let Some(desc) = f.get("description") {
                    d["description"] = desc.clone();
                }
                if let Some(p) = f.get("parameters") {
                    d["parametersJsonSchema"] = p.clone();
                }
                d
            })
            .collect();
        if !declarations.is_empty() {
            out.insert(
                "tools".into(),
                json!([{"functionDeclarations": declarations}]),
            );
        }
    }
    if let Some(choice) = chat.get("tool_choice") {
        let config = match choice {
            Value::String(s) if s == "none" => json!({"mode": "NONE"}),
            Value::String(s) if s == "required" => json!({"mode": "ANY"}),
            Value::String(s) if s == "auto" => json!({"mode": "AUTO"}),
            Value::String(s) => {
                return Err(format!(
                    "tool_choice: '{s}' is not one of none, auto, required"
                ));
            }
            other => match other.pointer("/function/name") {
                Some(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
                None => return Err("tool_choice: expected a mode or a function".into()),
            },
        };
        out.insert(
            "toolConfig".into(),
            json!({"functionCallingConfig": config}),
        );
    }
    let mut generation = Map::new();
    let mut copy = |from: &str, to: &str| {
        if let Some(v) = chat.get(from).filter(|v| !v.is_null()) {
            generation.insert(to.into(), v.clone());
        }
    };
    copy("max_tokens", "maxOutputTokens");
    copy("max_completion_tokens", "maxOutputTokens");
    copy("temperature", "temperature");
    copy("top_p", "topP");
    copy("n", "candidateCount");
    copy("seed", "seed");
    copy("presence_penalty", "presencePenalty");
    copy("frequency_penalty", "frequencyPenalty");
    match chat.get("stop") {
        Some(Value::String(s)) => {
            generation.insert("stopSequences".into(), json!([s]));
        }
        Some(v @ Value::Array(_)) => {
            generation.insert("stopSequences".into(), v.clone());
        }
        _ => {}
    }
    match chat
        .pointer("/response_format/type")
        .and_then(Value::as_str)
    {
        Some("json_object") => {
            generation.insert("responseMimeType".into(), json!("application/json"));
        }
        Some("json_schema") => {
            generation.insert("responseMimeType".into(), json!("application/json"));
            if let Some(schema) = chat.pointer("/response_format/json_schema/schema") {
                generation.insert("responseJsonSchema".into(), schema.clone());
            }
        }
        _ => {}
    }
    // Google's own mapping of OpenAI's reasoning effort to a thinking budget.
    if let Some(effort) = chat.get("reasoning_effort").and_then(Value::as_str) {
        let budget = match effort {
            "none" | "minimal" => 0,
            "low" => 1024,
            "medium" => 8192,
            "high" => 24576,
            other => {
                return Err(format!(
                    "reasoning_effort: '{other}' is not one of none, minimal, low, medium, high"
                ));
            }
        };
        generation.insert("thinkingConfig".into(), json!({"thinkingBudget": budget}));
    }
    if !generation.is_empty() {
        out.insert("generationConfig".into(), Value::Object(generation));
    }
    let stream = chat.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if stream && chat.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err("n: a streamed answer to Gemini has one choice (n = 1)".into());
    }
    Ok((Value::Object(out), stream))
}

/// A message's content as Gemini parts.
fn content_parts(content: Option<&Value>, at: &str) -> Result<Vec<Value>, String> {
    content_items(content, at, "Gemini", |at, url| {
        Ok(image(url.ok_or_else(|| format!("{at}: required"))?))
    })
}

/// An image part: a data URL inline, any other URL by reference.
fn image(url: &str) -> Value {
    if let Some(rest) = url.strip_prefix("data:")
        && let Some((mime, data)) = rest.split_once(";base64,")
    {
        return json!({"inlineData": {"mimeType": mime, "data": data}});
    }
    let lower = url.to_ascii_lowercase();
    let mime = if lower.ends_with(".png") {
        "image/png"
    } else if lower.ends_with(".webp") {
        "image/webp"
    } else if lower.ends_with(".gif") {
        "image/gif"
    } else {
        "image/jpeg"
    };
    json!({"fileData": {"mimeType": mime, "fileUri": url}})
}

/// Gemini's finish reason as OpenAI's.
fn finish_reason(reason: &str, called: bool) -> &'static str {
    match reason {
        _ if called => "tool_calls",
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            "content_filter"
        }
        _ => "stop",
    }
}

/// A tag that makes this answer's generated call ids unique.
fn call_tag() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_string()
}

/// `usageMetadata` as OpenAI's `usage` (none when Gemini reported none: never invented).
fn usage(meta: &Value) -> Value {
    if !meta.is_object() {
        return Value::Null;
    }
    let n = |k: &str| meta.get(k).and_then(Value::as_u64).unwrap_or(0);
    let thoughts = n("thoughtsTokenCount");
    let completion = n("candidatesTokenCount") + thoughts;
    // Built-in tools' prompts are billed as input.
    let prompt = n("promptTokenCount") + n("toolUsePromptTokenCount");
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": n("cachedContentTokenCount")},
        "completion_tokens_details": {"reasoning_tokens": thoughts},
    })
}

/// A candidate's text and function calls (thought parts left out). Each call gets an id unique
/// across the conversation (Gemini's own when it gives one), and keeps its thought signature
/// where OpenAI clients carry unknown fields back (`extra_content.google`).
fn candidate_output(candidate: &Value, first_call: usize, tag: &str) -> (String, Vec<Value>) {
    let mut text = String::new();
    let mut calls = Vec::new();
    for p in candidate
        .pointer("/content/parts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if p.get("thought").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        if let Some(t) = p.get("text").and_then(Value::as_str) {
            text.push_str(t);
        }
        if let Some(call) = p.get("functionCall") {
            let index = first_call + calls.len();
            let id = call
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| format!("call_{tag}_{index}"));
            let mut out = json!({
                "index": index,
                "id": id,
                "type": "function",
                "function": {
                    "name": call.get("name").cloned().unwrap_or(Value::Null),
                    "arguments": call.get("args").cloned().unwrap_or(json!({})).to_string(),
                },
            });
            if let Some(sig) = p.get("thoughtSignature") {
                out["extra_content"] = json!({"google": {"thought_signature": sig}});
            }
            calls.push(out);
        }
    }
    (text, calls)
}

/// A Gemini answer as an OpenAI chat completion.
pub fn response_to_chat(g: &Value, model: &str, created: u64) -> Value {
    let choices: Vec<Value> = g
        .get("candidates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| {
            let (text, mut calls) = candidate_output(c, 0, &call_tag());
            let reason = c.get("finishReason").and_then(Value::as_str).unwrap_or("STOP");
            let mut message = json!({"role": "assistant",
                "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) }});
            if !calls.is_empty() {
                for call in &mut calls {
                    if let Some(o) = call.as_object_mut() {
                        o.remove("index");
                    }
                }
                message["tool_calls"] = Value::Array(calls.clone());
            }
            json!({"index": c.get("index").cloned().unwrap_or(json!(i)), "message": message,
                   "finish_reason": finish_reason(reason, !calls.is_empty()), "logprobs": null})
        })
        .collect();
    // A prompt Gemini refused has no candidates: an empty, filtered answer.
    let choices = if choices.is_empty() {
        vec![
            json!({"index": 0, "message": {"role": "assistant", "content": ""},
                     "finish_reason": "content_filter", "logprobs": null}),
        ]
    } else {
        choices
    };
    json!({
        "id": g.get("responseId").and_then(Value::as_str).map(|r| format!("chatcmpl-{r}")).unwrap_or_else(|| "chatcmpl-aigw".into()),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": usage(g.get("usageMetadata").unwrap_or(&Value::Null)),
    })
}

/// A Gemini error (`{"error": {"code", "message", "status"}}`) in OpenAI's shape.
pub fn error_to_openai(body: &[u8]) -> Value {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let message = parsed
        .pointer("/error/message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(500).collect());
    let kind = parsed
        .pointer("/error/status")
        .and_then(Value::as_str)
        .unwrap_or("api_error")
        .to_ascii_lowercase();
    json!({"error": {"message": message, "type": kind, "code": null, "param": null}})
}

/// Gemini's SSE stream as OpenAI chat completion chunks, chunk by chunk.
pub struct StreamToChat {
    out: ChunkWriter,
    lines: SseLines,
    started: bool,
    calls: usize,
    usage: Value,
    done: bool,
    include_usage: bool,
    tag: String,
}

impl StreamToChat {
    /// A translator for one stream.
    pub fn new(model: &str, created: u64, include_usage: bool) -> Self {
        StreamToChat {
            out: ChunkWriter::new(model, created),
            lines: SseLines::default(),
            started: false,
            calls: 0,
            usage: Value::Null,
            done: false,
            include_usage,
            tag: call_tag(),
        }
    }

    fn chunk(&self, delta: Value, finish: Value) -> String {
        self.out.delta(delta, finish)
    }

    fn event(&mut self, g: &Value, out: &mut String) {
        if let Some(meta) = g.get("usageMetadata") {
            self.usage = meta.clone();
        }
        if !self.started {
            self.started = true;
            out.push_str(&self.chunk(json!({"role": "assistant", "content": ""}), Value::Null));
        }
        let Some(candidate) = g.pointer("/candidates/0") else {
            // A prompt Gemini refused: no candidates, a block reason; the answer is filtered.
            if g.pointer("/promptFeedback/blockReason").is_some() {
                self.end("content_filter", out);
            }
            return;
        };
        let (text, calls) = candidate_output(candidate, self.calls, &self.tag);
        if !text.is_empty() {
            out.push_str(&self.chunk(json!({"content": text}), Value::Null));
        }
        if !calls.is_empty() {
            self.calls += calls.len();
            out.push_str(&self.chunk(json!({"tool_calls": calls}), Value::Null));
        }
        if let Some(reason) = candidate.get("finishReason").and_then(Value::as_str) {
            let finish = finish_reason(reason, self.calls > 0);
            self.end(finish, out);
        }
    }

    /// The terminal chunks: the finish reason, the usage when asked, `[DONE]`.
    fn end(&mut self, finish: &str, out: &mut String) {
        let usage = self.include_usage.then(|| usage(&self.usage));
        out.push_str(&self.out.end(json!(finish), usage));
        self.done = true;
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
    use super::*;

    #[test]
    fn a_conversation_with_tools_translates_to_gemini() {
        let chat = json!({
        "model": "gemini-2.0-flash", "stream": true, "max_tokens": 50, "stop": "END",
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "w",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "weather?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "{\"temp\": 18}"},
            {"role": "user", "content": "thanks"},
        ]});
        let (g, stream) = request_from_chat(&chat).unwrap();
        assert!(stream);
        assert_eq!(g["systemInstruction"]["parts"][0]["text"], "be brief");
        assert_eq!(
            g["contents"][0]["parts"][1]["inlineData"]["mimeType"],
            "image/png"
        );
        assert_eq!(g["contents"][1]["role"], "model");
        assert_eq!(
            g["contents"][1]["parts"][0]["functionCall"]["args"]["city"],
            "Paris"
        );
        // The tool's result and the next user message are one user turn.
        assert_eq!(
            g["contents"][2]["parts"][0]["functionResponse"]["name"],
            "get_weather"
        );
        assert_eq!(
            g["contents"][2]["parts"][0]["functionResponse"]["response"]["temp"],
            18
        );
        assert_eq!(g["contents"][2]["parts"][1]["text"], "thanks");
        assert_eq!(
            g["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"]["type"],
            "object"
        );
        assert_eq!(
            g["toolConfig"]["functionCallingConfig"]["allowedFunctionNames"][0],
            "get_weather"
        );
        assert_eq!(g["generationConfig"]["maxOutputTokens"], 50);
        assert_eq!(g["generationConfig"]["stopSequences"], json!(["END"]));
        let orphan = json!({"messages": [{"role": "tool", "tool_call_id": "x", "content": "1"}]});
        assert!(
            request_from_chat(&orphan)
                .unwrap_err()
                .contains("answers no earlier")
        );
    }

    #[test]
    fn call_ids_are_unique_and_thought_signatures_go_back() {
        let g = json!({"candidates": [{"content": {"parts": [
            {"functionCall": {"name": "a", "args": {}}, "thoughtSignature": "sig-1"}]},
            "finishReason": "STOP"}]});
        let one = response_to_chat(&g, "m", 1);
        let two = response_to_chat(&g, "m", 1);
        let id = |c: &Value| c["choices"][0]["message"]["tool_calls"][0]["id"].clone();
        assert_ne!(id(&one), id(&two), "two answers' calls never share an id");
        let call = one["choices"][0]["message"]["tool_calls"][0].clone();
        assert_eq!(
            call["extra_content"]["google"]["thought_signature"],
            "sig-1"
        );
        // The client sends the call back in its history: the signature returns to Gemini, and
        // the result is named after the most recent call with that id.
        let chat = json!({"messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": id(&one), "content": "ok"}]});
        let (req, _) = request_from_chat(&chat).unwrap();
        assert_eq!(req["contents"][1]["parts"][0]["thoughtSignature"], "sig-1");
        assert_eq!(
            req["contents"][2]["parts"][0]["functionResponse"]["name"],
            "a"
        );
        let bad = json!({"messages": [], "tool_choice": "sometimes"});
        assert!(request_from_chat(&bad).unwrap_err().contains("tool_choice"));
        let streamed_n = json!({"messages": [], "stream": true, "n": 2});
        assert!(
            request_from_chat(&streamed_n)
                .unwrap_err()
                .starts_with("n:")
        );
        let effort = json!({"messages": [], "reasoning_effort": "low"});
        assert_eq!(
            request_from_chat(&effort).unwrap().0["generationConfig"]["thinkingConfig"]["thinkingBudget"],
            1024
        );
    }

    #[test]
    fn a_blocked_prompt_ends_a_stream_as_filtered() {
        let mut t = StreamToChat::new("m", 1, false);
        let out = t.feed(b"data: {\"promptFeedback\":{\"blockReason\":\"SAFETY\"}}\n\n");
        assert!(t.finished());
        assert!(
            out.contains("\"finish_reason\":\"content_filter\""),
            "{out}"
        );
    }

    #[test]
    fn answers_and_streams_translate_back() {
        let g = json!({"candidates": [{"content": {"parts": [{"text": "thinking", "thought": true},
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}], "role": "model"},
            "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 3}});
        let c = response_to_chat(&g, "gemini-2.5-flash", 1);
        assert_eq!(c["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            c["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Paris\"}"
        );
        assert!(c["choices"][0]["message"]["content"].is_null());
        assert_eq!(c["usage"]["completion_tokens"], 8);
        assert_eq!(
            c["usage"]["completion_tokens_details"]["reasoning_tokens"],
            3
        );

        let mut t = StreamToChat::new("gemini-2.0-flash", 1, true);
        let first = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hel\"}],\"role\":\"model\"}}],\"usageMetadata\":{\"promptTokenCount\":4,\"candidatesTokenCount\":1}}\r\n\r\n";
        let last = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"lo\"}],\"role\":\"model\"},\"finishReason\":\"MAX_TOKENS\"}],\"usageMetadata\":{\"promptTokenCount\":4,\"candidatesTokenCount\":2}}\r\n\r\n";
        let mut out = String::new();
        // Cut mid-event: the translation does not depend on chunk boundaries.
        let all = format!("{first}{last}");
        let (a, b) = all.split_at(37);
        out.push_str(&t.feed(a.as_bytes()));
        assert!(!t.finished());
        out.push_str(&t.feed(b.as_bytes()));
        out.push_str(&t.finish());
        assert!(t.finished());
        let chunks = super::super::chat_chunk::data_values(&out);
        let text: String = chunks
            .iter()
            .filter_map(|c| {
                c.pointer("/choices/0/delta/content")
                    .and_then(Value::as_str)
            })
            .collect();
        assert_eq!(text, "Hello");
        assert!(
            chunks
                .iter()
                .any(|c| c.pointer("/choices/0/finish_reason") == Some(&json!("length")))
        );
        assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 2);
        assert!(out.ends_with("data: [DONE]\n\n"));
        assert_eq!(
            error_to_openai(
                br#"{"error":{"code":400,"message":"bad","status":"INVALID_ARGUMENT"}}"#
            )["error"]["type"],
            "invalid_argument"
        );
    }
}
