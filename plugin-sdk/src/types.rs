//! The values a filter receives and returns: request and response heads,
//! decisions, the request summary. These mirror the WIT contract
//! `aigw:filter@0.2.0` with Rust-friendly helpers; conversion lives in `glue`. Also the values
//! the host services take and give (log level, limit technique and verdict).

use serde_json::Value;

/// One HTTP header (names are lower-case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Lower-case header name.
    pub name: String,
    /// Header value.
    pub value: String,
}

/// A list of headers with case-insensitive look-ups.
///
/// In a hook the host runs, the headers stay in the host and are read on demand: `get`
/// asks for the one name it is given (and remembers the answer), `iter` fetches them all
/// once. A clone is a snapshot that outlives the hook.
///
/// ```
/// use aigw_plugin_sdk::Headers;
/// let h = Headers::from_pairs([("x-user", "ada")]);
/// assert_eq!(h.get("X-User"), Some("ada"));
/// ```
#[derive(Default)]
pub struct Headers {
    /// Every header: given, or fetched from the host once.
    list: std::cell::OnceCell<Vec<Header>>,
    /// The host's set this view reads (call number, which set), when lent.
    lent: Option<(u64, usize)>,
    /// Names asked of the host one by one, with their first value.
    got: elsa::FrozenVec<Box<(String, Option<String>)>>,
}

impl Headers {
    /// Builds a header list from name/value pairs.
    ///
    /// ```
    /// let h = aigw_plugin_sdk::Headers::from_pairs([("a", "1"), ("b", "2")]);
    /// assert_eq!(h.iter().count(), 2);
    /// ```
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Headers::from(
            pairs
                .into_iter()
                .map(|(n, v)| Header {
                    name: n.to_ascii_lowercase(),
                    value: v.to_string(),
                })
                .collect::<Vec<_>>(),
        )
    }

    /// A view of header set `which` the host lends call `call`.
    pub(crate) fn lent(call: u64, which: usize) -> Self {
        Headers {
            list: std::cell::OnceCell::new(),
            lent: Some((call, which)),
            got: elsa::FrozenVec::new(),
        }
    }

    /// The first value of `name` (case-insensitive).
    ///
    /// ```
    /// let h = aigw_plugin_sdk::Headers::from_pairs([("content-type", "application/json")]);
    /// assert_eq!(h.get("Content-Type"), Some("application/json"));
    /// assert_eq!(h.get("accept"), None);
    /// ```
    pub fn get(&self, name: &str) -> Option<&str> {
        if let (Some((call, which)), None) = (self.lent, self.list.get()) {
            let mut i = 0;
            while let Some(entry) = self.got.get(i) {
                if entry.0.eq_ignore_ascii_case(name) {
                    return entry.1.as_deref();
                }
                i += 1;
            }
            let value = crate::lent::with_set(call, which, |f| f.get(name)).flatten();
            return self
                .got
                .push_get(Box::new((name.to_string(), value)))
                .1
                .as_deref();
        }
        self.all()
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// Every header, in order.
    ///
    /// ```
    /// let h = aigw_plugin_sdk::Headers::from_pairs([("a", "1")]);
    /// assert_eq!(h.iter().next().map(|h| h.value.as_str()), Some("1"));
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.all().iter()
    }

    fn all(&self) -> &Vec<Header> {
        self.list.get_or_init(|| match self.lent {
            Some((call, which)) => crate::lent::with_set(call, which, |f| {
                f.entries()
                    .into_iter()
                    .map(|h| Header {
                        name: h.name,
                        value: h.value,
                    })
                    .collect()
            })
            .unwrap_or_default(),
            None => Vec::new(),
        })
    }

    /// Edits the list (the test harness's upstream and filter edits); a lent view becomes
    /// an owned one.
    pub(crate) fn edit(&mut self, f: impl FnOnce(&mut Vec<Header>)) {
        let mut list = self.all().clone();
        f(&mut list);
        *self = Headers::from(list);
    }
}

impl From<Vec<Header>> for Headers {
    fn from(list: Vec<Header>) -> Self {
        Headers {
            list: std::cell::OnceCell::from(list),
            lent: None,
            got: elsa::FrozenVec::new(),
        }
    }
}

