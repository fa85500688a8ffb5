//! What filters can import: one `HostState` per store (per filter instance),
//! holding the filter's name, its memory limits, an empty WASI context, and a
//! handle to the shared `Services`. Each WIT import interface is implemented
//! here on `HostState`.

use super::bindings::aigw::filter::{context, kv, limits, log_store, manifest, telemetry, types};
use crate::store::kv::KvStore;
use crate::store::limits::{Limiter, Technique};
use crate::store::logs::LogStore;
use crate::store::now_ms;
use crate::store::port::{KvBackend, LimitsBackend, StoreFuture};
use crate::store::redis::OnError;
use crate::telemetry::Metrics;
use std::sync::{Arc, Mutex};
use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// State shared by every filter instance.
#[derive(Debug)]
pub struct Services {
    /// The in-memory key-value store (snapshots, sweeps, metrics); the `kv` port when no
    /// shared store is configured.
    pub kv: Arc<KvStore>,
    /// The in-memory rate-limit counters; the `limits` port when no shared store is configured.
    pub limiter: Arc<Limiter>,
    /// What the `kv` import calls: memory or the shared store.
    pub kv_port: Arc<dyn KvBackend>,
    /// What the `limits` import calls: memory or the shared store.
    pub limits_port: Arc<dyn LimitsBackend>,
    /// Request log store (absent in `aigw check`).
    pub logs: Option<LogStore>,
    /// Metrics.
    pub metrics: Metrics,
    /// The shared store replacing `kv` and `limiter` (`[store] backend = "redis"`).
    pub redis: Option<Arc<crate::store::redis::RedisStore>>,
    /// OpenTelemetry span export (`[telemetry] otlp_endpoint`).
    pub otlp: Option<crate::telemetry::otlp::OtlpExporter>,
    /// Dollar budgets (the `spend` import).
    pub spend: crate::store::spend::SpendLedger,
    /// The connection pool of filters' outbound HTTP (the `http-client` import).
    pub http: crate::http::upstream::UpstreamClient,
    /// Set once the gateway is shutting down: open WebSocket sessions close.
    pub closing: tokio::sync::watch::Sender<bool>,
}

mod http;
mod spend;

/// Most metadata fields one request's filters may add.
const MAX_ANNOTATIONS: usize = 32;
/// Longest annotation key and value, in bytes.
const MAX_ANNOTATION_KEY: usize = 64;
const MAX_ANNOTATION_VALUE: usize = 1024;

/// A provider (and model) a filter chose for the next upstream attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteChoice {
    /// A provider configured in the gateway.
    pub provider: String,
    /// Replaces the JSON body's `model` when set.
    pub model: Option<String>,
}

/// What the filters of one request share: log metadata and a routing choice.
#[derive(Debug)]
pub struct RequestContext {
    /// Fields added with `context.annotate`, in order.
    pub annotations: Vec<(String, String)>,
    /// The latest `context.route` call not yet acted on.
    pub route: Option<RouteChoice>,
    /// Providers a route may name.
    providers: Arc<crate::config::Config>,
    /// The request's id, on every line a filter logs.
    pub request_id: Arc<str>,
    /// The gateway serving it (namespaces limit counters).
    pub gateway: Arc<str>,
    /// The host's accounting of the finished request (set before the `done` hooks), added to
    /// the log entry a filter appends for it.
    pub accounting: Option<Accounting>,
    /// Who is calling, when a virtual key said so.
    pub consumer: Option<Arc<ConsumerInfo>>,
    /// Spend reservations this request's filters took and have not settled.
    pub reservations: Vec<u64>,
    /// The answer's head is held while the host reads a non-streamed body whole: a body
    /// hook may still change its status.
    pub head_held: bool,
    /// The changes body hooks made with `context.edit-response-head`: the status, and header
    /// edits in the order made.
    pub head_edits: Option<HeadEdits>,
    /// What each filter keeps for the rest of the request (`request-local`, 0.2.0), by
    /// filter name and key.
    pub locals: std::collections::HashMap<(Arc<str>, String), String>,
}

