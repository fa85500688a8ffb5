//! A mock AI provider for demos and tests, offline: OpenAI-shaped chat
//! completions (JSON and SSE with a usage chunk), Anthropic-shaped messages
//! (JSON and SSE events), and a model list. Failure injection through request
//! headers:
//!
//! | header | effect |
//! |---|---|
//! | `x-mock-status: 503` | answer with this status and a JSON error |
//! | `x-mock-retry-after: 1` | with `x-mock-status`: send `Retry-After: 1` on the failure |
//! | `x-mock-fail-times: 2` | fail only the first 2 requests carrying the same `x-mock-fail-key` |
//! | `x-mock-delay-ms: 300` | wait before the response head |
//! | `x-mock-chunks: 8` / `x-mock-chunk-delay-ms: 50` | SSE pacing |
//! | `x-mock-truncate-after: 2` | break the SSE stream after 2 chunks |
//! | `x-mock-end-delay-ms: 5` | end the SSE body this long after its last event (as real servers do) |
//! | `x-mock-reply: text` | the assistant's reply |
//! | `x-mock-cached-tokens: 64` | report that many prompt tokens as read from the provider's cache |
//! | `x-mock-image-bytes: 5000000` | make each generated image's base64 about this long |
//!
//! Paths answered in their API's real shape: `…/chat/completions` (OpenAI chat, JSON and SSE),
//! `…/messages` (Anthropic Messages, JSON and SSE), `…/responses` (OpenAI Responses, JSON and
//! SSE), `…/embeddings` (OpenAI embeddings), `…/images/generations` (OpenAI images, with the
//! gpt-image models' token usage), `GET …/models`; any other POST gets a chat completion.
//!
//! `POST …/models/{model}:generateContent` (and `:streamGenerateContent`) is Gemini (see
//! `gemini`).
//! `POST …/v2/chat` is Cohere's v2 chat and `…/v2/embed` its embed (see `cohere`).
//! `POST …/model/{id}/converse` is Bedrock Converse behind a real SigV4 check (see `bedrock`).
//! `GET …/realtime?model=…` upgraded to a WebSocket is OpenAI Realtime (see `realtime`), and
//! `GET …/ws/…BidiGenerateContent` Gemini Live (see `live`).
//!
//! `GET /__mock/requests` lists what it received; `DELETE` clears it.

use crate::http::body::{BodyError, GatewayBody};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// What the mock remembers.
#[derive(Debug, Default)]
pub struct MockState {
    requests: Mutex<Vec<Value>>,
    failures: Mutex<HashMap<String, u64>>,
    open_streams: Arc<std::sync::atomic::AtomicUsize>,
    open_sockets: Arc<std::sync::atomic::AtomicUsize>,
    /// Requests are not recorded (`mock-provider --lean`).
    unrecorded: bool,
}

pub mod bedrock;
mod cohere;
mod gemini;
mod live;
mod realtime;

impl MockState {
    /// A mock that records no request: a benchmark's upstream.
    pub fn lean() -> Self {
        MockState {
            unrecorded: true,
            ..MockState::default()
        }
    }

    /// SSE responses being sent right now.
    pub fn open_streams(&self) -> usize {
        self.open_streams.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Realtime WebSocket sessions open right now.
    pub fn open_sockets(&self) -> usize {
        self.open_sockets.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The requests received so far (method, path, headers, body).
    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// Serves the mock on an already bound listener until the task is dropped.
pub async fn serve(listener: TcpListener, state: Arc<MockState>) {
    let builder = auto_builder();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let service = service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, std::convert::Infallible>(handle(state, req).await) }
        });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

fn auto_builder() -> hyper_util::server::conn::auto::Builder<TokioExecutor> {
    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
}

fn header<'a>(req: &'a hyper::http::request::Parts, name: &str) -> Option<&'a str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

fn number(parts: &hyper::http::request::Parts, name: &str) -> Option<u64> {
    header(parts, name).and_then(|v| v.trim().parse().ok())
}

