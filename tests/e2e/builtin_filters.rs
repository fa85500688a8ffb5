//! The built-in cache, rate-limit, retry and logging filters, as WASM, from
//! the config, through the real binary.

use crate::harness::*;
use hyper::StatusCode;
use std::time::Duration;

fn gateway(mock: &Mock, pipeline: &str, tables: &str) -> Gateway {
    let cfg = format!(
        "{}[gateways.gw]\npipeline = [{pipeline}]\n{tables}",
        mock.providers_toml()
    );
    Gateway::start(&cfg, &[])
}

fn url(gw: &Gateway) -> String {
    gw.url("/v1/acct/gw/openai/chat/completions")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_hits_misses_ttl_and_skip() {
    let mock = Mock::start().await;
    let gw = gateway(
        &mock,
        "\"cache\"",
        "[gateways.gw.filters.cache]\nttl_s = 60\n",
    );
    let key_a = [("authorization", "Bearer key-a")];
    let first = send(
        &url(&gw),
        &key_a,
        r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(first.header("cf-aig-cache-status"), Some("MISS"));
    // Same request, other key order and whitespace: a HIT, and the mock is not called.
    let second = send(
        &url(&gw),
        &key_a,
        r#"{ "messages": [{"content":"hi", "role":"user"}], "model": "m" }"#,
    )
    .await;
    assert_eq!(second.header("cf-aig-cache-status"), Some("HIT"));
    assert_eq!(second.body, first.body);
    assert_eq!(mock.requests().len(), 1);
    // Another provider key never shares the entry.
    let other = send(
        &url(&gw),
        &[("authorization", "Bearer key-b")],
        r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(other.header("cf-aig-cache-status"), Some("MISS"));
    assert_eq!(mock.requests().len(), 2);
    // Skip-cache bypasses.
    let skipped = send(
        &url(&gw),
        &[
            ("authorization", "Bearer key-a"),
            ("cf-aig-skip-cache", "true"),
        ],
        r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(skipped.header("cf-aig-cache-status"), Some("MISS"));
    assert_eq!(mock.requests().len(), 3);
    // A 1 s TTL expires.
    let body = chat("short lived", false);
    let ttl = [("cf-aig-cache-ttl", "1")];
    assert_eq!(
        send(&url(&gw), &ttl, &body)
            .await
            .header("cf-aig-cache-status"),
        Some("MISS")
    );
    assert_eq!(
        send(&url(&gw), &ttl, &body)
            .await
            .header("cf-aig-cache-status"),
        Some("HIT")
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        send(&url(&gw), &ttl, &body)
            .await
            .header("cf-aig-cache-status"),
        Some("MISS")
    );
    // cf-aig-cache-ttl: 0 stores nothing.
    let none = chat("never stored", false);
    send(&url(&gw), &[("cf-aig-cache-ttl", "0")], &none).await;
    assert_eq!(
        send(&url(&gw), &[], &none)
            .await
            .header("cf-aig-cache-status"),
        Some("MISS")
    );
    // Errors are not cached.
    let failing = [("x-mock-status", "500")];
    send(&url(&gw), &failing, &chat("fails", false)).await;
    assert_eq!(
        send(&url(&gw), &failing, &chat("fails", false))
            .await
            .header("cf-aig-cache-status"),
        Some("MISS")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_stream_replays_as_valid_sse() {
    let mock = Mock::start().await;
    let gw = gateway(&mock, "\"cache\"", "");
    let body = chat("stream me twice", true);
    let first = stream(&url(&gw), &[("x-mock-chunk-delay-ms", "5")], &body).await;
    assert_eq!(first.headers.get("cf-aig-cache-status").unwrap(), "MISS");
    let second = stream(&url(&gw), &[], &body).await;
    assert_eq!(second.headers.get("cf-aig-cache-status").unwrap(), "HIT");
    assert_eq!(
        second.headers.get("content-type").unwrap(),
        "text/event-stream"
    );
    assert_eq!(mock.requests().len(), 1);
    let text = Streamed::delta_text;
    assert!(text(&first).contains("stream me twice"));
    assert_eq!(text(&first), text(&second));
    assert_eq!(
        sse_data(&second.text()).last().map(String::as_str),
        Some("[DONE]")
    );
    // The non-streamed form of the same prompt is a different entry.
    let json = send(&url(&gw), &[], &chat("stream me twice", false)).await;
    assert_eq!(json.header("cf-aig-cache-status"), Some("MISS"));
    assert!(json.json()["choices"].is_array());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_refuses_the_21st_request_per_key() {
    let mock = Mock::start().await;
    let gw = gateway(
        &mock,
        "\"rate-limit\"",
        "[gateways.gw.filters.rate-limit]\nlimit = 20\nperiod_s = 3600\nkey = \"header:x-user-id\"\ntechnique = \"sliding\"\n",
    );
    for i in 0..20 {
        let r = send(&url(&gw), &[("x-user-id", "alice")], &chat("x", false)).await;
        assert_eq!(r.status, StatusCode::OK, "request {i}");
    }
    let refused = send(&url(&gw), &[("x-user-id", "alice")], &chat("x", false)).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry_after), "{retry_after}");
    assert!(
        refused.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("rate limit of 20 requests per 3600s")
    );
    let bob = send(&url(&gw), &[("x-user-id", "bob")], &chat("x", false)).await;
    assert_eq!(bob.status, StatusCode::OK);
    assert_eq!(mock.requests().len(), 21);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_recovers_from_two_failures_with_spacing() {
    let mock = Mock::start().await;
    let gw = gateway(
        &mock,
        "\"retry\"",
        "[gateways.gw.filters.retry]\nmax_attempts = 3\ndelay_ms = 200\nbackoff = \"constant\"\n",
    );
    let body = chat("retry me", false);
    let r = send(
        &url(&gw),
        &[
            ("x-mock-status", "500"),
            ("x-mock-fail-times", "2"),
            ("x-mock-fail-key", "t1"),
        ],
        &body,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("cf-aig-attempts"), Some("3"));
    let seen = mock.requests();
    assert_eq!(seen.len(), 3);
    for pair in seen.windows(2) {
        let gap = pair[1]["at_ms"].as_u64().unwrap() - pair[0]["at_ms"].as_u64().unwrap();
        assert!(gap >= 180, "attempts only {gap} ms apart");
        assert_eq!(
            pair[0]["body"], pair[1]["body"],
            "body changed between attempts"
        );
    }
    // Per-request override: one attempt only.
    let once = send(
        &url(&gw),
        &[("x-mock-status", "503"), ("cf-aig-max-attempts", "1")],
        &body,
    )
    .await;
    assert_eq!(once.status.as_u16(), 503);
    assert_eq!(mock.requests().len(), 4);
    // The retry filter is stateless: its instance serves the next request unreset, and the
    // override above stayed with its request.
    let again = send(&url(&gw), &[("x-mock-status", "503")], &body).await;
    assert_eq!(again.status.as_u16(), 503);
    assert_eq!(again.header("cf-aig-attempts"), Some("3"));
    assert_eq!(mock.requests().len(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_broken_after_its_first_byte_is_not_retried() {
    let mock = Mock::start().await;
    let gw = gateway(
        &mock,
        "\"retry\"",
        "[gateways.gw.filters.retry]\nmax_attempts = 3\ndelay_ms = 10\n",
    );
    let s = stream(
        &url(&gw),
        &[("x-mock-truncate-after", "3")],
        &chat("break", true),
    )
    .await;
    assert_eq!(s.status, StatusCode::OK);
    assert!(
        s.error.is_some(),
        "a broken upstream stream must not end cleanly"
    );
    assert!(!s.chunks.is_empty());
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_on_connection_errors() {
    let mock = Mock::start().await;
    let cfg = format!(
        "{}[providers.down]\nbase_url = \"http://127.0.0.1:9\"\n[gateways.gw]\npipeline = [\"retry\"]\n[gateways.gw.filters.retry]\nmax_attempts = 3\ndelay_ms = 10\n",
        mock.providers_toml()
    );
    let gw = Gateway::start(&cfg, &[]);
    let r = send(&gw.url("/v1/a/gw/down/x"), &[], "{}").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(r.header("cf-aig-attempts"), Some("3"));
    let metrics = send_req(request(hyper::Method::GET, &gw.url("/metrics"), &[], ""))
        .await
        .text();
    assert!(
        metrics.contains("aigw_upstream_attempts_total 3"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_leaves_one_log_entry() {
    let mock = Mock::start().await;
    let mut gw = gateway(
        &mock,
        "\"logging\", \"rate-limit\", \"cache\", \"retry\"",
        "[gateways.gw.filters.rate-limit]\nlimit = 3\nperiod_s = 60\n[gateways.gw.filters.retry]\ndelay_ms = 10\n",
    );
    let plain = send(
        &url(&gw),
        &[
            ("authorization", "Bearer sk-secret-key"),
            ("cf-aig-metadata", r#"{"user":"ada","tier":2}"#),
        ],
        &chat("log me", false),
    )
    .await;
    assert_eq!(plain.status, StatusCode::OK);
    let log_id = plain.header("cf-aig-log-id").unwrap().to_string();
    let hit = send(
        &url(&gw),
        &[("authorization", "Bearer sk-secret-key")],
        &chat("log me", false),
    )
    .await;
    assert_eq!(hit.header("cf-aig-cache-status"), Some("HIT"));
    let streamed = stream(
        &url(&gw),
        &[("x-mock-chunk-delay-ms", "1")],
        &chat("stream log", true),
    )
    .await;
    assert!(streamed.error.is_none());
    let limited = send(&url(&gw), &[], &chat("too many", false)).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    let bad = send(
        &url(&gw),
        &[("cf-aig-metadata", "[1,2]")],
        &chat("x", false),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.text().contains("cf-aig-metadata"));
    let silent = send(
        &url(&gw),
        &[("cf-aig-collect-log", "false")],
        &chat("x", false),
    )
    .await;
    assert_eq!(silent.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(gw.stop(), "{}", gw.logs());

    let entries = log_entries(&gw.data_dir());
    assert_eq!(entries.len(), 5, "{entries:#?}");
    let by_id = |id: &str| entries.iter().find(|e| e["id"] == id).unwrap().clone();
    let first = by_id(&log_id);
    assert_eq!(first["status"], 200);
    assert_eq!(first["success"], true);
    assert_eq!(first["cached"], false);
    assert_eq!(first["provider"], "openai");
    assert_eq!(first["model"], "gpt-4o-mini");
    assert_eq!(first["gateway"], "gw");
    assert_eq!(first["metadata"]["user"], "ada");
    let usage = plain.json()["usage"].clone();
    assert_eq!(first["tokens_in"], usage["prompt_tokens"]);
    assert_eq!(first["tokens_out"], usage["completion_tokens"]);
    assert!(first["request_body"].as_str().unwrap().contains("log me"));
    assert_eq!(entries[1]["cached"], true);
    // Instances are reused across requests: nothing of the first request's
    // state (its metadata) may show in the next one.
    assert!(
        entries[1]["metadata"].is_null(),
        "{:?}",
        entries[1]["metadata"]
    );
    assert_eq!(entries[1]["tokens_out"], usage["completion_tokens"]);
    assert_eq!(entries[2]["streamed"], true);
    assert!(entries[2]["tokens_out"].as_u64().unwrap() > 0);
    assert_eq!(entries[3]["status"], 429);
    assert_eq!(entries[4]["status"], 400);
    let everything = serde_json::to_string(&entries).unwrap();
    assert!(
        !everything.contains("sk-secret-key"),
        "a provider key reached the log store"
    );
    assert!(
        !gw.logs().contains("sk-secret-key"),
        "a provider key reached the process log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_cf_aig_values_are_400_naming_the_header() {
    let mock = Mock::start().await;
    let gw = gateway(&mock, "\"logging\", \"cache\", \"retry\"", "");
    for (name, value) in [
        ("cf-aig-cache-ttl", "forever"),
        ("cf-aig-skip-cache", "perhaps"),
        ("cf-aig-max-attempts", "6"),
        ("cf-aig-retry-delay", "-5"),
        ("cf-aig-backoff", "fibonacci"),
        ("cf-aig-collect-log", "1"),
        ("cf-aig-metadata", r#"{"a":[1]}"#),
        ("cf-aig-custom-cost", "cheap"),
        ("cf-aig-request-timeout", "0"),
    ] {
        let r = send(&url(&gw), &[(name, value)], &chat("x", false)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{name}: {value}");
        assert!(
            r.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains(name),
            "{name}: {}",
            r.text()
        );
    }
    assert!(mock.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_survives_a_restart_and_a_corrupt_snapshot_is_ignored() {
    let mock = Mock::start().await;
    let mut gw = gateway(&mock, "\"cache\"", "");
    let body = chat("remember me", false);
    assert_eq!(
        send(&url(&gw), &[], &body)
            .await
            .header("cf-aig-cache-status"),
        Some("MISS")
    );
    assert!(gw.stop());
    let snapshot = gw.data_dir().join("kv-snapshot.bin");
    assert!(snapshot.exists());
    let gw = gw.restart();
    assert_eq!(
        send(&url(&gw), &[], &body)
            .await
            .header("cf-aig-cache-status"),
        Some("HIT")
    );
    assert_eq!(mock.requests().len(), 1);
    let mut gw = gw;
    assert!(gw.stop());
    std::fs::write(&snapshot, b"definitely not bincode").unwrap();
    let gw = gw.restart();
    let r = send(&url(&gw), &[], &body).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("cf-aig-cache-status"), Some("MISS"));
    assert!(
        gw.logs().contains("ignoring the key-value snapshot"),
        "{}",
        gw.logs()
    );
}
