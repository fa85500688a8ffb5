//! Answers as text: the text of a whole JSON answer, and an SSE stream cut into windows of
//! text that are classified before they reach the client.
//!
//! The scanner cuts network chunks into whole events, collects the text deltas of the events
//! held so far (OpenAI chat `delta.content` and tool-call arguments, legacy `text`, Anthropic
//! `text_delta` and `input_json_delta`, Responses `response.*.delta`), and holds the events
//! until their text fills a window (`window_chars`) or the stream ends. Then the window is
//! classified (with the tail of the previous window, so that a phrase cut between windows is
//! still seen whole): passed, its events go out unchanged; blocked, they are dropped, the
//! client gets one error event in its protocol, and the rest of the stream is dropped too.

use serde_json::{Value, json};

/// A partial event larger than this is not SSE: the stream is treated as one window.
const MAX_EVENT_BYTES: usize = 1024 * 1024;
/// Characters of the previous window classified again with the next one.
const OVERLAP_CHARS: usize = 200;

/// The protocol of a stream, from its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// OpenAI chat completions or legacy completions.
    #[default]
    OpenAi,
    /// Anthropic messages.
    Anthropic,
    /// OpenAI Responses.
    Responses,
}

/// What the classifier said about a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Let it through.
    Pass,
    /// End the stream with this error message.
    Block(String),
}

/// One stream's state.
#[derive(Debug, Default)]
pub struct Scanner {
    partial: Vec<u8>,
    held: Vec<u8>,
    window: String,
    window_chars: usize,
    carry: String,
    /// Characters of answer text classified and let through so far.
    pub passed_chars: usize,
    protocol: Protocol,
    /// Set once a window was blocked: nothing more is emitted.
    pub blocked: bool,
    /// Events seen (for the Responses error event's `sequence_number`).
    events: u64,
}

impl Scanner {
    /// The bytes to emit for this chunk. `classify` gets each full window's text (with the
    /// overlap) when the window fills, and the last one at the end of the stream.
    pub fn push(
        &mut self,
        chunk: &[u8],
        end_of_stream: bool,
        window_chars: usize,
        classify: &mut dyn FnMut(&str, usize) -> Verdict,
    ) -> Vec<u8> {
        if self.blocked {
            return Vec::new();
        }
        let mut buf = std::mem::take(&mut self.partial);
        buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut at = 0;
        while let Some(len) = event_end(&buf[at..]) {
            self.event(&buf[at..at + len]);
            at += len;
            if self.window.is_empty() {
                // No answer text waits for a verdict: text-free events (a role chunk, a
                // `message_start`) go out at once.
                out.append(&mut self.held);
            } else if self.window_chars >= window_chars {
                self.verdict(&mut out, classify);
                if self.blocked {
                    return out;
                }
            }
        }
        let rest = &buf[at..];
        if end_of_stream {
            if !rest.is_empty() {
                self.event(rest);
            }
            self.verdict(&mut out, classify);
        } else if rest.len() > MAX_EVENT_BYTES {
            // Not an event stream after all: hold it as text-free bytes of the window.
            self.held.extend_from_slice(rest);
        } else {
            self.partial = rest.to_vec();
        }
        out
    }

    /// Classifies the window held so far and emits its events or the error.
    fn verdict(&mut self, out: &mut Vec<u8>, classify: &mut dyn FnMut(&str, usize) -> Verdict) {
        let verdict = if self.window.trim().is_empty() {
            Verdict::Pass
        } else {
            let text = format!("{}{}", self.carry, self.window);
            classify(&text, self.passed_chars)
        };
        match verdict {
            Verdict::Pass => {
                out.append(&mut self.held);
                self.passed_chars += self.window_chars;
                let tail: Vec<char> = self.window.chars().collect();
                let keep = tail.len().min(OVERLAP_CHARS);
                self.carry = tail[tail.len() - keep..].iter().collect();
                self.window.clear();
                self.window_chars = 0;
            }
            Verdict::Block(message) => {
                self.held.clear();
                self.window.clear();
                self.blocked = true;
                out.extend_from_slice(&self.error_event(&message));
            }
        }
    }

