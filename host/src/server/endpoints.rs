//! The two endpoints that are not plain provider passthrough:
//! - compat: `POST /v1/{account}/{gateway}/compat/chat/completions`, OpenAI
//!   format with `model: "{provider}/{model}"`, sent to the provider's
//!   OpenAI-compatible chat path with the model rewritten (or translated to Anthropic
//!   Messages); and `…/compat/messages` (also `…/compat/v1/messages`, where the Anthropic
//!   SDKs and Claude Code send it), Anthropic Messages in, sent to an Anthropic provider as
//!   is or translated to an OpenAI-compatible one and back;
//! - universal: `POST /v1/{account}/{gateway}`, a JSON array of steps
//!   `{provider, endpoint, headers, query}` tried in order until one does not
//!   fail (status ≥ 500, 429, unreachable, timeout); `cf-aig-step` says which
//!   answered. Each step runs through the gateway's filters like any request.

use crate::http::body::{BodyError, GatewayBody};
use crate::http::error::GatewayError;
use crate::pipeline::Generation;
use crate::pipeline::flow::{self, BodyIn, Env, Route};
use crate::providers::{anthropic, messages};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::header::{CONTENT_LENGTH, HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Method, Request, Response};
use serde_json::Value;
use std::net::IpAddr;
use std::sync::Arc;

/// Most steps a universal request may list.
const MAX_STEPS: usize = 10;

/// `POST /v1/{account}/{gateway}/compat/chat/completions`.
pub async fn compat(
    env: &Env,
    generation: Arc<Generation>,
    route: Route,
    parts: Parts,
    body: hyper::body::Incoming,
    peer: IpAddr,
) -> Response<GatewayBody> {
    let messages_in = matches!(route.path.as_str(), "/messages" | "/v1/messages");
    if !(route.path == "/chat/completions" || messages_in) || parts.method != Method::POST {
        return GatewayError::not_found(format!(
            "the compat endpoint is POST /v1/{0}/{1}/compat/chat/completions (OpenAI) or /v1/{0}/{1}/compat/messages (Anthropic)",
            route.account, route.gateway
        ))
        .into_response();
    }
    let config = &generation.config;
    let bytes = match flow::read_body(BodyIn::Stream(body), config.max_body_bytes).await {
        Ok(b) => b,
        Err((e, _)) => return e.into_response(),
    };
    let mut request: Value = match serde_json::from_slice(&bytes) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return GatewayError::bad_request(
                "body: expected an OpenAI chat completion request (a JSON object)",
            )
            .into_response();
        }
    };
    let Some((provider, model)) = request
        .get("model")
        .and_then(Value::as_str)
        .and_then(|m| m.split_once('/'))
        .map(|(p, m)| (p.to_string(), m.to_string()))
        .filter(|(p, m)| !p.is_empty() && !m.is_empty())
    else {
        return GatewayError::bad_request(
            "model: expected \"{provider}/{model}\", e.g. \"openai/gpt-4o-mini\"",
        )
        .into_response();
    };
    let Some(spec) = config.providers.get(&provider) else {
        return GatewayError::not_found(format!("model: unknown provider '{provider}'"))
            .into_response();
    };
    if messages_in {
        if spec.anthropic_messages {
            // Anthropic to Anthropic: only the model changes.
            request["model"] = Value::String(model);
            let route = Route {
                provider,
                path: "/v1/messages".into(),
                ..route
            };
            let body = BodyIn::Ready(Bytes::from(request.to_string()));
            return flow::handle(env, generation, route, parts, body, peer).await;
        }
        let Some(path) = spec.compat_path.clone() else {
            return anthropic_error(
                400,
                &format!(
                    "model: provider '{provider}' has no OpenAI-compatible chat endpoint to translate Anthropic Messages to"
                ),
            );
        };
        return messages_to_openai(
            env, generation, route, parts, request, provider, model, path, peer,
        )
        .await;
    }
    if spec.anthropic_messages {
        return compat_anthropic(
            env,
            generation.clone(),
            route,
            parts,
            request,
            provider,
            model,
            peer,
        )
        .await;
    }
    let Some(path) = spec.compat_path.clone() else {
        return GatewayError::bad_request(format!(
            "model: provider '{provider}' has no OpenAI-compatible chat endpoint; call /v1/{}/{}/{provider}/… in its own format",
            route.account, route.gateway
        ))
        .into_response();
    };
    request["model"] = Value::String(model);
    let rewritten = Bytes::from(request.to_string());
    let route = Route {
        provider,
        path,
        ..route
    };
    flow::handle(
        env,
        generation,
        route,
        parts,
        BodyIn::Ready(rewritten),
        peer,
    )
    .await
}

