//! Analytics and log-query time over a large log store: fills a fresh SQLite
//! store with N entries (default 10,000,000; `AIGW_BENCH_ROWS` to change) spread
//! over 30 days through the real batching writer (which keeps the per-minute and
//! per-hour rollups), then times the dashboard's 24-hour and 30-day reports,
//! checks every count against the entries and every percentile against the exact
//! one (within 1%), and times the report that has to read the entries (grouped by
//! a metadata field) and two filtered log pages.
//!
//! Run: `cargo bench -p aigw --bench analytics`. With `AIGW_BENCH_POSTGRES_URL`
//! set, the same store is filled and measured on PostgreSQL too (its tables are
//! dropped first: use a scratch database).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use aigw::store::logs::{LogQuery, LogStore, Retention};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const DAY: i64 = 86_400_000;
const MODELS: [&str; 4] = [
    "gpt-4o-mini",
    "gpt-4o",
    "claude-3-5-haiku",
    "llama-3.1-8b-instant",
];
const PROVIDERS: [&str; 4] = ["openai", "openai", "anthropic", "groq"];

/// The i-th of `rows` entries spread over 30 days ending at `end`.
fn entry(i: usize, rows: usize, end: i64) -> Value {
    let m = i % MODELS.len();
    json!({
        "id": format!("r{i}"), "created_at": end - 30 * DAY + (i as i64 * 30 * DAY / rows as i64),
        "gateway": "gw", "provider": PROVIDERS[m], "model": MODELS[m],
        "status": if i.is_multiple_of(50) { 500 } else { 200 }, "success": !i.is_multiple_of(50), "cached": i.is_multiple_of(7),
        "outcome": if i.is_multiple_of(50) { Some("upstream_5xx") } else { None },
        "duration_ms": duration(i), "tokens_in": 20 + i % 300, "tokens_out": 50 + i % 500,
        "cost": 0.00001 * (i % 10) as f64, "key_id": format!("k{}", i % 20),
        "metadata": {"user": format!("u{}", i % 100)},
    })
}

/// A long-tailed latency: mostly 50..2050 ms, one in 100 up to 30 s.
fn duration(i: usize) -> i64 {
    let base = 50 + (i * 7919) % 2000;
    (if i.is_multiple_of(100) {
        base * 15
    } else {
        base
    }) as i64
}

/// The dashboard's bucket for a range: a sixtieth, in whole minutes.
fn dashboard_bucket(range: i64) -> i64 {
    (range / 60).max(60_000) / 60_000 * 60_000
}

struct View {
    name: &'static str,
    from: i64,
    to: i64,
    bucket: i64,
}

fn measure(label: &str, store: &LogStore, rows: usize, end: i64, out: &mut Vec<String>) {
    let views = [
        View {
            name: "24 h, dashboard buckets (24 min)",
            from: end - DAY,
            to: end,
            bucket: dashboard_bucket(DAY),
        },
        View {
            name: "24 h, hourly buckets",
            from: end - DAY,
            to: end,
            bucket: 3_600_000,
        },
        View {
            name: "30 days, dashboard buckets (12 h)",
            from: end - 30 * DAY,
            to: end + 1,
            bucket: dashboard_bucket(30 * DAY),
        },
        View {
            name: "30 days, daily buckets",
            from: end - 30 * DAY,
            to: end + 1,
            bucket: DAY,
        },
    ];
    for v in &views {
        // The exact figures, from the generated entries.
        let start = end - 30 * DAY;
        let mut durations = Vec::new();
        let mut requests = 0i64;
        let mut tokens_in = 0i64;
        for i in 0..rows {
            let at = start + (i as i64 * 30 * DAY / rows as i64);
            if at >= v.from && at < v.to {
                requests += 1;
                tokens_in += 20 + (i % 300) as i64;
                durations.push(duration(i));
            }
        }
        durations.sort_unstable();
        // Best of three: the first run also warms the page cache.
        let mut best = Duration::MAX;
        let mut report = Value::Null;
        for _ in 0..3 {
            let t = Instant::now();
            report = store
                .analytics("gw", v.from, v.to, v.bucket, Some("model"))
                .unwrap();
            best = best.min(t.elapsed());
        }
        let totals = &report["totals"];
        assert_eq!(totals["requests"], requests, "{label} {}: requests", v.name);
        assert_eq!(totals["tokens_in"], tokens_in, "{label} {}: tokens", v.name);
        let mut worst = 0.0f64;
        for (name, q) in [("p50", 0.5), ("p95", 0.95), ("p99", 0.99)] {
            let k = ((q * durations.len() as f64).ceil() as usize).max(1);
            let exact = durations[k - 1] as f64;
            let got = totals["latency_ms"][name].as_f64().unwrap();
            let err = (got - exact).abs() / exact;
            // 1% of the sketch, and the rounding to whole milliseconds.
            assert!(
                err <= 0.01 + 0.5 / exact,
                "{label} {}: {name} {got} vs exact {exact}",
                v.name
            );
            worst = worst.max(err);
        }
        out.push(format!(
            "| {label} | analytics: {}, p50/p95/p99, group_by=model ({requests} entries) | {:.1} ms | {:.2}% |",
            v.name,
            best.as_secs_f64() * 1e3,
            worst * 100.0
        ));
    }

    // A metadata field is not rolled up: that report reads the day's entries.
    let t = Instant::now();
    let report = store
        .analytics("gw", end - DAY, end, 3_600_000, Some("meta.user"))
        .unwrap();
    let by_meta = t.elapsed();
    assert_eq!(report["groups"].as_array().unwrap().len(), 100);
    out.push(format!(
        "| {label} | analytics: 24 h, group_by=meta.user (reads the entries) | {:.0} ms | exact order |",
        by_meta.as_secs_f64() * 1e3
    ));

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
    out.push(format!(
        "| {label} | log page filtered by model + success=false | {:.1} ms | |",
        filtered.as_secs_f64() * 1e3
    ));
}

