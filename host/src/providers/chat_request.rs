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

/// A message's content as a native API's items: `{"text": …}` for text, `image` for an
/// `image_url` part (given where it stands, for errors, and its URL when it has one); any other
/// part is an error naming `provider`.
pub fn content_items(
    content: Option<&Value>,
    at: &str,
    provider: &str,
    image: impl Fn(&str, Option<&str>) -> Result<Value, String>,
) -> Result<Vec<Value>, String> {
    match content {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![json!({"text": s})]),
        Some(Value::Array(parts)) => parts
            .iter()
            .enumerate()
            .map(|(k, p)| match p.get("type").and_then(Value::as_str) {
                Some("text") => Ok(json!({"text": p.get("text").cloned().unwrap_or(json!(""))})),
                Some("image_url") => image(
                    &format!("{at}[{k}].image_url.url"),
                    p.pointer("/image_url/url").and_then(Value::as_str),
                ),
                other => Err(format!(
                    "{at}[{k}].type: '{}' cannot be sent to {provider} (text and image_url can)",
                    other.unwrap_or("")
                )),
            })
            .collect(),
        Some(_) => Err(format!("{at}: expected a string or a list of parts")),
    }
}