fn json_response(status: StatusCode, body: Value) -> Response<GatewayBody> {
    let mut r = Response::new(GatewayBody::full(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// A benchmark's upstream (`--lean`) answers a plain non-streamed chat completion (no
/// `x-mock-*` header) without building JSON trees: the same shape and usage as the full
/// path, with a fixed reply. `None`: take the full path.
fn lean_chat(
    parts: &hyper::http::request::Parts,
    path: &str,
    body: &[u8],
) -> Option<Response<GatewayBody>> {
    #[derive(serde::Deserialize)]
    struct Probe {
        model: Option<String>,
        #[serde(default)]
        stream: bool,
    }
    if parts.method != Method::POST
        || !path.ends_with("/chat/completions")
        || parts
            .headers
            .keys()
            .any(|k| k.as_str().starts_with("x-mock-"))
    {
        return None;
    }
    let probe: Probe = serde_json::from_slice(body).ok()?;
    if probe.stream {
        return None;
    }
    let model = serde_json::to_string(probe.model.as_deref().unwrap_or("mock-model")).ok()?;
    let text = format!(
        concat!(
            r#"{{"id":"chatcmpl-mock","object":"chat.completion","created":{},"model":{},"#,
            r#""choices":[{{"index":0,"message":{{"role":"assistant","content":"mock says: ok"}},"finish_reason":"stop"}}],"#,
            r#""usage":{{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15,"prompt_tokens_details":{{"cached_tokens":0}}}}}}"#
        ),
        crate::store::now_ms() / 1000,
        model
    );
    let mut r = Response::new(GatewayBody::full(text));
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Some(r)
}

/// Keeps the request (method, path, query, headers, body) for `/__mock/requests`.
fn record(state: &MockState, parts: &hyper::http::request::Parts, path: &str, body: &[u8]) {
    let headers: serde_json::Map<String, Value> = parts
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                Value::String(v.to_str().unwrap_or("").to_string()),
            )
        })
        .collect();
    if let Ok(mut r) = state.requests.lock() {
        // Bounded: the newest 1000 requests.
        if r.len() >= 1000 {
            r.remove(0);
        }
        r.push(json!({
            "method": parts.method.as_str(),
            "path": path,
            "query": parts.uri.query(),
            "headers": headers,
            "body": String::from_utf8_lossy(body),
            "at_ms": crate::store::now_ms(),
        }));
    }
}

