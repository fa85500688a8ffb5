//! `cf-aig-*` header values (`plugin-sdk/src/cf.rs`, the logging filter's
//! `cf-aig-metadata` / `cf-aig-custom-cost`, the cache filter's headers):
//! never panics; a refused value is a 400 whose body names the header.
//! Input: a header choice byte, an integer-range choice byte, the value.
#![no_main]

use aigw_filter_cache::Cache;
use aigw_filter_logging::Logging;
use aigw_plugin_sdk::testing::MockHost;
use aigw_plugin_sdk::{Decision, Filter, Headers, LocalResponse, Request, cf};
use libfuzzer_sys::fuzz_target;

const HEADERS: &[&str] = &[
    "cf-aig-metadata",
    "cf-aig-custom-cost",
    "cf-aig-collect-log",
    "cf-aig-collect-log-payload",
    "cf-aig-cache-ttl",
    "cf-aig-skip-cache",
    "cf-aig-cache-key",
];

const RANGES: &[(u64, u64)] = &[(0, 31_536_000), (1, 5), (0, u64::MAX), (u64::MAX, 0)];

fn names(r: &LocalResponse, header: &str) {
    assert_eq!(r.status, 400);
    let body = String::from_utf8_lossy(&r.body);
    assert!(body.contains(header), "{body}");
}

fuzz_target!(|data: &[u8]| {
    let [h, range, value @ ..] = data else {
        return;
    };
    let Ok(value) = std::str::from_utf8(value) else {
        return;
    };
    let header = HEADERS[usize::from(*h) % HEADERS.len()];
    let (min, max) = RANGES[usize::from(*range) % RANGES.len()];
    let headers = Headers::from_pairs([(header, value)]);
    if let Err(r) = cf::bool_header(&headers, header) {
        names(&r, header);
    }
    match cf::int_header(&headers, header, min, max) {
        Ok(Some(n)) => assert!((min..=max).contains(&n)),
        Ok(None) => unreachable!("the header is present"),
        Err(r) => names(&r, header),
    }
    let req = Request {
        method: "POST".into(),
        provider: "openai".into(),
        path: "/chat/completions".into(),
        headers,
        ..Request::default()
    };
    MockHost::reset();
    for decision in [
        Logging::configure(serde_json::json!({})).map(|mut f| f.on_request_headers(&req)),
        Cache::configure(serde_json::json!({})).map(|mut f| f.on_request_headers(&req)),
    ] {
        if let Ok(Decision::Respond(r)) = decision {
            names(&r, header);
        }
    }
});
