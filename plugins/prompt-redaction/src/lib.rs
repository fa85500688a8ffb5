//! The prompt-redaction filter: finds personal data and secrets in the text
//! of chat requests (OpenAI chat and legacy completions, Anthropic messages)
//! and, by `mode`:
//! - `mask` (default): replaces each value with a placeholder such as
//!   `[EMAIL_1]` before the body goes upstream;
//! - `restore`: masks, then puts the originals back into the response, whole
//!   JSON bodies and SSE streams alike (placeholders split across chunks and
//!   events included);
//! - `block`: answers 400 naming the entity types found (never the values).
//!
//! Entities: `email`, `phone`, `credit_card` (Luhn), `iban` (mod 97),
//! `ip_address` (v4 and v6), `secret` (provider key shapes, JWTs, PEM private
//! keys, high-entropy tokens), plus `custom` patterns.
//!
//! Config: `mode`, `entities` (default all), `custom = [{ name, pattern }]`,
//! `max_body_bytes` (default and at most 4 MiB; larger bodies get a 413, so
//! nothing passes unchecked). Bodies that are not JSON objects pass unchanged.
//! Per request it annotates the log entry with `redacted_<type> = <count>`
//! (or `redaction_blocked = <types>`) and adds to the counters `redactions`,
//! `blocked` and `restored`. Put it before `cache` and `logging` in the
//! pipeline so that both see the redacted body, and give it
//! `on_error = "closed"`: a failure must not let the prompt through.
//! Scanning costs about 0.3 ms for a 2 KB chat and 30–40 ms per MB (wasm):
//! the default 50 ms hook timeout fits bodies up to about 1 MB; raise
//! `timeout_ms` (e.g. to 250) when larger prompts are expected.

mod config;
mod detect;
mod redact;
mod restore;
mod sse;

use aigw_plugin_sdk::chat::ChatRequest;
use aigw_plugin_sdk::host::{annotate, counter_add};
use aigw_plugin_sdk::{
    BodyDecision, BodyMode, ChunkDecision, Filter, FilterInfo, HeaderEdits, LocalResponse, OnError,
    Response, ResponseDecision,
};
use config::{BUFFER_LIMIT, Mode};
use detect::Detector;
use restore::{BodyRestorer, Placeholders};
use sse::SseRestorer;
use std::rc::Rc;

/// How the response of a restoring request is being rewritten.
#[derive(Debug)]
enum Restorer {
    /// A JSON (or other non-SSE text) body: plain placeholder replacement.
    Body(BodyRestorer),
    /// An SSE stream: per-event text deltas.
    Sse(SseRestorer),
}

/// The prompt-redaction filter for one request.
#[derive(Debug)]
pub struct PromptRedaction {
    mode: Mode,
    max_body_bytes: usize,
    detector: Rc<Detector>,
    /// Placeholders issued for this request (restore mode).
    placeholders: Placeholders,
    restorer: Option<Restorer>,
}

impl PromptRedaction {
    fn blocked(&self, chat: &ChatRequest) -> Option<LocalResponse> {
        let kinds = redact::kinds_in(&self.detector, chat);
        if kinds.is_empty() {
            return None;
        }
        let names: Vec<&str> = kinds.iter().map(|k| self.detector.name(*k)).collect();
        annotate("redaction_blocked", &names.join(","));
        counter_add("blocked", 1);
        Some(LocalResponse::error(
            400,
            "prompt_blocked",
            &format!(
                "request blocked by prompt-redaction: contains {}",
                names.join(", ")
            ),
        ))
    }
}

impl Filter for PromptRedaction {
    fn describe() -> FilterInfo {
        // Response hooks are declared for every mode (describe cannot see the
        // config); outside restore mode they return at once. A failure must never
        // send an unredacted prompt upstream: closed.
        FilterInfo::new()
            .on_request_body(BodyMode::Buffered(BUFFER_LIMIT as u32))
            .on_response_headers()
            .on_response_body(BodyMode::Streaming)
            .on_error(OnError::Closed)
    }

    fn configure(config: serde_json::Value) -> Result<Self, String> {
        let config = config::parse(&config)?;
        Ok(PromptRedaction {
            mode: config.mode,
            max_body_bytes: config.max_body_bytes,
            detector: Detector::cached(&config)?,
            placeholders: Placeholders::default(),
            restorer: None,
        })
    }

    fn on_request_body(&mut self, body: &[u8]) -> BodyDecision {
        if body.len() > self.max_body_bytes {
            return BodyDecision::Respond(LocalResponse::error(
                413,
                "payload_too_large",
                &format!(
                    "request body of {} bytes is over prompt-redaction's max_body_bytes ({})",
                    body.len(),
                    self.max_body_bytes
                ),
            ));
        }
        let Ok(mut chat) = ChatRequest::parse(body) else {
            return BodyDecision::Continue;
        };
        if self.mode == Mode::Block {
            return match self.blocked(&chat) {
                Some(r) => BodyDecision::Respond(r),
                None => BodyDecision::Continue,
            };
        }
        let redaction = redact::redact_chat(&self.detector, &mut chat, body);
        if redaction.total() == 0 {
            return BodyDecision::Continue;
        }
        for (name, n) in redaction.counts(&self.detector) {
            annotate(&format!("redacted_{name}"), &n.to_string());
        }
        counter_add("redactions", redaction.total());
        if self.mode == Mode::Restore {
            self.placeholders = redaction.placeholders;
        }
        BodyDecision::Replace(chat.to_bytes())
    }

    fn on_response_headers(&mut self, resp: &Response) -> ResponseDecision {
        // A retried attempt starts over.
        self.restorer = None;
        if self.placeholders.is_empty() {
            return ResponseDecision::proceed();
        }
        let encoded = resp
            .headers
            .get("content-encoding")
            .is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity"));
        let content_type = resp
            .headers
            .get("content-type")
            .unwrap_or("")
            .to_ascii_lowercase();
        self.restorer = if encoded {
            None
        } else if content_type.starts_with("text/event-stream") {
            Some(Restorer::Sse(SseRestorer::default()))
        } else if content_type.contains("json") || content_type.starts_with("text/") {
            Some(Restorer::Body(BodyRestorer::default()))
        } else {
            None
        };
        if self.restorer.is_none() {
            return ResponseDecision::proceed();
        }
        // Restoring changes the length. (The host already drops the header
        // whenever a body filter runs; this keeps the filter correct alone.)
        ResponseDecision::Continue(HeaderEdits::default().remove("content-length"))
    }

    fn on_response_body(&mut self, chunk: &[u8], end_of_stream: bool) -> ChunkDecision {
        let Some(restorer) = &mut self.restorer else {
            return ChunkDecision::Continue;
        };
        let ph = &self.placeholders;
        let (out, restored) = match restorer {
            Restorer::Body(r) => (r.push(chunk, end_of_stream, ph), &mut r.restored),
            Restorer::Sse(r) => (r.push(chunk, end_of_stream, ph), &mut r.restored),
        };
        if end_of_stream && *restored > 0 {
            counter_add("restored", *restored as u64);
            *restored = 0;
        }
        if out == chunk {
            ChunkDecision::Continue
        } else if out.is_empty() {
            ChunkDecision::Hold
        } else {
            ChunkDecision::Replace(out)
        }
    }
}

aigw_plugin_sdk::export_filter!(PromptRedaction);

#[cfg(test)]
mod tests;
