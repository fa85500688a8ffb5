//! The built-in key-policy filter: what a virtual key (and its team) may do. Per key and per
//! team it enforces provider and model access (403 JSON naming the allowed patterns), requests
//! and tokens per minute (429 with `Retry-After`), and a dollar budget (429 JSON of type
//! `budget_exceeded`, with spend, limit, period and reset time).
//!
//! Budgets cannot be overshot, also under concurrency: before a request runs, the filter
//! reserves its worst-case cost with the host (`spend.reserve`), and the reservation is taken
//! only if settled spend plus every running request's reservation plus this one fits the
//! limit. The worst case is the request body's length in bytes as input tokens (a token is
//! never shorter than one byte of the text it encodes) and the request's own output limit
//! (`max_tokens`, `max_completion_tokens`, `max_output_tokens`,
//! `generationConfig.maxOutputTokens`), priced at the model's dearest input rate. A request
//! that names no output limit gets `max_output_tokens` (the filter's setting) written into it,
//! so the provider cannot answer past the bound. At the end the reservation is settled at the
//! exact cost from the provider's usage, or released (a cache hit, a request that never
//! reached the provider); one whose cost stays unknown (a stream cut before its usage) is
//! charged what it reserved, never less. A request that would fit once running requests
//! settle waits for them (up to `budget_wait_ms`) instead of being refused, so concurrent
//! clients get as much of a budget as one sequential client would. A model the catalog cannot price is refused (`unpriced = "deny"`,
//! the default) or let through unbudgeted (`unpriced = "allow"`).
//!
//! Requests without a virtual key pass untouched (the gateway's `keys = "required"` refuses
//! them before any filter).

use aigw_plugin_sdk::budget;
use aigw_plugin_sdk::host::{
    Consumer, ConsumerPolicy, Technique, check_limit_across_gateways, consumer,
    debit_across_gateways, reserve_spend, settle_spend,
};
use aigw_plugin_sdk::{
    BodyDecision, BodyMode, Decision, Filter, FilterInfo, LocalResponse, OnError, Request, Summary,
    config,
};
use serde::Deserialize;
use serde_json::{Value, json};

/// Largest request body the filter reads (model and output limit).
const BODY_LIMIT: u32 = 32 * 1024 * 1024;

/// The filter's table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct RawConfig {
    /// `"deny"` (the default) or `"allow"` a budgeted request to a model without a price.
    unpriced: Option<String>,
    /// Output limit written into requests that name none (default 4096).
    max_output_tokens: Option<u64>,
    /// How long a request waits for running requests to settle when only their
    /// reservations keep it from fitting the budget (ms, default 30000; 0 refuses at once).
    budget_wait_ms: Option<u64>,
}

/// One budget's reservation for this request.
#[derive(Debug, Clone)]
struct Held {
    id: u64,
    usd: f64,
}

/// The key-policy filter for one request.
#[derive(Debug, Default)]
pub struct KeyPolicy {
    allow_unpriced: bool,
    max_output_tokens: u64,
    budget_wait_ms: u64,
    consumer: Option<Consumer>,
    provider: String,
    path: String,
    held: Vec<Held>,
    /// Token-per-minute counters to debit at the end: (counter key, limit).
    tpm: Vec<(String, u64)>,
}

/// The policies that apply, each with the scope it is counted under.
fn policies(c: &Consumer) -> Vec<(&str, &str, &ConsumerPolicy)> {
    let mut out = vec![("key", c.key_id.as_str(), &c.key_policy)];
    if let (Some(team), Some(p)) = (&c.team, &c.team_policy) {
        out.push(("team", team.as_str(), p));
    }
    out
}

fn forbidden(kind: &str, message: String, allowed: &[String]) -> LocalResponse {
    LocalResponse::json(
        403,
        &json!({"error": {"type": kind, "message": message, "allowed": allowed}}),
    )
}

fn too_many(message: String, retry_after_ms: u64) -> LocalResponse {
    LocalResponse::too_many_requests(&message, retry_after_ms)
}

