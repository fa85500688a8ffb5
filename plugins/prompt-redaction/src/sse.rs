//! Restoring placeholders in an SSE stream, where a placeholder may be split
//! across network chunks and across events (`"[EM"`, `"AIL_1"`, `"]"`).
//!
//! Network chunks are cut into whole events (a partial event waits for its
//! blank line). Text deltas — OpenAI `choices[].delta.content`, legacy
//! `choices[].text`, `delta.tool_calls[].function.arguments`; Anthropic
//! `content_block_delta` `text_delta.text` and `input_json_delta.partial_json`
//! — are restored per stream (choice, tool call, content block): an event
//! keeps only the text that cannot still become a placeholder, the rest
//! moves to that stream's next delta. Held text is let go with the stream's
//! last delta (`finish_reason`), before `content_block_stop`, before a
//! non-JSON event such as `[DONE]`, and at the end of the stream, as a
//! delta event of the stream's own shape. Other JSON events get complete
//! placeholders restored; anything else passes unchanged.

use crate::restore::Placeholders;
use aigw_plugin_sdk::answer::event_end;
use serde_json::{Value, json};

/// A partial event larger than this is not SSE: it is let through as is.
const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// One text stream within the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    /// OpenAI `choices[i].delta.content`.
    Content { choice: u64 },
    /// OpenAI legacy completions `choices[i].text`.
    Text { choice: u64 },
    /// OpenAI `choices[i].delta.tool_calls[t].function.arguments`.
    Tool { choice: u64, tool: u64 },
    /// Anthropic content block `index`: text, or tool input JSON.
    Block { index: u64, json: bool },
}

impl Stream {
    fn choice(self) -> Option<u64> {
        match self {
            Stream::Content { choice } | Stream::Text { choice } | Stream::Tool { choice, .. } => {
                Some(choice)
            }
            Stream::Block { .. } => None,
        }
    }
}

/// Restores one SSE response.
#[derive(Debug, Default)]
pub struct SseRestorer {
    /// Bytes of an event whose blank line has not arrived.
    partial: Vec<u8>,
    /// Text held back per stream.
    held: Vec<(Stream, String)>,
    /// The last OpenAI chunk's fields besides `choices` (for made-up deltas).
    template: Option<serde_json::Map<String, Value>>,
    /// Placeholders put back so far.
    pub restored: usize,
}

