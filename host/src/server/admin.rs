//! The admin listener (`server.admin_listen`): plugin status, forced reload,
//! metrics and health. Protected by `server.admin_token` (Bearer) when set;
//! the token is compared in constant time.

use super::App;
use super::reload::Reloader;
use crate::http::body::GatewayBody;
use crate::http::error::GatewayError;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use std::sync::Arc;
use tokio::net::TcpListener;

fn json(status: StatusCode, value: serde_json::Value) -> Response<GatewayBody> {
    let mut r = Response::new(GatewayBody::full(value.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

async fn route(
    app: Arc<App>,
    reloader: Arc<Reloader>,
    token: Option<Arc<str>>,
    req: Request<Incoming>,
    peer: String,
) -> Response<GatewayBody> {
    let path = req.uri().path().to_string();
    if path == "/healthz" {
        return Response::new(GatewayBody::full("ok\n"));
    }
    if let Err(e) = same_origin(&app, &req) {
        return e.into_response();
    }
    if let Some(token) = token {
        let header = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        // Bearer for API clients; Basic (any user, the token as password) so a
        // browser can open the dashboard.
        let sent = match header.split_once(' ') {
            Some(("Bearer", t)) => t.to_string(),
            Some(("Basic", b)) => {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
                    .and_then(|raw| String::from_utf8(raw).ok())
                    .and_then(|s| s.split_once(':').map(|(_, p)| p.to_string()))
                    .unwrap_or_default()
            }
            _ => String::new(),
        };
        if !crate::http::constant_time_eq(sent.as_bytes(), token.as_bytes()) {
            let mut r = GatewayError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the admin API needs 'Authorization: Bearer <server.admin_token>'",
            )
            .into_response();
            r.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                hyper::header::HeaderValue::from_static("Basic realm=\"aigw admin\""),
            );
            return r;
        }
    }
    if path == "/console" || path.starts_with("/console/") {
        return match super::console::route(&app, &reloader, req, &peer).await {
            Some(r) => r,
            None => GatewayError::not_found(format!("no console page {path}")).into_response(),
        };
    }
    if path.starts_with("/client/v4/") {
        return match super::cfapi::route(&app, &reloader, req, &peer).await {
            Some(r) => r,
            None => GatewayError::not_found(format!(
                "no admin route {path}: Cloudflare's API is served under /client/v4/accounts/{{account}}/ai-gateway/"
            ))
            .into_response(),
        };
    }
    match (req.method(), path.as_str()) {
        (&Method::GET, "/metrics") => app.metrics_response(),
        (&Method::GET, "/dashboard") | (&Method::GET, "/dashboard/") => {
            let generation = app.generation();
            let mut names: Vec<String> = generation.gateways.keys().cloned().collect();
            names.sort();
            let params: Vec<(String, String)> =
                form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                    .into_owned()
                    .collect();
            let wanted = params
                .iter()
                .find(|(k, _)| k == "gateway")
                .map(|(_, v)| v.clone())
                .or_else(|| names.first().cloned())
                .unwrap_or_default();
            if !generation.gateways.contains_key(&wanted) {
                return GatewayError::not_found(format!("unknown gateway '{wanted}'"))
                    .into_response();
            }
            let plugins = reloader.status();
            let services = app.env.runtime.services.clone();
            tokio::task::spawn_blocking(move || match &services.logs {
                Some(store) => super::dashboard::page(store, &names, &wanted, &plugins, &params),
                None => GatewayError::unavailable("the log store is not open").into_response(),
            })
            .await
            .unwrap_or_else(|e| {
                GatewayError::unavailable(format!("dashboard failed: {e}")).into_response()
            })
        }
        (&Method::GET, p) if p.starts_with("/dashboard/logs/") => {
            let rest: Vec<String> = p["/dashboard/logs/".len()..]
                .split('/')
                .map(str::to_string)
                .collect();
            let [gateway, id] = rest.as_slice() else {
                return GatewayError::not_found("expected /dashboard/logs/{gateway}/{id}")
                    .into_response();
            };
            let (gateway, id) = (gateway.clone(), id.clone());
            let services = app.env.runtime.services.clone();
            tokio::task::spawn_blocking(move || match &services.logs {
                Some(store) => super::dashboard::detail(store, &gateway, &id),
                None => GatewayError::unavailable("the log store is not open").into_response(),
            })
            .await
            .unwrap_or_else(|e| {
                GatewayError::unavailable(format!("dashboard failed: {e}")).into_response()
            })
        }
        (&Method::GET, "/api/plugins") => json(StatusCode::OK, reloader.status()),
        (&Method::POST, "/api/reload") => match reloader.reload("admin API").await {
            Ok(generation) => json(
                StatusCode::OK,
                serde_json::json!({"generation": generation}),
            ),
            Err(message) => {
                GatewayError::new(StatusCode::UNPROCESSABLE_ENTITY, "reload_rejected", message)
                    .into_response()
            }
        },
        _ if path.starts_with("/api/gateways/") => gateway_api(app, req).await,
        _ if ["/api/keys", "/api/teams"]
            .iter()
            .any(|p| path == *p || path.starts_with(&format!("{p}/"))) =>
        {
            control_api(app, req).await
        }
        _ => GatewayError::not_found(format!("no admin route {} {path}", req.method()))
            .into_response(),
    }
}

/// Browsers must not be turned against the admin listener by another site. On a loopback
/// listener the `Host` must name loopback (a DNS-rebound name is refused); a request that
/// changes something must not come from another origin (`Origin`, `Sec-Fetch-Site`); and the
/// management API's POSTs must be JSON (a cross-site form or `no-cors` fetch cannot send it).
fn same_origin(app: &App, req: &Request<Incoming>) -> Result<(), GatewayError> {
    let forbidden = |m: String| GatewayError::new(StatusCode::FORBIDDEN, "forbidden", m);
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let host = header("host");
    let loopback_listener = app
        .generation()
        .config
        .admin_listen
        .is_some_and(|a| a.ip().is_loopback());
    if loopback_listener && !host.is_empty() {
        let name = host
            .rsplit_once(':')
            .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
            .map(|(h, _)| h)
            .unwrap_or(&host)
            .trim_matches(['[', ']']);
        let is_loopback = name.eq_ignore_ascii_case("localhost")
            || name
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !is_loopback {
            return Err(forbidden(format!(
                "Host '{host}' is not this loopback admin listener"
            )));
        }
    }
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return Ok(());
    }
    let fetch_site = header("sec-fetch-site");
    if !fetch_site.is_empty() && fetch_site != "same-origin" && fetch_site != "none" {
        return Err(forbidden(format!(
            "a {fetch_site} request may not change the gateway"
        )));
    }
    let origin = header("origin");
    if !origin.is_empty() && origin != "null" && origin.split("://").nth(1) != Some(host.as_str()) {
        return Err(forbidden(format!(
            "a request from {origin} may not change the gateway"
        )));
    }
    // A cross-site page can POST without asking (a form, a `no-cors` fetch) but never as JSON;
    // PUT, PATCH and DELETE from another site need a preflight, which this listener never
    // grants.
    if req.uri().path().starts_with("/client/v4/")
        && *req.method() == Method::POST
        && !header("content-type").starts_with("application/json")
    {
        return Err(GatewayError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "content-type: the management API takes application/json",
        ));
    }
    Ok(())
}

