//! Hot reload: filter files and the config change under a running gateway.

use crate::harness::*;
use aigw::runtime::builtin;
use hyper::{Method, StatusCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn base(mock: &Mock, pipeline: &str, tables: &str) -> String {
    format!(
        "[gateways.gw]\npipeline = [{pipeline}]\n{tables}{}",
        mock.providers_toml()
    )
}

fn start(cfg: &str, plugins: &[(&str, &[u8])]) -> Gateway {
    let dir = prepare_with_server("admin_listen = \"127.0.0.1:0\"\n", cfg, plugins);
    Gateway::start_in(dir)
}

fn url(gw: &Gateway) -> String {
    gw.url("/v1/acct/gw/openai/chat/completions")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_a_filter_changes_behaviour_without_a_failed_request() {
    let mock = Mock::start().await;
    let retry = builtin::bytes("retry").unwrap();
    let cache = builtin::bytes("cache").unwrap();
    let gw = start(&base(&mock, "\"swap\"", ""), &[("swap", retry)]);
    let target = url(&gw);

    // A long stream that starts before the swap and must end intact after it.
    let long = {
        let target = target.clone();
        tokio::spawn(async move {
            stream(
                &target,
                &[("x-mock-chunks", "12"), ("x-mock-chunk-delay-ms", "200")],
                &chat("long stream", true),
            )
            .await
        })
    };
    // A client loop, bounded in count and time.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let loop_task = {
        let (stop, sent, failures, target) =
            (stop.clone(), sent.clone(), failures.clone(), target.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed)
                && i < 2000
                && started.elapsed() < Duration::from_secs(20)
            {
                let r = send(&target, &[], &chat(&format!("loop {i}"), false)).await;
                sent.fetch_add(1, Ordering::Relaxed);
                if r.status != StatusCode::OK {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = send(&target, &[], &chat("before", false)).await;
    assert_eq!(before.header("cf-aig-attempts"), Some("1"));
    assert!(before.header("cf-aig-cache-status").is_none());

    install_filter(&gw.plugins_dir(), "swap", cache);
    let took = eventually(Duration::from_secs(2), || {
        let target = target.clone();
        async move {
            send(&target, &[], &chat("after", false))
                .await
                .header("cf-aig-cache-status")
                .is_some()
        }
    })
    .await;
    assert!(
        took.is_some(),
        "new filter not live within 2 s:\n{}",
        gw.logs()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    loop_task.await.unwrap();
    assert!(sent.load(Ordering::Relaxed) > 10);
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "requests failed during the swap"
    );

    let s = long.await.unwrap();
    assert!(
        s.error.is_none(),
        "stream broken by the reload: {:?}",
        s.error
    );
    assert_eq!(
        sse_data(&s.text()).last().map(String::as_str),
        Some("[DONE]")
    );

    let status = send_req(request(Method::GET, &gw.admin_url("/api/plugins"), &[], ""))
        .await
        .json();
    let swap = status["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "swap")
        .unwrap()
        .clone();
    assert_eq!(swap["status"], "active");
    assert_eq!(swap["sha256"], aigw::runtime::sha256_hex(cache));
    assert_eq!(swap["wit_version"], "aigw:filter@0.2.0");
    assert!(status["generation"].as_u64().unwrap() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_wasm_is_rejected_and_the_old_filter_keeps_serving() {
    let mock = Mock::start().await;
    let retry = builtin::bytes("retry").unwrap();
    let gw = start(&base(&mock, "\"swap\"", ""), &[("swap", retry)]);
    install_filter(&gw.plugins_dir(), "swap", b"\0asm garbage, not a component");
    let reported = eventually(Duration::from_secs(3), || {
        let u = gw.admin_url("/api/plugins");
        async move {
            let v = send_req(request(Method::GET, &u, &[], "")).await.json();
            v["plugins"][0]["status"] == "error"
        }
    })
    .await;
    assert!(reported.is_some(), "{}", gw.logs());
    let v = send_req(request(Method::GET, &gw.admin_url("/api/plugins"), &[], ""))
        .await
        .json();
    let err = v["plugins"][0]["last_error"].as_str().unwrap();
    assert!(
        err.contains("parse failed") && err.contains("swap.wasm"),
        "{err}"
    );
    assert_eq!(v["generation"], 1);
    // The previous filter still answers.
    let r = send(&url(&gw), &[], &chat("still here", false)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("cf-aig-attempts"), Some("1"));
    assert!(gw.logs().contains("reload rejected"), "{}", gw.logs());
    let metrics = send_req(request(Method::GET, &gw.admin_url("/metrics"), &[], ""))
        .await
        .text();
    assert!(
        metrics.contains("aigw_reload_failures_total 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_the_pipeline_order_takes_effect_live() {
    let mock = Mock::start().await;
    let wasm = test_filter_wasm();
    let tables = "[gateways.gw.filters.a]\nmode = \"set-header\"\nheader = \"x-trace\"\nvalue = \"a\"\n\
                  [gateways.gw.filters.b]\nmode = \"set-header\"\nheader = \"x-trace\"\nvalue = \"b\"\n";
    let gw = start(
        &base(&mock, "\"a\", \"b\"", tables),
        &[("a", &wasm), ("b", &wasm)],
    );
    send(&url(&gw), &[], &chat("x", false)).await;
    assert_eq!(mock.requests().last().unwrap()["headers"]["x-trace"], "b");

    let text = std::fs::read_to_string(gw.config_file()).unwrap();
    std::fs::write(
        gw.config_file(),
        text.replace("pipeline = [\"a\", \"b\"]", "pipeline = [\"b\", \"a\"]"),
    )
    .unwrap();
    let took = eventually(Duration::from_secs(3), || {
        let (u, mock) = (url(&gw), &mock);
        async move {
            send(&u, &[], &chat("x", false)).await;
            mock.requests().last().unwrap()["headers"]["x-trace"] == "a"
        }
    })
    .await;
    assert!(took.is_some(), "order did not change:\n{}", gw.logs());
    assert_eq!(
        mock.requests().last().unwrap()["headers"]["x-test-previous"],
        "b"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_toml_error_keeps_the_previous_config_and_reload_needs_the_token() {
    let mock = Mock::start().await;
    let dir = prepare_with_server(
        "admin_listen = \"127.0.0.1:0\"\nadmin_token = \"s3cret\"\n",
        &base(&mock, "\"retry\"", ""),
        &[],
    );
    let gw = Gateway::start_in(dir);
    let auth = [("authorization", "Bearer s3cret")];

    let text = std::fs::read_to_string(gw.config_file()).unwrap();
    std::fs::write(gw.config_file(), format!("{text}\n[gateways.gw\nbroken = ")).unwrap();
    let noticed = eventually(Duration::from_secs(3), || {
        let u = gw.admin_url("/api/plugins");
        async move {
            let v = send_req(request(Method::GET, &u, &auth, "")).await.json();
            v["last_reload_failure"]["problems"][0]["stage"] == "config"
        }
    })
    .await;
    assert!(noticed.is_some(), "{}", gw.logs());
    let r = send(&url(&gw), &[], &chat("x", false)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("cf-aig-attempts"), Some("1"));

    let denied = send_req(request(Method::POST, &gw.admin_url("/api/reload"), &[], "")).await;
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
    let rejected = send_req(request(
        Method::POST,
        &gw.admin_url("/api/reload"),
        &auth,
        "",
    ))
    .await;
    assert_eq!(rejected.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(rejected.text().contains("aigw.toml"), "{}", rejected.text());
    std::fs::write(
        gw.config_file(),
        text.replace("pipeline = [\"retry\"]", "pipeline = []"),
    )
    .unwrap();
    let ok = send_req(request(
        Method::POST,
        &gw.admin_url("/api/reload"),
        &auth,
        "",
    ))
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    let r = send(&url(&gw), &[], &chat("x", false)).await;
    assert!(r.header("cf-aig-attempts").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_file_falls_back_to_the_built_in() {
    let mock = Mock::start().await;
    // A file named "retry" overrides the built-in retry filter.
    let gw = start(
        &base(&mock, "\"retry\"", "[gateways.gw.filters.retry]\n"),
        &[("retry", builtin::bytes("cache").unwrap())],
    );
    assert!(
        send(&url(&gw), &[], &chat("x", false))
            .await
            .header("cf-aig-cache-status")
            .is_some()
    );
    std::fs::remove_file(gw.plugins_dir().join("retry.wasm")).unwrap();
    let back = eventually(Duration::from_secs(3), || {
        let u = url(&gw);
        async move {
            send(&u, &[], &chat("y", false))
                .await
                .header("cf-aig-attempts")
                .is_some()
        }
    })
    .await;
    assert!(back.is_some(), "{}", gw.logs());
    let v = send_req(request(Method::GET, &gw.admin_url("/api/plugins"), &[], ""))
        .await
        .json();
    assert_eq!(v["plugins"][0]["source"], "built-in");
}
