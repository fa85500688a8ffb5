//! Typed access to the host's services: key-value store with expiry, rate-limit
//! counters, telemetry, the log store and the request context (log metadata,
//! provider routing). Compiled for `wasm32` these call the
//! WIT imports; compiled natively (unit tests) they use the thread-local
//! [`crate::testing::MockHost`]-backed store.

pub use crate::types::{Consumer, ConsumerPolicy, Level, SpendRefusal, Technique, Verdict};

/// Reads `key` from this filter's key-value namespace.
///
/// ```
/// aigw_plugin_sdk::host::kv_set("k", b"v", 1000);
/// assert_eq!(aigw_plugin_sdk::host::kv_get("k"), Some(b"v".to_vec()));
/// ```
pub fn kv_get(key: &str) -> Option<Vec<u8>> {
    imp::kv_get(key)
}

/// Stores `value` under `key` for `ttl_ms`; false when the store refused it.
///
/// ```
/// assert!(aigw_plugin_sdk::host::kv_set("k", b"v", 1000));
/// ```
pub fn kv_set(key: &str, value: &[u8], ttl_ms: u64) -> bool {
    imp::kv_set(key, value, ttl_ms)
}

/// Deletes `key`.
///
/// ```
/// aigw_plugin_sdk::host::kv_set("k", b"v", 1000);
/// aigw_plugin_sdk::host::kv_delete("k");
/// assert_eq!(aigw_plugin_sdk::host::kv_get("k"), None);
/// ```
pub fn kv_delete(key: &str) {
    imp::kv_delete(key)
}

/// Counts `cost` against `key` if that stays within `limit` per `period_ms`.
///
/// ```
/// use aigw_plugin_sdk::host::{check_limit, Technique};
/// assert!(check_limit("ip:1", 1, 1, 60_000, Technique::Fixed).allowed);
/// assert!(!check_limit("ip:1", 1, 1, 60_000, Technique::Fixed).allowed);
/// ```
pub fn check_limit(
    key: &str,
    cost: u64,
    limit: u64,
    period_ms: u64,
    technique: Technique,
) -> Verdict {
    imp::check_limit(key, cost, limit, period_ms, technique)
}

/// Counts `amount` against `key` without checking (token budgets).
///
/// ```
/// use aigw_plugin_sdk::host::{check_limit, debit, Technique};
/// debit("user:1", 100, 100, 60_000, Technique::Fixed);
/// assert!(!check_limit("user:1", 1, 100, 60_000, Technique::Fixed).allowed);
/// ```
pub fn debit(key: &str, amount: u64, limit: u64, period_ms: u64, technique: Technique) {
    imp::debit(key, amount, limit, period_ms, technique)
}

/// [`check_limit`] counted across every gateway running this filter (`check_limit` counts
/// per gateway): for limits that belong to a caller, such as a virtual key's requests per
/// minute, wherever it calls.
///
/// ```
/// use aigw_plugin_sdk::host::{check_limit_across_gateways, Technique};
/// assert!(check_limit_across_gateways("key:1", 1, 1, 60_000, Technique::Fixed).allowed);
/// assert!(!check_limit_across_gateways("key:1", 1, 1, 60_000, Technique::Fixed).allowed);
/// ```
pub fn check_limit_across_gateways(
    key: &str,
    cost: u64,
    limit: u64,
    period_ms: u64,
    technique: Technique,
) -> Verdict {
    imp::check_limit_across_gateways(key, cost, limit, period_ms, technique)
}

/// [`debit`] counted across every gateway running this filter.
///
/// ```
/// use aigw_plugin_sdk::host::{check_limit_across_gateways, debit_across_gateways, Technique};
/// debit_across_gateways("key:2", 10, 10, 60_000, Technique::Fixed);
/// assert!(!check_limit_across_gateways("key:2", 1, 10, 60_000, Technique::Fixed).allowed);
/// ```
pub fn debit_across_gateways(
    key: &str,
    amount: u64,
    limit: u64,
    period_ms: u64,
    technique: Technique,
) {
    imp::debit_across_gateways(key, amount, limit, period_ms, technique)
}

/// Writes a line to the host's log (tagged with the filter name).
///
/// ```
/// aigw_plugin_sdk::host::log(aigw_plugin_sdk::host::Level::Info, "hello");
/// ```
pub fn log(level: Level, message: &str) {
    imp::log(level, message)
}

/// Adds `value` to this filter's counter `name` (exported in `/metrics`).
///
/// ```
/// aigw_plugin_sdk::host::counter_add("blocked", 1);
/// ```
pub fn counter_add(name: &str, value: u64) {
    imp::counter_add(name, value)
}

