//! Side-by-side benchmark: the same requests sent, in one run, to
//! (1) the mock provider directly, (2) a plain hyper reverse proxy,
//! (3) aigw with an empty pipeline, (4) aigw with the four built-in filters,
//! and (5) aigw with each built-in filter alone. Reports latency percentiles,
//! the latency each adds over the direct call, ratios, and throughput under
//! concurrency. Every loop is bounded in count; everything is on loopback.
//!
//! Run: `cargo bench -p aigw --bench gateway` (report also written to
//! `target/bench-report.md`). `AIGW_BENCH_SCALE=0.2` shortens it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod common;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

struct Target {
    name: String,
    url: String,
}

fn scale() -> f64 {
    std::env::var("AIGW_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0)
}

fn scaled(n: usize) -> usize {
    ((n as f64 * scale()) as usize).max(20)
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn body() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // Unique prompts: every request is a cache MISS, so the cache filter's full
    // cost (hashing, lookup, storing) is measured, not a shortcut.
    format!(
        r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"benchmark request number {n}"}}]}}"#
    )
}

async fn one(client: &HttpClient, url: &str) -> Duration {
    let req = Request::post(url)
        .header("content-type", "application/json")
        .header("authorization", "Bearer sk-bench")
        .body(Full::new(Bytes::from(body())))
        .unwrap();
    let start = Instant::now();
    let resp = client.request(req).await.expect("request");
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    resp.into_body().collect().await.expect("body");
    start.elapsed()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The plain reverse proxy: forwards every request to `upstream`, streams the response.
async fn plain_proxy(upstream: SocketAddr) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let client = client.clone();
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let client = client.clone();
                async move {
                    let (mut parts, body) = req.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map(|c| c.to_bytes())
                        .unwrap_or_default();
                    let path = parts
                        .uri
                        .path_and_query()
                        .map(|p| p.as_str())
                        .unwrap_or("/")
                        .to_string();
                    parts.uri = format!("http://{upstream}{path}").parse().unwrap();
                    parts.headers.remove("host");
                    let resp = client
                        .request(Request::from_parts(parts, Full::new(body)))
                        .await;
                    Ok::<_, hyper::Error>(match resp {
                        Ok(r) => r.map(|b| b.boxed()),
                        Err(_) => Response::builder()
                            .status(502)
                            .body(
                                Full::new(Bytes::new())
                                    .map_err(|never| match never {})
                                    .boxed(),
                            )
                            .unwrap(),
                    })
                }
            });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn start_gateway(mock: SocketAddr, dir: &std::path::Path) -> (Child, SocketAddr) {
    let mut cfg = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nplugins_dir = \"plugins.d\"\ndata_dir = \"data\"\n\
         [providers.openai]\nbase_url = \"http://{mock}/v1\"\n"
    );
    let rate = "limit = 1000000000\nperiod_s = 60\n";
    let gateways: &[(&str, &str)] = &[
        ("empty", ""),
        ("full", "\"logging\", \"rate-limit\", \"cache\", \"retry\""),
        ("logging", "\"logging\""),
        ("rate-limit", "\"rate-limit\""),
        ("cache", "\"cache\""),
        ("retry", "\"retry\""),
    ];
    for (name, pipeline) in gateways {
        let _ = writeln!(cfg, "[gateways.{name}]\npipeline = [{pipeline}]");
        if pipeline.contains("rate-limit") {
            let _ = writeln!(cfg, "[gateways.{name}.filters.rate-limit]\n{rate}");
        }
    }
    std::fs::write(dir.join("aigw.toml"), cfg).unwrap();
    common::spawn_gateway(&dir.join("aigw.toml"))
}

struct Stats {
    p50: Duration,
    p90: Duration,
    p99: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    Stats {
        p50: percentile(&samples, 0.5),
        p90: percentile(&samples, 0.9),
        p99: percentile(&samples, 0.99),
    }
}

