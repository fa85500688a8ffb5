//! Cloudflare's AI Gateway management API on the admin listener, so Cloudflare's own SDKs
//! (`Cloudflare(api_token=ADMIN_TOKEN, base_url="http://ADMIN/client/v4")`) manage aigw:
//!
//! | route (under `/client/v4/accounts/{account}/ai-gateway`) | does |
//! |---|---|
//! | `GET /gateways?page=&per_page=&search=` | lists the account's gateways |
//! | `POST /gateways` | creates one (written to the TOML, applied by a reload) |
//! | `GET /gateways/{id}` | one gateway |
//! | `PUT /gateways/{id}` | changes its settings |
//! | `DELETE /gateways/{id}` | removes it from the TOML |
//! | `GET /gateways/{id}/logs?…` | its logs, with Cloudflare's filters |
//! | `DELETE /gateways/{id}/logs?…` | deletes the logs a filter matches |
//! | `GET/PATCH /gateways/{id}/logs/{log}` | one log; feedback, score, metadata |
//! | `GET /gateways/{id}/logs/{log}/request` and `/response` | the stored bodies |
//! | `GET /gateways/{id}/changes` (aigw's own) | who changed the gateway, when, and what |
//!
//! Answers use Cloudflare's envelope (`success`, `errors`, `messages`, `result`,
//! `result_info`); errors carry a code and a message naming the field, with the HTTP status
//! the SDKs map to their exceptions. An unknown field, or a field aigw does not support
//! (other than at its off value), is a 400. Fields that only apply with another (an interval or
//! technique without a limit, a retry delay or backoff without attempts) are ignored without it,
//! as Cloudflare does.

use super::App;
use super::reload::Reloader;
use crate::control::changes::{self, GatewayMeta};
use crate::control::manage::{self, Settings};
use crate::http::body::GatewayBody;
use crate::http::error::GatewayError;
use crate::store::logs::db::Arg;
use crate::store::logs::select::{Cond, Field, Op, Selection};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// One change at a time: read the file, edit, write, reload.
pub(super) static EDITING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn envelope(status: StatusCode, body: Value) -> Response<GatewayBody> {
    let mut r = Response::new(GatewayBody::full(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn ok(result: Value) -> Response<GatewayBody> {
    envelope(
        StatusCode::OK,
        json!({"success": true, "errors": [], "messages": [], "result": result}),
    )
}

/// A failure in Cloudflare's shape; the SDKs map the status to their exception, and
/// `x-should-retry: false` keeps them from retrying a conflict.
fn failure(e: &GatewayError) -> Response<GatewayBody> {
    let code = 7000 + u32::from(e.status.as_u16());
    let mut r = envelope(
        e.status,
        json!({"success": false, "errors": [{"code": code, "message": e.message}],
               "messages": [], "result": null}),
    );
    r.headers_mut().insert(
        "x-should-retry",
        hyper::header::HeaderValue::from_static("false"),
    );
    r
}

fn bad(field: &str, message: impl std::fmt::Display) -> GatewayError {
    GatewayError::bad_request(format!("{field}: {message}"))
}

fn rfc3339(ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(at).to_string()
}

/// Milliseconds since the epoch of an RFC 3339 time (`2024-01-02T03:04:05Z`, an offset or
/// none: UTC), or of a date alone, or a number of ms.
fn parse_time(field: &str, v: &str) -> Result<i64, GatewayError> {
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(ms);
    }
    // An explicit offset (`+02:00`) moves the instant; the parser takes UTC only.
    let (base, offset_ms) = match v.len().checked_sub(6).map(|i| (i, v.as_bytes())) {
        Some((i, b)) if i >= 10 && (b[i] == b'+' || b[i] == b'-') && b[i + 3] == b':' => {
            let sign = if b[i] == b'-' { -1 } else { 1 };
            let h = v[i + 1..i + 3].parse::<i64>().ok();
            let m = v[i + 4..].parse::<i64>().ok();
            match (h, m) {
                (Some(h), Some(m)) => (&v[..i], sign * (h * 60 + m) * 60_000),
                _ => (v, 0),
            }
        }
        _ => (v, 0),
    };
    let t = humantime::parse_rfc3339_weak(base)
        .or_else(|_| humantime::parse_rfc3339_weak(&format!("{base} 00:00:00")))
        .map_err(|_| {
            bad(
                field,
                "expected an RFC 3339 time, e.g. 2025-01-31T00:00:00Z",
            )
        })?;
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| bad(field, "before 1970"))?
        .as_millis() as i64;
    Ok(ms - offset_ms)
}

/// The API's entry point; `None` when the path is not under `/client/v4/accounts/`.
pub async fn route(
    app: &Arc<App>,
    reloader: &Arc<Reloader>,
    req: Request<Incoming>,
    peer: &str,
) -> Option<Response<GatewayBody>> {
    let path = req.uri().path().to_string();
    let rest = path.strip_prefix("/client/v4/accounts/")?;
    let segments: Vec<String> = rest
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    Some(match serve(app, reloader, req, &segments, peer).await {
        Ok(r) => r,
        Err(e) => failure(&e),
    })
}

async fn serve(
    app: &Arc<App>,
    reloader: &Arc<Reloader>,
    req: Request<Incoming>,
    segments: &[String],
    peer: &str,
) -> Result<Response<GatewayBody>, GatewayError> {
    use http_body_util::BodyExt;
    let [account, ai, rest @ ..] = segments else {
        return Err(GatewayError::not_found(
            "expected /client/v4/accounts/{account}/ai-gateway/…",
        ));
    };
    if ai != "ai-gateway" || account.is_empty() {
        return Err(GatewayError::not_found(format!(
            "no route /client/v4/accounts/{account}/{ai}: aigw serves ai-gateway only"
        )));
    }
    let params: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let actor = format!(
        "admin token from {peer} ({})",
        req.headers()
            .get(hyper::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("no user agent")
            .chars()
            .take(80)
            .collect::<String>()
    );
    let method = req.method().clone();
    let body = http_body_util::Limited::new(req.into_body(), 256 * 1024)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|_| GatewayError::bad_request("body: expected at most 256 KiB of JSON"))?;
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let api = Api {
        app,
        reloader,
        account,
        actor,
    };
    match (method, rest.as_slice()) {
        (Method::GET, ["gateways"]) => api.list(&params).await,
        (Method::POST, ["gateways"]) => api.create(&body).await,
        (Method::GET, ["gateways", id]) => api.get(id).await.map(ok),
        (Method::PUT, ["gateways", id]) => api.update(id, &body).await,
        (Method::DELETE, ["gateways", id]) => api.delete(id).await,
        (Method::GET, ["gateways", id, "changes"]) => api.changes(id).await,
        (Method::GET, ["gateways", id, "logs"]) => api.logs(id, &params).await,
        (Method::DELETE, ["gateways", id, "logs"]) => api.delete_logs(id, &params).await,
        (Method::GET, ["gateways", id, "logs", log]) => api.log(id, log).await,
        (Method::PATCH, ["gateways", id, "logs", log]) => api.patch_log(id, log, &body).await,
        (Method::GET, ["gateways", id, "logs", log, part @ ("request" | "response")]) => {
            api.body(id, log, part).await
        }
        (m, _) => Err(GatewayError::not_found(format!(
            "no route {m} /client/v4/accounts/{account}/ai-gateway/{}",
            rest.join("/")
        ))),
    }
}

/// The management operations, shared by this API and the console's forms.
pub(super) struct Api<'a> {
    pub(super) app: &'a Arc<App>,
    pub(super) reloader: &'a Arc<Reloader>,
    pub(super) account: &'a str,
    pub(super) actor: String,
}

