//! Process metrics (Prometheus text format) and tracing setup. Counters are
//! plain atomics; per-filter counters live in a map keyed by filter and name.

pub mod otlp;

use dashmap::DashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters the host keeps whatever filters do.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Requests received on the gateway routes.
    pub requests: AtomicU64,
    /// Response bodies still streaming or running their done hooks.
    pub body_tasks: AtomicU64,
    /// Responses by status class (index 1..=5).
    pub responses_by_class: [AtomicU64; 6],
    /// Upstream attempts.
    pub upstream_attempts: AtomicU64,
    /// Upstream connection failures and timeouts.
    pub upstream_errors: AtomicU64,
    /// Responses answered by a filter.
    pub local_responses: AtomicU64,
    /// Filter calls that failed (trap, deadline, memory), by filter.
    pub filter_failures: DashMap<String, AtomicU64>,
    /// Connections refused over `server.max_connections`.
    pub connections_refused: AtomicU64,
    /// WebSocket sessions open now.
    pub websocket_sessions: AtomicU64,
    /// Times a filter's circuit opened, by filter.
    pub circuit_opened: DashMap<String, AtomicU64>,
    /// Requests that skipped a filter because its circuit was open, by filter.
    pub circuit_skipped: DashMap<String, AtomicU64>,
    /// Counters filters add through `telemetry.counter-add`, by (filter, name).
    pub filter_counters: DashMap<(String, String), AtomicU64>,
    /// Outbound HTTP calls of filters, by (filter, outcome: ok, denied, timeout, too_large,
    /// error).
    pub filter_http: DashMap<(String, &'static str), AtomicU64>,
    /// Prompt tokens seen.
    pub tokens_in: AtomicU64,
    /// Completion tokens seen.
    pub tokens_out: AtomicU64,
    /// Reloads attempted.
    pub reloads: AtomicU64,
    /// Reloads rejected (the previous generation kept serving).
    pub reload_failures: AtomicU64,
    /// Answers served from cache.
    pub cache_hits: AtomicU64,
    /// Estimated cost, in millionths of a USD.
    pub cost_micro_usd: AtomicU64,
    /// Request latency by (gateway, provider, model).
    pub latency: DashMap<(String, String, String), Histogram>,
    /// Filter hook calls and their total time (µs), by filter.
    pub filter_calls: DashMap<String, (AtomicU64, AtomicU64)>,
    /// Successful provider answers that reported no usage (cost unknown), by provider.
    pub usage_missing: DashMap<String, AtomicU64>,
    /// Answers with usage but no price for their model (cost unknown), by (provider, model).
    pub price_missing: DashMap<(String, String), AtomicU64>,
    /// Requests and cost (nano-USD) by virtual key id, with the key's team.
    pub by_key: DashMap<String, KeyCounters>,
}

/// What `/metrics` counts per virtual key.
#[derive(Debug, Default)]
pub struct KeyCounters {
    /// The key's team id ("" without one).
    pub team: String,
    /// Requests.
    pub requests: AtomicU64,
    /// Cost in billionths of a USD.
    pub cost_nano_usd: AtomicU64,
}

/// Most virtual keys counted apart in `/metrics`.
const MAX_KEY_SERIES: usize = 10_000;

/// Upper bounds (ms) of the latency histogram buckets.
pub const LATENCY_BUCKETS_MS: [u64; 13] = [
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
];
/// Most label sets kept for the latency histogram.
const MAX_LATENCY_SERIES: usize = 1000;

/// A cumulative latency histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; 13],
    count: AtomicU64,
    sum_ms: AtomicU64,
}

