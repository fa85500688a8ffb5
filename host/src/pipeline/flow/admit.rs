//! Admission: what a request is checked against before any filter runs (gateway, account,
//! token, gateway headers, provider, deadline, stored key, declared length), and the start of
//! the exchange that carries it (request id, span, the head filters see, the headers bound
//! upstream).

use super::super::Generation;
use super::super::headers;
use super::exchange::{Exchange, Slot};
use super::{Env, Route};
use crate::http::error::GatewayError;
use crate::runtime::bindings::types::{Hooks, RequestHead};
use crate::runtime::host::RequestContext;
use crate::store::now_ms;
use hyper::header::CONTENT_LENGTH;
use hyper::{HeaderMap, StatusCode};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

/// What admission found: the gateway and provider a request goes to, its deadline and the key
/// stored for the provider.
pub(super) struct Admitted {
    pub(super) gw: Arc<super::super::GatewayPipeline>,
    pub(super) provider: crate::providers::ProviderSpec,
    pub(super) timeout_ms: u64,
    pub(super) stored_key: Option<crate::http::Secret>,
    /// The consumer a virtual key identified.
    pub(super) identified: Option<crate::control::Identified>,
}

/// Admission: the gateway, account, token, gateway headers, provider, deadline, stored key and
/// declared length, checked before any filter runs. A refusal is the gateway's own answer.
pub(super) fn admit(
    generation: &Generation,
    route: &Route,
    parts: &hyper::http::request::Parts,
    keys: Option<&crate::control::ring::KeyRing>,
) -> Result<Admitted, GatewayError> {
    let config = &generation.config;
    let Some(gw) = generation.gateways.get(&route.gateway).cloned() else {
        return Err(GatewayError::not_found(format!(
            "unknown gateway '{}'",
            route.gateway
        )));
    };
    if !gw.accepts(&route.account) {
        return Err(GatewayError::not_found(format!(
            "gateway '{}' does not serve account '{}'",
            route.gateway, route.account
        )));
    }
    // The virtual key, checked before anything else reads the request.
    let identified = crate::control::identify(
        keys,
        gw.keys,
        &gw.name,
        &parts.headers,
        route.query.as_deref(),
        now_ms(),
    )?;
    // A key with limits only where they are enforced: never silently unlimited.
    if let Some(i) = &identified {
        let info = i.consumer.info();
        let limited = info.key_policy.limits_anything()
            || info
                .team_policy
                .as_ref()
                .is_some_and(|p| p.limits_anything());
        if limited && !gw.stages.iter().any(|s| &*s.filter.name == "key-policy") {
            return Err(GatewayError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "virtual key '{}' ({}) has limits, and gateway '{}' does not enforce them: add \"key-policy\" to its pipeline",
                    info.key_name, info.key_id, gw.name
                ),
            ));
        }
    }
    // An authenticated gateway: nothing reaches a filter or a provider without the token (or
    // a valid virtual key sent in its place).
    if let Some(token) = &gw.auth_token {
        let sent = parts
            .headers
            .get("cf-aig-authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let key_in_place = identified
            .as_ref()
            .is_some_and(|i| i.header == "cf-aig-authorization");
        if !key_in_place && !crate::http::constant_time_eq(sent.as_bytes(), token.0.as_bytes()) {
            return Err(GatewayError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                format!(
                    "gateway '{}' requires a valid 'cf-aig-authorization: Bearer <token>' header",
                    gw.name
                ),
            ));
        }
    }
    // Gateway headers steer filters; one they cannot read must not be ignored silently.
    if let Some((name, _)) = parts
        .headers
        .iter()
        .find(|(k, v)| k.as_str().starts_with("cf-aig-") && v.to_str().is_err())
    {
        return Err(GatewayError::bad_request(format!(
            "{name}: the value is not valid text (visible ASCII expected)"
        )));
    }
    let Some(provider) = config.providers.get(&route.provider).cloned() else {
        return Err(GatewayError::not_found(format!(
            "unknown provider '{}' (known: {})",
            route.provider,
            config
                .providers
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    let timeout_ms = request_timeout(
        &parts.headers,
        provider
            .request_timeout_ms
            .unwrap_or(config.request_timeout_ms),
    )?;
    // A stored key (BYOK) for when the client sent none; an alias picks a named one.
    let stored_key = match parts.headers.get("cf-aig-byok-alias") {
        None => provider.api_key.clone(),
        Some(v) => {
            let alias = v.to_str().unwrap_or("");
            match provider.named_keys.get(alias) {
                Some(k) => Some(k.clone()),
                None => {
                    return Err(GatewayError::bad_request(format!(
                        "cf-aig-byok-alias: provider '{}' has no stored key named '{alias}' (known: {})",
                        provider.name,
                        provider
                            .named_keys
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
            }
        }
    };
    if let Some(len) = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && len > config.max_body_bytes
    {
        return Err(GatewayError::too_large(config.max_body_bytes));
    }
    Ok(Admitted {
        gw,
        provider,
        timeout_ms,
        stored_key,
        identified,
    })
}

/// The request's id, span, head (what filters see) and the headers bound upstream.
pub(super) fn start(
    env: &Env,
    generation: &Generation,
    route: &Route,
    parts: &hyper::http::request::Parts,
    admitted: &Admitted,
    client_ip: IpAddr,
) -> (Exchange, RequestHead, HeaderMap) {
    let gw = &admitted.gw;
    let mut upstream_headers = parts.headers.clone();
    headers::strip_hop_by_hop(&mut upstream_headers);
    for name in [
        "host",
        "content-length",
        "cf-aig-authorization",
        "accept-encoding",
    ] {
        upstream_headers.remove(name);
    }
    // The virtual key never reaches a filter or a provider: the provider gets its stored key.
    if let Some(identified) = &admitted.identified {
        for h in &identified.headers {
            upstream_headers.remove(*h);
        }
    }
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    // Debug level: at the default level the span is disabled and costs a callsite check.
    let span = tracing::debug_span!(
        "request",
        id = %request_id,
        gateway = %route.gateway,
        provider = %route.provider,
        model = tracing::field::Empty,
        attempt = tracing::field::Empty,
        status = tracing::field::Empty,
        cache = tracing::field::Empty,
        key = tracing::field::Empty,
    );
    let context = RequestContext::new(generation.config.clone(), &request_id, &route.gateway);
    if let Some(identified) = &admitted.identified {
        let c = &identified.consumer;
        span.record("key", c.key_id.as_str());
        RequestContext::set_consumer(&context, c.info());
    }
    let head = RequestHead {
        request_id: request_id.clone(),
        method: parts.method.as_str().to_string(),
        account: route.account.clone(),
        gateway: route.gateway.clone(),
        provider: route.provider.clone(),
        path: route.path.clone(),
        query: route.query.clone(),
        // Only filters with a request-headers hook see them.
        headers: if gw.hooks.contains(Hooks::REQUEST_HEADERS) {
            headers::view(&upstream_headers)
        } else {
            Vec::new()
        },
        client_ip: client_ip.to_string(),
    };
    let traceparent = parts
        .headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let ex = Exchange {
        gw: gw.clone(),
        runtime: env.runtime.clone(),
        slots: (0..gw.stages.len()).map(|_| Slot::Empty).collect(),
        started: Instant::now(),
        created_at_ms: now_ms(),
        context,
        request_id,
        span,
        traceparent,
        account: route.account.clone(),
        provider: route.provider.clone(),
        method: head.method.clone(),
        path: route.path.clone(),
        model: None,
        request_bytes: 0,
        request_headers: if gw.hooks.contains(Hooks::DONE) {
            headers::redacted_view(&parts.headers)
        } else {
            Vec::new()
        },
        attempts: 0,
        stream_idle_timeout_ms: generation.config.stream_idle_timeout_ms,
        config: generation.config.clone(),
        strip_usage_chunk: false,
        armed: true,
        answer_status: 499,
        in_call: None,
        probes: Vec::new(),
    };
    (ex, head, upstream_headers)
}

/// `cf-aig-request-timeout` (ms) or the configured default.
fn request_timeout(headers: &HeaderMap, default_ms: u64) -> Result<u64, GatewayError> {
    match headers.get("cf-aig-request-timeout") {
        None => Ok(default_ms),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .filter(|n| (1..=3_600_000).contains(n))
            .ok_or_else(|| {
                GatewayError::bad_request(
                    "cf-aig-request-timeout: expected milliseconds, an integer from 1 to 3600000",
                )
            }),
    }
}
