//! Runs one request through a filter the way the host does: only the hooks `describe`
//! declares, in the host's order, with the declared body modes and buffer limits, and the
//! declared `on_error` applied when the filter fails. Re-exported by [`crate::testing`].

use crate::{
    __hooks, BodyDecision, BodyMode, ChunkDecision, Decision, Filter, FilterInfo, Header,
    HeaderEdits, Headers, LocalResponse, OnError, Outcome, Request, Response, ResponseDecision,
    Summary,
};
use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};

thread_local! {
    /// Set while this thread runs a hook under `guarded`: its panic is caught, not printed.
    static QUIET: Cell<bool> = const { Cell::new(false) };
    /// The text of the last panic caught by `guarded` on this thread.
    static CAUGHT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `f`, turning a panic into `Err(message at file:line:column)`. Its message is kept,
/// not printed; panics of other threads (other tests) print as usual. The process's panic
/// hook is wrapped once, never swapped back and forth.
fn guarded<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    static WRAP: std::sync::Once = std::sync::Once::new();
    WRAP.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.with(Cell::get) {
                let text = crate::glue::panic_text(info);
                CAUGHT.with(|c| *c.borrow_mut() = Some(text));
            } else {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    result.map_err(|_| {
        CAUGHT
            .with(|c| c.borrow_mut().take())
            .unwrap_or_else(|| "(no message)".to_string())
    })
}

/// One request and the upstream's answer, as [`run`] plays them.
///
/// ```
/// use aigw_plugin_sdk::testing::Exchange;
/// let ex = Exchange::post("/chat/completions", r#"{"model":"gpt-4o-mini"}"#)
///     .header("x-team", "search")
///     .upstream(200, r#"{"choices":[]}"#);
/// assert_eq!(ex.request.headers.get("x-team"), Some("search"));
/// ```
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The client's request head.
    pub request: Request,
    /// The client's request body.
    pub request_body: Vec<u8>,
    /// The upstream's status.
    pub upstream_status: u16,
    /// The upstream's headers.
    pub upstream_headers: Headers,
    /// The upstream's body, chunk by chunk as it arrives.
    pub upstream_chunks: Vec<Vec<u8>>,
}

impl Default for Exchange {
    fn default() -> Self {
        Exchange {
            request: Request {
                request_id: "test-request".into(),
                method: "POST".into(),
                account: "test".into(),
                gateway: "test".into(),
                provider: "openai".into(),
                path: "/chat/completions".into(),
                client_ip: "127.0.0.1".into(),
                ..Request::default()
            },
            request_body: Vec::new(),
            upstream_status: 200,
            upstream_headers: Headers::from(vec![Header {
                name: "content-type".into(),
                value: "application/json".into(),
            }]),
            upstream_chunks: Vec::new(),
        }
    }
}

impl Exchange {
    /// A POST of `body` to the provider path `path`, answered 200 with an empty JSON body.
    ///
    /// ```
    /// let ex = aigw_plugin_sdk::testing::Exchange::post("/embeddings", "{}");
    /// assert_eq!(ex.request.path, "/embeddings");
    /// ```
    pub fn post(path: &str, body: &str) -> Self {
        let mut ex = Exchange::default();
        ex.request.path = path.to_string();
        ex.request_body = body.as_bytes().to_vec();
        ex.request.headers.edit(|l| {
            l.push(Header {
                name: "content-type".into(),
                value: "application/json".into(),
            })
        });
        ex
    }

