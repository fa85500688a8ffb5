//! Token usage from provider responses, read from the bytes on their way to the
//! client: OpenAI-style JSON (`usage.prompt_tokens`/`completion_tokens`),
//! Anthropic JSON (`usage.input_tokens`/`output_tokens`), and SSE streams
//! (OpenAI's final usage chunk, Anthropic's `message_start`/`message_delta`).
//! Never buffers a stream: SSE is scanned line by line, lines ending in `\n`,
//! `\r\n` or `\r` as the SSE format allows.

use serde_json::Value;

/// Longest SSE line kept for usage parsing (longer lines are cut, not buffered).
const MAX_SSE_LINE: usize = 1024 * 1024;
/// Largest JSON body kept for usage parsing.
const MAX_JSON_BYTES: usize = 4 * 1024 * 1024;

/// Tokens reported by a response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt / input tokens.
    pub tokens_in: Option<u32>,
    /// Completion / output tokens.
    pub tokens_out: Option<u32>,
    /// Prompt tokens read from the provider's cache.
    pub tokens_cached: Option<u32>,
    /// Reasoning tokens within the completion.
    pub tokens_reasoning: Option<u32>,
}

/// Incremental usage reader.
#[derive(Debug)]
pub enum UsageReader {
    /// A JSON body, kept (up to a limit) and parsed at the end.
    Json(Vec<u8>, bool),
    /// An SSE stream: the unfinished line and the usage found so far.
    Sse(Vec<u8>, Usage),
    /// Anything else.
    Other,
}

impl UsageReader {
    /// Picks the reader from the response content type.
    pub fn for_content_type(content_type: Option<&str>) -> Self {
        let ct = content_type.unwrap_or("").to_ascii_lowercase();
        if ct.starts_with("text/event-stream") {
            UsageReader::Sse(Vec::new(), Usage::default())
        } else if ct.contains("json") {
            UsageReader::Json(Vec::new(), false)
        } else {
            UsageReader::Other
        }
    }

    /// Feeds bytes as they go to the client.
    pub fn feed(&mut self, bytes: &[u8]) {
        match self {
            UsageReader::Json(buf, overflow) => {
                if buf.len() + bytes.len() > MAX_JSON_BYTES {
                    *overflow = true;
                } else {
                    buf.extend_from_slice(bytes);
                }
            }
            UsageReader::Sse(line, usage) => {
                for &b in bytes {
                    // `\r\n` ends the line at `\r` and adds an empty line: harmless.
                    if b == b'\n' || b == b'\r' {
                        scan_sse_line(line, usage);
                        line.clear();
                    } else if line.len() < MAX_SSE_LINE {
                        line.push(b);
                    }
                }
            }
            UsageReader::Other => {}
        }
    }

    /// The usage found, once the body is complete.
    pub fn finish(&mut self) -> Usage {
        match self {
            UsageReader::Json(buf, false) => {
                // Only `usage` is kept; the rest of the answer is skipped
                // while parsing, not built into a tree.
                #[derive(serde::Deserialize)]
                struct Answer {
                    usage: Option<Value>,
                }
                serde_json::from_slice::<Answer>(buf)
                    .ok()
                    .and_then(|a| a.usage)
                    .map(|u| usage_in(&u))
                    .unwrap_or_default()
            }
            UsageReader::Json(_, true) | UsageReader::Other => Usage::default(),
            UsageReader::Sse(line, usage) => {
                scan_sse_line(line, usage);
                line.clear();
                *usage
            }
        }
    }
}

fn scan_sse_line(line: &[u8], usage: &mut Usage) {
    let Some(data) = line.strip_prefix(b"data:") else {
        return;
    };
    // Cheap filter: only parse events that mention usage.
    if !data.windows(7).any(|w| w == b"\"usage\"") {
        return;
    }
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let found = match v.get("message") {
        Some(message) => usage_from(message),
        None => usage_from(&v),
    };
    if found.tokens_in.is_some() {
        usage.tokens_in = found.tokens_in;
    }
    if found.tokens_out.is_some() {
        usage.tokens_out = found.tokens_out;
    }
    if found.tokens_cached.is_some() {
        usage.tokens_cached = found.tokens_cached;
    }
    if found.tokens_reasoning.is_some() {
        usage.tokens_reasoning = found.tokens_reasoning;
    }
}

fn usage_from(v: &Value) -> Usage {
    v.get("usage").map(usage_in).unwrap_or_default()
}

