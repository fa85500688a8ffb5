//! Several replicas sharing state: kv and limits in Redis (exact limits across
//! replicas, a cache entry stored by one served by another, outage policy and
//! recovery). Needs `redis-server` (Debian package `redis-server`); skipped
//! without it unless `AIGW_REQUIRE_REDIS` is set.

use crate::harness::*;
use hyper::StatusCode;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A private redis-server on a free loopback port, no persistence.
struct Redis {
    port: u16,
    child: Option<Child>,
}

impl Redis {
    fn start() -> Option<Redis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let mut r = Redis { port, child: None };
        if !r.resume() {
            assert!(
                std::env::var_os("AIGW_REQUIRE_REDIS").is_none(),
                "AIGW_REQUIRE_REDIS is set but redis-server did not start"
            );
            eprintln!("skipped: redis-server not available (apt-get install redis-server)");
            return None;
        }
        Some(r)
    }

    /// Starts (again) on the same port; true once it answers.
    fn resume(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else { return false };
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn replica(mock: &Mock, redis: &Redis, limits_on_error: &str) -> Gateway {
    let cfg = format!(
        "{}[store]\nbackend = \"redis\"\nurl = \"{}\"\ntimeout_ms = 200\nlimits_on_error = \"{limits_on_error}\"\nkv_on_error = \"{limits_on_error}\"\n\
         [gateways.cacheonly]\npipeline = [\"cache\"]\n[gateways.cacheonly.filters.cache]\non_error = \"closed\"\n\
         [gateways.fixed]\npipeline = [\"rate-limit\", \"cache\"]\n\
         [gateways.fixed.filters.rate-limit]\nlimit = 10\nperiod_s = 60\nkey = \"header:x-user\"\ntechnique = \"fixed\"\n\
         [gateways.sliding]\npipeline = [\"rate-limit\"]\n\
         [gateways.sliding.filters.rate-limit]\nlimit = 10\nperiod_s = 60\nkey = \"header:x-user\"\ntechnique = \"sliding\"\n",
        mock.providers_toml(),
        redis.url()
    );
    Gateway::start(&cfg, &[])
}

async fn allowed_of_30(a: &Gateway, b: &Gateway, gateway: &str, user: &str) -> usize {
    let mut ok = 0;
    for i in 0..30 {
        let gw = if i % 2 == 0 { a } else { b };
        let r = send(
            &gw.url(&format!("/v1/acct/{gateway}/openai/chat/completions")),
            &[("x-user", user), ("cf-aig-skip-cache", "true")],
            &chat(&format!("{user} {i}"), false),
        )
        .await;
        match r.status {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("unexpected {other}: {}", r.text()),
        }
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_exact_limits_and_one_cache_through_redis() {
    let Some(redis) = Redis::start() else { return };
    let mock = Mock::start().await;
    let a = replica(&mock, &redis, "open");
    let b = replica(&mock, &redis, "open");
    assert_eq!(
        allowed_of_30(&a, &b, "fixed", "ada").await,
        10,
        "a fixed limit of 10/min over two replicas"
    );
    assert_eq!(
        allowed_of_30(&a, &b, "sliding", "bob").await,
        10,
        "a sliding limit of 10/min over two replicas"
    );
    // A response cached through A is a hit on B.
    let url = |g: &Gateway| g.url("/v1/acct/fixed/openai/chat/completions");
    let body = chat("cache me across replicas", false);
    let first = send(&url(&a), &[("x-user", "cat")], &body).await;
    assert_eq!(first.header("cf-aig-cache-status"), Some("MISS"));
    let second = send(&url(&b), &[("x-user", "cat")], &body).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.header("cf-aig-cache-status"), Some("HIT"));
    assert_eq!(first.text(), second.text());
    let upstream = mock.requests().len();
    assert_eq!(upstream, 21, "10 + 10 limited requests and one cache miss");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_follows_the_policy_and_the_replicas_recover() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let mock = Mock::start().await;
    let open = replica(&mock, &redis, "open");
    let closed = replica(&mock, &redis, "closed");
    let url = |g: &Gateway| g.url("/v1/acct/fixed/openai/chat/completions");
    for g in [&open, &closed] {
        let r = send(&url(g), &[("x-user", "dan")], &chat("before", false)).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    redis.stop();
    // Open: requests still flow (limits allow, the cache misses).
    let r = send(&url(&open), &[("x-user", "dan")], &chat("during", false)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("cf-aig-cache-status"), Some("MISS"));
    let r = send(&url(&open), &[("x-user", "dan")], &chat("before", false)).await;
    assert_eq!(
        r.header("cf-aig-cache-status"),
        Some("MISS"),
        "no cache without Redis"
    );
    // Closed: the limit refuses rather than let traffic through unchecked.
    let r = send(&url(&closed), &[("x-user", "dan")], &chat("during", false)).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text());
    // kv_on_error = "closed": the cache's store call fails and its own
    // on_error = "closed" answers; with "open" the cache just misses.
    let cache_url = |g: &Gateway| g.url("/v1/acct/cacheonly/openai/chat/completions");
    let r = send(&cache_url(&closed), &[], &chat("during", false)).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text());
    assert!(
        r.text().contains("shared store (Redis) unavailable"),
        "{}",
        r.text()
    );
    let r = send(&cache_url(&open), &[], &chat("during", false)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("cf-aig-cache-status"), Some("MISS"));
    for g in [&open, &closed] {
        let m = send_req(request(hyper::Method::GET, &g.url("/metrics"), &[], ""))
            .await
            .text();
        let errors: u64 = m
            .lines()
            .find(|l| l.starts_with("aigw_store_errors_total "))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!(errors > 0, "{m}");
        assert!(
            g.logs().contains("shared store (Redis) unavailable"),
            "{}",
            g.logs()
        );
    }
    // Redis returns: both replicas reconnect by themselves.
    assert!(redis.resume());
    let back = eventually(Duration::from_secs(15), || async {
        let r = send(&url(&closed), &[("x-user", "eve")], &chat("after", false)).await;
        r.status == StatusCode::OK
    })
    .await;
    assert!(back.is_some(), "the closed replica never recovered");
    let cached = eventually(Duration::from_secs(15), || async {
        let r = send(&url(&open), &[("x-user", "eve")], &chat("after", false)).await;
        r.header("cf-aig-cache-status") == Some("HIT")
    })
    .await;
    assert!(
        cached.is_some(),
        "the open replica never used the shared cache again"
    );
}

/// PostgreSQL for the shared log store: `AIGW_TEST_POSTGRES_URL`
/// (`.ci/run` starts Debian's cluster and sets it).
fn postgres_url() -> Option<String> {
    match std::env::var("AIGW_TEST_POSTGRES_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            assert!(
                std::env::var_os("AIGW_REQUIRE_POSTGRES").is_none(),
                "AIGW_REQUIRE_POSTGRES is set but AIGW_TEST_POSTGRES_URL is not"
            );
            eprintln!("skipped: set AIGW_TEST_POSTGRES_URL=postgres://user:pass@127.0.0.1/db");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_logging_to_one_postgres_show_all_requests_on_either() {
    let Some(pg) = postgres_url() else { return };
    let mock = Mock::start().await;
    // A gateway name of its own, so earlier runs in the same database do not count.
    let gw_name = format!("pg{}", uuid_like());
    let cfg = format!(
        "{}[logs]\nbackend = \"postgres\"\nurl = \"{pg}\"\n[gateways.{gw_name}]\npipeline = [\"logging\"]\n",
        mock.providers_toml()
    );
    let start = || {
        Gateway::start_in(prepare_with_server(
            "admin_listen = \"127.0.0.1:0\"\n",
            &cfg,
            &[],
        ))
    };
    let (mut a, mut b) = (start(), start());
    for i in 0..12 {
        let g = if i % 3 == 0 { &b } else { &a };
        let fail: &[(&str, &str)] = if i == 5 {
            &[("x-mock-status", "500")]
        } else {
            &[]
        };
        let r = send(
            &g.url(&format!("/v1/acct/{gw_name}/openai/chat/completions")),
            fail,
            &chat(&format!("q{i}"), i % 4 == 0),
        )
        .await;
        assert!(r.status == StatusCode::OK || r.status.as_u16() == 500);
    }
    // Entries are written in batches; both replicas see all 12 soon.
    for g in [&a, &b] {
        let seen = eventually(Duration::from_secs(10), || async {
            let r = send_req(request(
                hyper::Method::GET,
                &g.admin_url(&format!("/api/gateways/{gw_name}/analytics")),
                &[],
                "",
            ))
            .await;
            r.status == StatusCode::OK && r.json()["totals"]["requests"] == 12
        })
        .await;
        if seen.is_none() {
            let r = send_req(request(
                hyper::Method::GET,
                &g.admin_url(&format!("/api/gateways/{gw_name}/analytics")),
                &[],
                "",
            ))
            .await;
            panic!(
                "a replica's analytics did not show all 12 requests: {} {}\n{}",
                r.status,
                r.text(),
                g.logs()
            );
        }
        let r = send_req(request(
            hyper::Method::GET,
            &g.admin_url(&format!("/api/gateways/{gw_name}/analytics?group_by=model")),
            &[],
            "",
        ))
        .await;
        let totals = &r.json()["totals"];
        assert_eq!(totals["errors"], 1, "{totals}");
        assert!(totals["tokens_in"].as_i64().unwrap() > 0, "{totals}");
        assert!(totals["latency_ms"]["p50"].is_number(), "{totals}");
        let page = send_req(request(
            hyper::Method::GET,
            &g.admin_url(&format!("/api/gateways/{gw_name}/logs?limit=5")),
            &[],
            "",
        ))
        .await
        .json();
        assert_eq!(page["logs"].as_array().map(Vec::len), Some(5), "{page}");
        assert!(page["next_cursor"].is_string(), "{page}");
    }
    assert!(a.stop() && b.stop());
}

fn uuid_like() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// A stand-in OpenTelemetry collector: keeps every OTLP/HTTP JSON body POSTed
/// to /v1/traces.
async fn collector() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
) {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = got.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let store = store.clone();
                        async move {
                            let ok = req.uri().path() == "/v1/traces"
                                && req
                                    .headers()
                                    .get("content-type")
                                    .is_some_and(|v| v == "application/json");
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            if ok && let Ok(v) = serde_json::from_slice(&body) {
                                store.lock().unwrap().push(v);
                            }
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from_static(b"{}")),
                            ))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_is_exported_as_an_otlp_span_with_genai_attributes() {
    let mock = Mock::start().await;
    let (addr, got) = collector().await;
    let cfg = format!(
        "{}[telemetry]\notlp_endpoint = \"http://{addr}\"\nservice_name = \"aigw-test\"\n\
         [gateways.gw]\npipeline = [\"logging\"]\n",
        mock.providers_toml()
    );
    let gw = Gateway::start(&cfg, &[]);
    let url = gw.url("/v1/acct/gw/openai/chat/completions");
    let ok = send(&url, &[], &chat("trace me", false)).await;
    let log_id = ok.header("cf-aig-log-id").unwrap().to_string();
    let failed = send(&url, &[("x-mock-status", "503")], &chat("fail", false)).await;
    assert_eq!(failed.status.as_u16(), 503);
    let spans = || -> Vec<serde_json::Value> {
        got.lock()
            .unwrap()
            .iter()
            .flat_map(|req| {
                req["resourceSpans"][0]["scopeSpans"][0]["spans"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .collect()
    };
    let arrived = eventually(Duration::from_secs(5), || async { spans().len() >= 2 }).await;
    assert!(
        arrived.is_some(),
        "spans never reached the collector: {:?}",
        got.lock().unwrap()
    );
    let all = got.lock().unwrap().clone();
    let resource = &all[0]["resourceSpans"][0]["resource"]["attributes"];
    assert!(resource.to_string().contains("aigw-test"), "{resource}");
    let spans = spans();
    let attr = |span: &serde_json::Value, key: &str| -> serde_json::Value {
        span["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == key)
            .map(|a| a["value"].clone())
            .unwrap_or(serde_json::Value::Null)
    };
    let ok_span = spans
        .iter()
        .find(|s| {
            s["traceId"]
                .as_str()
                .unwrap_or("")
                .eq_ignore_ascii_case(&log_id)
        })
        .unwrap_or_else(|| panic!("no span with trace id {log_id}: {spans:#?}"));
    assert_eq!(ok_span["name"], "chat gpt-4o-mini");
    assert_eq!(
        attr(ok_span, "gen_ai.operation.name")["stringValue"],
        "chat"
    );
    assert_eq!(
        attr(ok_span, "gen_ai.provider.name")["stringValue"],
        "openai"
    );
    assert_eq!(
        attr(ok_span, "gen_ai.request.model")["stringValue"],
        "gpt-4o-mini"
    );
    let tokens = attr(ok_span, "gen_ai.usage.input_tokens")["intValue"].clone();
    assert!(
        tokens.as_str().map(|t| t != "0").unwrap_or(false) || tokens.as_i64().unwrap_or(0) > 0,
        "{ok_span}"
    );
    assert!(
        attr(ok_span, "gen_ai.usage.output_tokens").is_object(),
        "{ok_span}"
    );
    assert!(
        attr(ok_span, "aigw.cost")["doubleValue"].is_number(),
        "{ok_span}"
    );
    let failed_span = spans
        .iter()
        .find(|s| {
            attr(s, "http.response.status_code")["intValue"]
                .to_string()
                .contains("503")
        })
        .unwrap_or_else(|| panic!("no 503 span: {spans:#?}"));
    assert_eq!(
        failed_span["status"]["code"], 2,
        "ERROR status: {failed_span}"
    );
    let m = send_req(request(hyper::Method::GET, &gw.url("/metrics"), &[], ""))
        .await
        .text();
    assert!(m.contains("aigw_otlp_spans_exported_total 2"), "{m}");
}
