//! The load shapes: sequential calls on one connection, a closed loop over
//! N connections, sequential streams, and N streams held open at once. Each
//! is bounded by a count and a time; each returns raw samples, and knows
//! nothing of rounds or reports.

use crate::client::{self, Conn, Endpoint};
use crate::plan::Bodies;
use crate::procfs;
use anyhow::Result;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Samples of non-streamed calls.
#[derive(Debug, Default)]
pub struct Calls {
    pub latencies_us: Vec<f64>,
    pub ok: u64,
    pub errors: u64,
    pub cache_hits: u64,
    pub reconnects: u64,
    pub elapsed_s: f64,
    pub first_error: Option<String>,
}

impl Calls {
    fn record(&mut self, r: Result<client::Answer>) {
        match r {
            Ok(a) if a.status.is_success() => {
                self.ok += 1;
                self.cache_hits += u64::from(a.cache_hit);
                self.latencies_us.push(a.latency_us);
            }
            Ok(a) => self.error(format!("status {}", a.status)),
            Err(e) => self.error(format!("{e:#}")),
        }
    }

    fn error(&mut self, e: String) {
        self.errors += 1;
        self.first_error.get_or_insert(e);
    }

    fn merge(&mut self, o: Calls) {
        self.latencies_us.extend(o.latencies_us);
        self.ok += o.ok;
        self.errors += o.errors;
        self.cache_hits += o.cache_hits;
        self.reconnects += o.reconnects;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }
}

/// Up to `n` calls, one after another on one keep-alive connection, for at
/// most `max`.
pub async fn sequential(
    ep: &Arc<Endpoint>,
    bodies: &Bodies,
    n: usize,
    max: Duration,
    timeout: Duration,
) -> Calls {
    let mut out = Calls::default();
    let mut conn = match Conn::open(ep.clone()).await {
        Ok(c) => c,
        Err(e) => {
            out.error(format!("{e:#}"));
            return out;
        }
    };
    let start = Instant::now();
    for _ in 0..n {
        if start.elapsed() > max {
            break;
        }
        let body = bodies.next(false);
        out.record(client::call(&mut conn, &body, timeout).await);
    }
    out.elapsed_s = start.elapsed().as_secs_f64();
    out.reconnects = conn.reconnects;
    out
}

/// A closed loop: `concurrency` connections (all opened before the clock
/// starts), each sending its next call when the previous one is answered,
/// until `n` calls were started or `max` passed. Throughput is answered
/// calls over the time until the last answer.
pub async fn concurrent(
    ep: &Arc<Endpoint>,
    bodies: &Arc<Bodies>,
    concurrency: usize,
    n: usize,
    max: Duration,
    timeout: Duration,
) -> Calls {
    let mut out = Calls::default();
    let mut conns = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        match Conn::open(ep.clone()).await {
            Ok(c) => conns.push(c),
            Err(e) => out.error(format!("{e:#}")),
        }
    }
    let started = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(conns.len());
    for mut conn in conns {
        let started = started.clone();
        let bodies = bodies.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Calls::default();
            while start.elapsed() < max && started.fetch_add(1, Ordering::Relaxed) < n {
                let body = bodies.next(false);
                mine.record(client::call(&mut conn, &body, timeout).await);
            }
            mine.reconnects = conn.reconnects;
            mine
        }));
    }
    for t in tasks {
        match t.await {
            Ok(mine) => out.merge(mine),
            Err(e) => out.error(format!("worker task: {e}")),
        }
    }
    out.elapsed_s = start.elapsed().as_secs_f64();
    out
}

/// Samples of streamed calls.
#[derive(Debug, Default)]
pub struct Streams {
    pub ttfb_us: Vec<f64>,
    pub gaps_us: Vec<f64>,
    pub totals_us: Vec<f64>,
    pub events: Vec<f64>,
    pub ok: u64,
    pub errors: u64,
    pub elapsed_s: f64,
    pub first_error: Option<String>,
}

