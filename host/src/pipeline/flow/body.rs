//! The response body task of one request: streams the body (upstream or
//! local) through the response-body hooks to the client, ends broken or
//! stalled streams explicitly, then builds the summary, feeds metrics and
//! calls the done hooks.

use super::{BodySource, Exchange, Slot, error_chain};
use crate::http::body::BodyError;
use crate::http::error::GatewayError;
use crate::providers::stream_end::StreamEnd;
use crate::providers::usage::UsageReader;
use crate::runtime::bindings::types::{BodyMode, ChunkDecision, Header, Hooks, Outcome, Summary};
use crate::runtime::host::{Accounting, RequestContext};
use crate::runtime::instance::{Answer, Hook};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Body as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub(super) struct BodyTask {
    pub(super) ex: Exchange,
    pub(super) body_stages: Vec<usize>,
    pub(super) buffers: Vec<(usize, Vec<u8>)>,
    pub(super) usage: UsageReader,
    pub(super) streamed: bool,
    /// The answer is an AWS event stream (Bedrock ConverseStream): streamed too, but binary, so
    /// a broken one gets no SSE error event.
    pub(super) binary_stream: bool,
    pub(super) status: u16,
    pub(super) outcome: Outcome,
    pub(super) response_bytes: u64,
    /// Response headers for the summary (only gathered when a filter has a
    /// done hook to see them).
    pub(super) response_headers: Vec<Header>,
    /// The answer came from a cache (`cf-aig-cache-status: HIT`).
    pub(super) cached: bool,
    pub(super) usage_filter: Option<crate::providers::usage::UsageChunkFilter>,
    /// For an SSE answer: whether its terminal event has reached the client. After it, a client
    /// that leaves has the whole answer: the provider is read to its end for the filters and
    /// the request is logged as completed.
    pub(super) stream_end: Option<StreamEnd>,
    /// The client left after the terminal event; the rest is read but not sent.
    pub(super) client_done: bool,
    /// Chunks the client's connection has taken from the channel (set when streaming).
    pub(super) taken: Option<Arc<AtomicU64>>,
    /// Chunks put in the channel.
    pub(super) sent_chunks: u64,
    /// The chunk (by count) that completed the terminal event: once the connection has taken
    /// it, a client that leaves had the whole answer.
    pub(super) marker_chunk: Option<u64>,
    /// When the provider began to be read after the terminal event.
    pub(super) tail_started: Option<Instant>,
}

/// Longest the provider is read after the client had the terminal event and left (a provider
/// that keeps its body open after the end of its answer is not waited for).
const TAIL_AFTER_END: Duration = Duration::from_secs(5);

impl BodyTask {
    /// The end of a request whose client left before any answer: logged as
    /// `ClientAborted` with the status it would have had (499, client closed
    /// the request, when none was known yet).
    pub(super) fn abandoned(ex: Exchange) -> BodyTask {
        BodyTask {
            status: ex.answer_status,
            ex,
            body_stages: Vec::new(),
            buffers: Vec::new(),
            usage: UsageReader::for_content_type(None),
            streamed: false,
            binary_stream: false,
            outcome: Outcome::ClientAborted,
            response_bytes: 0,
            response_headers: Vec::new(),
            cached: false,
            usage_filter: None,
            stream_end: None,
            client_done: false,
            taken: None,
            sent_chunks: 0,
            marker_chunk: None,
            tail_started: None,
        }
    }

    /// Whether the client was handed the terminal event: the connection took the chunk that
    /// completed it (a chunk still queued when the client left does not count).
    fn client_had_end(&self) -> bool {
        match (self.marker_chunk, &self.taken) {
            (Some(marker), Some(taken)) => taken.load(Ordering::Acquire) >= marker,
            _ => false,
        }
    }

