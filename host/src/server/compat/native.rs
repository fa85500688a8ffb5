//! Chat completions translated to providers' native APIs (Anthropic Messages, Gemini
//! `generateContent`, Bedrock Converse, Cohere v2 chat), and their answers back.

use super::translate::translate;
use super::{Call, bearer_to, path_safe_model, wants_usage};
use crate::http::body::GatewayBody;
use crate::http::error::GatewayError;
use crate::providers::{ProviderSpec, anthropic, cohere_chat, converse, gemini, responses};
use hyper::Response;
use hyper::header::HeaderValue;
use serde_json::Value;

/// A chat completion request translated to Anthropic Messages, and the answer back.
pub(super) async fn chat_via_anthropic(
    mut call: Call<'_>,
    request: Value,
    provider: String,
    model: String,
) -> Response<GatewayBody> {
    let include_usage = wants_usage(&request);
    let translated = match anthropic::request_to_anthropic(&request, &model) {
        Ok(t) => t,
        Err(m) => return GatewayError::bad_request(m).into_response(),
    };
    let headers = &mut call.parts.headers;
    bearer_to(headers, "x-api-key");
    if !headers.contains_key("anthropic-version") {
        headers.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
    }
    let resp = call
        .send(provider, "/v1/messages".into(), &translated)
        .await;
    let created = crate::store::now_ms() / 1000;
    translate(
        resp,
        anthropic::StreamTranslator::new(&model, created, include_usage),
        // Anthropic's answers and errors alike, in OpenAI's shape.
        |_, bytes| {
            serde_json::from_slice::<Value>(bytes)
                .ok()
                .map(|v| anthropic::response_to_openai(&v, &model, created))
        },
    )
    .await
}

/// A chat completion request translated to Gemini's `generateContent` (or
/// `streamGenerateContent`), and the answer back.
pub(super) async fn chat_via_gemini(
    mut call: Call<'_>,
    request: Value,
    provider: String,
    model: String,
    spec: &ProviderSpec,
) -> Response<GatewayBody> {
    let include_usage = wants_usage(&request);
    if let Err(m) = path_safe_model(&model) {
        return GatewayError::bad_request(m).into_response();
    }
    let (translated, stream) = match gemini::request_from_chat(&request) {
        Ok(t) => t,
        Err(m) => return GatewayError::bad_request(m).into_response(),
    };
    // AI Studio takes its API key in x-goog-api-key; Vertex AI an OAuth Bearer token as sent.
    bearer_to(&mut call.parts.headers, spec.auth_header.name);
    // Vertex AI names the project and location; AI Studio only the model.
    let prefix = if provider == "google-vertex-ai" {
        let Some(project) = &spec.project else {
            return GatewayError::bad_request(format!(
                "model: '{provider}/{model}' needs the Google Cloud project to send it to: set [providers.{provider}] project (and region, the location; default global)"
            ))
            .into_response();
        };
        let location = spec.region.as_deref().unwrap_or("global");
        format!("/v1/projects/{project}/locations/{location}/publishers/google/models")
    } else {
        "/v1beta/models".to_string()
    };
    let path = if stream {
        call.route.query = Some("alt=sse".into());
        format!("{prefix}/{model}:streamGenerateContent")
    } else {
        call.route.query = None;
        format!("{prefix}/{model}:generateContent")
    };
    let resp = call.send(provider, path, &translated).await;
    let created = crate::store::now_ms() / 1000;
    translate(
        resp,
        gemini::StreamToChat::new(&model, created, include_usage),
        |status, bytes| {
            Some(if (200..300).contains(&status) {
                gemini::response_to_chat(&serde_json::from_slice(bytes).ok()?, &model, created)
            } else {
                gemini::error_to_openai(bytes)
            })
        },
    )
    .await
}

/// A chat completion request translated to Bedrock Converse (or ConverseStream) in the
/// provider's region, and the answer back.
pub(super) async fn chat_via_converse(
    mut call: Call<'_>,
    request: Value,
    provider: String,
    model: String,
    region: Option<String>,
) -> Response<GatewayBody> {
    let Some(region) = region else {
        return GatewayError::bad_request(format!(
            "model: '{provider}/{model}' needs the AWS region to send it to: set [providers.{provider}] region"
        ))
        .into_response();
    };
    let include_usage = wants_usage(&request);
    if let Err(m) = path_safe_model(&model) {
        return GatewayError::bad_request(m).into_response();
    }
    let (translated, stream) = match converse::request_from_chat(&request) {
        Ok(t) => t,
        Err(m) => return GatewayError::bad_request(m).into_response(),
    };
    // A model id's ':' is percent-encoded, as the AWS SDKs send it (`path_safe_model` allowed
    // no other character that would need it).
    let id = model.replace(':', "%3A");
    let action = if stream {
        "converse-stream"
    } else {
        "converse"
    };
    call.route.query = None;
    let path = format!("/bedrock-runtime/{region}/model/{id}/{action}");
    let resp = call.send(provider, path, &translated).await;
    let created = crate::store::now_ms() / 1000;
    translate(
        resp,
        converse::StreamToChat::new(&model, created, include_usage),
        |status, bytes| {
            Some(if (200..300).contains(&status) {
                converse::response_to_chat(&serde_json::from_slice(bytes).ok()?, &model, created)
            } else {
                converse::error_to_openai(bytes)
            })
        },
    )
    .await
}

/// A chat completion request translated to Cohere's v2 chat, and the answer back.
pub(super) async fn chat_via_cohere(
    call: Call<'_>,
    request: Value,
    provider: String,
    model: String,
) -> Response<GatewayBody> {
    let include_usage = wants_usage(&request);
    let translated = match cohere_chat::request_from_chat(&request, &model) {
        Ok(t) => t,
        Err(m) => return GatewayError::bad_request(m).into_response(),
    };
    let resp = call.send(provider, "/v2/chat".into(), &translated).await;
    let created = crate::store::now_ms() / 1000;
    translate(
        resp,
        cohere_chat::StreamToChat::new(&model, created, include_usage),
        |status, bytes| {
            Some(if (200..300).contains(&status) {
                cohere_chat::response_to_chat(&serde_json::from_slice(bytes).ok()?, &model, created)
            } else {
                responses::error_to_openai(bytes)
            })
        },
    )
    .await
}
