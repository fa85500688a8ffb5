//! WebSocket sessions through a provider route (OpenAI Realtime, Gemini Live).
//!
//! The handshake is a request like any other up to the provider: admission, the request-headers
//! hooks (keys, limits, auth) and the request-body hooks, which see the session's opening as
//! `{"model": …}` (the `model` of the query), so a key's model list and budget apply. A filter
//! that reads answers cannot read a session's messages: when one is in the pipeline with
//! `on_error = "closed"` the session is refused rather than let past it unread. The provider's
//! handshake answer goes through the response-headers hooks; a refusal (a 401, a 429) reaches
//! the client as it came. On a 101 both connections are upgraded and messages relayed both ways
//! until either side closes, the session is idle for `server.websocket_idle_timeout_ms`, or the
//! gateway shuts down (both sides then get a close frame). One log entry per session: status
//! 101, its duration, its bytes, and the usage summed from the provider's `response.done`
//! events. At most `server.max_websocket_sessions` are open at once; a peer that stops reading
//! for `SEND_WAIT` ends its session rather than stalling it.

use super::body::BodyTask;
use super::response::{AfterHeaders, BodySource, Outgoing, finish, response_hooks, spawn_tracked};
use super::{BodyIn, Exchange, Flow, error_chain, request_header_hooks};
use crate::config::OnError;
use crate::http::body::GatewayBody;
use crate::http::error::GatewayError;
use crate::providers::usage::{Usage, UsageReader, usage_in};
use crate::runtime::bindings::types::{BodyMode, Header, Hooks, Outcome, RequestHead};
use crate::runtime::host::RequestContext;
use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use http_body_util::Full;
use hyper::header::{CONNECTION, CONTENT_LENGTH, HeaderValue, UPGRADE};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

/// How long the closing handshake may take once either side (or the gateway) began it.
const CLOSE_WAIT: Duration = Duration::from_secs(3);
/// Longest wait for a peer to take one message; one that does not has gone away.
const SEND_WAIT: Duration = Duration::from_secs(10);

/// Built-in filters that judge a session's opening (`{"model": …}`: model lists, budgets,
/// routes) and need nothing more of it.
const SESSION_AWARE: [&str; 3] = ["key-policy", "spend-limit", "provider-routing"];

/// One of the `server.max_websocket_sessions` places, given back when dropped.
struct SessionSlot(std::sync::Arc<crate::runtime::host::Services>);

