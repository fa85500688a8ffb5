//! The filter contract's versions run side by side: a component built against an earlier
//! `aigw:filter@0.1.0` (the test filter at commit 782b2e1, before `http-client`,
//! `edit-response-head` and `on-error-setting` were added, committed as a fixture) loads beside
//! today's filters, built against `aigw:filter@0.2.0`, and behaves as it did: it edits request
//! and response headers, answers locally, and a 0.2.0 filter runs next to it in one pipeline.
//! A 0.2.0 filter that declares `stateless` is configured once and lent per hook call.

use crate::harness::*;
use hyper::{Method, StatusCode};
use std::path::PathBuf;

const ADMIN: &str = "admin_listen = \"127.0.0.1:0\"\n";

fn old_filter() -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/filters/test-filter-0.1.0-782b2e1.wasm");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_built_against_an_earlier_0_1_0_still_loads_and_behaves() {
    let old = old_filter();
    // Built before the additions: it does not import them.
    let text = String::from_utf8_lossy(&old);
    assert!(!text.contains("http-client") && !text.contains("edit-response-head"));
    let mock = Mock::start().await;
    let config = format!(
        "{}[gateways.gw]\npipeline = [\"old\", \"new\"]\n\
         [gateways.gw.filters.old]\nmode = \"set-header\"\nheader = \"x-old\"\nvalue = \"from-782b2e1\"\n\
         [gateways.gw.filters.new]\nmode = \"set-header\"\nheader = \"x-new\"\nvalue = \"from-today\"\n\
         [gateways.refuse]\npipeline = [\"old\"]\n\
         [gateways.refuse.filters.old]\nmode = \"respond\"\nstatus = 451\n",
        mock.providers_toml()
    );
    let gw = Gateway::start_in(prepare_with_server(
        ADMIN,
        &config,
        &[("old", &old), ("new", &test_filter_wasm())],
    ));
    let r = send(
        &gw.url("/v1/acct/gw/openai/chat/completions"),
        &[],
        &chat("hi", false),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let seen = &mock.requests()[0]["headers"];
    assert_eq!(seen["x-old"], "from-782b2e1", "{seen}");
    assert_eq!(seen["x-new"], "from-today", "{seen}");
    assert!(r.header("x-filtered").is_some());

    let r = send(
        &gw.url("/v1/acct/refuse/openai/chat/completions"),
        &[],
        &chat("hi", false),
    )
    .await;
    assert_eq!(r.status.as_u16(), 451, "{}", r.text());
    assert_eq!(r.header("x-answered-by"), Some("test-filter"));
    assert_eq!(mock.requests().len(), 1);

    // Each runs on the bindings of the version it was built for.
    let status = send_req(request(Method::GET, &gw.admin_url("/api/plugins"), &[], ""))
        .await
        .json();
    let version = |name: &str| {
        status["plugins"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["name"] == name))
            .map(|p| p["wit_version"].clone())
    };
    assert_eq!(version("old"), Some("aigw:filter@0.1.0".into()), "{status}");
    assert_eq!(version("new"), Some("aigw:filter@0.2.0".into()), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateless_filter_is_configured_once_and_reads_headers_on_demand() {
    let mock = Mock::start().await;
    let config = format!(
        "{}[gateways.gw]\npipeline = [\"stateless\", \"old\"]\n\
         [gateways.gw.filters.stateless]\ntag = \"x-team\"\nprobe = true\n\
         [gateways.gw.filters.old]\nmode = \"set-header\"\nheader = \"x-team\"\nvalue = \"rewritten\"\n",
        mock.providers_toml()
    );
    let gw = Gateway::start_in(prepare_with_server(
        ADMIN,
        &config,
        &[
            ("stateless", &stateless_filter_wasm()),
            ("old", &old_filter()),
        ],
    ));
    let url = gw.url("/v1/acct/gw/openai/chat/completions");
    let mut calls = Vec::new();
    for i in 0..6 {
        let team = format!("team-{i}");
        let r = send(&url, &[("x-team", &team)], &chat("hi", false)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        // The header it read on demand is this request's, as the client sent it (the 0.1.0
        // filter after it rewrites x-team, and the upstream sees that).
        let seen = &mock.requests()[i]["headers"];
        assert_eq!(seen["x-stateless-tag"], team.as_str(), "{seen}");
        assert_eq!(seen["x-team"], "rewritten", "{seen}");
        // Sequential requests reuse one pooled instance, configured once.
        assert_eq!(r.header("x-probe-configures"), Some("1"), "request {i}");
        calls.push(
            r.header("x-probe-calls")
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0),
        );
    }
    // Two hook calls per request on the same, never reconfigured, filter value.
    assert_eq!(calls, [2, 4, 6, 8, 10, 12]);
    let status = send_req(request(Method::GET, &gw.admin_url("/api/plugins"), &[], ""))
        .await
        .json();
    let stateless = status["plugins"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "stateless"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(stateless["stateless"], true, "{status}");
    assert_eq!(stateless["wit_version"], "aigw:filter@0.2.0", "{status}");
}

/// A stateless filter's instance goes back to the pool between its calls, but the circuit
/// breaker still counts requests: one whose request hook succeeds and whose response hook
/// fails is a failed request, so the circuit opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateless_filter_failing_its_later_hook_opens_the_circuit() {
    let mock = Mock::start().await;
    let config = format!(
        "{}[gateways.gw]\npipeline = [\"stateless\"]\n\
         [gateways.gw.filters.stateless]\nfail_response = true\non_error = \"closed\"\n\
         circuit_failures = 3\ncircuit_open_ms = 60000\n",
        mock.providers_toml()
    );
    let gw = Gateway::start(&config, &[("stateless", &stateless_filter_wasm())]);
    let url = gw.url("/v1/acct/gw/openai/chat/completions");
    for i in 0..3 {
        let r = send(&url, &[], &chat("hi", false)).await;
        assert_eq!(r.status.as_u16(), 500, "request {i}: {}", r.text());
    }
    assert_eq!(mock.requests().len(), 3);
    // Open: refused before any call, the provider is not reached.
    let r = send(&url, &[], &chat("hi", false)).await;
    assert_eq!(r.status.as_u16(), 503, "{}", r.text());
    assert!(r.text().contains("circuit is open"), "{}", r.text());
    assert_eq!(mock.requests().len(), 3);
}