impl Clone for Headers {
    /// A snapshot: every header, fetched now if the host still lends them.
    fn clone(&self) -> Self {
        Headers::from(self.all().clone())
    }
}

impl PartialEq for Headers {
    fn eq(&self, other: &Self) -> bool {
        self.all() == other.all()
    }
}

impl Eq for Headers {}

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Headers").field(self.all()).finish()
    }
}

/// The client's request as this filter sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// Unique id of the request (also its log id).
    pub request_id: String,
    /// HTTP method, upper-case.
    pub method: String,
    /// Account segment of the URL.
    pub account: String,
    /// Gateway name.
    pub gateway: String,
    /// Provider name (`openai`, `anthropic`, …).
    pub provider: String,
    /// Provider path after `/{provider}`, starting with `/`.
    pub path: String,
    /// Query string without `?`.
    pub query: Option<String>,
    /// Request headers after earlier filters' edits.
    pub headers: Headers,
    /// The client's IP address.
    pub client_ip: String,
}

/// The response head seen by `on_response_headers`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: Headers,
    /// Attempt number, 1 for the first.
    pub attempt: u32,
    /// Set when the upstream could not be reached (status is then 502 or 504).
    pub upstream_error: Option<String>,
    /// True when another filter produced this response.
    pub local: bool,
}

/// A response produced by the filter itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalResponse {
    /// HTTP status.
    pub status: u16,
    /// Headers to send.
    pub headers: Vec<Header>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl LocalResponse {
    /// A JSON response.
    ///
    /// ```
    /// let r = aigw_plugin_sdk::LocalResponse::json(200, &serde_json::json!({"ok": true}));
    /// assert_eq!(r.status, 200);
    /// assert_eq!(r.body, br#"{"ok":true}"#);
    /// ```
    pub fn json(status: u16, value: &Value) -> Self {
        LocalResponse {
            status,
            headers: vec![Header {
                name: "content-type".into(),
                value: "application/json".into(),
            }],
            body: value.to_string().into_bytes(),
        }
    }

    /// The gateway's standard JSON error: `{"error": {"type": …, "message": …}}`.
    ///
    /// ```
    /// let r = aigw_plugin_sdk::LocalResponse::error(429, "rate_limited", "limit of 20 per 60s reached");
    /// assert!(String::from_utf8(r.body).unwrap().contains("rate_limited"));
    /// ```
    pub fn error(status: u16, kind: &str, message: &str) -> Self {
        Self::json(
            status,
            &serde_json::json!({"error": {"type": kind, "message": message}}),
        )
    }

    /// A JSON error in OpenAI's full shape: `{"error": {"type", "message", "code", "param"}}`,
    /// `code` and `param` being `null` when `None`. OpenAI's SDKs read them into the
    /// exception they raise (`e.code`, `e.param`), so a client can tell one refusal from
    /// another without matching the message. [`error`](Self::error) is the same without the
    /// two fields.
    ///
    /// ```
    /// use aigw_plugin_sdk::LocalResponse;
    ///
    /// let r = LocalResponse::error_with(
    ///     400,
    ///     "invalid_request_error",
    ///     "max_tokens: at most 4096",
    ///     Some("max_tokens_too_large"),
    ///     Some("max_tokens"),
    /// );
    /// let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    /// assert_eq!(body["error"]["code"], "max_tokens_too_large");
    /// assert_eq!(body["error"]["param"], "max_tokens");
    ///
    /// let r = LocalResponse::error_with(429, "rate_limited", "slow down", Some("rpm"), None);
    /// let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    /// assert_eq!(body["error"]["code"], "rpm");
    /// assert!(body["error"]["param"].is_null());
    /// ```
    pub fn error_with(
        status: u16,
        kind: &str,
        message: &str,
        code: Option<&str>,
        param: Option<&str>,
    ) -> Self {
        Self::json(
            status,
            &serde_json::json!({"error": {
                "type": kind,
                "message": message,
                "code": code,
                "param": param,
            }}),
        )
    }

    /// A 429 refusal (error type `rate_limited`) with `retry-after` set from
    /// `retry_after_ms`: whole seconds, rounded up, at least 1, as HTTP and the
    /// providers' SDKs read it.
    ///
    /// ```
    /// let r = aigw_plugin_sdk::LocalResponse::too_many_requests("limit of 20 per 60s reached", 1_200);
    /// assert_eq!(r.status, 429);
    /// assert!(r.headers.iter().any(|h| h.name == "retry-after" && h.value == "2"));
    /// ```
    pub fn too_many_requests(message: &str, retry_after_ms: u64) -> Self {
        Self::error(429, "rate_limited", message).with_retry_after_ms(retry_after_ms)
    }

    /// Sets `retry-after` to `ms` in whole seconds, rounded up, at least 1 (also for a
    /// 503 while something recovers).
    ///
    /// ```
    /// let r = aigw_plugin_sdk::LocalResponse::error(503, "unavailable", "x").with_retry_after_ms(0);
    /// assert!(r.headers.iter().any(|h| h.name == "retry-after" && h.value == "1"));
    /// ```
    pub fn with_retry_after_ms(mut self, ms: u64) -> Self {
        self.headers.retain(|h| h.name != "retry-after");
        let secs = ms.div_ceil(1000).max(1);
        self.with_header("retry-after", &secs.to_string())
    }

    /// Adds a header (builder style).
    ///
    /// ```
    /// let r = aigw_plugin_sdk::LocalResponse::error(429, "rate_limited", "x").with_header("retry-after", "3");
    /// assert!(r.headers.iter().any(|h| h.name == "retry-after"));
    /// ```
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push(Header {
            name: name.to_ascii_lowercase(),
            value: value.to_string(),
        });
        self
    }
}