    pub(super) async fn run(
        mut self,
        body: BodySource,
        tx: mpsc::Sender<Result<Bytes, BodyError>>,
    ) {
        match body {
            BodySource::Bytes(b) => {
                self.forward(b, true, &tx).await;
            }
            BodySource::Upstream(mut incoming) => loop {
                let complete = self.marker_chunk.is_some();
                let next = if complete {
                    // The terminal event is sent: the client may leave. Read on regardless, for
                    // the filters, but not for long.
                    let tail_started = *self.tail_started.get_or_insert_with(Instant::now);
                    let left = TAIL_AFTER_END.saturating_sub(tail_started.elapsed());
                    match tokio::time::timeout(left, self.next_data(&mut incoming)).await {
                        Ok(next) => Some(next),
                        Err(_) => Some(Err(("tail_timeout", String::new()))),
                    }
                } else {
                    tokio::select! {
                        next = self.next_data(&mut incoming) => Some(next),
                        _ = tx.closed() => None,
                    }
                };
                match next {
                    // The client went away while the upstream was quiet.
                    None => {
                        self.outcome = Outcome::ClientAborted;
                        break;
                    }
                    Some(Ok(Some((data, end)))) => {
                        if !self.forward(data, end, &tx).await || end {
                            break;
                        }
                    }
                    Some(Ok(None)) => {
                        self.forward(Bytes::new(), true, &tx).await;
                        break;
                    }
                    // After the terminal event a stalled or broken end of body does not undo a
                    // complete answer: the filters get their end of stream, the client its close.
                    Some(Err(_)) if complete => {
                        self.outcome = Outcome::Completed;
                        self.forward(Bytes::new(), true, &tx).await;
                        break;
                    }
                    Some(Err((kind, msg))) => {
                        self.fail_stream(&tx, kind, &msg).await;
                        break;
                    }
                }
            },
        }
        drop(tx);
        self.done().await;
    }

    /// Reads a body of known, small length whole and runs it through the
    /// body hooks before anything is sent, so the client gets one response
    /// with its true length (one write, no channel). `Err((sent, reason))`:
    /// the upstream broke, stalled or a closed filter failed; the client gets
    /// `sent` and then an abort, never a clean short body.
    pub(super) async fn collect(&mut self, body: BodySource) -> Result<Bytes, (Bytes, String)> {
        let mut out = Vec::new();
        match body {
            BodySource::Bytes(b) => self.push(b, true, &mut out).await?,
            BodySource::Upstream(mut incoming) => loop {
                match self.next_data(&mut incoming).await {
                    Ok(Some((data, end))) => {
                        self.push(data, end, &mut out).await?;
                        if end {
                            break;
                        }
                    }
                    Ok(None) => {
                        self.push(Bytes::new(), true, &mut out).await?;
                        break;
                    }
                    Err((_, msg)) => return Err((joined(out), msg)),
                }
            },
        }
        Ok(joined(out))
    }

    /// The next bytes of an upstream body and whether they end it (the last
    /// bytes carry the end of the stream: one body-hook call instead of two);
    /// `None`: it ended with no more bytes. `Err((kind, message))`: it stalled
    /// past `stream_idle_timeout_ms` or broke; the outcome is set and the
    /// cause logged.
    async fn next_data(
        &mut self,
        incoming: &mut hyper::body::Incoming,
    ) -> Result<Option<(Bytes, bool)>, (&'static str, String)> {
        let idle = Duration::from_millis(self.ex.stream_idle_timeout_ms);
        loop {
            let failure = match tokio::time::timeout(idle, incoming.frame()).await {
                Ok(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => return Ok(Some((data, incoming.is_end_stream()))),
                    Err(_) => continue,
                },
                Ok(None) => return Ok(None),
                Err(_) => (
                    "stream_idle_timeout",
                    format!(
                        "the provider sent nothing for {} ms (server.stream_idle_timeout_ms)",
                        self.ex.stream_idle_timeout_ms
                    ),
                ),
                Ok(Some(Err(e))) => (
                    "upstream_stream_error",
                    format!("upstream stream broke: {}", error_chain(&e)),
                ),
            };
            self.outcome = Outcome::UpstreamError;
            tracing::warn!(request_id = %self.ex.request_id, "{}", failure.1);
            return Err(failure);
        }
    }

    /// `collect`'s step: one chunk through the body hooks into `out`.
    async fn push(
        &mut self,
        chunk: Bytes,
        eos: bool,
        out: &mut Vec<Bytes>,
    ) -> Result<(), (Bytes, String)> {
        // Usage is read from what the provider sent, before filters rewrite or withhold it
        // (a guardrail that ends an answer early still pays for what was generated).
        self.usage.feed(&chunk);
        match self.through_filters(chunk, eos).await {
            Ok(data) if data.is_empty() => Ok(()),
            Ok(data) => {
                self.response_bytes += data.len() as u64;
                out.push(data);
                Ok(())
            }
            Err(e) => {
                self.outcome = Outcome::FilterFailed;
                Err((joined(std::mem::take(out)), e.message))
            }
        }
    }