/// Token counts of a `usage` object (OpenAI or Anthropic names).
fn usage_in(u: &Value) -> Usage {
    if !u.is_object() {
        return Usage::default();
    }
    let num = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| u.get(*k).and_then(Value::as_u64))
            .map(|n| n.min(u32::MAX as u64) as u32)
    };
    let nested = |path: &str| {
        u.pointer(path)
            .and_then(Value::as_u64)
            .map(|n| n.min(u32::MAX as u64) as u32)
    };
    Usage {
        tokens_in: num(&["prompt_tokens", "input_tokens"]),
        tokens_out: num(&["completion_tokens", "output_tokens"]),
        tokens_cached: nested("/prompt_tokens_details/cached_tokens")
            .or_else(|| num(&["cache_read_input_tokens"])),
        tokens_reasoning: nested("/completion_tokens_details/reasoning_tokens"),
    }
}

/// The `model` and `stream` fields of a JSON request body, if present.
pub fn request_model(body: &[u8]) -> (Option<String>, bool) {
    #[derive(serde::Deserialize)]
    struct Probe {
        model: Option<String>,
        #[serde(default)]
        stream: bool,
    }
    match serde_json::from_slice::<Probe>(body) {
        Ok(p) => (p.model, p.stream),
        Err(_) => (None, false),
    }
}

/// For an OpenAI chat stream: the body with `stream_options.include_usage`
/// turned on, when the client asked for a stream without it (so the gateway
/// learns the token counts). `None` when nothing needs to change.
pub fn with_stream_usage(body: &[u8]) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    let obj = v.as_object_mut()?;
    if obj.get("stream").and_then(Value::as_bool) != Some(true) {
        return None;
    }
    let options = obj
        .entry("stream_options")
        .or_insert_with(|| Value::Object(Default::default()));
    let options = options.as_object_mut()?;
    if options.get("include_usage").and_then(Value::as_bool) == Some(true) {
        return None;
    }
    options.insert("include_usage".into(), Value::Bool(true));
    serde_json::to_vec(&v).ok()
}

/// Removes the usage-only chunk (`"choices": []` with `usage`) from an OpenAI
/// SSE stream, for clients that did not ask for it. Events are reassembled
/// across network chunks; a pending event is bounded.
#[derive(Debug, Default)]
pub struct UsageChunkFilter {
    pending: Vec<u8>,
    /// How far the search for the end of the pending event got, so a slowly
    /// arriving event is not rescanned from its start on every chunk.
    scan: Scan,
}

/// Progress of [`event_end`] through a buffer.
#[derive(Debug, Default, Clone, Copy)]
struct Scan {
    /// Start of the current line.
    line_start: usize,
    /// Next byte to look at.
    pos: usize,
}

impl UsageChunkFilter {
    /// Bytes to send now.
    pub fn push(&mut self, data: &[u8], end_of_stream: bool) -> Vec<u8> {
        self.pending.extend_from_slice(data);
        let mut out = Vec::with_capacity(self.pending.len());
        loop {
            match event_end(&self.pending, self.scan, end_of_stream) {
                Ok(end) => {
                    let event: Vec<u8> = self.pending.drain(..end).collect();
                    self.scan = Scan::default();
                    if !is_usage_only(&event) {
                        out.extend_from_slice(&event);
                    }
                }
                Err(scan) => {
                    self.scan = scan;
                    break;
                }
            }
        }
        if end_of_stream || self.pending.len() > MAX_SSE_LINE {
            out.append(&mut self.pending);
            self.scan = Scan::default();
        }
        out
    }
}

/// The end (just past the blank line) of the first complete SSE event in
/// `buf`, or how far the scan got. Lines end in `\n`, `\r\n` or `\r` (the
/// SSE format allows all three); a `\r` at the very end may be half of a
/// `\r\n`, so it waits for the next byte unless the stream is `ended`. A
/// blank first line ends nothing (it joins the next event).
fn event_end(buf: &[u8], mut scan: Scan, ended: bool) -> Result<usize, Scan> {
    while let Some(&b) = buf.get(scan.pos) {
        let eol = match b {
            b'\n' => 1,
            b'\r' => match buf.get(scan.pos + 1) {
                None if ended => 1,
                None => return Err(scan),
                Some(b'\n') => 2,
                Some(_) => 1,
            },
            _ => {
                scan.pos += 1;
                continue;
            }
        };
        if scan.pos == scan.line_start && scan.pos > 0 {
            return Ok(scan.pos + eol);
        }
        scan.pos += eol;
        scan.line_start = scan.pos;
    }
    Err(scan)
}

fn is_usage_only(event: &[u8]) -> bool {
    event
        .split(|&b| b == b'\n' || b == b'\r')
        .filter_map(|l| l.strip_prefix(b"data:"))
        .filter_map(|d| serde_json::from_slice::<Value>(d).ok())
        .any(|v| {
            v.get("choices")
                .and_then(Value::as_array)
                .is_some_and(|c| c.is_empty())
                && v.get("usage").is_some_and(Value::is_object)
        })
}

#[cfg(test)]
mod tests;