/// Most header edits body hooks may make to one held answer head, all calls together.
const MAX_HEAD_EDITS: usize = 64;

/// What body hooks changed in a held answer head.
#[derive(Debug, Default)]
pub struct HeadEdits {
    /// The new status.
    pub status: Option<u16>,
    /// Header edits, in the order made.
    pub edits: Vec<types::HeaderEdits>,
}

/// What a virtual key or its team allows, as filters see it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PolicyInfo {
    /// Model globs.
    pub models: Option<Vec<String>>,
    /// Providers.
    pub providers: Option<Vec<String>>,
    /// Dollar budget.
    pub budget_usd: Option<f64>,
    /// `day`, `month` or `total` ("" without a budget).
    pub budget_period: String,
    /// Requests per minute.
    pub requests_per_minute: Option<u64>,
    /// Tokens per minute.
    pub tokens_per_minute: Option<u64>,
}

impl PolicyInfo {
    /// Whether it limits anything.
    pub fn limits_anything(&self) -> bool {
        self.models.is_some()
            || self.providers.is_some()
            || self.budget_usd.is_some()
            || self.requests_per_minute.is_some()
            || self.tokens_per_minute.is_some()
    }

    fn wit(&self) -> context::ConsumerPolicy {
        context::ConsumerPolicy {
            models: self.models.clone(),
            providers: self.providers.clone(),
            budget_usd: self.budget_usd,
            budget_period: self.budget_period.clone(),
            requests_per_minute: self.requests_per_minute,
            tokens_per_minute: self.tokens_per_minute,
        }
    }
}

/// The consumer a virtual key identified, as filters and log entries see it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConsumerInfo {
    /// `key_…`.
    pub key_id: String,
    /// The key's name.
    pub key_name: String,
    /// Its team's id.
    pub team: Option<String>,
    /// Its team's name.
    pub team_name: Option<String>,
    /// The key's metadata, values as text.
    pub metadata: Vec<(String, String)>,
    /// What the key allows.
    pub key_policy: PolicyInfo,
    /// What its team allows.
    pub team_policy: Option<PolicyInfo>,
}

impl ConsumerInfo {
    /// Adds `key_id`, `key_name`, `team`, `team_name` and `key_metadata` to a log entry.
    pub fn add_to(&self, entry: &mut serde_json::Map<String, serde_json::Value>) {
        use serde_json::Value;
        entry.insert("key_id".into(), Value::String(self.key_id.clone()));
        entry.insert("key_name".into(), Value::String(self.key_name.clone()));
        entry.insert(
            "team".into(),
            self.team.clone().map_or(Value::Null, Value::String),
        );
        entry.insert(
            "team_name".into(),
            self.team_name.clone().map_or(Value::Null, Value::String),
        );
        let meta: serde_json::Map<String, Value> = self
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        entry.insert("key_metadata".into(), Value::Object(meta));
    }
}

/// What the host knows of a finished request's billing, kept in its log entry so its cost can
/// be recomputed when prices change (`aigw logs recost`).
#[derive(Debug, Clone, PartialEq)]
pub struct Accounting {
    /// Every token kind the provider reported.
    pub usage: crate::providers::usage::Usage,
    /// The price catalog version that priced the request; `None` when it was not priced.
    pub price_catalog: Option<String>,
}

impl Accounting {
    /// Adds `usage` and `price_catalog` to a log entry, keeping any the filter set itself.
    pub fn add_to(&self, entry: &mut serde_json::Map<String, serde_json::Value>) {
        let u = &self.usage;
        entry.entry("usage").or_insert_with(|| {
            serde_json::json!({
                "input": u.tokens_in,
                "output": u.tokens_out,
                "cached": u.tokens_cached,
                "cache_write": u.tokens_cache_write,
                "image_input": u.tokens_image_in,
                "audio": u.tokens_audio,
                "reasoning": u.tokens_reasoning,
            })
        });
        entry
            .entry("price_catalog")
            .or_insert_with(|| match &self.price_catalog {
                Some(v) => serde_json::Value::String(v.clone()),
                None => serde_json::Value::Null,
            });
    }
}

