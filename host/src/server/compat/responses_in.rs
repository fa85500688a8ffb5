//! The Responses entry point for providers without the Responses API: a chat completion and
//! the answer back as a response, continuing and keeping stored responses (`stored`).

use super::stored;
use super::translate::translate_keeping;
use super::{Call, chat};
use crate::http::body::GatewayBody;
use crate::http::error::GatewayError;
use crate::providers::{ProviderSpec, responses};
use hyper::Response;
use serde_json::Value;

/// OpenAI Responses to a provider without it: a chat completion (on to Anthropic when the
/// model is one), and the answer back as a response. With `store_responses` on the gateway, a
/// `previous_response_id` continues a stored conversation and the answer is kept.
pub(super) async fn responses_in(
    call: Call<'_>,
    mut request: Value,
    provider: String,
    model: String,
    spec: &ProviderSpec,
) -> Response<GatewayBody> {
    // Responses are kept in the log store's database (always open when serving).
    let keep = call
        .generation
        .config
        .gateways
        .get(&call.route.gateway)
        .filter(|_| call.env.runtime.services.logs.is_some())
        .map_or(0, |g| g.store_responses);
    let previous = request
        .get("previous_response_id")
        .filter(|v| !v.is_null())
        .cloned();
    let wants_store = request.get("store").and_then(Value::as_bool) != Some(false);
    let mut scope = None;
    if keep > 0 && (wants_store || previous.is_some()) {
        let s = match stored_scope(&call, &provider, keep) {
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

/// Where this request's responses are stored: its gateway, under its virtual key. Admission's
/// checks (gateway, account, `auth_token`, key) come first, so nothing stored is read for a
/// caller the gateway would refuse.
fn stored_scope(call: &Call<'_>, provider: &str, keep: u64) -> Result<stored::Scope, GatewayError> {
    let route = crate::pipeline::flow::Route {
        provider: provider.to_string(),
        ..call.route.clone()
    };
    let owner = crate::pipeline::flow::caller(
        &call.generation,
        &route,
        &call.parts,
        call.env.keys.as_deref(),
    )?;
    Ok(stored::Scope {
        services: call.env.runtime.services.clone(),
        gateway: call.route.gateway.clone(),
        owner: owner.unwrap_or_default(),
        keep,
        max_bytes: call.generation.config.max_body_bytes,
    })
}

/// A response to keep once it is complete, with the conversation before it.
pub(super) struct Keep {
    pub(super) scope: stored::Scope,
    pub(super) before: Vec<Value>,
}