async fn handle(state: Arc<MockState>, req: Request<Incoming>) -> Response<GatewayBody> {
    let (mut parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    if path == "/__mock/requests" {
        if parts.method == Method::DELETE {
            if let Ok(mut r) = state.requests.lock() {
                r.clear();
            }
            return json_response(StatusCode::OK, json!({"cleared": true}));
        }
        return json_response(StatusCode::OK, Value::Array(state.requests()));
    }
    if state.unrecorded {
        if let Some(fast) = lean_chat(&parts, &path, &body) {
            return fast;
        }
    } else {
        record(&state, &parts, &path, &body);
    }

    if path.ends_with("/realtime") && parts.method == Method::GET {
        return realtime::accept(&state, &mut parts);
    }
    if path.ends_with(".BidiGenerateContent") && parts.method == Method::GET {
        return live::accept(&state, &mut parts);
    }
    if let Some(ms) = number(&parts, "x-mock-delay-ms") {
        tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
    }
    if let Some(status) = number(&parts, "x-mock-status") {
        let should_fail = match number(&parts, "x-mock-fail-times") {
            None => true,
            Some(times) => {
                let key = header(&parts, "x-mock-fail-key")
                    .unwrap_or("default")
                    .to_string();
                let mut f = state.failures.lock().unwrap_or_else(|e| e.into_inner());
                let seen = f.entry(key).or_insert(0);
                *seen += 1;
                *seen <= times
            }
        };
        if should_fail {
            let status =
                StatusCode::from_u16(status as u16).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut r = json_response(
                status,
                json!({"error": {"message": format!("mock failure {}", status.as_u16()), "type": "mock_error"}}),
            );
            if let Some(secs) = number(&parts, "x-mock-retry-after") {
                r.headers_mut()
                    .insert("retry-after", hyper::header::HeaderValue::from(secs));
            }
            return r;
        }
    }

    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if path.ends_with("/moderations") && parts.method == Method::POST {
        return moderations(&request).await;
    }
    if path.ends_with("/models") && parts.method == Method::GET {
        return json_response(
            StatusCode::OK,
            json!({"object": "list", "data": [{"id": "mock-model", "object": "model", "owned_by": "aigw"}]}),
        );
    }
    if parts.method != Method::POST {
        return json_response(
            StatusCode::NOT_FOUND,
            json!({"error": {"message": format!("mock has no route for {} {path}", parts.method)}}),
        );
    }
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock-model")
        .to_string();
    let reply = match header(&parts, "x-mock-reply") {
        Some(r) => r.to_string(),
        None if model.contains("guard") => guard_verdict(&request).await,
        None => default_reply(&request),
    };
    let prompt_tokens = count_words(&request) + 3;
    let words: Vec<String> = reply.split_inclusive(' ').map(str::to_string).collect();
    let completion_tokens = words.len() as u64;
    let stream = request
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let pacing = Pacing {
        chunks: number(&parts, "x-mock-chunks").map(|c| c.clamp(1, 1000) as usize),
        delay: Duration::from_millis(
            number(&parts, "x-mock-chunk-delay-ms")
                .unwrap_or(10)
                .min(10_000),
        ),
        truncate_after: number(&parts, "x-mock-truncate-after").map(|n| n as usize),
        end_delay: Duration::from_millis(
            number(&parts, "x-mock-end-delay-ms")
                .unwrap_or(0)
                .min(10_000),
        ),
        open: state.open_streams.clone(),
    };
    let cached = number(&parts, "x-mock-cached-tokens")
        .unwrap_or(0)
        .min(prompt_tokens);
    if path.ends_with("/embeddings") {
        return embeddings(&request, &model);
    }
    if path.ends_with("/converse") || path.ends_with("/converse-stream") {
        let stream = path.ends_with("/converse-stream");
        return bedrock::converse(&state, &parts, &body, &request, stream);
    }
    if path.ends_with("/v2/embed") {
        return cohere_embed(&request);
    }
    if path.ends_with("/v2/chat") {
        return cohere::chat(&parts, &request, pacing);
    }
    if path.ends_with("/images/generations") {
        let padding = number(&parts, "x-mock-image-bytes")
            .unwrap_or(0)
            .min(64 << 20) as usize;
        return images(&request, &model, padding);
    }
    if path.contains(":generateContent") || path.contains(":streamGenerateContent") {
        return gemini::generate(&parts, &path, &request, pacing);
    }
    if path.ends_with("/responses") {
        let events = responses_events(
            &model,
            &words,
            prompt_tokens,
            completion_tokens,
            cached,
            pacing.chunks,
        );
        if stream {
            return sse(events, pacing);
        }
        // The JSON answer is the `response` of the stream's last event.
        let last = events
            .last()
            .and_then(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
            .and_then(|d| serde_json::from_str::<Value>(d).ok())
            .and_then(|v| v.get("response").cloned())
            .unwrap_or(Value::Null);
        return json_response(StatusCode::OK, last);
    }
    // One tool call per turn: once the conversation ends with the tool's result (an OpenAI
    // `tool` message or an Anthropic `tool_result` block), answer.
    let after_tool = request
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.last())
        .is_some_and(|m| {
            m.get("role").and_then(Value::as_str) == Some("tool")
                || m.get("content")
                    .and_then(Value::as_array)
                    .is_some_and(|blocks| {
                        blocks
                            .iter()
                            .any(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
                    })
        });
    if path.ends_with("/messages") {
        if let Some(name) = header(&parts, "x-mock-tool-call").filter(|_| !after_tool) {
            let args = header(&parts, "x-mock-tool-args").unwrap_or("{}");
            return anthropic_tool_use(&model, name, args, prompt_tokens, stream, pacing);
        }
        if stream {
            return sse(
                anthropic_events(
                    &model,
                    &words,
                    prompt_tokens,
                    completion_tokens,
                    pacing.chunks,
                ),
                pacing,
            );
        }
        return json_response(
            StatusCode::OK,
            json!({
                "id": "msg_mock", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": reply}],
                "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": prompt_tokens - cached, "cache_read_input_tokens": cached,
                          "cache_creation_input_tokens": 0, "output_tokens": completion_tokens}
            }),
        );
    }
    // Like OpenAI: the usage chunk only when the request asks for it.
    let include_usage = request
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    if let Some(name) = header(&parts, "x-mock-tool-call").filter(|_| !after_tool) {
        let args = header(&parts, "x-mock-tool-args").unwrap_or("{}");
        return tool_call(
            &model,
            name,
            args,
            prompt_tokens,
            stream,
            include_usage,
            pacing,
        );
    }
    if stream {
        let mut events = openai_events(
            &model,
            &words,
            prompt_tokens,
            completion_tokens,
            pacing.chunks,
        );
        if !include_usage {
            events.retain(|e| !e.contains("\"usage\""));
        }
        return sse(events, pacing);
    }
    json_response(
        StatusCode::OK,
        json!({
            "id": "chatcmpl-mock", "object": "chat.completion", "created": crate::store::now_ms() / 1000,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens,
                      "prompt_tokens_details": {"cached_tokens": cached}}
        }),
    )
}

