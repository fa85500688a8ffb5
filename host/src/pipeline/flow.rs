//! One request through one gateway's pipeline: admission (`admit`) →
//! request-headers hooks (in order) → body read → request-body hooks →
//! upstream call → response-headers hooks (reverse order; may retry) →
//! response body through the body hooks, streamed to the client → done hooks
//! with the summary. A filter that answers early skips the later filters and
//! the upstream; filters before it still see the response. The response side is
//! in `response`, the body task in `body`, per-request filter state in `exchange`.

use super::Generation;
use super::headers;
use crate::http::body::GatewayBody;
use crate::http::error::GatewayError;
use crate::http::upstream::UpstreamClient;
use crate::providers::usage::request_model;
use crate::runtime::Runtime;
use crate::runtime::bindings::types::{
    BodyDecision, BodyMode, Decision, Hooks, Outcome, RequestHead,
};
use crate::runtime::host::RequestContext;
use crate::runtime::instance::{Answer, Hook};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_LENGTH, HeaderValue};
use hyper::{HeaderMap, Request, Response, StatusCode};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tracing::Instrument as _;

mod admit;
mod body;
mod exchange;
mod response;
mod socket;
mod target;
use admit::{Admitted, admit, start};
use exchange::{Exchange, Slot};
use response::{
    AfterHeaders, BodySource, Outgoing, finish, local_answer, respond_locally, response_hooks,
};
use target::Target;

/// Most upstream attempts for one request, whatever filters ask.
pub const MAX_ATTEMPTS: u32 = 5;
/// How long a client may take to send its request body.
const BODY_READ_TIMEOUT_MS: u64 = 60_000;
/// Longest pause a filter may ask for between attempts.
const MAX_RETRY_DELAY_MS: u32 = 30_000;

/// What the flow needs from the server.
#[derive(Clone)]
pub struct Env {
    /// Wasm runtime.
    pub runtime: Arc<Runtime>,
    /// Upstream client.
    pub client: UpstreamClient,
    /// Virtual keys (absent without a log store).
    pub keys: Option<Arc<crate::control::ring::KeyRing>>,
}

/// A request body: still arriving from the client, or already read (compat
/// and universal endpoints rewrite it first).
pub enum BodyIn {
    /// Straight from the connection.
    Stream(hyper::body::Incoming),
    /// Already in memory.
    Ready(Bytes),
}

/// The URL's parts.
#[derive(Debug, Clone)]
pub struct Route {
    /// Account tag.
    pub account: String,
    /// Gateway name.
    pub gateway: String,
    /// Provider name.
    pub provider: String,
    /// Provider path (starts with `/`, or empty).
    pub path: String,
    /// Query string.
    pub query: Option<String>,
}

/// Serves one gateway request, phase by phase: admission, the request-headers hooks, the body
/// and its hooks, then the upstream. All but admission run inside the request's span.
/// Who is calling, as admission sees it (gateway, account, `auth_token` and virtual key all
/// checked): the virtual key's id, if one was sent. The compat endpoint asks this before it
/// reads anything stored for the caller.
pub fn caller(
    generation: &Generation,
    route: &Route,
    parts: &hyper::http::request::Parts,
    keys: Option<&crate::control::ring::KeyRing>,
) -> Result<Option<String>, GatewayError> {
    admit(generation, route, parts, keys).map(|a| a.identified.map(|i| i.consumer.key_id.clone()))
}

pub async fn handle(
    env: &Env,
    generation: Arc<Generation>,
    route: Route,
    parts: hyper::http::request::Parts,
    body: BodyIn,
    client_ip: IpAddr,
) -> Response<GatewayBody> {
    let metrics = &env.runtime.services.metrics;
    metrics.requests.fetch_add(1, Ordering::Relaxed);
    let admitted = match admit(&generation, &route, &parts, env.keys.as_deref()) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let (ex, head, upstream_headers) =
        start(env, &generation, &route, &parts, &admitted, client_ip);
    let span = ex.span.clone();
    let request = Flow {
        env,
        generation: &generation,
        route: &route,
        admitted,
    };
    if matches!(body, BodyIn::Stream(_)) && socket::is_upgrade(&parts) {
        return request
            .serve_socket(ex, head, upstream_headers, parts)
            .instrument(span)
            .await;
    }
    request
        .serve(ex, head, upstream_headers, parts, body)
        .instrument(span)
        .await
}

