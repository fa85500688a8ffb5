//! The mock's Cohere v2 chat (`POST …/v2/chat`), in its real shape: `message.content` text
//! items (or one function call in `message.tool_calls`, with a `tool_plan`, when
//! `x-mock-tool-call` asks, until the conversation ends with a tool result), `finish_reason`,
//! and `usage` with `billed_units` and `tokens` (one token per word). Streams are Cohere's
//! server-sent events, each `data:` naming its `type`: `message-start`, `content-start`,
//! `content-delta`…, `content-end` (or `tool-plan-delta`, `tool-call-start`,
//! `tool-call-delta`…, `tool-call-end`), `message-end` with the finish reason and usage, then
//! `data: [DONE]`.

use super::{Pacing, count_words, groups, header, json_response, sse};
use crate::http::body::GatewayBody;
use hyper::{Response, StatusCode};
use serde_json::{Value, json};

/// The text of the last user message.
fn last_user_text(messages: &[Value]) -> String {
    let Some(m) = messages.iter().rev().find(|m| m["role"] == "user") else {
        return String::new();
    };
    match &m["content"] {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .filter_map(|i| i.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The stream's terminator, after `message-end`.
const DONE: &str = "data: [DONE]\n\n";

fn event(e: Value) -> String {
    format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap_or(""))
}

/// Answers `/v2/chat`.
pub(super) fn chat(
    parts: &hyper::http::request::Parts,
    request: &Value,
    pacing: Pacing,
) -> Response<GatewayBody> {
    let Some(messages) = request.get("messages").and_then(Value::as_array) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"id": "mock-error", "message": "invalid request: messages must not be empty"}),
        );
    };
    let prompt = count_words(&Value::Array(messages.clone())).max(1);
    let usage = |out: u64| {
        json!({"billed_units": {"input_tokens": prompt, "output_tokens": out},
               "tokens": {"input_tokens": prompt + 200, "output_tokens": out}})
    };
    let streamed = request
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let after_tool = messages.last().is_some_and(|m| m["role"] == "tool");
    let id = "mock-cohere-1";
    if let Some(name) = header(parts, "x-mock-tool-call").filter(|_| !after_tool) {
        let args = header(parts, "x-mock-tool-args")
            .unwrap_or("{}")
            .to_string();
        let call_id = format!("{name}_mock1");
        let out = (args.len() as u64 / 4).max(1) + 5;
        let plan = format!("I will call {name}.");
        if !streamed {
            return json_response(
                StatusCode::OK,
                json!({"id": id, "finish_reason": "TOOL_CALL",
                       "message": {"role": "assistant", "tool_plan": plan,
                           "tool_calls": [{"id": call_id, "type": "function",
                                           "function": {"name": name, "arguments": args}}]},
                       "usage": usage(out)}),
            );
        }
        let (head, tail) = args.split_at(args.len() / 2);
        let events = vec![
            event(
                json!({"id": id, "type": "message-start", "delta": {"message": {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}}}),
            ),
            event(json!({"type": "tool-plan-delta", "delta": {"message": {"tool_plan": plan}}})),
            event(
                json!({"type": "tool-call-start", "index": 0, "delta": {"message": {"tool_calls": {"id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}}}}),
            ),
            event(
                json!({"type": "tool-call-delta", "index": 0, "delta": {"message": {"tool_calls": {"function": {"arguments": head}}}}}),
            ),
            event(
                json!({"type": "tool-call-delta", "index": 0, "delta": {"message": {"tool_calls": {"function": {"arguments": tail}}}}}),
            ),
            event(json!({"type": "tool-call-end", "index": 0})),
            event(
                json!({"type": "message-end", "delta": {"finish_reason": "TOOL_CALL", "usage": usage(out)}}),
            ),
            DONE.to_string(),
        ];
        return sse(events, pacing);
    }
    let reply = header(parts, "x-mock-reply")
        .map(str::to_string)
        .unwrap_or_else(|| format!("Cohere mock reply to: {}", last_user_text(messages)));
    let words: Vec<String> = reply.split_inclusive(' ').map(str::to_string).collect();
    let total = words.len() as u64;
    if !streamed {
        return json_response(
            StatusCode::OK,
            json!({"id": id, "finish_reason": "COMPLETE",
                   "message": {"role": "assistant", "content": [{"type": "text", "text": reply}]},
                   "usage": usage(total)}),
        );
    }
    let mut events = vec![
        event(
            json!({"id": id, "type": "message-start", "delta": {"message": {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}}}),
        ),
        event(
            json!({"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}}),
        ),
    ];
    for piece in groups(&words, pacing.chunks) {
        events.push(event(
            json!({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": piece}}}}),
        ));
    }
    events.push(event(json!({"type": "content-end", "index": 0})));
    events.push(event(
        json!({"type": "message-end", "delta": {"finish_reason": "COMPLETE", "usage": usage(total)}}),
    ));
    events.push(DONE.to_string());
    sse(events, pacing)
}
