//! Logs and analytics through the admin API, with costs from the price table.

use crate::harness::*;
use hyper::{Method, StatusCode};
use serde_json::Value;
use std::time::Duration;

/// A gateway `gw` with `pipeline` and an admin listener whose token is `adm1n`.
pub(crate) fn admin_gateway(mock: &Mock, pipeline: &str) -> Gateway {
    let dir = prepare_with_server(
        "admin_listen = \"127.0.0.1:0\"\nadmin_token = \"adm1n\"\n",
        &format!(
            "{}[gateways.gw]\npipeline = {pipeline}\n",
            mock.providers_toml()
        ),
        &[],
    );
    Gateway::start_in(dir)
}

/// Gateway `gw`'s log entries (newest first) once there are `n` of them, or what there is
/// after `tries` polls 50 ms apart (the writer is asynchronous).
pub(crate) async fn logs_once(gw: &Gateway, n: usize, tries: usize) -> Vec<Value> {
    let mut logs = Vec::new();
    for _ in 0..tries {
        logs = admin(gw, Method::GET, "/api/gateways/gw/logs?limit=100", "")
            .await
            .json()["logs"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if logs.len() == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    logs
}

pub(crate) async fn admin(gw: &Gateway, method: Method, path: &str, body: &str) -> Reply {
    send_req(request(
        method,
        &gw.admin_url(path),
        &[("authorization", "Bearer adm1n")],
        body,
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_analytics_match_the_traffic() {
    let mock = Mock::start().await;
    let gw = admin_gateway(&mock, r#"["logging", "cache"]"#);
    let url = gw.url("/v1/acct/gw/openai/chat/completions");
    let ada = [("cf-aig-metadata", r#"{"user":"ada"}"#)];
    let mut usages = Vec::new();
    for body in [chat("one", false), chat("two", false)] {
        let r = send(&url, &ada, &body).await;
        usages.push(r.json()["usage"].clone());
    }
    let hit = send(&url, &[], &chat("one", false)).await;
    assert_eq!(hit.header("cf-aig-cache-status"), Some("HIT"));
    usages.push(hit.json()["usage"].clone());
    let failed = send(&url, &[("x-mock-status", "500")], &chat("three", false)).await;
    assert_eq!(failed.status.as_u16(), 500);
    let streamed = stream(&url, &[], &chat("four", true)).await;
    assert!(streamed.error.is_none());

    // The writer is asynchronous: wait for all five entries.
    let logs = logs_once(&gw, 5, 60).await;
    assert_eq!(logs.len(), 5, "{logs:#?}");
    assert!(
        logs.iter().all(|l| l.get("request_body").is_none()),
        "list must not carry bodies"
    );

    // Costs from the default price table (gpt-4o-mini: $0.15 / $0.60 per million).
    let first = logs
        .iter()
        .find(|l| l["metadata"]["user"] == "ada" && l["cached"] == false)
        .unwrap();
    let (i, o) = (
        first["tokens_in"].as_f64().unwrap(),
        first["tokens_out"].as_f64().unwrap(),
    );
    let expected = (i * 0.15 + o * 0.6) / 1e6;
    assert!(
        (first["cost"].as_f64().unwrap() - expected).abs() < 1e-12,
        "{first}"
    );
    let cached = logs.iter().find(|l| l["cached"] == true).unwrap();
    assert_eq!(cached["cost"], 0.0);

    // Filters and pagination.
    let failures = admin(&gw, Method::GET, "/api/gateways/gw/logs?success=false", "")
        .await
        .json();
    assert_eq!(failures["logs"].as_array().unwrap().len(), 1);
    assert_eq!(failures["logs"][0]["status"], 500);
    let by_ada = admin(&gw, Method::GET, "/api/gateways/gw/logs?meta.user=ada", "")
        .await
        .json();
    assert_eq!(by_ada["logs"].as_array().unwrap().len(), 2);
    let mut seen = std::collections::HashSet::new();
    let mut cursor = String::new();
    for _ in 0..5 {
        let page = admin(
            &gw,
            Method::GET,
            &format!("/api/gateways/gw/logs?limit=2{cursor}"),
            "",
        )
        .await
        .json();
        for l in page["logs"].as_array().unwrap() {
            assert!(
                seen.insert(l["id"].as_str().unwrap().to_string()),
                "duplicate across pages"
            );
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);

    // One entry with its bodies; feedback and score.
    let id = first["id"].as_str().unwrap();
    let full = admin(&gw, Method::GET, &format!("/api/gateways/gw/logs/{id}"), "")
        .await
        .json();
    assert!(
        full["request_body"].as_str().unwrap().contains("one")
            || full["request_body"].as_str().unwrap().contains("two")
    );
    let patched = admin(
        &gw,
        Method::PATCH,
        &format!("/api/gateways/gw/logs/{id}"),
        r#"{"feedback":1,"score":0.9,"metadata":{"team":"x"}}"#,
    )
    .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text());
    let again = admin(&gw, Method::GET, &format!("/api/gateways/gw/logs/{id}"), "")
        .await
        .json();
    assert_eq!(again["feedback"], 1);
    assert_eq!(again["metadata"]["team"], "x");
    assert_eq!(again["metadata"]["user"], "ada");
    let bad = admin(
        &gw,
        Method::PATCH,
        &format!("/api/gateways/gw/logs/{id}"),
        r#"{"feedback":5}"#,
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.text().contains("feedback"));

    // Analytics totals equal the sum of the entries.
    let report = admin(
        &gw,
        Method::GET,
        "/api/gateways/gw/analytics?bucket=minute&group_by=model",
        "",
    )
    .await
    .json();
    let totals = &report["totals"];
    assert_eq!(totals["requests"], 5);
    assert_eq!(totals["errors"], 1);
    assert_eq!(totals["status_5xx"], 1);
    assert_eq!(totals["cached"], 1);
    let sum = |k: &str| logs.iter().map(|l| l[k].as_i64().unwrap_or(0)).sum::<i64>();
    assert_eq!(totals["tokens_in"], sum("tokens_in"));
    assert_eq!(totals["tokens_out"], sum("tokens_out"));
    let cost_sum: f64 = logs.iter().map(|l| l["cost"].as_f64().unwrap_or(0.0)).sum();
    assert!((totals["cost"].as_f64().unwrap() - cost_sum).abs() < 1e-12);
    assert!(totals["latency_ms"]["p99"].as_i64().is_some());
    let buckets: i64 = report["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["requests"].as_i64().unwrap())
        .sum();
    assert_eq!(buckets, 5);
    assert_eq!(report["groups"][0]["model"], "gpt-4o-mini");
    assert!(usages.iter().all(|u| u["prompt_tokens"].as_u64().is_some()));

    // The admin API needs its token.
    let denied = send_req(request(
        Method::GET,
        &gw.admin_url("/api/gateways/gw/logs"),
        &[],
        "",
    ))
    .await;
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
    let unknown: Value = admin(&gw, Method::GET, "/api/gateways/nope/logs", "")
        .await
        .json();
    assert!(
        unknown["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nope")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_token_counts_are_exact_without_showing_an_unasked_usage_chunk() {
    let mock = Mock::start().await;
    let mut gw = Gateway::start(
        &format!(
            "{}[gateways.gw]\npipeline = [\"logging\"]\n",
            mock.providers_toml()
        ),
        &[],
    );
    let url = gw.url("/v1/acct/gw/openai/chat/completions");
    let plain = stream(&url, &[], &chat("count my tokens please", true)).await;
    assert!(
        !plain.text().contains("\"usage\""),
        "client got a usage chunk it did not ask for"
    );
    assert_eq!(
        sse_data(&plain.text()).last().map(String::as_str),
        Some("[DONE]")
    );
    let asked = stream(
        &url,
        &[],
        r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"count my tokens please"}]}"#,
    )
    .await;
    let usage_chunk = sse_data(&asked.text())
        .into_iter()
        .filter_map(|d| serde_json::from_str::<Value>(&d).ok())
        .find(|v| v["usage"].is_object())
        .expect("asked-for usage chunk");
    // The upstream was asked for usage both times.
    let seen = mock.requests();
    for r in &seen {
        let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["stream_options"]["include_usage"], true);
    }
    assert!(gw.stop());
    let entries = log_entries(&gw.data_dir());
    assert_eq!(entries.len(), 2);
    for e in &entries {
        assert_eq!(e["tokens_in"], usage_chunk["usage"]["prompt_tokens"]);
        assert_eq!(e["tokens_out"], usage_chunk["usage"]["completion_tokens"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_mid_stream_still_leaves_a_log_entry() {
    let mock = Mock::start().await;
    let mut gw = Gateway::start(
        &format!(
            "{}[gateways.gw]\npipeline = [\"logging\"]\n",
            mock.providers_toml()
        ),
        &[],
    );
    let req = request(
        Method::POST,
        &gw.url("/v1/acct/gw/openai/chat/completions"),
        &[("x-mock-chunks", "10"), ("x-mock-chunk-delay-ms", "200")],
        &chat("leave early", true),
    );
    let resp = client().request(req).await.unwrap();
    let mut body = resp.into_body();
    use http_body_util::BodyExt;
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    drop(body);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(gw.stop());
    let entries = log_entries(&gw.data_dir());
    assert_eq!(entries.len(), 1, "{entries:#?}");
    assert_eq!(entries[0]["outcome"], "ClientAborted");
    assert!(entries[0]["response_size"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percentiles_follow_a_known_latency_distribution_and_metrics_agree() {
    let mock = Mock::start().await;
    let dir = prepare_with_server(
        "admin_listen = \"127.0.0.1:0\"\n",
        &format!(
            "{}[gateways.gw]\npipeline = [\"logging\"]\n",
            mock.providers_toml()
        ),
        &[],
    );
    let gw = Gateway::start_in(dir);
    let url = gw.url("/v1/acct/gw/openai/chat/completions");
    // 18 fast requests and 2 that the mock holds for 400 ms: p50 is fast, p95 and p99 are slow.
    for i in 0..20 {
        let delay = if i % 10 == 9 { "400" } else { "0" };
        send(
            &url,
            &[("x-mock-delay-ms", delay)],
            &chat(&format!("p{i}"), false),
        )
        .await;
    }
    let mut report = Value::Null;
    for _ in 0..60 {
        report = send_req(request(
            Method::GET,
            &gw.admin_url("/api/gateways/gw/analytics"),
            &[],
            "",
        ))
        .await
        .json();
        if report["totals"]["requests"] == 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let latency = &report["totals"]["latency_ms"];
    assert!(latency["p50"].as_i64().unwrap() < 200, "{latency}");
    // Percentiles come from sketches with 1% relative accuracy: at least 400 ms, less 1%.
    assert!(latency["p95"].as_i64().unwrap() >= 396, "{latency}");
    assert!(latency["p99"].as_i64().unwrap() >= 396, "{latency}");
    let metrics = send_req(request(Method::GET, &gw.admin_url("/metrics"), &[], ""))
        .await
        .text();
    assert!(
        metrics.contains("aigw_request_duration_ms_count{gateway=\"gw\",provider=\"openai\",model=\"gpt-4o-mini\"} 20"),
        "{metrics}"
    );
    assert!(metrics.contains("aigw_request_duration_ms_bucket{gateway=\"gw\",provider=\"openai\",model=\"gpt-4o-mini\",le=\"250\"} 18"), "{metrics}");
    assert!(
        metrics.contains("aigw_filter_calls_total{filter=\"logging\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("aigw_cost_usd_total"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_stream_tokens_are_exact() {
    let mock = Mock::start().await;
    let mut gw = Gateway::start(
        &format!(
            "{}[gateways.gw]\npipeline = [\"logging\"]\n",
            mock.providers_toml()
        ),
        &[],
    );
    let s = stream(
        &gw.url("/v1/acct/gw/anthropic/v1/messages"),
        &[("x-api-key", "sk-ant"), ("anthropic-version", "2023-06-01")],
        r#"{"model":"claude-3-5-haiku","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"count these four words"}]}"#,
    )
    .await;
    let events: Vec<Value> = sse_data(&s.text())
        .iter()
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect();
    let input = events
        .iter()
        .find_map(|e| {
            e.pointer("/message/usage/input_tokens")
                .and_then(Value::as_u64)
        })
        .unwrap();
    let output = events
        .iter()
        .filter(|e| e["type"] == "message_delta")
        .find_map(|e| e.pointer("/usage/output_tokens").and_then(Value::as_u64))
        .unwrap();
    assert!(gw.stop());
    let entries = log_entries(&gw.data_dir());
    assert_eq!(entries[0]["tokens_in"], input);
    assert_eq!(entries[0]["tokens_out"], output);
    assert_eq!(entries[0]["streamed"], true);
}
