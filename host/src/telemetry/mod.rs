//! Process metrics (Prometheus text format) and tracing setup. Counters are
//! plain atomics; per-filter counters live in a map keyed by filter and name.

use dashmap::DashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters the host keeps whatever filters do.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Requests received on the gateway routes.
    pub requests: AtomicU64,
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
    /// Counters filters add through `telemetry.counter-add`, by (filter, name).
    pub filter_counters: DashMap<(String, String), AtomicU64>,
    /// Prompt tokens seen.
    pub tokens_in: AtomicU64,
    /// Completion tokens seen.
    pub tokens_out: AtomicU64,
    /// Reloads attempted.
    pub reloads: AtomicU64,
    /// Reloads rejected (the previous generation kept serving).
    pub reload_failures: AtomicU64,
}

impl Metrics {
    /// Counts a response status.
    pub fn count_status(&self, status: u16) {
        let class = (status / 100).min(5) as usize;
        self.responses_by_class[class].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failed filter call.
    pub fn count_filter_failure(&self, filter: &str) {
        if let Some(c) = self.filter_failures.get(filter) {
            c.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.filter_failures
            .entry(filter.to_string())
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
        let _ = writeln!(out, "# TYPE aigw_filter_failures_total counter");
        for e in self.filter_failures.iter() {
            let _ = writeln!(
                out,
                "aigw_filter_failures_total{{filter=\"{}\"}} {}",
                e.key(),
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
        .with_target(false)
        .try_init();
}