impl KeyPolicy {
    fn release_all(&mut self) {
        for h in self.held.drain(..) {
            settle_spend(h.id, 0.0);
        }
    }
}

impl Filter for KeyPolicy {
    fn describe() -> FilterInfo {
        FilterInfo::new()
            .on_request_headers()
            .on_request_body(BodyMode::Buffered(BODY_LIMIT))
            .on_done()
            .on_error(OnError::Closed)
    }

    fn configure(value: Value) -> Result<Self, String> {
        let raw: RawConfig = config::parse(value)?;
        let allow_unpriced = budget::allow_unpriced(raw.unpriced.as_deref())?;
        let max_output_tokens = raw.max_output_tokens.unwrap_or(4096);
        if max_output_tokens == 0 {
            return Err("max_output_tokens: expected a positive integer".into());
        }
        Ok(KeyPolicy {
            allow_unpriced,
            max_output_tokens,
            budget_wait_ms: raw.budget_wait_ms.unwrap_or(30_000),
            ..KeyPolicy::default()
        })
    }

    fn on_request_headers(&mut self, req: &Request) -> Decision {
        let Some(c) = consumer() else {
            return Decision::proceed();
        };
        self.provider = req.provider.clone();
        self.path = req.path.clone();
        for (what, scope, p) in policies(&c) {
            if let Some(allowed) = &p.providers
                && !allowed.contains(&req.provider)
            {
                return Decision::Respond(forbidden(
                    "provider_not_allowed",
                    format!("{what} '{scope}' may not use provider '{}'", req.provider),
                    allowed,
                ));
            }
        }
        for (what, scope, p) in policies(&c) {
            if let Some(tpm) = p.tokens_per_minute {
                let counter = format!("tpm|{scope}");
                // Cost 0: refused only when earlier answers already used the minute's tokens.
                let v = check_limit_across_gateways(&counter, 0, tpm, 60_000, Technique::Fixed);
                if !v.allowed || v.remaining == 0 {
                    return Decision::Respond(too_many(
                        format!("{what} '{scope}': {tpm} tokens per minute reached"),
                        v.retry_after_ms,
                    ));
                }
                self.tpm.push((counter, tpm));
            }
            if let Some(rpm) = p.requests_per_minute {
                let v = check_limit_across_gateways(
                    &format!("rpm|{scope}"),
                    1,
                    rpm,
                    60_000,
                    Technique::Sliding,
                );
                if !v.allowed {
                    return Decision::Respond(too_many(
                        format!("{what} '{scope}': {rpm} requests per minute reached"),
                        v.retry_after_ms,
                    ));
                }
            }
        }
        self.consumer = Some(c);
        Decision::proceed()
    }

