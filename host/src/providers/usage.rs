//! Token usage from provider responses, read from the bytes on their way to the
//! client: OpenAI chat and embeddings JSON (`usage.prompt_tokens`/`completion_tokens`), the
//! Responses API (`usage.input_tokens`/`output_tokens` with `input_tokens_details` and
//! `output_tokens_details`, in JSON and in the stream's `response.completed` event), Anthropic
//! (`usage.input_tokens`/`output_tokens` plus cache reads and writes), Gemini
//! (`usageMetadata`), Cohere v2 (`usage.billed_units`, in a stream the `message-end` event's
//! `delta.usage`), and SSE streams (OpenAI's final usage
//! chunk, Anthropic's `message_start`/`message_delta`). Never buffers a stream: SSE is scanned
//! line by line, lines ending in `\n`, `\r\n` or `\r` as the SSE format allows.
//!
//! Counts are normalised to one meaning whatever the provider: `tokens_in` is every input token
//! (OpenAI's `prompt_tokens` already includes cached ones; Anthropic's `input_tokens` excludes
//! cache reads and writes, which are added), of which `tokens_cached` were read from the
//! provider's cache and `tokens_cache_write` written to it; `tokens_out` is every output token
//! billed (Gemini's thinking tokens are added to its candidates), of which `tokens_reasoning`
//! were reasoning.

use serde_json::Value;

/// Longest SSE line kept for usage parsing (longer lines are cut, not buffered).
const MAX_SSE_LINE: usize = 1024 * 1024;
/// Largest JSON body kept for usage parsing.
const MAX_JSON_BYTES: usize = 4 * 1024 * 1024;
/// The end of a larger JSON body kept, where its `usage` is (generated images put it after
/// megabytes of base64).
const JSON_TAIL_BYTES: usize = 64 * 1024;

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
    /// Prompt tokens written to the provider's cache (Anthropic), billed at their own rate.
    pub tokens_cache_write: Option<u32>,
    /// Input tokens that were images (OpenAI's image models), billed at their own rate.
    pub tokens_image_in: Option<u32>,
    /// Audio tokens, in and out (realtime sessions), billed at audio rates the catalog does not
    /// carry: an answer with any is not priced.
    pub tokens_audio: Option<u32>,
}

/// Incremental usage reader.
#[derive(Debug)]
pub enum UsageReader {
    /// A JSON body, kept (up to a limit) and parsed at the end; past the limit only its last
    /// bytes are kept (`Some`), and the `usage` object found there is read.
    Json(Vec<u8>, Option<Vec<u8>>),
    /// An SSE stream: the unfinished line and the usage found so far.
    Sse(Vec<u8>, Usage),
    /// An AWS event stream (Bedrock ConverseStream): the unfinished frame and the usage found
    /// so far (its `metadata` event).
    EventStream(Vec<u8>, Usage),
    /// Usage already summed elsewhere (a WebSocket session's usage events).
    Known(Usage),
    /// Anything else.
    Other,
}

impl UsageReader {
    /// Picks the reader from the response content type.
    pub fn for_content_type(content_type: Option<&str>) -> Self {
        let ct = content_type.unwrap_or("").to_ascii_lowercase();
        if ct.starts_with("text/event-stream") {
            UsageReader::Sse(Vec::new(), Usage::default())
        } else if ct.starts_with("application/vnd.amazon.eventstream") {
            UsageReader::EventStream(Vec::new(), Usage::default())
        } else if ct.contains("json") {
            UsageReader::Json(Vec::new(), None)
        } else {
            UsageReader::Other
        }
    }

