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