/// Serves the admin API on `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    limits: super::listener::Limits,
    app: Arc<App>,
    reloader: Arc<Reloader>,
    token: Option<String>,
) {
    let token: Option<Arc<str>> = token.map(Arc::from);
    let services = app.env.runtime.services.clone();
    super::listener::accept_loop(
        "server.admin_listen",
        listener,
        limits,
        services,
        move |req, peer| {
            let (app, reloader, token) = (app.clone(), reloader.clone(), token.clone());
            let peer = peer.to_string();
            async move { route(app, reloader, token, req, peer).await }
        },
    )
    .await
}

fn parse_bool(name: &str, v: &str) -> Result<bool, GatewayError> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(GatewayError::bad_request(format!(
            "{name}: expected true or false"
        ))),
    }
}

fn parse_int(name: &str, v: &str) -> Result<i64, GatewayError> {
    v.parse::<i64>()
        .map_err(|_| GatewayError::bad_request(format!("{name}: expected an integer")))
}

type StoreJob = Box<
    dyn FnOnce(&crate::store::logs::LogStore) -> Result<serde_json::Value, GatewayError> + Send,
>;

/// Runs a log-store job on the blocking pool (SQLite is synchronous).
async fn on_store(app: &App, job: StoreJob) -> Result<serde_json::Value, GatewayError> {
    let services = app.env.runtime.services.clone();
    tokio::task::spawn_blocking(move || match &services.logs {
        Some(store) => job(store),
        None => Err(GatewayError::unavailable("the log store is not open")),
    })
    .await
    .map_err(|e| GatewayError::unavailable(format!("log query failed: {e}")))?
}

