//! The bridge between the generated bindings (`aigw:filter@0.2.0`) and a `Filter`:
//! converts WIT values to SDK types and back, lends the hook's header sets and body to
//! `crate::lent` for the length of the call, and keeps the one filter value of this
//! instance (built by `configure`; a stateful filter's is rebuilt between requests).
//! Used by `export_filter!`.

use crate::Filter;
use crate::bindings::services::types as wit;
use crate::bindings::v2;
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

fn from_headers(list: Vec<Header>) -> Vec<wit::Header> {
    list.into_iter()
        .map(|h| wit::Header {
            name: h.name,
            value: h.value,
        })
        .collect()
}

/// Makes a filter's header edits on the lent set. The host refuses a bad name or value (or
/// a header it keeps its own); as with 0.1.0, where it refused the returned edits, that
/// fails the filter's call.
fn edit(fields: &v2::Fields, e: HeaderEdits) {
    for name in &e.remove {
        if let Err(m) = fields.remove(name) {
            refuse(&m);
        }
    }
    for h in &e.set {
        if let Err(m) = fields.set(&h.name, &h.value) {
            refuse(&m);
        }
    }
}

#[allow(
    clippy::panic,
    reason = "a refused edit fails the call, as a refused answer did in 0.1.0"
)]
fn refuse(message: &str) -> ! {
    panic!("header edit refused by the host: {message}")
}

fn local(r: LocalResponse) -> wit::LocalResponse {
    wit::LocalResponse {
        status: r.status,
        headers: from_headers(r.headers),
        body: r.body,
    }
}

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
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
            crate::bindings::services::telemetry::report_panic(&panic_text(info));
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

pub fn describe<F: Filter>() -> v2::FilterInfo {
    install_panic_hook();
    let info = F::describe();
    crate::bindings::services::manifest::declare_on_error(match info.on_error {
        OnError::Open => crate::bindings::services::manifest::FailureMode::Open,
        OnError::Closed => crate::bindings::services::manifest::FailureMode::Closed,
    });
    let mut hooks = v2::Hooks::empty();
    if info.hooks.request_headers {
        hooks |= v2::Hooks::REQUEST_HEADERS;
    }
    if info.hooks.request_body {
        hooks |= v2::Hooks::REQUEST_BODY;
    }
    if info.hooks.response_headers {
        hooks |= v2::Hooks::RESPONSE_HEADERS;
    }
    if info.hooks.response_body {
        hooks |= v2::Hooks::RESPONSE_BODY;
    }
    if info.hooks.done {
        hooks |= v2::Hooks::DONE;
    }
    v2::FilterInfo {
        hooks,
        request_body: mode(info.request_body),
        response_body: mode(info.response_body),
        stateless: info.stateless,
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

pub fn on_request_headers<F: Filter>(
    request: v2::RequestHead,
    headers: &v2::Fields,
) -> v2::Decision {
    crate::lent::lend([Some(headers), None], None, |call| {
        let req = Request {
            request_id: request.request_id,
            method: request.method,
            account: request.account,
            gateway: request.gateway,
            provider: request.provider,
            path: request.path,
            query: request.query,
            headers: Headers::lent(call, 0),
            client_ip: request.client_ip,
        };
        match with_filter::<F, _>(Decision::proceed(), |f| f.on_request_headers(&req)) {
            Decision::Continue(e) => {
                edit(headers, e);
                v2::Decision::Continue
            }
            Decision::Respond(r) => v2::Decision::Respond(local(r)),
        }
    })
}

pub fn on_request_body<F: Filter>(body: &v2::Body) -> v2::BodyDecision {
    let bytes = body.read();
    crate::lent::lend([None, None], Some((body, &bytes)), |_| {
        match with_filter::<F, _>(BodyDecision::Continue, |f| f.on_request_body(&bytes)) {
            BodyDecision::Continue => v2::BodyDecision::Continue,
            BodyDecision::Replace(b) => v2::BodyDecision::Replace(b),
            BodyDecision::Respond(r) => v2::BodyDecision::Respond(local(r)),
        }
    })
}

pub fn on_response_headers<F: Filter>(
    response: v2::ResponseHead,
    headers: &v2::Fields,
) -> v2::ResponseDecision {
    crate::lent::lend([Some(headers), None], None, |call| {
        let resp = Response {
            status: response.status,
            headers: Headers::lent(call, 0),
            attempt: response.attempt,
            upstream_error: response.upstream_error,
            local: response.local,
        };
        match with_filter::<F, _>(ResponseDecision::proceed(), |f| {
            f.on_response_headers(&resp)
        }) {
            ResponseDecision::Continue(e) => {
                edit(headers, e);
                v2::ResponseDecision::Continue
            }
            ResponseDecision::Respond(r) => v2::ResponseDecision::Respond(local(r)),
            ResponseDecision::Retry { delay_ms } => {
                v2::ResponseDecision::Retry(wit::RetrySpec { delay_ms })
            }
        }
    })
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

pub fn on_done<F: Filter>(
    s: v2::Summary,
    request_headers: &v2::Fields,
    response_headers: &v2::Fields,
) {
    crate::lent::lend(
        [Some(request_headers), Some(response_headers)],
        None,
        |call| {
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
                request_headers: Headers::lent(call, 0),
                response_headers: Headers::lent(call, 1),
            };
            with_filter::<F, _>((), |f| f.on_done(&summary))
        },
    )
}
