//! The built-in spend-limit filter: gateway-wide dollar limits in Cloudflare's shape,
//!
//! ```toml
//! [gateways.my-app-gateway.filters.spend-limit]
//! rules = [
//!   { usd = 100.0, period = "day", by = "gateway" },
//!   { usd = 20.0, period = "month", by = "model" },           # each model its own $20
//!   { usd = 5.0, period = "day", by = "metadata.user" },      # each cf-aig-metadata user
//! ]
//! ```
//!
//! `by` is `gateway` (one limit for the gateway), `provider`, `model` (one limit per value) or
//! `metadata.<key>` (per value of that key in the request's `cf-aig-metadata`; a request
//! without it is not counted by that rule). Like `key-policy`'s budgets, each rule reserves the
//! request's worst-case cost before it runs ([`aigw_plugin_sdk::budget`]) and settles the exact
//! cost after, so concurrent requests never spend past a limit; a request over a limit is a 429
//! JSON of type `budget_exceeded` naming the rule. `unpriced`, `max_output_tokens` and
//! `budget_wait_ms` work as in `key-policy`.

use aigw_plugin_sdk::budget;
use aigw_plugin_sdk::host::{reserve_spend, settle_spend};
use aigw_plugin_sdk::{
    BodyDecision, BodyMode, Decision, Filter, FilterInfo, LocalResponse, OnError, Request, Summary,
    config,
};
use serde::Deserialize;
use serde_json::{Value, json};

/// Largest request body the filter reads.
const BODY_LIMIT: u32 = 32 * 1024 * 1024;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    usd: f64,
    period: String,
    by: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct RawConfig {
    rules: Vec<Rule>,
    unpriced: Option<String>,
    max_output_tokens: Option<u64>,
    budget_wait_ms: Option<u64>,
}

/// The spend-limit filter for one request.
#[derive(Debug, Default)]
pub struct SpendLimit {
    rules: Vec<Rule>,
    allow_unpriced: bool,
    max_output_tokens: u64,
    budget_wait_ms: u64,
    gateway: String,
    provider: String,
    path: String,
    metadata: serde_json::Map<String, Value>,
    held: Vec<(u64, f64)>,
}

impl SpendLimit {
    /// The scope rule `index` counts this request under, or `None` when the rule does not
    /// apply (no such metadata, no model found).
    fn scope(&self, index: usize, rule: &Rule, model: Option<&str>) -> Option<String> {
        let value = match rule.by.as_str() {
            "gateway" => String::new(),
            "provider" => self.provider.clone(),
            "model" => model?.to_string(),
            by => {
                let key = by.strip_prefix("metadata.")?;
                match self.metadata.get(key)? {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                }
            }
        };
        // The rule's index and amount: two rules never share a ledger.
        Some(format!(
            "spend-limit|{}|{index}:{}:{}|{}={value}",
            self.gateway, rule.usd, rule.period, rule.by
        ))
    }

    fn release_all(&mut self) {
        for (id, _) in self.held.drain(..) {
            settle_spend(id, 0.0);
        }
    }
}

impl Filter for SpendLimit {
    fn describe() -> FilterInfo {
        FilterInfo::new()
            .on_request_headers()
            .on_request_body(BodyMode::Buffered(BODY_LIMIT))
            .on_done()
            .on_error(OnError::Closed)
    }

    fn configure(value: Value) -> Result<Self, String> {
        let raw: RawConfig = config::parse(value)?;
        for (i, r) in raw.rules.iter().enumerate() {
            if !(r.usd.is_finite() && r.usd > 0.0) {
                return Err(format!("rules[{i}].usd: expected USD above 0"));
            }
            if !["day", "month", "total"].contains(&r.period.as_str()) {
                return Err(format!(
                    "rules[{i}].period: expected \"day\", \"month\" or \"total\", got \"{}\"",
                    r.period
                ));
            }
            let by_ok = ["gateway", "provider", "model"].contains(&r.by.as_str())
                || r.by
                    .strip_prefix("metadata.")
                    .is_some_and(|k| !k.is_empty());
            if !by_ok {
                return Err(format!(
                    "rules[{i}].by: expected \"gateway\", \"provider\", \"model\" or \"metadata.<key>\", got \"{}\"",
                    r.by
                ));
            }
        }
        let allow_unpriced = budget::allow_unpriced(raw.unpriced.as_deref())?;
        Ok(SpendLimit {
            rules: raw.rules,
            allow_unpriced,
            max_output_tokens: raw.max_output_tokens.unwrap_or(4096).max(1),
            budget_wait_ms: raw.budget_wait_ms.unwrap_or(30_000),
            ..SpendLimit::default()
        })
    }

    fn on_request_headers(&mut self, req: &Request) -> Decision {
        self.gateway = req.gateway.clone();
        self.provider = req.provider.clone();
        self.path = req.path.clone();
        if let Some(Ok(Value::Object(m))) = req
            .headers
            .get("cf-aig-metadata")
            .map(serde_json::from_str::<Value>)
        {
            self.metadata = m;
        }
        Decision::proceed()
    }

