//! The response side: what goes back to the client (upstream or a filter's
//! own answer), the response-headers hooks in reverse order, and handing the
//! body to its streaming task.

use super::body::BodyTask;
use super::exchange::Exchange;
use super::headers;
use crate::http::body::{BodyError, GatewayBody};
use crate::http::error::GatewayError;
use crate::providers::usage::UsageReader;
use crate::runtime::bindings::types::{
    BodyMode, Hooks, LocalResponse, Outcome, ResponseDecision, ResponseHead,
};
use crate::runtime::host::RequestContext;
use crate::runtime::instance::{Answer, Hook};
use bytes::Bytes;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{HeaderMap, Response, StatusCode};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::mpsc;

/// A response on its way to the client.
pub(super) struct Outgoing {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    /// The upstream's own Content-Length, restored after filters ran when the
    /// body passes through unchanged.
    pub(super) upstream_len: Option<HeaderValue>,
    pub(super) body: BodySource,
    pub(super) local: bool,
}

pub(super) enum BodySource {
    Upstream(hyper::body::Incoming),
    Bytes(Bytes),
}

impl Outgoing {
    pub(super) fn from_error(e: &GatewayError) -> Self {
        Outgoing {
            status: e.status,
            headers: e.headers(),
            upstream_len: None,
            body: BodySource::Bytes(e.body()),
            local: true,
        }
    }

    pub(super) fn from_local(local: LocalResponse) -> Result<Self, String> {
        let status = StatusCode::from_u16(local.status)
            .map_err(|_| format!("local response has invalid status {}", local.status))?;
        headers::check_size(&local.headers).map_err(|m| format!("local response: {m}"))?;
        Ok(Outgoing {
            status,
            headers: headers::map_from(&local.headers),
            upstream_len: None,
            body: BodySource::Bytes(Bytes::from(local.body)),
            local: true,
        })
    }
}

/// Checks a filter's early answer. `Ok(None)`: it was invalid and the
/// filter's `on_error = "open"` skips it, so the request goes on.
pub(super) fn local_answer(
    ex: &mut Exchange,
    k: usize,
    local: LocalResponse,
) -> Result<Option<Outgoing>, GatewayError> {
    match Outgoing::from_local(local) {
        Ok(o) => Ok(Some(o)),
        Err(m) => {
            let err = ex.bad_answer(k, "respond", m);
            ex.fail::<()>(k, err).map(|_| None)
        }
    }
}

/// A filter at stage `k` answered: filters before it see the response.
pub(super) async fn respond_locally(
    mut ex: Exchange,
    k: usize,
    mut out: Outgoing,
) -> Response<GatewayBody> {
    ex.runtime
        .services
        .metrics
        .local_responses
        .fetch_add(1, Ordering::Relaxed);
    match response_hooks(&mut ex, k, &mut out, 0, None, false).await {
        Ok(AfterHeaders::Deliver { body_upto }) => {
            finish(ex, body_upto, out, Outcome::RespondedLocally).await
        }
        Ok(AfterHeaders::Retry(_)) => finish(ex, k, out, Outcome::RespondedLocally).await,
        Err(e) => finish(ex, 0, Outgoing::from_error(&e), Outcome::FilterFailed).await,
    }
}

/// What the response-headers hooks decided.
pub(super) enum AfterHeaders {
    /// Send the request again after this many ms.
    Retry(u32),
    /// Deliver the response; body hooks run for stages `0..body_upto` (a filter
    /// that replaced the response is the last one: filters after it never see
    /// a body they did not get from upstream).
    Deliver { body_upto: usize },
}

