//! A model's answer as text, for filters that judge what a model says (guardrails, DLP):
//! [`answer_text`] reads a whole JSON answer, [`WindowScanner`] an SSE stream window by window.
//!
//! The scanner cuts network chunks into whole events, collects the text deltas of the events
//! held so far (OpenAI chat `delta.content` and tool-call arguments, legacy `text`, Anthropic
//! `text_delta` and `input_json_delta`, Responses `response.*.delta`), and holds the events
//! until their text fills a window (`window_chars`) or the stream ends. Then the window is
//! judged (with the tail of the previous window, so that a phrase cut between windows is
//! still seen whole): passed, its events go out unchanged; blocked, they are dropped, the
//! client gets one error event in its protocol, and the rest of the stream is dropped too.
//! Events that carry no answer text while nothing waits for a verdict go out at once.
//!
//! ```
//! use aigw_plugin_sdk::answer::{Verdict, WindowScanner};
//! let mut scanner = WindowScanner::default();
//! let event = |t: &str| format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{t}\"}}}}]}}\n\n");
//! let mut judge = |text: &str, _at: usize| {
//!     if text.contains("secret") { Verdict::Block { message: "no".into(), code: 2017 } } else { Verdict::Pass }
//! };
//! // A window of 10 characters: the first passes, the second blocks.
//! let out = scanner.push(event("hello there ").as_bytes(), false, 10, &mut judge);
//! assert!(String::from_utf8(out).unwrap().contains("hello there"));
//! let out = scanner.push(event("the secret is").as_bytes(), false, 10, &mut judge);
//! let out = String::from_utf8(out).unwrap();
//! assert!(!out.contains("secret") && out.contains("\"code\":2017") && out.ends_with("data: [DONE]\n\n"));
//! assert!(scanner.blocked());
//! ```

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

/// What the filter decided about a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Let it through.
    Pass,
    /// End the stream with an error event carrying this message and code.
    Block {
        /// The error's message.
        message: String,
        /// The error's code (Cloudflare's 2017 for a guardrail).
        code: u32,
    },
}

/// One SSE answer's state, window by window.
#[derive(Debug, Default)]
pub struct WindowScanner {
    partial: Vec<u8>,
    held: Vec<u8>,
    window: String,
    window_chars: usize,
    carry: String,
    passed_chars: usize,
    protocol: Protocol,
    blocked: bool,
    /// Judges windows without holding them (see [`WindowScanner::watching`]).
    watch: bool,
    /// An event grew past `MAX_EVENT_BYTES`: the rest is judged as raw text.
    raw: bool,
    /// Events seen (for the Responses error event's `sequence_number`).
    events: u64,
}

impl WindowScanner {
    /// A scanner that judges windows as they pass without holding them back: for filters that
    /// only flag (log) what they find. Its `push` returns every chunk unchanged; a `Block`
    /// verdict is recorded (`blocked()`) but cannot stop what was already sent.
    ///
    /// ```
    /// use aigw_plugin_sdk::answer::{Verdict, WindowScanner};
    /// let mut s = WindowScanner::watching();
    /// let chunk = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a secret\"}}]}\n\n";
    /// let mut seen = Vec::new();
    /// let out = s.push(chunk, true, 100, &mut |t: &str, _| { seen.push(t.to_string()); Verdict::Pass });
    /// assert_eq!(out, chunk);
    /// assert_eq!(seen, ["a secret"]);
    /// ```
    pub fn watching() -> WindowScanner {
        WindowScanner {
            watch: true,
            ..WindowScanner::default()
        }
    }

    /// Whether a window was blocked (nothing more is emitted).
    pub fn blocked(&self) -> bool {
        self.blocked
    }

    /// Characters of answer text judged and let through so far.
    pub fn passed_chars(&self) -> usize {
        self.passed_chars
    }

    /// The protocol seen so far (OpenAI until an event says otherwise).
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The bytes to emit for this chunk. `judge` gets each full window's text (with the end
    /// of the previous window) and how many characters passed before it, when the window
    /// fills, and the last window at the end of the stream.
    pub fn push(
        &mut self,
        chunk: &[u8],
        end_of_stream: bool,
        window_chars: usize,
        judge: &mut dyn FnMut(&str, usize) -> Verdict,
    ) -> Vec<u8> {
        if self.blocked {
            return if self.watch {
                chunk.to_vec()
            } else {
                Vec::new()
            };
        }
        if self.watch {
            self.push_held(chunk, end_of_stream, window_chars, judge, &mut Vec::new());
            return chunk.to_vec();
        }
        let mut out = Vec::new();
        self.push_held(chunk, end_of_stream, window_chars, judge, &mut out);
        out
    }