impl SessionSlot {
    fn take(services: &std::sync::Arc<crate::runtime::host::Services>, max: u64) -> Option<Self> {
        let open = &services.metrics.websocket_sessions;
        if open.fetch_add(1, std::sync::atomic::Ordering::AcqRel) >= max {
            open.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            return None;
        }
        Some(SessionSlot(services.clone()))
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.0
            .metrics
            .websocket_sessions
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Whether the request asks to become a WebSocket (`GET`, `Upgrade: websocket`,
/// `Connection: upgrade`).
pub(super) fn is_upgrade(parts: &hyper::http::request::Parts) -> bool {
    let has = |name: hyper::header::HeaderName, token: &str| {
        parts
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    parts.method == Method::GET && has(UPGRADE, "websocket") && has(CONNECTION, "upgrade")
}

/// The first filter that reads bodies (prompts or answers), cannot read a session's messages,
/// and must not be passed unread (`on_error = "closed"`, no `websocket = "pass"`), if any.
/// The session-aware built-ins read only the opening and are not counted.
fn unreadable_policy(ex: &Exchange) -> Option<&str> {
    ex.gw
        .stages
        .iter()
        .find(|s| {
            let info = &s.filter.info;
            let reads_requests = info.hooks.contains(Hooks::REQUEST_BODY)
                && !matches!(info.request_body, BodyMode::Ignore)
                && !SESSION_AWARE.contains(&&*s.filter.name);
            let reads_answers = info.hooks.contains(Hooks::RESPONSE_BODY)
                && !matches!(info.response_body, BodyMode::Ignore);
            s.on_error == OnError::Closed
                && !s.settings.websocket_pass
                && (reads_requests || reads_answers)
        })
        .map(|s| &*s.filter.name)
}

impl Flow<'_> {
    /// A WebSocket handshake through the pipeline, then the session (see the module).
    pub(super) async fn serve_socket(
        self,
        mut ex: Exchange,
        mut head: RequestHead,
        mut upstream_headers: HeaderMap,
        mut parts: hyper::http::request::Parts,
    ) -> Response<GatewayBody> {
        let n = ex.gw.stages.len();
        let refuse = |status, kind, message: String| {
            Outgoing::from_error(&GatewayError::new(status, kind, message))
        };
        let Some(client_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
            let out = refuse(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "a WebSocket session needs an HTTP/1.1 connection (Upgrade is not available on HTTP/2)".into(),
            );
            return finish(ex, 0, out, Outcome::RespondedLocally).await;
        };
        if let Some(name) = unreadable_policy(&ex) {
            let out = refuse(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "filter '{name}' reads request or answer bodies, which it cannot do inside a WebSocket session, and fails closed: gateway '{}' refuses WebSocket sessions (set websocket = \"pass\" in its table to let sessions pass it unread)",
                    ex.gw.name
                ),
            );
            return finish(ex, 0, out, Outcome::RespondedLocally).await;
        }
        let services = self.env.runtime.services.clone();
        let Some(slot) =
            SessionSlot::take(&services, self.generation.config.max_websocket_sessions)
        else {
            let out = refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!(
                    "{} WebSocket sessions are open, the most this gateway takes (server.max_websocket_sessions); retry shortly",
                    self.generation.config.max_websocket_sessions
                ),
            );
            return finish(ex, 0, out, Outcome::RespondedLocally).await;
        };
        // The model the filters judge is the one the provider gets: one `model` or none.
        let models: Vec<String> = self
            .route
            .query
            .as_deref()
            .map(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .filter(|(k, _)| k == "model")
                    .map(|(_, v)| v.into_owned())
                    .collect()
            })
            .unwrap_or_default();
        if models.len() > 1 {
            let out = refuse(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "model: given more than once in the query".into(),
            );
            return finish(ex, 0, out, Outcome::RespondedLocally).await;
        }
        let model = models.into_iter().next();
        // Filters see that this is a session (hop-by-hop headers are otherwise hidden).
        head.headers.push(Header {
            name: "upgrade".into(),
            value: "websocket".into(),
        });
        if let Err(early) = request_header_hooks(&mut ex, &mut head, &mut upstream_headers).await {
            return early.end(ex).await;
        }
        let opening = match &model {
            Some(m) => serde_json::json!({ "model": m }),
            None => serde_json::json!({}),
        };
        if let Err(early) = self
            .request_body(&mut ex, BodyIn::Ready(Bytes::from(opening.to_string())))
            .await
        {
            return early.end(ex).await;
        }
        ex.request_bytes = 0;
        // A budget holds a request's worst case before it goes upstream; a session has none
        // (it runs until closed), so it cannot be held against one.
        if RequestContext::holds_spend(&ex.context) {
            let out = refuse(
                StatusCode::FORBIDDEN,
                "budget_unbounded",
                "a WebSocket session's cost has no upper bound, so it cannot be held against the budget that applies to this request; use a key without a dollar budget for realtime sessions".into(),
            );
            return finish(ex, n, out, Outcome::RespondedLocally).await;
        }
        if let Some(choice) = RequestContext::take_route(&ex.context) {
            let out = Outgoing::from_error(&GatewayError::bad_gateway(format!(
                "a filter routed a WebSocket session to '{}'; a session goes to the provider its URL names",
                choice.provider
            )));
            return finish(ex, n, out, Outcome::RespondedLocally).await;
        }
        // What the provider gets: the filters' headers, its key, and the upgrade. Compression
        // is not negotiated: the gateway reads the messages it relays.
        upstream_headers.remove("sec-websocket-extensions");
        let provider = self.admitted.provider.clone();
        super::provider_headers(
            &mut upstream_headers,
            &provider,
            self.admitted.stored_key.as_ref(),
        );
        upstream_headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        upstream_headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        let uri =
            match provider.upstream_uri(&self.route.account, &head.path, head.query.as_deref()) {
                Ok(u) => u,
                Err(m) => {
                    let out = Outgoing::from_error(&GatewayError::bad_request(m));
                    return finish(ex, n, out, Outcome::RespondedLocally).await;
                }
            };
        let client = match crate::http::upstream::socket_client(provider.ca_file.as_deref()) {
            Ok(c) => c,
            Err(e) => {
                let out = Outgoing::from_error(&GatewayError::bad_gateway(format!(
                    "providers.{}.ca_file: {e}",
                    provider.name
                )));
                return finish(ex, n, out, Outcome::UpstreamError).await;
            }
        };
        let mut req = Request::new(Full::new(Bytes::new()));
        *req.uri_mut() = uri;
        *req.headers_mut() = upstream_headers;
        ex.attempts = 1;
        let metrics = &self.env.runtime.services.metrics;
        metrics
            .upstream_attempts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let timeout_ms = self.admitted.timeout_ms;
        let sent =
            tokio::time::timeout(Duration::from_millis(timeout_ms), client.request(req)).await;
        let (mut out, upstream_upgrade, upstream_error) = match sent {
            Ok(Ok(resp)) => {
                let (mut parts, incoming) = resp.into_parts();
                let upgrade = parts.extensions.remove::<OnUpgrade>();
                super::headers::strip_hop_by_hop(&mut parts.headers);
                let out = Outgoing {
                    status: parts.status,
                    upstream_len: parts.headers.get(CONTENT_LENGTH).cloned(),
                    headers: parts.headers,
                    body: BodySource::Upstream(incoming),
                    local: false,
                };
                (out, upgrade, None)
            }
            Ok(Err(e)) => {
                let msg = format!(
                    "provider '{}' unreachable: {}",
                    provider.name,
                    error_chain(&e)
                );
                (
                    Outgoing::from_error(&GatewayError::bad_gateway(msg.clone())),
                    None,
                    Some(msg),
                )
            }
            Err(_) => {
                let msg = format!(
                    "provider '{}' sent no handshake answer within {timeout_ms} ms (cf-aig-request-timeout / server.request_timeout_ms)",
                    provider.name
                );
                (
                    Outgoing::from_error(&GatewayError::timeout(msg.clone())),
                    None,
                    Some(msg),
                )
            }
        };
        if upstream_error.is_some() {
            metrics
                .upstream_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let failed_upstream = upstream_error.is_some();
        let body_upto = match response_hooks(&mut ex, n, &mut out, 1, upstream_error, false).await {
            Ok(AfterHeaders::Deliver { body_upto }) => body_upto,
            // Retries were not allowed: a filter that asks anyway gets the answer delivered.
            Ok(AfterHeaders::Retry(_)) => n,
            Err(e) => return finish(ex, 0, Outgoing::from_error(&e), Outcome::FilterFailed).await,
        };
        let upgraded = out.status == StatusCode::SWITCHING_PROTOCOLS && !out.local;
        let Some(upstream_upgrade) = upstream_upgrade.filter(|_| upgraded) else {
            let outcome = match (failed_upstream, out.local) {
                (true, _) => Outcome::UpstreamError,
                (_, true) => Outcome::RespondedLocally,
                _ => Outcome::Completed,
            };
            return finish(ex, body_upto, out, outcome).await;
        };
        ex.model = model;
        ex.answer_status = 101;
        let mut response = Response::new(GatewayBody::full(Bytes::new()));
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let mut headers = out.headers;
        headers.remove(CONTENT_LENGTH);
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(v) = HeaderValue::from_str(&ex.request_id) {
            headers.insert("cf-aig-log-id", v);
        }
        *response.headers_mut() = headers;
        // Instances that have no done hook are not held for the session's life.
        let idle_stages: Vec<usize> = (0..n).filter(|&i| !ex.wants(i, Hooks::DONE)).collect();
        let spare: Vec<_> = idle_stages
            .into_iter()
            .filter_map(|i| ex.release(i))
            .collect();
        tokio::spawn(Exchange::recycle(ex.gw.clone(), spare));
        let config = &self.generation.config;
        let limits = Limits {
            idle: Duration::from_millis(config.websocket_idle_timeout_ms),
            max_message: config.max_body_bytes,
        };
        let span = ex.span.clone();
        spawn_tracked(
            services,
            span,
            session(ex, client_upgrade, upstream_upgrade, limits, slot),
        );
        response
    }
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// The client closed it (or went away).
    Client,
    /// The provider closed it (or went away).
    Provider,
    /// The provider's connection broke, or it stopped taking messages.
    ProviderFailed,
    /// Nothing passed either way for the idle timeout.
    Idle,
    /// The gateway is shutting down.
    Shutdown,
}

impl Ended {
    fn name(self) -> &'static str {
        match self {
            Ended::Client => "client",
            Ended::Provider => "provider",
            Ended::ProviderFailed => "provider_error",
            Ended::Idle => "idle_timeout",
            Ended::Shutdown => "shutdown",
        }
    }
}

