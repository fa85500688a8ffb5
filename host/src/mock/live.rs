//! The mock's Gemini Live endpoint (`GET …/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent`
//! upgraded to a WebSocket), in its real shape, JSON in binary frames as Google sends it: the
//! first client message must be `{"setup": {"model": "models/…"}}`, answered by
//! `{"setupComplete": {}}`; each `clientContent` turn that completes is answered by one
//! `serverContent.modelTurn` text part per word, `generationComplete`, then `turnComplete` with
//! the turn's `usageMetadata` (prompt: the words of the conversation so far; response: the
//! reply's words). Field names are read in either spelling (`clientContent`, `client_content`),
//! as protobuf JSON is. `realtimeInput` is taken and not answered. Handshake: `x-mock-reply` sets the
//! reply; without `x-goog-api-key` (or `key=`) the handshake is refused with a 401.

use super::{MockState, header, json_response};
use crate::http::body::GatewayBody;
use futures_util::{SinkExt as _, StreamExt as _};
use hyper::upgrade::OnUpgrade;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// Answers a Live handshake and serves the session in a task.
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
            json!({"error": {"code": 400, "message": "expected a WebSocket handshake", "status": "INVALID_ARGUMENT"}}),
        );
    };
    let keyed = header(parts, "x-goog-api-key").is_some()
        || parts
            .uri
            .query()
            .is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "key"));
    if !keyed {
        return json_response(
            StatusCode::UNAUTHORIZED,
            json!({"error": {"code": 401, "message": "Method doesn't allow unregistered callers. Please use API Key.", "status": "UNAUTHENTICATED"}}),
        );
    }
    let reply = header(parts, "x-mock-reply").map(str::to_string);
    let open = state.open_sockets.clone();
    tokio::spawn(async move {
        let Ok(io) = upgrade.await else { return };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, None).await;
        open.fetch_add(1, Ordering::SeqCst);
        serve(ws, reply).await;
        open.fetch_sub(1, Ordering::SeqCst);
    });
    super::realtime::switching_protocols(&key)
}

/// The text of a turn's parts.
fn turn_text(turn: &Value) -> String {
    turn.get("parts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One session: the setup, then turns, until the client closes.
async fn serve(mut ws: WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>, reply: Option<String>) {
    let send = |v: Value| Message::binary(v.to_string().into_bytes());
    let mut set_up = false;
    let mut conversation_words = 0u64;
    while let Some(Ok(msg)) = ws.next().await {
        let bytes = match msg {
            Message::Text(t) => t.as_bytes().to_vec(),
            Message::Binary(b) => b.to_vec(),
            Message::Close(_) => break,
            _ => continue,
        };
        let message: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let mut out = Vec::new();
        if !set_up {
            if message
                .pointer("/setup/model")
                .and_then(Value::as_str)
                .is_none()
            {
                let frame = CloseFrame {
                    code: CloseCode::Invalid,
                    reason: "the first message must be a setup naming the model".into(),
                };
                let _ = ws.send(Message::Close(Some(frame))).await;
                return;
            }
            set_up = true;
            out.push(json!({"setupComplete": {}}));
        } else if let Some(content) = message
            .get("clientContent")
            .or_else(|| message.get("client_content"))
        {
            // Google reads protobuf JSON, so either spelling of a field (the Python SDK sends
            // `client_content`).
            let complete = content
                .get("turnComplete")
                .or_else(|| content.get("turn_complete"));
            let turns = content.get("turns").and_then(Value::as_array);
            let last = turns
                .and_then(|t| t.last())
                .map(turn_text)
                .unwrap_or_default();
            conversation_words += turns
                .into_iter()
                .flatten()
                .map(|t| turn_text(t).split_whitespace().count() as u64)
                .sum::<u64>();
            if complete.and_then(Value::as_bool) == Some(true) {
                let words: Vec<String> = reply
                    .clone()
                    .unwrap_or_else(|| format!("Live mock reply to: {last}"))
                    .split_whitespace()
                    .map(str::to_string)
                    .collect();
                for (i, w) in words.iter().enumerate() {
                    let text = if i == 0 { w.clone() } else { format!(" {w}") };
                    out.push(json!({"serverContent": {"modelTurn": {"parts": [{"text": text}]}}}));
                }
                out.push(json!({"serverContent": {"generationComplete": true}}));
                let prompt = conversation_words.max(1);
                let response = words.len() as u64;
                out.push(
                    json!({"serverContent": {"turnComplete": true}, "usageMetadata": {
                        "promptTokenCount": prompt, "responseTokenCount": response,
                        "totalTokenCount": prompt + response,
                        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
                        "responseTokensDetails": [{"modality": "TEXT", "tokenCount": response}],
                    }}),
                );
                conversation_words += response;
            }
        }
        for m in out {
            if ws.send(send(m)).await.is_err() {
                return;
            }
        }
    }
    let _ = ws.close(None).await;
}
