//! Unit-testing filters with plain `cargo test`: [`run`] plays one request through a
//! filter the way the host does, [`check_hooks`] fails on hooks the host would never call,
//! and (feature `testing`) [`MockHost`] stands in for the host's imports: key-value store,
//! limit counters, logs, counters, a settable clock and the captured log entries. One mock
//! per thread.
//!
//! ```
//! use aigw_plugin_sdk::testing::MockHost;
//! MockHost::reset();
//! aigw_plugin_sdk::host::kv_set("a", b"1", 10);
//! MockHost::advance_ms(11);
//! assert_eq!(aigw_plugin_sdk::host::kv_get("a"), None);
//! ```
#![cfg_attr(not(feature = "testing"), allow(dead_code, unreachable_pub))]

pub use crate::harness::{Exchange, Played, check_hooks, run};
use crate::types::{Level, Technique, Verdict};
use std::cell::RefCell;
use std::collections::HashMap;

/// The state of the mock host for the current thread.
#[derive(Debug)]
pub struct MockHost {
    /// Key-value entries: value and expiry (ms).
    pub kv: HashMap<String, (Vec<u8>, u64)>,
    /// Limit counters by `"{period_ms}:{key}"`: window start (ms) and count. As in the
    /// host, the limit is not part of the key: changing it keeps the count.
    pub counters_by_key: HashMap<String, (u64, u64)>,
    /// Lines written with `host::log`.
    pub logs: Vec<(Level, String)>,
    /// Counters added with `host::counter_add`.
    pub counters: HashMap<String, u64>,
    /// Entries appended to the log store.
    pub log_entries: Vec<serde_json::Value>,
    /// The clock returned by `host::now_ms`.
    pub now_ms: u64,
    /// Metadata fields added with `host::annotate`.
    pub annotations: Vec<(String, String)>,
    /// Every `host::route` call: provider and model.
    pub routes: Vec<(String, Option<String>)>,
    /// Providers `host::route` accepts; empty accepts any.
    pub providers: Vec<String>,
    /// What `host::consumer` returns.
    pub consumer: Option<crate::types::Consumer>,
    /// Spend ledger by (scope, period): settled and reserved USD.
    pub spend: HashMap<(String, String), (f64, f64)>,
    /// Open reservations: their ledger and amount.
    pub reservations: HashMap<u64, ((String, String), f64)>,
    /// The last reservation id given.
    pub next_reservation: u64,
    /// Prices by (provider, model): USD per million input and output tokens.
    pub prices: HashMap<(String, String), (f64, f64)>,
    /// What [`crate::http::fetch`] answers, by exact URL (others fail).
    pub http: HashMap<String, Result<crate::http::OutboundResponse, String>>,
    /// Every request [`crate::http::fetch`] was given.
    pub http_requests: Vec<crate::http::OutboundRequest>,
    /// Whether the answer's head is still held ([`crate::host::edit_response_head`] works).
    pub head_held: bool,
    /// The status set with [`crate::host::edit_response_head`].
    pub response_status: Option<u16>,
    /// The header edits made with [`crate::host::edit_response_head`].
    pub response_head_edits: Vec<crate::HeaderEdits>,
    /// What [`crate::host::on_error_setting`] returns.
    pub on_error: Option<crate::OnError>,
    /// Values kept with [`crate::host::set_local`] for the current request
    /// ([`crate::testing::run`] starts each request with none).
    pub locals: HashMap<String, String>,
}

impl Default for MockHost {
    fn default() -> Self {
        MockHost {
            kv: HashMap::new(),
            counters_by_key: HashMap::new(),
            logs: Vec::new(),
            counters: HashMap::new(),
            log_entries: Vec::new(),
            now_ms: 1_700_000_000_000,
            annotations: Vec::new(),
            locals: HashMap::new(),
            routes: Vec::new(),
            providers: Vec::new(),
            consumer: None,
            spend: HashMap::new(),
            reservations: HashMap::new(),
            next_reservation: 0,
            prices: HashMap::new(),
            http: HashMap::new(),
            http_requests: Vec::new(),
            head_held: false,
            response_status: None,
            response_head_edits: Vec::new(),
            on_error: None,
        }
    }
}

thread_local! {
    static MOCK: RefCell<MockHost> = RefCell::new(MockHost::default());
}

pub(crate) fn with_mock<R>(f: impl FnOnce(&mut MockHost) -> R) -> R {
    MOCK.with(|m| f(&mut m.borrow_mut()))
}

impl MockHost {
    /// Clears every store of this thread's mock.
    pub fn reset() {
        with_mock(|m| *m = MockHost::default());
    }

    /// Moves the mock clock forward.
    pub fn advance_ms(ms: u64) {
        with_mock(|m| m.now_ms += ms);
    }

    /// Runs `f` with the mock, for inspection.
    ///
    /// ```
    /// use aigw_plugin_sdk::testing::MockHost;
    /// MockHost::reset();
    /// aigw_plugin_sdk::host::counter_add("hits", 2);
    /// assert_eq!(MockHost::with(|m| m.counters["hits"]), 2);
    /// ```
    pub fn with<R>(f: impl FnOnce(&mut MockHost) -> R) -> R {
        with_mock(f)
    }

    pub(crate) fn kv_get(&mut self, key: &str) -> Option<Vec<u8>> {
        let now = self.now_ms;
        match self.kv.get(key) {
            Some((v, exp)) if *exp > now => Some(v.clone()),
            _ => None,
        }
    }

    pub(crate) fn kv_set(&mut self, key: &str, value: &[u8], ttl_ms: u64) -> bool {
        let exp = self.now_ms.saturating_add(ttl_ms);
        self.kv.insert(key.to_string(), (value.to_vec(), exp));
        true
    }

    pub(crate) fn kv_delete(&mut self, key: &str) {
        self.kv.remove(key);
    }

    /// A fixed window for both techniques: simple and deterministic for tests.
    ///
    /// ```
    /// use aigw_plugin_sdk::{host::{check_limit, Technique}, testing::MockHost};
    /// MockHost::reset();
    /// assert!(check_limit("ip", 1, 1, 60_000, Technique::Fixed).allowed);
    /// assert!(!check_limit("ip", 1, 1, 60_000, Technique::Fixed).allowed);
    /// // Raising the limit keeps the count (as the host does): one more fits, not two.
    /// assert!(check_limit("ip", 1, 2, 60_000, Technique::Fixed).allowed);
    /// assert!(!check_limit("ip", 1, 2, 60_000, Technique::Fixed).allowed);
    /// ```
    pub(crate) fn check_limit(
        &mut self,
        key: &str,
        cost: u64,
        limit: u64,
        period_ms: u64,
        _technique: Technique,
        enforce: bool,
    ) -> Verdict {
        let now = self.now_ms;
        let period = period_ms.max(1);
        let start = now - now % period;
        let entry = self
            .counters_by_key
            .entry(format!("{period}:{key}"))
            .or_insert((start, 0));
        if entry.0 != start {
            *entry = (start, 0);
        }
        if enforce && entry.1 + cost > limit {
            return Verdict {
                allowed: false,
                remaining: limit.saturating_sub(entry.1),
                retry_after_ms: start + period - now,
            };
        }
        entry.1 += cost;
        Verdict {
            allowed: true,
            remaining: limit.saturating_sub(entry.1),
            retry_after_ms: 0,
        }
    }
}