impl RequestContext {
    /// A context for one request served under `config`.
    pub fn new(
        providers: Arc<crate::config::Config>,
        request_id: &str,
        gateway: &str,
    ) -> Arc<Mutex<Self>> {
        Arc::new(Mutex::new(RequestContext {
            annotations: Vec::new(),
            route: None,
            providers,
            request_id: request_id.into(),
            gateway: gateway.into(),
            accounting: None,
            consumer: None,
            reservations: Vec::new(),
            head_held: false,
            head_edits: None,
            locals: std::collections::HashMap::new(),
        }))
    }

    /// Takes the pending route choice, if any.
    pub fn take_route(ctx: &Mutex<Self>) -> Option<RouteChoice> {
        lock(ctx).route.take()
    }

    /// The annotations added so far.
    pub fn annotations(ctx: &Mutex<Self>) -> Vec<(String, String)> {
        lock(ctx).annotations.clone()
    }

    /// Records who is calling.
    pub fn set_consumer(ctx: &Mutex<Self>, consumer: Arc<ConsumerInfo>) {
        lock(ctx).consumer = Some(consumer);
    }

    /// Who is calling, when a virtual key said so.
    pub fn consumer(ctx: &Mutex<Self>) -> Option<Arc<ConsumerInfo>> {
        lock(ctx).consumer.clone()
    }

    /// Whether a filter holds budget reservations for this request.
    pub fn holds_spend(ctx: &Mutex<Self>) -> bool {
        !lock(ctx).reservations.is_empty()
    }

    /// The spend reservations still open, taken from the context.
    pub fn take_reservations(ctx: &Mutex<Self>) -> Vec<u64> {
        std::mem::take(&mut lock(ctx).reservations)
    }

    /// Marks the answer's head as held (body hooks may change it) or sent; when released,
    /// the changes body hooks made, if any.
    pub fn hold_head(ctx: &Mutex<Self>, held: bool) -> Option<HeadEdits> {
        let mut ctx = lock(ctx);
        ctx.head_held = held;
        if held { None } else { ctx.head_edits.take() }
    }

    /// Adds (or replaces) an annotation of the host's own, within the same bounds as a filter's.
    pub fn annotate(ctx: &Mutex<Self>, key: &str, value: String) {
        let mut ctx = lock(ctx);
        let n = ctx.annotations.len();
        match ctx.annotations.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None if n < MAX_ANNOTATIONS => ctx.annotations.push((key.to_string(), value)),
            None => {}
        }
    }

    /// Records the finished request's accounting.
    pub fn set_accounting(ctx: &Mutex<Self>, accounting: Accounting) {
        lock(ctx).accounting = Some(accounting);
    }
}

/// Locks a request context; a filter call that panicked while holding it
/// cannot leave it half-written, so a poisoned lock is used as is.
fn lock(ctx: &Mutex<RequestContext>) -> std::sync::MutexGuard<'_, RequestContext> {
    ctx.lock().unwrap_or_else(|e| e.into_inner())
}