fn page_params(params: &[(String, String)]) -> Result<(usize, usize), GatewayError> {
    let mut page = 1usize;
    let mut per_page = 20usize;
    for (k, v) in params {
        match k.as_str() {
            "page" => {
                page = v
                    .parse::<usize>()
                    .ok()
                    .filter(|p| *p >= 1)
                    .ok_or_else(|| bad("page", "expected an integer from 1"))?
            }
            "per_page" => {
                per_page = v
                    .parse::<usize>()
                    .ok()
                    .filter(|p| (1..=1000).contains(p))
                    .ok_or_else(|| bad("per_page", "expected an integer from 1 to 1000"))?
            }
            _ => {}
        }
    }
    Ok((page, per_page))
}

fn list_envelope(
    result: Vec<Value>,
    page: usize,
    per_page: usize,
    total: u64,
) -> Response<GatewayBody> {
    let count = result.len();
    envelope(
        StatusCode::OK,
        json!({"success": true, "errors": [], "messages": [], "result": result,
               "result_info": {"page": page, "per_page": per_page, "count": count, "total_count": total}}),
    )
}

/// A JSON object body.
fn object(body: &[u8]) -> Result<Map<String, Value>, GatewayError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(bad("body", "expected a JSON object")),
        Err(e) => Err(bad("body", format!("not JSON: {e}"))),
    }
}

/// Fields Cloudflare has that aigw does not do: accepted only at their off value.
const UNSUPPORTED: [&str; 14] = [
    "logpush",
    "logpush_public_key",
    "byok_only",
    "zdr",
    "dlp",
    "guardrails",
    "otel",
    "spend_limits",
    "stripe",
    "store_id",
    "workers_ai_billing_mode",
    "log_classification",
    "is_default",
    "wholesale",
];