    /// Adds a request header.
    ///
    /// ```
    /// let ex = aigw_plugin_sdk::testing::Exchange::default().header("X-Team", "a");
    /// assert_eq!(ex.request.headers.get("x-team"), Some("a"));
    /// ```
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.request.headers.edit(|l| {
            l.push(Header {
                name: name.to_ascii_lowercase(),
                value: value.to_string(),
            })
        });
        self
    }

    /// The upstream answers `status` with `body` in one chunk.
    ///
    /// ```
    /// let ex = aigw_plugin_sdk::testing::Exchange::default().upstream(503, "busy");
    /// assert_eq!((ex.upstream_status, ex.upstream_chunks.len()), (503, 1));
    /// ```
    pub fn upstream(mut self, status: u16, body: &str) -> Self {
        self.upstream_status = status;
        self.upstream_chunks = vec![body.as_bytes().to_vec()];
        self
    }

    /// The upstream streams these chunks (server-sent events, for instance).
    ///
    /// ```
    /// let ex = aigw_plugin_sdk::testing::Exchange::default().stream(&["data: 1\n\n", "data: [DONE]\n\n"]);
    /// assert_eq!(ex.upstream_chunks.len(), 2);
    /// ```
    pub fn stream(mut self, chunks: &[&str]) -> Self {
        self.upstream_chunks = chunks.iter().map(|c| c.as_bytes().to_vec()).collect();
        self.upstream_headers = Headers::from(vec![Header {
            name: "content-type".into(),
            value: "text/event-stream".into(),
        }]);
        self
    }
}

/// What [`run`] saw: what the client got, what went upstream, and the hooks called.
#[derive(Debug, Clone, Default)]
pub struct Played {
    /// The filter answered the request itself (a request hook's `Respond`).
    pub local: Option<LocalResponse>,
    /// The request as it went upstream (headers after edits, body after replacement);
    /// none when the request never reached the upstream.
    pub upstream_request: Option<(Request, Vec<u8>)>,
    /// Status the client got.
    pub status: u16,
    /// Headers the client got.
    pub headers: Headers,
    /// Body the client got.
    pub body: Vec<u8>,
    /// The filter asked for a retry after this many ms (`ResponseDecision::Retry`).
    pub retry_delay_ms: Option<u32>,
    /// Why the host counted the filter as failed: a body over its buffer, or a hook that
    /// panicked (with the panic's message and location). With `OnError::Closed` the client
    /// got a 500; with `Open` the filter was skipped for the rest of the request.
    pub failure: Option<String>,
    /// The hooks called, in order (`on_request_headers`, …).
    pub hooks_called: Vec<&'static str>,
}

/// Fails when `F` implements a hook that its `describe` does not declare (the host would
/// never call it), or declares a body hook without a body mode. Call it from a unit test;
/// [`run`] calls it too.
///
/// It calls each undeclared hook once on a filter configured with `config` and checks
/// whether the trait's default ran: a hook the filter overrides does not reach it.
///
/// ```
/// use aigw_plugin_sdk::{testing, Decision, Filter, FilterInfo, Request};
/// struct Forgot;
/// impl Filter for Forgot {
///     fn describe() -> FilterInfo { FilterInfo::new() } // on_request_headers not declared
///     fn configure(_: serde_json::Value) -> Result<Self, String> { Ok(Forgot) }
///     fn on_request_headers(&mut self, _: &Request) -> Decision { Decision::proceed() }
/// }
/// let e = testing::check_hooks::<Forgot>(serde_json::json!({})).unwrap_err();
/// assert!(e.contains("on_request_headers"), "{e}");
/// ```
pub fn check_hooks<F: Filter>(config: serde_json::Value) -> Result<(), String> {
    let info = F::describe();
    let name = std::any::type_name::<F>();
    if let Some(m) = info.mistakes().into_iter().next() {
        return Err(format!("{name}: {m}"));
    }
    let undeclared = [
        (
            info.hooks.request_headers,
            __hooks::REQUEST_HEADERS,
            "on_request_headers",
            "on_request_headers()",
        ),
        (
            info.hooks.request_body,
            __hooks::REQUEST_BODY,
            "on_request_body",
            "on_request_body(BodyMode::Buffered(max_bytes))",
        ),
        (
            info.hooks.response_headers,
            __hooks::RESPONSE_HEADERS,
            "on_response_headers",
            "on_response_headers()",
        ),
        (
            info.hooks.response_body,
            __hooks::RESPONSE_BODY,
            "on_response_body",
            "on_response_body(BodyMode::Streaming)",
        ),
        (info.hooks.done, __hooks::DONE, "on_done", "on_done()"),
    ];
    for (declared, bit, hook, builder) in undeclared {
        if declared {
            continue;
        }
        let mut filter = F::configure(config.clone())
            .map_err(|e| format!("{name}: configure rejected the test configuration: {e}"))?;
        __hooks::take();
        // An overridden hook may panic on this synthetic input: that alone shows it is
        // overridden (the defaults never panic). Its message is not printed.
        let _ = guarded(|| call(&mut filter, bit));
        if __hooks::take() & bit == 0 {
            return Err(format!(
                "{name} implements {hook} but describe() does not declare it, so the host never calls it: declare it with FilterInfo::new().{builder}"
            ));
        }
    }
    Ok(())
}

