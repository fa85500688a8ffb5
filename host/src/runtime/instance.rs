//! One filter instance serving one request: its own store (memory cap,
//! epoch deadline per call) and typed calls to each export. A trap, a missed
//! deadline or a memory-limit hit ends the call with a `FilterError`; the
//! instance must then be dropped (the pipeline applies `on_error`).

use super::FilterInfo;
use super::bindings::types::{
    BodyDecision, ChunkDecision, Decision, RequestHead, ResponseDecision, ResponseHead, Summary,
};
use super::bindings::{FilterPlugin, FilterPluginPre};
use super::host::{HostState, Services};
use std::sync::Arc;
use wasmtime::{Engine, Store, Trap};

/// Why a filter could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// Loading failed at a stage (parse, type-check, instantiate, describe).
    #[error("filter '{filter}' ({source_desc}): {stage} failed: {message}")]
    Load {
        filter: String,
        source_desc: String,
        stage: &'static str,
        message: String,
    },
    /// `configure` rejected the table.
    #[error("filter '{filter}': configuration rejected: {message}")]
    Configure { filter: String, message: String },
    /// A hook call trapped, timed out or ran out of memory.
    #[error("filter '{filter}': {hook} failed: {message}")]
    Call {
        filter: String,
        hook: &'static str,
        message: String,
    },
}

/// A live instance.
pub struct FilterInstance {
    store: Store<HostState>,
    bindings: FilterPlugin,
    ticks: u64,
    name: Arc<str>,
}

impl FilterInstance {
    pub(super) fn new(
        engine: &Engine,
        pre: &FilterPluginPre<HostState>,
        name: Arc<str>,
        services: Arc<Services>,
        timeout_ms: u64,
        max_memory_mb: u64,
    ) -> Result<Self, FilterError> {
        let state = HostState::new(name.clone(), services, (max_memory_mb as usize) << 20);
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limits);
        let tick = super::EPOCH_TICK.as_millis() as u64;
        let ticks = timeout_ms.div_ceil(tick).max(1) + 1;
        store.set_epoch_deadline(ticks);
        let bindings = pre.instantiate(&mut store).map_err(|e| FilterError::Call {
            filter: name.to_string(),
            hook: "instantiate",
            message: describe_error(&e),
        })?;
        Ok(FilterInstance {
            store,
            bindings,
            ticks,
            name,
        })
    }

    fn call<R>(
        &mut self,
        hook: &'static str,
        f: impl FnOnce(&FilterPlugin, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, FilterError> {
        self.store.set_epoch_deadline(self.ticks);
        f(&self.bindings, &mut self.store).map_err(|e| FilterError::Call {
            filter: self.name.to_string(),
            hook,
            message: describe_error(&e),
        })
    }

    /// `describe`.
    pub fn describe(&mut self) -> Result<FilterInfo, FilterError> {
        let info = self.call("describe", |b, s| b.aigw_filter_filter().call_describe(s))?;
        Ok(FilterInfo {
            hooks: info.hooks,
            request_body: info.request_body,
            response_body: info.response_body,
        })
    }

    /// `configure`; a rejection is `FilterError::Configure`.
    pub fn configure(&mut self, config_json: &str) -> Result<(), FilterError> {
        self.call("configure", |b, s| b.aigw_filter_filter().call_configure(s, config_json))?
            .map_err(|message| FilterError::Configure {
                filter: self.name.to_string(),
                message,
            })
    }

    /// `on-request-headers`.
    pub fn on_request_headers(&mut self, head: &RequestHead) -> Result<Decision, FilterError> {
        self.call("on-request-headers", |b, s| b.aigw_filter_filter().call_on_request_headers(s, head))
    }

    /// `on-request-body`.
    pub fn on_request_body(&mut self, body: &[u8]) -> Result<BodyDecision, FilterError> {
        self.call("on-request-body", |b, s| b.aigw_filter_filter().call_on_request_body(s, body))
    }

    /// `on-response-headers`.
    pub fn on_response_headers(&mut self, head: &ResponseHead) -> Result<ResponseDecision, FilterError> {
        self.call("on-response-headers", |b, s| b.aigw_filter_filter().call_on_response_headers(s, head))
    }

    /// `on-response-body`.
    pub fn on_response_body(&mut self, chunk: &[u8], end: bool) -> Result<ChunkDecision, FilterError> {
        self.call("on-response-body", |b, s| b.aigw_filter_filter().call_on_response_body(s, chunk, end))
    }

    /// `on-done`.
    pub fn on_done(&mut self, summary: &Summary) -> Result<(), FilterError> {
        self.call("on-done", |b, s| b.aigw_filter_filter().call_on_done(s, summary))
    }
}

/// A one-line reason: deadline, memory, or the trap with the guest's message.
fn describe_error(e: &wasmtime::Error) -> String {
    if let Some(trap) = e.downcast_ref::<Trap>() {
        return match trap {
            Trap::Interrupt => "deadline exceeded (hook ran past timeout_ms)".to_string(),
            Trap::UnreachableCodeReached => "trapped: unreachable (the filter panicked or aborted, possibly out of memory)".to_string(),
            other => format!("trapped: {other}"),
        };
    }
    let text = format!("{e:#}");
    text.lines().next().unwrap_or("unknown error").to_string()
}