/// Header changes returned with a `Continue` decision.
///
/// ```
/// let e = aigw_plugin_sdk::HeaderEdits::default().set("x-team", "search").remove("x-debug");
/// assert_eq!(e.set.len(), 1);
/// assert_eq!(e.remove, vec!["x-debug".to_string()]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderEdits {
    /// Headers to set (replacing every existing value of the name).
    pub set: Vec<Header>,
    /// Header names to remove.
    pub remove: Vec<String>,
}

impl HeaderEdits {
    /// Sets a header.
    ///
    /// ```
    /// let e = aigw_plugin_sdk::HeaderEdits::default().set("X-A", "1");
    /// assert_eq!(e.set[0].name, "x-a");
    /// ```
    pub fn set(mut self, name: &str, value: &str) -> Self {
        self.set.push(Header {
            name: name.to_ascii_lowercase(),
            value: value.to_string(),
        });
        self
    }

    /// Removes a header.
    ///
    /// ```
    /// let e = aigw_plugin_sdk::HeaderEdits::default().remove("X-A");
    /// assert_eq!(e.remove[0], "x-a");
    /// ```
    pub fn remove(mut self, name: &str) -> Self {
        self.remove.push(name.to_ascii_lowercase());
        self
    }
}

/// What `on_request_headers` decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go on, with these header edits.
    Continue(HeaderEdits),
    /// Answer the client now; later filters and the upstream are skipped.
    Respond(LocalResponse),
}

impl Decision {
    /// Continue without edits.
    ///
    /// ```
    /// assert!(matches!(aigw_plugin_sdk::Decision::proceed(), aigw_plugin_sdk::Decision::Continue(_)));
    /// ```
    pub fn proceed() -> Self {
        Decision::Continue(HeaderEdits::default())
    }
}

/// What `on_request_body` decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyDecision {
    /// Keep the body.
    Continue,
    /// Send this body upstream instead.
    Replace(Vec<u8>),
    /// Answer the client now.
    Respond(LocalResponse),
}

/// What `on_response_headers` decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseDecision {
    /// Go on, with these header edits to the response.
    Continue(HeaderEdits),
    /// Replace the response with this one.
    Respond(LocalResponse),
    /// Send the request upstream again after `delay_ms` (honoured only before any
    /// byte reached the client, and within the host's attempt cap).
    Retry {
        /// Pause before the next attempt.
        delay_ms: u32,
    },
}

impl ResponseDecision {
    /// Continue without edits.
    ///
    /// ```
    /// assert!(matches!(aigw_plugin_sdk::ResponseDecision::proceed(), aigw_plugin_sdk::ResponseDecision::Continue(_)));
    /// ```
    pub fn proceed() -> Self {
        ResponseDecision::Continue(HeaderEdits::default())
    }
}

