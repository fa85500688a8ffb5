//! The dashboard on the admin listener (`/dashboard`): overview tiles, plots
//! over time (rendered server-side to SVG with `plotters`, so the page needs
//! no network and no JavaScript), a breakdown by model, the recent logs with a
//! detail view per entry, and the loaded filters. Numbers come from the same
//! queries as the analytics and logs API.

use crate::http::body::GatewayBody;
use crate::http::error::GatewayError;
use crate::store::logs::{LogQuery, LogStore, LogStoreError};
use hyper::{Response, StatusCode};
use plotters::prelude::*;
use serde_json::Value;

/// Escapes text for HTML.
pub(super) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub(super) fn html(status: StatusCode, body: String) -> Response<GatewayBody> {
    let mut r = Response::new(GatewayBody::full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // Never framed by another page (clickjacking the console's forms).
    r.headers_mut().insert(
        hyper::header::X_FRAME_OPTIONS,
        hyper::header::HeaderValue::from_static("DENY"),
    );
    r.headers_mut().insert(
        hyper::header::CONTENT_SECURITY_POLICY,
        hyper::header::HeaderValue::from_static("frame-ancestors 'none'"),
    );
    r
}

/// A line chart of one or more series over bucket start times (ms).
fn chart(title: &str, series: &[(&str, Vec<(i64, f64)>)]) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (560, 240)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let xs = series.iter().flat_map(|(_, v)| v.iter().map(|p| p.0));
        let (x0, x1) = xs.fold((i64::MAX, i64::MIN), |(a, b), x| (a.min(x), b.max(x)));
        let (x0, x1) = if x0 > x1 {
            (0, 1)
        } else {
            (x0, x1.max(x0 + 1))
        };
        let y1 = series
            .iter()
            .flat_map(|(_, v)| v.iter().map(|p| p.1))
            .fold(0.0f64, f64::max)
            .max(1e-9)
            * 1.1;
        let built = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(48)
            .build_cartesian_2d(x0..x1, 0.0..y1);
        if let Ok(mut c) = built {
            let _ = c
                .configure_mesh()
                .x_labels(4)
                .x_label_formatter(&|ms| {
                    let secs = (*ms / 1000).rem_euclid(86_400);
                    format!("{:02}:{:02}", secs / 3600, (secs % 3600) / 60)
                })
                .y_labels(4)
                .draw();
            let colors = [BLUE, RED, GREEN, MAGENTA];
            for (i, (name, points)) in series.iter().enumerate() {
                let color = colors[i % colors.len()];
                // Points too: a single bucket has no line to draw.
                let _ = c.draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())));
                if let Ok(s) = c.draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                )) {
                    s.label(*name)
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 12, y)], color));
                }
            }
            let _ = c
                .configure_series_labels()
                .border_style(BLACK)
                .background_style(WHITE.mix(0.8))
                .draw();
        }
        let _ = root.present();
    }
    svg
}