/// The data of one filter instance's store.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// Memory limits applied by the store's limiter.
    pub limits: StoreLimits,
    /// The filter's name (namespaces kv and limit keys, tags logs).
    pub filter: Arc<str>,
    services: Arc<Services>,
    /// The request this instance serves (none while pooled).
    pub request: Option<Arc<Mutex<RequestContext>>>,
    /// Milliseconds the current call waited on the shared store; added to its
    /// deadline instead of counting against the filter.
    pub host_wait_ms: u64,
    /// Thread CPU time at the last deadline check of the current call.
    pub cpu_baseline: Option<std::time::Duration>,
    /// CPU time the current call has been charged so far (kept exact: a filter alternating
    /// sub-millisecond work with host waits must add up to its deadline).
    pub cpu_used: std::time::Duration,
    /// What the filter's panic hook reported during the current call (its message and
    /// location), taken by the call's error.
    pub panic_message: Option<String>,
    /// The `on_error` default the filter declared in `describe`.
    pub declared_on_error: Option<crate::config::OnError>,
    /// The `on_error` its current table sets, if any.
    pub on_error_setting: Option<crate::config::OnError>,
    /// The outbound HTTP its current table grants (none until configured).
    pub http: Arc<crate::config::HttpGrant>,
    /// The secrets of its current table, masked in what the filter says (errors, panics,
    /// log lines).
    pub secrets: Arc<Vec<crate::http::secret::Secret>>,
    /// Milliseconds the current call has waited on outbound HTTP (bounded by the grant's
    /// `http_timeout_ms` in all).
    pub http_wait_ms: u64,
}

impl HostState {
    /// State for a new instance of `filter`.
    pub fn new(filter: Arc<str>, services: Arc<Services>, max_memory_bytes: usize) -> Self {
        HostState {
            // No files, environment, arguments or network: filters talk to the
            // world only through the aigw imports.
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limits: wasmtime::StoreLimitsBuilder::new()
                .memory_size(max_memory_bytes)
                .instances(64)
                .tables(64)
                .memories(16)
                .build(),
            filter,
            services,
            request: None,
            host_wait_ms: 0,
            cpu_baseline: None,
            cpu_used: std::time::Duration::ZERO,
            panic_message: None,
            declared_on_error: None,
            on_error_setting: None,
            http: Arc::default(),
            secrets: Arc::default(),
            http_wait_ms: 0,
        }
    }

    /// A `request-local` value of this filter for its current request.
    pub(super) fn local(&self, key: &str) -> Option<String> {
        let ctx = self.request.as_ref()?;
        lock(ctx)
            .locals
            .get(&(self.filter.clone(), key.to_string()))
            .cloned()
    }

    /// Keeps a `request-local` value; false over the limits or outside a request.
    pub(super) fn set_local(&self, key: String, value: String) -> bool {
        const MAX_KEYS: usize = 32;
        let Some(ctx) = self.request.as_ref() else {
            return false;
        };
        if key.len() > 64 || value.len() > 4096 {
            return false;
        }
        let mut ctx = lock(ctx);
        let id = (self.filter.clone(), key);
        if !ctx.locals.contains_key(&id)
            && ctx.locals.keys().filter(|(f, _)| *f == self.filter).count() >= MAX_KEYS
        {
            return false;
        }
        ctx.locals.insert(id, value);
        true
    }

    /// The resources lent to the current call (0.2.0's header sets and bodies).
    pub(super) fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    /// Before the host waits on the network for the filter: charges the CPU the call used
    /// since the deadline's last check, so a wait can move the deadline but never erase
    /// CPU already spent (a filter alternating short waits and busy work still ends).
    pub(crate) fn begin_wait(&mut self) {
        if let Some(base) = self.cpu_baseline
            && let Ok(now) = cpu_time::ThreadTime::try_now()
        {
            let used = now.as_duration().saturating_sub(base);
            self.cpu_used = self.cpu_used.saturating_add(used);
            self.cpu_baseline = Some(now.as_duration());
        }
    }

    /// After such a wait: its length moves the call's deadline, and CPU is counted again
    /// from here (the fiber may now run on another thread, with its own CPU clock).
    pub(crate) fn end_wait(&mut self, started: std::time::Instant) {
        self.host_wait_ms = self
            .host_wait_ms
            .saturating_add(started.elapsed().as_millis() as u64 + 1);
        if self.cpu_baseline.is_some() {
            self.cpu_baseline = cpu_time::ThreadTime::try_now()
                .ok()
                .map(|t| t.as_duration());
        }
    }

