//! The filter contract stays loadable: a component built against an earlier `aigw:filter@0.1.0`
//! (the test filter at commit 782b2e1, before `http-client`, `edit-response-head` and
//! `on-error-setting` were added, committed as a fixture) loads beside today's built-ins and
//! behaves as it did: it edits request and response headers, answers locally, and a filter
//! built today runs next to it in one pipeline.

use crate::harness::*;
use hyper::StatusCode;
use std::path::PathBuf;

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
    let gw = Gateway::start(&config, &[("old", &old), ("new", &test_filter_wasm())]);
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
}