/// Response-headers hooks of stages `0..upto`, in reverse order.
pub(super) async fn response_hooks(
    ex: &mut Exchange,
    upto: usize,
    out: &mut Outgoing,
    attempt: u32,
    upstream_error: Option<String>,
    allow_retry: bool,
) -> Result<AfterHeaders, GatewayError> {
    let mut body_upto = upto;
    let mut head = ResponseHead {
        status: out.status.as_u16(),
        headers: headers::view(&out.headers),
        attempt,
        upstream_error,
        local: out.local,
    };
    for i in (0..upto).rev() {
        if !ex.wants(i, Hooks::RESPONSE_HEADERS) {
            continue;
        }
        match ex.call(i, Hook::ResponseHeaders(&mut head)).await? {
            Some(Answer::Response(ResponseDecision::Continue(edits))) => {
                if let Err(m) = headers::apply(&edits, &mut out.headers, &mut head.headers) {
                    let err = ex.bad_answer(i, "on-response-headers", m);
                    ex.fail::<()>(i, err)?;
                }
            }
            Some(Answer::Response(ResponseDecision::Respond(local))) => {
                match Outgoing::from_local(local) {
                    Ok(o) => {
                        *out = o;
                        body_upto = i;
                        head = ResponseHead {
                            status: out.status.as_u16(),
                            headers: headers::view(&out.headers),
                            attempt,
                            upstream_error: None,
                            local: true,
                        };
                    }
                    Err(m) => {
                        let err = ex.bad_answer(i, "on-response-headers", m);
                        ex.fail::<()>(i, err)?;
                    }
                }
            }
            Some(Answer::Response(ResponseDecision::Retry(spec)))
                if allow_retry && (!out.local || head.upstream_error.is_some()) =>
            {
                return Ok(AfterHeaders::Retry(spec.delay_ms));
            }
            _ => {}
        }
    }
    Ok(AfterHeaders::Deliver { body_upto })
}

/// Responses up to this size, with a known length and not an event stream,
/// are read whole and run through the body hooks before the head is sent:
/// the client gets head and body in one write with their true length, and no
/// per-request channel or streaming task is needed. Larger, unknown-length
/// and SSE bodies stream through a task as they arrive.
const INLINE_MAX_BYTES: usize = 1 << 20;

/// The response header naming the request's log entry.
const LOG_ID: &str = "cf-aig-log-id";

