//! Reading an OpenAI chat request for the native translations (Gemini, Bedrock Converse): the
//! turns they want merged by role, the assistant's tool calls, a message's text.

use serde_json::{Value, json};

/// Appends `items` to the last turn when it has `role`, else starts a turn
/// `{"role": role, key: items}` (the native APIs want the roles to alternate).
pub fn push_turn(turns: &mut Vec<Value>, role: &str, key: &str, items: Vec<Value>) {
    if items.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some(last) if last["role"] == role => {
            if let Some(list) = last[key].as_array_mut() {
                list.extend(items);
            }
        }
        _ => turns.push(json!({"role": role, key: items})),
    }
}

/// One tool call of an assistant message.
pub struct ToolCall<'a> {
    /// The call as the client sent it.
    pub call: &'a Value,
    /// Its id, when it has one.
    pub id: Option<&'a str>,
    pub name: &'a str,
    /// Its arguments, parsed (empty text is `{}`).
    pub args: Value,
}

/// The tool calls of message `i` (an assistant message); a call without a name, or with
/// arguments that are not JSON, is an error naming it.
pub fn tool_calls(m: &Value, i: usize) -> Result<Vec<ToolCall<'_>>, String> {
    m.get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(k, call)| {
            let at = format!("messages[{i}].tool_calls[{k}].function");
            let name = call
                .pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{at}.name: required"))?;
            let text = call
                .pointer("/function/arguments")
                .and_then(Value::as_str)
                .unwrap_or("{}");
            let text = if text.trim().is_empty() { "{}" } else { text };
            let args =
                serde_json::from_str(text).map_err(|_| format!("{at}.arguments: not JSON"))?;
            Ok(ToolCall {
                call,
                id: call.get("id").and_then(Value::as_str),
                name,
                args,
            })
        })
        .collect()
}

/// The text of a message's content: a string, or its text parts joined.
pub fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}