    /// Awaits a store call; when the store is remote, its wait moves the call's deadline
    /// instead of counting against the filter.
    async fn store_call<T>(&mut self, remote: bool, call: StoreFuture<'_, T>) -> T {
        if !remote {
            return call.await;
        }
        self.begin_wait();
        let started = std::time::Instant::now();
        let v = call.await;
        self.end_wait(started);
        v
    }

    fn key(&self, key: &str) -> String {
        let mut k = String::with_capacity(self.filter.len() + 1 + key.len());
        k.push_str(&self.filter);
        k.push('\u{1f}');
        k.push_str(key);
        k
    }

    /// The id of the request this instance serves ("" while pooled).
    fn request_id(&self) -> Arc<str> {
        self.request
            .as_ref()
            .map(|ctx| lock(ctx).request_id.clone())
            .unwrap_or_else(|| "".into())
    }

    /// A limit counter's key: per filter and, unless `across_gateways`, per gateway, so two
    /// gateways running the same filter never share a count. The limit itself is not part
    /// of it: changing a limit keeps the count.
    fn limit_key(&self, key: &str, across_gateways: bool) -> String {
        // The gateway part is empty across gateways; a gateway name never is.
        let gateway = match &self.request {
            Some(ctx) if !across_gateways => lock(ctx).gateway.clone(),
            _ => "".into(),
        };
        let mut k = String::with_capacity(self.filter.len() + gateway.len() + 2 + key.len());
        k.push_str(&self.filter);
        k.push('\u{1f}');
        k.push_str(&gateway);
        k.push('\u{1f}');
        k.push_str(key);
        k
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}

/// The error that fails a filter's kv call under `kv_on_error = "closed"`.
fn store_down() -> wasmtime::Error {
    wasmtime::Error::msg("shared store (Redis) unavailable and store.kv_on_error = \"closed\"")
}

impl kv::Host for HostState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        let key = self.key(&key);
        let kv = self.services.kv_port.clone();
        match self.store_call(kv.remote(), kv.get(&key)).await {
            Ok(v) => Ok(v),
            Err(_) if kv.on_error() == OnError::Closed => Err(store_down()),
            Err(_) => Ok(None),
        }
    }

    async fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: u64) -> wasmtime::Result<bool> {
        let key = self.key(&key);
        let kv = self.services.kv_port.clone();
        match self
            .store_call(kv.remote(), kv.set(&key, &value, ttl_ms))
            .await
        {
            Ok(v) => Ok(v),
            Err(_) if kv.on_error() == OnError::Closed => Err(store_down()),
            Err(_) => Ok(false),
        }
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        let key = self.key(&key);
        let kv = self.services.kv_port.clone();
        match self.store_call(kv.remote(), kv.delete(&key)).await {
            Err(_) if kv.on_error() == OnError::Closed => Err(store_down()),
            _ => Ok(()),
        }
    }
}

fn technique(t: limits::Technique) -> Technique {
    match t {
        limits::Technique::Fixed => Technique::Fixed,
        limits::Technique::Sliding => Technique::Sliding,
    }
}

impl limits::Host for HostState {
    async fn check(
        &mut self,
        key: String,
        cost: u64,
        limit: u64,
        period_ms: u64,
        t: limits::Technique,
    ) -> limits::Verdict {
        self.count(key, cost, limit, period_ms, t, true, false)
            .await
    }

    async fn debit(
        &mut self,
        key: String,
        amount: u64,
        limit: u64,
        period_ms: u64,
        t: limits::Technique,
    ) {
        self.count(key, amount, limit, period_ms, t, false, false)
            .await;
    }

    async fn check_across_gateways(
        &mut self,
        key: String,
        cost: u64,
        limit: u64,
        period_ms: u64,
        t: limits::Technique,
    ) -> limits::Verdict {
        self.count(key, cost, limit, period_ms, t, true, true).await
    }

