//! What filters can import: one `HostState` per store (per filter instance),
//! holding the filter's name, its memory limits, an empty WASI context, and a
//! handle to the shared `Services`. Each WIT import interface is implemented
//! here on `HostState`.

use super::bindings::aigw::filter::{kv, limits, log_store, telemetry, types};
use crate::store::kv::KvStore;
use crate::store::limits::{Limiter, Technique};
use crate::store::logs::LogStore;
use crate::store::now_ms;
use crate::telemetry::Metrics;
use std::sync::Arc;
use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// State shared by every filter instance.
#[derive(Debug)]
pub struct Services {
    /// Key-value store.
    pub kv: KvStore,
    /// Rate-limit counters.
    pub limiter: Limiter,
    /// Request log store (absent in `aigw check`).
    pub logs: Option<LogStore>,
    /// Metrics.
    pub metrics: Metrics,
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
        }
    }

    fn key(&self, key: &str) -> String {
        let mut k = String::with_capacity(self.filter.len() + 1 + key.len());
        k.push_str(&self.filter);
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

impl kv::Host for HostState {
    fn get(&mut self, key: String) -> Option<Vec<u8>> {
        self.services.kv.get(&self.key(&key), now_ms())
    }

    fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: u64) -> bool {
        self.services
            .kv
            .set(&self.key(&key), &value, ttl_ms, now_ms())
    }

    fn delete(&mut self, key: String) {
        self.services.kv.delete(&self.key(&key))
    }
}

fn technique(t: limits::Technique) -> Technique {
    match t {
        limits::Technique::Fixed => Technique::Fixed,
        limits::Technique::Sliding => Technique::Sliding,
    }
}

impl limits::Host for HostState {
    fn check(
        &mut self,
        key: String,
        cost: u64,
        limit: u64,
        period_ms: u64,
        t: limits::Technique,
    ) -> limits::Verdict {
        let v = self.services.limiter.check(
            &self.key(&key),
            cost,
            limit,
            period_ms,
            technique(t),
            now_ms(),
            true,
        );
        limits::Verdict {
            allowed: v.allowed,
            remaining: v.remaining,
            retry_after_ms: v.retry_after_ms,
        }
    }

    fn debit(
        &mut self,
        key: String,
        amount: u64,
        limit: u64,
        period_ms: u64,
        t: limits::Technique,
    ) {
        self.services.limiter.check(
            &self.key(&key),
            amount,
            limit,
            period_ms,
            technique(t),
            now_ms(),
            false,
        );
    }
}

impl telemetry::Host for HostState {
    fn log(&mut self, level: telemetry::Level, message: String) {
        let filter = &*self.filter;
        match level {
            telemetry::Level::Trace => tracing::trace!(filter, "{message}"),
            telemetry::Level::Debug => tracing::debug!(filter, "{message}"),
            telemetry::Level::Info => tracing::info!(filter, "{message}"),
            telemetry::Level::Warn => tracing::warn!(filter, "{message}"),
            telemetry::Level::Error => tracing::error!(filter, "{message}"),
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
}

impl log_store::Host for HostState {
    fn append(&mut self, entry_json: String) -> Result<(), String> {
        let entry: serde_json::Value =
            serde_json::from_str(&entry_json).map_err(|e| format!("log entry is not JSON: {e}"))?;
        if !entry.is_object() {
            return Err("log entry must be a JSON object".into());
        }
        match &self.services.logs {
            Some(store) => store.append(entry),
            None => Ok(()),
        }
    }
}