/// How a phase ends the request before the upstream: a filter's own answer from stage `k`, or
/// the gateway's answer after the filters before `upto` (an error, a refusal).
enum Early {
    Local(usize, Outgoing),
    Finish(usize, Outgoing, Outcome),
}

impl Early {
    fn failed(e: &GatewayError) -> Early {
        Early::Finish(0, Outgoing::from_error(e), Outcome::FilterFailed)
    }

    async fn end(self, ex: Exchange) -> Response<GatewayBody> {
        match self {
            Early::Local(k, out) => respond_locally(ex, k, out).await,
            Early::Finish(upto, out, outcome) => finish(ex, upto, out, outcome).await,
        }
    }
}

/// One admitted request and what it was admitted to.
struct Flow<'a> {
    env: &'a Env,
    generation: &'a Arc<Generation>,
    route: &'a Route,
    admitted: Admitted,
}

impl Flow<'_> {
    async fn serve(
        self,
        mut ex: Exchange,
        mut head: RequestHead,
        mut upstream_headers: HeaderMap,
        parts: hyper::http::request::Parts,
        body: BodyIn,
    ) -> Response<GatewayBody> {
        if let Err(early) = request_header_hooks(&mut ex, &mut head, &mut upstream_headers).await {
            return early.end(ex).await;
        }
        let body = match self.request_body(&mut ex, body).await {
            Ok(b) => b,
            Err(early) => return early.end(ex).await,
        };
        self.upstream(ex, head, upstream_headers, parts.method, body)
            .await
    }

    /// The body, whole (kept as bytes so retries resend it unchanged), through the request-body
    /// hooks in pipeline order.
    async fn request_body(&self, ex: &mut Exchange, body: BodyIn) -> Result<Bytes, Early> {
        let config = &self.generation.config;
        let mut body = match read_body(body, config.max_body_bytes).await {
            Ok(b) => b,
            Err((err, outcome)) => {
                return Err(Early::Finish(0, Outgoing::from_error(&err), outcome));
            }
        };
        let (body_model, stream) = request_model(&body);
        // APIs that name the model in the path run (and bill) that one, whatever the body says.
        ex.model = crate::providers::usage::model_from_path(&self.route.path).or(body_model);
        if let Some(model) = &ex.model {
            ex.span.record("model", model.as_str());
        }
        // Streamed OpenAI-style chats: ask for the usage chunk so token counts are
        // exact, and hide it from a client that did not ask for it.
        if stream
            && self.admitted.provider.stream_usage
            && self.route.path.ends_with("/chat/completions")
            && !self.admitted.provider.anthropic_messages
            && let Some(with_usage) = crate::providers::usage::with_stream_usage(&body)
        {
            body = Bytes::from(with_usage);
            ex.strip_usage_chunk = true;
        }
        for i in 0..ex.gw.stages.len() {
            let mode = ex.gw.stages[i].filter.info.request_body;
            if !ex.wants(i, Hooks::REQUEST_BODY) || matches!(mode, BodyMode::Ignore) {
                continue;
            }
            if let BodyMode::Buffered(max) = mode
                && body.len() > max as usize
            {
                let message = format!(
                    "request body of {} bytes is over the filter's buffered limit of {max}",
                    body.len()
                );
                // A filter that declares it fails closed judges bodies (guardrails,
                // prompt-redaction, a policy of your own): sending more than it reads must not
                // skip it, whatever its table's `on_error` (which is about the filter failing),
                // and is no failure of the filter (oversized requests cannot open its circuit).
                let stage = &ex.gw.stages[i];
                if stage.filter.info.on_error == Some(crate::config::OnError::Closed) {
                    let e = GatewayError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        format!("filter '{}': {message}", stage.filter.name),
                    );
                    return Err(Early::Local(i, Outgoing::from_error(&e)));
                }
                let err = ex.bad_answer(i, "on-request-body", message);
                match ex.fail::<()>(i, err) {
                    Ok(_) => continue,
                    Err(e) => return Err(Early::failed(&e)),
                }
            }
            match ex.call(i, Hook::RequestBody(&body)).await {
                Ok(Some(Answer::Body(BodyDecision::Replace(b)))) => body = Bytes::from(b),
                Ok(Some(Answer::Body(BodyDecision::Respond(local)))) => {
                    match local_answer(ex, i, local) {
                        Ok(Some(out)) => return Err(Early::Local(i, out)),
                        Ok(None) => {}
                        Err(e) => return Err(Early::failed(&e)),
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(Early::failed(&e)),
            }
        }
        ex.request_bytes = body.len() as u64;
        Ok(body)
    }

    /// The upstream request as the filters left it (the host owns framing, gateway headers and
    /// the provider key), then the attempts.
    async fn upstream(
        self,
        ex: Exchange,
        head: RequestHead,
        mut upstream_headers: HeaderMap,
        method: hyper::Method,
        body: Bytes,
    ) -> Response<GatewayBody> {
        let Flow {
            env,
            generation,
            route,
            admitted,
        } = self;
        let n = ex.gw.stages.len();
        let provider = admitted.provider;
        let client_key = provider_headers(
            &mut upstream_headers,
            &provider,
            admitted.stored_key.as_ref(),
        );

        let uri = match provider.upstream_uri(&route.account, &head.path, head.query.as_deref()) {
            Ok(u) => u,
            Err(m) => {
                return finish(
                    ex,
                    n,
                    Outgoing::from_error(&GatewayError::bad_request(m)),
                    Outcome::RespondedLocally,
                )
                .await;
            }
        };
        let client = generation
            .clients
            .get(&provider.name)
            .cloned()
            .unwrap_or_else(|| env.client.clone());
        let mut target = Target {
            provider,
            uri,
            headers: upstream_headers,
            body,
            client,
            path: head.path,
            query: head.query,
            account: route.account.clone(),
            client_key,
        };
        let mut ex = ex;
        if let Err(e) = reroute(&mut ex, &mut target, generation, env) {
            return finish(ex, n, Outgoing::from_error(&e), Outcome::RespondedLocally).await;
        }
        upstream_loop(env, generation, ex, target, method, admitted.timeout_ms).await
    }
}

