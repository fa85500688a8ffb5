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

/// How a panic's message starts in `FilterError::Call`.
const PANICKED: &str = "panicked: ";

impl FilterError {
    /// What the client is told. A panic's text stays in the gateway's log and
    /// `/api/plugins`: it is the filter's own text and may quote request data.
    pub fn public_message(&self) -> String {
        match self {
            FilterError::Call {
                filter,
                hook,
                message,
            } if message.starts_with(PANICKED) => format!(
                "filter '{filter}': {hook} failed: the filter panicked (its message is in the gateway's log under this request's id)"
            ),
            other => other.to_string(),
        }
    }
}

/// A live instance.
pub struct FilterInstance {
    store: Store<HostState>,
    bindings: FilterPlugin,
    ticks: u64,
    name: Arc<str>,
    uses: u32,
}

/// A hook call and its argument.
#[derive(Debug, Clone, Copy)]
pub enum Hook<'a> {
    /// `on-request-headers`.
    RequestHeaders(&'a RequestHead),
    /// `on-request-body`.
    RequestBody(&'a [u8]),
    /// `on-response-headers`.
    ResponseHeaders(&'a ResponseHead),
    /// `on-response-body` (chunk, end of stream).
    ResponseBody(&'a [u8], bool),
    /// `on-done`.
    Done(&'a Summary),
}

impl Hook<'_> {
    /// The WIT name of the hook.
    pub fn name(&self) -> &'static str {
        match self {
            Hook::RequestHeaders(_) => "on-request-headers",
            Hook::RequestBody(_) => "on-request-body",
            Hook::ResponseHeaders(_) => "on-response-headers",
            Hook::ResponseBody(..) => "on-response-body",
            Hook::Done(_) => "on-done",
        }
    }
}

/// A hook's answer.
#[derive(Debug)]
pub enum Answer {
    /// From `on-request-headers`.
    Decision(Decision),
    /// From `on-request-body`.
    Body(BodyDecision),
    /// From `on-response-headers`.
    Response(ResponseDecision),
    /// From `on-response-body`.
    Chunk(ChunkDecision),
    /// From `on-done`.
    Done,
}

impl FilterInstance {
    pub(super) async fn new(
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
        // Time a call spends waiting on the host (a Redis round trip) is not
        // the filter's: the deadline moves by that much, once per wait.
        //
        // The epoch ticks in wall time, but `timeout_ms` is a CPU budget: on a
        // saturated machine a call can be descheduled for longer than its
        // budget without running. A call that is still running after
        // `timeout_ms` of wall time starts being charged the CPU time its
        // thread actually spends, checked every tick, and ends once that
        // reaches `timeout_ms`; so a busy loop ends after about twice its
        // budget, and a descheduled call is not punished. (Reading a thread's
        // CPU clock is a system call: only calls that outlive their budget
        // pay for it. Between two checks the fiber stays on its thread; after
        // a host wait it may have moved, so the baseline restarts.)
        store.epoch_deadline_callback(move |mut cx| {
            let state = cx.data_mut();
            let now = cpu_time::ThreadTime::try_now()
                .ok()
                .map(|t| t.as_duration());
            let waited = std::mem::take(&mut state.host_wait_ms);
            if waited > 0 {
                // The CPU used before each wait was charged when the wait began
                // (`HostState::begin_wait`): waits extend wall time, never erase CPU.
                if state.cpu_used_ms >= timeout_ms {
                    return Err(Trap::Interrupt.into());
                }
                state.cpu_baseline = now;
                return Ok(wasmtime::UpdateDeadline::Continue(
                    waited.div_ceil(tick) + 1,
                ));
            }
            let Some(now) = now else {
                return Err(Trap::Interrupt.into());
            };
            let Some(base) = state.cpu_baseline else {
                state.cpu_baseline = Some(now);
                return Ok(wasmtime::UpdateDeadline::Continue(
                    timeout_ms.div_ceil(tick).max(1),
                ));
            };
            state.cpu_used_ms = state
                .cpu_used_ms
                .saturating_add(now.saturating_sub(base).as_millis() as u64);
            state.cpu_baseline = Some(now);
            if state.cpu_used_ms >= timeout_ms {
                return Err(Trap::Interrupt.into());
            }
            Ok(wasmtime::UpdateDeadline::Continue(
                (timeout_ms - state.cpu_used_ms).div_ceil(tick).max(1),
            ))
        });
        let bindings = pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| FilterError::Call {
                filter: name.to_string(),
                hook: "instantiate",
                message: describe_error(&e),
            })?;
        Ok(FilterInstance {
            store,
            bindings,
            ticks,
            name,
            uses: 0,
        })
    }

    /// Attaches the instance to a request (or detaches it with `None`).
    pub fn set_request(&mut self, ctx: Option<Arc<std::sync::Mutex<super::host::RequestContext>>>) {
        self.store.data_mut().request = ctx;
    }

    fn checked<R>(
        &mut self,
        hook: &'static str,
        result: wasmtime::Result<R>,
    ) -> Result<R, FilterError> {
        let panicked = self.store.data_mut().panic_message.take();
        let secrets = self.store.data().secrets.clone();
        result.map_err(|e| FilterError::Call {
            filter: self.name.to_string(),
            hook,
            // The panic hook's message says more than the trap it ended in; either may
            // quote the table.
            message: crate::config::redact(
                &secrets,
                &match panicked {
                    Some(m) => format!("{PANICKED}{m}"),
                    None => describe_error(&e),
                },
            ),
        })
    }

    /// Arms the call deadline.
    fn arm(&mut self) {
        let state = self.store.data_mut();
        state.host_wait_ms = 0;
        state.cpu_used_ms = 0;
        state.cpu_baseline = None;
        state.http_wait_ms = 0;
        state.panic_message = None;
        self.store.set_epoch_deadline(self.ticks);
    }

    /// `describe`.
    pub async fn describe(&mut self) -> Result<FilterInfo, FilterError> {
        self.arm();
        let r = self
            .bindings
            .aigw_filter_filter()
            .call_describe(&mut self.store)
            .await;
        let info = self.checked("describe", r)?;
        Ok(FilterInfo {
            hooks: info.hooks,
            request_body: info.request_body,
            response_body: info.response_body,
            on_error: self.store.data_mut().declared_on_error.take(),
        })
    }

    /// Requests this instance was configured for.
    pub fn uses(&self) -> u32 {
        self.uses
    }

    /// `configure`; a rejection is `FilterError::Configure`. Called once per
    /// request the instance serves: it resets the filter's state.
    /// The table's grants (outbound HTTP) apply from here on; its secrets are masked in
    /// the filter's answer.
    pub async fn configure(
        &mut self,
        settings: &crate::config::FilterSettings,
    ) -> Result<(), FilterError> {
        self.uses = self.uses.saturating_add(1);
        let state = self.store.data_mut();
        state.http = settings.http.clone();
        state.secrets = settings.secrets.clone();
        state.on_error_setting = settings.on_error;
        self.arm();
        let r = self
            .bindings
            .aigw_filter_filter()
            .call_configure(&mut self.store, &settings.config_json)
            .await;
        self.checked("configure", r)?
            .map_err(|message| FilterError::Configure {
                filter: self.name.to_string(),
                message: crate::config::redact(&settings.secrets, &message),
            })
    }

    /// Calls one hook with the call deadline armed.
    pub async fn hook(&mut self, hook: Hook<'_>) -> Result<Answer, FilterError> {
        self.arm();
        let f = self.bindings.aigw_filter_filter();
        let store = &mut self.store;
        let result = match hook {
            Hook::RequestHeaders(h) => f
                .call_on_request_headers(store, h)
                .await
                .map(Answer::Decision),
            Hook::RequestBody(b) => f.call_on_request_body(store, b).await.map(Answer::Body),
            Hook::ResponseHeaders(h) => f
                .call_on_response_headers(store, h)
                .await
                .map(Answer::Response),
            Hook::ResponseBody(c, end) => f
                .call_on_response_body(store, c, end)
                .await
                .map(Answer::Chunk),
            Hook::Done(s) => f.call_on_done(store, s).await.map(|_| Answer::Done),
        };
        self.checked(hook.name(), result)
    }
}

/// A one-line reason: deadline, memory, or the trap with the guest's message.
fn describe_error(e: &wasmtime::Error) -> String {
    if let Some(trap) = e.downcast_ref::<Trap>() {
        return match trap {
            Trap::Interrupt => "deadline exceeded (hook ran past timeout_ms)".to_string(),
            Trap::UnreachableCodeReached => {
                "trapped: unreachable (the filter panicked or aborted, possibly out of memory)"
                    .to_string()
            }
            other => format!("trapped: {other}"),
        };
    }
    // A host import's own error (the shared store is down) is the root
    // cause; the outer layers only say that wasm was executing.
    let text = e.root_cause().to_string();
    text.lines().next().unwrap_or("unknown error").to_string()
}
