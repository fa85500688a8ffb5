//! The compat endpoint, `/v1/{account}/{gateway}/compat/…` with `model: "{provider}/{model}"`:
//! any client protocol in, any provider out. Three entry points:
//! - `chat/completions` (OpenAI chat): sent to the provider's OpenAI-compatible chat path with
//!   the model rewritten, or translated to Anthropic Messages and back;
//! - `messages` (also `v1/messages`, where the Anthropic SDKs and Claude Code send it):
//!   Anthropic Messages, passed through to Anthropic or translated to an OpenAI-compatible
//!   chat completion and back;
//! - `responses` (also `v1/responses`): the OpenAI Responses API, passed through to OpenAI or
//!   translated to a chat completion (and on to Anthropic when the model is one), continuing a
//!   stored conversation by `previous_response_id` when the gateway keeps them (`stored`);
//! - `embeddings` (also `v1/embeddings`): OpenAI embeddings, sent to the provider's
//!   OpenAI-compatible embeddings path (beside its chat path), or translated to Cohere's v2
//!   embed and back.
//!
//! Every translated request runs through the gateway's pipeline as the request the provider
//! gets, so filters, logs, cost, cache and limits apply on every entry point; streams are
//! translated event by event.

use crate::http::body::GatewayBody;
use crate::http::error::GatewayError;
use crate::pipeline::Generation;
use crate::pipeline::flow::{self, BodyIn, Env, Route};
use crate::providers::{ProviderSpec, messages, responses};
use bytes::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Method, Response, StatusCode};
use serde_json::Value;
use std::net::IpAddr;
use std::sync::Arc;

mod native;
mod responses_in;
mod stored;
mod translate;

use native::{chat_via_anthropic, chat_via_cohere, chat_via_converse, chat_via_gemini};
use responses_in::responses_in;
use translate::{NoStream, translate};

/// Which client protocol a compat request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    Chat,
    Messages,
    Responses,
    Embeddings,
}

/// What the handlers below share.
struct Call<'a> {
    env: &'a Env,
    generation: Arc<Generation>,
    route: Route,
    parts: Parts,
    peer: IpAddr,
}

impl Call<'_> {
    /// Sends `body` to `provider` at `path` through the gateway's pipeline.
    async fn send(self, provider: String, path: String, body: &Value) -> Response<GatewayBody> {
        let route = Route {
            provider,
            path,
            ..self.route
        };
        let body = BodyIn::Ready(Bytes::from(body.to_string()));
        flow::handle(
            self.env,
            self.generation,
            route,
            self.parts,
            body,
            self.peer,
        )
        .await
    }
}