    fn on_request_body(&mut self, body: &[u8]) -> BodyDecision {
        let Some(c) = self.consumer.clone() else {
            return BodyDecision::Continue;
        };
        // Parsed once: for the model check and for the worst case.
        let mut json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let model = budget::model_of(&json, &self.path);
        for (what, scope, p) in policies(&c) {
            if let Some(allowed) = &p.models {
                let ok = model
                    .as_deref()
                    .is_some_and(|m| aigw_plugin_sdk::glob::matches_any(allowed, m));
                if !ok {
                    let named = model.as_deref().unwrap_or("(none found)");
                    return BodyDecision::Respond(forbidden(
                        "model_not_allowed",
                        format!("{what} '{scope}' may not use model '{named}'"),
                        allowed,
                    ));
                }
            }
        }
        let budgets: Vec<(&str, &str, f64, &str)> = policies(&c)
            .into_iter()
            .filter_map(|(what, scope, p)| {
                p.budget_usd
                    .map(|b| (what, scope, b, p.budget_period.as_str()))
            })
            .collect();
        if budgets.is_empty() {
            return BodyDecision::Continue;
        }
        let worst = budget::worst_case_of(
            &self.provider,
            &self.path,
            &mut json,
            body.len(),
            self.max_output_tokens,
        );
        if let Some(why) = &worst.unbounded {
            return BodyDecision::Respond(budget::unbounded_refusal(why));
        }
        let Some(bound) = worst.usd else {
            if self.allow_unpriced {
                return BodyDecision::Continue;
            }
            let named = model.as_deref().unwrap_or("(none found)");
            return BodyDecision::Respond(LocalResponse::error(
                403,
                "unpriced_model",
                &format!(
                    "model '{named}' at '{}' has no price, so its cost cannot be held against the budget (key-policy unpriced = \"deny\")",
                    self.provider
                ),
            ));
        };
        for (what, scope, limit, period) in budgets {
            match reserve_spend(scope, bound, limit, period, self.budget_wait_ms) {
                Ok(id) => self.held.push(Held { id, usd: bound }),
                Err(r) => {
                    self.release_all();
                    return BodyDecision::Respond(LocalResponse::json(
                        429,
                        &json!({"error": {
                            "type": "budget_exceeded",
                            "message": format!(
                                "{what} '{scope}': this request may cost up to ${bound:.6}, and the {period} budget of ${limit} has ${:.6} left",
                                (r.limit_usd - r.spent_usd - r.reserved_usd).max(0.0)
                            ),
                            "spend_usd": r.spent_usd,
                            "reserved_usd": r.reserved_usd,
                            "limit_usd": r.limit_usd,
                            "period": period,
                            "resets_at_ms": r.resets_at_ms,
                        }}),
                    ));
                }
            }
        }
        match worst.rewritten {
            Some(b) => BodyDecision::Replace(b),
            None => BodyDecision::Continue,
        }
    }

    fn on_done(&mut self, s: &Summary) {
        // The exact cost, or the hold when it cannot be known (`budget::charge`).
        for h in std::mem::take(&mut self.held) {
            settle_spend(h.id, budget::charge(s, h.usd));
        }
        let used = u64::from(s.tokens_in.unwrap_or(0)) + u64::from(s.tokens_out.unwrap_or(0));
        if used > 0 && !s.cached {
            for (counter, tpm) in &self.tpm {
                debit_across_gateways(counter, used, *tpm, 60_000, Technique::Fixed);
            }
        }
    }
}

aigw_plugin_sdk::export_filter!(KeyPolicy);

#[cfg(test)]
mod tests {
    use super::*;
    use aigw_plugin_sdk::testing::MockHost;

    fn setup(policy: ConsumerPolicy, team: Option<ConsumerPolicy>) {
        MockHost::reset();
        MockHost::with(|m| {
            m.consumer = Some(Consumer {
                key_id: "key_1".into(),
                key_name: "app".into(),
                team: team.as_ref().map(|_| "team_1".to_string()),
                team_policy: team,
                key_policy: policy,
                ..Consumer::default()
            });
            m.prices
                .insert(("openai".into(), "gpt-4o-mini".into()), (0.15, 0.6));
        });
    }

    fn req(provider: &str, path: &str) -> Request {
        Request {
            provider: provider.into(),
            path: path.into(),
            ..Request::default()
        }
    }

    fn filter() -> KeyPolicy {
        KeyPolicy::configure(json!({})).unwrap()
    }

    fn status_of(d: BodyDecision) -> u16 {
        match d {
            BodyDecision::Respond(r) => r.status,
            _ => 200,
        }
    }

