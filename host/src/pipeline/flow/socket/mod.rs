//! WebSocket sessions through a provider route (OpenAI Realtime, Gemini Live).
//!
//! The handshake is a request like any other up to the provider: admission, the request-headers
//! hooks (keys, limits, auth) and the request-body hooks, which see the session's opening as
//! `{"model": …}` (the `model` of the query), so a key's model list and budget apply. Gemini
//! Live names its model in the session's first message instead: there the client's side opens
//! after the request-headers hooks, its first message is read, and the rest of the handshake
//! judges the model it sets up; a refusal closes the session with its status as the reason. A filter
//! that reads answers cannot read a session's messages: when one is in the pipeline with
//! `on_error = "closed"` the session is refused rather than let past it unread. The provider's
//! handshake answer goes through the response-headers hooks; a refusal (a 401, a 429) reaches
//! the client as it came. On a 101 both connections are upgraded and messages relayed both ways
//! until either side closes, the session is idle for `server.websocket_idle_timeout_ms`, or the
//! gateway shuts down (both sides then get a close frame). One log entry per session: status
//! 101, its duration, its bytes, and the usage summed from the provider's `response.done`
//! events (OpenAI) or `usageMetadata` (Gemini). At most `server.max_websocket_sessions` are open at once; a peer that stops reading
//! for `SEND_WAIT` ends its session rather than stalling it.

use super::response::{AfterHeaders, BodySource, Outgoing, finish, response_hooks, spawn_tracked};
use super::{BodyIn, Early, Exchange, Flow, error_chain, request_header_hooks};
use crate::config::OnError;
use crate::http::body::GatewayBody;
use crate::http::error::GatewayError;
use crate::runtime::bindings::types::{BodyMode, Header, Hooks, Outcome, RequestHead};
use crate::runtime::host::RequestContext;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONNECTION, CONTENT_LENGTH, HeaderValue, UPGRADE};
use hyper::upgrade::OnUpgrade;
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use std::time::Duration;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

mod session;

use session::{Client, Limits, session, setup_model};

/// How long a session whose first message names its model (Gemini Live) may take to send it.
const SETUP_WAIT: Duration = Duration::from_secs(10);