/// `POST /v1/{account}/{gateway}/compat/{chat/completions | messages | responses}`.
pub async fn compat(
    env: &Env,
    generation: Arc<Generation>,
    route: Route,
    parts: Parts,
    body: hyper::body::Incoming,
    peer: IpAddr,
) -> Response<GatewayBody> {
    let entry = match route.path.as_str() {
        "/chat/completions" => Some(Entry::Chat),
        "/messages" | "/v1/messages" => Some(Entry::Messages),
        "/responses" | "/v1/responses" => Some(Entry::Responses),
        "/embeddings" | "/v1/embeddings" => Some(Entry::Embeddings),
        _ => None,
    };
    let Some(entry) = entry.filter(|_| parts.method == Method::POST) else {
        return GatewayError::not_found(format!(
            "the compat endpoint is POST /v1/{0}/{1}/compat/chat/completions (OpenAI chat), /v1/{0}/{1}/compat/messages (Anthropic Messages), /v1/{0}/{1}/compat/responses (OpenAI Responses) or /v1/{0}/{1}/compat/embeddings (OpenAI embeddings)",
            route.account, route.gateway
        ))
        .into_response();
    };
    let refuse = |status: u16, message: String| match entry {
        Entry::Messages => anthropic_error(status, &message),
        _ if status == 404 => GatewayError::not_found(message).into_response(),
        _ => GatewayError::bad_request(message).into_response(),
    };
    let config = &generation.config;
    let bytes = match flow::read_body(BodyIn::Stream(body), config.max_body_bytes).await {
        Ok(b) => b,
        Err((e, _)) => return e.into_response(),
    };
    let mut request: Value = match serde_json::from_slice(&bytes) {
        Ok(v @ Value::Object(_)) => v,
        _ => return refuse(400, "body: expected a JSON object".into()),
    };
    let Some((provider, model)) = request
        .get("model")
        .and_then(Value::as_str)
        .and_then(|m| m.split_once('/'))
        .map(|(p, m)| (p.to_string(), m.to_string()))
        .filter(|(p, m)| !p.is_empty() && !m.is_empty())
    else {
        return refuse(
            400,
            "model: expected \"{provider}/{model}\", e.g. \"openai/gpt-4o-mini\"".into(),
        );
    };
    let Some(spec) = config.providers.get(&provider).cloned() else {
        return refuse(404, format!("model: unknown provider '{provider}'"));
    };
    let call = Call {
        env,
        generation: generation.clone(),
        route,
        parts,
        peer,
    };
    match entry {
        Entry::Chat => chat(call, request, provider, model, &spec).await,
        Entry::Messages if spec.anthropic_messages => {
            // Anthropic to Anthropic: only the model changes.
            request["model"] = Value::String(model);
            call.send(provider, "/v1/messages".into(), &request).await
        }
        Entry::Messages => messages_in(call, request, provider, model, &spec).await,
        Entry::Responses if provider == "openai" => {
            // OpenAI has the Responses API itself: only the model changes.
            request["model"] = Value::String(model);
            call.send(provider, "/responses".into(), &request).await
        }
        Entry::Responses => responses_in(call, request, provider, model, &spec).await,
        Entry::Embeddings => embeddings(call, request, provider, model, &spec).await,
    }
}

/// OpenAI embeddings to any provider: its OpenAI-compatible embeddings path, or Cohere's v2
/// embed translated both ways.
async fn embeddings(
    call: Call<'_>,
    mut request: Value,
    provider: String,
    model: String,
    spec: &ProviderSpec,
) -> Response<GatewayBody> {
    if provider == "cohere" {
        let translated = match crate::providers::cohere::embed_request(&request, &model) {
            Ok(t) => t,
            Err(m) => return GatewayError::bad_request(m).into_response(),
        };
        let base64 = crate::providers::cohere::wants_base64(&request);
        let resp = call.send(provider, "/v2/embed".into(), &translated).await;
        return translate(resp, NoStream, |status, bytes| {
            Some(if (200..300).contains(&status) {
                crate::providers::cohere::embed_response(
                    &serde_json::from_slice(bytes).ok()?,
                    &model,
                    base64,
                )?
            } else {
                responses::error_to_openai(bytes)
            })
        })
        .await;
    }
    let path = spec
        .compat_path
        .as_deref()
        .filter(|_| !spec.anthropic_messages)
        .and_then(|p| p.strip_suffix("/chat/completions"))
        .map(|base| format!("{base}/embeddings"));
    let Some(path) = path else {
        return GatewayError::bad_request(format!(
            "model: provider '{provider}' has no OpenAI-compatible embeddings endpoint; call /v1/{}/{}/{provider}/… in its own format",
            call.route.account, call.route.gateway
        ))
        .into_response();
    };
    request["model"] = Value::String(model);
    let mut call = call;
    bearer_to(&mut call.parts.headers, spec.auth_header.name);
    call.send(provider, path, &request).await
}