/// The headers bound upstream as the filters left them, made the host's again: no framing,
/// host or gateway headers, and the provider's stored key when the client sent none. Whether
/// the client sent the provider key itself.
fn provider_headers(
    upstream_headers: &mut HeaderMap,
    provider: &crate::providers::ProviderSpec,
    stored_key: Option<&crate::http::Secret>,
) -> bool {
    headers::strip_hop_by_hop(upstream_headers);
    upstream_headers.remove("host");
    upstream_headers.remove(CONTENT_LENGTH);
    let gateway_headers: Vec<_> = upstream_headers
        .keys()
        .filter(|k| k.as_str().starts_with("cf-aig-"))
        .cloned()
        .collect();
    for k in gateway_headers {
        upstream_headers.remove(k);
    }
    let client_key = upstream_headers.contains_key(provider.auth_header.name);
    if let Some(key) = stored_key
        && !client_key
        && let Ok(mut value) = HeaderValue::from_str(&provider.auth_header.value(&key.0))
    {
        value.set_sensitive(true);
        upstream_headers.insert(provider.auth_header.name, value);
    }
    client_key
}

/// The request-headers hooks, in pipeline order; each may edit the headers or answer.
async fn request_header_hooks(
    ex: &mut Exchange,
    head: &mut RequestHead,
    upstream_headers: &mut HeaderMap,
) -> Result<(), Early> {
    for i in 0..ex.gw.stages.len() {
        if !ex.wants(i, Hooks::REQUEST_HEADERS) {
            continue;
        }
        match ex.call(i, Hook::RequestHeaders(&mut *head)).await {
            Ok(Some(Answer::Decision(Decision::Continue(edits)))) => {
                if let Err(m) = headers::apply(&edits, upstream_headers, &mut head.headers) {
                    let err = ex.bad_answer(i, "on-request-headers", m);
                    if let Err(e) = ex.fail::<()>(i, err) {
                        return Err(Early::failed(&e));
                    }
                }
            }
            Ok(Some(Answer::Decision(Decision::Respond(local)))) => {
                match local_answer(ex, i, local) {
                    Ok(Some(out)) => return Err(Early::Local(i, out)),
                    Ok(None) => {}
                    Err(e) => return Err(Early::failed(&e)),
                }
            }
            Ok(_) => {}
            Err(e) => return Err(Early::failed(&e)),
        }
    }
    Ok(())
}