    fn on_request_body(&mut self, body: &[u8]) -> BodyDecision {
        if self.rules.is_empty() {
            return BodyDecision::Continue;
        }
        let worst = budget::worst_case(&self.provider, &self.path, body, self.max_output_tokens);
        // A model rule with no model found fails closed under `unpriced = "deny"`.
        if worst.model.is_none()
            && !self.allow_unpriced
            && self.rules.iter().any(|r| r.by == "model")
        {
            return BodyDecision::Respond(LocalResponse::error(
                403,
                "unpriced_model",
                "a spend limit is kept per model, and this request names none (spend-limit unpriced = \"deny\")",
            ));
        }
        let scopes: Vec<(Rule, String)> = self
            .rules
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Some((r.clone(), self.scope(i, r, worst.model.as_deref())?)))
            .collect();
        if scopes.is_empty() {
            return BodyDecision::Continue;
        }
        if let Some(why) = &worst.unbounded {
            return BodyDecision::Respond(budget::unbounded_refusal(why));
        }
        let Some(bound) = worst.usd else {
            if self.allow_unpriced {
                return BodyDecision::Continue;
            }
            let named = worst.model.as_deref().unwrap_or("(none found)");
            return BodyDecision::Respond(LocalResponse::error(
                403,
                "unpriced_model",
                &format!(
                    "model '{named}' at '{}' has no price, so its cost cannot be held against the spend limits (spend-limit unpriced = \"deny\")",
                    self.provider
                ),
            ));
        };
        for (rule, scope) in scopes {
            match reserve_spend(&scope, bound, rule.usd, &rule.period, self.budget_wait_ms) {
                Ok(id) => self.held.push((id, bound)),
                Err(r) => {
                    self.release_all();
                    return BodyDecision::Respond(LocalResponse::json(
                        429,
                        &json!({"error": {
                            "type": "budget_exceeded",
                            "message": format!(
                                "spend limit of ${} per {} by {} reached for this request (it may cost up to ${bound:.6})",
                                rule.usd, rule.period, rule.by
                            ),
                            "rule": {"usd": rule.usd, "period": rule.period, "by": rule.by},
                            "spend_usd": r.spent_usd,
                            "reserved_usd": r.reserved_usd,
                            "limit_usd": r.limit_usd,
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
        for (id, held) in std::mem::take(&mut self.held) {
            settle_spend(id, budget::charge(s, held));
        }
    }
}

aigw_plugin_sdk::export_filter!(SpendLimit);

#[cfg(test)]
mod tests {
    use super::*;
    use aigw_plugin_sdk::Headers;
    use aigw_plugin_sdk::testing::MockHost;

    fn run(config: Value, model: &str, meta: Option<&str>) -> u16 {
        let mut f = SpendLimit::configure(config).unwrap();
        let mut headers = vec![];
        if let Some(m) = meta {
            headers.push(("cf-aig-metadata", m));
        }
        f.on_request_headers(&Request {
            gateway: "g".into(),
            provider: "openai".into(),
            path: "/chat/completions".into(),
            headers: Headers::from_pairs(headers),
            ..Request::default()
        });
        let body = json!({"model": model, "max_tokens": 100}).to_string();
        match f.on_request_body(body.as_bytes()) {
            BodyDecision::Respond(r) => r.status,
            _ => {
                f.on_done(&Summary {
                    cost: Some(0.0001),
                    attempts: 1,
                    ..Summary::default()
                });
                200
            }
        }
    }

    #[test]
    fn limits_by_model_and_metadata() {
        MockHost::reset();
        MockHost::with(|m| {
            m.prices.insert(("openai".into(), "a".into()), (1.0, 1.0));
            m.prices.insert(("openai".into(), "b".into()), (1.0, 1.0));
        });
        // Each request may cost up to (bytes + 100) / 1e6 ≈ $0.00013 and costs $0.0001.
        let by_model = json!({"rules": [{"usd": 0.0002, "period": "day", "by": "model"}]});
        assert_eq!(run(by_model.clone(), "a", None), 200);
        assert_eq!(run(by_model.clone(), "a", None), 429);
        assert_eq!(
            run(by_model, "b", None),
            200,
            "another model has its own limit"
        );
        let by_user = json!({"rules": [{"usd": 0.0002, "period": "day", "by": "metadata.user"}]});
        assert_eq!(run(by_user.clone(), "a", Some(r#"{"user":"ada"}"#)), 200);
        assert_eq!(run(by_user.clone(), "a", Some(r#"{"user":"ada"}"#)), 429);
        assert_eq!(run(by_user.clone(), "a", Some(r#"{"user":"bob"}"#)), 200);
        assert_eq!(
            run(by_user, "a", None),
            200,
            "no metadata: the rule does not apply"
        );
    }

    #[test]
    fn bad_rules_name_the_field() {
        for (cfg, field) in [
            (
                json!({"rules": [{"usd": 0, "period": "day", "by": "model"}]}),
                "rules[0].usd",
            ),
            (
                json!({"rules": [{"usd": 1, "period": "week", "by": "model"}]}),
                "rules[0].period",
            ),
            (
                json!({"rules": [{"usd": 1, "period": "day", "by": "colour"}]}),
                "rules[0].by",
            ),
            (json!({"rules": [], "unpriced": "maybe"}), "unpriced"),
        ] {
            let e = SpendLimit::configure(cfg).unwrap_err();
            assert!(e.contains(field), "{e}");
        }
    }
}
