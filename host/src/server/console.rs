//! The console (admin listener): a gateways page (list with ready-to-copy endpoint URLs,
//! create by name, delete) and a settings page per gateway (caching, rate limiting, logs,
//! retries, and the pipeline's filters in order with their tables). Plain HTML forms that work
//! without JavaScript; every change goes through the same code as the management API (the
//! TOML edited in place, applied by a reload) and every form carries a CSRF token. The admin
//! token is never put in a URL: browsers send it with Basic authentication.

use super::App;
use super::cfapi::{Api, EDITING};
use super::dashboard::{STYLE, esc, html};
use super::reload::Reloader;
use crate::control::manage::Settings;
use crate::http::body::GatewayBody;
use crate::http::error::GatewayError;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Map, Value, json};
use std::sync::{Arc, OnceLock};

/// The filters the settings form manages (their tables follow its fields).
const MANAGED: [&str; 4] = ["logging", "rate-limit", "cache", "retry"];

/// This process's CSRF token: a random secret, hashed. A page from this process carries
/// it; a form posted from another site cannot know it.
fn csrf_token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| {
        let mut secret = [0u8; 32];
        if getrandom::fill(&mut secret).is_err() {
            // No randomness: a token nobody can match, so forms are refused, never open.
            return "unavailable".to_string();
        }
        crate::runtime::sha256_hex(&secret)
    })
}

fn page(title: &str, body: &str) -> Response<GatewayBody> {
    html(
        StatusCode::OK,
        format!(
            "<!doctype html><html><head><meta charset=utf-8><title>aigw · {t}</title><style>{STYLE}\
             input[readonly]{{width:32em}}textarea{{width:40em;height:6em;font-family:monospace}}\
             .error{{color:#b00;border:1px solid #b00;padding:8px}}</style></head><body>\
             <h1>{t}</h1><nav><a href=\"/console\">gateways</a> · <a href=\"/dashboard\">dashboard</a></nav>{body}</body></html>",
            t = esc(title)
        ),
    )
}

fn see_other(location: &str) -> Response<GatewayBody> {
    let mut r = Response::new(GatewayBody::full(String::new()));
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = hyper::header::HeaderValue::from_str(location) {
        r.headers_mut().insert(hyper::header::LOCATION, v);
    }
    r
}

fn csrf_field() -> String {
    format!("<input type=hidden name=csrf value=\"{}\">", csrf_token())
}

/// The console's routes; `None` for a path outside `/console`.
pub async fn route(
    app: &Arc<App>,
    reloader: &Arc<Reloader>,
    req: Request<Incoming>,
    peer: &str,
) -> Option<Response<GatewayBody>> {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let rest = path.strip_prefix("/console")?;
    let segments: Vec<String> = rest
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let method = req.method().clone();
    let form = if method == Method::POST {
        match read_form(req).await {
            Ok(f) => f,
            Err(e) => return Some(e.into_response()),
        }
    } else {
        Vec::new()
    };
    let actor = format!("console from {peer}");
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    Some(match (method, seg.as_slice()) {
        (Method::GET, []) => gateways_page(app, None).await,
        (Method::POST, ["gateways"]) => {
            let name = field(&form, "id");
            let account = match field(&form, "account") {
                a if a.is_empty() => "*".to_string(),
                a => a,
            };
            let api = Api {
                app,
                reloader,
                account: &account,
                actor,
            };
            let body = json!({"id": name, "collect_logs": true});
            match api.create(body.to_string().as_bytes()).await {
                Ok(_) => see_other(&format!("/console/gateways/{name}")),
                Err(e) => gateways_page(app, Some(&e.message)).await,
            }
        }
        (Method::POST, ["gateways", id, "delete"]) => {
            let account = account_of(app, id);
            let api = Api {
                app,
                reloader,
                account: &account,
                actor,
            };
            match api.delete(id).await {
                Ok(_) => see_other("/console"),
                Err(e) => gateways_page(app, Some(&e.message)).await,
            }
        }
        (Method::GET, ["gateways", id]) => settings_page(app, reloader, id, None).await,
        (Method::POST, ["gateways", id]) => {
            let account = account_of(app, id);
            let api = Api {
                app,
                reloader,
                account: &account,
                actor,
            };
            match save_settings(&api, id, &form).await {
                Ok(()) => see_other(&format!("/console/gateways/{id}?saved=1")),
                Err(e) => settings_page(app, reloader, id, Some(&e.message)).await,
            }
        }
        (Method::POST, ["gateways", id, "pipeline"]) => {
            let account = account_of(app, id);
            let api = Api {
                app,
                reloader,
                account: &account,
                actor,
            };
            match save_pipeline(&api, id, &form).await {
                Ok(()) => see_other(&format!("/console/gateways/{id}?saved=1")),
                Err(e) => settings_page(app, reloader, id, Some(&e.message)).await,
            }
        }
        (m, _) => GatewayError::not_found(format!("no console page {m} {path}")).into_response(),
    })
}