/// Whether sessions on this provider path name their model in their first message (Gemini
/// Live's `…BidiGenerateContent`) rather than in the URL.
fn setup_first(path: &str) -> bool {
    path.ends_with("BidiGenerateContent")
}

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
        let limits = Limits {
            idle: Duration::from_millis(self.generation.config.websocket_idle_timeout_ms),
            max_message: self.generation.config.max_body_bytes,
        };
        // Gemini Live names its model in the session's first message: the client's side opens
        // first, and the rest of the handshake waits for that message.
        // (A `model` in its query would be judged in place of the setup's: it must match it.)
        if setup_first(&self.route.path) {
            return self
                .defer(
                    ex,
                    head,
                    upstream_headers,
                    &parts,
                    client_upgrade,
                    slot,
                    limits,
                    model,
                )
                .await;
        }
        let opened = match self
            .open_upstream(&mut ex, head, upstream_headers, model)
            .await
        {
            Ok(o) => o,
            Err(early) => return early.end(ex).await,
        };
        let mut response = Response::new(GatewayBody::full(Bytes::new()));
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let mut headers = opened.headers;
        headers.remove(CONTENT_LENGTH);
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(v) = HeaderValue::from_str(&ex.request_id) {
            headers.insert("cf-aig-log-id", v);
        }
        *response.headers_mut() = headers;
        release_idle(&mut ex);
        let span = ex.span.clone();
        spawn_tracked(
            services,
            span,
            session(
                ex,
                Client::Upgrading(client_upgrade),
                opened.upgrade,
                limits,
                slot,
            ),
        );
        response
    }

    /// The handshake of a session whose first message names its model: the client gets its
    /// 101 now; in a task, its first message is read (within `SETUP_WAIT`), the filters judge
    /// the model it sets up, and only then is the provider called and sent that message. A
    /// refusal closes the client's side with the refusal's status and message as the reason
    /// (1008 for a refusal, 1011 for a failure) and is logged as any refused request.
    #[allow(clippy::too_many_arguments)]
    async fn defer(
        self,
        ex: Exchange,
        head: RequestHead,
        upstream_headers: HeaderMap,
        parts: &hyper::http::request::Parts,
        client_upgrade: OnUpgrade,
        slot: SessionSlot,
        limits: Limits,
        query_model: Option<String>,
    ) -> Response<GatewayBody> {
        let Some(accept) = parts
            .headers
            .get("sec-websocket-key")
            .map(|k| derive_accept_key(k.as_bytes()))
            .and_then(|a| HeaderValue::from_str(&a).ok())
        else {
            let out = Outgoing::from_error(&GatewayError::bad_request(
                "sec-websocket-key: required to open a WebSocket session",
            ));
            return finish(ex, 0, out, Outcome::RespondedLocally).await;
        };
        let mut response = Response::new(GatewayBody::full(Bytes::new()));
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert("sec-websocket-accept", accept);
        if let Ok(v) = HeaderValue::from_str(&ex.request_id) {
            headers.insert("cf-aig-log-id", v);
        }
        let services = self.env.runtime.services.clone();
        let (env, generation, route, admitted) = (
            self.env.clone(),
            self.generation.clone(),
            self.route.clone(),
            self.admitted,
        );
        let span = ex.span.clone();
        spawn_tracked(services, span, async move {
            let flow = Flow {
                env: &env,
                generation: &generation,
                route: &route,
                admitted,
            };
            flow.deferred_session(
                ex,
                head,
                upstream_headers,
                client_upgrade,
                slot,
                limits,
                query_model,
            )
            .await;
        });
        response
    }

    /// The rest of a deferred handshake, then the session (see [`Flow::defer`]).
    #[allow(clippy::too_many_arguments)]
    async fn deferred_session(
        self,
        mut ex: Exchange,
        head: RequestHead,
        upstream_headers: HeaderMap,
        client_upgrade: OnUpgrade,
        slot: SessionSlot,
        limits: Limits,
        query_model: Option<String>,
    ) {
        let Ok(io) = client_upgrade.await else {
            let out = Outgoing::from_error(&GatewayError::bad_request(
                "the client left before its WebSocket session opened",
            ));
            drain(finish(ex, 0, out, Outcome::ClientAborted).await).await;
            return;
        };
        let mut client = session::server_socket(io, limits).await;
        let first = session::first_message(&mut client, SETUP_WAIT).await;
        let model = match first.as_ref().map(|m| session::payload(m).map(setup_model)) {
            Some(Some(Ok(m))) if query_model.as_ref().is_none_or(|q| *q == m) => m,
            Some(Some(Ok(m))) => {
                let e = GatewayError::bad_request(format!(
                    "model: the query names '{}' and the setup '{m}'; the setup's model is the one the provider uses, so name one or the same",
                    query_model.unwrap_or_default()
                ));
                drain(finish(ex, 0, Outgoing::from_error(&e), Outcome::RespondedLocally).await)
                    .await;
                session::refuse(&mut client, CloseCode::Policy, &e.message).await;
                return;
            }
            found => {
                let why = match found {
                    None => format!(
                        "no first message within {} s: a Gemini Live session starts with {{\"setup\": {{\"model\": …}}}}",
                        SETUP_WAIT.as_secs()
                    ),
                    Some(Some(Err(m))) => m,
                    _ => "the first message must be {\"setup\": {\"model\": …}} (JSON)".into(),
                };
                let e = GatewayError::bad_request(why);
                drain(finish(ex, 0, Outgoing::from_error(&e), Outcome::RespondedLocally).await)
                    .await;
                session::refuse(&mut client, CloseCode::Policy, &e.message).await;
                return;
            }
        };
        let opened = match self
            .open_upstream(&mut ex, head, upstream_headers, Some(model))
            .await
        {
            Ok(o) => o,
            Err(early) => {
                let resp = early.end(ex).await;
                let status = resp.status();
                let body = drain(resp).await;
                // `{"error": {"type", "message"}}` (the gateway's, or most providers') as
                // "type: message"; any other body as it is.
                let parsed = serde_json::from_slice::<serde_json::Value>(&body).ok();
                let field = |k: &str| {
                    parsed
                        .as_ref()
                        .and_then(|v| v.pointer(&format!("/error/{k}")))
                        .and_then(|m| m.as_str())
                };
                let message = match (field("type").or(field("status")), field("message")) {
                    (Some(kind), Some(m)) => format!("{kind}: {m}"),
                    (None, Some(m)) => m.to_string(),
                    _ => String::from_utf8_lossy(&body).into_owned(),
                };
                let code = if status.is_client_error() {
                    CloseCode::Policy
                } else {
                    CloseCode::Error
                };
                let why = format!("{} {message}", status.as_u16());
                session::refuse(&mut client, code, &why).await;
                return;
            }
        };
        release_idle(&mut ex);
        let first = first.map(session::First);
        session(
            ex,
            Client::Open(Box::new(client), first),
            opened.upgrade,
            limits,
            slot,
        )
        .await;
    }

    /// From the request-body hooks (which see `{"model": …}`) to the provider's 101 through
    /// the response-headers hooks; anything else ends the request as `Early` says.
    async fn open_upstream(
        &self,
        ex: &mut Exchange,
        head: RequestHead,
        mut upstream_headers: HeaderMap,
        model: Option<String>,
    ) -> Result<Opened, Early> {
        let n = ex.gw.stages.len();
        let refuse = |status, kind, message: String| {
            Outgoing::from_error(&GatewayError::new(status, kind, message))
        };
        let opening = match &model {
            Some(m) => serde_json::json!({ "model": m }),
            None => serde_json::json!({}),
        };
        self.request_body(ex, BodyIn::Ready(Bytes::from(opening.to_string())))
            .await?;
        ex.request_bytes = 0;
        // A budget holds a request's worst case before it goes upstream; a session has none
        // (it runs until closed), so it cannot be held against one.
        if RequestContext::holds_spend(&ex.context) {
            let out = refuse(
                StatusCode::FORBIDDEN,
                "budget_unbounded",
                "a WebSocket session's cost has no upper bound, so it cannot be held against the budget that applies to this request; use a key without a dollar budget for realtime sessions".into(),
            );
            return Err(Early::Finish(n, out, Outcome::RespondedLocally));
        }
        if let Some(choice) = RequestContext::take_route(&ex.context) {
            let out = Outgoing::from_error(&GatewayError::bad_gateway(format!(
                "a filter routed a WebSocket session to '{}'; a session goes to the provider its URL names",
                choice.provider
            )));
            return Err(Early::Finish(n, out, Outcome::RespondedLocally));
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
                    return Err(Early::Finish(n, out, Outcome::RespondedLocally));
                }
            };
        let client = match crate::http::upstream::socket_client(provider.ca_file.as_deref()) {
            Ok(c) => c,
            Err(e) => {
                let out = Outgoing::from_error(&GatewayError::bad_gateway(format!(
                    "providers.{}.ca_file: {e}",
                    provider.name
                )));
                return Err(Early::Finish(n, out, Outcome::UpstreamError));
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
        let body_upto = match response_hooks(ex, n, &mut out, 1, upstream_error, false).await {
            Ok(AfterHeaders::Deliver { body_upto }) => body_upto,
            // Retries were not allowed: a filter that asks anyway gets the answer delivered.
            Ok(AfterHeaders::Retry(_)) => n,
            Err(e) => {
                return Err(Early::Finish(
                    0,
                    Outgoing::from_error(&e),
                    Outcome::FilterFailed,
                ));
            }
        };
        let upgraded = out.status == StatusCode::SWITCHING_PROTOCOLS && !out.local;
        let Some(upgrade) = upstream_upgrade.filter(|_| upgraded) else {
            let outcome = match (failed_upstream, out.local) {
                (true, _) => Outcome::UpstreamError,
                (_, true) => Outcome::RespondedLocally,
                _ => Outcome::Completed,
            };
            return Err(Early::Finish(body_upto, out, outcome));
        };
        ex.model = model;
        ex.answer_status = 101;
        Ok(Opened {
            headers: out.headers,
            upgrade,
        })
    }
}

/// The provider's side of a session, upgraded, and its handshake answer's headers.
struct Opened {
    headers: HeaderMap,
    upgrade: OnUpgrade,
}

/// Instances that have no done hook are not held for a session's life.
fn release_idle(ex: &mut Exchange) {
    let n = ex.gw.stages.len();
    let idle_stages: Vec<usize> = (0..n).filter(|&i| !ex.wants(i, Hooks::DONE)).collect();
    let spare: Vec<_> = idle_stages
        .into_iter()
        .filter_map(|i| ex.release(i))
        .collect();
    tokio::spawn(Exchange::recycle(ex.gw.clone(), spare));
}

/// Reads a response the client will not get (its session's refusal), so that its log entry is
/// written; returns its body.
async fn drain(resp: Response<GatewayBody>) -> Bytes {
    use http_body_util::BodyExt as _;
    // Only its start becomes a close reason; the rest is read and dropped, so it is logged.
    match http_body_util::Limited::new(resp.into_body(), 1 << 20)
        .collect()
        .await
    {
        Ok(c) => c.to_bytes(),
        Err(_) => Bytes::new(),
    }
}
