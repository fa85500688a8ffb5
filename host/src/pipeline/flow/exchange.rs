//! The per-request state that outlives the handler: the filter instances
//! of this request (taken from and given back to their stage's pool), and
//! how a call to one of them is made and how its failure is handled.

use super::super::GatewayPipeline;
use super::super::breaker::Admit;
use crate::config::OnError;
use crate::http::error::GatewayError;
use crate::runtime::Runtime;
use crate::runtime::bindings::types::{Header, Hooks};
use crate::runtime::host::RequestContext;
use crate::runtime::instance::{Answer, FilterError, FilterInstance, Hook};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument as _;

/// A filter's instance for this request.
pub(super) enum Slot {
    Empty,
    Live(Box<FilterInstance>),
    /// A stateless filter admitted for this request, its instance back in the pool between
    /// calls: the circuit was asked once, and hears of the request once, when it ends.
    Lent,
    Failed,
}

/// The per-request state that outlives the handler (moved into the body task).
pub(super) struct Exchange {
    pub(super) gw: Arc<GatewayPipeline>,
    pub(super) runtime: Arc<Runtime>,
    pub(super) slots: Vec<Slot>,
    pub(super) started: Instant,
    pub(super) created_at_ms: u64,
    pub(super) request_id: String,
    /// The request's tracing span (`request{id,gateway,provider,…}`); background work of the
    /// request (body task, done hooks) runs inside it too.
    pub(super) span: tracing::Span,
    /// The client's W3C `traceparent`, continued by the OTLP export.
    pub(super) traceparent: Option<String>,
    pub(super) account: String,
    pub(super) provider: String,
    pub(super) method: String,
    pub(super) path: String,
    pub(super) model: Option<String>,
    pub(super) request_bytes: u64,
    pub(super) request_headers: Vec<Header>,
    pub(super) attempts: u32,
    pub(super) stream_idle_timeout_ms: u64,
    pub(super) config: Arc<crate::config::Config>,
    pub(super) strip_usage_chunk: bool,
    /// Shared by this request's filters (annotations, routing).
    pub(super) context: Arc<std::sync::Mutex<RequestContext>>,
    /// Set until the response is handed to the client. Dropped while set
    /// (the client went away before an answer and the handler with it), the
    /// request is still ended in the background: done hooks, log entry.
    pub(super) armed: bool,
    /// The status logged if the client leaves before its answer: 499 until
    /// the response's own status is known.
    pub(super) answer_status: u16,
    /// The stage whose hook is running (its instance cannot be reused if the
    /// call is abandoned half-way).
    pub(super) in_call: Option<usize>,
    /// Stages whose half-open circuit this request is probing, until the probe's verdict.
    pub(super) probes: Vec<usize>,
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if !self.armed || tokio::runtime::Handle::try_current().is_err() {
            // A probe that never got its verdict must not keep the circuit half-open forever.
            for i in self.probes.drain(..) {
                self.gw.stages[i].breaker.abandon();
            }
            return;
        }
        if let Some(i) = self.in_call.take() {
            self.slots[i] = Slot::Failed;
        }
        let ex = Exchange {
            gw: self.gw.clone(),
            runtime: self.runtime.clone(),
            slots: std::mem::take(&mut self.slots),
            started: self.started,
            created_at_ms: self.created_at_ms,
            request_id: std::mem::take(&mut self.request_id),
            span: self.span.clone(),
            traceparent: self.traceparent.take(),
            account: std::mem::take(&mut self.account),
            provider: std::mem::take(&mut self.provider),
            method: std::mem::take(&mut self.method),
            path: std::mem::take(&mut self.path),
            model: self.model.take(),
            request_bytes: self.request_bytes,
            request_headers: std::mem::take(&mut self.request_headers),
            attempts: self.attempts,
            stream_idle_timeout_ms: self.stream_idle_timeout_ms,
            config: self.config.clone(),
            strip_usage_chunk: self.strip_usage_chunk,
            context: self.context.clone(),
            armed: false,
            answer_status: self.answer_status,
            in_call: None,
            probes: std::mem::take(&mut self.probes),
        };
        tracing::debug!(parent: &ex.span, "client left before the answer");
        let task = super::body::BodyTask::abandoned(ex);
        let services = self.runtime.services.clone();
        super::response::spawn_tracked(services, self.span.clone(), task.done());
    }
}