/// The words of a classifier test: `mock-flag:NAME` flags category NAME (a moderation
/// category or a Llama Guard code), `mock-delay-ms:N` makes the classifier answer N ms late.
fn classifier_words(request: &Value) -> (Vec<String>, u64) {
    // JSON escapes (`\n`, `\t`) would glue their letter to the next word.
    let text = request.to_string().replace("\\n", " ").replace("\\t", " ");
    let mut flags: Vec<String> = Vec::new();
    let mut delay = 0;
    for word in text.split(|c: char| c.is_whitespace() || c == '"' || c == ',' || c == '\\') {
        if let Some(name) = word.strip_prefix("mock-flag:") {
            let name =
                name.trim_end_matches(|c: char| !(c.is_alphanumeric() || c == '/' || c == '-'));
            if !name.is_empty() && !flags.iter().any(|f| f == name) {
                flags.push(name.to_string());
            }
        }
        if let Some(ms) = word.strip_prefix("mock-delay-ms:") {
            delay = ms
                .trim_end_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .unwrap_or(0);
        }
    }
    (flags, delay.min(60_000))
}

/// OpenAI's `/moderations` answer, in its full shape: every category, with scores and the
/// input types each applied to. Categories named by `mock-flag:` words are flagged.
async fn moderations(request: &Value) -> Response<GatewayBody> {
    const CATEGORIES: [&str; 13] = [
        "harassment",
        "harassment/threatening",
        "hate",
        "hate/threatening",
        "illicit",
        "illicit/violent",
        "self-harm",
        "self-harm/intent",
        "self-harm/instructions",
        "sexual",
        "sexual/minors",
        "violence",
        "violence/graphic",
    ];
    let (flags, delay) = classifier_words(request);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let inputs = match request.get("input") {
        Some(Value::Array(items)) => items.len().max(1),
        _ => 1,
    };
    let result = {
        let flagged = |c: &str| flags.iter().any(|f| f == c);
        let categories: serde_json::Map<String, Value> = CATEGORIES
            .iter()
            .map(|c| (c.to_string(), Value::Bool(flagged(c))))
            .collect();
        let scores: serde_json::Map<String, Value> = CATEGORIES
            .iter()
            .map(|c| (c.to_string(), json!(if flagged(c) { 0.97 } else { 0.0004 })))
            .collect();
        let applied: serde_json::Map<String, Value> = CATEGORIES
            .iter()
            .map(|c| (c.to_string(), json!(["text"])))
            .collect();
        json!({
            "flagged": CATEGORIES.iter().any(|c| flagged(c)),
            "categories": categories,
            "category_scores": scores,
            "category_applied_input_types": applied,
        })
    };
    json_response(
        StatusCode::OK,
        json!({
            "id": "modr-mock",
            "model": request.get("model").and_then(Value::as_str).unwrap_or("omni-moderation-latest"),
            "results": vec![result; inputs],
        }),
    )
}

