//! Hot-reload soak: steady load (4 clients, ≥10% streamed requests) against a
//! gateway whose filter file is replaced every 5 s for a minute, then 100
//! forced reloads to watch memory. Reports requests sent and failed, streams
//! truncated, p99 latency near reloads vs away from them, and RSS before and
//! after the 100 reloads. Loopback only; every loop is bounded.
//!
//! Run: `cargo bench -p aigw --bench reload` (`AIGW_BENCH_SCALE=0.2` for a short run).

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
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn scale() -> f64 {
    std::env::var("AIGW_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0)
}

/// The built-in retry filter with a custom section appended: same behaviour,
/// new content hash, so the gateway really recompiles and swaps it.
fn variant(n: u64) -> Vec<u8> {
    let mut bytes = aigw::runtime::builtin::bytes("retry").unwrap().to_vec();
    let mut payload = vec![1u8, b'v'];
    payload.extend_from_slice(&n.to_le_bytes());
    bytes.push(0);
    bytes.push(payload.len() as u8);
    bytes.extend_from_slice(&payload);
    bytes
}

fn install(dir: &Path, bytes: &[u8]) {
    let tmp = dir.join(".swap.wasm.tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dir.join("swap.wasm")).unwrap();
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

struct Sample {
    started: Instant,
    latency: Duration,
    ok: bool,
    streamed: bool,
    truncated: bool,
}

async fn request(client: &HttpClient, url: &str, n: u64) -> Sample {
    let streamed = n.is_multiple_of(5);
    let body = format!(
        r#"{{"model":"m","stream":{streamed},"messages":[{{"role":"user","content":"soak {n}"}}]}}"#
    );
    let mut req = Request::post(url).header("content-type", "application/json");
    if streamed {
        req = req
            .header("x-mock-chunks", "5")
            .header("x-mock-chunk-delay-ms", "10");
    }
    let req = req.body(Full::new(Bytes::from(body))).unwrap();
    let started = Instant::now();
    let (ok, truncated) = match client.request(req).await {
        Ok(resp) => {
            let status_ok = resp.status().is_success();
            match resp.into_body().collect().await {
                Ok(b) => {
                    let text = b.to_bytes();
                    let complete = !streamed || text.ends_with(b"data: [DONE]\n\n");
                    (status_ok && complete, streamed && !complete)
                }
                Err(_) => (false, streamed),
            }
        }
        Err(_) => (false, streamed),
    };
    Sample {
        started,
        latency: started.elapsed(),
        ok,
        streamed,
        truncated,
    }
}

fn p99(mut v: Vec<Duration>) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    v[((v.len() - 1) as f64 * 0.99) as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mock: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(aigw::mock::serve(
        listener,
        Arc::new(aigw::mock::MockState::default()),
    ));
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins.d");
    std::fs::create_dir_all(&plugins).unwrap();
    install(&plugins, &variant(0));
    std::fs::write(
        dir.path().join("aigw.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nplugins_dir = \"plugins.d\"\n\
             [providers.openai]\nbase_url = \"http://{mock}/v1\"\n\
             [gateways.gw]\npipeline = [\"logging\", \"swap\", \"cache\"]\n\
             [gateways.gw.filters.cache]\nttl_s = 0\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_aigw"))
        .arg("serve")
        .arg("--config")
        .arg(dir.path().join("aigw.toml"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut gw, mut admin) = (None, None);
    while gw.is_none() {
        let line = lines.next().expect("gateway exited").unwrap();
        if let Some(a) = line.strip_prefix("aigw admin listening on http://") {
            admin = Some(a.trim().to_string());
        } else if let Some(a) = line.strip_prefix("aigw listening on http://") {
            gw = Some(a.trim().to_string());
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let (gw, admin) = (gw.unwrap(), admin.unwrap());
    let url = format!("http://{gw}/v1/acct/gw/openai/chat/completions");
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();

    // Phase 1: steady load with a filter replaced every 5 s.
    let duration = Duration::from_secs_f64(60.0 * scale()).max(Duration::from_secs(10));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let begin = Instant::now();
    let mut workers = Vec::new();
    for w in 0..4u64 {
        let (client, url, samples) = (client.clone(), url.clone(), samples.clone());
        workers.push(tokio::spawn(async move {
            let mut n = 0;
            while begin.elapsed() < duration && n < 1_000_000 {
                let s = request(&client, &url, n + w).await;
                samples.lock().unwrap().push(s);
                n += 1;
                // Steady load, not a flood: ~250 requests/s per client.
                tokio::time::sleep(Duration::from_millis(4)).await;
            }
        }));
    }
    let mut reloads_at = Vec::new();
    let mut k = 1;
    while begin.elapsed() + Duration::from_secs(5) < duration {
        tokio::time::sleep(Duration::from_secs(5)).await;
        reloads_at.push(Instant::now());
        install(&plugins, &variant(k));
        k += 1;
    }
    for w in workers {
        w.await.unwrap();
    }
    let samples = std::mem::take(&mut *samples.lock().unwrap());
    let near = |t: Instant| {
        reloads_at
            .iter()
            .any(|r| t + Duration::from_millis(500) >= *r && t <= *r + Duration::from_millis(1500))
    };
    let (near_lat, far_lat): (Vec<_>, Vec<_>) = samples.iter().partition(|s| near(s.started));
    let sent = samples.len();
    let failed = samples.iter().filter(|s| !s.ok).count();
    let streamed = samples.iter().filter(|s| s.streamed).count();
    let truncated = samples.iter().filter(|s| s.truncated).count();
    let generation = {
        let req = Request::get(format!("http://{admin}/api/plugins"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let body = client
            .request(req)
            .await
            .unwrap()
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes();
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["generation"]
            .as_u64()
            .unwrap_or(0)
    };

    // Phase 2: 100 reloads, each with new bytes, forced through the admin API.
    let pid = child.id();
    let rss_before = rss_kib(pid);
    let mut rss_trace = Vec::new();
    for i in 0..100u64 {
        if i.is_multiple_of(25) {
            rss_trace.push(rss_kib(pid) / 1024);
        }
        install(&plugins, &variant(1000 + i));
        let req = Request::post(format!("http://{admin}/api/reload"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = client.request(req).await.unwrap();
        assert!(resp.status().is_success(), "reload {i} failed");
        resp.into_body().collect().await.unwrap();
        request(&client, &url, i).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = rss_kib(pid);
    let _ = child.kill();
    let _ = child.wait();

    let mut r = String::new();
    let _ = writeln!(r, "# aigw hot-reload soak\n");
    let _ = writeln!(
        r,
        "Load: 4 concurrent clients for {:.0} s, each pausing 4 ms between requests, every 5th request streamed (5 SSE chunks, 10 ms apart); the `swap` filter file replaced every 5 s ({} reloads, generation reached {generation}).\n",
        duration.as_secs_f64(),
        reloads_at.len()
    );
    let _ = writeln!(r, "| measure | value |\n|---|---:|");
    let _ = writeln!(r, "| requests sent | {sent} |");
    let _ = writeln!(r, "| requests failed | {failed} |");
    let _ = writeln!(
        r,
        "| streamed requests | {streamed} ({:.1}%) |",
        100.0 * streamed as f64 / sent.max(1) as f64
    );
    let _ = writeln!(r, "| streams truncated | {truncated} |");
    let _ = writeln!(
        r,
        "| p99 latency within 0.5 s before / 1.5 s after a reload | {:.2} ms ({} requests) |",
        p99(near_lat.iter().map(|s| s.latency).collect()).as_secs_f64() * 1e3,
        near_lat.len()
    );
    let _ = writeln!(
        r,
        "| p99 latency elsewhere (baseline) | {:.2} ms ({} requests) |",
        p99(far_lat.iter().map(|s| s.latency).collect()).as_secs_f64() * 1e3,
        far_lat.len()
    );
    let json_p99 = |v: &[&Sample]| {
        p99(v
            .iter()
            .filter(|s| !s.streamed)
            .map(|s| s.latency)
            .collect())
        .as_secs_f64()
            * 1e3
    };
    let _ = writeln!(
        r,
        "| p99 of non-streamed requests near reloads / elsewhere | {:.2} ms / {:.2} ms |",
        json_p99(&near_lat),
        json_p99(&far_lat)
    );
    let _ = writeln!(
        r,
        "| RSS before 100 forced reloads | {} MiB |",
        rss_before / 1024
    );
    let _ = writeln!(
        r,
        "| RSS after 100 forced reloads | {} MiB |",
        rss_after / 1024
    );
    let _ = writeln!(r, "| RSS every 25 reloads (MiB) | {rss_trace:?} |");
    println!("{r}");
    let out =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/reload-report.md");
    let _ = std::fs::write(&out, &r);
    println!("report written to {}", out.display());
}