/// Up to `n` streamed calls, one after another, for at most `max`.
pub async fn streams(
    ep: &Arc<Endpoint>,
    bodies: &Bodies,
    n: usize,
    max: Duration,
    timeout: Duration,
) -> Streams {
    let mut out = Streams::default();
    let mut conn = match Conn::open(ep.clone()).await {
        Ok(c) => c,
        Err(e) => {
            out.errors += 1;
            out.first_error = Some(format!("{e:#}"));
            return out;
        }
    };
    let start = Instant::now();
    for _ in 0..n {
        if start.elapsed() > max {
            break;
        }
        let body = bodies.next(true);
        match client::call_stream(&mut conn, &body, timeout).await {
            Ok(s) if s.status.is_success() => {
                out.ok += 1;
                out.ttfb_us.push(s.ttfb_us);
                out.totals_us.push(s.total_us);
                out.events.push(s.events as f64);
                out.gaps_us.extend(s.gaps_us);
            }
            Ok(s) => {
                out.errors += 1;
                out.first_error
                    .get_or_insert_with(|| format!("status {}", s.status));
            }
            Err(e) => {
                out.errors += 1;
                out.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    out.elapsed_s = start.elapsed().as_secs_f64();
    out
}

/// Peak resident memory of a process tree, sampled in the background while
/// a phase runs.
pub struct RssSampler {
    peak_kib: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    pub fn start(pids: Vec<u32>, every: Duration) -> RssSampler {
        let peak_kib = Arc::new(AtomicU64::new(procfs::memory(&pids).rss_kib));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak_kib.clone(), stop.clone());
        let task = tokio::spawn(async move {
            // Bounded: one sample per `every`, for at most an hour.
            for _ in 0..(3_600_000 / every.as_millis().max(1)) {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                p.fetch_max(procfs::memory(&pids).rss_kib, Ordering::Relaxed);
                tokio::time::sleep(every).await;
            }
        });
        RssSampler {
            peak_kib,
            stop,
            task,
        }
    }

    /// Stops sampling; the peak seen.
    pub async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.peak_kib.load(Ordering::Relaxed)
    }
}

/// Many streams held open at once.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Hold {
    pub requested: usize,
    pub ok: u64,
    pub errors: u64,
    /// Most streams that had started and not ended at one sample.
    pub max_open: usize,
    pub rss_before_kib: u64,
    pub rss_peak_kib: u64,
    /// RSS at the sample where most streams were open.
    pub rss_at_max_open_kib: u64,
    pub rss_after_kib: u64,
    pub hwm_end_kib: u64,
    pub duration_s: f64,
    pub first_error: Option<String>,
}

/// Opens `n` streamed calls at once (at most `connect_parallel` connecting at
/// a time), samples the process tree's RSS every `every` until they end or
/// `max` passed, then waits `settle` and reads it again.
#[allow(
    clippy::too_many_arguments,
    reason = "one call site, each knob named there"
)]
pub async fn hold(
    ep: &Arc<Endpoint>,
    bodies: &Arc<Bodies>,
    pid: u32,
    n: usize,
    connect_parallel: usize,
    every: Duration,
    max: Duration,
    settle: Duration,
) -> Hold {
    let pids = procfs::tree(pid);
    let mut out = Hold {
        requested: n,
        rss_before_kib: procfs::memory(&pids).rss_kib,
        ..Hold::default()
    };
    let open = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(connect_parallel.max(1)));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let (ep, bodies, open, done, gate) = (
            ep.clone(),
            bodies.clone(),
            open.clone(),
            done.clone(),
            gate.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let result = async {
                let permit = gate.acquire_owned().await?;
                let mut conn = Conn::open(ep).await?;
                drop(permit);
                let body = bodies.next(true);
                open.fetch_add(1, Ordering::Relaxed);
                let r = client::call_stream(&mut conn, &body, max).await;
                open.fetch_sub(1, Ordering::Relaxed);
                let s = r?;
                anyhow::ensure!(s.status.is_success(), "status {}", s.status);
                anyhow::ensure!(s.events > 1, "stream of {} events", s.events);
                Ok::<_, anyhow::Error>(())
            }
            .await;
            done.fetch_add(1, Ordering::Relaxed);
            result
        }));
    }
    // Bounded by count (max / every samples) and by `max`.
    let samples = (max.as_millis() / every.as_millis().max(1)) as usize + 1;
    for _ in 0..samples {
        let m = procfs::memory(&pids);
        let now_open = open.load(Ordering::Relaxed);
        out.rss_peak_kib = out.rss_peak_kib.max(m.rss_kib);
        if now_open > out.max_open
            || (now_open == out.max_open && m.rss_kib > out.rss_at_max_open_kib)
        {
            out.max_open = now_open;
            out.rss_at_max_open_kib = m.rss_kib;
        }
        if done.load(Ordering::Relaxed) >= n || start.elapsed() > max {
            break;
        }
        tokio::time::sleep(every).await;
    }
    for t in tasks {
        match t.await {
            Ok(Ok(())) => out.ok += 1,
            Ok(Err(e)) => {
                out.errors += 1;
                out.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
            Err(e) => {
                out.errors += 1;
                out.first_error.get_or_insert_with(|| format!("task: {e}"));
            }
        }
    }
    out.duration_s = start.elapsed().as_secs_f64();
    tokio::time::sleep(settle).await;
    let m = procfs::memory(&pids);
    out.rss_after_kib = m.rss_kib;
    out.hwm_end_kib = m.hwm_kib;
    out
}
