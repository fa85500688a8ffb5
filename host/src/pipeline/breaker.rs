//! A circuit breaker per stage: after `threshold` failed requests in a row
//! (trap, deadline, memory cap, bad answer) the filter is not called for
//! `open_ms`; its `on_error` policy applies as if it had failed, without
//! paying for another trap. Then one request probes it (half-open): a
//! success closes the circuit, a failure opens it again.

use crate::store::now_ms;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// What the breaker says about a new call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Closed: call the filter.
    Yes,
    /// Half-open: this request is the probe.
    Probe,
    /// Open: do not call the filter.
    No,
}

/// Failure counting for one stage.
#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    open_ms: u64,
    failures: AtomicU32,
    /// When the open circuit lets a probe through (ms since the epoch); 0 = closed.
    open_until: AtomicU64,
    probing: AtomicBool,
    /// Failed requests since the stage was built.
    failures_total: AtomicU64,
    /// The latest failure, for `/api/plugins`.
    last_error: Mutex<Option<LastError>>,
}

/// A stage's latest failure.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LastError {
    /// When (ms since the epoch).
    pub at_ms: u64,
    /// The request it failed.
    pub request_id: String,
    /// What happened: the trap, deadline or panic message.
    pub message: String,
}

/// What `/api/plugins` shows of a stage's health.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Health {
    /// `closed` (calling the filter), `open` (not calling it) or `half-open` (a probe may call it).
    pub circuit: &'static str,
    /// Failed requests in a row.
    pub failures_in_a_row: u32,
    /// Failed requests since this pipeline was built.
    pub failures_total: u64,
    /// When an open circuit lets a probe through (ms since the epoch).
    pub open_until_ms: Option<u64>,
    /// The latest failure.
    pub last_error: Option<LastError>,
}

impl Breaker {
    /// A closed breaker; `threshold` 0 never opens.
    pub fn new(threshold: u32, open_ms: u64) -> Self {
        Breaker {
            threshold,
            open_ms,
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            failures_total: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    /// Keeps a failure's message for `/api/plugins` (counted by `failure`).
    pub fn record(&self, request_id: &str, message: &str) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(LastError {
                at_ms: now_ms(),
                request_id: request_id.to_string(),
                message: message.to_string(),
            });
        }
    }

    /// The stage's health now.
    pub fn health(&self) -> Health {
        let now = now_ms();
        let until = self.open_until.load(Ordering::Acquire);
        Health {
            circuit: match until {
                0 => "closed",
                u if now < u => "open",
                _ => "half-open",
            },
            failures_in_a_row: self.failures.load(Ordering::Acquire),
            failures_total: self.failures_total.load(Ordering::Acquire),
            open_until_ms: (until != 0).then_some(until),
            last_error: self.last_error.lock().ok().and_then(|l| l.clone()),
        }
    }

    /// Whether a request may call the filter.
    pub fn admit(&self) -> Admit {
        self.admit_at(now_ms())
    }

    fn admit_at(&self, now: u64) -> Admit {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return Admit::Yes;
        }
        if now < until {
            return Admit::No;
        }
        // One probe at a time.
        match self
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Admit::Probe,
            Err(_) => Admit::No,
        }
    }

    /// A request's calls to the filter all succeeded.
    pub fn success(&self) {
        self.failures.store(0, Ordering::Release);
        if self.open_until.swap(0, Ordering::AcqRel) != 0 {
            tracing::info!("filter circuit closed after a successful probe");
        }
        self.probing.store(false, Ordering::Release);
    }

    /// The probe ended without a verdict (its request was abandoned mid-call, or no instance
    /// could be started to call the filter): the next request may probe.
    pub fn abandon(&self) {
        self.probing.store(false, Ordering::Release);
    }

    /// A call failed. True when this failure opened the circuit.
    pub fn failure(&self) -> bool {
        self.failure_at(now_ms())
    }

    fn failure_at(&self, now: u64) -> bool {
        self.failures_total.fetch_add(1, Ordering::AcqRel);
        // Counted also without a threshold: `/api/plugins` shows the run.
        let n = self
            .failures
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1);
        if self.threshold == 0 {
            return false;
        }
        let was_probe = self.probing.swap(false, Ordering::AcqRel);
        if was_probe || n >= self.threshold {
            let prev = self
                .open_until
                .swap(now.saturating_add(self.open_ms).max(1), Ordering::AcqRel);
            return prev == 0 || was_probe;
        }
        false
    }

    /// Whether the circuit is open now (for /metrics).
    pub fn is_open(&self) -> bool {
        self.open_until.load(Ordering::Acquire) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_abandoned_probe_lets_the_next_request_probe() {
        let b = Breaker::new(1, 1000);
        assert!(b.failure_at(0));
        assert_eq!(b.admit_at(1000), Admit::Probe);
        assert_eq!(b.admit_at(1000), Admit::No);
        b.abandon();
        assert_eq!(b.admit_at(1000), Admit::Probe);
        assert!(b.is_open(), "still half-open until a probe gives a verdict");
    }

    #[test]
    fn opens_after_threshold_probes_and_closes() {
        let b = Breaker::new(3, 1000);
        assert_eq!(b.admit_at(0), Admit::Yes);
        assert!(!b.failure_at(0));
        assert!(!b.failure_at(0));
        assert!(b.failure_at(10), "third failure in a row opens");
        assert_eq!(b.admit_at(500), Admit::No);
        assert_eq!(b.admit_at(1010), Admit::Probe);
        assert_eq!(b.admit_at(1010), Admit::No, "one probe at a time");
        assert!(b.failure_at(1020), "a failed probe opens again");
        assert_eq!(b.admit_at(1500), Admit::No);
        assert_eq!(b.admit_at(2020), Admit::Probe);
        b.success();
        assert!(!b.is_open());
        assert_eq!(b.admit_at(2030), Admit::Yes);
        assert!(!b.failure_at(2030), "the count restarted");
        b.record("req-1", "panicked: boom");
        let h = b.health();
        assert_eq!(h.failures_total, 5);
        assert_eq!(h.failures_in_a_row, 1);
        assert_eq!(h.circuit, "closed");
        assert_eq!(
            h.last_error.map(|e| e.message).as_deref(),
            Some("panicked: boom")
        );
    }

    #[test]
    fn a_success_resets_the_run_and_zero_never_opens() {
        let b = Breaker::new(2, 1000);
        assert!(!b.failure_at(0));
        b.success();
        assert!(!b.failure_at(0));
        assert_eq!(b.admit_at(0), Admit::Yes);
        let never = Breaker::new(0, 1000);
        for _ in 0..100 {
            assert!(!never.failure_at(0));
        }
        assert_eq!(never.admit_at(0), Admit::Yes);
        assert_eq!(
            never.health().failures_in_a_row,
            100,
            "shown even when it never opens"
        );
    }
}
