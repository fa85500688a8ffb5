//! The prompt-redaction filter: finds personal data and secrets in the text
//! of chat requests (OpenAI chat and legacy completions, Anthropic messages)
//! and, by `mode`:
//! - `mask` (default): replaces each value with a placeholder such as
//!   `[EMAIL_1]` before the body goes upstream;
//! - `restore`: masks, then puts the originals back into the response, whole
//!   JSON bodies and SSE streams alike (placeholders split across chunks and
//!   events included);
//! - `block`: answers 400 naming the entity types found (never the values);
//! - `flag`: changes nothing, reports what it found (log metadata and the `cf-aig-dlp`
//!   response header, `{"findings": […], "action": "FLAG"}`).
//!
//! `response = "flag"` or `"block"` also scans answers (DLP on answers): whole JSON answers
//! and SSE streams. `flag` reports (log metadata; the `cf-aig-dlp` header on a non-streamed
//! answer); `block` refuses: a non-streamed answer becomes a 400 with Cloudflare's code 2030 (in OpenAI's
//! or Anthropic's error shape, from the answer's own), a stream is held one window
//! (`window_chars`, default 800) at a time and a window with a finding ends it with an error
//! event instead.
//!
//! Entities: `email`, `phone`, `credit_card` (Luhn), `iban` (mod 97),
//! `ip_address` (v4 and v6), `secret` (provider key shapes, JWTs, PEM private
//! keys, high-entropy tokens), plus `custom` patterns.
//!
//! Config: `mode`, `entities` (default all), `custom = [{ name, pattern }]`,
//! `max_body_bytes` (default and at most 4 MiB; larger bodies get a 413, so
//! nothing passes unchecked). Bodies that are not JSON objects pass unchanged.
//! Per request it annotates the log entry with `redacted_<type> = <count>`
//! (or `redaction_blocked = <types>`, `dlp_request = <types>` in flag mode,
//! `dlp_response = <types>` and `dlp_response_action` for answers) and adds to the counters
//! `redactions`, `blocked`, `restored`, `flagged`, `response_flagged` and `response_blocked`. Put it before `cache` and `logging` in the
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

use aigw_plugin_sdk::answer::{self, Verdict, WindowScanner};
use aigw_plugin_sdk::chat::ChatRequest;
use aigw_plugin_sdk::host::{annotate, counter_add, edit_response_head};
use aigw_plugin_sdk::{
    BodyDecision, BodyMode, ChunkDecision, Filter, FilterInfo, HeaderEdits, LocalResponse, OnError,
    Response, ResponseDecision,
};
use config::{BUFFER_LIMIT, Mode, ResponseCheck};
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

/// How an answer is being scanned for findings.
#[derive(Debug)]
enum Scan {
    /// Not at all.
    Off,
    /// A whole (non-SSE) answer, collected to its end.
    Whole(Vec<u8>),
    /// An SSE answer, window by window.
    Stream(WindowScanner),
    /// A refused answer: the rest is dropped.
    Dropping,
}

/// The name of Cloudflare's DLP response header.
pub const DLP_HEADER: &str = "cf-aig-dlp";

/// The prompt-redaction filter for one request.
#[derive(Debug)]
pub struct PromptRedaction {
    mode: Mode,
    max_body_bytes: usize,
    response: ResponseCheck,
    window_chars: usize,
    detector: Rc<Detector>,
    /// Placeholders issued for this request (restore mode).
    placeholders: Placeholders,
    restorer: Option<Restorer>,
    /// Entity types found in the request (flag mode), for the `cf-aig-dlp` header.
    request_findings: Vec<String>,
    /// Entity types found in the answer so far.
    response_findings: Vec<String>,
    scan: Scan,
}

/// Cloudflare's code and message for a request refused by DLP.
const REQUEST_BLOCKED: (u32, &str) = (2029, "Request content blocked due to DLP policy violations");
/// Cloudflare's code and message for an answer refused by DLP.
const RESPONSE_BLOCKED: (u32, &str) = (
    2030,
    "Response content blocked due to DLP policy violations",
);

/// The `cf-aig-dlp` header in Cloudflare's shape: one finding per place checked, whose
/// profile's `entry_ids` are the entity types found, and the action.
fn dlp_header(request: &[String], response: &[String], action: &str) -> String {
    let findings: Vec<serde_json::Value> = [(request, "REQUEST"), (response, "RESPONSE")]
        .into_iter()
        .filter(|(found, _)| !found.is_empty())
        .map(|(found, check)| {
            serde_json::json!({
                "profile": {"context": {}, "entry_ids": found, "profile_id": "prompt-redaction"},
                "policy_ids": ["prompt-redaction"],
                "check": check,
            })
        })
        .collect();
    serde_json::json!({"findings": findings, "action": action}).to_string()
}

