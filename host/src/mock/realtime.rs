//! The mock's OpenAI Realtime endpoint (`GET …/realtime?model=…` upgraded to a WebSocket), in
//! the GA event shapes: `session.created` on connect; `session.update` → `session.updated`;
//! `conversation.item.create` → `conversation.item.added` and `conversation.item.done`;
//! `response.create` → `response.created`, the output item and text part events, one
//! `response.output_text.delta` per word, and `response.done` with its `usage` (input tokens:
//! the words of the conversation so far; output: the words of the reply). Anything else gets an
//! `error` event. Handshake headers: `x-mock-reply` sets the reply, `x-mock-audio-tokens: N`
//! reports N of each reply's output tokens as audio. Without an `authorization` header the
//! handshake is refused with a 401, as OpenAI does.

use super::{MockState, header, json_response, number};
use crate::http::body::GatewayBody;
use futures_util::{SinkExt as _, StreamExt as _};
use hyper::header::HeaderValue;
use hyper::upgrade::OnUpgrade;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

/// Answers a Realtime handshake and serves the session in a task.
pub(super) fn accept(
    state: &Arc<MockState>,
    parts: &mut hyper::http::request::Parts,
) -> Response<GatewayBody> {
    let (Some(key), Some(upgrade)) = (
        header(parts, "sec-websocket-key").map(str::to_string),
        parts.extensions.remove::<OnUpgrade>(),
    ) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": {"message": "expected a WebSocket handshake", "type": "invalid_request_error"}}),
        );
    };
    if header(parts, "authorization").is_none() {
        return json_response(
            StatusCode::UNAUTHORIZED,
            json!({"error": {"message": "Missing bearer authentication in header", "type": "invalid_request_error", "code": "missing_api_key"}}),
        );
    }
    let model = parts
        .uri
        .query()
        .and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "model")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_else(|| "gpt-realtime".into());
    let reply = header(parts, "x-mock-reply").map(str::to_string);
    let audio = number(parts, "x-mock-audio-tokens").unwrap_or(0);
    let open = state.open_sockets.clone();
    tokio::spawn(async move {
        let Ok(io) = upgrade.await else { return };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, None).await;
        open.fetch_add(1, Ordering::SeqCst);
        serve(ws, model, reply, audio).await;
        open.fetch_sub(1, Ordering::SeqCst);
    });
    switching_protocols(&key)
}