    async fn debit_across_gateways(
        &mut self,
        key: String,
        amount: u64,
        limit: u64,
        period_ms: u64,
        t: limits::Technique,
    ) {
        self.count(key, amount, limit, period_ms, t, false, true)
            .await;
    }
}

impl HostState {
    /// Counts against a limit counter (`enforce`: refuse when over; otherwise a debit).
    #[allow(clippy::too_many_arguments)]
    async fn count(
        &mut self,
        key: String,
        cost: u64,
        limit: u64,
        period_ms: u64,
        t: limits::Technique,
        enforce: bool,
        across_gateways: bool,
    ) -> limits::Verdict {
        let key = self.limit_key(&key, across_gateways);
        let port = self.services.limits_port.clone();
        let call = port.check(&key, cost, limit, period_ms, technique(t), enforce);
        let v = self.store_call(port.remote(), call).await;
        limits::Verdict {
            allowed: v.allowed,
            remaining: v.remaining,
            retry_after_ms: v.retry_after_ms,
        }
    }
}

impl telemetry::Host for HostState {
    fn log(&mut self, level: telemetry::Level, message: String) {
        let message = crate::config::redact(&self.secrets, &message);
        let filter = &*self.filter;
        // The request id also when request spans are off (the default level).
        let request_id = self.request_id();
        let request_id = &*request_id;
        match level {
            telemetry::Level::Trace => tracing::trace!(filter, request_id, "{message}"),
            telemetry::Level::Debug => tracing::debug!(filter, request_id, "{message}"),
            telemetry::Level::Info => tracing::info!(filter, request_id, "{message}"),
            telemetry::Level::Warn => tracing::warn!(filter, request_id, "{message}"),
            telemetry::Level::Error => tracing::error!(filter, request_id, "{message}"),
        }
    }

    fn counter_add(&mut self, name: String, value: u64) {
        self.services
            .metrics
            .add_filter_counter(&self.filter, &name, value);
    }

    fn now_ms(&mut self) -> u64 {
        now_ms()
    }

    fn report_panic(&mut self, message: String) {
        let request_id = self.request_id();
        // Bounded: a panic message is the filter's text, shown in logs and /api/plugins.
        let mut message = message;
        if message.len() > 1024 {
            let mut end = 1024;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
        tracing::error!(
            filter = &*self.filter,
            request_id = &*request_id,
            "filter panicked: {message}"
        );
        self.panic_message = Some(message);
    }
}

impl manifest::Host for HostState {
    fn declare_on_error(&mut self, mode: manifest::FailureMode) {
        self.declared_on_error = Some(match mode {
            manifest::FailureMode::Open => crate::config::OnError::Open,
            manifest::FailureMode::Closed => crate::config::OnError::Closed,
        });
    }

    fn on_error_setting(&mut self) -> Option<manifest::FailureMode> {
        self.on_error_setting.map(|m| match m {
            crate::config::OnError::Open => manifest::FailureMode::Open,
            crate::config::OnError::Closed => manifest::FailureMode::Closed,
        })
    }
}

impl log_store::Host for HostState {
    fn append(&mut self, entry_json: String) -> Result<(), String> {
        let mut entry: serde_json::Value =
            serde_json::from_str(&entry_json).map_err(|e| format!("log entry is not JSON: {e}"))?;
        let Some(fields) = entry.as_object_mut() else {
            return Err("log entry must be a JSON object".into());
        };
        // The entry of the request being served carries the host's own accounting.
        if let Some(ctx) = &self.request {
            let ctx = lock(ctx);
            if let Some(accounting) = &ctx.accounting {
                accounting.add_to(fields);
            }
            // Who called is the host's word, not the filter's.
            if let Some(consumer) = &ctx.consumer {
                consumer.add_to(fields);
            }
        }
        match &self.services.logs {
            Some(store) => store.append(entry).map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }
}

impl context::Host for HostState {
    fn annotate(&mut self, key: String, value: String) {
        let Some(ctx) = &self.request else { return };
        if key.is_empty() || key.len() > MAX_ANNOTATION_KEY {
            return;
        }
        // A filter's secrets never reach the log store, even quoted in an error it records.
        let mut value = crate::config::redact(&self.secrets, &value);
        if value.len() > MAX_ANNOTATION_VALUE {
            let mut end = MAX_ANNOTATION_VALUE;
            while !value.is_char_boundary(end) {
                end -= 1;
            }
            value.truncate(end);
        }
        let mut ctx = lock(ctx);
        let n = ctx.annotations.len();
        match ctx.annotations.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None if n < MAX_ANNOTATIONS => ctx.annotations.push((key, value)),
            None => {}
        }
    }

