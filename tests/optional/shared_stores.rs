//! Several replicas sharing state: kv and limits in Redis (exact limits across replicas, a
//! cache entry stored by one served by another, outage policy and recovery), and logs in one
//! PostgreSQL. Needs `redis-server` (Debian package `redis-server`) and a PostgreSQL database;
//! the runner (`main.rs`) skips these tests without them.

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
        r.resume().then_some(r)
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

pub async fn two_replicas_share_exact_limits_and_one_cache_through_redis() {
    let redis = Redis::start().expect("redis-server did not start");
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

pub async fn a_redis_outage_follows_the_policy_and_the_replicas_recover() {
    let mut redis = Redis::start().expect("redis-server did not start");
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

/// The PostgreSQL database for the shared log store: `AIGW_TEST_POSTGRES_URL`, else the one
/// `scripts/test-deps.sh` makes on Debian's default cluster.
pub fn postgres_url() -> String {
    std::env::var("AIGW_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://aigw:aigw@127.0.0.1:5432/aigw".into())
}

pub async fn two_replicas_logging_to_one_postgres_show_all_requests_on_either() {
    let pg = postgres_url();
    let mock = Mock::start().await;
    // A gateway name of its own, so earlier runs in the same database do not count.
    let gw_name = format!("pg{}", uuid_like());
    let cfg = format!(
        "{}[logs]\nbackend = \"postgres\"\nurl = \"{pg}\"\n[gateways.{gw_name}]\nkeys = \"optional\"\npipeline = [\"logging\"]\n",
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
    // Recosting on PostgreSQL: every priced entry is rewritten at the (unchanged) prices, so
    // none changes; the 11 successful answers were priced, the failure has no usage to price.
    let r = send_req(request(
        hyper::Method::POST,
        &a.admin_url(&format!("/api/gateways/{gw_name}/logs/recost?since=0")),
        &[],
        "",
    ))
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let report = r.json();
    assert_eq!(report["scanned"], 12, "{report}");
    assert_eq!(report["unchanged"], 11, "{report}");
    assert_eq!(report["recosted"], 0, "{report}");
    // Virtual keys on PostgreSQL: created on one replica, used on the other, revoked there
    // and refused on the first within a second.
    let created = send_req(request(
        hyper::Method::POST,
        &a.admin_url("/api/keys"),
        &[],
        &format!(r#"{{"name": "pg-key-{gw_name}", "gateways": ["{gw_name}"]}}"#),
    ))
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let created = created.json();
    let bearer = format!("Bearer {}", created["key"].as_str().unwrap());
    let used = eventually(Duration::from_secs(3), || async {
        send(
            &b.url(&format!("/v1/acct/{gw_name}/openai/chat/completions")),
            &[("authorization", &bearer)],
            &chat("pg key", false),
        )
        .await
        .status
            == StatusCode::OK
    })
    .await;
    assert!(used.is_some(), "the key reached the second replica");
    let revoked = send_req(request(
        hyper::Method::DELETE,
        &b.admin_url(&format!("/api/keys/{}", created["id"].as_str().unwrap())),
        &[],
        "",
    ))
    .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text());
    let refused = eventually(Duration::from_secs(1), || async {
        send(
            &a.url(&format!("/v1/acct/{gw_name}/openai/chat/completions")),
            &[("authorization", &bearer)],
            &chat("pg key", false),
        )
        .await
        .status
            == StatusCode::UNAUTHORIZED
    })
    .await;
    assert!(
        refused.is_some(),
        "revoked on PostgreSQL, refused elsewhere within a second"
    );
    // Cloudflare's logs API on PostgreSQL: fractions against integer columns, `neq`, metadata
    // and search, then a delete by filter.
    let cf = |q: &str| {
        a.admin_url(&format!(
            "/client/v4/accounts/acct/ai-gateway/gateways/{gw_name}/logs{q}"
        ))
    };
    let list = |q: String| async move {
        send_req(request(
            hyper::Method::GET,
            &q,
            &[("content-type", "application/json")],
            "",
        ))
        .await
    };
    // Log entries are written in batches after their answers, so the last ones sent above may
    // still be on their way: count until two reads a flush interval apart agree.
    let count = || async {
        list(cf("?per_page=1")).await.json()["result_info"]["total_count"]
            .as_i64()
            .unwrap_or(0)
    };
    let mut all = count().await;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = count().await;
        if now == all {
            break;
        }
        all = now;
    }
    assert!(all >= 12, "{all}");
    let r = list(cf("?per_page=50&min_duration=-0.5&max_tokens_in=100000.5&filters.key=status_code&filters.operator=neq&filters.value=500")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        r.json()["result_info"]["total_count"],
        all - 1,
        "{}",
        r.text()
    );
    let r = list(cf(
        "?search=Q5&filters.key=model&filters.operator=contains&filters.value=GPT",
    ))
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["result_info"]["total_count"], 1, "{}", r.text());
    let r = send_req(request(
        hyper::Method::DELETE,
        &cf("?filters.key=success&filters.operator=eq&filters.value=false"),
        &[("content-type", "application/json")],
        "",
    ))
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["result"]["deleted"], 1, "{}", r.text());
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

/// One dollar budget across two replicas sharing Redis (and the key database): 200 concurrent
/// requests split between them never spend past it, every refusal is `budget_exceeded`, and
/// as many succeed as one sequential client would get, less one worst-case reservation.
pub async fn two_replicas_share_one_budget_through_redis() {
    let redis = Redis::start().expect("the runner checked for redis-server");
    let mock = Mock::start().await;
    let config = format!(
        "{}[store]\nbackend = \"redis\"\nurl = \"{}\"\ntimeout_ms = 500\nlimits_on_error = \"closed\"\n\
         [gateways.gw]\nkeys = \"required\"\npipeline = [\"key-policy\", \"logging\"]\n",
        mock.providers_toml(),
        redis.url()
    );
    let a = Gateway::start_in(prepare_with_server(
        "admin_listen = \"127.0.0.1:0\"\nadmin_token = \"adm1n\"\n",
        &config,
        &[],
    ));
    let shared_dir = format!("data_dir = \"{}\"", a.data_dir().display());
    let dir_b = prepare_with_server(
        "admin_listen = \"127.0.0.1:0\"\nadmin_token = \"adm1n\"\n",
        &config,
        &[],
    );
    let text = std::fs::read_to_string(dir_b.path().join("aigw.toml")).unwrap();
    std::fs::write(
        dir_b.path().join("aigw.toml"),
        text.replace("data_dir = \"data\"", &shared_dir),
    )
    .unwrap();
    let b = Gateway::start_in(dir_b);
    let admin = |g: &Gateway, method: hyper::Method, path: &str, body: &str| {
        send_req(request(
            method,
            &g.admin_url(path),
            &[("authorization", "Bearer adm1n")],
            body,
        ))
    };
    let budget = 0.01;
    let created = admin(
        &a,
        hyper::Method::POST,
        "/api/keys",
        &format!(r#"{{"name": "shared", "gateways": "*", "budget_usd": {{"amount": {budget}, "period": "day"}}}}"#),
    )
    .await
    .json();
    let (id, key) = (
        created["id"].as_str().unwrap().to_string(),
        created["key"].as_str().unwrap().to_string(),
    );
    let bearer = format!("Bearer {key}");
    let reply = "one two three four five six seven eight nine ten one two three four five six seven eight nine ten";
    let body = r#"{"model": "gpt-4o", "max_tokens": 20, "messages": [{"role": "user", "content": "spend a little"}]}"#;
    let url = |g: &Gateway| g.url("/v1/acct/gw/openai/chat/completions");
    // B sees the key within a second.
    let seen = eventually(Duration::from_secs(3), || async {
        admin(&b, hyper::Method::GET, &format!("/api/keys/{id}"), "")
            .await
            .status
            == StatusCode::OK
    })
    .await;
    assert!(seen.is_some());
    tokio::time::sleep(Duration::from_millis(600)).await;
    let first = send(
        &url(&a),
        &[("authorization", &bearer), ("x-mock-reply", reply)],
        body,
    )
    .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    let u = &first.json()["usage"];
    let cost = (u["prompt_tokens"].as_f64().unwrap() * 2.5
        + u["completion_tokens"].as_f64().unwrap() * 10.0)
        / 1e6;
    let worst = (body.len() as f64 * 2.5 + 20.0 * 10.0) / 1e6;

    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let (target, bearer) = (if i % 2 == 0 { url(&a) } else { url(&b) }, bearer.clone());
            tokio::spawn(async move {
                let h = [("authorization", bearer.as_str()), ("x-mock-reply", reply)];
                tokio::time::timeout(Duration::from_secs(60), send(&target, &h, body))
                    .await
                    .expect("bounded")
            })
        })
        .collect();
    let (mut ok, mut refused) = (1usize, 0usize);
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(r.json()["error"]["type"], "budget_exceeded", "{}", r.text());
                refused += 1;
            }
            other => panic!("unexpected {other}: {}", r.text()),
        }
    }
    assert!(refused > 0);
    // Either replica reports the one shared ledger.
    let settled = eventually(Duration::from_secs(5), || async {
        admin(&b, hyper::Method::GET, &format!("/api/keys/{id}"), "")
            .await
            .json()["spend"]["reserved_usd"]
            == 0.0
    })
    .await;
    assert!(settled.is_some());
    let spend = admin(&a, hyper::Method::GET, &format!("/api/keys/{id}"), "")
        .await
        .json()["spend"]
        .clone();
    let spent = spend["spent_usd"].as_f64().unwrap();
    assert!(
        spent <= budget,
        "spent {spent} of {budget} across two replicas"
    );
    assert!(
        (spent - ok as f64 * cost).abs() <= ok as f64 * 1e-9,
        "spent {spent}, {ok} × {cost}"
    );
    let floor = ((budget - worst) / cost).floor() as usize;
    assert!(
        ok >= floor,
        "{ok} succeeded; a sequential client gets at least {floor}"
    );
    eprintln!(
        "two replicas, one Redis: {ok} succeeded, {refused} refused, spent ${spent:.7} of ${budget}"
    );
}