/// What passed through a session.
#[derive(Debug, Default)]
struct Tally {
    to_provider: u64,
    to_client: u64,
    bytes_in: u64,
    bytes_out: u64,
    usage: Usage,
    /// The model a Gemini Live session set up in its first message.
    model: Option<String>,
}

/// Sums `add` into `total` (a count either has is kept).
fn add_usage(total: &mut Usage, add: &Usage) {
    fn sum(a: &mut Option<u32>, b: Option<u32>) {
        if let Some(b) = b {
            *a = Some(a.unwrap_or(0).saturating_add(b));
        }
    }
    sum(&mut total.tokens_in, add.tokens_in);
    sum(&mut total.tokens_out, add.tokens_out);
    sum(&mut total.tokens_cached, add.tokens_cached);
    sum(&mut total.tokens_reasoning, add.tokens_reasoning);
    sum(&mut total.tokens_cache_write, add.tokens_cache_write);
    sum(&mut total.tokens_image_in, add.tokens_image_in);
    sum(&mut total.tokens_audio, add.tokens_audio);
}

/// The usage a provider's message reports: OpenAI Realtime's `response.done`, or a Gemini Live
/// server message's `usageMetadata` (one per turn).
fn message_usage(text: &[u8]) -> Option<Usage> {
    let has = |needle: &[u8]| text.windows(needle.len()).any(|w| w == needle);
    if has(b"\"response.done\"") {
        let v: serde_json::Value = serde_json::from_slice(text).ok()?;
        if v.get("type")?.as_str()? != "response.done" {
            return None;
        }
        return Some(usage_in(v.pointer("/response/usage")?));
    }
    if has(b"\"usageMetadata\"") {
        let v: serde_json::Value = serde_json::from_slice(text).ok()?;
        return Some(crate::providers::usage::gemini_usage(
            v.get("usageMetadata")?,
        ));
    }
    None
}

