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

use crate::http::body::{BodyError, GatewayBody};
use crate::http::error::GatewayError;
use crate::pipeline::Generation;
use crate::pipeline::flow::{self, BodyIn, Env, Route};
use crate::providers::{
    ProviderSpec, anthropic, cohere_chat, converse, gemini, messages, responses,
};
use crate::server::stored;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Method, Response, StatusCode};
use serde_json::Value;
use std::net::IpAddr;
use std::sync::Arc;

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

/// The stream translator of answers that are never streams (embeddings): whatever arrives is
/// passed on.
struct NoStream;

impl StreamTranslate for NoStream {
    fn feed(&mut self, bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }
    fn finish(&mut self) -> String {
        String::new()
    }
    fn finished(&self) -> bool {
        true
    }
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

/// A chat completion request translated to Anthropic Messages, and the answer back.
async fn chat_via_anthropic(
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
async fn chat_via_gemini(
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
async fn chat_via_converse(
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
async fn chat_via_cohere(
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

/// Anthropic Messages to an OpenAI-compatible provider, and the answer back.
async fn messages_in(
    mut call: Call<'_>,
    request: Value,
    provider: String,
    model: String,
    spec: &ProviderSpec,
) -> Response<GatewayBody> {
    if spec.compat_path.is_none()
        && !spec.gemini_native
        && !spec.bedrock_converse
        && !spec.cohere_native
    {
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

/// OpenAI Responses to a provider without it: a chat completion (on to Anthropic when the
/// model is one), and the answer back as a response. With `store_responses` on the gateway, a
/// `previous_response_id` continues a stored conversation and the answer is kept.
async fn responses_in(
    call: Call<'_>,
    mut request: Value,
    provider: String,
    model: String,
    spec: &ProviderSpec,
) -> Response<GatewayBody> {
    let keep = call
        .generation
        .config
        .gateways
        .get(&call.route.gateway)
        .map_or(0, |g| g.store_responses);
    let previous = request
        .get("previous_response_id")
        .filter(|v| !v.is_null())
        .cloned();
    let wants_store = request.get("store").and_then(Value::as_bool) != Some(false);
    let mut scope = None;
    if keep > 0 && (wants_store || previous.is_some()) {
        let s = match stored_scope(&call, keep) {
            Ok(s) => s,
            Err(e) => return e.into_response(),
        };
        scope = Some(s);
    }
    // The conversation so far: the stored one continued, then this request's input.
    let mut before = Vec::new();
    if let (Some(s), Some(previous)) = (&scope, &previous) {
        let Some(id) = previous.as_str() else {
            return GatewayError::bad_request("previous_response_id: expected a string")
                .into_response();
        };
        before = match s.load(id).await {
            Ok(items) => items,
            Err(resp) => return resp,
        };
    }
    if scope.is_some() {
        match stored::input_items(request.get("input")) {
            Ok(items) => before.extend(items),
            Err(m) => return GatewayError::bad_request(m).into_response(),
        }
        if let Some(o) = request.as_object_mut() {
            o.remove("previous_response_id");
            o.insert("input".into(), Value::Array(before.clone()));
        }
    }
    let chat_request = match responses::request_to_chat(&request, &model) {
        Ok(t) => t,
        Err(m) => return GatewayError::bad_request(m).into_response(),
    };
    let id = format!("resp_{}", uuid::Uuid::new_v4().simple());
    let mut fields = serde_json::Map::new();
    fields.insert("store".into(), Value::Bool(scope.is_some() && wants_store));
    fields.insert(
        "previous_response_id".into(),
        previous.clone().unwrap_or(Value::Null),
    );
    let kept = scope
        .filter(|_| wants_store)
        .map(|scope| Keep { scope, before });
    let resp = chat(call, chat_request, provider, model.clone(), spec).await;
    let created = crate::store::now_ms() / 1000;
    let stream_fields = fields.clone();
    translate_keeping(
        resp,
        responses::StreamToResponses::new(&model, created).with_id(&id, stream_fields),
        |status, bytes| {
            Some(if (200..300).contains(&status) {
                let mut r = responses::chat_to_response(
                    &serde_json::from_slice(bytes).ok()?,
                    &model,
                    created,
                );
                r["id"] = Value::String(id.clone());
                for (k, v) in fields {
                    r[k] = v;
                }
                r
            } else {
                responses::error_to_openai(bytes)
            })
        },
        kept,
    )
    .await
}

/// Where this request's responses are stored: its gateway, under its virtual key.
fn stored_scope(call: &Call<'_>, keep: u64) -> Result<stored::Scope, GatewayError> {
    let gw = call
        .generation
        .gateways
        .get(&call.route.gateway)
        .ok_or_else(|| {
            GatewayError::not_found(format!("unknown gateway '{}'", call.route.gateway))
        })?;
    let identified = crate::control::identify(
        call.env.keys.as_deref(),
        gw.keys,
        &gw.name,
        &call.parts.headers,
        call.route.query.as_deref(),
        crate::store::now_ms(),
    )?;
    Ok(stored::Scope {
        services: call.env.runtime.services.clone(),
        gateway: gw.name.clone(),
        owner: identified
            .map(|i| i.consumer.key_id.clone())
            .unwrap_or_default(),
        keep,
    })
}

/// A response to keep once it is complete, with the conversation before it.
struct Keep {
    scope: stored::Scope,
    before: Vec<Value>,
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

/// A translator of one provider stream into the client's protocol.
pub trait StreamTranslate: Send + 'static {
    /// The client's bytes for these provider bytes.
    fn feed(&mut self, bytes: &[u8]) -> String;
    /// What to send when the provider's stream ended (closing events, if it ended cleanly).
    fn finish(&mut self) -> String;
    /// Whether the client's protocol's terminal event was sent.
    fn finished(&self) -> bool;
    /// The finished answer as one object, once, when the protocol has one to keep.
    fn completed(&mut self) -> Option<Value> {
        None
    }
}

impl StreamTranslate for anthropic::StreamTranslator {
    fn feed(&mut self, bytes: &[u8]) -> String {
        anthropic::StreamTranslator::feed(self, bytes)
    }
    fn finish(&mut self) -> String {
        String::new()
    }
    fn finished(&self) -> bool {
        anthropic::StreamTranslator::finished(self)
    }
}

impl StreamTranslate for messages::StreamToAnthropic {
    fn feed(&mut self, bytes: &[u8]) -> String {
        messages::StreamToAnthropic::feed(self, bytes)
    }
    fn finish(&mut self) -> String {
        messages::StreamToAnthropic::finish(self)
    }
    fn finished(&self) -> bool {
        messages::StreamToAnthropic::finished(self)
    }
}

impl StreamTranslate for converse::StreamToChat {
    fn feed(&mut self, bytes: &[u8]) -> String {
        converse::StreamToChat::feed(self, bytes)
    }
    fn finish(&mut self) -> String {
        converse::StreamToChat::finish(self)
    }
    fn finished(&self) -> bool {
        converse::StreamToChat::finished(self)
    }
}

impl StreamTranslate for cohere_chat::StreamToChat {
    fn feed(&mut self, bytes: &[u8]) -> String {
        cohere_chat::StreamToChat::feed(self, bytes)
    }
    fn finish(&mut self) -> String {
        cohere_chat::StreamToChat::finish(self)
    }
    fn finished(&self) -> bool {
        cohere_chat::StreamToChat::finished(self)
    }
}

impl StreamTranslate for gemini::StreamToChat {
    fn feed(&mut self, bytes: &[u8]) -> String {
        gemini::StreamToChat::feed(self, bytes)
    }
    fn finish(&mut self) -> String {
        gemini::StreamToChat::finish(self)
    }
    fn finished(&self) -> bool {
        gemini::StreamToChat::finished(self)
    }
}

impl StreamTranslate for responses::StreamToResponses {
    fn completed(&mut self) -> Option<Value> {
        self.take_completed()
    }
    fn feed(&mut self, bytes: &[u8]) -> String {
        responses::StreamToResponses::feed(self, bytes)
    }
    fn finish(&mut self) -> String {
        responses::StreamToResponses::finish(self)
    }
    fn finished(&self) -> bool {
        responses::StreamToResponses::finished(self)
    }
}

/// The provider's answer in the client's protocol: a successful event stream through
/// `stream`, event by event (a stream that ends without its terminal event is ended as broken,
/// never as complete); any other answer read whole and given to `whole` with its status
/// (`None`, for a body it cannot read, passes it on unchanged).
async fn translate<T: StreamTranslate>(
    resp: Response<GatewayBody>,
    stream: T,
    whole: impl FnOnce(u16, &[u8]) -> Option<Value>,
) -> Response<GatewayBody> {
    translate_keeping(resp, stream, whole, None).await
}

/// [`translate`], keeping the finished answer when `keep` says where, before the client sees
/// it complete.
async fn translate_keeping<T: StreamTranslate>(
    resp: Response<GatewayBody>,
    mut stream: T,
    whole: impl FnOnce(u16, &[u8]) -> Option<Value>,
    keep: Option<Keep>,
) -> Response<GatewayBody> {
    let (mut head, body) = resp.into_parts();
    let streamed = head
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| {
            c.starts_with("text/event-stream")
                || c.starts_with("application/vnd.amazon.eventstream")
        });
    head.headers.remove(CONTENT_LENGTH);
    if streamed && head.status.is_success() {
        // Whatever the provider streamed in, the client gets server-sent events.
        head.headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, BodyError>>(16);
        tokio::spawn(async move {
            let mut body = body;
            loop {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        let Ok(data) = frame.into_data() else {
                            continue;
                        };
                        let out = stream.feed(&data);
                        if let Some(k) = &keep
                            && let Some(done) = stream.completed()
                        {
                            k.scope.keep(&k.before, &done).await;
                        }
                        if !out.is_empty() && tx.send(Ok(Bytes::from(out))).await.is_err() {
                            return;
                        }
                    }
                    Some(Err(e)) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                    None => break,
                }
            }
            let tail = stream.finish();
            if let Some(k) = &keep
                && let Some(done) = stream.completed()
            {
                k.scope.keep(&k.before, &done).await;
            }
            if !tail.is_empty() {
                let _ = tx.send(Ok(Bytes::from(tail))).await;
            }
            if !stream.finished() {
                let _ = tx
                    .send(Err(
                        "the provider's stream ended before its last event".into()
                    ))
                    .await;
            }
        });
        return Response::from_parts(head, GatewayBody::Channel(rx));
    }
    let bytes = match http_body_util::Limited::new(body, 64 * 1024 * 1024)
        .collect()
        .await
    {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            return GatewayError::bad_gateway(format!("provider response unreadable: {e}"))
                .into_response();
        }
    };
    let Some(out) = whole(head.status.as_u16(), &bytes) else {
        head.headers
            .insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        return Response::from_parts(head, GatewayBody::full(bytes));
    };
    if let Some(k) = &keep
        && head.status.is_success()
        && matches!(
            out.get("status").and_then(Value::as_str),
            Some("completed" | "incomplete")
        )
    {
        k.scope.keep(&k.before, &out).await;
    }
    let out = out.to_string();
    head.headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    head.headers
        .insert(CONTENT_LENGTH, HeaderValue::from(out.len()));
    Response::from_parts(head, GatewayBody::full(out))
}