    fn push_held(
        &mut self,
        chunk: &[u8],
        end_of_stream: bool,
        window_chars: usize,
        judge: &mut dyn FnMut(&str, usize) -> Verdict,
        out: &mut Vec<u8>,
    ) {
        if self.raw {
            self.raw_bytes(chunk);
            if end_of_stream || self.window_chars >= window_chars {
                self.verdict(out, judge);
            }
            return;
        }
        let mut buf = std::mem::take(&mut self.partial);
        buf.extend_from_slice(chunk);
        let mut at = 0;
        while let Some(len) = event_end(&buf[at..]) {
            self.event(&buf[at..at + len]);
            at += len;
            if self.window.is_empty() {
                // No answer text waits for a verdict: text-free events (a role chunk, a
                // `message_start`) go out at once.
                out.append(&mut self.held);
            } else if self.window_chars >= window_chars {
                self.verdict(out, judge);
                if self.blocked {
                    return;
                }
            }
        }
        let rest = &buf[at..];
        if end_of_stream {
            if !rest.is_empty() {
                self.event(rest);
            }
            self.verdict(out, judge);
        } else if rest.len() > MAX_EVENT_BYTES {
            // Not an event stream after all: from here on every byte is judged as text, window
            // by window, never let through unread.
            self.raw = true;
            let rest = rest.to_vec();
            self.raw_bytes(&rest);
            if self.window_chars >= window_chars {
                self.verdict(out, judge);
            }
        } else {
            self.partial = rest.to_vec();
        }
    }

    /// Judges the window held so far and emits its events or the error.
    fn verdict(&mut self, out: &mut Vec<u8>, judge: &mut dyn FnMut(&str, usize) -> Verdict) {
        let verdict = if self.window.trim().is_empty() {
            Verdict::Pass
        } else {
            let text = format!("{}{}", self.carry, self.window);
            judge(&text, self.passed_chars)
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
            Verdict::Block { message, code } => {
                self.held.clear();
                self.window.clear();
                self.blocked = true;
                out.extend_from_slice(&error_event(self.protocol, &message, code, self.events));
            }
        }
    }

    /// Holds one whole event and adds its text to the window.
    fn event(&mut self, raw: &[u8]) {
        if !self.watch {
            self.held.extend_from_slice(raw);
        }
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
        let before = self.window.len();
        match serde_json::from_str::<Value>(&data) {
            Ok(value) => match protocol_of(&value) {
                Some(p) => {
                    self.protocol = p;
                    delta_text(&value, &mut self.window);
                }
                // An event of a shape not known here (another provider's stream): all of its
                // strings are judged, never none.
                None => all_strings(&value, &mut self.window),
            },
            // Plain-text data is answer text too; `[DONE]` is not.
            Err(_) if data.trim() != "[DONE]" => self.window.push_str(&data),
            Err(_) => {}
        }
        self.window_chars += self.window[before..].chars().count();
    }

    /// Bytes that are not (or no longer) read as events: held, and judged as text.
    fn raw_bytes(&mut self, bytes: &[u8]) {
        if !self.watch {
            self.held.extend_from_slice(bytes);
        }
        let text = String::from_utf8_lossy(bytes);
        self.window.push_str(&text);
        self.window_chars += text.chars().count();
    }
}

/// The error event that ends a refused stream, in its protocol: OpenAI's `data: {"error": …}`
/// then `[DONE]`, Anthropic's and Responses' `event: error`. The official SDKs raise it.
///
/// ```
/// use aigw_plugin_sdk::answer::{error_event, Protocol};
/// let e = String::from_utf8(error_event(Protocol::Anthropic, "blocked", 2017, 0)).unwrap();
/// assert!(e.starts_with("event: error\n") && e.contains("\"type\":\"error\""));
/// ```
pub fn error_event(protocol: Protocol, message: &str, code: u32, sequence: u64) -> Vec<u8> {
    match protocol {
        Protocol::OpenAi => format!(
            "data: {}\n\ndata: [DONE]\n\n",
            json!({"error": {"message": message, "type": "guardrails", "code": code, "param": null}})
        ),
        Protocol::Anthropic => format!(
            "event: error\ndata: {}\n\n",
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": message, "code": code}})
        ),
        Protocol::Responses => format!(
            "event: error\ndata: {}\n\n",
            json!({"type": "error", "code": code.to_string(), "message": message, "param": null, "sequence_number": sequence})
        ),
    }
    .into_bytes()
}

/// Length of the first complete SSE event in `buf`, its blank line (`\n\n` or `\n\r\n`)
/// included; `None` while the event is incomplete.
///
/// ```
/// use aigw_plugin_sdk::answer::event_end;
/// assert_eq!(event_end(b"data: 1\n\ndata: 2"), Some(9));
/// assert_eq!(event_end(b"data: 1\r\n\r\n"), Some(11));
/// assert_eq!(event_end(b"data: 1\n"), None);
/// ```
pub fn event_end(buf: &[u8]) -> Option<usize> {
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
            push(out, c.pointer("/delta/refusal"));
            push(out, c.pointer("/delta/reasoning_content"));
            push(out, c.pointer("/delta/reasoning"));
            push(out, c.pointer("/delta/function_call/arguments"));
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
            push(out, event.pointer("/delta/thinking"));
        }
        Some(t) if t.starts_with("response.") && t.ends_with(".delta") => {
            push(out, event.get("delta"));
        }
        _ => {}
    }
}