impl Histogram {
    fn observe(&self, ms: u64) {
        for (i, le) in LATENCY_BUCKETS_MS.iter().enumerate() {
            if ms <= *le {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

fn label(v: &str) -> String {
    v.replace(['"', '\\', '\n'], "_")
}

impl Metrics {
    /// Records a finished request.
    pub fn observe_request(
        &self,
        gateway: &str,
        provider: &str,
        model: &str,
        duration_ms: u64,
        cached: bool,
        cost: Option<f64>,
    ) {
        if cached {
            self.cache_hits.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(c) = cost {
            self.cost_micro_usd
                .fetch_add((c * 1e6).round() as u64, Ordering::Relaxed);
        }
        let key = (gateway.to_string(), provider.to_string(), model.to_string());
        if let Some(h) = self.latency.get(&key) {
            h.observe(duration_ms);
            return;
        }
        if self.latency.len() < MAX_LATENCY_SERIES {
            self.latency.entry(key).or_default().observe(duration_ms);
        }
    }

    /// Counts a request made with a virtual key and its cost.
    pub fn observe_key(&self, key_id: &str, team: Option<&str>, cost: Option<f64>) {
        let add = |c: &KeyCounters| {
            c.requests.fetch_add(1, Ordering::Relaxed);
            if let Some(cost) = cost {
                c.cost_nano_usd
                    .fetch_add((cost * 1e9).round() as u64, Ordering::Relaxed);
            }
        };
        if let Some(c) = self.by_key.get(key_id) {
            return add(&c);
        }
        if self.by_key.len() < MAX_KEY_SERIES {
            let c = self
                .by_key
                .entry(key_id.to_string())
                .or_insert_with(|| KeyCounters {
                    team: team.unwrap_or("").to_string(),
                    ..KeyCounters::default()
                });
            add(&c);
        }
    }

    /// Records one filter hook call.
    pub fn observe_filter_call(&self, filter: &str, micros: u64) {
        if let Some(e) = self.filter_calls.get(filter) {
            e.0.fetch_add(1, Ordering::Relaxed);
            e.1.fetch_add(micros, Ordering::Relaxed);
            return;
        }
        let e = self.filter_calls.entry(filter.to_string()).or_default();
        e.0.fetch_add(1, Ordering::Relaxed);
        e.1.fetch_add(micros, Ordering::Relaxed);
    }

    /// Counts a response status.
    pub fn count_status(&self, status: u16) {
        let class = (status / 100).min(5) as usize;
        self.responses_by_class[class].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failed filter call.
    pub fn count_filter_failure(&self, filter: &str) {
        bump(&self.filter_failures, filter);
    }

    /// A filter's circuit opened.
    pub fn count_circuit_opened(&self, filter: &str) {
        bump(&self.circuit_opened, filter);
    }

    /// A successful answer without usage, or with usage but no price: its cost is unknown.
    pub fn count_unpriced(&self, provider: &str, model: Option<&str>, usage_known: bool) {
        if !usage_known {
            bump(&self.usage_missing, provider);
            return;
        }
        let key = (provider.to_string(), model.unwrap_or("").to_string());
        self.price_missing
            .entry(key)
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A request skipped a filter whose circuit is open.
    pub fn count_circuit_skipped(&self, filter: &str) {
        bump(&self.circuit_skipped, filter);
    }

    /// Counts an outbound HTTP call of `filter`.
    pub fn count_filter_http(&self, filter: &str, outcome: &'static str) {
        self.filter_http
            .entry((filter.to_string(), outcome))
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Adds to a filter's own counter.
    pub fn add_filter_counter(&self, filter: &str, name: &str, value: u64) {
        let key = (filter.to_string(), name.to_string());
        if let Some(c) = self.filter_counters.get(&key) {
            c.fetch_add(value, Ordering::Relaxed);
            return;
        }
        // Filters choose counter names: keep the set bounded.
        if self.filter_counters.len() >= 1000 {
            return;
        }
        self.filter_counters
            .entry((filter.to_string(), name.to_string()))
            .or_default()
            .fetch_add(value, Ordering::Relaxed);
    }

    /// Prometheus exposition text.
    pub fn render(&self) -> String {
        self.render_with(&[])
    }

    /// Prometheus text plus extra gauges/counters `(name, help-free value)`.
    pub fn render_with(&self, extra: &[(&str, u64)]) -> String {
        let mut out = String::new();
        for (name, value) in extra {
            let _ = writeln!(out, "{name} {value}");
        }
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(out, "# TYPE aigw_requests_total counter");
        let _ = writeln!(out, "aigw_requests_total {}", get(&self.requests));
        let _ = writeln!(out, "# TYPE aigw_responses_total counter");
        for class in 1..=5 {
            let _ = writeln!(
                out,
                "aigw_responses_total{{class=\"{class}xx\"}} {}",
                get(&self.responses_by_class[class])
            );
        }
        let _ = writeln!(out, "# TYPE aigw_upstream_attempts_total counter");
        let _ = writeln!(
            out,
            "aigw_upstream_attempts_total {}",
            get(&self.upstream_attempts)
        );
        let _ = writeln!(out, "# TYPE aigw_websocket_sessions gauge");
        let _ = writeln!(
            out,
            "aigw_websocket_sessions {}",
            get(&self.websocket_sessions)
        );
        let _ = writeln!(out, "# TYPE aigw_connections_refused_total counter");
        let _ = writeln!(
            out,
            "aigw_connections_refused_total {}",
            get(&self.connections_refused)
        );
        let _ = writeln!(out, "# TYPE aigw_upstream_errors_total counter");
        let _ = writeln!(
            out,
            "aigw_upstream_errors_total {}",
            get(&self.upstream_errors)
        );
        let _ = writeln!(out, "# TYPE aigw_local_responses_total counter");
        let _ = writeln!(
            out,
            "aigw_local_responses_total {}",
            get(&self.local_responses)
        );
        let _ = writeln!(out, "# TYPE aigw_tokens_total counter");
        let _ = writeln!(
            out,
            "aigw_tokens_total{{direction=\"in\"}} {}",
            get(&self.tokens_in)
        );
        let _ = writeln!(
            out,
            "aigw_tokens_total{{direction=\"out\"}} {}",
            get(&self.tokens_out)
        );
        let _ = writeln!(out, "# TYPE aigw_reloads_total counter");
        let _ = writeln!(out, "aigw_reloads_total {}", get(&self.reloads));
        let _ = writeln!(out, "# TYPE aigw_reload_failures_total counter");
        let _ = writeln!(
            out,
            "aigw_reload_failures_total {}",
            get(&self.reload_failures)
        );
        let _ = writeln!(out, "# TYPE aigw_cache_hits_total counter");
        let _ = writeln!(out, "aigw_cache_hits_total {}", get(&self.cache_hits));
        let _ = writeln!(out, "# TYPE aigw_cost_usd_total counter");
        let _ = writeln!(
            out,
            "aigw_cost_usd_total {:.6}",
            get(&self.cost_micro_usd) as f64 / 1e6
        );
        let _ = writeln!(out, "# TYPE aigw_key_requests_total counter");
        let _ = writeln!(out, "# TYPE aigw_key_cost_usd_total counter");
        for e in self.by_key.iter() {
            let labels = format!(
                "key=\"{}\",team=\"{}\"",
                label(e.key()),
                label(&e.value().team)
            );
            let _ = writeln!(
                out,
                "aigw_key_requests_total{{{labels}}} {}",
                get(&e.value().requests)
            );
            let _ = writeln!(
                out,
                "aigw_key_cost_usd_total{{{labels}}} {:.9}",
                get(&e.value().cost_nano_usd) as f64 / 1e9
            );
        }
        let _ = writeln!(out, "# TYPE aigw_request_duration_ms histogram");
        for e in self.latency.iter() {
            let (g, p, m) = e.key();
            let labels = format!(
                "gateway=\"{}\",provider=\"{}\",model=\"{}\"",
                label(g),
                label(p),
                label(m)
            );
            let h = e.value();
            for (i, le) in LATENCY_BUCKETS_MS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "aigw_request_duration_ms_bucket{{{labels},le=\"{le}\"}} {}",
                    get(&h.buckets[i])
                );
            }
            let _ = writeln!(
                out,
                "aigw_request_duration_ms_bucket{{{labels},le=\"+Inf\"}} {}",
                get(&h.count)
            );
            let _ = writeln!(
                out,
                "aigw_request_duration_ms_sum{{{labels}}} {}",
                get(&h.sum_ms)
            );
            let _ = writeln!(
                out,
                "aigw_request_duration_ms_count{{{labels}}} {}",
                get(&h.count)
            );
        }
        let _ = writeln!(out, "# TYPE aigw_filter_calls_total counter");
        for e in self.filter_calls.iter() {
            let _ = writeln!(
                out,
                "aigw_filter_calls_total{{filter=\"{}\"}} {}",
                label(e.key()),
                get(&e.value().0)
            );
            let _ = writeln!(
                out,
                "aigw_filter_call_microseconds_total{{filter=\"{}\"}} {}",
                label(e.key()),
                get(&e.value().1)
            );
        }
        for (name, map) in [
            ("aigw_filter_failures_total", &self.filter_failures),
            ("aigw_filter_circuit_opened_total", &self.circuit_opened),
            ("aigw_filter_circuit_skipped_total", &self.circuit_skipped),
        ] {
            let _ = writeln!(out, "# TYPE {name} counter");
            for e in map.iter() {
                let _ = writeln!(
                    out,
                    "{name}{{filter=\"{}\"}} {}",
                    label(e.key()),
                    get(e.value())
                );
            }
        }
        let _ = writeln!(out, "# TYPE aigw_usage_missing_total counter");
        for e in self.usage_missing.iter() {
            let _ = writeln!(
                out,
                "aigw_usage_missing_total{{provider=\"{}\"}} {}",
                label(e.key()),
                get(e.value())
            );
        }
        let _ = writeln!(out, "# TYPE aigw_price_missing_total counter");
        for e in self.price_missing.iter() {
            let (provider, model) = e.key();
            let _ = writeln!(
                out,
                "aigw_price_missing_total{{provider=\"{}\",model=\"{}\"}} {}",
                label(provider),
                label(model),
                get(e.value())
            );
        }
        let _ = writeln!(out, "# TYPE aigw_filter_http_requests_total counter");
        for e in self.filter_http.iter() {
            let (filter, outcome) = e.key();
            let _ = writeln!(
                out,
                "aigw_filter_http_requests_total{{filter=\"{}\",outcome=\"{outcome}\"}} {}",
                label(filter),
                get(e.value())
            );
        }
        let _ = writeln!(out, "# TYPE aigw_filter_counter_total counter");
        for e in self.filter_counters.iter() {
            let (filter, name) = e.key();
            let _ = writeln!(
                out,
                "aigw_filter_counter_total{{filter=\"{filter}\",name=\"{}\"}} {}",
                name.replace(['"', '\\', '\n'], "_"),
                get(e.value())
            );
        }
        out
    }
}

/// Sets up `tracing` output on stderr; `RUST_LOG` overrides the level.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, never into a file or a collector.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// Adds one to a per-filter counter, creating it on first use.
fn bump(map: &DashMap<String, AtomicU64>, filter: &str) {
    if let Some(c) = map.get(filter) {
        c.fetch_add(1, Ordering::Relaxed);
        return;
    }
    map.entry(filter.to_string())
        .or_default()
        .fetch_add(1, Ordering::Relaxed);
}