fn call<F: Filter>(filter: &mut F, bit: u8) {
    match bit {
        __hooks::REQUEST_HEADERS => drop(filter.on_request_headers(&Exchange::default().request)),
        __hooks::REQUEST_BODY => drop(filter.on_request_body(b"{}")),
        __hooks::RESPONSE_HEADERS => drop(filter.on_response_headers(&Response {
            status: 200,
            attempt: 1,
            ..Response::default()
        })),
        __hooks::RESPONSE_BODY => drop(filter.on_response_body(b"", true)),
        _ => filter.on_done(&Summary::default()),
    }
}

/// Runs one request through filter `F` configured with `config`, as the host would:
/// `on_request_headers`, `on_request_body` (whole, when it fits the declared buffer),
/// then the upstream's answer through `on_response_headers` and `on_response_body`
/// (chunk by chunk when streaming, whole when buffered), then `on_done`; only the hooks
/// `describe` declares. A filter that answers a request hook does not see its own
/// answer's response hooks (the host shows it only to filters before it).
///
/// Panics (failing the test) when `configure` rejects `config` or when [`check_hooks`]
/// finds a hook the host would never call.
///
/// ```
/// use aigw_plugin_sdk::{testing::{self, Exchange}, *};
/// struct RequireTeam;
/// impl Filter for RequireTeam {
///     fn describe() -> FilterInfo { FilterInfo::new().on_request_headers() }
///     fn configure(_: serde_json::Value) -> Result<Self, String> { Ok(RequireTeam) }
///     fn on_request_headers(&mut self, r: &Request) -> Decision {
///         if r.headers.get("x-team").is_some() { return Decision::proceed(); }
///         Decision::Respond(LocalResponse::error(400, "bad_request", "x-team is required"))
///     }
/// }
/// let refused = testing::run::<RequireTeam>(serde_json::json!({}), Exchange::post("/chat/completions", "{}"));
/// assert_eq!(refused.status, 400);
/// assert!(refused.upstream_request.is_none());
/// let passed = testing::run::<RequireTeam>(serde_json::json!({}),
///     Exchange::post("/chat/completions", "{}").header("x-team", "a").upstream(200, "ok"));
/// assert_eq!((passed.status, passed.body.as_slice()), (200, &b"ok"[..]));
/// ```
#[allow(
    clippy::panic,
    reason = "a test helper: its panic fails the test that called it, like assert!"
)]
pub fn run<F: Filter>(config: serde_json::Value, ex: Exchange) -> Played {
    if let Err(e) = check_hooks::<F>(config.clone()) {
        panic!("{e}");
    }
    let info: FilterInfo = F::describe();
    // A new request: nothing kept with `host::set_local` by an earlier one.
    crate::testing::with_mock(|m| m.locals.clear());
    let mut filter = match F::configure(config) {
        Ok(f) => f,
        Err(e) => panic!(
            "{}: configure rejected the configuration: {e}",
            std::any::type_name::<F>()
        ),
    };
    let mut out = Played::default();
    let mut request = ex.request.clone();
    let mut body = ex.request_body.clone();
    let mut skipped = false;
    let fail = |out: &mut Played, why: String| -> bool {
        out.failure = Some(why.clone());
        if info.on_error == OnError::Closed {
            out.status = 500;
            out.body = serde_json::json!({"error": {"type": "filter_failed", "message": why}})
                .to_string()
                .into_bytes();
            true
        } else {
            false
        }
    };

    // Request hooks.
    // A hook that panics is a failed filter: closed answers 500, open skips the filter.
    macro_rules! hook {
        ($name:literal, $call:expr) => {{
            out.hooks_called.push($name);
            match guarded(|| $call) {
                Ok(answer) => Some(answer),
                Err(panic) => {
                    if fail(&mut out, format!("{} panicked: {panic}", $name)) {
                        return finish(&mut filter, &info, out, Outcome::FilterFailed, &ex);
                    }
                    #[allow(unused_assignments, reason = "not read after the last hook")]
                    {
                        skipped = true;
                    }
                    None
                }
            }
        }};
    }
    if info.hooks.request_headers {
        match hook!("on_request_headers", filter.on_request_headers(&request)) {
            Some(Decision::Continue(edits)) => apply(&edits, &mut request.headers),
            Some(Decision::Respond(r)) => out.local = Some(r),
            None => {}
        }
    }
    if !skipped
        && out.local.is_none()
        && info.hooks.request_body
        && info.request_body != BodyMode::Ignore
    {
        let limit = match info.request_body {
            BodyMode::Buffered(n) => Some(n as usize),
            _ => None,
        };
        if limit.is_some_and(|n| body.len() > n) {
            let why = format!(
                "request body of {} bytes is over the filter's buffered limit of {}",
                body.len(),
                limit.unwrap_or(0)
            );
            if fail(&mut out, why) {
                return finish(&mut filter, &info, out, Outcome::FilterFailed, &ex);
            }
            skipped = true;
        } else {
            match hook!("on_request_body", filter.on_request_body(&body)) {
                Some(BodyDecision::Continue) | None => {}
                Some(BodyDecision::Replace(b)) => body = b,
                Some(BodyDecision::Respond(r)) => out.local = Some(r),
            }
        }
    }
    if let Some(local) = out.local.clone() {
        out.status = local.status;
        out.headers = Headers::from(local.headers);
        out.body = local.body;
        return finish(&mut filter, &info, out, Outcome::RespondedLocally, &ex);
    }

    // The upstream answers.
    out.upstream_request = Some((request, body));
    let mut response = Response {
        status: ex.upstream_status,
        headers: ex.upstream_headers.clone(),
        attempt: 1,
        upstream_error: None,
        local: false,
    };
    let mut chunks = ex.upstream_chunks.clone();
    let mut replaced = false;
    if !skipped && info.hooks.response_headers {
        match hook!("on_response_headers", filter.on_response_headers(&response)) {
            Some(ResponseDecision::Continue(edits)) => apply(&edits, &mut response.headers),
            Some(ResponseDecision::Respond(r)) => {
                response.status = r.status;
                response.headers = Headers::from(r.headers);
                chunks = vec![r.body];
                replaced = true;
            }
            Some(ResponseDecision::Retry { delay_ms }) => out.retry_delay_ms = Some(delay_ms),
            None => {}
        }
    }
    out.status = response.status;
    out.headers = response.headers;
    let reads_body =
        !skipped && !replaced && info.hooks.response_body && info.response_body != BodyMode::Ignore;
    if !reads_body {
        out.body = chunks.concat();
        return finish(&mut filter, &info, out, Outcome::Completed, &ex);
    }
    match info.response_body {
        BodyMode::Buffered(n) => {
            let whole = chunks.concat();
            if whole.len() > n as usize {
                let why = format!(
                    "response body of {} bytes is over the filter's buffered limit of {n}",
                    whole.len()
                );
                if fail(&mut out, why) {
                    return finish(&mut filter, &info, out, Outcome::FilterFailed, &ex);
                }
                out.body = whole;
            } else {
                out.body = match hook!("on_response_body", filter.on_response_body(&whole, true)) {
                    Some(ChunkDecision::Continue) | None => whole,
                    Some(ChunkDecision::Replace(b)) => b,
                    Some(ChunkDecision::Hold) => Vec::new(),
                };
            }
        }
        _ => {
            let mut calls: Vec<(Vec<u8>, bool)> = chunks
                .into_iter()
                .filter(|c| !c.is_empty())
                .map(|c| (c, false))
                .collect();
            calls.push((Vec::new(), true));
            for (chunk, eos) in calls {
                if skipped {
                    // Failed open earlier in the stream: the rest passes untouched.
                    out.body.extend_from_slice(&chunk);
                    continue;
                }
                match hook!("on_response_body", filter.on_response_body(&chunk, eos)) {
                    Some(ChunkDecision::Continue) => out.body.extend_from_slice(&chunk),
                    Some(ChunkDecision::Replace(b)) => out.body.extend_from_slice(&b),
                    Some(ChunkDecision::Hold) => {}
                    None => out.body.extend_from_slice(&chunk),
                }
            }
        }
    }
    finish(&mut filter, &info, out, Outcome::Completed, &ex)
}