/// `/api/keys…` and `/api/teams…` (virtual keys and teams).
async fn control_api(app: Arc<App>, req: Request<Incoming>) -> Response<GatewayBody> {
    use http_body_util::BodyExt;
    let Some(ring) = app.env.keys.clone() else {
        return GatewayError::unavailable("virtual keys need the log store, which is not open")
            .into_response();
    };
    let (parts, body) = req.into_parts();
    let body = match http_body_util::Limited::new(body, 64 * 1024)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return GatewayError::bad_request("body: expected at most 64 KiB of JSON")
                .into_response();
        }
    };
    let ctx = crate::control::api::Ctx {
        ring,
        generation: app.generation(),
    };
    let path = parts.uri.path();
    match ctx
        .route(&parts.method, path, parts.uri.query().unwrap_or(""), &body)
        .await
    {
        Some(Ok((status, value))) => json(status, value),
        Some(Err(e)) => e.into_response(),
        None => GatewayError::not_found(format!("no admin route {} {path}", parts.method))
            .into_response(),
    }
}

/// `/api/gateways/{gw}/logs[/{id}]` and `/api/gateways/{gw}/analytics`.
async fn gateway_api(app: Arc<App>, req: Request<Incoming>) -> Response<GatewayBody> {
    match gateway_api_inner(app, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn gateway_api_inner(
    app: Arc<App>,
    req: Request<Incoming>,
) -> Result<Response<GatewayBody>, GatewayError> {
    use crate::store::logs::LogQuery;
    use http_body_util::BodyExt;
    let path = req.uri().path().to_string();
    let segments: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(str::to_string)
        .collect();
    let gateway = segments.get(2).cloned().unwrap_or_default();
    if !app.generation().gateways.contains_key(&gateway) {
        return Err(GatewayError::not_found(format!(
            "unknown gateway '{gateway}'"
        )));
    }
    let params: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let method = req.method().clone();
    let rest: Vec<&str> = segments.iter().skip(3).map(String::as_str).collect();
    match (method, rest.as_slice()) {
        (Method::GET, ["logs"]) => {
            let mut q = LogQuery {
                gateway: gateway.clone(),
                limit: 50,
                ..LogQuery::default()
            };
            for (k, v) in &params {
                match k.as_str() {
                    "provider" => q.provider = Some(v.clone()),
                    "model" => q.model = Some(v.clone()),
                    "status" => q.status = Some(parse_int(k, v)?),
                    "success" => q.success = Some(parse_bool(k, v)?),
                    "cached" => q.cached = Some(parse_bool(k, v)?),
                    "unpriced" => q.unpriced = Some(parse_bool(k, v)?),
                    "key" => q.key = Some(v.clone()),
                    "team" => q.team = Some(v.clone()),
                    "from" => q.from_ms = Some(parse_int(k, v)?),
                    "to" => q.to_ms = Some(parse_int(k, v)?),
                    "min_duration_ms" => q.min_duration_ms = Some(parse_int(k, v)?),
                    "limit" => q.limit = parse_int(k, v)?.clamp(1, 1000) as usize,
                    "order" => {
                        q.ascending = match v.as_str() {
                            "asc" => true,
                            "desc" => false,
                            _ => {
                                return Err(GatewayError::bad_request(
                                    "order: expected asc or desc",
                                ));
                            }
                        }
                    }
                    "cursor" => {
                        let (a, b) = v.split_once(':').ok_or_else(|| {
                            GatewayError::bad_request(
                                "cursor: expected the next_cursor of a previous page",
                            )
                        })?;
                        q.cursor = Some((parse_int("cursor", a)?, parse_int("cursor", b)?));
                    }
                    _ if k.starts_with("meta.") => q.metadata.push((k[5..].to_string(), v.clone())),
                    other => {
                        return Err(GatewayError::bad_request(format!(
                            "{other}: unknown parameter"
                        )));
                    }
                }
            }
            let page = on_store(
                &app,
                Box::new(move |store| {
                    let (logs, next) = store.query(&q)?;
                    Ok(serde_json::json!({"logs": logs, "next_cursor": next}))
                }),
            )
            .await?;
            Ok(json(StatusCode::OK, page))
        }
        (Method::POST, ["logs", "recost"]) => {
            let (mut from, mut to) = (None, crate::store::now_ms() as i64 + 1);
            for (k, v) in &params {
                match k.as_str() {
                    "since" | "from" => from = Some(parse_int(k, v)?),
                    "until" | "to" => to = parse_int(k, v)?,
                    other => {
                        return Err(GatewayError::bad_request(format!(
                            "{other}: unknown parameter (known: since, until)"
                        )));
                    }
                }
            }
            let Some(from) = from else {
                return Err(GatewayError::bad_request(
                    "since: required (milliseconds since the Unix epoch)",
                ));
            };
            if to <= from {
                return Err(GatewayError::bad_request("until: must be after since"));
            }
            let prices = app.generation().config.prices.clone();
            let report = on_store(
                &app,
                Box::new(move |store| {
                    let r = store.recost(&gateway, from, to, &prices)?;
                    Ok(serde_json::json!({
                        "gateway": gateway, "since": from, "until": to,
                        "price_catalog": prices.version(),
                        "scanned": r.scanned, "recosted": r.recosted, "unchanged": r.unchanged,
                        "unpriced": r.unpriced, "skipped": r.skipped,
                        "without_usage": r.without_usage,
                    }))
                }),
            )
            .await?;
            Ok(json(StatusCode::OK, report))
        }
        (Method::GET, ["logs", id]) => {
            let id = id.to_string();
            let entry =
                on_store(&app, Box::new(move |store| Ok(store.get(&gateway, &id)?))).await?;
            Ok(json(StatusCode::OK, entry))
        }
        (Method::PATCH, ["logs", id]) => {
            let id = id.to_string();
            let body = http_body_util::Limited::new(req.into_body(), 64 * 1024)
                .collect()
                .await
                .map_err(|_| GatewayError::bad_request("body: expected at most 64 KiB of JSON"))?
                .to_bytes();
            let patch: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| GatewayError::bad_request(format!("body: not JSON: {e}")))?;
            let entry = on_store(
                &app,
                Box::new(move |store| Ok(store.patch(&gateway, &id, &patch)?)),
            )
            .await?;
            Ok(json(StatusCode::OK, entry))
        }
        (Method::GET, ["analytics"]) => {
            let now = crate::store::now_ms() as i64;
            let (mut from, mut to, mut bucket, mut group_by) =
                (now - 86_400_000, now + 1, 3_600_000i64, None);
            for (k, v) in &params {
                match k.as_str() {
                    "from" => from = parse_int(k, v)?,
                    "to" => to = parse_int(k, v)?,
                    "bucket" => {
                        bucket = match v.as_str() {
                            "minute" => 60_000,
                            "hour" => 3_600_000,
                            "day" => 86_400_000,
                            _ => {
                                return Err(GatewayError::bad_request(
                                    "bucket: expected minute, hour or day",
                                ));
                            }
                        }
                    }
                    "group_by" => group_by = Some(v.clone()),
                    other => {
                        return Err(GatewayError::bad_request(format!(
                            "{other}: unknown parameter"
                        )));
                    }
                }
            }
            if to <= from {
                return Err(GatewayError::bad_request("to: must be after from"));
            }
            if (to - from) / bucket > 10_000 {
                return Err(GatewayError::bad_request(
                    "bucket: more than 10000 buckets in the range",
                ));
            }
            let report = on_store(
                &app,
                Box::new(move |store| {
                    Ok(store.analytics(&gateway, from, to, bucket, group_by.as_deref())?)
                }),
            )
            .await?;
            Ok(json(StatusCode::OK, report))
        }
        _ => Err(GatewayError::not_found(format!(
            "no admin route for {path}"
        ))),
    }
}
