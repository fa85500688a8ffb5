//! What the Redis backend of kv and limits adds over the in-memory one: the
//! same requests, in interleaved rounds at concurrency 1, through two gateway
//! processes with the pipeline `["rate-limit", "cache"]`, one with
//! `[store] backend = "memory"` and one with `backend = "redis"` (a private
//! `redis-server` on loopback). Cache misses (unique prompts: one limit check,
//! one GET, one SET) and cache hits (one limit check, one GET) are measured
//! separately. Every loop is bounded.
//!
//! Run: `cargo bench -p aigw --bench store` (needs `redis-server`;
//! `AIGW_BENCH_SCALE=0.2` shortens it).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_gateway(dir: &std::path::Path, cfg: &str) -> (Child, std::net::SocketAddr) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("aigw.toml"), cfg).unwrap();
    common::spawn_gateway(&dir.join("aigw.toml"))
}

async fn one(client: &HttpClient, url: &str, prompt: &str) -> (Duration, bool) {
    let body = serde_json::json!({"model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": prompt}]})
    .to_string();
    let req = Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let start = Instant::now();
    let resp = client.request(req).await.expect("request");
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    let hit = resp
        .headers()
        .get("cf-aig-cache-status")
        .is_some_and(|v| v == "HIT");
    resp.into_body().collect().await.expect("body");
    (start.elapsed(), hit)
}

fn median(v: Vec<Duration>) -> f64 {
    common::median(v).as_secs_f64() * 1e6
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let scale: f64 = std::env::var("AIGW_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let per_round = ((300.0 * scale) as usize).max(20);
    let rounds = 5;
    let redis_port = free_port();
    let Ok(mut redis) = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &redis_port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
    else {
        println!("skipped: redis-server not found (apt-get install redis-server)");
        return;
    };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", redis_port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mock = listener.local_addr().unwrap();
    tokio::spawn(aigw::mock::serve(listener, Default::default()));

    let dir = tempfile::tempdir().unwrap();
    let common = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nplugins_dir = \"plugins.d\"\ndata_dir = \"data\"\n\
         [providers.openai]\nbase_url = \"http://{mock}/v1\"\n\
         [gateways.gw]\npipeline = [\"rate-limit\", \"cache\"]\n\
         [gateways.gw.filters.rate-limit]\nlimit = 1000000000\nperiod_s = 60\ntechnique = \"sliding\"\n"
    );
    let (mut memory, mem_addr) = start_gateway(&dir.path().join("memory"), &common);
    let (mut shared, redis_addr) = start_gateway(
        &dir.path().join("redis"),
        &format!(
            "{common}[store]\nbackend = \"redis\"\nurl = \"redis://127.0.0.1:{redis_port}/0\"\n"
        ),
    );
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let targets = [("memory", mem_addr), ("redis", redis_addr)];
    let url = |a: &std::net::SocketAddr| format!("http://{a}/v1/acct/gw/openai/chat/completions");
    for (_, a) in &targets {
        for i in 0..50 {
            one(&client, &url(a), &format!("warm {i}")).await;
            one(&client, &url(a), "the cached question").await;
        }
    }
    let mut misses: Vec<Vec<Duration>> = vec![Vec::new(); 2];
    let mut hits: Vec<Vec<Duration>> = vec![Vec::new(); 2];
    let mut n = 0;
    for _ in 0..rounds {
        for (k, (_, a)) in targets.iter().enumerate() {
            for _ in 0..per_round {
                n += 1;
                let (d, hit) = one(&client, &url(a), &format!("unique prompt {n}")).await;
                assert!(!hit);
                misses[k].push(d);
                let (d, hit) = one(&client, &url(a), "the cached question").await;
                assert!(hit, "{a}: the repeated prompt must be a cache hit");
                hits[k].push(d);
            }
        }
    }
    let _ = memory.kill();
    let _ = shared.kill();
    let _ = redis.kill();
    let _ = (memory.wait(), shared.wait(), redis.wait());
    let (m_miss, r_miss) = (median(misses[0].clone()), median(misses[1].clone()));
    let (m_hit, r_hit) = (median(hits[0].clone()), median(hits[1].clone()));
    println!(
        "store backends, pipeline [rate-limit, cache], c=1, {} requests per cell in {rounds} interleaved rounds",
        per_round * rounds
    );
    println!("| request | memory median (µs) | redis median (µs) | added by Redis (µs) | ratio |");
    println!("|---|---|---|---|---|");
    println!(
        "| cache miss (limit check + GET + SET) | {m_miss:.0} | {r_miss:.0} | {:+.0} | {:.2}× |",
        r_miss - m_miss,
        r_miss / m_miss
    );
    println!(
        "| cache hit (limit check + GET) | {m_hit:.0} | {r_hit:.0} | {:+.0} | {:.2}× |",
        r_hit - m_hit,
        r_hit / m_hit
    );
}