/// Milliseconds since the Unix epoch.
///
/// ```
/// assert!(aigw_plugin_sdk::host::now_ms() > 0);
/// ```
pub fn now_ms() -> u64 {
    imp::now_ms()
}

/// Appends one entry to the request log store.
///
/// ```
/// aigw_plugin_sdk::host::append_log(&serde_json::json!({"id": "1"})).unwrap();
/// ```
pub fn append_log(entry: &serde_json::Value) -> Result<(), String> {
    imp::append_log(&entry.to_string())
}

/// Adds `key = value` to this request's log entry metadata. Every filter of the
/// request shares the same fields; the logging filter writes them into the
/// entry's `metadata`. Record counts and decisions here, never secrets.
///
/// ```
/// use aigw_plugin_sdk::{host, testing::MockHost};
/// MockHost::reset();
/// host::annotate("redacted_email", "2");
/// assert_eq!(host::annotations(), vec![("redacted_email".to_string(), "2".to_string())]);
/// ```
pub fn annotate(key: &str, value: &str) {
    imp::annotate(key, value)
}

/// The metadata fields added with [`annotate`] by every filter of this request.
///
/// ```
/// use aigw_plugin_sdk::{host, testing::MockHost};
/// MockHost::reset();
/// assert!(host::annotations().is_empty());
/// ```
pub fn annotations() -> Vec<(String, String)> {
    imp::annotations()
}

/// Keeps `value` under `key` in the host for the rest of this request, for a later hook of
/// this filter: how a [`stateless`](crate::FilterInfo::stateless) filter carries what it
/// learnt in one hook (a counter key, a header's override) to another, since its `self` may
/// serve other requests in between. Private to this filter and request. At most 32 keys,
/// keys up to 64 bytes, values up to 4096; `false` when refused.
///
/// ```
/// use aigw_plugin_sdk::{host, testing::MockHost};
/// MockHost::reset();
/// assert!(host::set_local("key", "gw|ip:10.0.0.1"));
/// assert_eq!(host::local("key").as_deref(), Some("gw|ip:10.0.0.1"));
/// assert_eq!(host::local("other"), None);
/// ```
pub fn set_local(key: &str, value: &str) -> bool {
    imp::set_local(key, value)
}

/// The value this filter kept under `key` with [`set_local`] earlier in this request.
pub fn local(key: &str) -> Option<String> {
    imp::local(key)
}

/// Sends the next upstream attempt to `provider` (a provider configured in the
/// gateway), and when `model` is given rewrites the JSON body's `model`.
/// From a request hook it chooses the first attempt's target; from
/// `on_response_headers`, followed by a retry answer, it chooses the fallback.
///
/// ```
/// use aigw_plugin_sdk::{host, testing::MockHost};
/// MockHost::reset();
/// host::route("groq", Some("llama-3.1-8b-instant")).unwrap();
/// assert_eq!(MockHost::with(|m| m.routes.clone()),
///     vec![("groq".to_string(), Some("llama-3.1-8b-instant".to_string()))]);
/// ```
pub fn route(provider: &str, model: Option<&str>) -> Result<(), String> {
    imp::route(provider, model)
}

/// Who is calling, when the request carried a virtual key (the host resolved it before any
/// filter ran).
///
/// ```
/// use aigw_plugin_sdk::{host, testing::MockHost};
/// MockHost::reset();
/// assert_eq!(host::consumer(), None);
/// ```
pub fn consumer() -> Option<Consumer> {
    imp::consumer()
}

/// Changes the head of the answer going to the client (its status, 200 to 599, and/or
/// headers) while the host still holds it: from
/// [`Filter::on_response_body`](crate::Filter::on_response_body) on a non-streamed answer the
/// host reads whole before sending (up to 1 MiB, with a known length). `Ok(false)` when the
/// head is already on its way (event streams, large or unsized bodies): then only the body can
/// change. An error names a bad status or header. The framing headers and `cf-aig-log-id`
/// stay the host's.
///
/// ```
/// use aigw_plugin_sdk::{host, testing::MockHost, HeaderEdits};
/// MockHost::reset();
/// assert_eq!(host::edit_response_head(Some(424), HeaderEdits::default()), Ok(false));
/// MockHost::with(|m| m.head_held = true);
/// let edits = HeaderEdits::default().set("x-verdict", "blocked");
/// assert_eq!(host::edit_response_head(Some(424), edits), Ok(true));
/// assert_eq!(MockHost::with(|m| m.response_status), Some(424));
/// assert!(host::edit_response_head(Some(7), HeaderEdits::default()).is_err());
/// ```
pub fn edit_response_head(status: Option<u16>, edits: crate::HeaderEdits) -> Result<bool, String> {
    if let Some(s) = status
        && !(200..=599).contains(&s)
    {
        return Err(format!("status {s} is not from 200 to 599"));
    }
    imp::edit_response_head(status, edits)
}