impl Exchange {
    pub(super) fn wants(&self, i: usize, hook: Hooks) -> bool {
        self.gw.stages[i].filter.info.hooks.contains(hook)
    }

    /// Calls a filter's hook, creating its instance on first use. `Ok(None)`:
    /// the filter is skipped (failed earlier, or failed now with `on_error = open`).
    pub(super) async fn call(
        &mut self,
        i: usize,
        hook: Hook<'_>,
    ) -> Result<Option<Answer>, GatewayError> {
        // This call is the half-open circuit's probe.
        let mut probe = false;
        if matches!(self.slots[i], Slot::Empty | Slot::Lent) {
            let admitted = matches!(self.slots[i], Slot::Lent);
            let stage = &self.gw.stages[i];
            let verdict = if admitted {
                Admit::Yes
            } else {
                stage.breaker.admit()
            };
            probe = verdict == Admit::Probe;
            if probe {
                self.probes.push(i);
            }
            if verdict == Admit::No {
                // Open circuit: the filter failed too often lately. Apply its
                // policy without calling it.
                self.slots[i] = Slot::Failed;
                let name = &stage.filter.name;
                self.runtime.services.metrics.count_circuit_skipped(name);
                return match stage.on_error {
                    OnError::Open => Ok(None),
                    OnError::Closed => Err(GatewayError::unavailable(format!(
                        "filter '{name}' failed {} requests in a row; its circuit is open and it is not called for {} ms",
                        stage.settings.circuit_failures, stage.settings.circuit_open_ms
                    ))),
                };
            }
            // A pooled instance was `configure`d when its last request ended
            // (after that response was sent); a fresh one is configured now.
            let created = match stage.pool.take() {
                Some(warm) => Ok(warm),
                None => {
                    let fresh = || {
                        self.runtime.instantiate(
                            &stage.filter,
                            stage.settings.timeout_ms,
                            stage.settings.max_memory_mb,
                        )
                    };
                    let instance = match fresh().await {
                        // A slot may be momentarily unavailable (being
                        // decommitted): one more try before refusing.
                        Err(FilterError::Call {
                            hook: "instantiate",
                            message,
                            ..
                        }) => {
                            tracing::debug!(filter = %stage.filter.name, "instantiate failed, retrying: {message}");
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            fresh().await
                        }
                        other => other,
                    };
                    match instance {
                        Ok(inst) => {
                            let mut inst = Box::new(inst);
                            inst.configure(&stage.settings).await.map(|_| inst)
                        }
                        Err(e) => Err(e),
                    }
                }
            };
            match created {
                Ok(mut inst) => {
                    inst.set_request(Some(self.context.clone()));
                    self.slots[i] = Slot::Live(inst)
                }
                Err(FilterError::Call {
                    hook: "instantiate",
                    message,
                    ..
                }) => {
                    // Not the filter's fault: the instance pool is exhausted.
                    // Skipping the filter would silently drop a policy (rate
                    // limits!), so the request is refused instead.
                    self.slots[i] = Slot::Failed;
                    if probe {
                        self.verdict(i);
                        self.gw.stages[i].breaker.abandon();
                    }
                    let name = self.gw.stages[i].filter.name.clone();
                    tracing::warn!(filter = %name, "cannot instantiate: {message}");
                    return Err(GatewayError::unavailable(format!(
                        "gateway at capacity: cannot start filter '{name}'; retry shortly"
                    )));
                }
                Err(e) => return self.fail(i, e),
            }
        }
        let Slot::Live(inst) = &mut self.slots[i] else {
            return Ok(None);
        };
        let started = Instant::now();
        self.in_call = Some(i);
        let span = tracing::debug_span!(
            "filter",
            name = %self.gw.stages[i].filter.name,
            hook = %hook.name()
        );
        let result = inst.hook(hook).instrument(span).await;
        self.in_call = None;
        self.runtime.services.metrics.observe_filter_call(
            &self.gw.stages[i].filter.name,
            started.elapsed().as_micros() as u64,
        );
        match result {
            Ok(r) => {
                // A stateless filter keeps nothing of this request: its instance goes
                // back to the pool after each call, so a stream does not hold it.
                if self.gw.stages[i].filter.info.stateless
                    && let Slot::Live(mut inst) = std::mem::replace(&mut self.slots[i], Slot::Lent)
                {
                    inst.set_request(None);
                    inst.lent();
                    self.gw.stages[i].pool.give(inst);
                    // A probe that worked closes the circuit now: a stream or a session
                    // must not keep every other request out until it ends.
                    if probe {
                        self.verdict(i);
                        self.gw.stages[i].breaker.success();
                    }
                }
                Ok(Some(r))
            }
            Err(e) => self.fail(i, e),
        }
    }

