//! One filter instance serving one request: its own store (memory cap,
//! epoch deadline per call) and typed calls to each export. A trap, a missed
//! deadline or a memory-limit hit ends the call with a `FilterError`; the
//! instance must then be dropped (the pipeline applies `on_error`).

use super::FilterInfo;
use super::bindings::types::{
    self, BodyDecision, ChunkDecision, Decision, RequestHead, ResponseDecision, ResponseHead,
    Summary,
};
use super::bindings::{FilterPlugin, FilterPluginPre, v2 as v2b};
use super::host::{HostState, Services};
use super::v2;
use bytes::Bytes;
use std::sync::Arc;
use wasmtime::component::Resource;
use wasmtime::{Engine, Store, Trap};

/// A filter type-checked against the contract version it was built for.
pub enum Pre {
    /// `aigw:filter@0.1.0`.
    V1(FilterPluginPre<HostState>),
    /// `aigw:filter@0.2.0`.
    V2(v2b::FilterPluginPre<HostState>),
}

impl Pre {
    /// The contract version, as `/api/plugins` shows it.
    pub fn contract(&self) -> &'static str {
        match self {
            Pre::V1(_) => "0.1.0",
            Pre::V2(_) => "0.2.0",
        }
    }
}

enum Bindings {
    V1(FilterPlugin),
    V2(v2b::FilterPlugin),
}

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
    bindings: Bindings,
    ticks: u64,
    name: Arc<str>,
    uses: u32,
}