/// The settings a create or update body asks for, from `base` (what the gateway has).
fn settings_from(
    body: &Map<String, Value>,
    base: &Settings,
    creating: bool,
) -> Result<(Settings, Option<bool>), GatewayError> {
    let mut s = base.clone();
    let mut invalidate = None;
    let uint = |k: &str, v: &Value| -> Result<Option<u64>, GatewayError> {
        match v {
            Value::Null => Ok(None),
            v => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| bad(k, "expected a non-negative integer or null")),
        }
    };
    let text = |k: &str, v: &Value, allowed: &[&str]| -> Result<Option<String>, GatewayError> {
        match v {
            Value::Null => Ok(None),
            Value::String(t) if allowed.contains(&t.as_str()) => Ok(Some(t.clone())),
            _ => Err(bad(k, format!("expected one of {}", allowed.join(", ")))),
        }
    };
    let boolean = |k: &str, v: &Value| -> Result<bool, GatewayError> {
        v.as_bool().ok_or_else(|| bad(k, "expected true or false"))
    };
    for (k, v) in body {
        match k.as_str() {
            "id" if creating => {}
            "cache_ttl" => s.cache_ttl = uint(k, v)?.filter(|t| *t > 0),
            "cache_invalidate_on_update" => invalidate = Some(boolean(k, v)?),
            "collect_logs" => s.collect_logs = boolean(k, v)?,
            "rate_limiting_interval" => s.rate_limiting_interval = uint(k, v)?,
            "rate_limiting_limit" => s.rate_limiting_limit = uint(k, v)?.filter(|l| *l > 0),
            "rate_limiting_technique" => {
                s.rate_limiting_technique = text(k, v, &["fixed", "sliding"])?
            }
            "authentication" => s.authentication = boolean(k, v)?,
            "retry_max_attempts" => s.retry_max_attempts = uint(k, v)?.filter(|n| *n > 0),
            "retry_delay" => s.retry_delay = uint(k, v)?,
            "retry_backoff" => {
                s.retry_backoff = text(k, v, &["constant", "linear", "exponential"])?
            }
            "log_management" => {
                s.log_management = uint(k, v)?;
                if s.log_management
                    .is_some_and(|n| n == 0 || n > 1_000_000_000)
                {
                    return Err(bad(
                        k,
                        "expected 1 to 1000000000 entries, or null for no limit",
                    ));
                }
            }
            "log_management_strategy" => {
                s.log_management_strategy = text(k, v, &["DELETE_OLDEST", "STOP_INSERTING"])?
            }
            f if UNSUPPORTED.contains(&f) => {
                let off = matches!(v, Value::Null | Value::Bool(false))
                    || v.as_array().is_some_and(Vec::is_empty);
                if !off {
                    return Err(bad(
                        f,
                        "not supported by aigw (accepted only as null or false)",
                    ));
                }
            }
            other => return Err(bad(other, "unknown field")),
        }
    }
    if s.rate_limiting_limit.is_none() {
        s.rate_limiting_interval = None;
        s.rate_limiting_technique = None;
    } else if s.rate_limiting_interval.unwrap_or(0) == 0 {
        return Err(bad(
            "rate_limiting_interval",
            "expected a positive number of seconds with rate_limiting_limit",
        ));
    }
    if s.retry_max_attempts.is_none() {
        s.retry_delay = None;
        s.retry_backoff = None;
    }
    match (s.log_management, &s.log_management_strategy) {
        (None, _) => s.log_management_strategy = None,
        (Some(_), None) => s.log_management_strategy = Some("DELETE_OLDEST".into()),
        _ => {}
    }
    Ok((s, invalidate))
}

fn gateway_json(
    name: &str,
    s: &Settings,
    meta: Option<&GatewayMeta>,
    pipeline: &[String],
    fallback_ms: i64,
) -> Value {
    let created = meta.map(|m| m.created_at_ms).unwrap_or(fallback_ms);
    let modified = meta.map(|m| m.modified_at_ms).unwrap_or(fallback_ms);
    json!({
        "id": name,
        "created_at": rfc3339(created),
        "modified_at": rfc3339(modified),
        "cache_ttl": s.cache_ttl,
        "cache_invalidate_on_update": meta.is_some_and(|m| m.cache_invalidate_on_update),
        "collect_logs": s.collect_logs,
        "rate_limiting_interval": s.rate_limiting_interval,
        "rate_limiting_limit": s.rate_limiting_limit,
        "rate_limiting_technique": s.rate_limiting_technique.clone().unwrap_or_else(|| "fixed".into()),
        "authentication": s.authentication,
        "retry_max_attempts": s.retry_max_attempts,
        "retry_delay": s.retry_delay,
        "retry_backoff": s.retry_backoff,
        "log_management": s.log_management,
        "log_management_strategy": s.log_management_strategy,
        "logpush": false,
        "pipeline": pipeline,
    })
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn sha256(text: &str) -> String {
    crate::runtime::sha256_hex(text.as_bytes())
}

/// Writes `text` to `path` atomically (a temporary file beside it, then a rename).
fn write_atomically(path: &std::path::Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| format!("cannot write beside {}: {e}", path.display()))?;
    tmp.write_all(text.as_bytes())
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    // Keep the file's permissions (it may hold secrets).
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(tmp.path(), meta.permissions());
    }
    tmp.persist(path)
        .map_err(|e| format!("cannot replace {}: {e}", path.display()))?;
    Ok(())
}