    /// Ends a broken response: an SSE client first gets an explicit `error`
    /// event, then every client sees the stream abort (never a clean end).
    async fn fail_stream(
        &mut self,
        tx: &mpsc::Sender<Result<Bytes, BodyError>>,
        kind: &str,
        msg: &str,
    ) {
        if self.streamed {
            let event = format!(
                "event: error\ndata: {}\n\n",
                serde_json::json!({"error": {"type": kind, "message": msg}})
            );
            self.response_bytes += event.len() as u64;
            let _ = tx.send(Ok(Bytes::from(event))).await;
            // Let the connection write the event before the abort discards
            // whatever is still buffered (bounded wait).
            let started = Instant::now();
            while tx.capacity() < tx.max_capacity()
                && started.elapsed() < Duration::from_millis(500)
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = tx.send(Err(msg.to_string().into())).await;
    }

    /// Runs a chunk through the body hooks and sends the result. False when
    /// the stream must stop (client gone, or a closed filter failed).
    async fn forward(
        &mut self,
        chunk: Bytes,
        eos: bool,
        tx: &mpsc::Sender<Result<Bytes, BodyError>>,
    ) -> bool {
        // Usage is read from what the provider sent, before filters rewrite or withhold it.
        if !chunk.is_empty() {
            self.usage.feed(&chunk);
        }
        let data = match self.through_filters(chunk, eos).await {
            Ok(d) => d,
            Err(e) => {
                self.outcome = Outcome::FilterFailed;
                let _ = tx.send(Err(e.message.into())).await;
                return false;
            }
        };
        let data = match &mut self.usage_filter {
            Some(f) => Bytes::from(f.push(&data, eos)),
            None => data,
        };
        if data.is_empty() || self.client_done {
            return true;
        }
        let sent = data.clone();
        if tx.send(Ok(data)).await.is_err() {
            if self.client_had_end() {
                // Gone after taking the terminal event: complete. Keep reading for the filters.
                self.client_done = true;
                return true;
            }
            self.outcome = Outcome::ClientAborted;
            return false;
        }
        self.sent_chunks += 1;
        if let Some(end) = &mut self.stream_end
            && !end.seen()
        {
            end.feed(&sent);
            if end.seen() {
                self.marker_chunk = Some(self.sent_chunks);
            }
        }
        self.response_bytes += sent.len() as u64;
        true
    }

    async fn through_filters(&mut self, chunk: Bytes, eos: bool) -> Result<Bytes, GatewayError> {
        let mut data = chunk;
        for idx in 0..self.body_stages.len() {
            let i = self.body_stages[idx];
            let failed = matches!(self.ex.slots[i], Slot::Failed);
            match self.ex.gw.stages[i].filter.info.response_body {
                BodyMode::Ignore => {}
                BodyMode::Streaming => {
                    if failed || (data.is_empty() && !eos) {
                        continue;
                    }
                    let input = data.clone();
                    match self.ex.call(i, Hook::ResponseBody(&input, eos)).await? {
                        Some(Answer::Chunk(ChunkDecision::Replace(b))) => data = Bytes::from(b),
                        Some(Answer::Chunk(ChunkDecision::Hold)) => data = Bytes::new(),
                        _ => {}
                    }
                }
                BodyMode::Buffered(max) => {
                    let pos = match self.buffers.iter().position(|(s, _)| *s == i) {
                        Some(p) => p,
                        None => {
                            self.buffers.push((i, Vec::new()));
                            self.buffers.len() - 1
                        }
                    };
                    let buf = &mut self.buffers[pos].1;
                    buf.extend_from_slice(&data);
                    if failed {
                        data = Bytes::from(std::mem::take(buf));
                        continue;
                    }
                    if buf.len() > max as usize {
                        let len = buf.len();
                        let err = self.ex.bad_answer(
                            i,
                            "on-response-body",
                            format!("response body of {len}+ bytes is over the filter's buffered limit of {max}"),
                        );
                        self.ex.fail::<()>(i, err)?;
                        data = Bytes::from(std::mem::take(&mut self.buffers[pos].1));
                        continue;
                    }
                    if !eos {
                        data = Bytes::new();
                        continue;
                    }
                    let whole = std::mem::take(buf);
                    data = match self.ex.call(i, Hook::ResponseBody(&whole, true)).await? {
                        Some(Answer::Chunk(ChunkDecision::Replace(b))) => Bytes::from(b),
                        Some(Answer::Chunk(ChunkDecision::Hold)) => Bytes::new(),
                        _ => Bytes::from(whole),
                    };
                }
            }
        }
        Ok(data)
    }

    /// Builds the summary, feeds metrics, and calls every `done` hook.
    pub(super) async fn done(mut self) {
        let usage = self.usage.finish();
        let metrics = &self.ex.runtime.services.metrics;
        metrics.count_status(self.status);
        metrics
            .tokens_in
            .fetch_add(usage.tokens_in.unwrap_or(0) as u64, Ordering::Relaxed);
        metrics
            .tokens_out
            .fetch_add(usage.tokens_out.unwrap_or(0) as u64, Ordering::Relaxed);
        let cached = self.cached;
        let cost = self.ex.config.prices.cost_at(
            &self.ex.provider,
            self.ex.model.as_deref(),
            &self.ex.path,
            &usage,
        );
        let ex = &mut self.ex;
        // A WebSocket session that ran is a success too (101, Switching Protocols).
        let success = ((200..300).contains(&self.status) || self.status == 101)
            && matches!(self.outcome, Outcome::Completed | Outcome::RespondedLocally);
        // A provider's successful answer whose cost cannot be known: counted, never guessed.
        if cost.is_none()
            && !cached
            && self.outcome == Outcome::Completed
            && success
            && (ex.method == "POST" || self.status == 101)
            && ex.model.is_some()
        {
            ex.runtime.services.metrics.count_unpriced(
                &ex.provider,
                ex.model.as_deref(),
                usage.tokens_in.is_some(),
            );
        }
        RequestContext::set_accounting(
            &ex.context,
            Accounting {
                usage,
                price_catalog: cost.map(|_| ex.config.prices.version().to_string()),
            },
        );
        let mut summary = Summary {
            request_id: ex.request_id.clone(),
            created_at_ms: ex.created_at_ms,
            account: ex.account.clone(),
            gateway: ex.gw.name.clone(),
            provider: ex.provider.clone(),
            method: ex.method.clone(),
            path: ex.path.clone(),
            model: ex.model.clone(),
            status: self.status,
            outcome: self.outcome,
            success,
            cached,
            streamed: self.streamed || self.binary_stream,
            tokens_in: usage.tokens_in,
            tokens_out: usage.tokens_out,
            tokens_cached: usage.tokens_cached,
            tokens_reasoning: usage.tokens_reasoning,
            cost,
            duration_ms: ex.started.elapsed().as_millis().min(u32::MAX as u128) as u32,
            attempts: ex.attempts,
            request_bytes: ex.request_bytes,
            response_bytes: self.response_bytes,
            request_headers: std::mem::take(&mut ex.request_headers),
            response_headers: std::mem::take(&mut self.response_headers),
        };
        ex.runtime.services.metrics.observe_request(
            &summary.gateway,
            &summary.provider,
            summary.model.as_deref().unwrap_or(""),
            summary.duration_ms as u64,
            cached,
            if cached { Some(0.0) } else { cost },
        );
        if let Some(c) = RequestContext::consumer(&ex.context) {
            let metrics = &ex.runtime.services.metrics;
            metrics.observe_key(
                &c.key_id,
                c.team.as_deref(),
                if cached { Some(0.0) } else { cost },
            );
        }
        if let Some(otlp) = &ex.runtime.services.otlp {
            otlp.record(&summary, ex.traceparent.as_deref());
        }
        ex.span.record("status", summary.status);
        ex.span.record("cache", if cached { "HIT" } else { "MISS" });
        tracing::debug!(
            outcome = ?summary.outcome, duration_ms = summary.duration_ms,
            tokens_in = summary.tokens_in, tokens_out = summary.tokens_out, "request done"
        );
        for i in 0..ex.gw.stages.len() {
            if ex.wants(i, Hooks::DONE) {
                let _ = ex.call(i, Hook::Done(&mut summary)).await;
            }
        }
        // Reservations a filter left open (it failed, or forgot), charged as the SDK's
        // `budget::charge` does: nothing without a provider call, a cache hit or a provider
        // error without usage; the exact cost of a completed answer; at least the hold when
        // the answer did not complete or its cost is unknown.
        let spend = &ex.runtime.services.spend;
        for id in RequestContext::take_reservations(&ex.context) {
            let held = spend.held(id).unwrap_or(0);
            let cost = summary.cost.map(crate::store::spend::nanos_up);
            let ok = (200..300).contains(&summary.status);
            let charge = match (summary.outcome, cost) {
                _ if ex.attempts == 0 || summary.cached => 0,
                (Outcome::Completed, Some(c)) => c,
                (Outcome::Completed, None) if !ok => 0,
                (Outcome::Completed, None) => held,
                (Outcome::ClientAborted, c) => c.unwrap_or(0).max(held),
                (_, c) if ok => c.unwrap_or(0).max(held),
                (_, c) => c.unwrap_or(0),
            };
            spend.finish(id, charge).await;
        }
        let released: Vec<_> = (0..ex.slots.len()).filter_map(|i| ex.release(i)).collect();
        Exchange::recycle(ex.gw.clone(), released).await;
    }
}

/// Chunks as one `Bytes` (no copy for the usual single chunk).
fn joined(mut chunks: Vec<Bytes>) -> Bytes {
    match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().unwrap_or_default(),
        _ => Bytes::from(chunks.concat()),
    }
}