    /// Takes a healthy instance out of this request (its filter is done
    /// with it), to be `recycle`d.
    pub(super) fn release(&mut self, i: usize) -> Option<(usize, Box<FilterInstance>)> {
        match std::mem::replace(&mut self.slots[i], Slot::Empty) {
            Slot::Live(mut inst) => {
                self.verdict(i);
                self.gw.stages[i].breaker.success();
                inst.set_request(None);
                Some((i, inst))
            }
            // A stateless filter whose calls all succeeded: its instance is in the pool.
            Slot::Lent => {
                self.verdict(i);
                self.gw.stages[i].breaker.success();
                None
            }
            other => {
                self.slots[i] = other;
                None
            }
        }
    }

    /// Resets a released instance for its next request (`configure`, which
    /// rebuilds the filter's state so nothing of this request is visible)
    /// and hands it to its stage's pool. Called once the response is on its
    /// way, so the reset is not on any request's path. An instance that
    /// cannot be reset is dropped; the next request starts a fresh one.
    pub(super) async fn recycle(
        gw: Arc<GatewayPipeline>,
        released: Vec<(usize, Box<FilterInstance>)>,
    ) {
        for (i, mut inst) in released {
            let stage = &gw.stages[i];
            // A stateless filter's instance keeps its configuration.
            if stage.filter.info.stateless {
                inst.lent();
                stage.pool.give(inst);
            } else if inst.configure(&stage.settings).await.is_ok() {
                stage.pool.give(inst);
            }
        }
    }

    /// Stage `i`'s probe (if this request is its probe) has its verdict.
    fn verdict(&mut self, i: usize) {
        self.probes.retain(|&p| p != i);
    }

    pub(super) fn fail<R>(&mut self, i: usize, e: FilterError) -> Result<Option<R>, GatewayError> {
        self.slots[i] = Slot::Failed;
        self.verdict(i);
        let stage = &self.gw.stages[i];
        self.runtime
            .services
            .metrics
            .count_filter_failure(&stage.filter.name);
        if stage.breaker.failure() {
            self.runtime
                .services
                .metrics
                .count_circuit_opened(&stage.filter.name);
            tracing::warn!(gateway = %self.gw.name, filter = %stage.filter.name, open_ms = stage.settings.circuit_open_ms, "filter failed {} requests in a row: circuit opened", stage.settings.circuit_failures);
        }
        stage.breaker.record(&self.request_id, &e.to_string());
        tracing::warn!(gateway = %self.gw.name, request_id = %self.request_id, on_error = ?stage.on_error, "{e}");
        match stage.on_error {
            OnError::Open => Ok(None),
            OnError::Closed => Err(GatewayError::filter_failed(e.public_message())),
        }
    }

    pub(super) fn bad_answer(&self, i: usize, hook: &'static str, message: String) -> FilterError {
        FilterError::Call {
            filter: self.gw.stages[i].filter.name.to_string(),
            hook,
            message,
        }
    }
}
