//! Accounting: tokens and cost of every API the gateway reads usage from, against the
//! provider's own usage at published prices, and the price catalog.

use crate::analytics::{admin, admin_gateway, logs_once};
use crate::harness::*;
use hyper::{Method, StatusCode};
use serde_json::Value;
use std::time::Duration;

/// Published prices (USD per million tokens) of the models the test uses: input, output,
/// cached input. Written here from the providers' price pages, not read from the gateway.
fn price(model: &str) -> (f64, f64, f64) {
    match model {
        "gpt-4o-mini" => (0.15, 0.6, 0.075),
        "text-embedding-3-small" => (0.02, 0.0, 0.02),
        "claude-3-5-haiku" => (0.8, 4.0, 0.08),
        other => panic!("no test price for {other}"),
    }
}

/// The cost of one answer from the usage the provider reported to the client, in each API's
/// own names: OpenAI chat and embeddings, Responses, Anthropic.
fn expected_cost(model: &str, usage: &Value) -> f64 {
    let n = |p: &str| usage.pointer(p).and_then(Value::as_u64).unwrap_or(0) as f64;
    let (input, output, cached_rate) = price(model);
    let (fresh, cached, out) = if usage.get("prompt_tokens").is_some() {
        let cached = n("/prompt_tokens_details/cached_tokens");
        (
            n("/prompt_tokens") - cached,
            cached,
            n("/completion_tokens"),
        )
    } else if usage.get("input_tokens_details").is_some() {
        let cached = n("/input_tokens_details/cached_tokens");
        (n("/input_tokens") - cached, cached, n("/output_tokens"))
    } else {
        // Anthropic: input_tokens excludes the cache reads.
        (
            n("/input_tokens"),
            n("/cache_read_input_tokens"),
            n("/output_tokens"),
        )
    };
    (fresh * input + cached * cached_rate + out * output) / 1e6
}

/// Every API's usage becomes exact tokens and cost: chat (JSON, and a stream that asked for
/// usage), Responses (JSON and stream), embeddings, Anthropic with prompt-cache reads. Each log
/// entry's cost and the analytics total equal the cost computed from the provider's usage at
/// the published prices, to the micro-dollar.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_is_billed_exactly_from_the_providers_usage() {
    let mock = Mock::start().await;
    let gw = admin_gateway(&mock, r#"["logging"]"#);
    let openai = |path: &str| gw.url(&format!("/v1/acct/gw/openai/{path}"));
    let cached = [("x-mock-cached-tokens", "4")];
    let mut expected: Vec<(String, f64)> = Vec::new();

    // Chat, JSON, with cached prompt tokens.
    let r = send(
        &openai("chat/completions"),
        &cached,
        &chat("bill me exactly please now", false),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    expected.push((
        "chat json".into(),
        expected_cost("gpt-4o-mini", &r.json()["usage"]),
    ));

    // Chat, streamed, the client asking for the usage chunk itself.
    let body = serde_json::json!({"model": "gpt-4o-mini", "stream": true,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "stream and bill"}]})
    .to_string();
    let s = stream(&openai("chat/completions"), &[], &body).await;
    let usage = s
        .text()
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find_map(|v| v.get("usage").filter(|u| u.is_object()).cloned())
        .expect("usage chunk");
    expected.push(("chat stream".into(), expected_cost("gpt-4o-mini", &usage)));

    // Responses, JSON and streamed.
    let body = serde_json::json!({"model": "gpt-4o-mini", "input": "respond and bill"}).to_string();
    let r = send(&openai("responses"), &cached, &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["object"], "response");
    expected.push((
        "responses json".into(),
        expected_cost("gpt-4o-mini", &r.json()["usage"]),
    ));
    let body =
        serde_json::json!({"model": "gpt-4o-mini", "input": "stream a response", "stream": true})
            .to_string();
    let s = stream(&openai("responses"), &cached, &body).await;
    let completed = s
        .text()
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find(|v| v["type"] == "response.completed")
        .expect("response.completed event");
    expected.push((
        "responses stream".into(),
        expected_cost("gpt-4o-mini", &completed["response"]["usage"]),
    ));

    // Embeddings: input tokens only.
    let body =
        serde_json::json!({"model": "text-embedding-3-small", "input": ["one two three", "four"]})
            .to_string();
    let r = send(&openai("embeddings"), &[], &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["data"].as_array().map(Vec::len), Some(2));
    expected.push((
        "embeddings".into(),
        expected_cost("text-embedding-3-small", &r.json()["usage"]),
    ));

    // Anthropic Messages with prompt-cache reads.
    let body = serde_json::json!({"model": "claude-3-5-haiku", "max_tokens": 64,
        "messages": [{"role": "user", "content": "anthropic bills cache reads apart"}]})
    .to_string();
    let r = send(
        &gw.url("/v1/acct/gw/anthropic/messages"),
        &[("x-mock-cached-tokens", "3")],
        &body,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["usage"]["cache_read_input_tokens"], 3);
    expected.push((
        "anthropic json".into(),
        expected_cost("claude-3-5-haiku", &r.json()["usage"]),
    ));

    let logs = logs_once(&gw, expected.len(), 100).await;
    assert_eq!(logs.len(), expected.len(), "{logs:#?}");
    // The log lists newest first.
    for ((what, want), entry) in expected.iter().zip(logs.iter().rev()) {
        let got = entry["cost"]
            .as_f64()
            .unwrap_or_else(|| panic!("{what}: no cost: {entry}"));
        assert!(
            (got - want).abs() < 1e-12,
            "{what}: logged {got}, expected {want}: {entry}"
        );
    }
    let total: f64 = expected.iter().map(|(_, c)| c).sum();
    let report = admin(&gw, Method::GET, "/api/gateways/gw/analytics", "")
        .await
        .json();
    let reported = report["totals"]["cost"].as_f64().unwrap();
    assert!(
        (reported - total).abs() < 1e-6 / 1e3,
        "analytics total {reported}, expected {total}"
    );
}