/// What `on_response_body` decides for one chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkDecision {
    /// Pass the chunk on unchanged.
    Continue,
    /// Pass these bytes on instead.
    Replace(Vec<u8>),
    /// Emit nothing now; the filter keeps the bytes and emits them later with `Replace`.
    Hold,
}

/// Which hooks a filter wants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hooks {
    /// `on_request_headers`.
    pub request_headers: bool,
    /// `on_request_body`.
    pub request_body: bool,
    /// `on_response_headers`.
    pub response_headers: bool,
    /// `on_response_body`.
    pub response_body: bool,
    /// `on_done`.
    pub done: bool,
}

/// How a filter wants a body delivered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BodyMode {
    /// Not at all.
    #[default]
    Ignore,
    /// Whole, up to this many bytes.
    Buffered(u32),
    /// Chunk by chunk.
    Streaming,
}

/// What the host does when a filter fails: a trap or panic, a missed deadline, the memory
/// limit, a body over its buffer, or an open circuit after repeated failures.
///
/// A filter declares its own default in [`FilterInfo::on_error`]; the gateway's TOML table
/// for the filter may override it (`on_error = "open"` or `"closed"`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnError {
    /// Refuse the request (500; 503 while the circuit is open). For policy filters: a
    /// failure must never let through a request the policy would have refused. The default.
    #[default]
    Closed,
    /// Skip the filter for the rest of the request. For observers (logging, caching,
    /// metrics), whose failure should not cost the client its answer.
    Open,
}

/// What `describe` returns: the hooks the host calls, how bodies are delivered, and what
/// a failure of the filter does.
///
/// Build it with the `on_*` methods: each declares a hook, and the body ones take the
/// body's delivery mode with it, so a body hook cannot be declared without one. The host
/// calls **only** the hooks declared here; [`testing::run`](crate::testing) and
/// [`testing::check_hooks`](crate::testing) fail a test whose filter implements a hook it
/// did not declare.
///
/// ```
/// use aigw_plugin_sdk::{BodyMode, FilterInfo, OnError};
/// let info = FilterInfo::new()
///     .on_request_headers()
///     .on_request_body(BodyMode::Buffered(1 << 20))
///     .on_error(OnError::Closed);
/// assert!(info.hooks.request_headers && info.hooks.request_body && !info.hooks.done);
/// assert_eq!(info.request_body, BodyMode::Buffered(1 << 20));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilterInfo {
    /// Hooks to call.
    pub hooks: Hooks,
    /// Request body delivery (only with `hooks.request_body`; `Ignore` means the hook is
    /// never called).
    pub request_body: BodyMode,
    /// Response body delivery (only with `hooks.response_body`; `Ignore` means the hook is
    /// never called).
    pub response_body: BodyMode,
    /// What a failure of this filter does unless the gateway's TOML says otherwise.
    /// Default: [`OnError::Closed`].
    pub on_error: OnError,
    /// The filter keeps nothing of a request in `self`: its value is built once per
    /// instance and serves request after request, and the host lends the instance to a
    /// request only for each hook call (a stream does not hold it). Cheaper; see
    /// [`FilterInfo::stateless`].
    pub stateless: bool,
}

impl FilterInfo {
    /// No hooks yet; failures fail closed.
    ///
    /// ```
    /// let i = aigw_plugin_sdk::FilterInfo::new();
    /// assert_eq!(i.on_error, aigw_plugin_sdk::OnError::Closed);
    /// ```
    pub fn new() -> Self {
        FilterInfo::default()
    }

    /// Only these hooks, no bodies.
    ///
    /// ```
    /// let i = aigw_plugin_sdk::FilterInfo::hooks(Default::default());
    /// assert_eq!(i.request_body, aigw_plugin_sdk::BodyMode::Ignore);
    /// ```
    pub fn hooks(hooks: Hooks) -> Self {
        FilterInfo {
            hooks,
            ..FilterInfo::default()
        }
    }