impl Api<'_> {
    async fn db<R: Send + 'static>(
        &self,
        f: impl FnOnce(&crate::store::logs::LogStore) -> Result<R, GatewayError> + Send + 'static,
    ) -> Result<R, GatewayError> {
        let services = self.app.env.runtime.services.clone();
        tokio::task::spawn_blocking(move || match &services.logs {
            Some(store) => f(store),
            None => Err(GatewayError::unavailable("the log store is not open")),
        })
        .await
        .map_err(|e| GatewayError::unavailable(format!("log store job failed: {e}")))?
    }

    /// The gateway `id` of this account in the running configuration.
    pub(super) fn configured(
        &self,
        id: &str,
    ) -> Result<crate::config::GatewayConfig, GatewayError> {
        let generation = self.app.generation();
        generation
            .config
            .gateways
            .get(id)
            .filter(|g| g.accounts.iter().any(|a| a == "*" || a == self.account))
            .cloned()
            .ok_or_else(|| {
                GatewayError::not_found(format!(
                    "gateway '{id}' not found in account '{}'",
                    self.account
                ))
            })
    }

    pub(super) async fn get(&self, id: &str) -> Result<Value, GatewayError> {
        let gw = self.configured(id)?;
        let name = id.to_string();
        let meta = self
            .db(move |s| Ok(s.with_db(|db| changes::meta(db, &name))?))
            .await
            .unwrap_or(None);
        let loaded = self.app.generation().config.loaded_at_ms as i64;
        Ok(gateway_json(
            id,
            &Settings::of(&gw),
            meta.as_ref(),
            &gw.pipeline,
            loaded,
        ))
    }

    async fn list(
        &self,
        params: &[(String, String)],
    ) -> Result<Response<GatewayBody>, GatewayError> {
        let (page, per_page) = page_params(params)?;
        let mut search = None;
        for (k, v) in params {
            match k.as_str() {
                "page" | "per_page" => {}
                "search" => search = Some(v.to_lowercase()),
                "order_by" | "order_by_direction" => {}
                other => {
                    return Err(bad(
                        other,
                        "unknown parameter (known: page, per_page, search)",
                    ));
                }
            }
        }
        let generation = self.app.generation();
        let names: Vec<String> = generation
            .config
            .gateways
            .iter()
            .filter(|(_, g)| g.accounts.iter().any(|a| a == "*" || a == self.account))
            .map(|(n, _)| n.clone())
            .filter(|n| search.as_ref().is_none_or(|q| n.to_lowercase().contains(q)))
            .collect();
        let total = names.len() as u64;
        let mut out = Vec::new();
        for name in names
            .iter()
            .skip((page - 1).saturating_mul(per_page))
            .take(per_page)
        {
            out.push(self.get(name).await?);
        }
        Ok(list_envelope(out, page, per_page, total))
    }

    /// Reads the file (409 when it is not what the running configuration was loaded
    /// from), edits it, checks the result, writes it atomically and reloads; on a rejected
    /// reload the old text goes back.
    pub(super) async fn edit(
        &self,
        edit: impl FnOnce(&mut toml_edit::DocumentMut) -> Result<(), GatewayError>,
    ) -> Result<(), GatewayError> {
        let config = self.app.generation().config.clone();
        let path = config.file.clone();
        let old = std::fs::read_to_string(&path).map_err(|e| {
            GatewayError::unavailable(format!("cannot read {}: {e}", path.display()))
        })?;
        if sha256(&old) != config.text_sha256 {
            return Err(GatewayError::new(
                StatusCode::CONFLICT,
                "config_changed",
                format!(
                    "{} changed on disk since the running configuration was loaded (a hand edit not applied yet, or one the gateway rejected); nothing was changed: apply or fix the file (POST /api/reload), then retry",
                    path.display()
                ),
            ));
        }
        let mut doc: toml_edit::DocumentMut = old.parse().map_err(|e| {
            GatewayError::unavailable(format!("{} does not parse: {e}", path.display()))
        })?;
        edit(&mut doc)?;
        let new = doc.to_string();
        crate::config::Config::parse(&path, &new)
            .map_err(|e| GatewayError::bad_request(e.to_string()))?;
        // Write, reload and (on a rejected reload) restore run to the end even when the
        // client goes away: a task that owns everything, awaited here.
        let reloader = self.reloader.clone();
        let expected = config.text_sha256.clone();
        let job = tokio::spawn(async move {
            // A symlinked config (a mounted ConfigMap) is written where it points.
            let target = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            let write = |text: String| {
                let target = target.clone();
                async move {
                    tokio::task::spawn_blocking(move || {
                        // A hand edit saved since the check above is not overwritten.
                        match std::fs::read_to_string(&target) {
                            Ok(now) if sha256(&now) != expected && now != text => {
                                Err("the file changed on disk while the change was being made"
                                    .to_string())
                            }
                            _ => write_atomically(&target, &text),
                        }
                    })
                    .await
                    .unwrap_or_else(|e| Err(format!("write task failed: {e}")))
                }
            };
            write(new)
                .await
                .map_err(|m| GatewayError::new(StatusCode::CONFLICT, "config_changed", m))?;
            if let Err(reason) = reloader.reload("management API").await {
                // Back to what was running (the generation never changed): the file and the
                // generation agree again.
                let restored = tokio::task::spawn_blocking({
                    let target = target.clone();
                    move || write_atomically(&target, &old)
                })
                .await
                .unwrap_or_else(|e| Err(format!("restore task failed: {e}")));
                return Err(GatewayError::new(
                    StatusCode::BAD_REQUEST,
                    "reload_rejected",
                    match restored {
                        Ok(()) => format!("the change was not applied: {reason}"),
                        Err(e) => format!(
                            "the change was not applied: {reason}; restoring the file failed: {e}"
                        ),
                    },
                ));
            }
            Ok(())
        });
        job.await
            .map_err(|e| GatewayError::unavailable(format!("config edit task failed: {e}")))?
    }

    pub(super) async fn record(
        &self,
        name: &str,
        meta: Option<GatewayMeta>,
        action: &'static str,
        detail: Value,
    ) {
        let (name, actor) = (name.to_string(), self.actor.clone());
        let now = crate::store::now_ms() as i64;
        let done = self
            .db(move |s| {
                Ok(s.with_db(|db| {
                    changes::record(db, &name, meta.as_ref(), &actor, action, &detail, now)
                })?)
            })
            .await;
        if let Err(e) = done {
            tracing::warn!("management API: the change was applied but not recorded: {e}");
        }
    }

    /// Records a change that leaves the gateway's record as it is.
    pub(super) async fn note(&self, name: &str, action: &'static str, detail: Value) {
        let (name, actor) = (name.to_string(), self.actor.clone());
        let now = crate::store::now_ms() as i64;
        let done = self
            .db(move |s| {
                Ok(
                    s.with_db(|db| {
                        changes::record_change(db, &name, &actor, action, &detail, now)
                    })?,
                )
            })
            .await;
        if let Err(e) = done {
            tracing::warn!("the change was applied but not recorded: {e}");
        }
    }

    pub(super) async fn create(&self, body: &[u8]) -> Result<Response<GatewayBody>, GatewayError> {
        let body = object(body)?;
        let id = match body.get("id") {
            Some(Value::String(s)) if valid_name(s) => s.clone(),
            Some(_) => {
                return Err(bad(
                    "id",
                    "expected a name of letters, digits, '-' and '_' (at most 64)",
                ));
            }
            None => return Err(bad("id", "required")),
        };
        let (settings, invalidate) = settings_from(&body, &Settings::default(), true)?;
        // The account becomes the gateway's `accounts`: a name, or `*` from the console only.
        if !(valid_name(self.account) || (self.account == "*" && self.actor.starts_with("console")))
        {
            return Err(bad(
                "account_id",
                "expected an account name of letters, digits, '-' and '_'",
            ));
        }
        let _one = EDITING.lock().await;
        let account = self.account.to_string();
        let name = id.clone();
        self.edit(|doc| {
            if manage::exists(doc, &name) {
                return Err(GatewayError::new(
                    StatusCode::CONFLICT,
                    "gateway_exists",
                    format!("id: a gateway named '{name}' already exists"),
                ));
            }
            manage::apply(doc, &name, &Settings::default(), &settings)
                .map_err(|e| bad(&e.field, e.message))?;
            if let Some(t) = doc
                .get_mut("gateways")
                .and_then(|g| g.get_mut(&name))
                .and_then(toml_edit::Item::as_table_mut)
            {
                let mut accounts = toml_edit::Array::new();
                accounts.push(account.as_str());
                t.insert("accounts", toml_edit::value(accounts));
            }
            Ok(())
        })
        .await?;
        let now = crate::store::now_ms() as i64;
        let meta = GatewayMeta {
            created_at_ms: now,
            modified_at_ms: now,
            cache_invalidate_on_update: invalidate.unwrap_or(false),
        };
        self.record(&id, Some(meta), "create", Value::Object(body))
            .await;
        Ok(ok(self.get(&id).await?))
    }

    pub(super) async fn update(
        &self,
        id: &str,
        body: &[u8],
    ) -> Result<Response<GatewayBody>, GatewayError> {
        let body = object(body)?;
        let _one = EDITING.lock().await;
        let gw = self.configured(id)?;
        let current = Settings::of(&gw);
        let (settings, invalidate) = settings_from(&body, &current, false)?;
        let name = id.to_string();
        let meta_name = name.clone();
        let old_meta = self
            .db(move |s| Ok(s.with_db(|db| changes::meta(db, &meta_name))?))
            .await
            .unwrap_or(None);
        let invalidate = invalidate.unwrap_or_else(|| {
            old_meta
                .as_ref()
                .is_some_and(|m| m.cache_invalidate_on_update)
        });
        let now = crate::store::now_ms() as i64;
        let changed = settings != current;
        self.edit(|doc| {
            manage::apply(doc, &name, &current, &settings).map_err(|e| bad(&e.field, e.message))?;
            // Cached answers made under the old settings are not served again.
            if invalidate && changed && settings.cache_ttl.is_some() {
                manage::invalidate_cache(doc, &name, &now.to_string());
            }
            Ok(())
        })
        .await?;
        let loaded = self.app.generation().config.loaded_at_ms as i64;
        let meta = GatewayMeta {
            created_at_ms: old_meta.as_ref().map(|m| m.created_at_ms).unwrap_or(loaded),
            modified_at_ms: now,
            cache_invalidate_on_update: invalidate,
        };
        self.record(id, Some(meta), "update", Value::Object(body))
            .await;
        Ok(ok(self.get(id).await?))
    }

    pub(super) async fn delete(&self, id: &str) -> Result<Response<GatewayBody>, GatewayError> {
        let _one = EDITING.lock().await;
        let before = self.get(id).await?;
        let name = id.to_string();
        self.edit(|doc| {
            if !manage::remove(doc, &name) {
                return Err(GatewayError::not_found(format!(
                    "gateway '{name}' is not in the config file"
                )));
            }
            Ok(())
        })
        .await?;
        self.record(id, None, "delete", json!({})).await;
        Ok(ok(before))
    }

    async fn changes(&self, id: &str) -> Result<Response<GatewayBody>, GatewayError> {
        self.logs_gateway(id)?;
        let name = id.to_string();
        let list = self
            .db(move |s| Ok(s.with_db(|db| changes::changes(db, Some(&name), 100))?))
            .await?;
        Ok(ok(Value::Array(list)))
    }

    /// A gateway of the running configuration whose logs may be read (also one deleted
    /// from the config, whose logs remain).
    fn logs_gateway(&self, id: &str) -> Result<String, GatewayError> {
        if !valid_name(id) {
            return Err(bad("id", "not a gateway name"));
        }
        // A configured gateway's logs belong to its accounts; a deleted gateway's logs stay
        // readable (and deletable) until they are cleaned up.
        if self.app.generation().config.gateways.contains_key(id) {
            self.configured(id)?;
        }
        Ok(id.to_string())
    }

    async fn logs(
        &self,
        id: &str,
        params: &[(String, String)],
    ) -> Result<Response<GatewayBody>, GatewayError> {
        let gateway = self.logs_gateway(id)?;
        let (page, per_page) = page_params(params)?;
        let mut sel = selection(gateway, params, true)?;
        sel.offset = (page - 1)
            .checked_mul(per_page)
            .ok_or_else(|| bad("page", "too large"))?;
        sel.limit = per_page;
        let (entries, total) = self.db(move |s| Ok(s.select(&sel)?)).await?;
        Ok(list_envelope(
            entries.iter().map(log_json).collect(),
            page,
            per_page,
            total,
        ))
    }

    async fn delete_logs(
        &self,
        id: &str,
        params: &[(String, String)],
    ) -> Result<Response<GatewayBody>, GatewayError> {
        let gateway = self.logs_gateway(id)?;
        let mut limit = None;
        for (k, v) in params {
            if k == "limit" {
                limit = Some(
                    v.parse::<usize>()
                        .ok()
                        .filter(|n| (1..=10_000_000).contains(n))
                        .ok_or_else(|| bad("limit", "expected an integer from 1 to 10000000"))?,
                );
            }
        }
        let sel = selection(gateway, params, false)?;
        let actor = self.actor.clone();
        let detail =
            json!({"query": params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>()});
        let name = id.to_string();
        let deleted = self
            .db(move |s| {
                let n = s.delete_selected(&sel, limit)?;
                let now = crate::store::now_ms() as i64;
                let mut detail = detail;
                detail["deleted"] = json!(n);
                s.with_db(|db| {
                    changes::record_change(db, &name, &actor, "delete_logs", &detail, now)
                })?;
                Ok(n)
            })
            .await?;
        Ok(envelope(
            StatusCode::OK,
            json!({"success": true, "errors": [], "messages": [], "result": {"deleted": deleted}}),
        ))
    }

    async fn entry(&self, id: &str, log: &str) -> Result<Value, GatewayError> {
        let gateway = self.logs_gateway(id)?;
        let log = log.to_string();
        self.db(move |s| Ok(s.get(&gateway, &log)?)).await
    }

    async fn log(&self, id: &str, log: &str) -> Result<Response<GatewayBody>, GatewayError> {
        let entry = self.entry(id, log).await?;
        Ok(ok(log_json(&entry)))
    }

    async fn patch_log(
        &self,
        id: &str,
        log: &str,
        body: &[u8],
    ) -> Result<Response<GatewayBody>, GatewayError> {
        let gateway = self.logs_gateway(id)?;
        let mut patch = object(body)?;
        // Cloudflare sends null for what it does not change, and 0 for thumbs down.
        patch.retain(|_, v| !v.is_null());
        if patch.get("feedback").and_then(Value::as_i64) == Some(0) {
            patch.insert("feedback".into(), json!(-1));
        }
        let log = log.to_string();
        let entry = self
            .db(move |s| Ok(s.patch(&gateway, &log, &Value::Object(patch))?))
            .await?;
        Ok(ok(log_json(&entry)))
    }

    async fn body(
        &self,
        id: &str,
        log: &str,
        part: &str,
    ) -> Result<Response<GatewayBody>, GatewayError> {
        let entry = self.entry(id, log).await?;
        let field = if part == "request" {
            "request_body"
        } else {
            "response_body"
        };
        let text = match &entry[field] {
            Value::String(s) => s.clone(),
            Value::Null => {
                return Err(GatewayError::not_found(format!(
                    "log '{log}' has no stored {part} body (payloads off, or collect_payload = false)"
                )));
            }
            other => other.to_string(),
        };
        let is_json = serde_json::from_str::<Value>(&text).is_ok();
        let mut r = Response::new(GatewayBody::full(text));
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(if is_json {
                "application/json"
            } else {
                "text/plain; charset=utf-8"
            }),
        );
        Ok(r)
    }
}