/// Two writers (as two replicas) add entries of the same minutes, models and keys to one
/// PostgreSQL at once: the analytics rollups they both update lose nothing, and the report
/// equals the entries (counts exact, percentiles within 1%).
pub async fn two_writers_keep_exact_analytics_rollups_in_one_postgres() {
    // The synchronous PostgreSQL client runs outside the test's runtime.
    tokio::task::spawn_blocking(rollups_on_postgres)
        .await
        .unwrap();
}

fn rollups_on_postgres() {
    use aigw::store::logs::{LogStore, Retention};
    let pg = postgres_url();
    let gw_name = format!("rollups-{}", std::process::id());
    let start = 1_700_000_000_000i64 / 3_600_000 * 3_600_000;
    let entry = |w: usize, i: usize| {
        let model = if i.is_multiple_of(2) { "a" } else { "b" };
        serde_json::json!({
            "id": format!("{gw_name}-{w}-{i}"), "created_at": start + (i as i64 % 180) * 1_000,
            "gateway": gw_name, "provider": "openai", "model": model,
            "key_id": format!("k{}", i % 3), "status": 200, "success": true, "cached": false,
            "duration_ms": 10 + (i * 37) % 1000, "tokens_in": i % 10, "tokens_out": 1,
            "cost": 0.25,
        })
    };
    let n = 3_000usize;
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let pg = pg.clone();
            let entries: Vec<_> = (0..n).map(|i| entry(w, i)).collect();
            std::thread::spawn(move || {
                let store = LogStore::open_postgres(&pg, Retention::default()).unwrap();
                for e in entries {
                    while store.append(e.clone()).is_err() {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                store.close();
                assert_eq!(
                    store
                        .counters
                        .errors
                        .load(std::sync::atomic::Ordering::Relaxed),
                    0,
                    "a write failed"
                );
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let store = LogStore::open_postgres(&pg, Retention::default()).unwrap();
    // Unaligned ends, widened to whole minutes; an hour row and minute rows answer.
    let report = store
        .analytics(
            &gw_name,
            start + 30_500,
            start + 3_690_000,
            3_600_000,
            Some("key"),
        )
        .unwrap();
    let mut durations = Vec::new();
    let (mut requests, mut tokens) = (0i64, 0i64);
    for w in 0..2 {
        for i in 0..n {
            let e = entry(w, i);
            // Analytics count whole minutes: the range starts at `start`.
            if e["created_at"].as_i64().unwrap() >= start {
                requests += 1;
                tokens += e["tokens_in"].as_i64().unwrap();
                durations.push(e["duration_ms"].as_i64().unwrap());
            }
        }
    }
    durations.sort_unstable();
    let totals = &report["totals"];
    assert_eq!(totals["requests"], requests, "{totals}");
    assert_eq!(totals["tokens_in"], tokens, "{totals}");
    assert!((totals["cost"].as_f64().unwrap() - 0.25 * requests as f64).abs() < 1e-6);
    let groups: i64 = report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["requests"].as_i64().unwrap())
        .sum();
    assert_eq!(groups, requests);
    for (name, q) in [("p50", 0.5), ("p95", 0.95), ("p99", 0.99)] {
        let exact = durations[(q * durations.len() as f64).ceil() as usize - 1] as f64;
        let got = totals["latency_ms"][name].as_f64().unwrap();
        assert!(
            (got - exact).abs() <= exact * 0.01 + 0.5,
            "{name}: {got} vs {exact}"
        );
    }
    store.close();
}