/// The `on_error` the filter's TOML table sets, `None` when it leaves it to the filter's
/// declared default: for a filter that handles some failures itself (a service it calls is
/// down) the way the host handles the others.
///
/// ```
/// use aigw_plugin_sdk::{host, testing::MockHost, OnError};
/// MockHost::reset();
/// assert_eq!(host::on_error_setting(), None);
/// MockHost::with(|m| m.on_error = Some(OnError::Open));
/// assert_eq!(host::on_error_setting(), Some(OnError::Open));
/// ```
pub fn on_error_setting() -> Option<crate::OnError> {
    imp::on_error_setting()
}

/// Reserves `usd` against `limit_usd` of `scope` in the current `period` (`day`, `month`,
/// `total`): the reservation's id, or why it does not fit. When it would fit once running
/// requests settle, the host waits for them up to `wait_ms`. Settle it with [`settle_spend`];
/// the host settles one left open when the request ends.
///
/// ```
/// use aigw_plugin_sdk::{host, testing::MockHost};
/// MockHost::reset();
/// let r = host::reserve_spend("key_1", 0.6, 1.0, "day", 0).unwrap();
/// assert!(host::reserve_spend("key_1", 0.6, 1.0, "day", 0).is_err());
/// host::settle_spend(r, 0.1);
/// assert!((host::spent("key_1", "day") - 0.1).abs() < 1e-9);
/// assert!(host::reserve_spend("key_1", 0.6, 1.0, "day", 0).is_ok());
/// ```
pub fn reserve_spend(
    scope: &str,
    usd: f64,
    limit_usd: f64,
    period: &str,
    wait_ms: u64,
) -> Result<u64, SpendRefusal> {
    imp::reserve_spend(scope, usd, limit_usd, period, wait_ms)
}

/// Ends a reservation, counting `usd` as spent (0 releases it).
pub fn settle_spend(reservation: u64, usd: f64) {
    imp::settle_spend(reservation, usd)
}

/// What `scope` spent (settled) in the current `period`, in USD.
pub fn spent(scope: &str, period: &str) -> f64 {
    imp::spent(scope, period)
}