/// Sends the response to the client: small bodies whole (see
/// `INLINE_MAX_BYTES`), others streamed by a task, through the body hooks of
/// stages `0..upto`; then the done hooks run in the background.
pub(super) async fn finish(
    ex: Exchange,
    upto: usize,
    out: Outgoing,
    outcome: Outcome,
) -> Response<GatewayBody> {
    let body_stages: Vec<usize> = (0..upto)
        .rev()
        .filter(|&i| {
            ex.wants(i, Hooks::RESPONSE_BODY)
                && !matches!(ex.gw.stages[i].filter.info.response_body, BodyMode::Ignore)
        })
        .collect();
    let mut ex = ex;
    // Logged if the client leaves while a small body is still being read.
    ex.answer_status = out.status.as_u16();
    // Instances no later hook needs are released now (and recycled as soon
    // as the response is on its way), not at stream end.
    let mut spare = Vec::new();
    for i in 0..ex.slots.len() {
        if !body_stages.contains(&i)
            && !ex.wants(i, Hooks::DONE)
            && let Some(released) = ex.release(i)
        {
            spare.push(released);
        }
    }
    let mut headers = out.headers;
    // Every answer of the pipeline names its log entry, also a filter's own refusal and a
    // gateway error, so a client can match any response to its log (the request id is the
    // log id). Set by the host over whatever an upstream (another gateway) or a filter sent.
    if let Ok(v) = HeaderValue::from_str(&ex.request_id) {
        headers.insert(LOG_ID, v);
    }
    // Framing belongs to the host: whatever filters set, the client gets the
    // true length (or chunked / h2 framing when body filters may change it).
    headers::strip_hop_by_hop(&mut headers);
    headers.remove(CONTENT_LENGTH);
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let streamed = content_type
        .as_deref()
        .is_some_and(|c| c.starts_with("text/event-stream"));
    let rewrites_stream = ex.strip_usage_chunk && streamed;
    let inline = !streamed
        && ex.method != "HEAD"
        && match (&out.body, &out.upstream_len) {
            (BodySource::Bytes(_), _) => true,
            (BodySource::Upstream(_), Some(len)) => len
                .to_str()
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .is_some_and(|n| n <= INLINE_MAX_BYTES),
            (BodySource::Upstream(_), None) => false,
        };
    if !inline && body_stages.is_empty() && !rewrites_stream {
        match (&out.body, out.upstream_len) {
            (BodySource::Bytes(b), _) => {
                headers.insert(CONTENT_LENGTH, HeaderValue::from(b.len()));
            }
            (BodySource::Upstream(_), Some(len)) => {
                headers.insert(CONTENT_LENGTH, len);
            }
            (BodySource::Upstream(_), None) => {}
        }
    }
    let mut status = out.status;
    let usage_filter =
        (streamed && ex.strip_usage_chunk).then(crate::providers::usage::UsageChunkFilter::default);
    let mut task = BodyTask {
        usage_filter,
        stream_end: streamed.then(crate::providers::stream_end::StreamEnd::default),
        client_done: false,
        taken: None,
        sent_chunks: 0,
        marker_chunk: None,
        tail_started: None,
        ex,
        body_stages,
        buffers: Vec::new(),
        usage: UsageReader::for_content_type(content_type.as_deref()),
        streamed,
        binary_stream: content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("application/vnd.amazon.eventstream")),
        status: status.as_u16(),
        outcome,
        response_bytes: 0,
        response_headers: Vec::new(),
        cached: headers
            .get("cf-aig-cache-status")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"hit")),
    };
    let wants_done = task.ex.gw.hooks.contains(Hooks::DONE);
    let summary_view = |headers: &HeaderMap| {
        if wants_done {
            headers::redacted_view(headers)
        } else {
            Vec::new()
        }
    };
    let services = task.ex.runtime.services.clone();
    let body = if inline {
        // Read in the handler: if the client leaves meanwhile, the handler
        // and the still armed exchange are dropped, which ends the request.
        // The head waits for the body: a body hook may still change its status.
        RequestContext::hold_head(&task.ex.context, true);
        let collected = task.collect(out.body).await;
        if let Some(head) = RequestContext::hold_head(&task.ex.context, false) {
            if let Some(s) = head.status.and_then(|s| StatusCode::from_u16(s).ok()) {
                status = s;
                task.status = s.as_u16();
                task.ex.answer_status = task.status;
            }
            for edits in &head.edits {
                // Checked when the filter made them.
                let _ = headers::apply(edits, &mut headers, &mut Vec::new());
            }
            // Framing and the log id stay the host's.
            headers::strip_hop_by_hop(&mut headers);
            headers.remove(CONTENT_LENGTH);
            if let Ok(v) = HeaderValue::from_str(&task.ex.request_id) {
                headers.insert(LOG_ID, v);
            }
        }
        task.ex.armed = false;
        let body = match collected {
            Ok(whole) => {
                headers.insert(CONTENT_LENGTH, HeaderValue::from(whole.len()));
                GatewayBody::full(whole)
            }
            Err((sent, reason)) => {
                // The head is not sent yet, but the status may already say
                // success: the client learns of the break as an aborted body.
                let (tx, rx) = mpsc::channel::<Result<Bytes, BodyError>>(2);
                if !sent.is_empty() {
                    let _ = tx.try_send(Ok(sent));
                }
                let _ = tx.try_send(Err(reason.into()));
                GatewayBody::Channel(rx)
            }
        };
        task.response_headers = summary_view(&headers);
        let span = task.ex.span.clone();
        spawn_tracked(services, span, async move {
            Exchange::recycle(task.ex.gw.clone(), spare).await;
            task.done().await
        });
        body
    } else {
        task.ex.armed = false;
        task.response_headers = summary_view(&headers);
        let (tx, rx) = mpsc::channel::<Result<Bytes, BodyError>>(16);
        let taken = Arc::new(std::sync::atomic::AtomicU64::new(0));
        task.taken = Some(taken.clone());
        let span = task.ex.span.clone();
        spawn_tracked(services, span, async move {
            Exchange::recycle(task.ex.gw.clone(), spare).await;
            task.run(out.body, tx).await
        });
        GatewayBody::Counted(rx, taken)
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

/// Runs a request's background work inside the request's span, counted until it ends so that
/// shutdown waits for its done hooks (log entries).
pub(super) fn spawn_tracked(
    services: Arc<crate::runtime::host::Services>,
    span: tracing::Span,
    work: impl std::future::Future<Output = ()> + Send + 'static,
) {
    struct InFlight(Arc<crate::runtime::host::Services>);
    impl Drop for InFlight {
        fn drop(&mut self) {
            self.0.metrics.body_tasks.fetch_sub(1, Ordering::AcqRel);
        }
    }
    services.metrics.body_tasks.fetch_add(1, Ordering::AcqRel);
    let in_flight = InFlight(services);
    // Boxed once here: the work holds the request's whole state, and the
    // task would otherwise move it by value (kilobytes) as it is spawned.
    let work = Box::pin(tracing::Instrument::instrument(work, span));
    tokio::spawn(async move {
        work.await;
        drop(in_flight);
    });
}