/// The error answer of a failed store read, its message prefixed with
/// what the page was reading; the status comes from the store's mapping.
fn store_failure(what: &str, e: LogStoreError) -> Response<GatewayBody> {
    let mut err = GatewayError::from(e);
    err.message = format!("{what} failed: {}", err.message);
    err.into_response()
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// `GET /dashboard?gateway=NAME`.
pub fn page(
    store: &LogStore,
    gateways: &[String],
    gateway: &str,
    plugins: &Value,
    filters: &[(String, String)],
) -> Response<GatewayBody> {
    let now = crate::store::now_ms() as i64;
    let param = |k: &str| {
        filters
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let (from, to, range) = time_range(now, param("range"), param("from"), param("to"));
    // About 60 points whatever the range, in whole minutes.
    let bucket = (to.saturating_sub(from) / 60).max(60_000) / 60_000 * 60_000;
    let report = match store.analytics(gateway, from, to, bucket, Some("model")) {
        Ok(r) => r,
        Err(e) => return store_failure("analytics", e),
    };
    // Who spent what: virtual keys (requests without one grouped under "").
    let by_key = match store.analytics(
        gateway,
        from,
        to,
        // One bucket over the whole range, in whole minutes (so the rollups answer).
        (to.saturating_sub(from).max(1) + 59_999) / 60_000 * 60_000,
        Some("key"),
    ) {
        Ok(r) => r,
        Err(e) => return store_failure("analytics", e),
    };
    let key_rows: String = by_key["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|g| g["key"].as_str().is_some_and(|k| !k.is_empty()))
        .map(|g| {
            format!(
                "<tr><td><a href=\"/dashboard?gateway={gw}&amp;key={k}\">{k}</a></td><td>{}</td><td>{}</td><td>{:.6}</td><td>{}</td></tr>",
                g["requests"],
                g["errors"],
                num(&g["cost"]),
                g["unpriced"],
                gw = esc(gateway),
                k = esc(g["key"].as_str().unwrap_or("")),
            )
        })
        .collect();
    let keys_section = if key_rows.is_empty() {
        String::new()
    } else {
        format!(
            "<h2>By virtual key</h2><table id=keys><tr><th>key</th><th>requests</th><th>errors</th><th>cost</th><th>unpriced</th></tr>{key_rows}</table>"
        )
    };
    let mut q = LogQuery {
        gateway: gateway.to_string(),
        limit: 50,
        ..LogQuery::default()
    };
    let value = |k: &str| {
        filters
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    q.provider = value("provider");
    q.model = value("model");
    q.status = value("status").and_then(|v| v.parse().ok());
    q.success = value("success").map(|v| v == "true");
    q.cached = value("cached").map(|v| v == "true");
    q.min_duration_ms = value("min_duration_ms").and_then(|v| v.parse().ok());
    q.unpriced = value("unpriced").map(|v| v == "true");
    q.key = value("key");
    q.from_ms = Some(from);
    q.to_ms = Some(to);
    let selected = |on: bool| if on { " selected" } else { "" };
    let form = format!(
        "<form id=range method=get action=/dashboard><input type=hidden name=gateway value=\"{gw}\"> \
         range <select name=range>{ranges}</select> or from <input name=from size=22 value=\"{from_v}\"> \
         to <input name=to size=22 value=\"{to_v}\"> (RFC 3339) <button>show</button></form>\
         <form id=log-filters method=get action=/dashboard><input type=hidden name=gateway value=\"{gw}\"> \
         <input type=hidden name=range value=\"{range}\"> \
         provider <input name=provider value=\"{p}\"> model <input name=model value=\"{m}\"> \
         status <input name=status size=4 value=\"{s}\"> \
         success <select name=success><option></option><option{st}>true</option><option{sf}>false</option></select> \
         cached <select name=cached><option></option><option{ct}>true</option><option{cf}>false</option></select> \
         unpriced <select name=unpriced><option></option><option{ut}>true</option><option{uf}>false</option></select> \
         min ms <input name=min_duration_ms size=5 value=\"{d}\"> <button>filter</button></form>",
        gw = esc(gateway),
        ranges = ["1h", "24h", "7d", "30d", "custom"]
            .iter()
            .map(|r| format!("<option{}>{r}</option>", selected(*r == range)))
            .collect::<String>(),
        range = esc(&range),
        from_v = esc(&value("from").unwrap_or_default()),
        to_v = esc(&value("to").unwrap_or_default()),
        p = esc(&value("provider").unwrap_or_default()),
        m = esc(&value("model").unwrap_or_default()),
        s = esc(&value("status").unwrap_or_default()),
        d = esc(&value("min_duration_ms").unwrap_or_default()),
        st = selected(q.success == Some(true)),
        sf = selected(q.success == Some(false)),
        ct = selected(q.cached == Some(true)),
        cf = selected(q.cached == Some(false)),
        ut = selected(q.unpriced == Some(true)),
        uf = selected(q.unpriced == Some(false)),
    );
    let logs = match store.query(&q) {
        Ok((l, _)) => l,
        Err(e) => return store_failure("logs", e),
    };
    let t = &report["totals"];
    let requests = num(&t["requests"]);
    let success_rate = if requests > 0.0 {
        100.0 * num(&t["successes"]) / requests
    } else {
        0.0
    };
    let tile = |id: &str, label: &str, value: String| {
        format!(
            "<div class=tile><div class=label>{label}</div><div class=value id=\"{id}\">{}</div></div>",
            esc(&value)
        )
    };
    let latency = &t["latency_ms"];
    // The catalog versions that priced the hour's cost.
    let versions: Vec<String> = t["price_catalogs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["version"].as_str().map(str::to_string))
        .collect();
    let cost_label = if versions.is_empty() {
        "Cost (USD)".to_string()
    } else {
        format!("Cost (USD, prices {})", versions.join(", "))
    };
    let tiles = [
        tile(
            "requests",
            &format!("Requests ({range})"),
            format!("{}", t["requests"]),
        ),
        tile(
            "success-rate",
            "Success rate",
            format!("{success_rate:.1}%"),
        ),
        tile("errors", "Errors", format!("{}", t["errors"])),
        tile(
            "cache-hit-rate",
            "Cache hit rate",
            format!("{:.1}%", 100.0 * num(&t["cache_hit_rate"])),
        ),
        tile("tokens-in", "Tokens in", format!("{}", t["tokens_in"])),
        tile("tokens-out", "Tokens out", format!("{}", t["tokens_out"])),
        tile("cost", &cost_label, format!("{:.6}", num(&t["cost"]))),
        format!(
            "<div class=tile><div class=label>Unpriced requests</div><div class=value>\
             <a id=unpriced href=\"/dashboard?gateway={}&amp;unpriced=true\">{}</a></div></div>",
            esc(gateway),
            t["unpriced"]
        ),
        tile(
            "latency-p50",
            "Latency p50 ms",
            format!("{}", latency["p50"]),
        ),
        tile(
            "latency-p95",
            "Latency p95 ms",
            format!("{}", latency["p95"]),
        ),
        tile(
            "latency-p99",
            "Latency p99 ms",
            format!("{}", latency["p99"]),
        ),
    ]
    .join("");
    let buckets = report["buckets"].as_array().cloned().unwrap_or_default();
    let series = |f: &dyn Fn(&Value) -> f64| -> Vec<(i64, f64)> {
        buckets
            .iter()
            .map(|b| (b["start_ms"].as_i64().unwrap_or(0), f(b)))
            .collect()
    };
    let charts = [
        chart(
            "Requests and errors per bucket",
            &[
                ("requests", series(&|b| num(&b["requests"]))),
                ("errors", series(&|b| num(&b["errors"]))),
            ],
        ),
        chart(
            "Tokens per bucket",
            &[
                ("in", series(&|b| num(&b["tokens_in"]))),
                ("out", series(&|b| num(&b["tokens_out"]))),
            ],
        ),
        chart(
            "Latency ms",
            &[
                ("p50", series(&|b| num(&b["latency_ms"]["p50"]))),
                ("p95", series(&|b| num(&b["latency_ms"]["p95"]))),
                ("p99", series(&|b| num(&b["latency_ms"]["p99"]))),
            ],
        ),
        chart(
            "Cost (USD) and cache hit rate",
            &[
                ("cost", series(&|b| num(&b["cost"]))),
                ("hit rate", series(&|b| num(&b["cache_hit_rate"]))),
            ],
        ),
    ]
    .map(|svg| format!("<div class=chart>{svg}</div>"))
    .join("");
    let groups: String = report["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.6}</td><td>{}</td></tr>",
                esc(g["model"].as_str().unwrap_or("")),
                g["requests"],
                g["errors"],
                g["tokens_in"],
                g["tokens_out"],
                num(&g["cost"]),
                g["unpriced"]
            )
        })
        .collect();
    let rows: String = logs
        .iter()
        .map(|l| {
            let id = l["id"].as_str().unwrap_or("");
            format!(
                "<tr class=log-row><td><a href=\"/dashboard/logs/{gw}/{id}\">{short}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(l["provider"].as_str().unwrap_or("")),
                esc(l["model"].as_str().unwrap_or("")),
                l["status"],
                l["cached"],
                l["tokens_in"],
                l["tokens_out"],
                match l["cost"].as_f64() {
                    Some(c) => format!("{c:.6}"),
                    None if l["success"] == true && l["cached"] != true && l["model"].is_string() => {
                        "unpriced".to_string()
                    }
                    None => String::new(),
                },
                l["duration_ms"],
                gw = esc(gateway),
                id = esc(id),
                short = esc(&id.chars().take(8).collect::<String>()),
            )
        })
        .collect();
    let filters: String = plugins["plugins"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            // This gateway's stage of the filter: its failure policy and health.
            let stage = p["stages"]
                .as_array()
                .and_then(|s| s.iter().find(|s| s["gateway"] == gateway))
                .cloned()
                .unwrap_or(Value::Null);
            let health = &stage["health"];
            let warnings: Vec<&str> = p["warnings"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} / {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(p["name"].as_str().unwrap_or("")),
                esc(p["status"].as_str().unwrap_or("")),
                esc(stage["on_error"].as_str().unwrap_or("-")),
                esc(health["circuit"].as_str().unwrap_or("-")),
                health["failures_in_a_row"].as_u64().unwrap_or(0),
                health["failures_total"].as_u64().unwrap_or(0),
                esc(health["last_error"]["message"].as_str().unwrap_or("")),
                esc(&warnings.join("; ")),
                esc(p["source"].as_str().unwrap_or("")),
                esc(&p["sha256"]
                    .as_str()
                    .unwrap_or("")
                    .chars()
                    .take(12)
                    .collect::<String>())
            )
        })
        .collect();
    let nav: String = gateways
        .iter()
        .map(|g| format!("<a href=\"/dashboard?gateway={0}\">{0}</a> ", esc(g)))
        .collect();
    html(
        StatusCode::OK,
        format!(
            "<!doctype html><html><head><meta charset=utf-8><title>aigw · {gw}</title><style>{STYLE}</style></head><body>\
             <h1>aigw · gateway <span id=gateway>{gw}</span></h1><nav>{nav}</nav>\
             <section class=tiles>{tiles}</section><section class=charts>{charts}</section>\
             <h2>By model</h2><table id=models><tr><th>model</th><th>requests</th><th>errors</th><th>tokens in</th><th>tokens out</th><th>cost</th><th>unpriced</th></tr>{groups}</table>\
             {keys_section}<h2>Recent requests</h2>{form}<table id=logs><tr><th>id</th><th>provider</th><th>model</th><th>status</th><th>cached</th><th>tokens in</th><th>tokens out</th><th>cost</th><th>ms</th></tr>{rows}</table>\
             <h2>Filters (generation {generation})</h2><table id=filters><tr><th>name</th><th>status</th><th>on_error</th><th>circuit</th><th>failures (in a row / total)</th><th>last error</th><th>warnings</th><th>source</th><th>sha256</th></tr>{filters}</table>\
             </body></html>",
            gw = esc(gateway),
            generation = plugins["generation"],
        ),
    )
}

/// The dashboard's window: `range` (1h, 24h, 7d, 30d; default 1h), or `from`/`to` (RFC 3339
/// or ms) for a custom one. Returns (from, to, the range's name).
fn time_range(
    now: i64,
    range: Option<String>,
    from: Option<String>,
    to: Option<String>,
) -> (i64, i64, String) {
    let parse = |v: &str| {
        v.parse::<i64>().ok().or_else(|| {
            humantime::parse_rfc3339_weak(v.trim_end_matches('Z'))
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_millis() as i64)
        })
    };
    let custom = (
        from.as_deref().and_then(parse),
        to.as_deref().and_then(parse),
    );
    if range.as_deref() == Some("custom") || (range.is_none() && custom.0.is_some()) {
        let from_ms = custom.0.unwrap_or(now - 3_600_000);
        let to_ms = custom
            .1
            .unwrap_or(now + 1)
            .max(from_ms.saturating_add(60_000));
        return (from_ms, to_ms, "custom".to_string());
    }
    let (name, span) = match range.as_deref() {
        Some("24h") => ("24h", 86_400_000),
        Some("7d") => ("7d", 7 * 86_400_000),
        Some("30d") => ("30d", 30 * 86_400_000),
        _ => ("1h", 3_600_000),
    };
    (now - span, now + 1, name.to_string())
}

/// `GET /dashboard/logs/{gateway}/{id}`: one entry, bodies included.
pub fn detail(store: &LogStore, gateway: &str, id: &str) -> Response<GatewayBody> {
    let entry = match store.get(gateway, id) {
        Ok(e) => e,
        Err(e) => return GatewayError::from(e).into_response(),
    };
    let mut rows = String::new();
    if let Some(obj) = entry.as_object() {
        for (k, v) in obj {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            rows.push_str(&format!(
                "<tr><th>{}</th><td><pre>{}</pre></td></tr>",
                esc(k),
                esc(&text)
            ));
        }
    }
    html(
        StatusCode::OK,
        format!(
            "<!doctype html><html><head><meta charset=utf-8><title>aigw · {id}</title><style>{STYLE}</style></head><body>\
             <h1>Request <span id=log-id>{id}</span></h1><p><a href=\"/dashboard?gateway={gw}\">back</a></p>\
             <table id=detail>{rows}</table></body></html>",
            id = esc(id),
            gw = esc(gateway),
        ),
    )
}

pub(super) const STYLE: &str = "body{font-family:sans-serif;margin:24px;color:#222}h1{font-size:22px}\
.tiles{display:flex;flex-wrap:wrap;gap:10px}.tile{border:1px solid #ddd;border-radius:6px;padding:10px 14px;min-width:120px}\
.label{font-size:12px;color:#666}.value{font-size:20px;font-weight:bold}.charts{display:flex;flex-wrap:wrap;gap:10px;margin-top:14px}\
table{border-collapse:collapse;margin-top:8px}td,th{border:1px solid #ddd;padding:4px 8px;font-size:13px;text-align:left}\
pre{margin:0;white-space:pre-wrap;max-width:900px}";
