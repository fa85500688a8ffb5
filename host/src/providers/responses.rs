//! OpenAI Responses in, chat completions out: the compat endpoint's `responses` entry point
//! for providers without a Responses API (Codex and the Vercel AI SDK pointed at any model).
//! A `previous_response_id` is resolved before this (the gateway's stored responses, in
//! `server::compat::stored`); here the conversation travels whole in `input`. The request becomes a chat completion (sent on to an OpenAI-compatible
//! provider, or translated further to Anthropic Messages), and the answer comes back as a
//! response object, or as Responses stream events translated one by one.

use serde_json::{Map, Value, json};

/// The text of a Responses content list (input or output text parts), and its images.
fn content_parts(content: &Value) -> (String, Vec<Value>) {
    match content {
        Value::String(s) => (s.clone(), Vec::new()),
        Value::Array(parts) => {
            let mut text = Vec::new();
            let mut images = Vec::new();
            for p in parts {
                match p.get("type").and_then(Value::as_str).unwrap_or("") {
                    "input_text" | "output_text" | "text" => {
                        text.push(p.get("text").and_then(Value::as_str).unwrap_or(""));
                    }
                    "input_image" => {
                        if let Some(url) = p.get("image_url").and_then(Value::as_str) {
                            images.push(json!({"type": "image_url", "image_url": {"url": url}}));
                        }
                    }
                    _ => {}
                }
            }
            (text.join("\n"), images)
        }
        _ => (String::new(), Vec::new()),
    }
}

