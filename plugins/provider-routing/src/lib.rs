//! The built-in provider-routing filter: chooses the provider and model of a
//! request by rules, and falls back to other providers when one fails.
//!
//! Rules are tried in order; the first whose conditions all hold decides.
//! Conditions: the requested `model` (a glob: `gpt-4o*`, `*-mini`, exact),
//! a request `header` (with an optional glob `value`), and the `provider` of
//! the URL. A rule's `targets` pick the provider and model, one of them by
//! weight when there are several (deterministic per `sticky` key, so a user
//! stays on one side of an A/B split). Its `fallback` list is used in order
//! when an attempt fails with a `fallback_on` status or cannot reach the
//! provider: the filter routes the next attempt there and asks for a retry.
//!
//! ```toml
//! [gateways.default.filters.provider-routing]
//! fallback_on = [429, 500, 502, 503, 504]
//! [[gateways.default.filters.provider-routing.rules]]
//! model = "gpt-4o*"
//! targets = [{ provider = "openai", weight = 90 },
//!            { provider = "groq", model = "llama-3.3-70b-versatile", weight = 10 }]
//! sticky = "header:x-user-id"
//! fallback = [{ provider = "groq", model = "llama-3.1-8b-instant" }]
//! ```
//!
//! Put it last in the pipeline: response hooks run in reverse order, so its
//! fallback decision comes before the retry filter's same-provider retry.
//! Routing moves between providers of one API (OpenAI-compatible or Anthropic
//! Messages); a provider other than the one the client named needs a stored
//! key (`[providers.NAME] api_key`), since the client's key is never forwarded.

use aigw_plugin_sdk::{
    BodyDecision, BodyMode, Decision, Filter, FilterInfo, OnError, Request, Response,
    ResponseDecision, config, host,
};
use serde::Deserialize;
use wildmatch::WildMatch;

/// Largest request body read for its `model`.
const MAX_BODY: u32 = 8 << 20;

/// The filter's table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    rules: Vec<RawRule>,
    /// Upstream statuses that move a request to the next fallback.
    #[serde(default = "default_fallback_on")]
    fallback_on: Vec<u16>,
    /// Also fall back when the provider cannot be reached or times out.
    #[serde(default = "yes")]
    fallback_on_connection_error: bool,
    /// Pause before a fallback attempt.
    #[serde(default)]
    fallback_delay_ms: u32,
}

fn default_fallback_on() -> Vec<u16> {
    vec![429, 500, 502, 503, 504]
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    model: Option<String>,
    header: Option<String>,
    value: Option<String>,
    provider: Option<String>,
    #[serde(default)]
    targets: Vec<RawTarget>,
    sticky: Option<String>,
    #[serde(default)]
    fallback: Vec<RawTarget>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    provider: String,
    model: Option<String>,
    #[serde(default = "one")]
    weight: u32,
}

fn one() -> u32 {
    1
}

/// Which request property keeps a client on one side of a weighted split.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sticky {
    /// Each request on its own.
    Request,
    /// The client's IP address.
    Ip,
    /// A request header (falls back to the IP when absent).
    Header(String),
}

#[derive(Debug)]
struct Rule {
    model: Option<WildMatch>,
    header: Option<(String, Option<WildMatch>)>,
    provider: Option<String>,
    targets: Vec<RawTarget>,
    sticky: Sticky,
    fallback: Vec<RawTarget>,
}

impl Rule {
    fn matches(&self, model: Option<&str>, req: &Request) -> bool {
        if let Some(glob) = &self.model
            && !model.is_some_and(|m| glob.matches(m))
        {
            return false;
        }
        if let Some((name, value)) = &self.header {
            match req.headers.get(name) {
                None => return false,
                Some(v) if value.as_ref().is_some_and(|g| !g.matches(v)) => return false,
                Some(_) => {}
            }
        }
        if let Some(p) = &self.provider
            && *p != req.provider
        {
            return false;
        }
        true
    }

    /// The weighted choice among the targets for this request.
    fn pick(&self, req: &Request) -> Option<&RawTarget> {
        let total: u64 = self.targets.iter().map(|t| t.weight as u64).sum();
        if total == 0 {
            return None;
        }
        let key = match &self.sticky {
            Sticky::Request => req.request_id.as_str(),
            Sticky::Ip => req.client_ip.as_str(),
            Sticky::Header(h) => req.headers.get(h).unwrap_or(req.client_ip.as_str()),
        };
        let mut point = fnv1a(key.as_bytes()) % total;
        for t in &self.targets {
            if point < t.weight as u64 {
                return Some(t);
            }
            point -= t.weight as u64;
        }
        self.targets.last()
    }
}

/// 64-bit FNV-1a: stable across builds and platforms, unlike std's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The provider-routing filter for one request.
#[derive(Debug)]
pub struct ProviderRouting {
    rules: Vec<Rule>,
    fallback_on: Vec<u16>,
    fallback_on_connection_error: bool,
    fallback_delay_ms: u32,
    request: Option<Request>,
    /// The rule that matched, and how many of its fallbacks were used.
    matched: Option<usize>,
    fallbacks_used: usize,
}

fn check_target(t: &RawTarget, at: &str) -> Result<(), String> {
    if t.provider.is_empty() {
        return Err(format!("{at}.provider: must not be empty"));
    }
    if t.model.as_deref() == Some("") {
        return Err(format!("{at}.model: must not be empty"));
    }
    Ok(())
}