/// `[server] price_catalog` replaces the shipped catalog: costs follow the file, and /metrics
/// names its version; `[[prices]]` on top mark it `+config`; a bad file is refused naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_catalog_file_replaces_the_shipped_one() {
    let mock = Mock::start().await;
    let dir = prepare_with_server(
        "price_catalog = \"my-prices.toml\"\n",
        &format!(
            "{}[gateways.gw]\npipeline = [\"logging\"]\n[[prices]]\nprovider = \"anthropic\"\nmodel = \"x\"\ninput_per_million = 1.0\noutput_per_million = 1.0\n",
            mock.providers_toml()
        ),
        &[],
    );
    std::fs::write(
        dir.path().join("my-prices.toml"),
        "version = \"test-7\"\n[[prices]]\nprovider = \"openai\"\nmodel = \"gpt-4o-mini\"\ninput = 1000.0\noutput = 2000.0\nsource = \"test\"\ndate = \"2026-11-27\"\n",
    )
    .unwrap();
    let gw = Gateway::start_in(dir);
    let r = send(
        &gw.url("/v1/acct/gw/openai/chat/completions"),
        &[],
        &chat("priced by my file", false),
    )
    .await;
    let usage = r.json()["usage"].clone();
    let want = (usage["prompt_tokens"].as_f64().unwrap() * 1000.0
        + usage["completion_tokens"].as_f64().unwrap() * 2000.0)
        / 1e6;
    let metrics = || async {
        send_req(request(Method::GET, &gw.url("/metrics"), &[], ""))
            .await
            .text()
    };
    let text = metrics().await;
    assert!(
        text.contains("aigw_price_catalog_info{version=\"test-7+config\"} 1"),
        "{text}"
    );
    eventually(Duration::from_secs(3), || async {
        metrics().await.contains("aigw_cost_usd_total")
    })
    .await;
    let logs = eventually(Duration::from_secs(3), || async {
        !log_entries(&gw.data_dir()).is_empty()
    })
    .await;
    assert!(logs.is_some());
    let entries = log_entries(&gw.data_dir());
    let cost = entries[0]["cost"].as_f64().unwrap();
    assert!((cost - want).abs() < 1e-9, "cost {cost}, expected {want}");
    let dir = prepare_with_server(
        "price_catalog = \"missing.toml\"\n",
        "[gateways.gw]\npipeline = []\n",
        &[],
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aigw"))
        .arg("check")
        .arg("--config")
        .arg(dir.path().join("aigw.toml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        text.contains("server.price_catalog") && text.contains("missing.toml"),
        "{text}"
    );
}

/// Generated images are billed from their token usage even when the answer is megabytes of
/// base64; a model without a price is shown as unpriced; and after the prices change,
/// `aigw logs recost` recomputes each entry from its kept usage at the new prices, leaving
/// cache hits and custom costs alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_are_billed_and_logs_are_recosted_after_a_price_change() {
    let mock = Mock::start().await;
    let gw = admin_gateway(&mock, r#"["logging"]"#);
    let openai = |path: &str| gw.url(&format!("/v1/acct/gw/openai/{path}"));

    // Two high-quality images, each about 3 MB of base64: 6 MB, past the JSON usage buffer.
    let body = serde_json::json!({"model": "gpt-image-1", "prompt": "a lighthouse at dusk",
        "n": 2, "quality": "high"})
    .to_string();
    let r = send(
        &openai("images/generations"),
        &[("x-mock-image-bytes", "3000000")],
        &body,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let answer = r.json();
    assert_eq!(answer["data"].as_array().map(Vec::len), Some(2));
    assert!(r.text().len() > 6_000_000);
    let image_usage = answer["usage"].clone();
    assert_eq!(image_usage["output_tokens"], 2 * 4160);
    let n = |u: &Value, k: &str| u[k].as_f64().unwrap();
    // gpt-image-1 at OpenAI's price page: $5 per million text input, $40 per million output.
    let image_cost =
        (n(&image_usage, "input_tokens") * 5.0 + n(&image_usage, "output_tokens") * 40.0) / 1e6;

    // A model the catalog does not know: unpriced.
    let body = serde_json::json!({"model": "house-model-1",
        "messages": [{"role": "user", "content": "who prices me"}]})
    .to_string();
    let r = send(&openai("chat/completions"), &[], &body).await;
    assert_eq!(r.status, StatusCode::OK);
    let house_usage = r.json()["usage"].clone();
    // A client's own cost, which recosting must leave alone.
    let r = send(
        &openai("chat/completions"),
        &[("cf-aig-custom-cost", r#"{"total_cost":0.5}"#)],
        &chat("my own price", false),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);

    let logs = logs_once(&gw, 3, 100).await;
    assert_eq!(logs.len(), 3, "{logs:#?}");
    let (custom, house, image) = (&logs[0], &logs[1], &logs[2]);
    assert_eq!(image["tokens_out"], 8320, "{image}");
    let got = image["cost"].as_f64().unwrap();
    assert!((got - image_cost).abs() < 1e-12, "{got} vs {image_cost}");
    assert_eq!(image["usage"]["output"], 8320);
    assert_eq!(image["cost_source"], "catalog");
    assert_eq!(image["price_catalog"], "2025-11-28.1");
    assert!(house["cost"].is_null() && house["price_catalog"].is_null());
    assert_eq!(house["usage"]["input"], house_usage["prompt_tokens"]);
    assert_eq!(custom["cost"], 0.5);
    assert_eq!(custom["cost_source"], "custom");

    let report = admin(&gw, Method::GET, "/api/gateways/gw/analytics", "")
        .await
        .json();
    assert_eq!(report["totals"]["unpriced"], 1, "{report}");
    assert_eq!(
        report["totals"]["price_catalogs"][0]["version"], "2025-11-28.1",
        "{report}"
    );
    let unpriced = admin(&gw, Method::GET, "/api/gateways/gw/logs?unpriced=true", "")
        .await
        .json();
    assert_eq!(unpriced["logs"].as_array().map(Vec::len), Some(1));
    assert_eq!(unpriced["logs"][0]["model"], "house-model-1");
    let page = send_req(request(
        Method::GET,
        &gw.admin_url("/dashboard?gateway=gw"),
        &[("authorization", "Bearer adm1n")],
        "",
    ))
    .await
    .text();
    assert!(
        page.contains("prices 2025-11-28.1") && page.contains("unpriced=true\">1</a>"),
        "{page}"
    );

    // New prices: the house model gets one, gpt-image-1 gets dearer. Reload, then recost.
    let config = std::fs::read_to_string(gw.config_file()).unwrap();
    std::fs::write(
        gw.config_file(),
        format!(
            "{config}\n[[prices]]\nprovider = \"openai\"\nmodel = \"house-model-1\"\n\
             input_per_million = 2.0\noutput_per_million = 3.0\n\
             [[prices]]\nprovider = \"openai\"\nmodel = \"gpt-image-1\"\n\
             input_per_million = 6.0\noutput_per_million = 50.0\n"
        ),
    )
    .unwrap();
    let reload = admin(&gw, Method::POST, "/api/reload", "").await;
    assert_eq!(reload.status, StatusCode::OK, "{}", reload.text());
    let out = aigw()
        .args([
            "logs",
            "recost",
            "--gateway",
            "gw",
            "--since",
            "1h",
            "--admin",
        ])
        .arg(gw.admin_url(""))
        .args(["--admin-token", "adm1n"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            &report["scanned"],
            &report["recosted"],
            &report["skipped"],
            &report["unpriced"]
        ),
        (&3.into(), &2.into(), &1.into(), &0.into()),
        "{report}"
    );
    assert_eq!(report["price_catalog"], "2025-11-28.1+config");

    let logs = logs_once(&gw, 3, 10).await;
    let (custom, house, image) = (&logs[0], &logs[1], &logs[2]);
    let want =
        (n(&image_usage, "input_tokens") * 6.0 + n(&image_usage, "output_tokens") * 50.0) / 1e6;
    let got = image["cost"].as_f64().unwrap();
    assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    assert_eq!(image["price_catalog"], "2025-11-28.1+config");
    let want =
        (n(&house_usage, "prompt_tokens") * 2.0 + n(&house_usage, "completion_tokens") * 3.0) / 1e6;
    let got = house["cost"].as_f64().unwrap();
    assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    assert_eq!(custom["cost"], 0.5);
    let report = admin(&gw, Method::GET, "/api/gateways/gw/analytics", "")
        .await
        .json();
    assert_eq!(report["totals"]["unpriced"], 0, "{report}");

    // Errors name what is wrong.
    let bad = admin(&gw, Method::POST, "/api/gateways/gw/logs/recost", "").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.text().contains("since"), "{}", bad.text());
    let out = aigw()
        .args([
            "logs",
            "recost",
            "--gateway",
            "gw",
            "--since",
            "last week",
            "--admin",
        ])
        .arg(gw.admin_url(""))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--since last week"));
}