/// The model a Gemini Live session's first message sets up (`{"setup": {"model":
/// "models/…"}}`), without its `models/` prefix.
fn setup_model(text: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(text).ok()?;
    let model = v.pointer("/setup/model")?.as_str()?;
    let model = model.rsplit_once("/models/").map_or(model, |(_, m)| m);
    Some(model.strip_prefix("models/").unwrap_or(model).to_string())
}

/// The payload of a data message (Gemini Live sends its JSON in binary frames).
fn payload(msg: &Message) -> Option<&[u8]> {
    match msg {
        Message::Text(t) => Some(t.as_bytes()),
        Message::Binary(b) => Some(b),
        _ => None,
    }
}

/// A session's limits.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// Longest silence (no data message either way).
    idle: Duration,
    /// Largest message or frame.
    max_message: usize,
}

async fn session(
    mut ex: Exchange,
    client: OnUpgrade,
    upstream: OnUpgrade,
    limits: Limits,
    slot: SessionSlot,
) {
    let (client, upstream) = tokio::join!(client, upstream);
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(limits.max_message))
        .max_frame_size(Some(limits.max_message));
    let socket = |io: Upgraded, role: Role| {
        WebSocketStream::from_raw_socket(TokioIo::new(io), role, Some(config))
    };
    let (outcome, ended, mut tally) = match (client, upstream) {
        (Ok(c), Ok(u)) => {
            let client = socket(c, Role::Server).await;
            let upstream = socket(u, Role::Client).await;
            let closing = ex.runtime.services.closing.subscribe();
            let (ended, tally) = relay(client, upstream, limits.idle, closing).await;
            let outcome = match ended {
                Ended::ProviderFailed => Outcome::UpstreamError,
                _ => Outcome::Completed,
            };
            (outcome, Some(ended), tally)
        }
        (Err(e), _) => {
            tracing::debug!("client upgrade failed: {e}");
            (Outcome::ClientAborted, None, Tally::default())
        }
        (Ok(c), Err(e)) => {
            tracing::warn!("provider upgrade failed: {e}");
            let mut client = socket(c, Role::Server).await;
            let frame = close(CloseCode::Error, "the provider's connection failed");
            let _ = tokio::time::timeout(CLOSE_WAIT, client.send(frame)).await;
            (Outcome::UpstreamError, None, Tally::default())
        }
    };
    drop(slot);
    if let Some(ended) = ended {
        RequestContext::annotate(&ex.context, "websocket_closed_by", ended.name().into());
    }
    RequestContext::annotate(
        &ex.context,
        "websocket_messages",
        format!(
            "{} to provider, {} to client",
            tally.to_provider, tally.to_client
        ),
    );
    ex.request_bytes = tally.bytes_in;
    if ex.model.is_none() {
        ex.model = tally.model.take();
    }
    ex.armed = false;
    let mut task = BodyTask::abandoned(ex);
    task.status = 101;
    task.outcome = outcome;
    task.streamed = true;
    task.response_bytes = tally.bytes_out;
    task.usage = UsageReader::Known(tally.usage);
    task.done().await;
}