/// An error body in OpenAI's shape (or Anthropic's), with a numeric code.
fn error_body(anthropic: bool, message: &str, code: u32) -> serde_json::Value {
    if anthropic {
        serde_json::json!({"type": "error", "error": {
            "type": "invalid_request_error", "message": message, "code": code}})
    } else {
        serde_json::json!({"error": {
            "type": "dlp", "message": message, "code": code, "param": null}})
    }
}

impl PromptRedaction {
    fn blocked(&self, chat: &ChatRequest) -> Option<LocalResponse> {
        let names = self.names_in(chat);
        if names.is_empty() {
            return None;
        }
        annotate("redaction_blocked", &names.join(","));
        counter_add("blocked", 1);
        let mut r = LocalResponse::json(
            400,
            &serde_json::json!({"error": {
                "type": "prompt_blocked",
                "message": format!(
                    "{} (prompt-redaction: contains {})",
                    REQUEST_BLOCKED.1,
                    names.join(", ")
                ),
                "code": REQUEST_BLOCKED.0,
                "param": null,
            }}),
        );
        r.headers.push(aigw_plugin_sdk::Header {
            name: DLP_HEADER.into(),
            value: dlp_header(&names, &[], "BLOCK"),
        });
        Some(r)
    }

    /// The entity types found in the request's text, in rank order.
    fn names_in(&self, chat: &ChatRequest) -> Vec<String> {
        redact::kinds_in(&self.detector, chat)
            .iter()
            .map(|k| self.detector.name(*k).to_string())
            .collect()
    }

    /// The entity types found in `text`, in rank order.
    fn names_in_text(&self, text: &str) -> Vec<String> {
        let mut kinds: Vec<detect::Kind> = Vec::new();
        for f in self.detector.find(text) {
            if !kinds.contains(&f.kind) {
                kinds.push(f.kind);
            }
        }
        kinds.sort_by_key(|k| redact::rank(*k));
        kinds
            .iter()
            .map(|k| self.detector.name(*k).to_string())
            .collect()
    }

    /// Records findings in an answer (once per answer in the counters, every type in the
    /// log); true when the answer must be refused.
    fn answer_findings(&mut self, names: &[String]) -> bool {
        if names.is_empty() {
            return false;
        }
        let block = self.response == ResponseCheck::Block;
        if self.response_findings.is_empty() {
            counter_add(
                if block {
                    "response_blocked"
                } else {
                    "response_flagged"
                },
                1,
            );
        }
        for n in names {
            if !self.response_findings.contains(n) {
                self.response_findings.push(n.clone());
            }
        }
        annotate("dlp_response", &self.response_findings.join(","));
        annotate("dlp_response_action", if block { "block" } else { "flag" });
        block
    }

    fn refusal_message(names: &[String]) -> String {
        format!(
            "{} (prompt-redaction: contains {})",
            RESPONSE_BLOCKED.1,
            names.join(", ")
        )
    }

    /// The whole answer, scanned at its end: the bytes to pass on (the answer, or the error
    /// that replaces it).
    fn scan_whole(&mut self, body: Vec<u8>) -> Vec<u8> {
        let parsed = serde_json::from_slice::<serde_json::Value>(&body).ok();
        let text = match &parsed {
            Some(v) => answer::answer_text(v),
            None => String::from_utf8_lossy(&body).into_owned(),
        };
        let names = self.names_in_text(&text);
        let block = self.answer_findings(&names);
        if names.is_empty() && self.request_findings.is_empty() {
            return body;
        }
        let action = if block { "BLOCK" } else { "FLAG" };
        let header = HeaderEdits::default().set(
            DLP_HEADER,
            &dlp_header(&self.request_findings, &names, action),
        );
        if !block {
            let _ = edit_response_head(None, header);
            return body;
        }
        let message = Self::refusal_message(&names);
        let anthropic = parsed
            .as_ref()
            .is_some_and(|v| v.get("type").and_then(|t| t.as_str()) == Some("message"));
        let error = error_body(anthropic, &message, RESPONSE_BLOCKED.0);
        // Cloudflare answers a refused answer with a 400.
        if edit_response_head(Some(400), header) != Ok(true) {
            annotate("dlp_response_status_kept", "true");
        }
        self.scan = Scan::Dropping;
        error.to_string().into_bytes()
    }