/// A stored entry in Cloudflare's log shape (aigw's own fields kept beside).
fn log_json(e: &Value) -> Value {
    let mut out = json!({
        "id": e["id"],
        "created_at": rfc3339(e["created_at"].as_i64().unwrap_or(0)),
        "cached": e["cached"].as_bool().unwrap_or(false),
        "success": e["success"].as_bool().unwrap_or(false),
        "provider": e["provider"].as_str().unwrap_or(""),
        "model": e["model"].as_str().unwrap_or(""),
        "path": e["path"].as_str().unwrap_or(""),
        "duration": e["duration_ms"].as_i64().unwrap_or(0),
        "status_code": e["status"],
        "tokens_in": e["tokens_in"],
        "tokens_out": e["tokens_out"],
        "cost": e["cost"],
        "custom_cost": e["cost_source"] == "custom",
        "metadata": match &e["metadata"] {
            Value::Null => Value::Null,
            m => Value::String(m.to_string()),
        },
        "feedback": e["feedback"],
        "score": e["score"],
        "event_id": e["event_id"],
        "request_size": e["request_size"],
        "response_size": e["response_size"],
    });
    for extra in [
        "key_id",
        "team",
        "usage",
        "price_catalog",
        "outcome",
        "attempts",
        "streamed",
    ] {
        if !e[extra].is_null() {
            out[extra] = e[extra].clone();
        }
    }
    out
}

