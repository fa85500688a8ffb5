//! The guardrails filter: classifies each prompt before it goes upstream and each answer as
//! it comes back (streamed answers window by window, without buffering them), and per
//! category and direction flags, blocks or ignores what the classifier flags.
//!
//! Classifiers (`classifier`): `openai-moderation` (any service with OpenAI's `/moderations`
//! shape), `llama-guard` (a Llama-Guard-style model behind a chat completions endpoint, its
//! `unsafe` / `S1,S10` answer parsed) or `local` (the filter's own prompt-injection patterns,
//! no network). The first two are reached through the filter's `allow_http` grant.
//!
//! - A blocked prompt is answered 424 before any provider is called, with Cloudflare's code
//!   2016, in the caller's error shape (OpenAI or Anthropic).
//! - A blocked non-streamed answer becomes a 424 with code 2017 (when the host still holds
//!   the head; otherwise the body alone becomes the error).
//! - A streamed answer is held one window (`window_chars` of text) at a time: a window that
//!   passes goes out, one that blocks ends the stream with an error event in the caller's
//!   protocol. Time to first byte grows by at most one window and its classification.
//! - Flags go to the log entry (`guardrails_prompt_action`, `guardrails_prompt_categories`,
//!   the same for `response`, summed over an answer's windows; `guardrails_response_at` and
//!   `guardrails_response_end` (`blocked` or `refused`) for where and why an answer was cut)
//!   and to the `aigw-guardrails` response header: a prompt's flags, and a non-streamed
//!   answer's while its head is held (a streamed answer's head is sent before its text).
//! - A classifier that fails or times out (`http_timeout_ms`) refuses the request under
//!   `on_error = "closed"` (the default: 503 with Cloudflare's code 7013, or an error event
//!   mid-stream) where some category could have been blocked, and otherwise lets it
//!   through under `"open"`; either way `guardrails_prompt_error` (or `_response_error`) is
//!   logged and `classifier_errors` counted.
//!
//! Counters: `prompt_flagged`, `prompt_blocked`, `response_flagged`, `response_blocked`,
//! `classifier_errors`.

mod classify;
mod config;
mod local;

use aigw_plugin_sdk::answer::{self, Verdict, WindowScanner};
use aigw_plugin_sdk::chat::ChatRequest;
use aigw_plugin_sdk::host::{annotate, counter_add, edit_response_head, on_error_setting};
use aigw_plugin_sdk::{
    BodyDecision, BodyMode, ChunkDecision, Decision, Filter, FilterInfo, HeaderEdits,
    LocalResponse, OnError, Request, Response, ResponseDecision,
};
use config::{Action, BUFFER_LIMIT, Config, Direction};
use serde_json::{Value, json};
use std::rc::Rc;

pub use classify::{llama_guard_categories, moderation_categories};
pub use local::is_injection;

/// The response header that names a flagged prompt's categories.
pub const FLAGS_HEADER: &str = "aigw-guardrails";
/// Cloudflare's code for a guardrail scanner that could not be reached.
const UNAVAILABLE: u32 = 7013;
/// Longest prompt context handed to Llama Guard with an answer.
const CONTEXT_CHARS: usize = 4_000;

/// Which API the caller speaks (for the shape of errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Caller {
    #[default]
    OpenAi,
    Anthropic,
}

/// How the answer is being read.
#[derive(Debug)]
enum Reading {
    /// Not at all.
    Off,
    /// A whole JSON answer, collected.
    Whole(Vec<u8>),
    /// An event stream, window by window.
    Stream(WindowScanner),
    /// An answer that was refused: the rest of it is dropped.
    Dropping,
}

/// The guardrails filter for one request.
#[derive(Debug)]
pub struct Guardrails {
    config: Rc<Config>,
    closed: bool,
    caller: Caller,
    /// The conversation's text, for classifying an answer in context.
    prompt: String,
    /// Categories a flagged prompt raised, for the response header.
    prompt_flags: Vec<String>,
    /// What the answer's windows raised so far: the categories (each once) and the strongest
    /// action, so the log entry names all of them and the counters count an answer once.
    response_flags: Vec<String>,
    response_action: Option<Action>,
    reading: Reading,
}