/// An OpenAI chat completion request to any provider; the answer in OpenAI's chat shape.
async fn chat(
    call: Call<'_>,
    mut request: Value,
    provider: String,
    model: String,
    spec: &ProviderSpec,
) -> Response<GatewayBody> {
    if spec.anthropic_messages {
        return chat_via_anthropic(call, request, provider, model).await;
    }
    if spec.gemini_native {
        return chat_via_gemini(call, request, provider, model, spec).await;
    }
    if spec.bedrock_converse {
        return chat_via_converse(call, request, provider, model, spec.region.clone()).await;
    }
    if spec.cohere_native && spec.compat_path.is_none() {
        return chat_via_cohere(call, request, provider, model).await;
    }
    let Some(path) = spec.compat_path.clone() else {
        return GatewayError::bad_request(format!(
            "model: provider '{provider}' has no OpenAI-compatible chat endpoint; call /v1/{}/{}/{provider}/… in its own format",
            call.route.account, call.route.gateway
        ))
        .into_response();
    };
    request["model"] = Value::String(model);
    call.send(provider, path, &request).await
}

/// Anthropic Messages to an OpenAI-compatible provider, and the answer back.
async fn messages_in(
    mut call: Call<'_>,
    request: Value,
    provider: String,
    model: String,
    spec: &ProviderSpec,
) -> Response<GatewayBody> {
    if !spec.takes_chat() {
        return anthropic_error(
            400,
            &format!(
                "model: provider '{provider}' has no chat endpoint to translate Anthropic Messages to (an OpenAI-compatible one, Gemini, Bedrock or Cohere)"
            ),
        );
    }
    let translated = match messages::request_to_openai(&request, &model) {
        Ok(t) => t,
        Err(m) => return anthropic_error(400, &m),
    };
    let headers = &mut call.parts.headers;
    // The Anthropic SDKs send their key as x-api-key; OpenAI-shaped providers want a Bearer token.
    if !headers.contains_key(AUTHORIZATION)
        && let Some(key) = headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .and_then(|k| HeaderValue::from_str(&format!("Bearer {k}")).ok())
    {
        headers.insert(AUTHORIZATION, key);
    }
    for name in ["x-api-key", "anthropic-version", "anthropic-beta"] {
        headers.remove(name);
    }
    bearer_to(headers, spec.auth_header.name);
    // Through the chat translation of that provider: its OpenAI-compatible endpoint, Gemini's
    // generateContent, Bedrock's Converse or Cohere's v2 chat.
    let resp = chat(call, translated, provider, model.clone(), spec).await;
    translate(
        resp,
        messages::StreamToAnthropic::new(&model),
        |status, bytes| {
            Some(if (200..300).contains(&status) {
                messages::response_to_anthropic(&serde_json::from_slice(bytes).ok()?, &model)
            } else {
                messages::error_to_anthropic(status, bytes)
            })
        },
    )
    .await
}

/// Whether an OpenAI chat request asked for the usage chunk at the end of its stream.
fn wants_usage(request: &Value) -> bool {
    request
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// Moves an OpenAI client's Bearer key to `name`, the header the provider reads its key from
/// (unless the client sent that one), so the provider gets one key: the client's, never the
/// client's beside a stored one.
fn bearer_to(headers: &mut hyper::HeaderMap, name: &'static str) {
    if name == AUTHORIZATION.as_str() || headers.contains_key(name) {
        return;
    }
    if let Some(key) = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|k| HeaderValue::from_str(k).ok())
    {
        headers.insert(name, key);
        headers.remove(AUTHORIZATION);
    }
}

/// A model name that goes into a URL path (Gemini, Bedrock): letters, digits and `._:-` only,
/// so it cannot reshape the path the policies and prices judged.
fn path_safe_model(model: &str) -> Result<(), String> {
    let ok = !model.is_empty()
        && !model.contains("..")
        && model
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "model: '{model}' is not a model name this provider takes (letters, digits, '.', '_', ':' and '-')"
        ))
    }
}

/// An error in Anthropic's shape, for the Messages entry point.
fn anthropic_error(status: u16, message: &str) -> Response<GatewayBody> {
    let body = serde_json::json!({"error": {"message": message}}).to_string();
    let out = messages::error_to_anthropic(status, body.as_bytes()).to_string();
    let mut resp = Response::new(GatewayBody::full(out));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
