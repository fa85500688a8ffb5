//! Custom filters through the real host: answering early, rewriting headers,
//! and failing (trap, endless loop, memory bomb) under both `on_error` policies.

use crate::harness::*;
use hyper::StatusCode;
use std::time::{Duration, Instant};

fn gateway_with(mock: &Mock, table: &str) -> Gateway {
    let cfg = format!(
        "{}[gateways.gw]\npipeline = [\"custom\"]\n[gateways.gw.filters.custom]\n{table}",
        mock.providers_toml()
    );
    Gateway::start(&cfg, &[("custom", &test_filter_wasm())])
}

fn url(gw: &Gateway) -> String {
    gw.url("/v1/acct/gw/openai/chat/completions")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_can_answer_early_and_the_upstream_is_skipped() {
    let mock = Mock::start().await;
    let gw = gateway_with(&mock, "mode = \"respond\"\nstatus = 451\n");
    let r = send(&url(&gw), &[], &chat("x", false)).await;
    assert_eq!(r.status.as_u16(), 451);
    assert_eq!(r.header("x-answered-by"), Some("test-filter"));
    assert_eq!(r.json()["error"]["type"], "blocked");
    assert!(mock.requests().is_empty(), "upstream was called");
}

/// A warm instance serves request after request, and each starts from a
/// freshly configured filter value: nothing of the previous one is visible.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_sees_a_freshly_configured_filter_on_a_reused_instance() {
    let mock = Mock::start().await;
    let gw = gateway_with(&mock, "mode = \"count\"\n");
    let mut served = Vec::new();
    for _ in 0..5 {
        let r = send(&url(&gw), &[], &chat("x", false)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.header("x-test-seen"), Some("1"), "{:?}", r.headers);
        served.push(
            r.header("x-test-instance-requests")
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0),
        );
    }
    assert!(
        served.iter().any(|&n| n >= 2),
        "no instance was reused, so the reset was not exercised: {served:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_can_rewrite_request_and_response_headers() {
    let mock = Mock::start().await;
    let gw = gateway_with(
        &mock,
        "mode = \"set-header\"\nheader = \"x-team\"\nvalue = \"search\"\n",
    );
    let r = send(&url(&gw), &[("x-team", "original")], &chat("x", false)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-filtered"), Some("search"));
    let seen = mock.requests();
    assert_eq!(seen[0]["headers"]["x-team"], "search");
    assert_eq!(seen[0]["headers"]["x-test-previous"], "original");
}

async fn failing(mode: &str, extra: &str) {
    let mock = Mock::start().await;
    for policy in ["open", "closed"] {
        let gw = gateway_with(
            &mock,
            &format!("mode = \"{mode}\"\non_error = \"{policy}\"\n{extra}"),
        );
        for _ in 0..2 {
            let started = Instant::now();
            let r = send(&url(&gw), &[], &chat("x", false)).await;
            if policy == "open" {
                assert_eq!(r.status, StatusCode::OK, "{mode}/open: {}", r.text());
            } else {
                assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{mode}/closed");
                let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
                assert!(msg.contains("filter 'custom'"), "{msg}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{mode} took {:?}",
                started.elapsed()
            );
        }
        // The host is still healthy.
        let h = send_req(request(hyper::Method::GET, &gw.url("/healthz"), &[], "")).await;
        assert_eq!(h.status, StatusCode::OK);
        let metrics = send_req(request(hyper::Method::GET, &gw.url("/metrics"), &[], ""))
            .await
            .text();
        assert!(
            metrics.contains("aigw_filter_failures_total{filter=\"custom\"} 2"),
            "{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_filter_follows_on_error() {
    failing("trap", "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_filter_hits_its_deadline() {
    failing("loop", "timeout_ms = 30\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_bomb_hits_its_memory_cap() {
    failing("memory-bomb", "max_memory_mb = 16\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_message_names_the_cause() {
    let mock = Mock::start().await;
    let gw = gateway_with(
        &mock,
        "mode = \"loop\"\non_error = \"closed\"\ntimeout_ms = 20\n",
    );
    let r = send(&url(&gw), &[], &chat("x", false)).await;
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("deadline exceeded"), "{msg}");
    assert!(mock.requests().is_empty());
}

fn metric(text: &str, line_start: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// After `circuit_failures` failed requests in a row the filter is not called
/// (its policy applies at once); after `circuit_open_ms` one request probes it;
/// once it works again the circuit closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_circuit_opens_after_repeated_traps_and_closes_when_the_filter_recovers() {
    let mock = Mock::start().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let healthy_at = now + 2_500;
    let gw = gateway_with(
        &mock,
        &format!(
            "mode = \"trap-until\"\nuntil_ms = {healthy_at}\non_error = \"closed\"\ncircuit_failures = 3\ncircuit_open_ms = 600\n"
        ),
    );
    let metrics = || async {
        send_req(request(hyper::Method::GET, &gw.url("/metrics"), &[], ""))
            .await
            .text()
    };
    let failures = "aigw_filter_failures_total{filter=\"custom\"}";
    let skipped = "aigw_filter_circuit_skipped_total{filter=\"custom\"}";
    let opened = "aigw_filter_circuit_opened_total{filter=\"custom\"}";
    for _ in 0..3 {
        let r = send(&url(&gw), &[], &chat("x", false)).await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text());
    }
    // Open: answered at once with 503, the filter is not called.
    let r = send(&url(&gw), &[], &chat("x", false)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert!(r.text().contains("circuit is open"), "{}", r.text());
    let m = metrics().await;
    assert_eq!(metric(&m, failures), 3, "{m}");
    assert_eq!(metric(&m, skipped), 1, "{m}");
    assert_eq!(metric(&m, opened), 1, "{m}");
    assert!(mock.requests().is_empty());
    assert!(gw.logs().contains("circuit opened"), "{}", gw.logs());

    // Probes while still broken re-open it; once healthy, it closes.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(Instant::now() < deadline, "the circuit never closed");
        tokio::time::sleep(Duration::from_millis(150)).await;
        let r = send(&url(&gw), &[], &chat("x", false)).await;
        if r.status == StatusCode::OK {
            break;
        }
        assert!(
            [
                StatusCode::INTERNAL_SERVER_ERROR,
                StatusCode::SERVICE_UNAVAILABLE
            ]
            .contains(&r.status),
            "{}",
            r.text()
        );
    }
    let m = metrics().await;
    assert!(metric(&m, failures) >= 4, "at least one probe failed: {m}");
    assert!(metric(&m, opened) >= 2, "a failed probe re-opens: {m}");
    for _ in 0..5 {
        let r = send(&url(&gw), &[], &chat("x", false)).await;
        assert_eq!(r.status, StatusCode::OK, "closed again: {}", r.text());
    }
    assert!(mock.requests().len() >= 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_filter_output_is_refused_or_delivered_but_never_hurts_the_host() {
    let mock = Mock::start().await;
    // 600 KB of headers: refused as a bad answer, the policy applies.
    for (policy, expected) in [
        ("open", StatusCode::OK),
        ("closed", StatusCode::INTERNAL_SERVER_ERROR),
    ] {
        let gw = gateway_with(
            &mock,
            &format!("mode = \"huge-headers\"\non_error = \"{policy}\"\n"),
        );
        let r = send(&url(&gw), &[], &chat("x", false)).await;
        assert_eq!(r.status, expected, "{policy}: {}", r.text());
        if policy == "closed" {
            assert!(r.text().contains("local response"), "{}", r.text());
        } else {
            assert!(r.header("x-huge-0").is_none());
        }
    }
    // A 40 MB body inside the memory cap is a valid answer and arrives whole.
    let gw = gateway_with(
        &mock,
        "mode = \"huge-body\"\nmax_memory_mb = 128\ntimeout_ms = 2000\non_error = \"closed\"\n",
    );
    let r = send(&url(&gw), &[], &chat("x", false)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.body.len(),
        40 << 20,
        "{}",
        String::from_utf8_lossy(&r.body[..r.body.len().min(400)])
    );
    let health = send_req(request(hyper::Method::GET, &gw.url("/healthz"), &[], "")).await;
    assert_eq!(health.status, StatusCode::OK);
}