/// Acts on a filter's pending routing choice, if any.
fn reroute(
    ex: &mut Exchange,
    target: &mut Target,
    generation: &Generation,
    env: &Env,
) -> Result<(), GatewayError> {
    let Some(choice) = RequestContext::take_route(&ex.context) else {
        return Ok(());
    };
    route_allowed(ex, generation, &target.provider.name, &choice)?;
    let model = choice.model.clone();
    target.reroute(generation, &env.client, choice)?;
    tracing::debug!(provider = %target.provider.name, "routed by a filter");
    ex.provider = target.provider.name.clone();
    if let Some(model) = model {
        ex.span.record("model", model.as_str());
        ex.model = Some(model);
    }
    ex.request_bytes = target.body.len() as u64;
    Ok(())
}

/// Whether a filter's route keeps within what the request's virtual key allows: its provider
/// and model lists, and, when a budget hold was taken for the first target, a price no higher
/// than the one the hold was computed at (the hold stays an upper bound).
fn route_allowed(
    ex: &Exchange,
    generation: &Generation,
    from_provider: &str,
    choice: &crate::runtime::host::RouteChoice,
) -> Result<(), GatewayError> {
    let Some(consumer) = RequestContext::consumer(&ex.context) else {
        return Ok(());
    };
    let to_model = choice.model.as_deref().or(ex.model.as_deref());
    let refuse = |why: String| {
        Err(GatewayError::new(
            hyper::StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "a filter routed the request to '{}'{}, which virtual key '{}' may not use: {why}",
                choice.provider,
                to_model
                    .map(|m| format!(" model '{m}'"))
                    .unwrap_or_default(),
                consumer.key_name
            ),
        ))
    };
    for p in std::iter::once(&consumer.key_policy).chain(consumer.team_policy.as_ref()) {
        if let Some(allowed) = &p.providers
            && !allowed.contains(&choice.provider)
        {
            return refuse(format!("providers {allowed:?}"));
        }
        if let Some(allowed) = &p.models {
            let ok = to_model.is_some_and(|m| {
                allowed
                    .iter()
                    .any(|g| crate::control::keys::glob_match(g, m))
            });
            if !ok {
                return refuse(format!("models {allowed:?}"));
            }
        }
    }
    if RequestContext::holds_spend(&ex.context) {
        let prices = &generation.config.prices;
        let rates = |provider: &str, model: Option<&str>| {
            let p = prices.find(provider, model?)?;
            Some((p.max_input_rate(), p.output_per_million))
        };
        match (
            rates(from_provider, ex.model.as_deref()),
            rates(&choice.provider, to_model),
        ) {
            (Some(from), Some(to)) if to.0 <= from.0 && to.1 <= from.1 => {}
            _ => {
                return refuse(
                    "its budget hold was priced for the first target, and this one may cost more"
                        .into(),
                );
            }
        }
    }
    Ok(())
}