/// A Llama-Guard-style verdict: `safe`, or `unsafe` and the `mock-flag:S…` codes.
async fn guard_verdict(request: &Value) -> String {
    let (flags, delay) = classifier_words(request);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let codes: Vec<&str> = flags
        .iter()
        .map(String::as_str)
        .filter(|f| f.starts_with('S') && f[1..].parse::<u8>().is_ok())
        .collect();
    if codes.is_empty() {
        "safe".into()
    } else {
        format!("unsafe\n{}", codes.join(","))
    }
}

fn default_reply(request: &Value) -> String {
    // Chat `messages`, or the Responses API's `input` (a string or a list of items).
    let last = match request.get("messages").or_else(|| request.get("input")) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .last()
            .and_then(|m| m.get("content"))
            .map(|c| match c {
                Value::String(s) => s.clone(),
                // Content parts (`[{"type":"input_text","text":…}]`), or an Anthropic
                // `tool_result` block's content: their texts.
                Value::Array(parts) => parts
                    .iter()
                    .filter_map(|p| {
                        p.get("text")
                            .or_else(|| p.get("content"))
                            .and_then(Value::as_str)
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
                other => other.to_string(),
            })
            .unwrap_or_default(),
        _ => String::new(),
    };
    let last: String = last.chars().take(200).collect();
    format!("Hello from the aigw mock provider! You said: {last}")
}

fn count_words(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.split_whitespace().count() as u64,
        Value::Array(a) => a.iter().map(count_words).sum(),
        Value::Object(o) => o
            .iter()
            .filter(|(k, _)| {
                matches!(
                    k.as_str(),
                    "messages" | "content" | "system" | "input" | "text"
                )
            })
            .map(|(_, v)| count_words(v))
            .sum(),
        _ => 0,
    }
}

/// Splits the words into `chunks` groups (default: one word per chunk).
fn groups(words: &[String], chunks: Option<usize>) -> Vec<String> {
    let n = chunks.unwrap_or(words.len()).max(1);
    let per = words.len().div_ceil(n).max(1);
    words.chunks(per).map(|c| c.concat()).collect()
}

fn openai_events(
    model: &str,
    words: &[String],
    pin: u64,
    pout: u64,
    chunks: Option<usize>,
) -> Vec<String> {
    let created = crate::store::now_ms() / 1000;
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": created, "model": model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut events = vec![format!(
        "data: {}\n\n",
        chunk(json!({"role": "assistant", "content": ""}), Value::Null)
    )];
    for g in groups(words, chunks) {
        events.push(format!(
            "data: {}\n\n",
            chunk(json!({"content": g}), Value::Null)
        ));
    }
    events.push(format!("data: {}\n\n", chunk(json!({}), json!("stop"))));
    events.push(format!(
        "data: {}\n\n",
        json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": created, "model": model,
               "choices": [], "usage": {"prompt_tokens": pin, "completion_tokens": pout, "total_tokens": pin + pout}})
    ));
    events.push("data: [DONE]\n\n".to_string());
    events
}