/// What the filter decided about one text.
enum Outcome {
    Pass,
    Flagged(Vec<String>),
    Blocked(Vec<String>),
    /// The classifier failed and `on_error` is closed.
    Refused,
}

impl Guardrails {
    /// Classifies `text` and applies the actions: annotations and counters, and what to do.
    fn judge(&mut self, text: &str, direction: Direction) -> Outcome {
        let d = direction.name();
        let categories =
            match classify::classify(&self.config.classifier, text, direction, &self.prompt) {
                Ok(c) => c,
                Err(e) => {
                    counter_add("classifier_errors", 1);
                    annotate(&format!("guardrails_{d}_error"), &e);
                    // As Cloudflare does: a classifier that cannot be reached refuses only
                    // where something could have been blocked.
                    return if self.closed && self.config.can_block(direction) {
                        Outcome::Refused
                    } else {
                        Outcome::Pass
                    };
                }
            };
        let acted: Vec<(String, Action)> = categories
            .into_iter()
            .map(|c| {
                let a = self.config.action(&c, direction);
                (c, a)
            })
            .filter(|(_, a)| *a != Action::Ignore)
            .collect();
        let Some(strongest) = acted.iter().map(|(_, a)| *a).max() else {
            return Outcome::Pass;
        };
        let names: Vec<String> = acted.into_iter().map(|(c, _)| c).collect();
        // An answer is judged window by window: its log fields and counters are the answer's,
        // not the last window's.
        let (logged, before) = match direction {
            Direction::Prompt => (names.clone(), None),
            Direction::Response => {
                for n in &names {
                    if !self.response_flags.contains(n) {
                        self.response_flags.push(n.clone());
                    }
                }
                let before = self.response_action;
                self.response_action = before.max(Some(strongest));
                (self.response_flags.clone(), before)
            }
        };
        let overall = before.map_or(strongest, |b| b.max(strongest));
        annotate(&format!("guardrails_{d}_action"), overall.name());
        annotate(&format!("guardrails_{d}_categories"), &logged.join(","));
        if before != Some(overall) {
            counter_add(&format!("{d}_{}", overall.past()), 1);
        }
        if strongest == Action::Block {
            Outcome::Blocked(names)
        } else {
            Outcome::Flagged(names)
        }
    }

    /// The `aigw-guardrails` header: the categories a prompt and a whole answer raised.
    fn flags_header(&self) -> Option<String> {
        let mut flags = serde_json::Map::new();
        if !self.prompt_flags.is_empty() {
            flags.insert("prompt".into(), json!(self.prompt_flags));
        }
        if !self.response_flags.is_empty() {
            flags.insert("response".into(), json!(self.response_flags));
        }
        (!flags.is_empty()).then(|| Value::Object(flags).to_string())
    }

    /// A refusal in the caller's error shape.
    /// A refusal in the caller's error shape (what its SDK reads), with Cloudflare's
    /// top-level fields beside it (`name`, `internalCode`, `httpCode`, `message`).
    fn error(&self, status: u16, code: u32, message: &str) -> LocalResponse {
        let mut body = match self.caller {
            Caller::OpenAi => json!({"error": {
                "type": "guardrails", "message": message, "code": code, "param": null}}),
            Caller::Anthropic => json!({"type": "error", "error": {
                "type": "invalid_request_error", "message": message, "code": code}}),
        };
        if let Some(obj) = body.as_object_mut() {
            obj.insert("success".into(), json!(false));
            obj.insert("name".into(), json!("AiGatewayError"));
            obj.insert("httpCode".into(), json!(status));
            obj.insert("internalCode".into(), json!(code));
            obj.insert("message".into(), json!(message));
        }
        LocalResponse::json(status, &body)
    }

    fn blocked_message(direction: Direction, categories: &[String]) -> String {
        let what = match direction {
            Direction::Prompt => "Prompt",
            Direction::Response => "Response",
        };
        format!(
            "{what} blocked due to security configurations (guardrails: {})",
            categories.join(", ")
        )
    }

    /// What a client is told when the classifier failed: not the failure itself (it may name
    /// an internal service or quote its answer); the log entry has it.
    fn unavailable_message() -> String {
        "guardrails could not classify the text (the classifier failed or timed out; the log entry says why) and fail closed".into()
    }

