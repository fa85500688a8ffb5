//! The bridge between the generated bindings and a `Filter`: converts WIT
//! values to SDK types and back, and keeps the one filter value of this
//! instance (an instance serves exactly one request). Used by `export_filter!`.

use crate::Filter;
use crate::bindings::aigw::filter::types as wit;
use crate::types::*;
use std::any::Any;
use std::cell::RefCell;

thread_local! {
    static INSTANCE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

fn with_filter<F: Filter, R>(default: R, f: impl FnOnce(&mut F) -> R) -> R {
    INSTANCE.with(|cell| {
        let mut slot = cell.borrow_mut();
        match slot.as_mut().and_then(|b| b.downcast_mut::<F>()) {
            Some(filter) => f(filter),
            None => default,
        }
    })
}

fn to_headers(list: Vec<wit::Header>) -> Headers {
    Headers(
        list.into_iter()
            .map(|h| Header {
                name: h.name,
                value: h.value,
            })
            .collect(),
    )
}

fn from_headers(list: Vec<Header>) -> Vec<wit::Header> {
    list.into_iter()
        .map(|h| wit::Header {
            name: h.name,
            value: h.value,
        })
        .collect()
}

fn local(r: LocalResponse) -> wit::LocalResponse {
    wit::LocalResponse {
        status: r.status,
        headers: from_headers(r.headers),
        body: r.body,
    }
}

pub(crate) fn edits(e: HeaderEdits) -> wit::HeaderEdits {
    wit::HeaderEdits {
        set: from_headers(e.set),
        remove: e.remove,
    }
}

fn mode(m: BodyMode) -> wit::BodyMode {
    match m {
        BodyMode::Ignore => wit::BodyMode::Ignore,
        BodyMode::Buffered(n) => wit::BodyMode::Buffered(n),
        BodyMode::Streaming => wit::BodyMode::Streaming,
    }
}

/// Sends panic messages (with their source location) to the host, which logs them with
/// the request id and shows the latest in `/api/plugins`; without it a panic is only an
/// `unreachable` trap. Installed once per instance, from the first export called.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            crate::bindings::aigw::filter::telemetry::report_panic(&panic_text(info));
        }));
    });
}

/// "message at file:line:column".
pub(crate) fn panic_text(info: &std::panic::PanicHookInfo<'_>) -> String {
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string());
    match info.location() {
        Some(l) => format!("{message} at {}:{}:{}", l.file(), l.line(), l.column()),
        None => message,
    }
}

pub fn describe<F: Filter>() -> wit::FilterInfo {
    install_panic_hook();
    let info = F::describe();
    crate::bindings::aigw::filter::manifest::declare_on_error(match info.on_error {
        OnError::Open => crate::bindings::aigw::filter::manifest::FailureMode::Open,
        OnError::Closed => crate::bindings::aigw::filter::manifest::FailureMode::Closed,
    });
    let mut hooks = wit::Hooks::empty();
    if info.hooks.request_headers {
        hooks |= wit::Hooks::REQUEST_HEADERS;
    }
    if info.hooks.request_body {
        hooks |= wit::Hooks::REQUEST_BODY;
    }
    if info.hooks.response_headers {
        hooks |= wit::Hooks::RESPONSE_HEADERS;
    }
    if info.hooks.response_body {
        hooks |= wit::Hooks::RESPONSE_BODY;
    }
    if info.hooks.done {
        hooks |= wit::Hooks::DONE;
    }
    wit::FilterInfo {
        hooks,
        request_body: mode(info.request_body),
        response_body: mode(info.response_body),
    }
}

pub fn configure<F: Filter>(config_json: String) -> Result<(), String> {
    install_panic_hook();
    let value: serde_json::Value = serde_json::from_str(&config_json)
        .map_err(|e| format!("filter configuration is not valid JSON: {e}"))?;
    let filter = F::configure(value)?;
    INSTANCE.with(|cell| *cell.borrow_mut() = Some(Box::new(filter)));
    Ok(())
}

pub fn on_request_headers<F: Filter>(request: wit::RequestHead) -> wit::Decision {
    let req = Request {
        request_id: request.request_id,
        method: request.method,
        account: request.account,
        gateway: request.gateway,
        provider: request.provider,
        path: request.path,
        query: request.query,
        headers: to_headers(request.headers),
        client_ip: request.client_ip,
    };
    match with_filter::<F, _>(Decision::proceed(), |f| f.on_request_headers(&req)) {
        Decision::Continue(e) => wit::Decision::Continue(edits(e)),
        Decision::Respond(r) => wit::Decision::Respond(local(r)),
    }
}

pub fn on_request_body<F: Filter>(body: Vec<u8>) -> wit::BodyDecision {
    match with_filter::<F, _>(BodyDecision::Continue, |f| f.on_request_body(&body)) {
        BodyDecision::Continue => wit::BodyDecision::Continue,
        BodyDecision::Replace(b) => wit::BodyDecision::Replace(b),
        BodyDecision::Respond(r) => wit::BodyDecision::Respond(local(r)),
    }
}

pub fn on_response_headers<F: Filter>(response: wit::ResponseHead) -> wit::ResponseDecision {
    let resp = Response {
        status: response.status,
        headers: to_headers(response.headers),
        attempt: response.attempt,
        upstream_error: response.upstream_error,
        local: response.local,
    };
    match with_filter::<F, _>(ResponseDecision::proceed(), |f| {
        f.on_response_headers(&resp)
    }) {
        ResponseDecision::Continue(e) => wit::ResponseDecision::Continue(edits(e)),
        ResponseDecision::Respond(r) => wit::ResponseDecision::Respond(local(r)),
        ResponseDecision::Retry { delay_ms } => {
            wit::ResponseDecision::Retry(wit::RetrySpec { delay_ms })
        }
    }
}

pub fn on_response_body<F: Filter>(chunk: Vec<u8>, end_of_stream: bool) -> wit::ChunkDecision {
    match with_filter::<F, _>(ChunkDecision::Continue, |f| {
        f.on_response_body(&chunk, end_of_stream)
    }) {
        ChunkDecision::Continue => wit::ChunkDecision::Continue,
        ChunkDecision::Replace(b) => wit::ChunkDecision::Replace(b),
        ChunkDecision::Hold => wit::ChunkDecision::Hold,
    }
}

pub fn on_done<F: Filter>(s: wit::Summary) {
    let summary = Summary {
        request_id: s.request_id,
        created_at_ms: s.created_at_ms,
        account: s.account,
        gateway: s.gateway,
        provider: s.provider,
        method: s.method,
        path: s.path,
        model: s.model,
        status: s.status,
        outcome: match s.outcome {
            wit::Outcome::Completed => Outcome::Completed,
            wit::Outcome::RespondedLocally => Outcome::RespondedLocally,
            wit::Outcome::UpstreamError => Outcome::UpstreamError,
            wit::Outcome::ClientAborted => Outcome::ClientAborted,
            wit::Outcome::FilterFailed => Outcome::FilterFailed,
        },
        success: s.success,
        cached: s.cached,
        streamed: s.streamed,
        tokens_in: s.tokens_in,
        tokens_out: s.tokens_out,
        tokens_cached: s.tokens_cached,
        tokens_reasoning: s.tokens_reasoning,
        cost: s.cost,
        duration_ms: s.duration_ms,
        attempts: s.attempts,
        request_bytes: s.request_bytes,
        response_bytes: s.response_bytes,
        request_headers: to_headers(s.request_headers),
        response_headers: to_headers(s.response_headers),
    };
    with_filter::<F, _>((), |f| f.on_done(&summary))
}