/// A chat completion that calls tool `name` with `args` (a JSON text), as JSON or as a stream
/// whose arguments arrive in two pieces (`x-mock-tool-call`, `x-mock-tool-args`), unless the
/// conversation already ends with a tool's result.
fn tool_call(
    model: &str,
    name: &str,
    args: &str,
    prompt_tokens: u64,
    stream: bool,
    include_usage: bool,
    pacing: Pacing,
) -> Response<GatewayBody> {
    let created = crate::store::now_ms() / 1000;
    let out_tokens = (args.len() as u64 / 4).max(1) + 5;
    let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": out_tokens,
                       "total_tokens": prompt_tokens + out_tokens});
    if !stream {
        return json_response(
            StatusCode::OK,
            json!({"id": "chatcmpl-mock", "object": "chat.completion", "created": created, "model": model,
                   "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                       "role": "assistant", "content": null,
                       "tool_calls": [{"id": "call_mock_1", "type": "function",
                                       "function": {"name": name, "arguments": args}}]}}],
                   "usage": usage}),
        );
    }
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": created, "model": model,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let cut = args
        .char_indices()
        .map(|(i, _)| i)
        .find(|i| *i >= args.len() / 2)
        .unwrap_or(0);
    let mut events = vec![
        chunk(json!({"role": "assistant", "content": null}), Value::Null),
        chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_mock_1", "type": "function",
                                   "function": {"name": name, "arguments": ""}}]}),
            Value::Null,
        ),
    ];
    for piece in [&args[..cut], &args[cut..]] {
        events.push(chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
            Value::Null,
        ));
    }
    events.push(chunk(json!({}), json!("tool_calls")));
    if include_usage {
        events.push(format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": created,
                   "model": model, "choices": [], "usage": usage})
        ));
    }
    events.push("data: [DONE]\n\n".to_string());
    sse(events, pacing)
}

/// An Anthropic message that uses tool `name` with `args` (a JSON text), as JSON or as a
/// stream whose input arrives in two `input_json_delta` pieces.
fn anthropic_tool_use(
    model: &str,
    name: &str,
    args: &str,
    prompt_tokens: u64,
    stream: bool,
    pacing: Pacing,
) -> Response<GatewayBody> {
    let input: Value = serde_json::from_str(args).unwrap_or_else(|_| json!({}));
    let out_tokens = (args.len() as u64 / 4).max(1) + 5;
    if !stream {
        return json_response(
            StatusCode::OK,
            json!({"id": "msg_mock", "type": "message", "role": "assistant", "model": model,
                   "content": [{"type": "tool_use", "id": "toolu_mock_1", "name": name, "input": input}],
                   "stop_reason": "tool_use", "stop_sequence": null,
                   "usage": {"input_tokens": prompt_tokens, "output_tokens": out_tokens}}),
        );
    }
    let ev = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let text = input.to_string();
    let cut = text
        .char_indices()
        .map(|(i, _)| i)
        .find(|i| *i >= text.len() / 2)
        .unwrap_or(0);
    let mut events = vec![
        ev(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_mock", "type": "message",
            "role": "assistant", "model": model, "content": [], "stop_reason": null,
            "usage": {"input_tokens": prompt_tokens, "output_tokens": 1}}}),
        ),
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
                   "content_block": {"type": "tool_use", "id": "toolu_mock_1", "name": name, "input": {}}}),
        ),
    ];
    for piece in [&text[..cut], &text[cut..]] {
        events.push(ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
                   "delta": {"type": "input_json_delta", "partial_json": piece}}),
        ));
    }
    events.push(ev(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push(ev(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
               "usage": {"output_tokens": out_tokens}}),
    ));
    events.push(ev("message_stop", json!({"type": "message_stop"})));
    sse(events, pacing)
}

