//! The mock's Gemini API (`…/models/{model}:generateContent`, and `:streamGenerateContent` with
//! `alt=sse`), in its real shape: `candidates[].content.parts` (text, or one `functionCall`
//! when `x-mock-tool-call` asks, until the conversation ends with a `functionResponse`),
//! `finishReason`, and `usageMetadata` (one token per word; in every stream chunk, counting up).

use super::{Pacing, count_words, groups, header, json_response, sse};
use crate::http::body::GatewayBody;
use hyper::{Response, StatusCode};
use serde_json::{Value, json};

/// The text of the last user turn.
fn last_user_text(request: &Value) -> String {
    request
        .get("contents")
        .and_then(Value::as_array)
        .and_then(|c| c.iter().rev().find(|m| m["role"] != "model"))
        .and_then(|m| m.get("parts"))
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// Answers `generateContent` or `streamGenerateContent`.
pub(super) fn generate(
    parts: &hyper::http::request::Parts,
    path: &str,
    request: &Value,
    pacing: Pacing,
) -> Response<GatewayBody> {
    let Some(contents) = request.get("contents").and_then(Value::as_array) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": {"code": 400, "message": "* GenerateContentRequest.contents: contents is not specified", "status": "INVALID_ARGUMENT"}}),
        );
    };
    let model = path
        .rsplit_once("/models/")
        .map(|(_, m)| m.split(':').next().unwrap_or(m).to_string())
        .unwrap_or_default();
    let prompt = (count_words(&Value::Array(contents.clone()))
        + count_words(request.get("systemInstruction").unwrap_or(&Value::Null)))
    .max(1);
    let after_tool = contents
        .last()
        .and_then(|m| m.get("parts"))
        .and_then(Value::as_array)
        .is_some_and(|p| p.iter().any(|p| p.get("functionResponse").is_some()));
    let usage = |out: u64| json!({"promptTokenCount": prompt, "candidatesTokenCount": out, "totalTokenCount": prompt + out});
    let chunk = |parts: Value, finish: Option<&str>, out: u64| {
        let mut candidate = json!({"content": {"parts": parts, "role": "model"}, "index": 0});
        if let Some(f) = finish {
            candidate["finishReason"] = json!(f);
        }
        json!({"candidates": [candidate], "usageMetadata": usage(out),
               "modelVersion": model, "responseId": "mock-gemini"})
    };
    let streamed = path.contains(":streamGenerateContent");
    if let Some(name) = header(parts, "x-mock-tool-call").filter(|_| !after_tool) {
        let args: Value = header(parts, "x-mock-tool-args")
            .and_then(|a| serde_json::from_str(a).ok())
            .unwrap_or(json!({}));
        let out = (args.to_string().len() as u64 / 4).max(1) + 5;
        let answer = chunk(
            json!([{"functionCall": {"name": name, "args": args}}]),
            Some("STOP"),
            out,
        );
        if streamed {
            return sse(vec![format!("data: {answer}\r\n\r\n")], pacing);
        }
        return json_response(StatusCode::OK, answer);
    }
    let reply = header(parts, "x-mock-reply")
        .map(str::to_string)
        .unwrap_or_else(|| format!("Gemini mock reply to: {}", last_user_text(request)));
    let words: Vec<String> = reply.split_inclusive(' ').map(str::to_string).collect();
    let total = words.len() as u64;
    if !streamed {
        return json_response(
            StatusCode::OK,
            chunk(json!([{"text": reply}]), Some("STOP"), total),
        );
    }
    let pieces = groups(&words, pacing.chunks);
    let last = pieces.len().saturating_sub(1);
    let mut sent = 0u64;
    let events = pieces
        .iter()
        .enumerate()
        .map(|(i, piece)| {
            sent += piece.split_whitespace().count() as u64;
            let finish = (i == last).then_some("STOP");
            let out = if i == last { total } else { sent };
            format!(
                "data: {}\r\n\r\n",
                chunk(json!([{"text": piece}]), finish, out)
            )
        })
        .collect();
    sse(events, pacing)
}