    /// The whole JSON answer, judged at its end.
    fn judge_whole(&mut self, body: Vec<u8>) -> ChunkDecision {
        // A JSON answer's text; any other answer (plain text) is judged as it is.
        let text = serde_json::from_slice::<Value>(&body)
            .map(|v| answer::answer_text(&v))
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
        if text.trim().is_empty() {
            return ChunkDecision::Replace(body);
        }
        let (status, code, message) = match self.judge(&text, Direction::Response) {
            Outcome::Pass => return ChunkDecision::Replace(body),
            Outcome::Flagged(_) => {
                // Named in the header too, while the head is held (a small answer with a length).
                if let Some(flags) = self.flags_header()
                    && edit_response_head(None, HeaderEdits::default().set(FLAGS_HEADER, &flags))
                        != Ok(true)
                {
                    annotate("guardrails_response_header_kept", "true");
                }
                return ChunkDecision::Replace(body);
            }
            Outcome::Blocked(c) => (424, 2017, Self::blocked_message(Direction::Response, &c)),
            Outcome::Refused => (503, UNAVAILABLE, Self::unavailable_message()),
        };
        if edit_response_head(Some(status), HeaderEdits::default()) != Ok(true) {
            annotate("guardrails_response_status_kept", "true");
        }
        ChunkDecision::Replace(self.error(status, code, &message).body)
    }
}

impl Filter for Guardrails {
    fn describe() -> FilterInfo {
        FilterInfo::new()
            .on_request_headers()
            .on_request_body(BodyMode::Buffered(BUFFER_LIMIT as u32))
            .on_response_headers()
            .on_response_body(BodyMode::Streaming)
            .on_error(OnError::Closed)
    }

    fn configure(config: Value) -> Result<Self, String> {
        Ok(Guardrails {
            config: cached(config)?,
            closed: on_error_setting() != Some(OnError::Open),
            caller: Caller::default(),
            prompt: String::new(),
            prompt_flags: Vec::new(),
            response_flags: Vec::new(),
            response_action: None,
            reading: Reading::Off,
        })
    }

    fn on_request_headers(&mut self, request: &Request) -> Decision {
        let path = request.path.trim_end_matches('/');
        self.caller = if path.ends_with("/messages") || request.provider == "anthropic" {
            Caller::Anthropic
        } else {
            Caller::OpenAi
        };
        Decision::proceed()
    }

    fn on_request_body(&mut self, body: &[u8]) -> BodyDecision {
        if body.len() > self.config.max_body_bytes {
            // Never let a prompt through unread.
            return BodyDecision::Respond(self.error(
                413,
                413,
                &format!(
                    "request body of {} bytes is over guardrails' max_body_bytes ({})",
                    body.len(),
                    self.config.max_body_bytes
                ),
            ));
        }
        let mut text = String::new();
        match ChatRequest::parse(body) {
            Ok(chat) => {
                chat.for_each_text(|role, piece| {
                    if !text.is_empty() {
                        text.push('\n');
                    }
                    text.push_str(role);
                    text.push_str(": ");
                    text.push_str(piece);
                });
                let v = chat.value();
                if text.is_empty() || (v.get("messages").is_none() && v.get("prompt").is_none()) {
                    // Another API's shape (Responses, Gemini, Bedrock, …): every string, so
                    // fields the text walker does not know are classified too.
                    text = answer::request_strings(v);
                }
            }
            Err(_) => text = String::from_utf8_lossy(body).into_owned(),
        }
        if text.trim().is_empty() {
            return BodyDecision::Continue;
        }
        let skip = text.chars().count().saturating_sub(CONTEXT_CHARS);
        self.prompt = text.chars().skip(skip).collect();
        if !self.config.active(Direction::Prompt) {
            return BodyDecision::Continue;
        }
        match self.judge(&text, Direction::Prompt) {
            Outcome::Pass => BodyDecision::Continue,
            Outcome::Flagged(c) => {
                self.prompt_flags = c;
                BodyDecision::Continue
            }
            Outcome::Blocked(c) => BodyDecision::Respond(self.error(
                424,
                2016,
                &Self::blocked_message(Direction::Prompt, &c),
            )),
            Outcome::Refused => {
                BodyDecision::Respond(self.error(503, UNAVAILABLE, &Self::unavailable_message()))
            }
        }
    }