/// An OpenAI embeddings answer: one vector per input, prompt tokens only.
fn embeddings(request: &Value, model: &str) -> Response<GatewayBody> {
    let inputs: Vec<Value> = match request.get("input") {
        Some(Value::Array(items)) => items.clone(),
        Some(one) => vec![one.clone()],
        None => Vec::new(),
    };
    let tokens = count_words(request).max(1);
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            let seed = input.to_string().len() as f64;
            let vector: Vec<f64> = (0..8).map(|k| ((seed + k as f64) * 0.37).sin()).collect();
            json!({"object": "embedding", "index": i, "embedding": vector})
        })
        .collect();
    json_response(
        StatusCode::OK,
        json!({"object": "list", "data": data, "model": model,
               "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
    )
}

/// Cohere's v2 embed: `embeddings.float`, `texts`, and the billed input tokens (one per word).
fn cohere_embed(request: &Value) -> Response<GatewayBody> {
    let Some(texts) = request.get("texts").and_then(Value::as_array) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"id": "mock", "message": "invalid request: texts must be a list of strings"}),
        );
    };
    if request.get("input_type").is_none() {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"id": "mock", "message": "invalid request: input_type is required for embed models v3 and higher"}),
        );
    }
    let dims = request
        .get("output_dimension")
        .and_then(Value::as_u64)
        .unwrap_or(8)
        .min(4096) as usize;
    let vectors: Vec<Vec<f64>> = texts
        .iter()
        .map(|t| {
            let seed = t.as_str().unwrap_or("").len() as f64;
            (0..dims)
                .map(|k| ((seed + k as f64) * 0.37).sin())
                .collect()
        })
        .collect();
    let tokens = count_words(&Value::Array(texts.clone())).max(1);
    json_response(
        StatusCode::OK,
        json!({"id": "emb-mock", "embeddings": {"float": vectors}, "texts": texts,
               "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": tokens}}}),
    )
}

/// Output tokens of one gpt-image-1 image by quality (1024×1024, OpenAI's published counts).
fn image_tokens(quality: &str) -> u64 {
    match quality {
        "low" => 272,
        "high" => 4160,
        _ => 1056,
    }
}

/// An OpenAI image generation answer: `n` images as base64 PNG (a 1×1 pixel, padded to about
/// `padding` bytes of base64 when asked), with token usage for the gpt-image models (DALL·E
/// reports none).
fn images(request: &Value, model: &str, padding: usize) -> Response<GatewayBody> {
    const PIXEL: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
    let n = request
        .get("n")
        .and_then(Value::as_u64)
        .unwrap_or(1)
        .clamp(1, 10);
    let quality = request
        .get("quality")
        .and_then(Value::as_str)
        .unwrap_or("auto");
    let mut image = String::with_capacity(PIXEL.len().max(padding));
    image.push_str(PIXEL);
    // Base64 padding characters only end the text; whole "AAAA" groups keep it decodable.
    let target = padding.saturating_sub(PIXEL.len()) / 4 * 4;
    image.insert_str(0, &"AAAA".repeat(target / 4));
    let data: Vec<Value> = (0..n).map(|_| json!({"b64_json": image})).collect();
    let mut answer = json!({
        "created": 1_700_000_000u64,
        "data": data,
        "output_format": "png",
        "quality": quality,
        "size": request.get("size").and_then(Value::as_str).unwrap_or("1024x1024"),
    });
    if model.starts_with("gpt-image") {
        let input = count_words(request).max(1);
        let output = image_tokens(quality) * n;
        answer["usage"] = json!({
            "input_tokens": input,
            "output_tokens": output,
            "total_tokens": input + output,
            "input_tokens_details": {"text_tokens": input, "image_tokens": 0},
        });
    }
    json_response(StatusCode::OK, answer)
}