/// Reads a urlencoded form and checks its CSRF token (and, when the browser says where the
/// form came from, that it came from this listener).
async fn read_form(req: Request<Incoming>) -> Result<Vec<(String, String)>, GatewayError> {
    use http_body_util::BodyExt;
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if let Some(origin) = req
        .headers()
        .get(hyper::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        && origin != "null"
        && origin.split("://").nth(1) != Some(host.as_str())
    {
        return Err(GatewayError::new(
            StatusCode::FORBIDDEN,
            "csrf",
            format!("form posted from {origin}, not from this console ({host})"),
        ));
    }
    let body = http_body_util::Limited::new(req.into_body(), 256 * 1024)
        .collect()
        .await
        .map_err(|_| GatewayError::bad_request("form: at most 256 KiB"))?
        .to_bytes();
    let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let sent = field(&form, "csrf");
    if !crate::http::constant_time_eq(sent.as_bytes(), csrf_token().as_bytes()) {
        return Err(GatewayError::new(
            StatusCode::FORBIDDEN,
            "csrf",
            "the form's CSRF token is missing or stale: reload the page and submit again",
        ));
    }
    Ok(form)
}

fn field(form: &[(String, String)], name: &str) -> String {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default()
}

fn account_of(app: &Arc<App>, id: &str) -> String {
    app.generation()
        .config
        .gateways
        .get(id)
        .and_then(|g| g.accounts.first().cloned())
        .unwrap_or_else(|| "*".to_string())
}

fn error_box(error: Option<&str>) -> String {
    error
        .map(|e| format!("<p class=error id=error>{}</p>", esc(e)))
        .unwrap_or_default()
}

async fn gateways_page(app: &Arc<App>, error: Option<&str>) -> Response<GatewayBody> {
    let generation = app.generation();
    let host = generation.config.listen;
    let mut rows = String::new();
    for (name, gw) in &generation.config.gateways {
        let account = gw.accounts.first().map(String::as_str).unwrap_or("*");
        let account = if account == "*" { "ACCOUNT" } else { account };
        let base = format!("http://{host}/v1/{account}/{name}");
        let endpoints = [
            ("provider", format!("{base}/openai")),
            ("OpenAI-compatible", format!("{base}/compat/chat/completions")),
            ("universal", base.clone()),
        ]
        .iter()
        .map(|(label, url)| {
            format!(
                "<label>{label} <input readonly value=\"{}\" onclick=\"this.select()\"></label><br>",
                esc(url)
            )
        })
        .collect::<String>();
        rows.push_str(&format!(
            "<tr><td><a href=\"/console/gateways/{n}\">{n}</a></td><td>{pipeline}</td><td>{endpoints}</td>\
             <td><a href=\"/dashboard?gateway={n}\">analytics and logs</a></td>\
             <td><form method=post action=\"/console/gateways/{n}/delete\">{csrf}<button>delete</button></form></td></tr>",
            n = esc(name),
            pipeline = esc(&gw.pipeline.join(", ")),
            csrf = csrf_field(),
        ));
    }
    page(
        "gateways",
        &format!(
            "{err}<table id=gateways><tr><th>gateway</th><th>pipeline</th><th>endpoints</th><th></th><th></th></tr>{rows}</table>\
             <h2>Create a gateway</h2><form method=post action=\"/console/gateways\" id=create>{csrf}\
             <label>name <input name=id required pattern=\"[A-Za-z0-9_-]{{1,64}}\"></label> \
             <label>account <input name=account placeholder=\"* (any)\"></label> <button>create</button></form>",
            err = error_box(error),
            csrf = csrf_field(),
        ),
    )
}

async fn settings_page(
    app: &Arc<App>,
    reloader: &Arc<Reloader>,
    id: &str,
    error: Option<&str>,
) -> Response<GatewayBody> {
    let account = account_of(app, id);
    let api = Api {
        app,
        reloader,
        account: &account,
        actor: String::new(),
    };
    let gw = match api.configured(id) {
        Ok(g) => g,
        Err(e) => return e.into_response(),
    };
    let s = Settings::of(&gw);
    let checked = |on: bool| if on { " checked" } else { "" };
    let num = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_default();
    let technique = s
        .rate_limiting_technique
        .clone()
        .unwrap_or_else(|| "fixed".into());
    let backoff = s
        .retry_backoff
        .clone()
        .unwrap_or_else(|| "exponential".into());
    let strategy = s
        .log_management_strategy
        .clone()
        .unwrap_or_else(|| "DELETE_OLDEST".into());
    let option = |value: &str, current: &str| {
        format!(
            "<option{}>{value}</option>",
            if value == current { " selected" } else { "" }
        )
    };
    // Each filter's table as written in the file (host keys such as on_error included).
    let file = std::fs::read_to_string(&app.generation().config.file)
        .ok()
        .and_then(|t| t.parse::<toml_edit::DocumentMut>().ok());
    let table_text = |filter: &str| -> String {
        let Some(t) = file
            .as_ref()
            .and_then(|d| d.get("gateways"))
            .and_then(|g| g.get(id))
            .and_then(|g| g.get("filters"))
            .and_then(|f| f.get(filter))
            .and_then(toml_edit::Item::as_table)
        else {
            return String::new();
        };
        let mut doc = toml_edit::DocumentMut::new();
        for (k, v) in t.iter() {
            doc.insert(k, v.clone());
        }
        doc.to_string()
    };
    let mut tables = String::new();
    for name in &gw.pipeline {
        let table = table_text(name);
        // The managed filters' tables follow the settings above; the others are edited here.
        let editable = !MANAGED.contains(&name.as_str());
        tables.push_str(&format!(
            "<label>[filters.{n}]{note}<br><textarea {attr}>{t}</textarea></label><br>",
            n = esc(name),
            note = if editable {
                ""
            } else {
                " (set by the settings above)"
            },
            attr = if editable {
                format!("name=\"table.{}\"", esc(name))
            } else {
                "readonly".to_string()
            },
            t = esc(&table)
        ));
    }
    page(
        &format!("gateway {id}"),
        &format!(
            "{err}<p><a href=\"/dashboard?gateway={n}\">analytics and logs</a></p>\
             <form method=post id=settings>{csrf}\
             <h2>Caching</h2><label><input type=checkbox name=cache{cache_on}> cache answers</label> \
             <label>TTL (s) <input name=cache_ttl value=\"{ttl}\" size=8></label>\
             <h2>Rate limiting</h2><label><input type=checkbox name=rate{rate_on}> limit requests</label> \
             <label>limit <input name=rate_limiting_limit value=\"{limit}\" size=6></label> \
             <label>per (s) <input name=rate_limiting_interval value=\"{interval}\" size=6></label> \
             <label>technique <select name=rate_limiting_technique>{fixed}{sliding}</select></label>\
             <h2>Logs</h2><label><input type=checkbox name=collect_logs{logs_on}> collect logs</label> \
             <label><input type=checkbox name=log_limit{log_limit_on}> keep at most</label> \
             <label><input name=log_management value=\"{log_max}\" size=9> entries</label> \
             <label>when full <select name=log_management_strategy>{delete_oldest}{stop_inserting}</select></label>\
             <h2>Retries</h2><label><input type=checkbox name=retry{retry_on}> retry failed requests</label> \
             <label>attempts <input name=retry_max_attempts value=\"{attempts}\" size=3></label> \
             <label>delay (ms) <input name=retry_delay value=\"{delay}\" size=6></label> \
             <label>backoff <select name=retry_backoff>{constant}{linear}{exponential}</select></label>\
             <h2>Authentication</h2><p>{auth}</p>\
             <p><button>save settings</button></p></form>\
             <form method=post action=\"/console/gateways/{n}/pipeline\" id=pipeline-form>{csrf}\
             <h2>Pipeline</h2><p>Filters in request order, one per line (built-ins or files in plugins_dir); \
             a filter's table is its settings in TOML, checked by the filter when saved.</p>\
             <textarea name=pipeline id=pipeline>{pipeline}</textarea><br>{tables}\
             <p><button>save pipeline</button></p></form>",
            err = error_box(error),
            n = esc(id),
            csrf = csrf_field(),
            cache_on = checked(s.cache_ttl.is_some()),
            ttl = s.cache_ttl.unwrap_or(300),
            rate_on = checked(s.rate_limiting_limit.is_some()),
            limit = num(s.rate_limiting_limit),
            interval = num(s.rate_limiting_interval.or(Some(60))),
            fixed = option("fixed", &technique),
            sliding = option("sliding", &technique),
            logs_on = checked(s.collect_logs),
            log_limit_on = checked(s.log_management.is_some()),
            log_max = num(s.log_management.or(Some(100_000))),
            delete_oldest = option("DELETE_OLDEST", &strategy),
            stop_inserting = option("STOP_INSERTING", &strategy),
            retry_on = checked(s.retry_max_attempts.is_some()),
            attempts = num(s.retry_max_attempts.or(Some(3))),
            delay = num(s.retry_delay.or(Some(500))),
            constant = option("constant", &backoff),
            linear = option("linear", &backoff),
            exponential = option("exponential", &backoff),
            auth = if s.authentication {
                "on: clients send the gateway's auth_token (set in the config file) as cf-aig-authorization"
            } else {
                "off: set auth_token in the config file to require cf-aig-authorization (it is a secret, so not set here)"
            },
            pipeline = esc(&gw.pipeline.join("\n")),
        ),
    )
}

/// The settings form: Cloudflare's fields (as the API takes them), then the pipeline and the
/// filter tables as written.
async fn save_settings(
    api: &Api<'_>,
    id: &str,
    form: &[(String, String)],
) -> Result<(), GatewayError> {
    let on = |name: &str| form.iter().any(|(k, _)| k == name);
    let number = |name: &str| -> Result<Value, GatewayError> {
        let v = field(form, name);
        v.parse::<u64>().map(Value::from).map_err(|_| {
            GatewayError::bad_request(format!("{name}: expected a whole number, got '{v}'"))
        })
    };
    let mut body = Map::new();
    body.insert("collect_logs".into(), Value::Bool(on("collect_logs")));
    if on("log_limit") {
        body.insert("log_management".into(), number("log_management")?);
        body.insert(
            "log_management_strategy".into(),
            Value::String(field(form, "log_management_strategy")),
        );
    } else {
        body.insert("log_management".into(), Value::Null);
    }
    body.insert(
        "cache_ttl".into(),
        if on("cache") {
            number("cache_ttl")?
        } else {
            Value::Null
        },
    );
    if on("rate") {
        body.insert("rate_limiting_limit".into(), number("rate_limiting_limit")?);
        body.insert(
            "rate_limiting_interval".into(),
            number("rate_limiting_interval")?,
        );
        body.insert(
            "rate_limiting_technique".into(),
            Value::String(field(form, "rate_limiting_technique")),
        );
    } else {
        body.insert("rate_limiting_limit".into(), Value::Null);
    }
    if on("retry") {
        body.insert("retry_max_attempts".into(), number("retry_max_attempts")?);
        body.insert("retry_delay".into(), number("retry_delay")?);
        body.insert(
            "retry_backoff".into(),
            Value::String(field(form, "retry_backoff")),
        );
    } else {
        body.insert("retry_max_attempts".into(), Value::Null);
    }
    api.update(id, Value::Object(body).to_string().as_bytes())
        .await?;
    Ok(())
}

/// The pipeline form: the order as written (additions and removals included) and the tables
/// of the filters that are not managed by the settings.
async fn save_pipeline(
    api: &Api<'_>,
    id: &str,
    form: &[(String, String)],
) -> Result<(), GatewayError> {
    let pipeline: Vec<String> = field(form, "pipeline")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    let tables: Vec<(String, String)> = form
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("table.").map(|n| (n.to_string(), v.clone())))
        .filter(|(n, _)| !MANAGED.contains(&n.as_str()))
        .collect();
    let _one = EDITING.lock().await;
    let name = id.to_string();
    api.edit(|doc| {
        let gw = doc
            .get_mut("gateways")
            .and_then(|g| g.get_mut(&name))
            .and_then(toml_edit::Item::as_table_mut)
            .ok_or_else(|| {
                GatewayError::not_found(format!("gateway '{name}' is not in the config file"))
            })?;
        let mut array = toml_edit::Array::new();
        for f in &pipeline {
            array.push(f.as_str());
        }
        gw.insert("pipeline", toml_edit::value(array));
        // A filter taken out of the pipeline takes its table with it.
        if let Some(filters) = gw
            .get_mut("filters")
            .and_then(toml_edit::Item::as_table_mut)
        {
            let gone: Vec<String> = filters
                .iter()
                .map(|(k, _)| k.to_string())
                .filter(|k| !pipeline.contains(k))
                .collect();
            for k in gone {
                filters.remove(&k);
            }
        }
        for (filter, text) in &tables {
            if !pipeline.contains(filter) {
                continue;
            }
            let parsed: toml_edit::DocumentMut = text.parse().map_err(|e| {
                GatewayError::bad_request(format!("filters.{filter}: not TOML: {e}"))
            })?;
            if !gw.contains_key("filters") {
                let mut t = toml_edit::Table::new();
                t.set_implicit(true);
                gw.insert("filters", toml_edit::Item::Table(t));
            }
            if let Some(filters) = gw
                .get_mut("filters")
                .and_then(toml_edit::Item::as_table_mut)
            {
                if parsed.as_table().is_empty() {
                    filters.remove(filter);
                } else {
                    filters.insert(filter, toml_edit::Item::Table(parsed.as_table().clone()));
                }
            }
        }
        Ok(())
    })
    .await?;
    api.note(id, "pipeline", json!({"pipeline": pipeline}))
        .await;
    Ok(())
}
