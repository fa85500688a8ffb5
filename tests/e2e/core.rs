//! The proxy core: passthrough, streaming, keys, errors, h2, shutdown, config checks.

use crate::harness::*;
use hyper::{Method, StatusCode};
use std::time::Duration;

fn config(mock: &Mock, pipeline: &str, filters: &str) -> String {
    format!(
        "{}[gateways.gw]\npipeline = [{pipeline}]\n{filters}",
        mock.providers_toml()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_passthrough_keeps_path_query_keys_and_drops_hop_by_hop() {
    let mock = Mock::start().await;
    let gw = Gateway::start(&config(&mock, "", ""), &[]);
    let r = send(
        &gw.url("/v1/acct/gw/openai/chat/completions?api-version=2024-01-01"),
        &[
            ("content-type", "application/json"),
            ("authorization", "Bearer sk-client-key"),
            ("x-api-key", "sk-ant-other"),
            ("keep-alive", "timeout=5"),
            ("cf-aig-authorization", "Bearer gateway-token"),
            ("cf-aig-metadata", r#"{"user":"ada"}"#),
        ],
        &chat("hello gateway", false),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let body = r.json();
    assert!(
        body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("hello gateway")
    );
    let seen = mock.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["path"], "/v1/chat/completions");
    assert_eq!(seen[0]["query"], "api-version=2024-01-01");
    assert_eq!(seen[0]["headers"]["authorization"], "Bearer sk-client-key");
    assert_eq!(seen[0]["headers"]["x-api-key"], "sk-ant-other");
    assert!(
        seen[0]["headers"].get("keep-alive").is_none(),
        "hop-by-hop header forwarded"
    );
    assert!(
        seen[0]["headers"].get("cf-aig-authorization").is_none(),
        "gateway token forwarded"
    );
    assert!(
        seen[0]["headers"].get("cf-aig-metadata").is_none(),
        "gateway headers are not for the provider"
    );
    assert_eq!(seen[0]["body"], chat("hello gateway", false));
}

/// A small JSON answer passes the body filters (logging, cache) whole and
/// reaches the client in one piece with its true length, not chunked; the
/// done hooks still run after it (the log entry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_answers_through_body_filters_keep_their_length() {
    let mock = Mock::start().await;
    let mut gw = Gateway::start(&config(&mock, "\"logging\", \"cache\"", ""), &[]);
    for _ in 0..2 {
        let r = send(
            &gw.url("/v1/acct/gw/openai/chat/completions"),
            &[("content-type", "application/json")],
            &chat("sized", false),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(
            r.header("content-length"),
            Some(r.body.len().to_string().as_str()),
            "headers: {:?}",
            r.headers
        );
        assert!(r.header("transfer-encoding").is_none(), "{:?}", r.headers);
        assert!(r.json()["choices"][0]["message"]["content"].is_string());
    }
    assert_eq!(mock.requests().len(), 1, "the second answer is a cache hit");
    assert!(gw.stop());
    let entries = log_entries(&gw.data_dir());
    assert_eq!(entries.len(), 2, "{entries:#?}");
    assert!(
        entries
            .iter()
            .all(|e| e["status"] == 200 && e["tokens_out"].is_u64()),
        "{entries:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_chunks_reach_the_client_before_the_stream_ends() {
    let mock = Mock::start().await;
    let gw = Gateway::start(&config(&mock, "", ""), &[]);
    let s = stream(
        &gw.url("/v1/acct/gw/openai/chat/completions"),
        &[("x-mock-chunks", "4"), ("x-mock-chunk-delay-ms", "300")],
        &chat("stream please", true),
    )
    .await;
    assert_eq!(s.status, StatusCode::OK);
    assert_eq!(s.headers.get("content-type").unwrap(), "text/event-stream");
    assert!(s.error.is_none(), "{:?}", s.error);
    // The mock spaces its 8 events by 300 ms: a buffering proxy would deliver
    // everything at once at the end.
    assert!(s.chunks.len() >= 4, "got {} chunks", s.chunks.len());
    let first = s.chunks[0].0;
    assert!(
        s.ended.duration_since(first) >= Duration::from_millis(1200),
        "first chunk arrived only {:?} before the end",
        s.ended.duration_since(first)
    );
    let data = sse_data(&s.text());
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let content = s.delta_text();
    assert!(content.contains("stream please"), "{content}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_shape_passes_through() {
    let mock = Mock::start().await;
    let gw = Gateway::start(&config(&mock, "", ""), &[]);
    let r = send(
        &gw.url("/v1/acct/gw/anthropic/v1/messages"),
        &[("x-api-key", "sk-ant-123"), ("anthropic-version", "2023-06-01")],
        r#"{"model":"claude-3-5-haiku","max_tokens":64,"messages":[{"role":"user","content":"bonjour"}]}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["type"], "message");
    let seen = mock.requests();
    assert_eq!(seen[0]["path"], "/v1/messages");
    assert_eq!(seen[0]["headers"]["x-api-key"], "sk-ant-123");
    assert_eq!(seen[0]["headers"]["anthropic-version"], "2023-06-01");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_errors_are_json_with_the_right_status() {
    let mock = Mock::start().await;
    let cfg = format!(
        "{}[providers.down]\nbase_url = \"http://127.0.0.1:9/v1\"\n[gateways.gw]\npipeline = []\n",
        mock.providers_toml()
    );
    let dir = prepare_with_server("max_body_bytes = 1000\n", &cfg, &[]);
    let gw = Gateway::start_in(dir);

    let cases: Vec<(String, Vec<(&str, &str)>, String, u16, &str)> = vec![
        (
            gw.url("/v1/a/nope/openai/chat/completions"),
            vec![],
            chat("x", false),
            404,
            "unknown gateway 'nope'",
        ),
        (
            gw.url("/v1/a/gw/nope/chat/completions"),
            vec![],
            chat("x", false),
            404,
            "unknown provider 'nope'",
        ),
        (gw.url("/elsewhere"), vec![], String::new(), 404, "no route"),
        (
            gw.url("/v1/a/gw/openai/chat/completions"),
            vec![],
            "x".repeat(5000),
            413,
            "max_body_bytes",
        ),
        (
            gw.url("/v1/a/gw/down/chat/completions"),
            vec![],
            chat("x", false),
            502,
            "provider 'down' unreachable",
        ),
        (
            gw.url("/v1/a/gw/openai/chat/completions"),
            vec![
                ("x-mock-delay-ms", "3000"),
                ("cf-aig-request-timeout", "200"),
            ],
            chat("x", false),
            504,
            "within 200 ms",
        ),
        (
            gw.url("/v1/a/gw/openai/chat/completions"),
            vec![("cf-aig-request-timeout", "soon")],
            chat("x", false),
            400,
            "cf-aig-request-timeout",
        ),
    ];
    for (url, headers, body, status, needle) in cases {
        let r = send(&url, &headers, &body).await;
        assert_eq!(r.status.as_u16(), status, "{url}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"), "{url}");
        let msg = r.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(msg.contains(needle), "{url}: '{msg}' lacks '{needle}'");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_are_served() {
    let mock = Mock::start().await;
    let gw = Gateway::start(&config(&mock, "", ""), &[]);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let req = request(
        Method::POST,
        &gw.url("/v1/a/gw/openai/chat/completions"),
        &[],
        &chat("h2", false),
    );
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_an_in_flight_stream() {
    let mock = Mock::start().await;
    let mut gw = Gateway::start(&config(&mock, "", ""), &[]);
    let url = gw.url("/v1/a/gw/openai/chat/completions");
    let pending = tokio::spawn(async move {
        stream(
            &url,
            &[("x-mock-chunks", "5"), ("x-mock-chunk-delay-ms", "200")],
            &chat("drain me", true),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let stopped = tokio::task::spawn_blocking(move || {
        let ok = gw.stop();
        (ok, gw)
    });
    let s = pending.await.unwrap();
    let (ok, gw) = stopped.await.unwrap();
    assert!(ok, "gateway did not exit cleanly:\n{}", gw.logs());
    assert!(
        s.error.is_none(),
        "stream broken by shutdown: {:?}",
        s.error
    );
    assert_eq!(
        sse_data(&s.text()).last().map(String::as_str),
        Some("[DONE]")
    );
    assert!(gw.logs().contains("draining"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_rejects_bad_configs_with_a_clear_message() {
    let wasm = test_filter_wasm();
    let cases: Vec<(String, Vec<(&str, &[u8])>, &str)> = vec![
        ("[gateways.gw]\npipline = []\n".into(), vec![], "pipline"),
        ("[gateways.gw]\npipeline = [\"nosuch\"]\n".into(), vec![], "unknown filter 'nosuch'"),
        (
            "[gateways.gw]\npipeline = [\"t\"]\n[gateways.gw.filters.t]\nmode = \"reject-config\"\n".into(),
            vec![("t", &wasm)],
            "gateways.gw.filters.t: filter 't': configuration rejected: mode: reject-config",
        ),
        (
            "[gateways.gw]\npipeline = [\"cache\"]\n[gateways.gw.filters.cache]\nttl_s = \"long\"\n".into(),
            vec![],
            "gateways.gw.filters.cache: filter 'cache': configuration rejected: ttl_s",
        ),
        ("[gateways.gw]\npipeline = [\"junk\"]\n".into(), vec![("junk", b"not wasm at all")], "junk.wasm): parse failed"),
        ("[gateways.gw]\npipeline = [\"cache\"]\n[gateways.gw.filters.cache]\non_error = \"sometimes\"\n".into(), vec![], "on_error"),
    ];
    for (cfg, plugins, needle) in cases {
        let (ok, text) = check(&cfg, &plugins);
        assert!(!ok, "accepted:\n{cfg}");
        assert!(
            text.contains(needle),
            "message for\n{cfg}\nlacks '{needle}':\n{text}"
        );
        assert!(
            text.contains("aigw.toml") || text.contains(".wasm"),
            "no file named:\n{text}"
        );
    }
    let (ok, text) = check(
        "[gateways.gw]\npipeline = [\"logging\", \"rate-limit\", \"cache\", \"retry\"]\n[gateways.gw.filters.rate-limit]\nlimit = 5\nperiod_s = 60\n",
        &[],
    );
    assert!(ok, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_bad_config_and_exits_non_zero() {
    let dir = prepare("[gateways.gw]\npipeline = [\"nosuch\"]\n", &[]);
    let out = aigw()
        .arg("serve")
        .arg("--config")
        .arg(dir.path().join("aigw.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown filter 'nosuch'"));
}
