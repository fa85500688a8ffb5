//! Analytics and log-query time over a large log store: fills a fresh SQLite
//! store with N entries (default 1,000,000; `AIGW_BENCH_ROWS` to change) spread
//! over 24 hours, then times the analytics report (hourly buckets, grouped by
//! model), a filtered log page, and the per-entry cost of the batched writer.
//!
//! Run: `cargo bench -p aigw --bench analytics`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use aigw::store::logs::{LogQuery, LogStore};
use serde_json::json;
use std::time::Instant;

fn main() {
    let rows: usize = std::env::var("AIGW_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let now = aigw::store::now_ms() as i64;
    let start = now - 86_400_000;
    let models = [
        "gpt-4o-mini",
        "gpt-4o",
        "claude-3-5-haiku",
        "llama-3.1-8b-instant",
    ];
    let providers = ["openai", "openai", "anthropic", "groq"];

    // The real write path: entries queued to the batching writer thread.
    let store = LogStore::open(dir.path()).unwrap();
    let t = Instant::now();
    let mut dropped = 0usize;
    for i in 0..rows {
        let m = i % models.len();
        let entry = json!({
            "id": format!("r{i}"), "created_at": start + (i as i64 * 86_400_000 / rows as i64),
            "gateway": "gw", "provider": providers[m], "model": models[m],
            "status": if i % 50 == 0 { 500 } else { 200 }, "success": i % 50 != 0, "cached": i % 7 == 0,
            "duration_ms": 50 + (i * 7919) % 2000, "tokens_in": 20 + i % 300, "tokens_out": 50 + i % 500,
            "cost": 0.00001 * (i % 10) as f64, "metadata": {"user": format!("u{}", i % 100)},
        });
        while store.append(entry.clone()).is_err() {
            dropped += 1;
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }
    store.close();
    let write = t.elapsed();
    let store = LogStore::open(dir.path()).unwrap();

    let t = Instant::now();
    let report = store
        .analytics("gw", start, now + 1, 3_600_000, Some("model"))
        .unwrap();
    let analytics = t.elapsed();
    assert_eq!(report["totals"]["requests"], rows);

    let t = Instant::now();
    let q = LogQuery {
        gateway: "gw".into(),
        model: Some("gpt-4o-mini".into()),
        success: Some(false),
        limit: 50,
        ..LogQuery::default()
    };
    let (page, _) = store.query(&q).unwrap();
    let filtered = t.elapsed();
    assert!(!page.is_empty());

    let t = Instant::now();
    let q = LogQuery {
        gateway: "gw".into(),
        metadata: vec![("user".into(), "u42".into())],
        limit: 50,
        ..LogQuery::default()
    };
    let (page, _) = store.query(&q).unwrap();
    let by_meta = t.elapsed();
    assert!(!page.is_empty());

    println!("# aigw log store over {rows} entries\n");
    println!("| measure | value |\n|---|---:|");
    println!(
        "| write through the batching writer | {:.2} µs per entry ({:.1} s total; queue-full retries: {dropped}) |",
        write.as_secs_f64() * 1e6 / rows as f64,
        write.as_secs_f64()
    );
    println!(
        "| analytics: 24 h, hourly buckets, p50/p95/p99, group_by=model | {:.0} ms |",
        analytics.as_secs_f64() * 1e3
    );
    println!(
        "| log page filtered by model + success=false | {:.1} ms |",
        filtered.as_secs_f64() * 1e3
    );
    println!(
        "| log page filtered by metadata user | {:.1} ms |",
        by_meta.as_secs_f64() * 1e3
    );
    store.close();
}