    /// Puts placeholders back (restore mode).
    fn restore(&mut self, data: Vec<u8>, end_of_stream: bool) -> Vec<u8> {
        let Some(restorer) = &mut self.restorer else {
            return data;
        };
        let ph = &self.placeholders;
        let (out, restored) = match restorer {
            Restorer::Body(r) => (r.push(&data, end_of_stream, ph), &mut r.restored),
            Restorer::Sse(r) => (r.push(&data, end_of_stream, ph), &mut r.restored),
        };
        if end_of_stream && *restored > 0 {
            counter_add("restored", *restored as u64);
            *restored = 0;
        }
        out
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
            response: config.response,
            window_chars: config.window_chars,
            detector: Detector::cached(&config)?,
            placeholders: Placeholders::default(),
            restorer: None,
            request_findings: Vec::new(),
            response_findings: Vec::new(),
            scan: Scan::Off,
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
        if self.mode == Mode::Flag {
            let names = self.names_in(&chat);
            if !names.is_empty() {
                annotate("dlp_request", &names.join(","));
                counter_add("flagged", 1);
                self.request_findings = names;
            }
            return BodyDecision::Continue;
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
        let encoded = resp
            .headers
            .get("content-encoding")
            .is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity"));
        let content_type = resp
            .headers
            .get("content-type")
            .unwrap_or("")
            .to_ascii_lowercase();
        let sse = content_type.starts_with("text/event-stream");
        self.scan = if self.response == ResponseCheck::Off || !(200..300).contains(&resp.status) {
            Scan::Off
        } else if encoded {
            if self.response == ResponseCheck::Block {
                // Compressed bytes cannot be read: they must not pass unread.
                return ResponseDecision::Respond(LocalResponse::error(
                    502,
                    "dlp",
                    "prompt-redaction cannot read a compressed answer (content-encoding); ask the provider for identity",
                ));
            }
            Scan::Off
        } else if sse && self.response == ResponseCheck::Flag {
            Scan::Stream(WindowScanner::watching())
        } else if sse {
            Scan::Stream(WindowScanner::default())
        } else {
            Scan::Whole(Vec::new())
        };
        let mut edits = HeaderEdits::default();
        if !self.request_findings.is_empty() {
            edits = edits.set(DLP_HEADER, &dlp_header(&self.request_findings, &[], "FLAG"));
        }
        if self.placeholders.is_empty() {
            return ResponseDecision::Continue(edits);
        }
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
            return ResponseDecision::Continue(edits);
        }
        // Restoring changes the length. (The host already drops the header
        // whenever a body filter runs; this keeps the filter correct alone.)
        ResponseDecision::Continue(edits.remove("content-length"))
    }

    fn on_response_body(&mut self, chunk: &[u8], end_of_stream: bool) -> ChunkDecision {
        if matches!(self.scan, Scan::Off) && self.restorer.is_none() {
            return ChunkDecision::Continue;
        }
        // Findings are looked for in the answer as the provider wrote it, before restoring.
        let scanned = match std::mem::replace(&mut self.scan, Scan::Off) {
            Scan::Off => chunk.to_vec(),
            Scan::Dropping => {
                self.scan = Scan::Dropping;
                return ChunkDecision::Hold;
            }
            Scan::Whole(mut body) => {
                body.extend_from_slice(chunk);
                if !end_of_stream && body.len() <= self.max_body_bytes {
                    self.scan = Scan::Whole(body);
                    return ChunkDecision::Hold;
                }
                if !end_of_stream && self.response == ResponseCheck::Block {
                    // Too large to judge whole: refused rather than passed unread.
                    annotate("dlp_response_action", "block");
                    annotate("dlp_response", "over_max_body_bytes");
                    counter_add("response_blocked", 1);
                    self.scan = Scan::Dropping;
                    return ChunkDecision::Replace(
                        LocalResponse::error(
                            502,
                            "dlp",
                            &format!(
                                "the answer is over prompt-redaction's max_body_bytes ({}) and cannot be checked",
                                self.max_body_bytes
                            ),
                        )
                        .body,
                    );
                }
                // At its end (or, only flagging, too large to hold: judged as far as read).
                let out = self.scan_whole(body);
                if matches!(self.scan, Scan::Dropping) {
                    return ChunkDecision::Replace(out);
                }
                out
            }
            Scan::Stream(mut scanner) => {
                let window = self.window_chars;
                let out = scanner.push(chunk, end_of_stream, window, &mut |text, at| {
                    let names = self.names_in_text(text);
                    if !self.answer_findings(&names) {
                        return Verdict::Pass;
                    }
                    annotate("dlp_response_at", &at.to_string());
                    Verdict::Block {
                        message: Self::refusal_message(&names),
                        code: RESPONSE_BLOCKED.0,
                    }
                });
                if scanner.blocked() && self.response == ResponseCheck::Block {
                    self.scan = Scan::Dropping;
                    return ChunkDecision::Replace(out);
                }
                self.scan = Scan::Stream(scanner);
                out
            }
        };
        let out = self.restore(scanned, end_of_stream);
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
