//! Bounded load on loopback: mixed traffic at high concurrency through the
//! default pipeline, and a thousand SSE streams held open at once. Every loop
//! is bounded in count and time.
//!
//! CI runs a shortened form. The full run from the issue:
//! `AIGW_LOAD_REQUESTS=10000 AIGW_LOAD_STREAMS=1000 cargo test --release -p aigw --test e2e under_load -- --nocapture`

use crate::harness::*;
use hyper::StatusCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn default_pipeline(mock: &Mock) -> String {
    format!(
        "{}[gateways.gw]\npipeline = [\"logging\", \"rate-limit\", \"cache\", \"retry\"]\n\
         [gateways.gw.filters.rate-limit]\nlimit = 50\nperiod_s = 3600\nkey = \"header:x-user\"\n\
         [gateways.gw.filters.cache]\nttl_s = 3600\n\
         [gateways.gw.filters.retry]\nmax_attempts = 2\ndelay_ms = 10\n",
        mock.providers_toml()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mixed_traffic_at_concurrency_256_loses_nothing() {
    let total = env_count("AIGW_LOAD_REQUESTS", 2_000);
    let concurrency = 256;
    let mock = Mock::start().await;
    let mut gw = Gateway::start(&default_pipeline(&mock), &[]);
    let url = Arc::new(gw.url("/v1/a/gw/openai/chat/completions"));
    let next = Arc::new(AtomicU64::new(0));
    let counts = Arc::new(
        [(); 6].map(|_| AtomicU64::new(0)), // ok json, ok stream, hit, 429 expected, unexpected, limited-ok
    );
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(300);
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (url, next, counts, failures) =
            (url.clone(), next.clone(), counts.clone(), failures.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= total || Instant::now() > deadline {
                    break;
                }
                // 10 % go to one user over its limit of 50; 15 % repeat a
                // cached prompt; 15 % stream; the rest are unique JSON chats.
                let kind = i % 20;
                let (user, body, streamed) = match kind {
                    0 | 1 => (
                        "limited".to_string(),
                        chat(&format!("limited {i}"), false),
                        false,
                    ),
                    2..=4 => (
                        format!("u{}", i % 997),
                        chat("the same question", false),
                        false,
                    ),
                    5..=7 => (
                        format!("u{}", i % 997),
                        chat(&format!("stream {i}"), true),
                        true,
                    ),
                    _ => (
                        format!("u{}", i % 997),
                        chat(&format!("unique {i}"), false),
                        false,
                    ),
                };
                let headers = [("x-user", user.as_str())];
                let (status, ok_body, text) = if streamed {
                    let s = stream(&url, &headers, &body).await;
                    let t = s.text();
                    (s.status, s.error.is_none() && t.contains("[DONE]"), t)
                } else {
                    let r = send(&url, &headers, &body).await;
                    let t = r.text();
                    let hit = r.header("cf-aig-cache-status") == Some("HIT");
                    if hit {
                        counts[2].fetch_add(1, Ordering::Relaxed);
                    }
                    (
                        r.status,
                        t.contains("choices") || r.status == StatusCode::TOO_MANY_REQUESTS,
                        t,
                    )
                };
                let slot = match (status, user == "limited") {
                    (StatusCode::OK, true) if ok_body => 5,
                    (StatusCode::OK, false) if ok_body => usize::from(streamed),
                    (StatusCode::TOO_MANY_REQUESTS, true) => 3,
                    _ => {
                        let mut f = failures.lock().unwrap();
                        if f.len() < 5 {
                            f.push(format!("#{i} {status}: {}", &text[..text.len().min(300)]));
                        }
                        4
                    }
                };
                counts[slot].fetch_add(1, Ordering::Relaxed);
            }
        }));
        // Spread the ramp a little: 256 connects at once trip SYN backlogs.
        tokio::task::yield_now().await;
    }
    let mut peak_rss = 0;
    for w in workers {
        w.await.unwrap();
        if let Some((_, hwm)) = gw.rss_kib() {
            peak_rss = peak_rss.max(hwm);
        }
    }
    let elapsed = started.elapsed();
    let c: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let done = c[0] + c[1] + c[3] + c[4] + c[5];
    eprintln!(
        "load: {done} requests in {elapsed:?} ({:.0} req/s) at c={concurrency}: {} json, {} streams, {} cache hits, {} limited-ok, {} 429, {} unexpected; gateway peak RSS {} MiB",
        done as f64 / elapsed.as_secs_f64(),
        c[0],
        c[1],
        c[2],
        c[5],
        c[3],
        c[4],
        peak_rss / 1024
    );
    assert_eq!(done as usize, total, "the run hit its time bound");
    assert_eq!(
        c[4],
        0,
        "unexpected answers: {:?}",
        failures.lock().unwrap()
    );
    assert_eq!(
        c[5], 50,
        "exactly the limit of the limited user got through"
    );
    assert!(c[3] > 0 && c[2] > 0 && c[1] > 0);
    assert!(peak_rss < 512 * 1024, "gateway peak RSS {peak_rss} KiB");
    let metrics = send_req(request(hyper::Method::GET, &gw.url("/metrics"), &[], ""))
        .await
        .text();
    let failures: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("aigw_filter_failures_total{"))
        .collect();
    assert!(
        failures.is_empty(),
        "filters failed under load (a CPU deadline must not count time spent descheduled): {failures:?}"
    );
    assert!(
        metrics.contains("aigw_log_entries_dropped_total 0"),
        "log entries were dropped: {metrics}"
    );
    assert!(gw.stop());
    let entries = log_entries(&gw.data_dir());
    if entries.len() != total {
        let mut seen = std::collections::HashSet::new();
        let mut same = 0;
        let mut statuses = std::collections::BTreeMap::new();
        for e in &entries {
            let body = e["request_body"].as_str().unwrap_or("");
            *statuses
                .entry(format!("{}/{}", e["status"], e["outcome"]))
                .or_insert(0) += 1;
            if body.contains("the same question") {
                same += 1;
            }
            for word in ["limited ", "stream ", "unique "] {
                if let Some(pos) = body.find(word) {
                    let n: String = body[pos + word.len()..]
                        .chars()
                        .take_while(char::is_ascii_digit)
                        .collect();
                    seen.insert(n.parse::<usize>().unwrap_or(usize::MAX));
                }
            }
        }
        let missing: Vec<usize> = (0..total)
            .filter(|i| i % 20 >= 5 && !seen.contains(i))
            .take(5)
            .collect();
        panic!(
            "{} entries for {total} requests; same-question entries {same}; missing {missing:?}; {statuses:?}",
            entries.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_sse_streams_are_held_open_at_once() {
    let streams = env_count("AIGW_LOAD_STREAMS", 1_000);
    let mock = Mock::start().await;
    let cfg = format!(
        "{}[gateways.gw]\npipeline = [\"logging\", \"rate-limit\", \"cache\", \"retry\"]\n\
         [gateways.gw.filters.rate-limit]\nlimit = 100000\nperiod_s = 60\n",
        mock.providers_toml()
    );
    let gw = Gateway::start(&cfg, &[]);
    let idle = gw.rss_kib().map(|r| r.0).unwrap_or(0);
    let url = Arc::new(gw.url("/v1/a/gw/openai/chat/completions"));
    let open = Arc::new(AtomicU64::new(0));
    let max_open = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..streams {
        let (url, open, max_open) = (url.clone(), open.clone(), max_open.clone());
        tasks.push(tokio::spawn(async move {
            // 6 chunks, 1 s apart: each stream lasts about 6 s.
            let headers = [("x-mock-chunks", "6"), ("x-mock-chunk-delay-ms", "1000")];
            let now_open = open.fetch_add(1, Ordering::SeqCst) + 1;
            max_open.fetch_max(now_open, Ordering::SeqCst);
            let s = tokio::time::timeout(
                Duration::from_secs(120),
                stream(&url, &headers, &chat(&format!("s{i}"), true)),
            )
            .await;
            open.fetch_sub(1, Ordering::SeqCst);
            match s {
                Ok(s)
                    if s.status == StatusCode::OK
                        && s.error.is_none()
                        && s.text().contains("[DONE]") =>
                {
                    Ok(())
                }
                Ok(s) => Err(format!(
                    "{} {:?}: {}",
                    s.status,
                    s.error,
                    &s.text()[..s.text().len().min(200)]
                )),
                Err(_) => Err("timed out".to_string()),
            }
        }));
    }
    // Sample the gateway while the streams are open.
    let mut held_rss = 0;
    let mut held_at_once = 0;
    let sample_until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < sample_until {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let live = mock.state.open_streams();
        held_at_once = held_at_once.max(live);
        if let Some((rss, _)) = gw.rss_kib() {
            held_rss = held_rss.max(rss);
        }
        if tasks.iter().all(|t| t.is_finished()) {
            break;
        }
    }
    let mut completed = 0;
    let mut errors = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => completed += 1,
            Err(e) if errors.len() < 5 => errors.push(e),
            Err(_) => {}
        }
    }
    let after = gw.rss_kib().map(|r| r.0).unwrap_or(0);
    eprintln!(
        "streams: {completed}/{streams} complete in {:?}; {held_at_once} open upstream at once; gateway RSS idle {} MiB, holding {} MiB, after {} MiB",
        started.elapsed(),
        idle / 1024,
        held_rss / 1024,
        after / 1024
    );
    let instantiate_failures: Vec<String> = gw
        .logs()
        .lines()
        .filter(|l| l.contains("cannot instantiate"))
        .take(3)
        .map(str::to_string)
        .collect();
    assert_eq!(
        completed, streams,
        "every stream ends with [DONE]: {errors:?} {instantiate_failures:?}"
    );
    assert!(
        held_at_once >= streams * 9 / 10,
        "only {held_at_once} of {streams} streams were open at once"
    );
    assert!(
        held_rss < 1024 * 1024,
        "RSS {held_rss} KiB holding {streams} streams"
    );
}