/// Cloudflare's log filters as a selection: the direct parameters and `filters`.
fn selection(
    gateway: String,
    params: &[(String, String)],
    listing: bool,
) -> Result<Selection, GatewayError> {
    let mut sel = Selection {
        gateway,
        limit: 20,
        ..Selection::default()
    };
    let boolean = |k: &str, v: &str| -> Result<Arg, GatewayError> {
        match v {
            "true" | "1" => Ok(Arg::Int(1)),
            "false" | "0" => Ok(Arg::Int(0)),
            _ => Err(bad(k, "expected true or false")),
        }
    };
    let number = |k: &str, v: &str| -> Result<Arg, GatewayError> {
        v.parse::<f64>()
            .map(Arg::Float)
            .map_err(|_| bad(k, "expected a number"))
    };
    let mut push = |field: Field, op: Op, value: Arg| {
        sel.conds.push(Cond {
            field,
            op,
            values: vec![value],
        });
    };
    let (mut keys, mut ops, mut values) = (Vec::new(), Vec::new(), Vec::new());
    for (k, v) in params {
        match k.as_str() {
            "page" | "per_page" | "limit" => {}
            "order_by" => {
                sel.order_by = Some(match v.as_str() {
                    "created_at" => "created_at",
                    "provider" => "provider",
                    "model" | "model_type" => "model",
                    "success" => "success",
                    "cached" => "cached",
                    "cost" => "cost",
                    "tokens_in" => "tokens_in",
                    "tokens_out" => "tokens_out",
                    "duration" => "duration_ms",
                    other => {
                        return Err(bad(
                            "order_by",
                            format!(
                                "'{other}' is not a sortable field (created_at, provider, model, success, cached, cost, tokens_in, tokens_out, duration)"
                            ),
                        ));
                    }
                })
            }
            "order_by_direction" | "direction" => {
                sel.ascending = match v.as_str() {
                    "asc" => true,
                    "desc" => false,
                    _ => return Err(bad(k, "expected asc or desc")),
                }
            }
            "search" => sel.search = Some(v.clone()),
            "cached" => push(Field::Column("cached"), Op::Eq, boolean(k, v)?),
            "success" => push(Field::Column("success"), Op::Eq, boolean(k, v)?),
            "model" => push(Field::Column("model"), Op::Eq, Arg::Text(v.clone())),
            "provider" => push(Field::Column("provider"), Op::Eq, Arg::Text(v.clone())),
            "feedback" => push(
                Field::Entry("feedback"),
                Op::Eq,
                Arg::Text(match v.as_str() {
                    "0" => "-1".to_string(),
                    other => other.to_string(),
                }),
            ),
            "start_date" => push(
                Field::Column("created_at"),
                Op::Ge,
                Arg::Int(parse_time(k, v)?),
            ),
            "end_date" => push(
                Field::Column("created_at"),
                Op::Le,
                Arg::Int(parse_time(k, v)?),
            ),
            "min_cost" | "max_cost" | "min_duration" | "max_duration" | "min_tokens_in"
            | "max_tokens_in" | "min_tokens_out" | "max_tokens_out" => {
                let (bound, what) = k.split_once('_').unwrap_or(("min", "cost"));
                let column = match what {
                    "cost" => "cost",
                    "duration" => "duration_ms",
                    "tokens_in" => "tokens_in",
                    _ => "tokens_out",
                };
                let op = if bound == "min" { Op::Ge } else { Op::Le };
                push(Field::Column(column), op, number(k, v)?);
            }
            "filters.key" => keys.push(v.clone()),
            "filters.operator" => ops.push(v.clone()),
            "filters.value" => values.push(v.clone()),
            "meta_info" | "request_content_type" | "response_content_type" | "model_type"
                if listing =>
            {
                return Err(bad(k, "not supported by aigw"));
            }
            other => return Err(bad(other, "unknown parameter")),
        }
    }
    sel.conds.extend(filters(&keys, &ops, &values)?);
    Ok(sel)
}

