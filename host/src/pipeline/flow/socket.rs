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
//! events.

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
use std::time::{Duration, Instant};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

/// How long the closing handshake may take once either side (or the gateway) began it.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

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

/// The first filter that reads answers and must not be passed unread, if any.
fn unreadable_policy(ex: &Exchange) -> Option<&str> {
    ex.gw
        .stages
        .iter()
        .find(|s| {
            s.on_error == OnError::Closed
                && s.filter.info.hooks.contains(Hooks::RESPONSE_BODY)
                && !matches!(s.filter.info.response_body, BodyMode::Ignore)
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
                    "filter '{name}' reads answers, which it cannot do inside a WebSocket session, and its on_error is \"closed\": gateway '{}' refuses WebSocket sessions (set the filter's on_error = \"open\" to let sessions pass it unread)",
                    ex.gw.name
                ),
            );
            return finish(ex, 0, out, Outcome::RespondedLocally).await;
        }
        let model = self.route.query.as_deref().and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "model")
                .map(|(_, v)| v.into_owned())
        });
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
        super::exchange::Exchange::recycle(ex.gw.clone(), spare).await;
        let services = self.env.runtime.services.clone();
        let idle = Duration::from_millis(self.generation.config.websocket_idle_timeout_ms);
        let span = ex.span.clone();
        spawn_tracked(
            services,
            span,
            session(ex, client_upgrade, upstream_upgrade, idle),
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

/// The usage a provider's message reports: OpenAI Realtime's `response.done`.
fn message_usage(text: &str) -> Option<Usage> {
    if !text.contains("\"response.done\"") {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    if v.get("type")?.as_str()? != "response.done" {
        return None;
    }
    Some(usage_in(v.pointer("/response/usage")?))
}

async fn session(mut ex: Exchange, client: OnUpgrade, upstream: OnUpgrade, idle: Duration) {
    let (client, upstream) = tokio::join!(client, upstream);
    let (outcome, ended, tally) = match (client, upstream) {
        (Ok(c), Ok(u)) => {
            let closing = ex.runtime.services.closing.subscribe();
            let (ended, tally) = relay(c, u, idle, closing).await;
            (Outcome::Completed, Some(ended), tally)
        }
        (Err(e), _) => {
            tracing::debug!("client upgrade failed: {e}");
            (Outcome::ClientAborted, None, Tally::default())
        }
        (_, Err(e)) => {
            tracing::warn!("provider upgrade failed: {e}");
            (Outcome::UpstreamError, None, Tally::default())
        }
    };
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

/// Relays messages both ways until the session ends; pings are answered on each side by the
/// library and not relayed.
async fn relay(
    client: Upgraded,
    upstream: Upgraded,
    idle: Duration,
    mut closing: tokio::sync::watch::Receiver<bool>,
) -> (Ended, Tally) {
    let client: Socket =
        WebSocketStream::from_raw_socket(TokioIo::new(client), Role::Server, None).await;
    let upstream: Socket =
        WebSocketStream::from_raw_socket(TokioIo::new(upstream), Role::Client, None).await;
    let (mut to_client, mut from_client) = client.split();
    let (mut to_provider, mut from_provider) = upstream.split();
    let mut tally = Tally::default();
    let mut ended: Option<Ended> = None;
    let (mut client_open, mut provider_open) = (true, true);
    let mut last = Instant::now();
    let mut close_by: Option<tokio::time::Instant> = None;
    // Polled only until a session end is known (then never again).
    let mut shutdown = std::pin::pin!(async move {
        let _ = closing.wait_for(|c| *c).await;
    });
    let going_away = |why: &str| {
        Message::Close(Some(CloseFrame {
            code: CloseCode::Away,
            reason: why.to_string().into(),
        }))
    };
    while client_open || provider_open {
        let idle_at = tokio::time::Instant::from_std(last + idle);
        let deadline = close_by.unwrap_or(idle_at);
        tokio::select! {
            m = from_client.next(), if client_open => match m {
                Some(Ok(Message::Close(frame))) => {
                    ended.get_or_insert(Ended::Client);
                    close_by.get_or_insert_with(|| tokio::time::Instant::now() + CLOSE_WAIT);
                    let _ = to_provider.send(Message::Close(frame)).await;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => last = Instant::now(),
                Some(Ok(msg)) => {
                    last = Instant::now();
                    tally.to_provider += 1;
                    tally.bytes_in += msg.len() as u64;
                    if provider_open
                        && tokio::time::timeout(idle, to_provider.send(msg)).await.map_or(true, |r| r.is_err())
                    {
                        provider_open = false;
                    }
                }
                Some(Err(_)) | None => {
                    client_open = false;
                    if ended.is_none() {
                        ended = Some(Ended::Client);
                        let _ = to_provider.send(going_away("client went away")).await;
                    }
                    close_by.get_or_insert_with(|| tokio::time::Instant::now() + CLOSE_WAIT);
                }
            },
            m = from_provider.next(), if provider_open => match m {
                Some(Ok(Message::Close(frame))) => {
                    ended.get_or_insert(Ended::Provider);
                    close_by.get_or_insert_with(|| tokio::time::Instant::now() + CLOSE_WAIT);
                    let _ = to_client.send(Message::Close(frame)).await;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => last = Instant::now(),
                Some(Ok(msg)) => {
                    last = Instant::now();
                    tally.to_client += 1;
                    tally.bytes_out += msg.len() as u64;
                    if let Message::Text(text) = &msg
                        && let Some(u) = message_usage(text.as_str())
                    {
                        add_usage(&mut tally.usage, &u);
                    }
                    if client_open
                        && tokio::time::timeout(idle, to_client.send(msg)).await.map_or(true, |r| r.is_err())
                    {
                        client_open = false;
                    }
                }
                Some(Err(_)) | None => {
                    provider_open = false;
                    if ended.is_none() {
                        ended = Some(Ended::Provider);
                        let _ = to_client.send(going_away("provider went away")).await;
                    }
                    close_by.get_or_insert_with(|| tokio::time::Instant::now() + CLOSE_WAIT);
                }
            },
            _ = &mut shutdown, if ended.is_none() => {
                ended = Some(Ended::Shutdown);
                close_by = Some(tokio::time::Instant::now() + CLOSE_WAIT);
                let _ = to_client.send(going_away("gateway shutting down")).await;
                let _ = to_provider.send(going_away("gateway shutting down")).await;
            }
            _ = tokio::time::sleep_until(deadline) => {
                if close_by.is_some() {
                    break;
                }
                ended = Some(Ended::Idle);
                close_by = Some(tokio::time::Instant::now() + CLOSE_WAIT);
                let why = format!("idle for {} ms (server.websocket_idle_timeout_ms)", idle.as_millis());
                let frame = || Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: why.clone().into() }));
                let _ = to_client.send(frame()).await;
                let _ = to_provider.send(frame()).await;
            }
        }
    }
    let _ = to_client.close().await;
    let _ = to_provider.close().await;
    (ended.unwrap_or(Ended::Client), tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_read_from_response_done_only() {
        let done = r#"{"type":"response.done","response":{"usage":{"total_tokens":30,"input_tokens":20,"output_tokens":10,"input_token_details":{"cached_tokens":4,"text_tokens":20,"audio_tokens":0},"output_token_details":{"text_tokens":10,"audio_tokens":0}}}}"#;
        let u = message_usage(done).unwrap();
        assert_eq!(
            (u.tokens_in, u.tokens_out, u.tokens_cached, u.tokens_audio),
            (Some(20), Some(10), Some(4), Some(0))
        );
        assert!(message_usage(r#"{"type":"response.created","note":"response.done"}"#).is_none());
        assert!(message_usage(r#"{"type":"response.output_text.delta","delta":"hi"}"#).is_none());
        let mut total = Usage::default();
        add_usage(&mut total, &u);
        add_usage(&mut total, &u);
        assert_eq!((total.tokens_in, total.tokens_out), (Some(40), Some(20)));
        assert_eq!(total.tokens_reasoning, None);
    }
}