impl SseRestorer {
    /// The bytes to emit for this chunk (everything at `end_of_stream`).
    pub fn push(&mut self, chunk: &[u8], end_of_stream: bool, ph: &Placeholders) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.partial);
        buf.extend_from_slice(chunk);
        let mut out = Vec::with_capacity(buf.len());
        let mut at = 0;
        while let Some(len) = event_end(&buf[at..]) {
            self.event(&buf[at..at + len], &mut out, ph);
            at += len;
        }
        let rest = &buf[at..];
        if end_of_stream {
            if !rest.is_empty() {
                self.event(rest, &mut out, ph);
            }
            self.flush(|_| true, &mut out);
        } else if rest.len() > MAX_EVENT_BYTES {
            self.flush(|_| true, &mut out);
            out.extend_from_slice(rest);
        } else {
            self.partial = rest.to_vec();
        }
        out
    }

    /// One whole event (with its blank line, except at the end of stream).
    fn event(&mut self, raw: &[u8], out: &mut Vec<u8>, ph: &Placeholders) {
        let Ok(text) = std::str::from_utf8(raw) else {
            out.extend_from_slice(raw);
            return;
        };
        let mut data: Option<String> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("data:") {
                let rest = rest.strip_prefix(' ').unwrap_or(rest);
                match &mut data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(rest);
                    }
                    None => data = Some(rest.to_string()),
                }
            }
        }
        let Some(data) = data else {
            // Comments, keep-alives, `event:`-only blocks.
            out.extend_from_slice(raw);
            return;
        };
        let Ok(mut value) = serde_json::from_str::<Value>(&data) else {
            // `[DONE]` and other non-JSON data: every stream is over.
            self.flush(|_| true, out);
            out.extend_from_slice(raw);
            return;
        };
        let mut before = Vec::new();
        let changed = if value.get("choices").is_some_and(Value::is_array) {
            self.openai(&mut value, &mut before, ph)
        } else {
            match value.get("type").and_then(Value::as_str) {
                Some("content_block_delta") => self.anthropic_delta(&mut value, ph),
                Some("content_block_stop") => {
                    let index = value.get("index").and_then(Value::as_u64).unwrap_or(0);
                    self.flush(
                        |s| matches!(s, Stream::Block { index: i, .. } if i == index),
                        out,
                    );
                    false
                }
                Some("message_delta" | "message_stop") => {
                    self.flush(|_| true, out);
                    false
                }
                _ => {
                    self.restored += ph.restore_into(raw, true, out);
                    return;
                }
            }
        };
        out.extend_from_slice(&before);
        if changed {
            write_event(text, &value, out);
        } else {
            out.extend_from_slice(raw);
        }
    }

    /// An OpenAI chunk; made-up deltas that must precede it go to `before`.
    fn openai(&mut self, value: &mut Value, before: &mut Vec<u8>, ph: &Placeholders) -> bool {
        if let Some(obj) = value.as_object() {
            let mut t = obj.clone();
            t.remove("choices");
            t.remove("usage");
            self.template = Some(t);
        }
        let Some(choices) = value.get_mut("choices").and_then(Value::as_array_mut) else {
            return false;
        };
        let mut changed = false;
        for (pos, c) in choices.iter_mut().enumerate() {
            let choice = c.get("index").and_then(Value::as_u64).unwrap_or(pos as u64);
            let last = c.get("finish_reason").is_some_and(|f| !f.is_null());
            if let Some(Value::String(s)) = c.pointer_mut("/delta/content") {
                changed |= self.step(Stream::Content { choice }, s, last, false, ph);
            }
            if let Some(Value::String(s)) = c.get_mut("text") {
                changed |= self.step(Stream::Text { choice }, s, last, false, ph);
            }
            if let Some(Value::Array(calls)) = c.pointer_mut("/delta/tool_calls") {
                for (j, call) in calls.iter_mut().enumerate() {
                    let tool = call
                        .get("index")
                        .and_then(Value::as_u64)
                        .unwrap_or(j as u64);
                    if let Some(Value::String(s)) = call.pointer_mut("/function/arguments") {
                        changed |= self.step(Stream::Tool { choice, tool }, s, last, true, ph);
                    }
                }
            }
            if last {
                self.flush(|s| s.choice() == Some(choice), before);
            }
        }
        changed
    }

    fn anthropic_delta(&mut self, value: &mut Value, ph: &Placeholders) -> bool {
        let index = value.get("index").and_then(Value::as_u64).unwrap_or(0);
        let Some(delta) = value.get_mut("delta") else {
            return false;
        };
        let (field, json) = match delta.get("type").and_then(Value::as_str) {
            Some("text_delta") => ("text", false),
            Some("input_json_delta") => ("partial_json", true),
            _ => return false,
        };
        match delta.get_mut(field) {
            Some(Value::String(s)) => self.step(Stream::Block { index, json }, s, false, json, ph),
            _ => false,
        }
    }

    /// Restores one delta of `stream`, carrying over the text still held
    /// for it and holding back a new placeholder prefix (unless `last`).
    /// True when the delta's text changed.
    fn step(
        &mut self,
        stream: Stream,
        s: &mut String,
        last: bool,
        json: bool,
        ph: &Placeholders,
    ) -> bool {
        let held = match self.held.iter().position(|(k, _)| *k == stream) {
            Some(i) => self.held.remove(i).1,
            None => String::new(),
        };
        if held.is_empty() && !s.contains('[') {
            return false;
        }
        let combined = held + s;
        let split = if last {
            combined.len()
        } else {
            ph.hold_from(combined.as_bytes())
        };
        let mut out = Vec::with_capacity(split);
        self.restored += ph.restore_into(&combined.as_bytes()[..split], json, &mut out);
        if split < combined.len() {
            self.held.push((stream, combined[split..].to_string()));
        }
        let restored = String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        if restored == *s {
            return false;
        }
        *s = restored;
        true
    }

    /// Emits the held text of the streams `which` selects, as delta events.
    fn flush(&mut self, which: impl Fn(Stream) -> bool, out: &mut Vec<u8>) {
        let (go, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|(s, _)| which(*s));
        self.held = keep;
        for (stream, text) in go {
            self.synthetic(stream, text, out);
        }
    }

    /// A delta event of `stream`'s shape carrying `text`.
    fn synthetic(&self, stream: Stream, text: String, out: &mut Vec<u8>) {
        let openai = |choice: Value| {
            let mut t = self.template.clone().unwrap_or_default();
            t.entry("object").or_insert(json!("chat.completion.chunk"));
            t.insert("choices".into(), json!([choice]));
            Value::Object(t)
        };
        let (event, data) = match stream {
            Stream::Content { choice } => (
                None,
                openai(json!({"index": choice, "delta": {"content": text}, "finish_reason": null})),
            ),
            Stream::Text { choice } => (
                None,
                openai(json!({"index": choice, "text": text, "finish_reason": null})),
            ),
            Stream::Tool { choice, tool } => (
                None,
                openai(json!({"index": choice, "delta": {"tool_calls": [
                    {"index": tool, "function": {"arguments": text}}]}, "finish_reason": null})),
            ),
            Stream::Block { index, json } => {
                let delta = if json {
                    json!({"type": "input_json_delta", "partial_json": text})
                } else {
                    json!({"type": "text_delta", "text": text})
                };
                (
                    Some("content_block_delta"),
                    json!({"type": "content_block_delta", "index": index, "delta": delta}),
                )
            }
        };
        if let Some(e) = event {
            out.extend_from_slice(format!("event: {e}\n").as_bytes());
        }
        out.extend_from_slice(format!("data: {data}\n\n").as_bytes());
    }
}

/// `raw`'s lines with its data replaced by `value` (one `data:` line).
fn write_event(raw: &str, value: &Value, out: &mut Vec<u8>) {
    let eol = if raw.contains("\r\n") { "\r\n" } else { "\n" };
    let mut wrote_data = false;
    for line in raw.lines().filter(|l| !l.is_empty()) {
        if line.starts_with("data:") {
            if !wrote_data {
                out.extend_from_slice(format!("data: {value}{eol}").as_bytes());
                wrote_data = true;
            }
        } else {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(eol.as_bytes());
        }
    }
    out.extend_from_slice(eol.as_bytes());
}

#[cfg(test)]
mod tests;
