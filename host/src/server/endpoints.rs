//! The universal endpoint (the compat endpoint is in `compat.rs`):
//! - universal: `POST /v1/{account}/{gateway}`, a JSON array of steps
//!   `{provider, endpoint, headers, query}` tried in order until one does not
//!   fail (status ≥ 500, 429, unreachable, timeout); `cf-aig-step` says which
//!   answered. Each step runs through the gateway's filters like any request.

use crate::http::body::GatewayBody;
use crate::http::error::GatewayError;
use crate::pipeline::Generation;
use crate::pipeline::flow::{self, BodyIn, Env, Route};
use bytes::Bytes;
use hyper::header::{CONTENT_LENGTH, HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Method, Request, Response};
use serde_json::Value;
use std::net::IpAddr;
use std::sync::Arc;

/// Most steps a universal request may list.
const MAX_STEPS: usize = 10;

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