/// A Responses request as a chat completion request for `model`.
pub fn request_to_chat(req: &Value, model: &str) -> Result<Value, String> {
    if req
        .get("previous_response_id")
        .is_some_and(|v| !v.is_null())
    {
        return Err("previous_response_id: this gateway keeps no responses (set store_responses = true in its [gateways.NAME] table), so send the whole conversation in input".into());
    }
    let mut messages: Vec<Value> = Vec::new();
    if let Some(instructions) = req.get("instructions").and_then(Value::as_str) {
        messages.push(json!({"role": "system", "content": instructions}));
    }
    match req.get("input") {
        Some(Value::String(s)) => messages.push(json!({"role": "user", "content": s})),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let kind = item
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("message");
                match kind {
                    "message" => {
                        let role = match item.get("role").and_then(Value::as_str) {
                            Some("developer" | "system") => "system",
                            Some("assistant") => "assistant",
                            Some("user") => "user",
                            _ => {
                                return Err(format!(
                                    "input[{i}].role: expected user, assistant, system or developer"
                                ));
                            }
                        };
                        let (text, images) =
                            content_parts(item.get("content").unwrap_or(&Value::Null));
                        let content = if images.is_empty() {
                            Value::String(text)
                        } else {
                            let mut parts = vec![json!({"type": "text", "text": text})];
                            parts.extend(images);
                            Value::Array(parts)
                        };
                        messages.push(json!({"role": role, "content": content}));
                    }
                    "function_call" => {
                        let call = json!({
                            "id": item.get("call_id").and_then(Value::as_str).unwrap_or(""),
                            "type": "function",
                            "function": {
                                "name": item.get("name").and_then(Value::as_str).unwrap_or(""),
                                "arguments": item.get("arguments").and_then(Value::as_str).unwrap_or("{}"),
                            },
                        });
                        // Calls of one turn go on one assistant message.
                        match messages.last_mut() {
                            Some(last)
                                if last["role"] == "assistant"
                                    && last.get("tool_calls").is_some() =>
                            {
                                if let Some(calls) = last["tool_calls"].as_array_mut() {
                                    calls.push(call);
                                }
                            }
                            _ => messages.push(
                                json!({"role": "assistant", "content": null, "tool_calls": [call]}),
                            ),
                        }
                    }
                    "function_call_output" => {
                        let output = match item.get("output") {
                            Some(Value::String(s)) => s.clone(),
                            Some(other) => content_parts(other).0,
                            None => String::new(),
                        };
                        messages.push(json!({
                            "role": "tool",
                            "tool_call_id": item.get("call_id").and_then(Value::as_str).unwrap_or(""),
                            "content": output,
                        }));
                    }
                    // Reasoning items and other kinds a chat completion cannot carry.
                    _ => {}
                }
            }
        }
        _ => return Err("input: expected a string or a list of items".into()),
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    out.insert("messages".into(), Value::Array(messages));
    if let Some(n) = req.get("max_output_tokens").filter(|n| !n.is_null()) {
        out.insert("max_tokens".into(), n.clone());
    }
    for key in ["temperature", "top_p", "user", "parallel_tool_calls"] {
        if let Some(v) = req.get(key).filter(|v| !v.is_null()) {
            out.insert(key.into(), v.clone());
        }
    }
    if req.get("stream").and_then(Value::as_bool) == Some(true) {
        out.insert("stream".into(), json!(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if let Some(tools) = req.get("tools").and_then(Value::as_array) {
        // Function tools only: hosted tools (web search, file search) need OpenAI itself.
        let tools: Vec<Value> = tools
            .iter()
            .filter(|t| t.get("type").and_then(Value::as_str) == Some("function"))
            .map(|t| {
                json!({"type": "function", "function": {
                    "name": t.get("name"),
                    "description": t.get("description").cloned().unwrap_or(json!("")),
                    "parameters": t.get("parameters").cloned().unwrap_or(json!({"type": "object"})),
                }})
            })
            .collect();
        if !tools.is_empty() {
            out.insert("tools".into(), Value::Array(tools));
        }
    }
    if let Some(choice) = req.get("tool_choice").filter(|c| !c.is_null()) {
        let mapped = match choice {
            Value::String(s) => json!(s),
            Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
                json!({"type": "function", "function": {"name": o.get("name")}})
            }
            _ => return Err("tool_choice: expected auto, none, required or a function".into()),
        };
        out.insert("tool_choice".into(), mapped);
    }
    Ok(Value::Object(out))
}

/// Responses usage from a chat completion's.
fn usage_of(usage: Option<&Value>) -> Value {
    let n = |p: &str| {
        usage
            .and_then(|u| u.pointer(p))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    json!({
        "input_tokens": n("/prompt_tokens"),
        "input_tokens_details": {"cached_tokens": n("/prompt_tokens_details/cached_tokens")},
        "output_tokens": n("/completion_tokens"),
        "output_tokens_details": {"reasoning_tokens": n("/completion_tokens_details/reasoning_tokens")},
        "total_tokens": n("/prompt_tokens") + n("/completion_tokens"),
    })
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({"id": id, "type": "message", "status": status, "role": "assistant",
           "content": [{"type": "output_text", "text": text, "annotations": []}]})
}

fn call_item(id: &str, call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
    json!({"id": id, "type": "function_call", "status": status, "call_id": call_id,
           "name": name, "arguments": arguments})
}

fn response_object(
    id: &str,
    model: &str,
    created: u64,
    status: &str,
    output: Vec<Value>,
    usage: Value,
) -> Value {
    let incomplete = (status == "incomplete").then(|| json!({"reason": "max_output_tokens"}));
    json!({"id": id, "object": "response", "created_at": created, "status": status,
           "model": model, "output": output, "usage": usage, "error": null,
           "incomplete_details": incomplete, "parallel_tool_calls": true, "tools": [],
           "tool_choice": "auto", "text": {"format": {"type": "text"}}})
}

/// A chat completion as a response object.
pub fn chat_to_response(resp: &Value, model: &str, created: u64) -> Value {
    let id = resp.get("id").and_then(Value::as_str).unwrap_or("aigw");
    let choice = resp.pointer("/choices/0");
    let message = choice.and_then(|c| c.get("message"));
    let mut output = Vec::new();
    if let Some(text) = message
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        output.push(message_item(&format!("msg_{id}"), text, "completed"));
    }
    for (i, call) in message
        .and_then(|m| m.get("tool_calls"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        output.push(call_item(
            &format!("fc_{id}_{i}"),
            call.get("id").and_then(Value::as_str).unwrap_or(""),
            call.pointer("/function/name")
                .and_then(Value::as_str)
                .unwrap_or(""),
            call.pointer("/function/arguments")
                .and_then(Value::as_str)
                .unwrap_or(""),
            "completed",
        ));
    }
    let finish = choice
        .and_then(|c| c.get("finish_reason"))
        .and_then(Value::as_str);
    let status = if finish == Some("length") {
        "incomplete"
    } else {
        "completed"
    };
    response_object(
        &format!("resp_{id}"),
        model,
        created,
        status,
        output,
        usage_of(resp.get("usage")),
    )
}

/// An error answer in the shape the OpenAI SDK reads (`{"error": {"message", "type", "code"}}`),
/// whatever shape it came in.
pub fn error_to_openai(body: &[u8]) -> Value {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if parsed.pointer("/error/message").is_some() {
        return parsed;
    }
    let message = parsed
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(500).collect());
    json!({"error": {"message": message, "type": "api_error", "code": null, "param": null}})
}

/// One output item being streamed.
#[derive(Debug)]
enum Item {
    Text {
        id: String,
        text: String,
    },
    Call {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
        index: u64,
    },
}

/// Translates one chat completion stream into Responses events.
#[derive(Debug)]
pub struct StreamToResponses {
    model: String,
    created: u64,
    id: String,
    lines: super::anthropic::SseLines,
    sequence: u64,
    started: bool,
    /// Items finished, in order.
    done_items: Vec<Value>,
    open: Option<Item>,
    finish: Option<String>,
    usage: Option<Value>,
    done: bool,
    /// The id was given, not taken from the chat completion's.
    fixed_id: bool,
    /// Fields set on every response object (`store`, `previous_response_id`).
    fields: Map<String, Value>,
    /// The final response object, once complete and until taken.
    completed: Option<Value>,
}

impl StreamToResponses {
    /// A translator for one stream answering for `model`.
    pub fn new(model: &str, created: u64) -> Self {
        StreamToResponses {
            model: model.to_string(),
            created,
            id: "resp_aigw".into(),
            lines: Default::default(),
            sequence: 0,
            started: false,
            done_items: Vec::new(),
            open: None,
            finish: None,
            usage: None,
            done: false,
            fixed_id: false,
            fields: Map::new(),
            completed: None,
        }
    }

    /// The same translator answering as response `id`, with `fields` on every response object.
    pub fn with_id(mut self, id: &str, fields: Map<String, Value>) -> Self {
        self.id = id.to_string();
        self.fixed_id = true;
        self.fields = fields;
        self
    }

    /// The final response object (`completed` or `incomplete`), once, when sent.
    pub fn take_completed(&mut self) -> Option<Value> {
        self.completed.take()
    }

    /// Translates the bytes; returns the Responses SSE text to send now.
    pub fn feed(&mut self, bytes: &[u8]) -> String {
        let mut out = String::new();
        let mut lines = std::mem::take(&mut self.lines);
        lines.feed(bytes, |line| self.line_done(line, &mut out));
        self.lines = lines;
        out
    }

    /// Whether `response.completed` (or an error) was sent.
    pub fn finished(&self) -> bool {
        self.done
    }

    /// Completes the response if the provider ended its stream after saying how it stopped
    /// but without `[DONE]`.
    pub fn finish(&mut self) -> String {
        let mut out = String::new();
        if self.started && !self.done && self.finish.is_some() {
            self.complete(&mut out);
        }
        out
    }

    fn event(&mut self, name: &str, mut data: Value, out: &mut String) {
        data["type"] = json!(name);
        data["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        out.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    }

    fn response(&self, status: &str, output: Vec<Value>, usage: Value) -> Value {
        let mut r = response_object(&self.id, &self.model, self.created, status, output, usage);
        for (k, v) in &self.fields {
            r[k] = v.clone();
        }
        r
    }

    fn start(&mut self, id: Option<&str>, out: &mut String) {
        if self.started {
            return;
        }
        self.started = true;
        if let Some(id) = id.filter(|_| !self.fixed_id) {
            self.id = format!("resp_{id}");
        }
        let r = self.response("in_progress", Vec::new(), Value::Null);
        self.event("response.created", json!({"response": r}), out);
        let r = self.response("in_progress", Vec::new(), Value::Null);
        self.event("response.in_progress", json!({"response": r}), out);
    }

    fn output_index(&self) -> usize {
        self.done_items.len()
    }

    fn close(&mut self, out: &mut String) {
        let Some(item) = self.open.take() else {
            return;
        };
        let index = self.output_index();
        let done = match item {
            Item::Text { id, text } => {
                self.event(
                    "response.output_text.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0, "text": text}),
                    out,
                );
                self.event(
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0,
                           "part": {"type": "output_text", "text": text, "annotations": []}}),
                    out,
                );
                message_item(&id, &text, "completed")
            }
            Item::Call {
                id,
                call_id,
                name,
                arguments,
                ..
            } => {
                self.event(
                    "response.function_call_arguments.done",
                    json!({"item_id": id, "output_index": index, "arguments": arguments}),
                    out,
                );
                call_item(&id, &call_id, &name, &arguments, "completed")
            }
        };
        self.event(
            "response.output_item.done",
            json!({"output_index": index, "item": done}),
            out,
        );
        self.done_items.push(done);
    }

    fn complete(&mut self, out: &mut String) {
        self.close(out);
        let status = if self.finish.as_deref() == Some("length") {
            "incomplete"
        } else {
            "completed"
        };
        let usage = usage_of(self.usage.as_ref());
        let r = self.response(status, self.done_items.clone(), usage);
        let name = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        self.event(name, json!({"response": r.clone()}), out);
        self.completed = Some(r);
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
            self.complete(out);
            return;
        }
        let Ok(chunk) = serde_json::from_slice::<Value>(data) else {
            return;
        };
        if let Some(err) = chunk.get("error").filter(|e| !e.is_null()) {
            let message = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("provider error")
                .to_string();
            let code = err.get("code").cloned().unwrap_or(Value::Null);
            let code = match code {
                Value::Number(n) => json!(n.to_string()),
                other => other,
            };
            self.event(
                "error",
                json!({"code": code, "message": message, "param": null}),
                out,
            );
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
            if !matches!(self.open, Some(Item::Text { .. })) {
                self.close(out);
                let index = self.output_index();
                let id = format!("msg_{}_{index}", self.id);
                self.event(
                    "response.output_item.added",
                    json!({"output_index": index, "item": {"id": id, "type": "message",
                           "status": "in_progress", "role": "assistant", "content": []}}),
                    out,
                );
                self.event(
                    "response.content_part.added",
                    json!({"item_id": id, "output_index": index, "content_index": 0,
                           "part": {"type": "output_text", "text": "", "annotations": []}}),
                    out,
                );
                self.open = Some(Item::Text {
                    id,
                    text: String::new(),
                });
            }
            let index = self.output_index();
            if let Some(Item::Text { id, text: all }) = &mut self.open {
                all.push_str(text);
                let id = id.clone();
                self.event(
                    "response.output_text.delta",
                    json!({"item_id": id, "output_index": index, "content_index": 0, "delta": text}),
                    out,
                );
            }
        }
        for call in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let tool_index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            let same = matches!(&self.open, Some(Item::Call { index, .. }) if *index == tool_index);
            if !same {
                self.close(out);
                let index = self.output_index();
                let id = format!("fc_{}_{index}", self.id);
                let call_id = call
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let name = call
                    .pointer("/function/name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                self.event(
                    "response.output_item.added",
                    json!({"output_index": index, "item": call_item(&id, &call_id, &name, "", "in_progress")}),
                    out,
                );
                self.open = Some(Item::Call {
                    id,
                    call_id,
                    name,
                    arguments: String::new(),
                    index: tool_index,
                });
            }
            let index = self.output_index();
            if let Some(args) = call
                .pointer("/function/arguments")
                .and_then(Value::as_str)
                .filter(|a| !a.is_empty())
                && let Some(Item::Call { id, arguments, .. }) = &mut self.open
            {
                arguments.push_str(args);
                let id = id.clone();
                self.event(
                    "response.function_call_arguments.delta",
                    json!({"item_id": id, "output_index": index, "delta": args}),
                    out,
                );
            }
        }
        if let Some(finish) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(finish.to_string());
            self.close(out);
        }
    }
}

#[cfg(test)]
mod tests;