/// The compat endpoint for an Anthropic-shaped provider: translate the
/// request, send it through the gateway, translate the answer back.
#[allow(clippy::too_many_arguments)]
async fn compat_anthropic(
    env: &Env,
    generation: Arc<Generation>,
    route: Route,
    mut parts: Parts,
    request: Value,
    provider: String,
    model: String,
    peer: IpAddr,
) -> Response<GatewayBody> {
    let include_usage = request
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let translated = match anthropic::request_to_anthropic(&request, &model) {
        Ok(t) => t,
        Err(m) => return GatewayError::bad_request(m).into_response(),
    };
    // The OpenAI SDK sends its key as a Bearer token; Anthropic wants x-api-key.
    if !parts.headers.contains_key("x-api-key")
        && let Some(key) = parts
            .headers
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|k| HeaderValue::from_str(k).ok())
    {
        parts.headers.insert("x-api-key", key);
        parts.headers.remove(hyper::header::AUTHORIZATION);
    }
    if !parts.headers.contains_key("anthropic-version") {
        parts
            .headers
            .insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
    }
    let route = Route {
        provider,
        path: "/v1/messages".into(),
        ..route
    };
    let body = Bytes::from(translated.to_string());
    let resp = flow::handle(env, generation, route, parts, BodyIn::Ready(body), peer).await;
    let created = crate::store::now_ms() / 1000;
    let (mut head, body) = resp.into_parts();
    let streamed = head
        .headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("text/event-stream"));
    head.headers.remove(CONTENT_LENGTH);
    if streamed {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, BodyError>>(16);
        tokio::spawn(async move {
            let mut body = body;
            let mut translator = anthropic::StreamTranslator::new(&model, created, include_usage);
            loop {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        let Ok(data) = frame.into_data() else {
                            continue;
                        };
                        let out = translator.feed(&data);
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
            if !translator.finished() {
                let _ = tx
                    .send(Err("the provider's stream ended before message_stop".into()))
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
    let out = match serde_json::from_slice::<Value>(&bytes) {
        Ok(v) => anthropic::response_to_openai(&v, &model, created).to_string(),
        Err(_) => return Response::from_parts(head, GatewayBody::full(bytes)),
    };
    head.headers.insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    head.headers
        .insert(CONTENT_LENGTH, HeaderValue::from(out.len()));
    Response::from_parts(head, GatewayBody::full(out))
}

/// An error in Anthropic's shape, for the Messages entry point.
fn anthropic_error(status: u16, message: &str) -> Response<GatewayBody> {
    let body = messages::error_to_anthropic(
        status,
        &serde_json::to_vec(&serde_json::json!({"error": {"message": message}}))
            .unwrap_or_default(),
    );
    let mut resp = Response::new(GatewayBody::full(body.to_string()));
    *resp.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_REQUEST);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The Messages entry point for an OpenAI-compatible provider: translate the request, send
/// it through the gateway (filters, logs, cost and limits as for any chat completion),
/// translate the answer back: JSON, the stream event by event, or the error.
#[allow(clippy::too_many_arguments)]
async fn messages_to_openai(
    env: &Env,
    generation: Arc<Generation>,
    route: Route,
    mut parts: Parts,
    request: Value,
    provider: String,
    model: String,
    path: String,
    peer: IpAddr,
) -> Response<GatewayBody> {
    let translated = match messages::request_to_openai(&request, &model) {
        Ok(t) => t,
        Err(m) => return anthropic_error(400, &m),
    };
    // The Anthropic SDKs send their key as x-api-key; OpenAI-shaped providers want a Bearer token.
    if !parts.headers.contains_key(hyper::header::AUTHORIZATION)
        && let Some(key) = parts
            .headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .and_then(|k| HeaderValue::from_str(&format!("Bearer {k}")).ok())
    {
        parts.headers.insert(hyper::header::AUTHORIZATION, key);
    }
    parts.headers.remove("x-api-key");
    parts.headers.remove("anthropic-version");
    parts.headers.remove("anthropic-beta");
    let route = Route {
        provider,
        path,
        ..route
    };
    let body = Bytes::from(translated.to_string());
    let resp = flow::handle(env, generation, route, parts, BodyIn::Ready(body), peer).await;
    let (mut head, body) = resp.into_parts();
    let streamed = head
        .headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("text/event-stream"));
    head.headers.remove(CONTENT_LENGTH);
    if streamed && head.status.is_success() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, BodyError>>(16);
        tokio::spawn(async move {
            let mut body = body;
            let mut translator = messages::StreamToAnthropic::new(&model);
            loop {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        let Ok(data) = frame.into_data() else {
                            continue;
                        };
                        let out = translator.feed(&data);
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
            let tail = translator.finish();
            if !tail.is_empty() {
                let _ = tx.send(Ok(Bytes::from(tail))).await;
            }
            if !translator.finished() {
                let _ = tx
                    .send(Err("the provider's stream ended before [DONE]".into()))
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
        Err(e) => return anthropic_error(502, &format!("provider response unreadable: {e}")),
    };
    let out = if head.status.is_success() {
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) => messages::response_to_anthropic(&v, &model),
            Err(_) => return anthropic_error(502, "the provider's answer is not JSON"),
        }
    } else {
        messages::error_to_anthropic(head.status.as_u16(), &bytes)
    };
    let out = out.to_string();
    head.headers.insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    head.headers
        .insert(CONTENT_LENGTH, HeaderValue::from(out.len()));
    Response::from_parts(head, GatewayBody::full(out))
}

/// One step of a universal request.
struct Step {
    provider: String,
    endpoint: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
}

fn parse_steps(bytes: &[u8]) -> Result<Vec<Step>, GatewayError> {
    let bad = |m: String| GatewayError::bad_request(m);
    let steps: Vec<Value> = match serde_json::from_slice(bytes) {
        Ok(Value::Array(a)) => a,
        Ok(Value::Object(o)) => vec![Value::Object(o)],
        _ => {
            return Err(bad(
                "body: expected a JSON array of steps {provider, endpoint, headers, query}".into(),
            ));
        }
    };
    if steps.is_empty() || steps.len() > MAX_STEPS {
        return Err(bad(format!(
            "body: expected 1 to {MAX_STEPS} steps, got {}",
            steps.len()
        )));
    }
    let mut out = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let text = |k: &str| -> Result<String, GatewayError> {
            step.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .ok_or_else(|| bad(format!("[{i}].{k}: expected a non-empty string")))
        };
        let provider = text("provider")?;
        let endpoint = text("endpoint")?.trim_start_matches('/').to_string();
        let mut headers = Vec::new();
        match step.get("headers") {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (name, value) in map {
                    let value = value
                        .as_str()
                        .ok_or_else(|| bad(format!("[{i}].headers.{name}: expected a string")))?;
                    let n = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                        .map_err(|_| bad(format!("[{i}].headers: invalid header name '{name}'")))?;
                    let v = HeaderValue::from_str(value)
                        .map_err(|_| bad(format!("[{i}].headers.{name}: invalid header value")))?;
                    headers.push((n, v));
                }
            }
            Some(_) => return Err(bad(format!("[{i}].headers: expected an object of strings"))),
        }
        let body = match step.get("query") {
            None | Some(Value::Null) => Bytes::new(),
            Some(q) => Bytes::from(q.to_string()),
        };
        out.push(Step {
            provider,
            endpoint,
            headers,
            body,
        });
    }
    Ok(out)
}

/// `POST /v1/{account}/{gateway}`.
pub async fn universal(
    env: &Env,
    generation: Arc<Generation>,
    account: String,
    gateway: String,
    parts: Parts,
    body: hyper::body::Incoming,
    peer: IpAddr,
) -> Response<GatewayBody> {
    let bytes = match flow::read_body(BodyIn::Stream(body), generation.config.max_body_bytes).await
    {
        Ok(b) => b,
        Err((e, _)) => return e.into_response(),
    };
    let steps = match parse_steps(&bytes) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let last = steps.len() - 1;
    for (i, step) in steps.into_iter().enumerate() {
        let path = format!("/{}", step.endpoint);
        let (path_only, query) = match path.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (path, None),
        };
        let Ok(request) = Request::builder()
            .method(Method::POST)
            .uri(format!(
                "/v1/{account}/{gateway}/{}{path_only}",
                step.provider
            ))
            .body(())
        else {
            return GatewayError::bad_request(format!("[{i}].endpoint: not a valid path"))
                .into_response();
        };
        let (mut step_parts, ()) = request.into_parts();
        step_parts.headers = parts.headers.clone();
        step_parts.headers.remove(CONTENT_LENGTH);
        for (n, v) in step.headers {
            step_parts.headers.insert(n, v);
        }
        let route = Route {
            account: account.clone(),
            gateway: gateway.clone(),
            provider: step.provider,
            path: path_only,
            query,
        };
        let mut resp = flow::handle(
            env,
            generation.clone(),
            route,
            step_parts,
            BodyIn::Ready(step.body),
            peer,
        )
        .await;
        let status = resp.status().as_u16();
        let failed = status >= 500 || status == 429;
        if failed && i < last {
            tracing::debug!(step = i, status, "universal step failed, trying the next");
            continue;
        }
        resp.headers_mut()
            .insert("cf-aig-step", HeaderValue::from(i));
        return resp;
    }
    GatewayError::bad_request("body: no steps").into_response()
}
