//! Security: filters are sandboxed, foreign imports are refused, and keys and
//! tokens never show up anywhere a person or a scraper could read them.

use crate::harness::*;
use hyper::StatusCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_get_no_files_environment_network_or_clock_of_their_own() {
    // A listener the filter will try to reach: it must see no connection.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let _task = tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    let mock = Mock::start().await;
    let cfg = format!(
        "{}[gateways.gw]\npipeline = [\"custom\"]\n[gateways.gw.filters.custom]\nmode = \"sandbox\"\nvalue = \"{target}\"\n",
        mock.providers_toml()
    );
    let dir = prepare(&cfg, &[("custom", &test_filter_wasm())]);
    let gw = Gateway::start_with_env(dir, &[("AIGW_SANDBOX_CANARY", "must-not-leak")]);
    let r = send(&gw.url("/v1/a/gw/openai/chat/completions"), &[], "{}").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    eprintln!("sandbox probe: {v}");
    assert!(v["files"].as_str().unwrap().starts_with("denied"), "{v}");
    assert!(v["passwd"].as_str().unwrap().starts_with("denied"), "{v}");
    assert_eq!(v["env"], serde_json::json!([]), "{v}");
    assert_eq!(v["args"], serde_json::json!([]), "{v}");
    assert!(v["network"].as_str().unwrap().starts_with("denied"), "{v}");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "a filter reached the network"
    );
    // The filter reads the real clock and cannot move it.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for key in ["wall_ms", "host_ms"] {
        let t = v[key].as_i64().unwrap();
        assert!((now - t).abs() < 10_000, "{key} is {t}, now is {now}");
    }
    assert!(!r.text().contains("must-not-leak"));
}

#[test]
fn a_component_importing_what_the_host_lacks_is_refused_by_name() {
    let evil = wat::parse_str(
        r#"(component
            (import "evil:host/escape" (instance (export "run" (func))))
        )"#,
    )
    .unwrap();
    let cfg = "[gateways.gw]\npipeline = [\"evil\"]\n";
    let (ok, text) = check(cfg, &[("evil", &evil)]);
    assert!(!ok, "{text}");
    assert!(text.contains("evil"), "the filter is named: {text}");
    assert!(
        text.contains("evil:host/escape") || text.contains("aigw:filter/filter"),
        "the missing import or export is named: {text}"
    );
}

/// Keys and tokens sent with traffic (accepted, refused, failing, erroring)
/// never appear in responses, /metrics, the admin API, the log store files,
/// or the process output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_tokens_never_leak() {
    const CLIENT_KEY: &str = "sk-CANARYclient0123456789abcdef";
    const STORED_KEY: &str = "sk-CANARYstored0123456789abcdef";
    const GW_TOKEN: &str = "CANARYgatewaytoken42";
    const ADMIN_TOKEN: &str = "CANARYadmintoken42";
    let mock = Mock::start().await;
    let cfg = format!(
        "{}[providers.stored]\nbase_url = \"http://{}/v1\"\napi_key = \"{STORED_KEY}\"\n\
         [providers.down]\nbase_url = \"http://127.0.0.1:9\"\napi_key = \"{STORED_KEY}\"\n\
         [gateways.gw]\nauth_token = \"{GW_TOKEN}\"\npipeline = [\"logging\", \"rate-limit\", \"cache\", \"retry\"]\n\
         [gateways.gw.filters.rate-limit]\nlimit = 5\nperiod_s = 60\n\
         [gateways.gw.filters.retry]\nmax_attempts = 2\ndelay_ms = 10\n\
         [gateways.gw.filters.logging]\ncollect_payload = true\n\
         [gateways.trapping]\npipeline = [\"logging\", \"custom\"]\n[gateways.trapping.filters.custom]\nmode = \"trap\"\non_error = \"closed\"\n",
        mock.providers_toml(),
        mock.addr
    );
    let dir = prepare_with_server(
        &format!("admin_listen = \"127.0.0.1:0\"\nadmin_token = \"{ADMIN_TOKEN}\"\n"),
        &cfg,
        &[("custom", &test_filter_wasm())],
    );
    let mut gw = Gateway::start_in(dir);
    let auth = format!("Bearer {GW_TOKEN}");
    let key = format!("Bearer {CLIENT_KEY}");
    let mut seen = String::new();
    let mut keep = |r: &Reply| {
        seen.push_str(&format!("{:?}\n{}\n", r.headers, r.text()));
    };
    let chat_url = gw.url("/v1/a/gw/openai/chat/completions");
    for i in 0..8 {
        // Accepted, then rate-limited after 5.
        let r = send(
            &chat_url,
            &[("cf-aig-authorization", &auth), ("authorization", &key)],
            &chat(&format!("q{i}"), i % 2 == 0),
        )
        .await;
        keep(&r);
    }
    for (url, headers) in [
        // Wrong gateway token.
        (
            chat_url.clone(),
            vec![
                ("cf-aig-authorization", format!("Bearer {GW_TOKEN}x")),
                ("authorization", key.clone()),
            ],
        ),
        // Stored key, provider down (502 after retries).
        (
            gw.url("/v1/a/gw/down/chat/completions"),
            vec![("cf-aig-authorization", auth.clone())],
        ),
        // Stored key, upstream 500.
        (
            gw.url("/v1/a/gw/stored/chat/completions"),
            vec![
                ("cf-aig-authorization", auth.clone()),
                ("x-mock-status", "500".into()),
            ],
        ),
        // Bad header value: 400.
        (
            chat_url.clone(),
            vec![
                ("cf-aig-authorization", auth.clone()),
                ("authorization", key.clone()),
                ("cf-aig-cache-ttl", "soon".into()),
            ],
        ),
        // A trapping filter: 500.
        (
            gw.url("/v1/a/trapping/openai/chat/completions"),
            vec![("authorization", key.clone())],
        ),
    ] {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = send(&url, &h, &chat("fail", false)).await;
        assert!(r.status.as_u16() >= 400, "{url}: {}", r.status);
        keep(&r);
    }
    let admin_auth = format!("Bearer {ADMIN_TOKEN}");
    for path in [
        "/metrics",
        "/api/plugins",
        "/api/gateways/gw/logs?limit=100",
        "/api/gateways/trapping/logs",
        "/api/gateways/gw/analytics",
    ] {
        let r = send_req(request(
            hyper::Method::GET,
            &gw.admin_url(path),
            &[("authorization", &admin_auth)],
            "",
        ))
        .await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        keep(&r);
    }
    let metrics = send_req(request(hyper::Method::GET, &gw.url("/metrics"), &[], "")).await;
    keep(&metrics);
    assert!(gw.stop());
    let mut files = String::new();
    for entry in std::fs::read_dir(gw.data_dir()).unwrap().flatten() {
        if entry.path().is_file() {
            let bytes = std::fs::read(entry.path()).unwrap();
            files.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    assert!(files.len() > 1000, "the log store holds the traffic");
    let process = gw.logs();
    for (what, text) in [
        ("responses and admin API", &seen),
        ("data_dir files", &files),
        ("process output", &process),
    ] {
        for secret in ["CANARYclient", "CANARYstored", GW_TOKEN, ADMIN_TOKEN] {
            assert!(!text.contains(secret), "{secret} leaked into the {what}");
        }
    }
    // The traffic really went through: the mock saw the client key.
    assert!(
        mock.requests()
            .iter()
            .any(|r| r.to_string().contains("CANARYclient"))
    );
}