/// A hook call and its argument. The head and summary are lent mutably so that a 0.2.0
/// filter's header sets can be moved into its call and back, never copied; they come
/// back as they went in, except for the filter's header edits, applied to the view.
#[derive(Debug)]
pub enum Hook<'a> {
    /// `on-request-headers`.
    RequestHeaders(&'a mut RequestHead),
    /// `on-request-body`.
    RequestBody(&'a Bytes),
    /// `on-response-headers`.
    ResponseHeaders(&'a mut ResponseHead),
    /// `on-response-body` (chunk, end of stream).
    ResponseBody(&'a [u8], bool),
    /// `on-done`.
    Done(&'a mut Summary),
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
        pre: &Pre,
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
        let budget = std::time::Duration::from_millis(timeout_ms);
        store.epoch_deadline_callback(move |mut cx| {
            let state = cx.data_mut();
            let now = cpu_time::ThreadTime::try_now()
                .ok()
                .map(|t| t.as_duration());
            let waited = std::mem::take(&mut state.host_wait_ms);
            if waited > 0 {
                // The CPU used before each wait was charged when the wait began
                // (`HostState::begin_wait`): waits extend wall time, never erase CPU.
                if state.cpu_used >= budget {
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
            state.cpu_used = state.cpu_used.saturating_add(now.saturating_sub(base));
            state.cpu_baseline = Some(now);
            if state.cpu_used >= budget {
                return Err(Trap::Interrupt.into());
            }
            let left_ms = budget.saturating_sub(state.cpu_used).as_millis() as u64;
            Ok(wasmtime::UpdateDeadline::Continue(
                left_ms.div_ceil(tick).max(1),
            ))
        });
        let bindings = match pre {
            Pre::V1(pre) => pre.instantiate_async(&mut store).await.map(Bindings::V1),
            Pre::V2(pre) => pre.instantiate_async(&mut store).await.map(Bindings::V2),
        }
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
        state.cpu_used = std::time::Duration::ZERO;
        state.cpu_baseline = None;
        state.http_wait_ms = 0;
        state.panic_message = None;
        self.store.set_epoch_deadline(self.ticks);
    }

    /// `describe`.
    pub async fn describe(&mut self) -> Result<FilterInfo, FilterError> {
        self.arm();
        let store = &mut self.store;
        let r = match &self.bindings {
            Bindings::V1(b) => b
                .aigw_filter_filter()
                .call_describe(store)
                .await
                .map(|i| (i.hooks, i.request_body, i.response_body, false)),
            Bindings::V2(b) => b
                .aigw_filter0_2_0_filter()
                .call_describe(store)
                .await
                .map(|i| {
                    (
                        v2::hooks(i.hooks),
                        i.request_body,
                        i.response_body,
                        i.stateless,
                    )
                }),
        };
        let (hooks, request_body, response_body, stateless) = self.checked("describe", r)?;
        Ok(FilterInfo {
            hooks,
            request_body,
            response_body,
            on_error: self.store.data_mut().declared_on_error.take(),
            stateless,
        })
    }

    /// Requests this instance was configured for (or, for a stateless filter, calls it
    /// was lent for).
    pub fn uses(&self) -> u32 {
        self.uses
    }

    /// Counts a loan of a stateless filter's instance (never reconfigured, it is retired
    /// by its count like any other).
    pub fn lent(&mut self) {
        self.uses = self.uses.saturating_add(1);
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
        let store = &mut self.store;
        let r = match &self.bindings {
            Bindings::V1(b) => {
                b.aigw_filter_filter()
                    .call_configure(store, &settings.config_json)
                    .await
            }
            Bindings::V2(b) => {
                b.aigw_filter0_2_0_filter()
                    .call_configure(store, &settings.config_json)
                    .await
            }
        };
        self.checked("configure", r)?
            .map_err(|message| FilterError::Configure {
                filter: self.name.to_string(),
                message: crate::config::redact(&settings.secrets, &message),
            })
    }

    /// Calls one hook with the call deadline armed.
    pub async fn hook(&mut self, hook: Hook<'_>) -> Result<Answer, FilterError> {
        self.arm();
        let name = hook.name();
        let store = &mut self.store;
        let result = match &self.bindings {
            Bindings::V1(b) => {
                let f = b.aigw_filter_filter();
                match hook {
                    Hook::RequestHeaders(h) => f
                        .call_on_request_headers(store, h)
                        .await
                        .map(Answer::Decision),
                    Hook::RequestBody(b) => {
                        f.call_on_request_body(store, b).await.map(Answer::Body)
                    }
                    Hook::ResponseHeaders(h) => f
                        .call_on_response_headers(store, h)
                        .await
                        .map(Answer::Response),
                    Hook::ResponseBody(c, end) => f
                        .call_on_response_body(store, c, end)
                        .await
                        .map(Answer::Chunk),
                    Hook::Done(s) => f.call_on_done(store, s).await.map(|_| Answer::Done),
                }
            }
            Bindings::V2(b) => call_v2(b, store, hook).await,
        };
        self.checked(name, result)
    }
}

/// Lends `list` to the call as a `fields` resource.
fn lend(
    store: &mut Store<HostState>,
    list: &mut Vec<types::Header>,
    writable: bool,
) -> wasmtime::Result<Resource<v2::Fields>> {
    let fields = v2::Fields::new(std::mem::take(list), writable);
    Ok(store.data_mut().table().push(fields)?)
}

/// Takes a lent header set back: the view (with the filter's edits) returns to `list`.
fn take_back(
    store: &mut Store<HostState>,
    lent: Resource<v2::Fields>,
    list: &mut Vec<types::Header>,
) -> wasmtime::Result<types::HeaderEdits> {
    let (view, edits) = store.data_mut().table().delete(lent)?.into_parts();
    *list = view;
    Ok(edits)
}

fn borrow<T: 'static>(r: &Resource<T>) -> Resource<T> {
    Resource::new_borrow(r.rep())
}

/// A 0.2.0 hook call, answered in 0.1.0's terms (header edits made on the lent set come
/// back as a `continue`'s edits).
async fn call_v2(
    b: &v2b::FilterPlugin,
    store: &mut Store<HostState>,
    hook: Hook<'_>,
) -> wasmtime::Result<Answer> {
    use super::bindings::v2::aigw::filter0_2_0::types as w;
    let f = b.aigw_filter0_2_0_filter();
    match hook {
        Hook::RequestHeaders(h) => {
            let head = v2::request_head(h);
            let lent = lend(store, &mut h.headers, true)?;
            let r = f
                .call_on_request_headers(&mut *store, &head, borrow(&lent))
                .await;
            let edits = take_back(store, lent, &mut h.headers)?;
            Ok(Answer::Decision(match r? {
                w::Decision::Continue => Decision::Continue(edits),
                w::Decision::Respond(l) => Decision::Respond(l),
            }))
        }
        Hook::RequestBody(bytes) => {
            let lent = store
                .data_mut()
                .table()
                .push(v2::Body::new(bytes.clone()))?;
            let r = f.call_on_request_body(&mut *store, borrow(&lent)).await;
            store.data_mut().table().delete(lent)?;
            Ok(Answer::Body(match r? {
                w::BodyDecision::Continue => BodyDecision::Continue,
                w::BodyDecision::Replace(b) => BodyDecision::Replace(b),
                w::BodyDecision::Respond(l) => BodyDecision::Respond(l),
            }))
        }
        Hook::ResponseHeaders(h) => {
            let head = v2::response_head(h);
            let lent = lend(store, &mut h.headers, true)?;
            let r = f
                .call_on_response_headers(&mut *store, &head, borrow(&lent))
                .await;
            let edits = take_back(store, lent, &mut h.headers)?;
            Ok(Answer::Response(match r? {
                w::ResponseDecision::Continue => ResponseDecision::Continue(edits),
                w::ResponseDecision::Respond(l) => ResponseDecision::Respond(l),
                w::ResponseDecision::Retry(spec) => ResponseDecision::Retry(spec),
            }))
        }
        Hook::ResponseBody(c, end) => f
            .call_on_response_body(store, c, end)
            .await
            .map(Answer::Chunk),
        Hook::Done(s) => {
            let summary = v2::summary(s);
            let req = lend(store, &mut s.request_headers, false)?;
            let resp = lend(store, &mut s.response_headers, false)?;
            let r = f
                .call_on_done(&mut *store, &summary, borrow(&req), borrow(&resp))
                .await;
            take_back(store, req, &mut s.request_headers)?;
            take_back(store, resp, &mut s.response_headers)?;
            r.map(|_| Answer::Done)
        }
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
