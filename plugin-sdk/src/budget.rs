//! The worst-case cost of a request, for filters that hold money against a budget before the
//! request runs ([`crate::host::reserve_spend`]). The bound: the request body's length in bytes
//! as input tokens (a token is never shorter than one byte of the text it encodes), priced at
//! the model's dearest input rate, plus the request's own output limit (`max_tokens`,
//! `max_completion_tokens`, `max_output_tokens`, `generationConfig.maxOutputTokens`) at the
//! output rate. A request that names no output limit gets `cap` written into it, so the
//! provider cannot answer past the bound. Embeddings have no output; an image request's output
//! is bounded per image.

use serde_json::{Value, json};

/// Output tokens assumed for one generated image (the largest gpt-image size at high quality).
pub const IMAGE_OUTPUT_TOKENS: u64 = 6_400;

/// A request's worst case.
#[derive(Debug, Clone, PartialEq)]
pub struct WorstCase {
    /// The model the request names, if any.
    pub model: Option<String>,
    /// The most it can cost in USD; `None` when the model has no price (or none was found).
    pub usd: Option<f64>,
    /// The body with the output cap written in, when the request named none.
    pub rewritten: Option<Vec<u8>>,
}

/// The model a request names: the JSON body's `model`, else the path's (`models/{m}:…` of
/// Gemini, `model/{m}/…` of Bedrock).
///
/// ```
/// use aigw_plugin_sdk::budget::model_of;
/// assert_eq!(model_of(&serde_json::json!({"model": "m"}), "/x").as_deref(), Some("m"));
/// assert_eq!(model_of(&serde_json::Value::Null, "/v1beta/models/gemini-2.0-flash:generateContent").as_deref(), Some("gemini-2.0-flash"));
/// assert_eq!(model_of(&serde_json::Value::Null, "/model/anthropic.claude-3-haiku-20240307-v1:0/converse").as_deref(), Some("anthropic.claude-3-haiku-20240307-v1:0"));
/// ```
pub fn model_of(body: &Value, path: &str) -> Option<String> {
    if let Some(m) = body.get("model").and_then(Value::as_str) {
        return Some(m.to_string());
    }
    if let Some(rest) = path.split("models/").nth(1) {
        return rest.split([':', '/']).next().map(str::to_string);
    }
    path.split("model/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .map(str::to_string)
}

/// The request's own output limit, if it names one.
pub fn output_limit(body: &Value) -> Option<u64> {
    [
        "/max_tokens",
        "/max_completion_tokens",
        "/max_output_tokens",
        "/generationConfig/maxOutputTokens",
    ]
    .iter()
    .find_map(|p| body.pointer(p).and_then(Value::as_u64))
}

/// The output bound of a request without its own limit, writing `cap` into `body` where its
/// API has a field for it; true when it did.
fn bound_output(provider: &str, path: &str, body: &mut Value, cap: u64) -> (u64, bool) {
    if path.ends_with("/embeddings") {
        return (0, false);
    }
    if path.contains("/images/") {
        let n = body.get("n").and_then(Value::as_u64).unwrap_or(1).max(1);
        return (n.saturating_mul(IMAGE_OUTPUT_TOKENS), false);
    }
    let Some(obj) = body.as_object_mut() else {
        return (cap, false);
    };
    let field = if path.ends_with("/responses") {
        "max_output_tokens"
    } else if path.contains(":generateContent") || path.contains(":streamGenerateContent") {
        let gc = obj.entry("generationConfig").or_insert_with(|| json!({}));
        return match gc.as_object_mut() {
            Some(gc) => {
                gc.insert("maxOutputTokens".into(), cap.into());
                (cap, true)
            }
            None => (cap, false),
        };
    } else if provider == "openai" || provider == "azure-openai" {
        // OpenAI's reasoning models refuse `max_tokens`.
        "max_completion_tokens"
    } else {
        "max_tokens"
    };
    obj.insert(field.into(), cap.into());
    (cap, true)
}

/// The worst case of a request to `provider` at `path` with `body`, priced by the host.
///
/// ```
/// use aigw_plugin_sdk::{budget, testing::MockHost};
/// MockHost::reset();
/// MockHost::with(|m| m.prices.insert(("openai".into(), "m".into()), (1.0, 2.0)));
/// let w = budget::worst_case("openai", "/chat/completions", br#"{"model":"m"}"#, 100);
/// assert_eq!(w.usd, Some((13.0 * 1.0 + 100.0 * 2.0) / 1e6));
/// assert!(w.rewritten.is_some());
/// ```
pub fn worst_case(provider: &str, path: &str, body: &[u8], cap: u64) -> WorstCase {
    let mut json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let model = model_of(&json, path);
    let (output, rewritten) = match output_limit(&json) {
        Some(n) => (n, false),
        None => bound_output(provider, path, &mut json, cap),
    };
    let usd = model
        .as_deref()
        .and_then(|m| crate::host::price_bound(provider, m, body.len() as u64, output));
    WorstCase {
        model,
        usd,
        rewritten: if rewritten {
            serde_json::to_vec(&json).ok()
        } else {
            None
        },
    }
}