type Socket = WebSocketStream<TokioIo<Upgraded>>;

fn close(code: CloseCode, why: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: why.to_string().into(),
    }))
}

/// One side of a session: where its messages go, and whether it still takes them.
struct Side {
    sink: futures_util::stream::SplitSink<Socket, Message>,
    open: bool,
}

impl Side {
    /// Sends within `wait`; a side that does not take the message in time, or fails, is gone.
    async fn send(&mut self, msg: Message, wait: Duration) -> bool {
        if !self.open {
            return false;
        }
        let sent = matches!(
            tokio::time::timeout(wait, self.sink.send(msg)).await,
            Ok(Ok(()))
        );
        if !sent {
            self.open = false;
        }
        sent
    }
}

/// Relays messages both ways until the session ends; pings are answered on each side by the
/// library and not relayed. Every send is bounded: a peer that stops reading ends the session,
/// and once it is ending, the closing handshake gets `CLOSE_WAIT`.
async fn relay(
    client: Socket,
    upstream: Socket,
    idle: Duration,
    mut closing: tokio::sync::watch::Receiver<bool>,
) -> (Ended, Tally) {
    let (to_client, mut from_client) = client.split();
    let (to_provider, mut from_provider) = upstream.split();
    let mut client = Side {
        sink: to_client,
        open: true,
    };
    let mut provider = Side {
        sink: to_provider,
        open: true,
    };
    let (mut reading_client, mut reading_provider) = (true, true);
    let mut tally = Tally::default();
    let mut ended: Option<Ended> = None;
    let mut last = tokio::time::Instant::now();
    let mut close_by: Option<tokio::time::Instant> = None;
    // Polled only until a session end is known (then never again).
    let mut shutdown = std::pin::pin!(async move {
        let _ = closing.wait_for(|c| *c).await;
    });
    loop {
        if ended.is_some() && close_by.is_none() {
            close_by = Some(tokio::time::Instant::now() + CLOSE_WAIT);
        }
        if !reading_client && !reading_provider {
            break;
        }
        let deadline = close_by.unwrap_or(last + idle);
        tokio::select! {
            m = from_client.next(), if reading_client => match m {
                Some(Ok(Message::Close(frame))) => {
                    ended.get_or_insert(Ended::Client);
                    provider.send(Message::Close(frame), CLOSE_WAIT).await;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(msg)) => {
                    last = tokio::time::Instant::now();
                    if tally.to_provider == 0
                        && let Some(p) = payload(&msg)
                    {
                        tally.model = setup_model(p);
                    }
                    tally.to_provider += 1;
                    tally.bytes_in += msg.len() as u64;
                    if !provider.send(msg, SEND_WAIT).await && ended.is_none() {
                        ended = Some(Ended::ProviderFailed);
                        client.send(close(CloseCode::Away, "provider went away"), CLOSE_WAIT).await;
                    }
                }
                Some(Err(_)) | None => {
                    reading_client = false;
                    client.open = false;
                    if ended.is_none() {
                        ended = Some(Ended::Client);
                        provider.send(close(CloseCode::Away, "client went away"), CLOSE_WAIT).await;
                    }
                }
            },
            m = from_provider.next(), if reading_provider => match m {
                Some(Ok(Message::Close(frame))) => {
                    ended.get_or_insert(Ended::Provider);
                    client.send(Message::Close(frame), CLOSE_WAIT).await;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(msg)) => {
                    last = tokio::time::Instant::now();
                    tally.to_client += 1;
                    tally.bytes_out += msg.len() as u64;
                    // Counted whether or not the client takes it: the provider bills it.
                    if let Some(u) = payload(&msg).and_then(message_usage) {
                        add_usage(&mut tally.usage, &u);
                    }
                    if !client.send(msg, SEND_WAIT).await && ended.is_none() {
                        ended = Some(Ended::Client);
                        provider.send(close(CloseCode::Away, "client went away"), CLOSE_WAIT).await;
                    }
                }
                Some(Err(_)) | None => {
                    reading_provider = false;
                    provider.open = false;
                    if ended.is_none() {
                        ended = Some(if m.is_some() { Ended::ProviderFailed } else { Ended::Provider });
                        client.send(close(CloseCode::Away, "provider went away"), CLOSE_WAIT).await;
                    }
                }
            },
            _ = &mut shutdown, if ended.is_none() => {
                ended = Some(Ended::Shutdown);
                client.send(close(CloseCode::Away, "gateway shutting down"), CLOSE_WAIT).await;
                provider.send(close(CloseCode::Away, "gateway shutting down"), CLOSE_WAIT).await;
            }
            _ = tokio::time::sleep_until(deadline) => {
                if close_by.is_some() {
                    break;
                }
                ended = Some(Ended::Idle);
                let why = format!("idle for {} ms (server.websocket_idle_timeout_ms)", idle.as_millis());
                client.send(close(CloseCode::Normal, &why), CLOSE_WAIT).await;
                provider.send(close(CloseCode::Normal, &why), CLOSE_WAIT).await;
            }
        }
    }
    let _ = tokio::time::timeout(CLOSE_WAIT, client.sink.close()).await;
    let _ = tokio::time::timeout(CLOSE_WAIT, provider.sink.close()).await;
    (ended.unwrap_or(Ended::Client), tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_read_from_response_done_only() {
        let done = r#"{"type":"response.done","response":{"usage":{"total_tokens":30,"input_tokens":20,"output_tokens":10,"input_token_details":{"cached_tokens":4,"text_tokens":20,"audio_tokens":0},"output_token_details":{"text_tokens":10,"audio_tokens":0}}}}"#;
        let u = message_usage(done.as_bytes()).unwrap();
        assert_eq!(
            (u.tokens_in, u.tokens_out, u.tokens_cached, u.tokens_audio),
            (Some(20), Some(10), Some(4), Some(0))
        );
        assert!(message_usage(br#"{"type":"response.created","note":"response.done"}"#).is_none());
        assert!(message_usage(br#"{"type":"response.output_text.delta","delta":"hi"}"#).is_none());
        let mut total = Usage::default();
        add_usage(&mut total, &u);
        add_usage(&mut total, &u);
        assert_eq!((total.tokens_in, total.tokens_out), (Some(40), Some(20)));
        assert_eq!(total.tokens_reasoning, None);
    }

    #[test]
    fn gemini_live_usage_and_model_are_read() {
        let turn = br#"{"serverContent":{"turnComplete":true},"usageMetadata":{"promptTokenCount":12,"responseTokenCount":5,"thoughtsTokenCount":2,"totalTokenCount":19,"promptTokensDetails":[{"modality":"TEXT","tokenCount":12}],"responseTokensDetails":[{"modality":"TEXT","tokenCount":5}]}}"#;
        let u = message_usage(turn).unwrap();
        assert_eq!(
            (
                u.tokens_in,
                u.tokens_out,
                u.tokens_reasoning,
                u.tokens_audio
            ),
            (Some(12), Some(7), Some(2), None)
        );
        let spoken = br#"{"usageMetadata":{"promptTokenCount":30,"responseTokenCount":40,"responseTokensDetails":[{"modality":"AUDIO","tokenCount":40}]}}"#;
        assert_eq!(message_usage(spoken).unwrap().tokens_audio, Some(40));
        assert!(
            message_usage(
                br#"{"serverContent":{"modelTurn":{"parts":[{"text":"usageMetadata"}]}}}"#
            )
            .is_none()
        );
        assert_eq!(
            setup_model(br#"{"setup":{"model":"models/gemini-live-2.5-flash"}}"#).as_deref(),
            Some("gemini-live-2.5-flash")
        );
        assert_eq!(
            setup_model(br#"{"setup":{"model":"projects/p/locations/l/publishers/google/models/gemini-2.0-flash"}}"#).as_deref(),
            Some("gemini-2.0-flash")
        );
        assert_eq!(setup_model(br#"{"clientContent":{}}"#), None);
    }
}
