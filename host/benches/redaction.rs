//! What the prompt-redaction filter costs per request on a typical 2 KB chat
//! body (a system prompt, a few turns, an email, a phone number and a card
//! number): the same requests, in interleaved rounds, through a gateway with
//! an empty pipeline and through gateways with only `prompt-redaction` in
//! `mask` and in `restore` mode. Reports the median added latency and the
//! filter's own time from /metrics. Loopback only; every loop is bounded.
//!
//! Run: `cargo bench -p aigw --bench redaction` (`AIGW_BENCH_SCALE=0.2` shortens it).

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
use std::net::SocketAddr;
use std::time::{Duration, Instant};

mod common;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A typical 2 KB chat body with three values to redact.
fn chat_body(n: usize) -> String {
    let system = "You are a helpful support assistant for an online bookshop. Answer briefly, \
        cite the order number when you refer to an order, never invent tracking numbers, and \
        escalate to a human when the customer asks for a refund above 200 euros or mentions a \
        legal matter. Keep a friendly tone and use the customer's first name.";
    let turns = [
        (
            "user",
            "Hi, I ordered three books last week (order 48213) and only two arrived. The \
            parcel looked fine from the outside, so I think one was missing when it was packed.",
        ),
        (
            "assistant",
            "I'm sorry to hear that! I can see order 48213 with three items. Could you \
            tell me which title is missing, and confirm the delivery address on the order?",
        ),
        (
            "user",
            "The missing one is 'The Left Hand of Darkness'. Address is the same as always. \
            You can reach me at jane.doe@example.com or on +44 20 7946 0958 if that's easier.",
        ),
        (
            "assistant",
            "Thanks Jane. I've flagged the missing title. Would you prefer a reshipment \
            or a refund to the original payment method?",
        ),
        (
            "user",
            "Before I decide: how long would a reshipment take? I'm travelling from the 14th \
            and the shop's delivery estimate on the website said three to five working days, \
            which would be cutting it close. My neighbour can take the parcel if needed.",
        ),
        (
            "assistant",
            "A reshipment leaves our warehouse within one working day and usually arrives in \
            two to three days with the tracked service, so it should reach you before the 14th. \
            If you prefer, I can also note your neighbour as an alternative recipient.",
        ),
    ];
    let mut messages = vec![serde_json::json!({"role": "system", "content": system})];
    for (role, text) in turns {
        messages.push(serde_json::json!({"role": role, "content": text}));
    }
    messages.push(serde_json::json!({"role": "user", "content": format!(
        "A refund please, to the card ending 1111 — the full number is 4111 1111 1111 1111 if you \
         need it. Also, could you check whether the sequel is in stock? (request {n}) I would like \
         to order it together with a gift wrap if possible, and have it sent before Friday.")}));
    serde_json::json!({"model": "gpt-4o-mini", "messages": messages}).to_string()
}

async fn one(client: &HttpClient, url: &str, body: String) -> Duration {
    let req = Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let start = Instant::now();
    let resp = client.request(req).await.expect("request");
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    resp.into_body().collect().await.expect("body");
    start.elapsed()
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let scale: f64 = std::env::var("AIGW_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let per_round = ((400.0 * scale) as usize).max(20);
    let rounds = 5;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mock: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(aigw::mock::serve(listener, Default::default()));

    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nplugins_dir = \"plugins.d\"\ndata_dir = \"data\"\n\
         [providers.openai]\nbase_url = \"http://{mock}/v1\"\n\
         [gateways.empty]\npipeline = []\n\
         [gateways.mask]\npipeline = [\"prompt-redaction\"]\n\
         [gateways.restore]\npipeline = [\"prompt-redaction\"]\n\
         [gateways.restore.filters.prompt-redaction]\nmode = \"restore\"\n"
    );
    std::fs::write(dir.path().join("aigw.toml"), cfg).unwrap();
    let (mut child, addr) = common::spawn_gateway(&dir.path().join("aigw.toml"));
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let targets = ["empty", "mask", "restore"];
    let url = |t: &str| format!("http://{addr}/v1/acct/{t}/openai/chat/completions");
    let body_len = chat_body(0).len();
    // Warm-up: instances, compiled patterns, connections.
    for t in targets {
        for i in 0..50 {
            one(&client, &url(t), chat_body(i)).await;
        }
    }
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); targets.len()];
    let mut n = 0;
    for _ in 0..rounds {
        for (k, t) in targets.iter().enumerate() {
            for _ in 0..per_round {
                n += 1;
                samples[k].push(one(&client, &url(t), chat_body(n)).await);
            }
        }
    }
    let metrics = {
        let resp = client
            .request(
                Request::get(format!("http://{addr}/metrics"))
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap();
        String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes()).to_string()
    };
    let _ = child.kill();
    let _ = child.wait();

    let medians: Vec<Duration> = samples.into_iter().map(common::median).collect();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let calls = metric(
        &metrics,
        "aigw_filter_calls_total{filter=\"prompt-redaction\"}",
    );
    let micros = metric(
        &metrics,
        "aigw_filter_call_microseconds_total{filter=\"prompt-redaction\"}",
    );
    println!(
        "prompt-redaction on a {body_len}-byte chat body ({} requests per target, {rounds} interleaved rounds, c=1)",
        per_round * rounds
    );
    println!("| target | median latency (µs) | added over empty pipeline (µs) |");
    println!("|---|---|---|");
    for (t, m) in targets.iter().zip(&medians) {
        println!("| {t} | {:.0} | {:+.0} |", us(*m), us(*m) - us(medians[0]));
    }
    if calls > 0.0 {
        println!(
            "filter hook time (from /metrics, all hook calls incl. warm-up): {:.0} µs per call, {calls:.0} calls",
            micros / calls
        );
    }
}