async fn throughput(client: &HttpClient, url: &str, total: usize, concurrency: usize) -> f64 {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let url = url.to_string();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            while (next.fetch_add(1, Ordering::Relaxed) as usize) < total {
                one(&client, &url).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let deadline = Instant::now() + Duration::from_secs(600);
    let mock_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mock = mock_listener.local_addr().unwrap();
    tokio::spawn(aigw::mock::serve(
        mock_listener,
        Arc::new(aigw::mock::MockState::default()),
    ));
    let proxy = plain_proxy(mock).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, gw) = start_gateway(mock, dir.path());

    let gw_url = |name: &str| format!("http://{gw}/v1/bench/{name}/openai/chat/completions");
    let mut targets = vec![
        Target {
            name: "direct to mock".into(),
            url: format!("http://{mock}/v1/chat/completions"),
        },
        Target {
            name: "plain reverse proxy".into(),
            url: format!("http://{proxy}/v1/chat/completions"),
        },
        Target {
            name: "aigw, empty pipeline".into(),
            url: gw_url("empty"),
        },
        Target {
            name: "aigw, 4 filters".into(),
            url: gw_url("full"),
        },
    ];
    for f in ["logging", "rate-limit", "cache", "retry"] {
        targets.push(Target {
            name: format!("aigw, {f} only"),
            url: gw_url(f),
        });
    }

    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    for t in &targets {
        for _ in 0..scaled(200) {
            one(&client, &t.url).await;
        }
    }
    // Interleaved rounds so drift on a shared machine hits every target alike.
    let rounds = 5;
    let per_round = scaled(400);
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); targets.len()];
    for _ in 0..rounds {
        for (i, t) in targets.iter().enumerate() {
            for _ in 0..per_round {
                if Instant::now() > deadline {
                    break;
                }
                samples[i].push(one(&client, &t.url).await);
            }
        }
    }
    let stats: Vec<Stats> = samples.into_iter().map(stats).collect();
    let direct = stats[0].p50;
    let proxy_p50 = stats[1].p50;
    let empty_p50 = stats[2].p50;

    let mut report = String::new();
    let _ = writeln!(report, "# aigw benchmark\n");
    let _ = writeln!(
        report,
        "{} sequential requests per target (non-streamed chat completion, unique prompt each, keep-alive), \
         interleaved in {rounds} rounds; mock provider answers immediately. Machine: {} cores.\n",
        rounds * per_round,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    let _ = writeln!(
        report,
        "| target | p50 µs | p90 µs | p99 µs | added p50 vs direct µs | p50 / direct | p50 / plain proxy |"
    );
    let _ = writeln!(report, "|---|---:|---:|---:|---:|---:|---:|");
    for (t, s) in targets.iter().zip(&stats) {
        let _ = writeln!(
            report,
            "| {} | {:.0} | {:.0} | {:.0} | {:+.0} | {:.2} | {:.2} |",
            t.name,
            us(s.p50),
            us(s.p90),
            us(s.p99),
            us(s.p50) - us(direct),
            us(s.p50) / us(direct),
            us(s.p50) / us(proxy_p50),
        );
    }
    let _ = writeln!(
        report,
        "\nPer-filter cost (p50 of the filter alone minus p50 of the empty pipeline):\n"
    );
    for (t, s) in targets.iter().zip(&stats).skip(4) {
        let _ = writeln!(report, "- {}: {:+.0} µs", t.name, us(s.p50) - us(empty_p50));
    }
    let _ = writeln!(
        report,
        "- all four together: {:+.0} µs\n",
        us(stats[3].p50) - us(empty_p50)
    );

    let total = scaled(3000);
    let concurrency = 32;
    let _ = writeln!(
        report,
        "Throughput, {total} requests with {concurrency} concurrent clients (client, mock and gateway share the machine):\n"
    );
    let _ = writeln!(report, "| target | requests/s | / direct | / plain proxy |");
    let _ = writeln!(report, "|---|---:|---:|---:|");
    let mut rps = Vec::new();
    for t in targets.iter().take(4) {
        rps.push(throughput(&client, &t.url, total, concurrency).await);
    }
    for (t, r) in targets.iter().take(4).zip(&rps) {
        let _ = writeln!(
            report,
            "| {} | {:.0} | {:.2} | {:.2} |",
            t.name,
            r,
            r / rps[0],
            r / rps[1]
        );
    }

    let _ = child.kill();
    let _ = child.wait();
    println!("{report}");
    let out =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-report.md");
    if std::fs::write(&out, &report).is_ok() {
        println!("report written to {}", out.display());
    }
}