    /// Feeds bytes as they go to the client.
    pub fn feed(&mut self, bytes: &[u8]) {
        match self {
            UsageReader::Json(buf, tail) => match tail {
                None if buf.len() + bytes.len() <= MAX_JSON_BYTES => buf.extend_from_slice(bytes),
                None => {
                    let mut t = std::mem::take(buf);
                    t.extend_from_slice(bytes);
                    t.drain(..t.len().saturating_sub(JSON_TAIL_BYTES));
                    *tail = Some(t);
                }
                Some(t) => {
                    t.extend_from_slice(bytes);
                    if t.len() > 2 * JSON_TAIL_BYTES {
                        t.drain(..t.len() - JSON_TAIL_BYTES);
                    }
                }
            },
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
            UsageReader::EventStream(pending, usage) => {
                pending.extend_from_slice(bytes);
                scan_event_frames(pending, usage);
            }
            UsageReader::Known(_) | UsageReader::Other => {}
        }
    }

    /// The usage found, once the body is complete.
    pub fn finish(&mut self) -> Usage {
        match self {
            UsageReader::Json(buf, None) => {
                // Only `usage` is kept; the rest of the answer is skipped
                // while parsing, not built into a tree.
                #[derive(serde::Deserialize)]
                struct Answer {
                    usage: Option<Value>,
                    #[serde(rename = "usageMetadata")]
                    usage_metadata: Option<Value>,
                    /// Workers AI wraps its answer: `{"result": {…, "usage": …}}`.
                    result: Option<Value>,
                    /// Cohere's embed: `{"meta": {"billed_units": …}}`.
                    meta: Option<Value>,
                }
                match serde_json::from_slice::<Answer>(buf) {
                    Ok(Answer { usage: Some(u), .. }) => usage_in(&u),
                    Ok(Answer {
                        usage_metadata: Some(u),
                        ..
                    }) => gemini_usage(&u),
                    Ok(Answer {
                        result: Some(r), ..
                    }) => usage_from(&r),
                    Ok(Answer { meta: Some(m), .. }) => usage_in(&m),
                    _ => Usage::default(),
                }
            }
            UsageReader::Json(_, Some(tail)) => usage_in_tail(tail),
            UsageReader::Other => Usage::default(),
            UsageReader::Known(usage) => *usage,
            UsageReader::EventStream(_, usage) => *usage,
            UsageReader::Sse(line, usage) => {
                scan_sse_line(line, usage);
                line.clear();
                *usage
            }
        }
    }
}

/// The usage of a JSON body too large to keep, from its last bytes: the last `"usage":` there
/// and the object after it.
fn usage_in_tail(tail: &[u8]) -> Usage {
    // Gemini's `usageMetadata` (image output can make its answers this large), else `usage`.
    for (key, gemini) in [
        (&b"\"usageMetadata\""[..], true),
        (&b"\"usage\""[..], false),
        // Cohere's embed: `"meta": {"billed_units": …}` at the end of a large answer.
        (&b"\"meta\""[..], false),
    ] {
        let found = object_after(tail, key);
        if let Some(v) = found {
            return if gemini {
                gemini_usage(&v)
            } else {
                usage_in(&v)
            };
        }
    }
    Usage::default()
}

/// The JSON object after the last `key:` in `bytes`.
fn object_after(tail: &[u8], key: &[u8]) -> Option<Value> {
    let at = tail.windows(key.len()).rposition(|w| w == key)?;
    let rest = &tail[at + key.len()..];
    let colon = rest.iter().position(|b| !b.is_ascii_whitespace())?;
    if rest[colon] != b':' {
        return None;
    }
    let mut values = serde_json::Deserializer::from_slice(&rest[colon + 1..]).into_iter::<Value>();
    match values.next() {
        Some(Ok(v)) if v.is_object() => Some(v),
        _ => None,
    }
}