    fn on_response_headers(&mut self, resp: &Response) -> ResponseDecision {
        let mut edits = HeaderEdits::default();
        if let Some(flags) = self.flags_header() {
            edits = edits.set(FLAGS_HEADER, &flags);
        }
        let content_type = resp
            .headers
            .get("content-type")
            .unwrap_or("")
            .to_ascii_lowercase();
        let encoded = resp
            .headers
            .get("content-encoding")
            .is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity"));
        // A retried attempt starts over. Local answers are read too: a cache hit is an
        // answer like any other.
        self.reading = if !(200..300).contains(&resp.status)
            || !self.config.active(Direction::Response)
        {
            Reading::Off
        } else if encoded {
            // Compressed bytes cannot be read: under closed they must not pass unread.
            if self.closed {
                return ResponseDecision::Respond(self.error(
                    502,
                    2017,
                    "guardrails cannot read a compressed answer (content-encoding); ask the provider for identity",
                ));
            }
            Reading::Off
        } else if content_type.starts_with("text/event-stream") {
            Reading::Stream(WindowScanner::default())
        } else {
            Reading::Whole(Vec::new())
        };
        ResponseDecision::Continue(edits)
    }

    fn on_response_body(&mut self, chunk: &[u8], end_of_stream: bool) -> ChunkDecision {
        match std::mem::replace(&mut self.reading, Reading::Off) {
            Reading::Off => ChunkDecision::Continue,
            Reading::Dropping => {
                self.reading = Reading::Dropping;
                ChunkDecision::Hold
            }
            Reading::Whole(mut body) => {
                body.extend_from_slice(chunk);
                if end_of_stream {
                    return self.judge_whole(body);
                }
                if body.len() > self.config.max_body_bytes {
                    // Too large to judge whole.
                    let e = format!(
                        "the answer is over max_body_bytes ({})",
                        self.config.max_body_bytes
                    );
                    counter_add("classifier_errors", 1);
                    annotate("guardrails_response_error", &e);
                    if self.closed {
                        self.reading = Reading::Dropping;
                        if edit_response_head(Some(503), HeaderEdits::default()) != Ok(true) {
                            annotate("guardrails_response_status_kept", "true");
                        }
                        return ChunkDecision::Replace(
                            self.error(503, UNAVAILABLE, &Self::unavailable_message())
                                .body,
                        );
                    }
                    return ChunkDecision::Replace(body);
                }
                self.reading = Reading::Whole(body);
                ChunkDecision::Hold
            }
            Reading::Stream(mut scanner) => {
                let window = self.config.window_chars;
                let out = scanner.push(chunk, end_of_stream, window, &mut |text, at| {
                    let (message, end, code) = match self.judge(text, Direction::Response) {
                        Outcome::Pass | Outcome::Flagged(_) => return Verdict::Pass,
                        Outcome::Blocked(c) => (
                            Self::blocked_message(Direction::Response, &c),
                            "blocked",
                            2017,
                        ),
                        Outcome::Refused => (Self::unavailable_message(), "refused", UNAVAILABLE),
                    };
                    annotate("guardrails_response_at", &at.to_string());
                    annotate("guardrails_response_end", end);
                    Verdict::Block { message, code }
                });
                self.reading = Reading::Stream(scanner);
                if out == chunk {
                    ChunkDecision::Continue
                } else if out.is_empty() {
                    ChunkDecision::Hold
                } else {
                    ChunkDecision::Replace(out)
                }
            }
        }
    }
}

/// The checked table, parsed once per instance and table (configure runs per request).
fn cached(config: Value) -> Result<Rc<Config>, String> {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(Value, Rc<Config>)>> = const { std::cell::RefCell::new(None) };
    }
    LAST.with(|last| {
        if let Some((v, c)) = &*last.borrow()
            && *v == config
        {
            return Ok(c.clone());
        }
        let parsed = Rc::new(config::parse(config.clone())?);
        *last.borrow_mut() = Some((config, parsed.clone()));
        Ok(parsed)
    })
}

aigw_plugin_sdk::export_filter!(Guardrails);

#[cfg(test)]
mod tests;