fn finish<F: Filter>(
    filter: &mut F,
    info: &FilterInfo,
    mut out: Played,
    outcome: Outcome,
    ex: &Exchange,
) -> Played {
    // A failed filter (closed or open) is not called again, also not at `on_done`.
    if info.hooks.done && out.failure.is_none() {
        out.hooks_called.push("on_done");
        let r = &ex.request;
        let summary = Summary {
            request_id: r.request_id.clone(),
            account: r.account.clone(),
            gateway: r.gateway.clone(),
            provider: r.provider.clone(),
            method: r.method.clone(),
            path: r.path.clone(),
            status: out.status,
            outcome,
            success: (200..400).contains(&out.status),
            attempts: 1,
            request_bytes: ex.request_body.len() as u64,
            response_bytes: out.body.len() as u64,
            request_headers: r.headers.clone(),
            response_headers: out.headers.clone(),
            ..Summary::default()
        };
        if let Err(panic) = guarded(|| filter.on_done(&summary)) {
            // After the answer: a failure changes nothing the client got.
            out.failure = Some(format!("on_done panicked: {panic}"));
        }
    }
    out
}

fn apply(edits: &HeaderEdits, headers: &mut Headers) {
    headers.edit(|list| {
        for name in &edits.remove {
            list.retain(|h| !h.name.eq_ignore_ascii_case(name));
        }
        for h in &edits.set {
            list.retain(|x| !x.name.eq_ignore_ascii_case(&h.name));
            list.push(h.clone());
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Filter, FilterInfo, Request};

    struct Panics;
    impl Filter for Panics {
        fn describe() -> FilterInfo {
            FilterInfo::new().on_request_headers().on_done()
        }
        fn configure(_: serde_json::Value) -> Result<Self, String> {
            Ok(Panics)
        }
        fn on_request_headers(&mut self, r: &Request) -> Decision {
            assert!(r.headers.get("x-team").is_some(), "no x-team");
            Decision::proceed()
        }
        fn on_done(&mut self, _: &Summary) {}
    }

    #[test]
    fn a_panicking_hook_fails_the_filter_as_the_host_would() {
        let played = run::<Panics>(
            serde_json::json!({}),
            Exchange::post("/chat/completions", "{}"),
        );
        assert_eq!(played.status, 500);
        let why = played.failure.unwrap_or_default();
        assert!(
            why.contains("on_request_headers panicked: no x-team at "),
            "{why}"
        );
        assert!(why.contains("harness.rs:"), "{why}");
        assert!(played.upstream_request.is_none());
        assert_eq!(
            played.hooks_called,
            ["on_request_headers"],
            "a failed filter gets no on_done"
        );
        let ok = run::<Panics>(
            serde_json::json!({}),
            Exchange::post("/chat/completions", "{}")
                .header("x-team", "a")
                .upstream(200, "ok"),
        );
        assert_eq!((ok.status, ok.failure), (200, None));
    }
}