/// The most a request to `model` at `provider` can cost with at most `input_tokens` in and
/// `output_tokens` out, at the catalog's prices; `None` when the model has no price.
///
/// ```
/// use aigw_plugin_sdk::{host, testing::MockHost};
/// MockHost::reset();
/// MockHost::with(|m| m.prices.insert(("openai".into(), "m".into()), (1.0, 2.0)));
/// assert_eq!(host::price_bound("openai", "m", 1_000_000, 1_000_000), Some(3.0));
/// assert_eq!(host::price_bound("openai", "other", 1, 1), None);
/// ```
pub fn price_bound(
    provider: &str,
    model: &str,
    input_tokens: u64,
    output_tokens: u64,
) -> Option<f64> {
    imp::price_bound(provider, model, input_tokens, output_tokens)
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::{Level, Technique, Verdict};
    use crate::bindings::services::{context, kv, limits, log_store, spend, telemetry};

    pub fn kv_get(key: &str) -> Option<Vec<u8>> {
        kv::get(key)
    }
    pub fn kv_set(key: &str, value: &[u8], ttl_ms: u64) -> bool {
        kv::set(key, value, ttl_ms)
    }
    pub fn kv_delete(key: &str) {
        kv::delete(key)
    }
    fn technique(t: Technique) -> limits::Technique {
        match t {
            Technique::Fixed => limits::Technique::Fixed,
            Technique::Sliding => limits::Technique::Sliding,
        }
    }
    pub fn check_limit(key: &str, cost: u64, limit: u64, period_ms: u64, t: Technique) -> Verdict {
        let v = limits::check(key, cost, limit, period_ms, technique(t));
        Verdict {
            allowed: v.allowed,
            remaining: v.remaining,
            retry_after_ms: v.retry_after_ms,
        }
    }
    pub fn debit(key: &str, amount: u64, limit: u64, period_ms: u64, t: Technique) {
        limits::debit(key, amount, limit, period_ms, technique(t))
    }
    pub fn check_limit_across_gateways(
        key: &str,
        cost: u64,
        limit: u64,
        period_ms: u64,
        t: Technique,
    ) -> Verdict {
        let v = limits::check_across_gateways(key, cost, limit, period_ms, technique(t));
        Verdict {
            allowed: v.allowed,
            remaining: v.remaining,
            retry_after_ms: v.retry_after_ms,
        }
    }
    pub fn debit_across_gateways(key: &str, amount: u64, limit: u64, period_ms: u64, t: Technique) {
        limits::debit_across_gateways(key, amount, limit, period_ms, technique(t))
    }
    pub fn log(level: Level, message: &str) {
        let level = match level {
            Level::Trace => telemetry::Level::Trace,
            Level::Debug => telemetry::Level::Debug,
            Level::Info => telemetry::Level::Info,
            Level::Warn => telemetry::Level::Warn,
            Level::Error => telemetry::Level::Error,
        };
        telemetry::log(level, message)
    }
    pub fn counter_add(name: &str, value: u64) {
        telemetry::counter_add(name, value)
    }
    pub fn now_ms() -> u64 {
        telemetry::now_ms()
    }
    pub fn append_log(entry: &str) -> Result<(), String> {
        log_store::append(entry)
    }
    pub fn annotate(key: &str, value: &str) {
        context::annotate(key, value)
    }
    pub fn set_local(key: &str, value: &str) -> bool {
        crate::bindings::v2_local::set(key, value)
    }
    pub fn local(key: &str) -> Option<String> {
        crate::bindings::v2_local::get(key)
    }
    pub fn annotations() -> Vec<(String, String)> {
        context::annotations()
    }
    pub fn route(provider: &str, model: Option<&str>) -> Result<(), String> {
        context::route(provider, model)
    }
    fn policy(p: context::ConsumerPolicy) -> crate::types::ConsumerPolicy {
        crate::types::ConsumerPolicy {
            models: p.models,
            providers: p.providers,
            budget_usd: p.budget_usd,
            budget_period: p.budget_period,
            requests_per_minute: p.requests_per_minute,
            tokens_per_minute: p.tokens_per_minute,
        }
    }
    pub fn consumer() -> Option<crate::types::Consumer> {
        context::consumer().map(|c| crate::types::Consumer {
            key_id: c.key_id,
            key_name: c.key_name,
            team: c.team,
            team_name: c.team_name,
            metadata: c.metadata,
            key_policy: policy(c.key_policy),
            team_policy: c.team_policy.map(policy),
        })
    }
    pub fn reserve_spend(
        scope: &str,
        usd: f64,
        limit_usd: f64,
        period: &str,
        wait_ms: u64,
    ) -> Result<u64, crate::types::SpendRefusal> {
        spend::reserve(scope, usd, limit_usd, period, wait_ms).map_err(|r| {
            crate::types::SpendRefusal {
                spent_usd: r.spent_usd,
                reserved_usd: r.reserved_usd,
                limit_usd: r.limit_usd,
                resets_at_ms: r.resets_at_ms,
            }
        })
    }
    pub fn settle_spend(reservation: u64, usd: f64) {
        spend::settle(reservation, usd)
    }
    pub fn spent(scope: &str, period: &str) -> f64 {
        spend::spent(scope, period)
    }
    pub fn price_bound(provider: &str, model: &str, input: u64, output: u64) -> Option<f64> {
        spend::price_bound(provider, model, input, output)
    }
    pub fn edit_response_head(
        status: Option<u16>,
        edits: crate::HeaderEdits,
    ) -> Result<bool, String> {
        context::edit_response_head(status, &crate::glue::edits(edits))
    }
    pub fn on_error_setting() -> Option<crate::OnError> {
        use crate::bindings::services::manifest;
        manifest::on_error_setting().map(|m| match m {
            manifest::FailureMode::Open => crate::OnError::Open,
            manifest::FailureMode::Closed => crate::OnError::Closed,
        })
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::{Level, Technique, Verdict};
    use crate::testing::with_mock;

    pub fn kv_get(key: &str) -> Option<Vec<u8>> {
        with_mock(|m| m.kv_get(key))
    }
    pub fn kv_set(key: &str, value: &[u8], ttl_ms: u64) -> bool {
        with_mock(|m| m.kv_set(key, value, ttl_ms))
    }
    pub fn kv_delete(key: &str) {
        with_mock(|m| m.kv_delete(key))
    }
    pub fn check_limit(key: &str, cost: u64, limit: u64, period_ms: u64, t: Technique) -> Verdict {
        with_mock(|m| m.check_limit(key, cost, limit, period_ms, t, true))
    }
    pub fn debit(key: &str, amount: u64, limit: u64, period_ms: u64, t: Technique) {
        with_mock(|m| {
            m.check_limit(key, amount, limit, period_ms, t, false);
        })
    }
    // The mock serves one gateway: across gateways is the same count.
    pub fn check_limit_across_gateways(
        key: &str,
        cost: u64,
        limit: u64,
        period_ms: u64,
        t: Technique,
    ) -> Verdict {
        check_limit(key, cost, limit, period_ms, t)
    }
    pub fn debit_across_gateways(key: &str, amount: u64, limit: u64, period_ms: u64, t: Technique) {
        debit(key, amount, limit, period_ms, t)
    }
    pub fn log(level: Level, message: &str) {
        with_mock(|m| m.logs.push((level, message.to_string())))
    }
    pub fn counter_add(name: &str, value: u64) {
        with_mock(|m| *m.counters.entry(name.to_string()).or_insert(0) += value)
    }
    pub fn now_ms() -> u64 {
        with_mock(|m| m.now_ms)
    }
    pub fn append_log(entry: &str) -> Result<(), String> {
        let value: serde_json::Value =
            serde_json::from_str(entry).map_err(|e| format!("log entry is not JSON: {e}"))?;
        with_mock(|m| m.log_entries.push(value));
        Ok(())
    }
    pub fn set_local(key: &str, value: &str) -> bool {
        if key.len() > 64 || value.len() > 4096 {
            return false;
        }
        with_mock(|m| {
            if !m.locals.contains_key(key) && m.locals.len() >= 32 {
                return false;
            }
            m.locals.insert(key.to_string(), value.to_string());
            true
        })
    }
    pub fn local(key: &str) -> Option<String> {
        with_mock(|m| m.locals.get(key).cloned())
    }
    pub fn annotate(key: &str, value: &str) {
        with_mock(|m| match m.annotations.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.to_string(),
            None => m.annotations.push((key.to_string(), value.to_string())),
        })
    }
    pub fn annotations() -> Vec<(String, String)> {
        with_mock(|m| m.annotations.clone())
    }
    pub fn route(provider: &str, model: Option<&str>) -> Result<(), String> {
        with_mock(|m| {
            if !m.providers.is_empty() && !m.providers.iter().any(|p| p == provider) {
                return Err(format!("unknown provider '{provider}'"));
            }
            m.routes
                .push((provider.to_string(), model.map(str::to_string)));
            Ok(())
        })
    }
    pub fn consumer() -> Option<crate::types::Consumer> {
        with_mock(|m| m.consumer.clone())
    }
    pub fn reserve_spend(
        scope: &str,
        usd: f64,
        limit_usd: f64,
        period: &str,
        _wait_ms: u64,
    ) -> Result<u64, crate::types::SpendRefusal> {
        with_mock(|m| {
            let key = (scope.to_string(), period.to_string());
            let (spent, reserved) = m.spend.get(&key).copied().unwrap_or((0.0, 0.0));
            if spent + reserved + usd > limit_usd + 1e-12 {
                return Err(crate::types::SpendRefusal {
                    spent_usd: spent,
                    reserved_usd: reserved,
                    limit_usd,
                    resets_at_ms: 0,
                });
            }
            m.spend.insert(key.clone(), (spent, reserved + usd));
            m.next_reservation += 1;
            m.reservations.insert(m.next_reservation, (key, usd));
            Ok(m.next_reservation)
        })
    }
    pub fn settle_spend(reservation: u64, usd: f64) {
        with_mock(|m| {
            if let Some((key, held)) = m.reservations.remove(&reservation) {
                let e = m.spend.entry(key).or_insert((0.0, 0.0));
                e.0 += usd;
                e.1 -= held;
            }
        })
    }
    pub fn spent(scope: &str, period: &str) -> f64 {
        with_mock(|m| {
            m.spend
                .get(&(scope.to_string(), period.to_string()))
                .map_or(0.0, |e| e.0)
        })
    }
    pub fn price_bound(provider: &str, model: &str, input: u64, output: u64) -> Option<f64> {
        with_mock(|m| {
            m.prices
                .get(&(provider.to_string(), model.to_string()))
                .map(|(i, o)| (input as f64 * i + output as f64 * o) / 1e6)
        })
    }
    pub fn edit_response_head(
        status: Option<u16>,
        edits: crate::HeaderEdits,
    ) -> Result<bool, String> {
        Ok(with_mock(|m| {
            if m.head_held {
                m.response_status = status.or(m.response_status);
                m.response_head_edits.push(edits);
            }
            m.head_held
        }))
    }
    pub fn on_error_setting() -> Option<crate::OnError> {
        with_mock(|m| m.on_error)
    }
}