/// `filters` as the SDKs send them: `filters.key`, `filters.operator` and `filters.value`,
/// repeated, in order. One key takes every value; otherwise keys and values pair one to one.
fn filters(keys: &[String], ops: &[String], values: &[String]) -> Result<Vec<Cond>, GatewayError> {
    if keys.is_empty() && ops.is_empty() && values.is_empty() {
        return Ok(Vec::new());
    }
    if keys.len() != ops.len() {
        return Err(bad("filters", "each filter needs a key and an operator"));
    }
    let per_key: Vec<Vec<&String>> = if keys.len() == 1 {
        vec![values.iter().collect()]
    } else if values.len() == keys.len() {
        values.iter().map(|v| vec![v]).collect()
    } else {
        return Err(bad(
            "filters",
            "with several filters, give each exactly one value (the query cannot say which value goes with which key)",
        ));
    };
    let mut out = Vec::new();
    for ((key, op), vals) in keys.iter().zip(ops).zip(per_key) {
        let op = Op::parse(op).ok_or_else(|| {
            bad(
                "filters.operator",
                format!("'{op}': expected eq, neq, contains, lt or gt"),
            )
        })?;
        let (field, numeric, boolean) = match key.as_str() {
            "id" => (Field::Column("id"), false, false),
            "created_at" => (Field::Column("created_at"), true, false),
            "success" => (Field::Column("success"), false, true),
            "cached" => (Field::Column("cached"), false, true),
            "provider" => (Field::Column("provider"), false, false),
            "model" => (Field::Column("model"), false, false),
            "cost" => (Field::Column("cost"), true, false),
            "tokens_in" => (Field::Column("tokens_in"), true, false),
            "tokens_out" => (Field::Column("tokens_out"), true, false),
            "duration" => (Field::Column("duration_ms"), true, false),
            "status_code" => (Field::Column("status"), true, false),
            "feedback" => (Field::Entry("feedback"), false, false),
            "event_id" => (Field::Entry("event_id"), false, false),
            "metadata.key" => (Field::MetadataKey, false, false),
            "metadata.value" => (Field::MetadataValue, false, false),
            other => {
                return Err(bad(
                    "filters.key",
                    format!(
                        "'{other}' is not supported by aigw (id, created_at, success, cached, provider, model, cost, tokens_in, tokens_out, duration, status_code, feedback, event_id, metadata.key, metadata.value)"
                    ),
                ));
            }
        };
        if vals.is_empty() {
            return Err(bad(
                "filters.value",
                format!("the filter on '{key}' has no value"),
            ));
        }
        if field == Field::MetadataKey && op != Op::Eq {
            return Err(bad(
                "filters.operator",
                "metadata.key takes eq only (the key exists)",
            ));
        }
        let mut args = Vec::new();
        for v in vals {
            args.push(if boolean {
                match v.as_str() {
                    "true" | "1" => Arg::Int(1),
                    "false" | "0" => Arg::Int(0),
                    _ => return Err(bad("filters.value", format!("'{key}' takes true or false"))),
                }
            } else if numeric && key == "created_at" {
                Arg::Int(parse_time("filters.value", v)?)
            } else if numeric {
                Arg::Float(
                    v.parse::<f64>()
                        .map_err(|_| bad("filters.value", format!("'{key}' takes a number")))?,
                )
            } else {
                Arg::Text(v.clone())
            });
        }
        out.push(Cond {
            field,
            op,
            values: args,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_both_ways() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_709_251_200_123), "2024-03-01T00:00:00.123Z");
        assert_eq!(
            parse_time("t", "2024-03-01T00:00:00Z").unwrap(),
            1_709_251_200_000
        );
        assert_eq!(
            parse_time("t", "2024-03-01T02:00:00+02:00").unwrap(),
            1_709_251_200_000
        );
        assert_eq!(parse_time("t", "2024-03-01").unwrap(), 1_709_251_200_000);
        assert!(
            parse_time("start_date", "yesterday")
                .unwrap_err()
                .message
                .starts_with("start_date:")
        );
    }

    #[test]
    fn filters_pair_keys_operators_and_values() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let one = filters(&s(&["model"]), &s(&["contains"]), &s(&["gpt", "claude"])).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].values.len(), 2);
        let two = filters(
            &s(&["success", "cost"]),
            &s(&["eq", "gt"]),
            &s(&["false", "0.5"]),
        )
        .unwrap();
        assert_eq!(two[0].values, vec![Arg::Int(0)]);
        assert_eq!(two[1].values, vec![Arg::Float(0.5)]);
        let e = filters(&s(&["success", "cost"]), &s(&["eq", "gt"]), &s(&["false"])).unwrap_err();
        assert!(e.message.contains("exactly one value"), "{}", e.message);
        let e = filters(&s(&["colour"]), &s(&["eq"]), &s(&["red"])).unwrap_err();
        assert!(
            e.message.starts_with("filters.key: 'colour'"),
            "{}",
            e.message
        );
    }

    #[test]
    fn settings_refuse_unknown_and_unsupported_fields() {
        let body = |v: Value| v.as_object().cloned().unwrap();
        let (s, inv) = settings_from(
            &body(json!({"id": "x", "cache_ttl": 300, "collect_logs": true, "cache_invalidate_on_update": true,
                         "rate_limiting_limit": 20, "rate_limiting_interval": 60, "rate_limiting_technique": "sliding",
                         "log_management": null, "logpush": false})),
            &Settings::default(),
            true,
        )
        .unwrap();
        assert_eq!(
            (s.cache_ttl, s.rate_limiting_limit, inv),
            (Some(300), Some(20), Some(true))
        );
        let e =
            settings_from(&body(json!({"colour": 1})), &Settings::default(), false).unwrap_err();
        assert_eq!(e.message, "colour: unknown field");
        let e = settings_from(&body(json!({"logpush": true})), &Settings::default(), false)
            .unwrap_err();
        assert!(
            e.message.starts_with("logpush: not supported"),
            "{}",
            e.message
        );
        // A log limit defaults to deleting the oldest; its strategy goes with it.
        let (s, _) = settings_from(
            &body(json!({"log_management": 1000})),
            &Settings::default(),
            false,
        )
        .unwrap();
        assert_eq!(s.log_management, Some(1000));
        assert_eq!(s.log_management_strategy.as_deref(), Some("DELETE_OLDEST"));
        let (s, _) = settings_from(&body(json!({"log_management": null})), &s, false).unwrap();
        assert_eq!((s.log_management, s.log_management_strategy), (None, None));
        let e = settings_from(
            &body(json!({"log_management": 10, "log_management_strategy": "KEEP"})),
            &Settings::default(),
            false,
        )
        .unwrap_err();
        assert!(
            e.message
                .starts_with("log_management_strategy: expected one of"),
            "{}",
            e.message
        );
        let e = settings_from(
            &body(json!({"rate_limiting_limit": 5})),
            &Settings::default(),
            false,
        )
        .unwrap_err();
        assert!(
            e.message.starts_with("rate_limiting_interval:"),
            "{}",
            e.message
        );
    }
}