    /// Declares [`Filter::on_request_headers`](crate::Filter::on_request_headers).
    ///
    /// ```
    /// assert!(aigw_plugin_sdk::FilterInfo::new().on_request_headers().hooks.request_headers);
    /// ```
    pub fn on_request_headers(mut self) -> Self {
        self.hooks.request_headers = true;
        self
    }

    /// Declares [`Filter::on_request_body`](crate::Filter::on_request_body), delivered as `mode`.
    ///
    /// ```
    /// use aigw_plugin_sdk::{BodyMode, FilterInfo};
    /// let i = FilterInfo::new().on_request_body(BodyMode::Buffered(4096));
    /// assert!(i.hooks.request_body);
    /// ```
    pub fn on_request_body(mut self, mode: BodyMode) -> Self {
        self.hooks.request_body = mode != BodyMode::Ignore;
        self.request_body = mode;
        self
    }

    /// Declares [`Filter::on_response_headers`](crate::Filter::on_response_headers).
    ///
    /// ```
    /// assert!(aigw_plugin_sdk::FilterInfo::new().on_response_headers().hooks.response_headers);
    /// ```
    pub fn on_response_headers(mut self) -> Self {
        self.hooks.response_headers = true;
        self
    }

    /// Declares [`Filter::on_response_body`](crate::Filter::on_response_body), delivered as `mode`.
    ///
    /// ```
    /// use aigw_plugin_sdk::{BodyMode, FilterInfo};
    /// let i = FilterInfo::new().on_response_body(BodyMode::Streaming);
    /// assert_eq!((i.hooks.response_body, i.response_body), (true, BodyMode::Streaming));
    /// ```
    pub fn on_response_body(mut self, mode: BodyMode) -> Self {
        self.hooks.response_body = mode != BodyMode::Ignore;
        self.response_body = mode;
        self
    }

    /// Declares [`Filter::on_done`](crate::Filter::on_done).
    ///
    /// ```
    /// assert!(aigw_plugin_sdk::FilterInfo::new().on_done().hooks.done);
    /// ```
    pub fn on_done(mut self) -> Self {
        self.hooks.done = true;
        self
    }

    /// Declares that the filter keeps no per-request state in `self`: whatever a hook
    /// needs comes from its arguments, its configuration and the host (kv, limits). The
    /// host then skips rebuilding the filter (`configure`) between requests and does not
    /// hold an instance for a stream's whole life. A filter that remembers something from
    /// one hook for a later one (a cache key, a request's payload) must not declare it: a
    /// later hook may run on another instance, or after another request's hooks.
    ///
    /// ```
    /// assert!(aigw_plugin_sdk::FilterInfo::new().stateless().stateless);
    /// ```
    pub fn stateless(mut self) -> Self {
        self.stateless = true;
        self
    }

    /// Sets what a failure of the filter does by default.
    ///
    /// ```
    /// use aigw_plugin_sdk::{FilterInfo, OnError};
    /// assert_eq!(FilterInfo::new().on_error(OnError::Open).on_error, OnError::Open);
    /// ```
    pub fn on_error(mut self, on_error: OnError) -> Self {
        self.on_error = on_error;
        self
    }

    /// Declaration mistakes that make the host skip a hook silently: a body hook with
    /// `BodyMode::Ignore`, or a body mode without its hook. The host logs the same
    /// warnings when it loads the filter; [`testing::run`](crate::testing) fails on them.
    ///
    /// ```
    /// use aigw_plugin_sdk::{FilterInfo, Hooks};
    /// let wrong = FilterInfo::hooks(Hooks { request_body: true, ..Hooks::default() });
    /// assert_eq!(wrong.mistakes().len(), 1);
    /// ```
    pub fn mistakes(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (declared, mode, hook, field) in [
            (
                self.hooks.request_body,
                self.request_body,
                "on_request_body",
                "request_body",
            ),
            (
                self.hooks.response_body,
                self.response_body,
                "on_response_body",
                "response_body",
            ),
        ] {
            if declared && mode == BodyMode::Ignore {
                out.push(format!(
                    "describe() declares {hook} but leaves {field} at BodyMode::Ignore, so the host never calls it: use FilterInfo::new().{hook}(BodyMode::Buffered(max_bytes)) or BodyMode::Streaming"
                ));
            } else if !declared && mode != BodyMode::Ignore {
                out.push(format!(
                    "describe() sets {field} but does not declare {hook}, so the host never calls it: use FilterInfo::new().{hook}(mode)"
                ));
            }
        }
        out
    }
}