    fn annotations(&mut self) -> Vec<(String, String)> {
        match &self.request {
            Some(ctx) => lock(ctx).annotations.clone(),
            None => Vec::new(),
        }
    }

    fn route(&mut self, provider: String, model: Option<String>) -> Result<(), String> {
        let Some(ctx) = &self.request else {
            return Err("route: no request is being handled (called from configure?)".into());
        };
        let mut ctx = lock(ctx);
        if !ctx.providers.providers.contains_key(&provider) {
            return Err(format!(
                "route: unknown provider '{provider}' (known: {})",
                ctx.providers
                    .providers
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if let Some(m) = &model
            && (m.is_empty() || m.len() > 256)
        {
            return Err("route: model must be 1 to 256 bytes".into());
        }
        ctx.route = Some(RouteChoice { provider, model });
        Ok(())
    }

    fn edit_response_head(
        &mut self,
        status: Option<u16>,
        edits: types::HeaderEdits,
    ) -> Result<bool, String> {
        if let Some(s) = status
            && !(200..=599).contains(&s)
        {
            return Err(format!(
                "edit-response-head: status {s} is not from 200 to 599"
            ));
        }
        // The body's encoding and framing, and the log id, are the host's.
        const HOST_OWNED: [&str; 4] = [
            "content-encoding",
            "content-length",
            "transfer-encoding",
            "cf-aig-log-id",
        ];
        if let Some(h) = edits
            .set
            .iter()
            .find(|h| HOST_OWNED.iter().any(|n| h.name.eq_ignore_ascii_case(n)))
        {
            return Err(format!("edit-response-head: '{}' is the host's", h.name));
        }
        // Checked now, so that the filter learns of a bad header from this call.
        crate::pipeline::headers::apply(&edits, &mut hyper::HeaderMap::new(), &mut Vec::new())
            .map_err(|e| format!("edit-response-head: {e}"))?;
        let Some(ctx) = &self.request else {
            return Ok(false);
        };
        let mut ctx = lock(ctx);
        if !ctx.head_held {
            return Ok(false);
        }
        let head = ctx.head_edits.get_or_insert_with(HeadEdits::default);
        // All calls of a request together stay within one call's limits.
        let count: usize = head
            .edits
            .iter()
            .map(|e| e.set.len() + e.remove.len())
            .sum::<usize>()
            + edits.set.len()
            + edits.remove.len();
        if count > MAX_HEAD_EDITS {
            return Err(format!(
                "edit-response-head: more than {MAX_HEAD_EDITS} header edits in one answer"
            ));
        }
        head.status = status.or(head.status);
        head.edits.push(edits);
        Ok(true)
    }

    fn consumer(&mut self) -> Option<context::ConsumerInfo> {
        let ctx = self.request.as_ref()?;
        let c = lock(ctx).consumer.clone()?;
        Some(context::ConsumerInfo {
            key_id: c.key_id.clone(),
            key_name: c.key_name.clone(),
            team: c.team.clone(),
            team_name: c.team_name.clone(),
            metadata: c.metadata.clone(),
            key_policy: c.key_policy.wit(),
            team_policy: c.team_policy.as_ref().map(PolicyInfo::wit),
        })
    }
}