/// The strings of a request body whose shape [`crate::chat::ChatRequest`] does not know (the
/// Responses API's `input` and `instructions`, Gemini's `contents`, …): every string except
/// the model name and the declarations around the conversation (tools, formats, settings).
///
/// ```
/// let body = serde_json::json!({"model": "m", "instructions": "be brief",
///     "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
///     "tools": [{"description": "ignored"}]});
/// let text = aigw_plugin_sdk::answer::request_strings(&body);
/// assert!(text.contains("be brief") && text.contains("hi") && !text.contains("ignored"));
/// ```
pub fn request_strings(body: &Value) -> String {
    const SKIP: [&str; 13] = [
        "model",
        "tools",
        "tool_choice",
        "functions",
        "response_format",
        "text",
        "metadata",
        "stream",
        "stream_options",
        "generationConfig",
        "safetySettings",
        "toolConfig",
        "reasoning",
    ];
    let mut out = String::new();
    match body {
        Value::Object(map) => map
            .iter()
            .filter(|(k, _)| !SKIP.contains(&k.as_str()))
            .for_each(|(_, v)| all_strings(v, &mut out)),
        other => all_strings(other, &mut out),
    }
    out
}

/// Every string in `value`, for shapes this module does not know.
fn all_strings(value: &Value, out: &mut String) {
    match value {
        Value::String(s) => {
            out.push_str(s);
            out.push(' ');
        }
        Value::Array(items) => items.iter().for_each(|v| all_strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| all_strings(v, out)),
        _ => {}
    }
}

/// The text of a whole JSON answer: OpenAI chat and legacy completions (content, refusals,
/// tool-call arguments), Anthropic messages (text, tool input), OpenAI Responses (output
/// text), one piece per line.
///
/// ```
/// let a = serde_json::json!({"content": [{"type": "text", "text": "hi"}, {"type": "tool_use", "input": {"q": 1}}]});
/// assert_eq!(aigw_plugin_sdk::answer::answer_text(&a), "hi\n{\"q\":1}");
/// ```
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
            for p in [
                "/message/content",
                "/text",
                "/message/refusal",
                "/message/reasoning_content",
            ] {
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
        for key in ["text", "thinking"] {
            if let Some(s) = b.get(key).and_then(Value::as_str) {
                add(s);
            }
        }
        if let Some(input) = b.get("input").filter(|i| !i.is_null()) {
            add(&input.to_string());
        }
    }
    // Responses function calls.
    for item in answer
        .get("output")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(s) = item.get("arguments").and_then(Value::as_str) {
            add(s);
        }
    }
    // A shape not known here: all of its strings, never none.
    if ["choices", "content", "output"]
        .iter()
        .all(|k| answer.get(k).is_none())
    {
        all_strings(answer, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs chunks through a scanner that blocks any window containing "secret".
    fn run(chunks: &[&[u8]], window: usize) -> (String, bool) {
        let mut s = WindowScanner::default();
        let mut judge = |t: &str, _: usize| {
            if t.contains("secret") {
                Verdict::Block {
                    message: "no".into(),
                    code: 1,
                }
            } else {
                Verdict::Pass
            }
        };
        let mut out = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            out.extend(s.push(c, i + 1 == chunks.len(), window, &mut judge));
        }
        (String::from_utf8_lossy(&out).into_owned(), s.blocked())
    }

    #[test]
    fn text_the_extractor_does_not_know_is_judged_not_waved_through() {
        // CRLF events, a Gemini-shaped chunk, plain-text data, a refusal delta.
        for stream in [
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"the secret\"}}]}\r\n\r\n",
            "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"the secret\"}]}}]}\n\n",
            "data: the secret is out\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"refusal\":\"a secret\"}}]}\n\n",
            "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"secret\"}}\n\n",
        ] {
            let (out, blocked) = run(&[stream.as_bytes(), b"data: [DONE]\n\n"], 1000);
            assert!(blocked && !out.contains("secret"), "{stream} -> {out}");
        }
        // A last event without its blank line is judged at the end of the stream.
        let (out, blocked) = run(
            &[b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"secret\"}}]}"],
            1000,
        );
        assert!(blocked && !out.contains("\"secret\""), "{out}");
    }

    #[test]
    fn an_event_over_the_cap_is_judged_as_raw_text() {
        let mut big = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_EVENT_BYTES + 10));
        let tail = b" the secret\"}}]}\n\ndata: [DONE]\n\n";
        let (out, blocked) = run(&[&big, tail], 100);
        assert!(blocked, "not blocked");
        assert!(!out.contains("secret"));
    }
}