async fn upstream_loop(
    env: &Env,
    generation: &Generation,
    mut ex: Exchange,
    mut target: Target,
    method: hyper::Method,
    timeout_ms: u64,
) -> Response<GatewayBody> {
    let metrics = &env.runtime.services.metrics;
    let n = ex.gw.stages.len();
    let mut attempt = 0;
    loop {
        attempt += 1;
        ex.attempts = attempt;
        ex.span.record("attempt", attempt);
        metrics.upstream_attempts.fetch_add(1, Ordering::Relaxed);
        let mut req = Request::new(Full::new(target.body.clone()));
        *req.method_mut() = method.clone();
        *req.uri_mut() = target.uri.clone();
        *req.headers_mut() = target.headers.clone();
        // Signed per attempt (a retry gets a fresh date), after every filter had its say.
        if let Some(aws) = &target.provider.aws
            && let Err(e) = crate::providers::sigv4::sign(
                aws,
                method.as_str(),
                &target.uri,
                &target.path,
                req.headers_mut(),
                &target.body,
                std::time::SystemTime::now(),
            )
        {
            let msg = format!(
                "cannot sign the request for provider '{}' with its AWS credentials: {e}",
                target.provider.name
            );
            return finish(
                ex,
                n,
                Outgoing::from_error(&GatewayError::bad_gateway(msg)),
                Outcome::UpstreamError,
            )
            .await;
        }
        let sent = tokio::time::timeout(
            Duration::from_millis(timeout_ms),
            target.client.request(req),
        )
        .await;
        let (mut out, upstream_error) = match sent {
            Ok(Ok(resp)) => {
                let (parts, incoming) = resp.into_parts();
                let mut headers = parts.headers;
                headers::strip_hop_by_hop(&mut headers);
                let out = Outgoing {
                    status: parts.status,
                    upstream_len: headers.get(CONTENT_LENGTH).cloned(),
                    headers,
                    body: BodySource::Upstream(incoming),
                    local: false,
                };
                (out, None)
            }
            Ok(Err(e)) => {
                metrics.upstream_errors.fetch_add(1, Ordering::Relaxed);
                let msg = format!(
                    "provider '{}' unreachable: {}",
                    target.provider.name,
                    error_chain(&e)
                );
                (
                    Outgoing::from_error(&GatewayError::bad_gateway(msg.clone())),
                    Some(msg),
                )
            }
            Err(_) => {
                metrics.upstream_errors.fetch_add(1, Ordering::Relaxed);
                let msg = format!(
                    "provider '{}' sent no response within {timeout_ms} ms (cf-aig-request-timeout / server.request_timeout_ms)",
                    target.provider.name
                );
                (
                    Outgoing::from_error(&GatewayError::timeout(msg.clone())),
                    Some(msg),
                )
            }
        };
        let failed_upstream = upstream_error.is_some();
        match response_hooks(
            &mut ex,
            n,
            &mut out,
            attempt,
            upstream_error,
            attempt < MAX_ATTEMPTS,
        )
        .await
        {
            Ok(AfterHeaders::Retry(delay)) => {
                drop(out);
                tracing::debug!(attempt, delay, "retrying upstream");
                if let Err(e) = reroute(&mut ex, &mut target, generation, env) {
                    return finish(ex, n, Outgoing::from_error(&e), Outcome::UpstreamError).await;
                }
                tokio::time::sleep(Duration::from_millis(delay.min(MAX_RETRY_DELAY_MS) as u64))
                    .await;
                continue;
            }
            Ok(AfterHeaders::Deliver { body_upto }) => {
                let outcome = match (failed_upstream, out.local) {
                    (true, true) => Outcome::UpstreamError,
                    (_, true) => Outcome::RespondedLocally,
                    _ => Outcome::Completed,
                };
                return finish(ex, body_upto, out, outcome).await;
            }
            Err(e) => return finish(ex, 0, Outgoing::from_error(&e), Outcome::FilterFailed).await,
        }
    }
}

/// The whole request body, within `max` bytes and the read timeout.
pub async fn read_body(body: BodyIn, max: usize) -> Result<Bytes, (GatewayError, Outcome)> {
    match body {
        BodyIn::Ready(b) if b.len() > max => {
            Err((GatewayError::too_large(max), Outcome::RespondedLocally))
        }
        BodyIn::Ready(b) => Ok(b),
        BodyIn::Stream(incoming) => {
            let read = tokio::time::timeout(
                Duration::from_millis(BODY_READ_TIMEOUT_MS),
                Limited::new(incoming, max).collect(),
            )
            .await;
            match read {
                Err(_) => Err((
                    GatewayError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "request_timeout",
                        format!("the request body did not arrive within {BODY_READ_TIMEOUT_MS} ms"),
                    ),
                    Outcome::ClientAborted,
                )),
                Ok(Ok(c)) => Ok(c.to_bytes()),
                Ok(Err(e))
                    if e.downcast_ref::<http_body_util::LengthLimitError>()
                        .is_some() =>
                {
                    Err((GatewayError::too_large(max), Outcome::RespondedLocally))
                }
                Ok(Err(e)) => Err((
                    GatewayError::bad_request(format!("cannot read the request body: {e}")),
                    Outcome::ClientAborted,
                )),
            }
        }
    }
}

/// An error and its causes on one line.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let t = s.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        source = s.source();
    }
    text
}