fn scan_sse_line(line: &[u8], usage: &mut Usage) {
    let Some(data) = line.strip_prefix(b"data:") else {
        return;
    };
    // Cheap filter: only parse events that mention usage (`"usage"`, `"usageMetadata"`).
    if !data.windows(6).any(|w| w == b"\"usage") {
        return;
    }
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    // Anthropic's message_start and the Responses API's events wrap the object that has it.
    let found = match (v.get("message"), v.get("response")) {
        (Some(message), _) => usage_from(message),
        (None, Some(response)) if response.is_object() => usage_from(response),
        _ => match (v.get("usageMetadata"), v.get("usage")) {
            (Some(u), _) => gemini_usage(u),
            (None, Some(_)) => usage_from(&v),
            // Cohere v2's `message-end` event carries it in its `delta`.
            (None, None) => v.get("delta").map(usage_from).unwrap_or_default(),
        },
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
    if found.tokens_cache_write.is_some() {
        usage.tokens_cache_write = found.tokens_cache_write;
    }
    if found.tokens_image_in.is_some() {
        usage.tokens_image_in = found.tokens_image_in;
    }
}

fn usage_from(v: &Value) -> Usage {
    v.get("usage").map(usage_in).unwrap_or_default()
}

/// A token count at `path`: an integer, or a float with no fraction (Cohere types its counts
/// as floats, `18.0`), capped to `u32`; anything else is no count.
fn count(v: &Value, path: &str) -> Option<u32> {
    let n = v.pointer(path)?;
    n.as_u64()
        .or_else(|| {
            n.as_f64()
                .filter(|f| *f >= 0.0 && f.fract() == 0.0)
                .map(|f| f as u64)
        })
        .map(|n| n.min(u32::MAX as u64) as u32)
}

/// Token counts of a `usage` object (OpenAI chat, embeddings and Responses, Anthropic, Cohere
/// v2), normalised as the module says.
pub(crate) fn usage_in(u: &Value) -> Usage {
    if !u.is_object() {
        return Usage::default();
    }
    // Cohere v2: billed units are what is charged.
    if let Some(billed) = u.get("billed_units").filter(|b| b.is_object()) {
        return Usage {
            tokens_in: count(billed, "/input_tokens"),
            tokens_out: count(billed, "/output_tokens"),
            ..Usage::default()
        };
    }
    let first = |paths: &[&str]| paths.iter().find_map(|p| count(u, p));
    // Anthropic's names, or Bedrock Converse's camelCase ones (same meaning).
    let cache_read = first(&["/cache_read_input_tokens", "/cacheReadInputTokens"]);
    let cache_write = first(&["/cache_creation_input_tokens", "/cacheWriteInputTokens"]);
    let input = first(&["/input_tokens", "/inputTokens"]);
    let tokens_in = match (count(u, "/prompt_tokens"), input) {
        (Some(prompt), _) => Some(prompt),
        // Anthropic counts cache reads and writes apart from `input_tokens` (the Responses
        // API, which has no such fields, counts them inside).
        (None, Some(input)) => Some(
            input
                .saturating_add(cache_read.unwrap_or(0))
                .saturating_add(cache_write.unwrap_or(0)),
        ),
        (None, None) => None,
    };
    Usage {
        tokens_in,
        tokens_out: first(&["/completion_tokens", "/output_tokens", "/outputTokens"]),
        tokens_cached: first(&[
            "/prompt_tokens_details/cached_tokens",
            "/input_tokens_details/cached_tokens",
            // OpenAI Realtime's `response.done`.
            "/input_token_details/cached_tokens",
        ])
        .or(cache_read),
        tokens_reasoning: first(&[
            "/completion_tokens_details/reasoning_tokens",
            "/output_tokens_details/reasoning_tokens",
        ]),
        tokens_cache_write: cache_write,
        tokens_image_in: count(u, "/input_tokens_details/image_tokens"),
        tokens_audio: audio_tokens(u),
    }
}

/// Audio tokens in and out: OpenAI chat (`…_tokens_details`) and Realtime (`…_token_details`).
fn audio_tokens(u: &Value) -> Option<u32> {
    let found: Vec<u32> = [
        "/prompt_tokens_details/audio_tokens",
        "/completion_tokens_details/audio_tokens",
        "/input_token_details/audio_tokens",
        "/output_token_details/audio_tokens",
    ]
    .iter()
    .filter_map(|p| count(u, p))
    .collect();
    (!found.is_empty()).then(|| found.iter().fold(0u32, |a, b| a.saturating_add(*b)))
}

/// Reads the complete frames of an AWS event stream (Bedrock ConverseStream) off the front of
/// `pending`: each is a 12-byte prelude (total length, headers length, CRC), headers, a JSON
/// payload and a 4-byte CRC. The `metadata` event's payload has `usage`. A frame that claims an
/// impossible length ends the scan (the stream is not an event stream after all).
fn scan_event_frames(pending: &mut Vec<u8>, usage: &mut Usage) {
    loop {
        match super::eventstream::take_frame(pending) {
            Ok(Some(frame)) => {
                let payload = &frame.payload;
                if payload.windows(7).any(|w| w == b"\"usage\"")
                    && let Ok(v) = serde_json::from_slice::<Value>(payload)
                {
                    let found = usage_from(&v);
                    if found.tokens_in.is_some() || found.tokens_out.is_some() {
                        *usage = found;
                    }
                }
            }
            Ok(None) => return,
            Err(_) => {
                pending.clear();
                return;
            }
        }
    }
}

/// Gemini's `usageMetadata`: `promptTokenCount` includes `cachedContentTokenCount`; thinking
/// tokens (`thoughtsTokenCount`) are billed as output beside `candidatesTokenCount` (in a Live
/// session, `responseTokenCount`). Audio tokens (the `AUDIO` modality of the per-modality
/// details) are counted apart: they are billed at audio rates, never at text rates.
pub fn gemini_usage(u: &Value) -> Usage {
    if !u.is_object() {
        return Usage::default();
    }
    let candidates = count(u, "/candidatesTokenCount").or_else(|| count(u, "/responseTokenCount"));
    let audio: Vec<u32> = [
        "promptTokensDetails",
        "candidatesTokensDetails",
        "responseTokensDetails",
        "toolUsePromptTokensDetails",
    ]
    .iter()
    .filter_map(|k| u.get(*k).and_then(Value::as_array))
    .flatten()
    .filter(|d| d.get("modality").and_then(Value::as_str) == Some("AUDIO"))
    .filter_map(|d| count(d, "/tokenCount"))
    .collect();
    let thoughts = count(u, "/thoughtsTokenCount");
    // Built-in tools' prompts (`toolUsePromptTokenCount`) are billed as input too.
    let prompt = match (
        count(u, "/promptTokenCount"),
        count(u, "/toolUsePromptTokenCount"),
    ) {
        (None, None) => None,
        (p, t) => Some(p.unwrap_or(0).saturating_add(t.unwrap_or(0))),
    };
    Usage {
        tokens_in: prompt,
        tokens_out: match (candidates, thoughts) {
            (None, None) => None,
            (c, t) => Some(c.unwrap_or(0).saturating_add(t.unwrap_or(0))),
        },
        tokens_cached: count(u, "/cachedContentTokenCount"),
        tokens_reasoning: thoughts,
        tokens_audio: (!audio.is_empty())
            .then(|| audio.iter().fold(0u32, |a, b| a.saturating_add(*b))),
        tokens_cache_write: None,
        tokens_image_in: None,
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

/// The model named in a provider path, for APIs that put it there rather than in the body:
/// Gemini and Vertex AI (`…/models/{model}:generateContent`), Bedrock (`/model/{id}/converse`).
pub fn model_from_path(path: &str) -> Option<String> {
    // Gemini's method follows a colon; a Bedrock model id may contain one (`…-v1:0`).
    let (rest, stops): (&str, &[char]) = match path.rsplit_once("/models/") {
        Some((_, rest)) => (rest, &[':', '/']),
        None => (path.rsplit_once("/model/")?.1, &['/']),
    };
    let model = &rest[..rest.find(stops).unwrap_or(rest.len())];
    // SDKs percent-encode the id (`…-v1%3A0`); prices name it as the provider does.
    let model = percent_encoding::percent_decode_str(model).decode_utf8_lossy();
    (!model.is_empty()).then(|| model.into_owned())
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
mod fixtures;
#[cfg(test)]
mod tests;