impl Filter for ProviderRouting {
    fn describe() -> FilterInfo {
        // Routing can be policy (data residency): a failure refuses the request rather
        // than sending it to the default provider.
        FilterInfo::new()
            .on_request_headers()
            .on_request_body(BodyMode::Buffered(MAX_BODY))
            .on_response_headers()
            .on_error(OnError::Closed)
    }

    fn configure(value: serde_json::Value) -> Result<Self, String> {
        let raw: RawConfig = config::parse(value)?;
        if let Some(s) = raw.fallback_on.iter().find(|s| !(100..=599).contains(*s)) {
            return Err(format!("fallback_on: {s} is not an HTTP status"));
        }
        if raw.fallback_delay_ms > 30_000 {
            return Err("fallback_delay_ms: at most 30000".into());
        }
        let mut rules = Vec::with_capacity(raw.rules.len());
        for (i, r) in raw.rules.into_iter().enumerate() {
            let at = format!("rules[{i}]");
            if r.targets.is_empty() && r.fallback.is_empty() {
                return Err(format!("{at}: needs `targets`, `fallback` or both"));
            }
            if r.value.is_some() && r.header.is_none() {
                return Err(format!("{at}.value: needs `header`"));
            }
            for (j, t) in r.targets.iter().enumerate() {
                check_target(t, &format!("{at}.targets[{j}]"))?;
            }
            if r.targets.len() > 1 && r.targets.iter().all(|t| t.weight == 0) {
                return Err(format!("{at}.targets: at least one weight must be above 0"));
            }
            for (j, t) in r.fallback.iter().enumerate() {
                check_target(t, &format!("{at}.fallback[{j}]"))?;
            }
            let sticky = match r.sticky.as_deref() {
                None | Some("request") => Sticky::Request,
                Some("ip") => Sticky::Ip,
                Some(s) => match s.strip_prefix("header:") {
                    Some(h) if !h.is_empty() => Sticky::Header(h.to_ascii_lowercase()),
                    _ => {
                        return Err(format!(
                            "{at}.sticky: expected \"request\", \"ip\" or \"header:<name>\", got \"{s}\""
                        ));
                    }
                },
            };
            rules.push(Rule {
                model: r.model.as_deref().map(WildMatch::new),
                header: r.header.map(|h| {
                    (
                        h.to_ascii_lowercase(),
                        r.value.as_deref().map(WildMatch::new),
                    )
                }),
                provider: r.provider,
                targets: r.targets,
                sticky,
                fallback: r.fallback,
            });
        }
        Ok(ProviderRouting {
            rules,
            fallback_on: raw.fallback_on,
            fallback_on_connection_error: raw.fallback_on_connection_error,
            fallback_delay_ms: raw.fallback_delay_ms,
            request: None,
            matched: None,
            fallbacks_used: 0,
        })
    }

    fn on_request_headers(&mut self, req: &Request) -> Decision {
        self.request = Some(req.clone());
        Decision::proceed()
    }

    fn on_request_body(&mut self, body: &[u8]) -> BodyDecision {
        let Some(req) = self.request.take() else {
            return BodyDecision::Continue;
        };
        let model = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("model").and_then(|m| m.as_str()).map(str::to_string));
        let Some(i) = self
            .rules
            .iter()
            .position(|r| r.matches(model.as_deref(), &req))
        else {
            return BodyDecision::Continue;
        };
        self.matched = Some(i);
        if let Some(t) = self.rules[i].pick(&req).cloned() {
            match host::route(&t.provider, t.model.as_deref()) {
                Ok(()) => {
                    host::annotate("route", &describe_choice(i, &t));
                    host::counter_add("routed", 1);
                }
                Err(e) => host::log(host::Level::Warn, &format!("rules[{i}]: {e}")),
            }
        }
        self.request = Some(req);
        BodyDecision::Continue
    }

    fn on_response_headers(&mut self, resp: &Response) -> ResponseDecision {
        let Some(rule) = self.matched.and_then(|i| self.rules.get(i)) else {
            return ResponseDecision::proceed();
        };
        // An unreachable provider arrives as a synthetic (local) 502/504 with
        // `upstream_error` set; any other local response came from a filter.
        let failed = match &resp.upstream_error {
            Some(_) => self.fallback_on_connection_error,
            None if resp.local => false,
            None => self.fallback_on.contains(&resp.status),
        };
        if !failed {
            return ResponseDecision::proceed();
        }
        while let Some(t) = rule.fallback.get(self.fallbacks_used) {
            self.fallbacks_used += 1;
            match host::route(&t.provider, t.model.as_deref()) {
                Ok(()) => {
                    host::annotate(
                        "fallback",
                        &format!(
                            "{}: {} after {}",
                            self.fallbacks_used,
                            target_text(t),
                            resp.upstream_error
                                .as_ref()
                                .map(|_| "connection error".to_string())
                                .unwrap_or_else(|| resp.status.to_string())
                        ),
                    );
                    host::counter_add("fallbacks", 1);
                    return ResponseDecision::Retry {
                        delay_ms: self.fallback_delay_ms,
                    };
                }
                Err(e) => host::log(host::Level::Warn, &format!("fallback: {e}")),
            }
        }
        ResponseDecision::proceed()
    }
}

fn target_text(t: &RawTarget) -> String {
    match &t.model {
        Some(m) => format!("{}/{m}", t.provider),
        None => t.provider.clone(),
    }
}

fn describe_choice(rule: usize, t: &RawTarget) -> String {
    format!("rules[{rule}] -> {}", target_text(t))
}

aigw_plugin_sdk::export_filter!(ProviderRouting);

#[cfg(test)]
mod tests;