/// An OpenAI Responses stream (`event:` and `data:` lines, with sequence numbers); its last
/// event, `response.completed`, carries the whole response and its usage.
fn responses_events(
    model: &str,
    words: &[String],
    pin: u64,
    pout: u64,
    cached: u64,
    chunks: Option<usize>,
) -> Vec<String> {
    let created = crate::store::now_ms() / 1000;
    let text: String = words.concat();
    let response = |status: &str, output: Value, usage: Value| {
        json!({"id": "resp_mock", "object": "response", "created_at": created, "status": status,
               "model": model, "output": output, "usage": usage, "error": null,
               "incomplete_details": null})
    };
    let message = |status: &str, text: &str| {
        json!({"id": "msg_mock", "type": "message", "status": status, "role": "assistant",
               "content": [{"type": "output_text", "text": text, "annotations": []}]})
    };
    let mut seq = 0;
    let mut ev = |name: &str, mut data: Value| {
        data["type"] = json!(name);
        data["sequence_number"] = json!(seq);
        seq += 1;
        format!("event: {name}\ndata: {data}\n\n")
    };
    let mut events = vec![
        ev(
            "response.created",
            json!({"response": response("in_progress", json!([]), Value::Null)}),
        ),
        ev(
            "response.in_progress",
            json!({"response": response("in_progress", json!([]), Value::Null)}),
        ),
        ev(
            "response.output_item.added",
            json!({"output_index": 0,
            "item": {"id": "msg_mock", "type": "message", "status": "in_progress", "role": "assistant", "content": []}}),
        ),
        ev(
            "response.content_part.added",
            json!({"item_id": "msg_mock", "output_index": 0, "content_index": 0,
            "part": {"type": "output_text", "text": "", "annotations": []}}),
        ),
    ];
    for g in groups(words, chunks) {
        events.push(ev(
            "response.output_text.delta",
            json!({"item_id": "msg_mock", "output_index": 0,
            "content_index": 0, "delta": g}),
        ));
    }
    events.push(ev(
        "response.output_text.done",
        json!({"item_id": "msg_mock", "output_index": 0,
        "content_index": 0, "text": text}),
    ));
    events.push(ev(
        "response.content_part.done",
        json!({"item_id": "msg_mock", "output_index": 0,
        "content_index": 0, "part": {"type": "output_text", "text": text, "annotations": []}}),
    ));
    events.push(ev(
        "response.output_item.done",
        json!({"output_index": 0, "item": message("completed", &text)}),
    ));
    let usage = json!({"input_tokens": pin, "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": pout, "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": pin + pout});
    events.push(ev(
        "response.completed",
        json!({"response": response("completed", json!([message("completed", &text)]), usage)}),
    ));
    events
}

fn anthropic_events(
    model: &str,
    words: &[String],
    pin: u64,
    pout: u64,
    chunks: Option<usize>,
) -> Vec<String> {
    let ev = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut events = vec![
        ev(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_mock", "type": "message",
            "role": "assistant", "model": model, "content": [], "stop_reason": null,
            "usage": {"input_tokens": pin, "output_tokens": 1}}}),
        ),
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
    ];
    for g in groups(words, chunks) {
        events.push(ev("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": g}})));
    }
    events.push(ev(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push(ev("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": pout}})));
    events.push(ev("message_stop", json!({"type": "message_stop"})));
    events
}

struct Pacing {
    chunks: Option<usize>,
    delay: Duration,
    truncate_after: Option<usize>,
    /// Pause between the last event and the end of the body.
    end_delay: Duration,
    open: Arc<std::sync::atomic::AtomicUsize>,
}

fn sse(events: Vec<String>, pacing: Pacing) -> Response<GatewayBody> {
    let (tx, rx) = mpsc::channel::<Result<Bytes, BodyError>>(4);
    /// Counts the stream as open until its task ends, however it ends.
    struct Open(Arc<std::sync::atomic::AtomicUsize>);
    impl Drop for Open {
        fn drop(&mut self) {
            self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
    // Counted before the head is returned, not when the task first runs: a client that has
    // the head must see the stream as open.
    pacing
        .open
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let open = Open(pacing.open.clone());
    tokio::spawn(async move {
        let _open = open;
        for (i, e) in events.into_iter().enumerate() {
            if pacing.truncate_after == Some(i) {
                let _ = tx
                    .send(Err("mock: stream truncated on purpose".into()))
                    .await;
                return;
            }
            // A zero delay sends the events back to back (a timer of zero still waits a tick).
            if i > 0 && !pacing.delay.is_zero() {
                tokio::time::sleep(pacing.delay).await;
            }
            if tx.send(Ok(Bytes::from(e))).await.is_err() {
                return;
            }
        }
        if !pacing.end_delay.is_zero() {
            tokio::time::sleep(pacing.end_delay).await;
        }
    });
    let mut r = Response::new(GatewayBody::Channel(rx));
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("text/event-stream"),
    );
    r.headers_mut().insert(
        "cache-control",
        hyper::header::HeaderValue::from_static("no-cache"),
    );
    r
}
