//! Stored responses at the compat endpoint's Responses entry point (`store_responses` on a
//! gateway): a request naming `previous_response_id` continues the conversation the gateway
//! kept for it, and each answer asked to be stored (`store` is true unless sent `false`, as
//! OpenAI has it) is kept with its whole conversation before the client sees it complete, so
//! that the next turn can name it at once. Instructions are not carried over, as OpenAI does
//! not carry them. OpenAI models are passed through to OpenAI, which keeps its own.

use crate::http::body::GatewayBody;
use crate::http::error::GatewayError;
use crate::store::logs::LogStore;
use crate::store::responses;
use hyper::Response;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use serde_json::{Value, json};
use std::sync::Arc;

/// Where a stored response lives and who may continue it.
#[derive(Clone)]
pub struct Scope {
    pub services: Arc<crate::runtime::host::Services>,
    pub gateway: String,
    /// The virtual key's id, or empty without one.
    pub owner: String,
    /// How many responses the gateway keeps for each key (and for callers without one).
    pub keep: u64,
    /// The largest conversation kept: one that could not be sent back (`max_body_bytes`) is not.
    pub max_bytes: usize,
}

impl Scope {
    fn store(&self) -> Result<&LogStore, GatewayError> {
        self.services.logs.as_ref().ok_or_else(|| {
            GatewayError::store_unavailable(
                "previous_response_id: the log store, where responses are kept, is not open",
            )
        })
    }

    /// The conversation stored for response `id`; a 400 in OpenAI's shape when there is none
    /// (never stored, stored by another key or gateway, or too old).
    pub async fn load(&self, id: &str) -> Result<Vec<Value>, Response<GatewayBody>> {
        self.store().map_err(GatewayError::into_response)?;
        let (scope, key) = (self.clone(), id.to_string());
        let found = tokio::task::spawn_blocking(move || {
            let store = scope.store()?;
            store
                .with_db(|db| {
                    responses::get(
                        db,
                        &scope.gateway,
                        &scope.owner,
                        &key,
                        crate::store::now_ms() as i64,
                    )
                })
                .map_err(|e| {
                    GatewayError::store_unavailable(format!(
                        "previous_response_id: the stored responses cannot be read: {e}"
                    ))
                })
        })
        .await
        .map_err(|_| {
            GatewayError::store_unavailable("previous_response_id: the read was cancelled")
                .into_response()
        })?
        .map_err(GatewayError::into_response)?;
        found.ok_or_else(|| not_found(id))
    }

    /// Keeps `response` (a finished response object) with the conversation it ended:
    /// `before` (the input it was given, continued ones included) and its output. A failure is
    /// logged and counted, and the answer still goes out: it was made and billed.
    pub async fn keep(&self, before: &[Value], response: &Value) {
        let Some(id) = response.get("id").and_then(Value::as_str) else {
            return;
        };
        let mut items = before.to_vec();
        items.extend(
            response
                .get("output")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .cloned(),
        );
        let max = self.max_bytes.min(responses::MAX_ITEMS_BYTES);
        let text = match serde_json::to_string(&items) {
            Ok(t) if t.len() <= max => t,
            Ok(t) => {
                tracing::warn!(gateway = %self.gateway, bytes = t.len(), "a conversation over {max} bytes is not kept; previous_response_id will not find it");
                return;
            }
            Err(_) => return,
        };
        let (scope, id) = (self.clone(), id.to_string());
        let written = tokio::task::spawn_blocking(move || {
            let store = scope.store().map_err(|e| e.message)?;
            store
                .with_db(|db| {
                    responses::put(
                        db,
                        &scope.gateway,
                        &scope.owner,
                        &id,
                        &text,
                        scope.keep,
                        crate::store::now_ms() as i64,
                    )
                })
                .map_err(|e| e.to_string())
        })
        .await;
        if let Err(e) = written.map_err(|e| e.to_string()).and_then(|r| r) {
            tracing::warn!(gateway = %self.gateway, error = %e, "a response could not be stored; previous_response_id will not find it");
        }
    }
}

/// The input of a Responses request as items (a string is one user message).
pub fn input_items(input: Option<&Value>) -> Result<Vec<Value>, String> {
    match input {
        Some(Value::String(s)) => Ok(vec![
            json!({"type": "message", "role": "user", "content": s}),
        ]),
        Some(Value::Array(items)) => Ok(items.clone()),
        _ => Err("input: expected a string or a list of items".into()),
    }
}

/// OpenAI's answer to a `previous_response_id` it does not know.
fn not_found(id: &str) -> Response<GatewayBody> {
    let body = json!({"error": {
        "message": format!("Previous response with id '{id}' not found."),
        "type": "invalid_request_error",
        "param": "previous_response_id",
        "code": "previous_response_not_found",
    }})
    .to_string();
    let mut resp = Response::new(GatewayBody::full(body));
    *resp.status_mut() = hyper::StatusCode::BAD_REQUEST;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
