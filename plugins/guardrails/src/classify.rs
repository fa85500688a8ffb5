//! The classifiers: what a text's flagged categories are.

use crate::config::{Classifier, Direction, PROMPT_INJECTION};
use aigw_plugin_sdk::http::{self, OutboundRequest};
use serde_json::{Value, json};

/// The categories `classifier` flags in `text`. `prompt` is the conversation an answer
/// replies to (Llama Guard classifies an answer in its context). An error names the service
/// and says what went wrong.
pub fn classify(
    classifier: &Classifier,
    text: &str,
    direction: Direction,
    prompt: &str,
) -> Result<Vec<String>, String> {
    match classifier {
        Classifier::Local => Ok(if crate::local::is_injection(text) {
            vec![PROMPT_INJECTION.to_string()]
        } else {
            Vec::new()
        }),
        Classifier::OpenAiModeration {
            endpoint,
            api_key,
            model,
        } => {
            let body = json!({"model": model, "input": text});
            let answer = call(endpoint, api_key.as_deref(), &body)?;
            moderation_categories(&answer)
                .map_err(|e| format!("moderation endpoint {endpoint}: {e}"))
        }
        Classifier::LlamaGuard {
            endpoint,
            api_key,
            model,
        } => {
            let messages = match direction {
                Direction::Prompt => json!([{"role": "user", "content": text}]),
                Direction::Response => json!([
                    {"role": "user", "content": prompt},
                    {"role": "assistant", "content": text},
                ]),
            };
            let body =
                json!({"model": model, "messages": messages, "temperature": 0, "max_tokens": 20});
            let answer = call(endpoint, api_key.as_deref(), &body)?;
            let content = answer
                .pointer("/choices/0/message/content")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    format!(
                        "llama-guard endpoint {endpoint}: answer has no choices[0].message.content"
                    )
                })?;
            llama_guard_categories(content)
                .map_err(|e| format!("llama-guard endpoint {endpoint}: {e}"))
        }
    }
}

/// POSTs `body` and reads a JSON answer; a non-2xx status is an error with the service's
/// own message when it gives one.
fn call(endpoint: &str, api_key: Option<&str>, body: &Value) -> Result<Value, String> {
    let mut request = OutboundRequest::post_json(endpoint, body);
    if let Some(key) = api_key {
        request = request.header("authorization", &format!("Bearer {key}"));
    }
    let response = http::fetch(&request)?;
    if !(200..300).contains(&response.status) {
        let detail = response
            .json()
            .ok()
            .and_then(|v| {
                v.pointer("/error/message")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_default();
        return Err(format!(
            "{endpoint} answered {}{}{detail}",
            response.status,
            if detail.is_empty() { "" } else { ": " }
        ));
    }
    response.json().map_err(|e| format!("{endpoint}: {e}"))
}

/// The flagged categories of an OpenAI moderation answer (every result's `categories`
/// that are `true`).
pub fn moderation_categories(answer: &Value) -> Result<Vec<String>, String> {
    let results = answer
        .get("results")
        .and_then(Value::as_array)
        .ok_or("answer has no results list")?;
    let mut flagged: Vec<String> = Vec::new();
    for r in results {
        let categories = r
            .get("categories")
            .and_then(Value::as_object)
            .ok_or("a result has no categories object")?;
        for (name, v) in categories {
            if v.as_bool() == Some(true) && !flagged.contains(name) {
                flagged.push(name.clone());
            }
        }
    }
    Ok(flagged)
}

/// The categories of a Llama Guard answer: `safe`, or `unsafe` then a line such as `S1,S10`.
pub fn llama_guard_categories(content: &str) -> Result<Vec<String>, String> {
    let mut lines = content.trim().lines().map(str::trim);
    match lines.next().map(str::to_ascii_lowercase).as_deref() {
        Some("safe") => Ok(Vec::new()),
        Some("unsafe") => {
            let mut codes: Vec<String> = lines
                .next()
                .unwrap_or("")
                .split(',')
                .map(|c| c.trim().to_ascii_uppercase())
                .filter(|c| !c.is_empty())
                .collect();
            codes.dedup();
            if codes.is_empty() {
                // Unsafe without a category still must not pass as safe.
                codes.push("unsafe".into());
            }
            Ok(codes)
        }
        _ => Err(format!(
            "expected \"safe\" or \"unsafe\" and categories, got \"{}\"",
            content.chars().take(80).collect::<String>()
        )),
    }
}