    #[test]
    fn provider_and_model_access() {
        setup(
            ConsumerPolicy {
                providers: Some(vec!["openai".into()]),
                models: Some(vec!["gpt-4o*".into()]),
                ..ConsumerPolicy::default()
            },
            None,
        );
        let mut f = filter();
        assert!(
            matches!(f.on_request_headers(&req("anthropic", "/v1/messages")), Decision::Respond(r) if r.status == 403)
        );
        let mut f = filter();
        assert!(matches!(
            f.on_request_headers(&req("openai", "/chat/completions")),
            Decision::Continue(_)
        ));
        assert_eq!(
            status_of(f.on_request_body(br#"{"model":"gpt-4o-mini"}"#)),
            200
        );
        let mut f = filter();
        f.on_request_headers(&req("openai", "/chat/completions"));
        match f.on_request_body(br#"{"model":"o3"}"#) {
            BodyDecision::Respond(r) => {
                assert_eq!(r.status, 403);
                let v: Value = serde_json::from_slice(&r.body).unwrap();
                assert_eq!(v["error"]["allowed"], json!(["gpt-4o*"]));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn budget_reserves_the_bound_writes_the_cap_and_settles_the_cost() {
        setup(
            ConsumerPolicy {
                budget_usd: Some(1.0),
                budget_period: "day".into(),
                ..ConsumerPolicy::default()
            },
            None,
        );
        let mut f = filter();
        f.on_request_headers(&req("openai", "/chat/completions"));
        let body = br#"{"model":"gpt-4o-mini","messages":[]}"#;
        let out = f.on_request_body(body);
        let BodyDecision::Replace(b) = out else {
            panic!("{out:?}")
        };
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["max_completion_tokens"], 4096);
        let bound = (body.len() as f64 * 0.15 + 4096.0 * 0.6) / 1e6;
        assert_eq!(
            MockHost::with(|m| m.spend[&("key_1".to_string(), "day".to_string())]),
            (0.0, bound)
        );
        f.on_done(&Summary {
            cost: Some(0.0001),
            attempts: 1,
            ..Summary::default()
        });
        assert_eq!(
            MockHost::with(|m| m.spend[&("key_1".to_string(), "day".to_string())]),
            (0.0001, 0.0)
        );
    }

    #[test]
    fn a_budget_that_cannot_hold_the_bound_refuses_and_releases_the_other() {
        setup(
            ConsumerPolicy {
                budget_usd: Some(1.0),
                budget_period: "month".into(),
                ..ConsumerPolicy::default()
            },
            Some(ConsumerPolicy {
                budget_usd: Some(0.000001),
                budget_period: "day".into(),
                ..ConsumerPolicy::default()
            }),
        );
        let mut f = filter();
        f.on_request_headers(&req("openai", "/chat/completions"));
        match f.on_request_body(br#"{"model":"gpt-4o-mini","max_tokens":100}"#) {
            BodyDecision::Respond(r) => {
                assert_eq!(r.status, 429);
                let v: Value = serde_json::from_slice(&r.body).unwrap();
                assert_eq!(v["error"]["type"], "budget_exceeded");
                assert_eq!(v["error"]["period"], "day");
            }
            other => panic!("{other:?}"),
        }
        // The key's reservation was given back.
        assert_eq!(
            MockHost::with(|m| m.spend[&("key_1".to_string(), "month".to_string())]),
            (0.0, 0.0)
        );
    }

    #[test]
    fn unpriced_models_follow_the_setting() {
        setup(
            ConsumerPolicy {
                budget_usd: Some(1.0),
                budget_period: "total".into(),
                ..ConsumerPolicy::default()
            },
            None,
        );
        let body = br#"{"model":"house-model"}"#;
        let mut f = filter();
        f.on_request_headers(&req("openai", "/chat/completions"));
        assert_eq!(status_of(f.on_request_body(body)), 403);
        let mut f = KeyPolicy::configure(json!({"unpriced": "allow"})).unwrap();
        f.on_request_headers(&req("openai", "/chat/completions"));
        assert_eq!(status_of(f.on_request_body(body)), 200);
        assert!(KeyPolicy::configure(json!({"unpriced": "maybe"})).is_err());
    }

    #[test]
    fn requests_per_minute() {
        setup(
            ConsumerPolicy {
                requests_per_minute: Some(2),
                ..ConsumerPolicy::default()
            },
            None,
        );
        let codes: Vec<bool> = (0..3)
            .map(|_| {
                matches!(
                    filter().on_request_headers(&req("openai", "/x")),
                    Decision::Continue(_)
                )
            })
            .collect();
        assert_eq!(codes, [true, true, false]);
    }

    #[test]
    fn no_key_no_policy() {
        MockHost::reset();
        let mut f = filter();
        assert!(matches!(
            f.on_request_headers(&req("openai", "/x")),
            Decision::Continue(_)
        ));
        assert_eq!(status_of(f.on_request_body(b"not json")), 200);
    }
}