    /// Holds one whole event and adds its text to the window.
    fn event(&mut self, raw: &[u8]) {
        self.held.extend_from_slice(raw);
        self.events += 1;
        let Ok(text) = std::str::from_utf8(raw) else {
            return;
        };
        let mut data = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(rest.strip_prefix(' ').unwrap_or(rest));
            }
        }
        let Ok(value) = serde_json::from_str::<Value>(&data) else {
            return;
        };
        if let Some(p) = protocol_of(&value) {
            self.protocol = p;
        }
        let before = self.window.len();
        delta_text(&value, &mut self.window);
        self.window_chars += self.window[before..].chars().count();
    }

    /// The error event that ends a blocked stream, in the stream's protocol.
    fn error_event(&self, message: &str) -> Vec<u8> {
        match self.protocol {
            Protocol::OpenAi => format!(
                "data: {}\n\ndata: [DONE]\n\n",
                json!({"error": {"message": message, "type": "guardrails", "code": 2017, "param": null}})
            ),
            Protocol::Anthropic => format!(
                "event: error\ndata: {}\n\n",
                json!({"type": "error", "error": {"type": "invalid_request_error", "message": message, "code": 2017}})
            ),
            Protocol::Responses => format!(
                "event: error\ndata: {}\n\n",
                json!({"type": "error", "code": "2017", "message": message, "param": null, "sequence_number": self.events})
            ),
        }
        .into_bytes()
    }
}

/// Length of the first complete event in `buf`, blank line included.
fn event_end(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(off) = buf[from..].iter().position(|&b| b == b'\n') {
        let i = from + off;
        match (buf.get(i + 1), buf.get(i + 2)) {
            (Some(b'\n'), _) => return Some(i + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(i + 3),
            _ => from = i + 1,
        }
    }
    None
}

fn protocol_of(event: &Value) -> Option<Protocol> {
    if event.get("choices").is_some() {
        return Some(Protocol::OpenAi);
    }
    let kind = event.get("type")?.as_str()?;
    if kind.starts_with("response.") {
        Some(Protocol::Responses)
    } else if kind.starts_with("message_") || kind.starts_with("content_block") || kind == "ping" {
        Some(Protocol::Anthropic)
    } else {
        None
    }
}

/// Appends the answer text an event carries.
fn delta_text(event: &Value, out: &mut String) {
    let push = |out: &mut String, v: Option<&Value>| {
        if let Some(s) = v.and_then(Value::as_str) {
            out.push_str(s);
        }
    };
    if let Some(choices) = event.get("choices").and_then(Value::as_array) {
        for c in choices {
            push(out, c.pointer("/delta/content"));
            push(out, c.get("text"));
            if let Some(calls) = c.pointer("/delta/tool_calls").and_then(Value::as_array) {
                for call in calls {
                    push(out, call.pointer("/function/arguments"));
                }
            }
        }
        return;
    }
    match event.get("type").and_then(Value::as_str) {
        Some("content_block_delta") => {
            push(out, event.pointer("/delta/text"));
            push(out, event.pointer("/delta/partial_json"));
        }
        Some(t) if t.starts_with("response.") && t.ends_with(".delta") => {
            push(out, event.get("delta"));
        }
        _ => {}
    }
}

/// The text of a whole JSON answer: OpenAI chat and legacy completions, Anthropic messages,
/// OpenAI Responses.
pub fn answer_text(answer: &Value) -> String {
    let mut out = String::new();
    let mut add = |s: &str| {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(s);
    };
    if let Some(choices) = answer.get("choices").and_then(Value::as_array) {
        for c in choices {
            for p in ["/message/content", "/text", "/message/refusal"] {
                if let Some(s) = c.pointer(p).and_then(Value::as_str) {
                    add(s);
                }
            }
            if let Some(calls) = c.pointer("/message/tool_calls").and_then(Value::as_array) {
                for call in calls {
                    if let Some(s) = call.pointer("/function/arguments").and_then(Value::as_str) {
                        add(s);
                    }
                }
            }
        }
    }
    let blocks = answer
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .chain(
            answer
                .get("output")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .flat_map(|item| {
                    item.get("content")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                }),
        );
    for b in blocks {
        if let Some(s) = b.get("text").and_then(Value::as_str) {
            add(s);
        }
        if let Some(input) = b.get("input").filter(|i| !i.is_null()) {
            add(&input.to_string());
        }
    }
    out
}