/// The 101 that accepts a WebSocket handshake with `key` (its `Sec-WebSocket-Key`).
pub(super) fn switching_protocols(key: &str) -> Response<GatewayBody> {
    let mut r = Response::new(GatewayBody::full(bytes::Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert("upgrade", HeaderValue::from_static("websocket"));
    h.insert("connection", HeaderValue::from_static("upgrade"));
    if let Ok(v) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert("sec-websocket-accept", v);
    }
    r
}

/// One session: events in, events out, until the client closes.
async fn serve(
    mut ws: WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>,
    model: String,
    reply: Option<String>,
    audio: u64,
) {
    let mut n = 0u64;
    let mut next_id = |prefix: &str| {
        n += 1;
        format!("{prefix}_mock{n}")
    };
    let mut session = json!({
        "object": "realtime.session", "id": "sess_mock", "type": "realtime", "model": model,
        "output_modalities": ["text"], "instructions": "",
    });
    let mut conversation_words = 0u64;
    let mut last_text = String::new();
    let created =
        json!({"type": "session.created", "event_id": next_id("event"), "session": session});
    if ws.send(Message::text(created.to_string())).await.is_err() {
        return;
    }
    while let Some(Ok(msg)) = ws.next().await {
        let text = match msg {
            Message::Text(t) => t.to_string(),
            Message::Close(_) => break,
            _ => continue,
        };
        let event: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let mut out = Vec::new();
        match event.get("type").and_then(Value::as_str).unwrap_or("") {
            "session.update" => {
                if let (Some(s), Some(update)) = (
                    session.as_object_mut(),
                    event.get("session").and_then(Value::as_object),
                ) {
                    for (k, v) in update {
                        s.insert(k.clone(), v.clone());
                    }
                }
                out.push(json!({"type": "session.updated", "event_id": next_id("event"), "session": session}));
            }
            "conversation.item.create" => {
                let mut item = event.get("item").cloned().unwrap_or(json!({}));
                let words = super::count_words(item.get("content").unwrap_or(&Value::Null));
                conversation_words += words;
                if let Some(t) = item.pointer("/content/0/text").and_then(Value::as_str) {
                    last_text = t.to_string();
                }
                if let Some(o) = item.as_object_mut() {
                    o.entry("id").or_insert_with(|| json!(next_id("item")));
                    o.insert("status".into(), json!("completed"));
                }
                out.push(json!({"type": "conversation.item.added", "event_id": next_id("event"), "previous_item_id": null, "item": item}));
                out.push(json!({"type": "conversation.item.done", "event_id": next_id("event"), "previous_item_id": null, "item": item}));
            }
            "response.create" => {
                let words: Vec<String> = reply
                    .clone()
                    .unwrap_or_else(|| format!("Realtime mock reply to: {last_text}"))
                    .split_whitespace()
                    .map(str::to_string)
                    .collect();
                let response_id = next_id("resp");
                let item_id = next_id("item");
                let text = words.join(" ");
                let output = conversation_words.max(1);
                let out_tokens = words.len() as u64 + audio;
                let item = json!({"id": item_id, "object": "realtime.item", "type": "message", "status": "completed", "role": "assistant", "content": [{"type": "output_text", "text": text}]});
                out.push(json!({"type": "response.created", "event_id": next_id("event"), "response": {"object": "realtime.response", "id": response_id, "status": "in_progress", "output": []}}));
                out.push(json!({"type": "response.output_item.added", "event_id": next_id("event"), "response_id": response_id, "output_index": 0, "item": {"id": item_id, "object": "realtime.item", "type": "message", "status": "in_progress", "role": "assistant", "content": []}}));
                out.push(json!({"type": "response.content_part.added", "event_id": next_id("event"), "response_id": response_id, "item_id": item_id, "output_index": 0, "content_index": 0, "part": {"type": "text", "text": ""}}));
                for (i, w) in words.iter().enumerate() {
                    let delta = if i == 0 { w.clone() } else { format!(" {w}") };
                    out.push(json!({"type": "response.output_text.delta", "event_id": next_id("event"), "response_id": response_id, "item_id": item_id, "output_index": 0, "content_index": 0, "delta": delta}));
                }
                out.push(json!({"type": "response.output_text.done", "event_id": next_id("event"), "response_id": response_id, "item_id": item_id, "output_index": 0, "content_index": 0, "text": text}));
                out.push(json!({"type": "response.content_part.done", "event_id": next_id("event"), "response_id": response_id, "item_id": item_id, "output_index": 0, "content_index": 0, "part": {"type": "text", "text": text}}));
                out.push(json!({"type": "response.output_item.done", "event_id": next_id("event"), "response_id": response_id, "output_index": 0, "item": item}));
                out.push(json!({"type": "response.done", "event_id": next_id("event"), "response": {
                    "object": "realtime.response", "id": response_id, "status": "completed", "output": [item],
                    "usage": {
                        "total_tokens": output + out_tokens, "input_tokens": output, "output_tokens": out_tokens,
                        "input_token_details": {"cached_tokens": 0, "text_tokens": output, "audio_tokens": 0},
                        "output_token_details": {"text_tokens": words.len(), "audio_tokens": audio},
                    },
                }}));
                conversation_words += words.len() as u64;
            }
            other => out.push(
                json!({"type": "error", "event_id": next_id("event"), "error": {
                    "type": "invalid_request_error", "code": "unknown_event",
                    "message": format!("Unknown event type '{other}'"),
                }}),
            ),
        }
        for e in out {
            if ws.send(Message::text(e.to_string())).await.is_err() {
                return;
            }
        }
    }
    let _ = ws.close(None).await;
}
