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
/// Input tokens allowed for one image given by URL (its bytes are not in the request); above
/// what OpenAI, Anthropic and Gemini bill for their largest image.
pub const IMAGE_URL_INPUT_TOKENS: u64 = 6_000;

/// A request's worst case.
#[derive(Debug, Clone, PartialEq)]
pub struct WorstCase {
    /// The model the request names, if any.
    pub model: Option<String>,
    /// The most it can cost in USD; `None` when the model has no price (or none was found).
    pub usd: Option<f64>,
    /// The body with the output cap written in, when the request named none.
    pub rewritten: Option<Vec<u8>>,
    /// Why no bound exists although the model is priced: the request makes the provider read
    /// input that is not in it (an earlier response, a stored file). Refuse it under a budget.
    pub unbounded: Option<String>,
}

/// What a request makes the provider read beyond its own bytes: extra input tokens for images
/// given by URL, or why the input has no bound at all.
fn outside_input(v: &Value, extra: &mut u64) -> Option<String> {
    match v {
        Value::Object(o) => {
            for key in [
                "previous_response_id",
                "conversation",
                "file_id",
                "fileUri",
                "file_uri",
                "file_url",
            ] {
                if o.get(key).is_some_and(|x| !x.is_null()) {
                    return Some(format!(
                        "'{key}' makes the provider read input that is not in the request"
                    ));
                }
            }
            // An image by URL: OpenAI's `image_url` (string or {url}), Anthropic's source.
            let url = match (o.get("image_url"), o.get("type"), o.get("url")) {
                (Some(Value::String(u)), _, _) => Some(u.as_str()),
                (Some(Value::Object(i)), _, _) => i.get("url").and_then(Value::as_str),
                (None, Some(t), Some(Value::String(u))) if t == "url" => Some(u.as_str()),
                _ => None,
            };
            if let Some(u) = url
                && !u.starts_with("data:")
            {
                *extra = extra.saturating_add(IMAGE_URL_INPUT_TOKENS);
            }
            o.values().find_map(|x| outside_input(x, extra))
        }
        Value::Array(a) => a.iter().find_map(|x| outside_input(x, extra)),
        _ => None,
    }
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
    // APIs that name the model in the path run that one, whatever the body says.
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    if let Some(rest) = path.split("models/").nth(1) {
        return rest.split([':', '/']).next().map(decode);
    }
    if let Some(rest) = path.split("/model/").nth(1) {
        return rest.split('/').next().map(decode);
    }
    body.get("model")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// The request's own output limit, if it names one: the largest of the fields it sets (a
/// server may honour any of them), a fractional value rounded up.
pub fn output_limit(body: &Value) -> Option<u64> {
    [
        "/max_tokens",
        "/max_completion_tokens",
        "/max_output_tokens",
        "/generationConfig/maxOutputTokens",
    ]
    .iter()
    .filter_map(|p| body.pointer(p).and_then(Value::as_f64))
    .filter(|n| n.is_finite() && *n >= 0.0)
    .map(|n| n.ceil().min(u64::MAX as f64) as u64)
    .max()
}

/// How many answers one request asks for (`n`, `generationConfig.candidateCount`).
fn choices(body: &Value) -> u64 {
    ["/n", "/generationConfig/candidateCount"]
        .iter()
        .filter_map(|p| body.pointer(p).and_then(Value::as_u64))
        .max()
        .unwrap_or(1)
        .max(1)
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
    worst_case_of(provider, path, &mut json, body.len(), cap)
}

/// [`worst_case`] of a body already parsed (`json`, `body_len` bytes long); the cap, when
/// written, is written into `json` too.
pub fn worst_case_of(
    provider: &str,
    path: &str,
    json: &mut Value,
    body_len: usize,
    cap: u64,
) -> WorstCase {
    let model = model_of(json, path);
    let mut extra_input = 0;
    let unbounded = outside_input(json, &mut extra_input);
    let (output, rewritten) = match output_limit(json) {
        Some(n) => (n, false),
        None => bound_output(provider, path, json, cap),
    };
    // Images are bounded per image already; other APIs per answer asked for.
    let output = if path.contains("/images/") {
        output
    } else {
        output.saturating_mul(choices(json))
    };
    let input = (body_len as u64).saturating_add(extra_input);
    let usd = match &unbounded {
        Some(_) => None,
        None => model
            .as_deref()
            .and_then(|m| crate::host::price_bound(provider, m, input, output)),
    };
    WorstCase {
        model,
        usd,
        rewritten: if rewritten && unbounded.is_none() {
            serde_json::to_vec(json).ok()
        } else {
            None
        },
        unbounded,
    }
}

/// Reads a budget filter's `unpriced` setting: `"deny"` (the default) or `"allow"`; true
/// when a request to a model without a price may pass unbudgeted.
///
/// ```
/// use aigw_plugin_sdk::budget::allow_unpriced;
/// assert_eq!(allow_unpriced(None), Ok(false));
/// assert_eq!(allow_unpriced(Some("allow")), Ok(true));
/// assert!(allow_unpriced(Some("maybe")).unwrap_err().contains("unpriced"));
/// ```
pub fn allow_unpriced(setting: Option<&str>) -> Result<bool, String> {
    match setting {
        None | Some("deny") => Ok(false),
        Some("allow") => Ok(true),
        Some(other) => Err(format!(
            "unpriced: expected \"deny\" or \"allow\", got \"{other}\""
        )),
    }
}

/// The 403 a budget filter answers a request whose cost has no bound (`WorstCase::unbounded`).
pub fn unbounded_refusal(why: &str) -> crate::LocalResponse {
    crate::LocalResponse::error(
        403,
        "cost_unbounded",
        &format!(
            "this request's cost cannot be bounded, so it cannot be held against a budget: {why}"
        ),
    )
}

/// What a finished request is charged against a hold of `held_usd`:
/// - nothing for a cache hit or a request that never reached the provider;
/// - nothing for a provider's error answer without usage (providers do not bill those);
/// - the exact cost of a completed answer with usage;
/// - at least the hold when the answer did not complete after the provider started it (a
///   client that left, a stream cut after its head: the provider bills what it generated,
///   which the usage read so far may not show), or when a completed answer had no usage;
/// - what is known (usually nothing) when the provider failed before answering.
///
/// ```
/// use aigw_plugin_sdk::{budget::charge, Outcome, Summary};
/// let done = Summary { attempts: 1, status: 200, cost: Some(0.2), ..Summary::default() };
/// assert_eq!(charge(&done, 1.0), 0.2);
/// let cut = Summary { outcome: Outcome::ClientAborted, ..done.clone() };
/// assert_eq!(charge(&cut, 1.0), 1.0);
/// let refused = Summary { attempts: 1, status: 429, cost: None, ..Summary::default() };
/// assert_eq!(charge(&refused, 1.0), 0.0);
/// ```
pub fn charge(s: &crate::Summary, held_usd: f64) -> f64 {
    use crate::Outcome;
    if s.cached || s.attempts == 0 {
        return 0.0;
    }
    match (s.outcome, s.cost) {
        (Outcome::Completed, Some(c)) => c,
        (Outcome::Completed, None) if !(200..300).contains(&s.status) => 0.0,
        (Outcome::Completed, None) => held_usd,
        (Outcome::ClientAborted, c) => c.unwrap_or(0.0).max(held_usd),
        (_, c) if (200..300).contains(&s.status) => c.unwrap_or(0.0).max(held_usd),
        (_, c) => c.unwrap_or(0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MockHost;

    fn priced() {
        MockHost::reset();
        MockHost::with(|m| m.prices.insert(("openai".into(), "m".into()), (1.0, 1.0)));
    }

    #[test]
    fn every_answer_and_every_limit_field_counts() {
        priced();
        let body = br#"{"model":"m","n":3,"max_tokens":10,"max_completion_tokens":100}"#;
        let w = worst_case("openai", "/chat/completions", body, 4096);
        assert_eq!(w.usd, Some((body.len() as f64 + 300.0) / 1e6));
        let body = br#"{"model":"m","max_tokens":10.5}"#;
        let w = worst_case("openai", "/chat/completions", body, 4096);
        assert_eq!(w.usd, Some((body.len() as f64 + 11.0) / 1e6));
    }

    #[test]
    fn input_outside_the_request() {
        priced();
        let body = br#"{"model":"m","max_output_tokens":1,"input":[{"role":"user","content":[{"type":"input_image","image_url":"https://x/y.png"}]}]}"#;
        let w = worst_case("openai", "/responses", body, 4096);
        assert_eq!(w.usd, Some((body.len() as f64 + 6_000.0 + 1.0) / 1e6));
        for body in [
            &br#"{"model":"m","previous_response_id":"resp_1","input":"go on"}"#[..],
            br#"{"model":"m","input":[{"type":"input_file","file_id":"file-1"}]}"#,
        ] {
            let w = worst_case("openai", "/responses", body, 4096);
            assert!(w.unbounded.is_some() && w.usd.is_none(), "{w:?}");
        }
    }

    #[test]
    fn the_path_names_the_model_of_path_addressed_apis() {
        let body = serde_json::json!({"model": "cheap"});
        assert_eq!(
            model_of(&body, "/v1beta/models/dear:generateContent").as_deref(),
            Some("dear")
        );
        assert_eq!(
            model_of(
                &Value::Null,
                "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
            )
            .as_deref(),
            Some("anthropic.claude-3-haiku-20240307-v1:0")
        );
    }
}