/// How a request ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered and the response was delivered.
    #[default]
    Completed,
    /// A filter answered.
    RespondedLocally,
    /// The upstream failed (connection, timeout, broken stream).
    UpstreamError,
    /// The client went away before the end.
    ClientAborted,
    /// A filter failed with `on_error = "closed"`.
    FilterFailed,
}

/// Everything known about a finished request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Request id (log id).
    pub request_id: String,
    /// Arrival time, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// Account segment.
    pub account: String,
    /// Gateway name.
    pub gateway: String,
    /// Provider name.
    pub provider: String,
    /// HTTP method.
    pub method: String,
    /// Provider path.
    pub path: String,
    /// Model named in the request body, if any.
    pub model: Option<String>,
    /// Status sent to the client.
    pub status: u16,
    /// How it ended.
    pub outcome: Outcome,
    /// 2xx and completed.
    pub success: bool,
    /// Answered from cache.
    pub cached: bool,
    /// The response was an SSE stream.
    pub streamed: bool,
    /// Prompt tokens, when the response reported usage.
    pub tokens_in: Option<u32>,
    /// Completion tokens, when the response reported usage.
    pub tokens_out: Option<u32>,
    /// Prompt tokens read from the provider's cache, when reported.
    pub tokens_cached: Option<u32>,
    /// Reasoning tokens within the completion, when reported.
    pub tokens_reasoning: Option<u32>,
    /// Cost in USD, when known.
    pub cost: Option<f64>,
    /// Wall time from arrival to the last byte.
    pub duration_ms: u32,
    /// Upstream attempts made.
    pub attempts: u32,
    /// Request body size.
    pub request_bytes: u64,
    /// Response body size.
    pub response_bytes: u64,
    /// Client request headers, provider keys removed.
    pub request_headers: Headers,
    /// Response headers sent to the client.
    pub response_headers: Headers,
}

/// Log levels for [`crate::host::log`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Very detailed.
    Trace,
    /// Debugging.
    Debug,
    /// Normal operation.
    Info,
    /// Something is off.
    Warn,
    /// Something failed.
    Error,
}

/// Window technique for [`crate::host::check_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Technique {
    /// Counter reset at each period boundary.
    Fixed,
    /// Smooth window: requests are spread over the period.
    Sliding,
}

/// Result of [`crate::host::check_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// The cost was counted and is within the limit.
    pub allowed: bool,
    /// What is left in the current window.
    pub remaining: u64,
    /// When refused: how long until it would be allowed.
    pub retry_after_ms: u64,
}

/// What a virtual key (or its team) allows; `None` allows anything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConsumerPolicy {
    /// Model globs (`gpt-4o*`).
    pub models: Option<Vec<String>>,
    /// Providers.
    pub providers: Option<Vec<String>>,
    /// Dollar budget.
    pub budget_usd: Option<f64>,
    /// The budget's period: `day`, `month` (UTC) or `total`.
    pub budget_period: String,
    /// Requests per minute.
    pub requests_per_minute: Option<u64>,
    /// Tokens per minute.
    pub tokens_per_minute: Option<u64>,
}

/// Who is calling, from the request's virtual key ([`crate::host::consumer`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Consumer {
    /// `key_…`.
    pub key_id: String,
    /// The key's name.
    pub key_name: String,
    /// Its team's id.
    pub team: Option<String>,
    /// Its team's name.
    pub team_name: Option<String>,
    /// The key's metadata.
    pub metadata: Vec<(String, String)>,
    /// What the key allows.
    pub key_policy: ConsumerPolicy,
    /// What its team allows.
    pub team_policy: Option<ConsumerPolicy>,
}

/// Why a spend reservation did not fit ([`crate::host::reserve_spend`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpendRefusal {
    /// Settled spend in the current period (USD).
    pub spent_usd: f64,
    /// Held by requests still running (USD).
    pub reserved_usd: f64,
    /// The limit (USD).
    pub limit_usd: f64,
    /// When the period ends (ms since the epoch); 0 for `total`.
    pub resets_at_ms: u64,
}