/// Appends every entry through the batching writer; the time per entry.
fn fill(store: &LogStore, rows: usize, end: i64) -> (Duration, usize) {
    let t = Instant::now();
    let mut retries = 0usize;
    for i in 0..rows {
        let e = entry(i, rows, end);
        while store.append(e.clone()).is_err() {
            retries += 1;
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    store.close();
    (t.elapsed(), retries)
}

fn main() {
    let rows: usize = std::env::var("AIGW_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    // A whole minute, so the newest minute is a rollup row like the others.
    let end = (aigw::store::now_ms() as i64) / 60_000 * 60_000;
    let mut out = Vec::new();

    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(dir.path()).unwrap();
    let (write, retries) = fill(&store, rows, end);
    out.push(format!(
        "| SQLite | write through the batching writer, rollups included | {:.2} µs per entry ({:.0} s; queue-full retries: {retries}) | |",
        write.as_secs_f64() * 1e6 / rows as f64,
        write.as_secs_f64()
    ));
    let store = LogStore::open(dir.path()).unwrap();
    measure("SQLite", &store, rows, end, &mut out);
    store.close();
    drop(store);

    // Upgrading a store written before rollups: they are built once, at open.
    let conn = rusqlite::Connection::open(dir.path().join("logs.sqlite")).unwrap();
    conn.execute_batch("DELETE FROM log_rollups; PRAGMA user_version = 0;")
        .unwrap();
    drop(conn);
    let t = Instant::now();
    let store = LogStore::open(dir.path()).unwrap();
    let backfill = t.elapsed();
    let again = store
        .analytics("gw", end - 30 * DAY, end + 1, DAY, None)
        .unwrap();
    assert_eq!(again["totals"]["requests"], rows);
    out.push(format!(
        "| SQLite | rollups built at open for a store without them | {:.2} µs per entry ({:.0} s) | |",
        backfill.as_secs_f64() * 1e6 / rows as f64,
        backfill.as_secs_f64()
    ));
    store.close();

    if let Ok(url) = std::env::var("AIGW_BENCH_POSTGRES_URL") {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        c.batch_execute("DROP TABLE IF EXISTS logs, log_rollups, aigw_schema")
            .unwrap();
        drop(c);
        let store = LogStore::open_postgres(&url, Retention::default()).unwrap();
        let (write, retries) = fill(&store, rows, end);
        out.push(format!(
            "| PostgreSQL | write through the batching writer, rollups included | {:.2} µs per entry ({:.0} s; queue-full retries: {retries}) | |",
            write.as_secs_f64() * 1e6 / rows as f64,
            write.as_secs_f64()
        ));
        let store = LogStore::open_postgres(&url, Retention::default()).unwrap();
        measure("PostgreSQL", &store, rows, end, &mut out);
        store.close();
    }

    println!("# aigw analytics over {rows} entries spread over 30 days\n");
    println!("| store | measure | time | worst percentile error |\n|---|---|---:|---:|");
    for line in out {
        println!("{line}");
    }
}
