//! The built-in rate-limit filter: `limit` requests per `period_s`, counted in
//! the host (`fixed` or `sliding` window), keyed by client IP or a header
//! (`key = "header:x-user-id"`; requests without it fall back to the IP).
//! Over the limit: 429 JSON naming the limit, with `Retry-After`.
//! Optional `token_budget`: tokens (in + out) per key and period, debited
//! from the response's usage when the request is done.

use aigw_plugin_sdk::host::{Technique, check_limit, debit, local, set_local};
use aigw_plugin_sdk::{
    Decision, Filter, FilterInfo, LocalResponse, OnError, Request, Summary, config,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Header values longer than this count under their SHA-256 (a key the host keeps in
/// `request-local` is at most 4 KiB).
const MAX_PLAIN_VALUE: usize = 256;

/// Where the request hook leaves the token counter's key for the done hook.
const DEBIT_KEY: &str = "debit-key";

/// What the limit is keyed by.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyBy {
    Ip,
    Header(String),
    /// One bucket for the whole gateway (Cloudflare's gateway rate limit).
    Gateway,
}

/// The rate-limit filter for one request.
#[derive(Debug)]
pub struct RateLimit {
    limit: u64,
    period_s: u64,
    key_by: KeyBy,
    technique: Technique,
    token_budget: Option<u64>,
}

/// The filter's table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct RawConfig {
    /// Requests allowed per key and period; above 0.
    limit: u64,
    /// The period in seconds; above 0.
    period_s: u64,
    /// `"ip"` (the default), `"gateway"` (one bucket for every client) or `"header:<name>"`.
    key: Option<String>,
    /// `"fixed"` (the default) or `"sliding"` window.
    technique: Option<String>,
    /// Tokens (in + out) allowed per key and period; above 0 when given.
    token_budget: Option<u64>,
}

impl RateLimit {
    fn period_ms(&self) -> u64 {
        self.period_s * 1000
    }

    fn refuse(&self, what: &str, retry_after_ms: u64) -> Decision {
        let secs = retry_after_ms.div_ceil(1000).max(1);
        Decision::Respond(LocalResponse::too_many_requests(
            &format!(
                "{what} per {}s reached for this client; retry in {secs}s",
                self.period_s
            ),
            retry_after_ms,
        ))
    }
}

impl Filter for RateLimit {
    fn describe() -> FilterInfo {
        // A limit that fails must not become no limit: closed. Stateless: the counter key
        // the done hook debits is kept in the host (`request-local`), not in `self`.
        FilterInfo::new()
            .on_request_headers()
            .on_done()
            .on_error(OnError::Closed)
            .stateless()
    }

    fn configure(value: serde_json::Value) -> Result<Self, String> {
        let raw: RawConfig = config::parse(value)?;
        if raw.limit == 0 {
            return Err("limit: expected a positive integer".into());
        }
        if raw.period_s == 0 {
            return Err("period_s: expected a positive integer".into());
        }
        let key_by = match raw.key.as_deref() {
            None | Some("ip") => KeyBy::Ip,
            Some("gateway") => KeyBy::Gateway,
            Some(k) => match k.strip_prefix("header:") {
                Some(name) if !name.is_empty() => KeyBy::Header(name.to_ascii_lowercase()),
                _ => {
                    return Err("key: expected \"ip\", \"gateway\" or \"header:<name>\"".into());
                }
            },
        };
        let technique = match raw.technique.as_deref() {
            None | Some("fixed") => Technique::Fixed,
            Some("sliding") => Technique::Sliding,
            Some(_) => return Err("technique: expected \"fixed\" or \"sliding\"".into()),
        };
        if raw.token_budget == Some(0) {
            return Err("token_budget: expected a positive integer".into());
        }
        Ok(RateLimit {
            limit: raw.limit,
            period_s: raw.period_s,
            key_by,
            technique,
            token_budget: raw.token_budget,
        })
    }

    fn on_request_headers(&mut self, req: &Request) -> Decision {
        let key = match &self.key_by {
            KeyBy::Header(name) => match req.headers.get(name) {
                // A long value (a JWT) is counted under its digest: the key stays short
                // enough for the host to keep for the done hook.
                Some(v) if v.len() > MAX_PLAIN_VALUE => format!(
                    "{}|h:{name}#sha256:{}",
                    req.gateway,
                    hex::encode(Sha256::digest(v.as_bytes()))
                ),
                Some(v) if !v.is_empty() => format!("{}|h:{name}={v}", req.gateway),
                _ => format!("{}|ip:{}", req.gateway, req.client_ip),
            },
            KeyBy::Ip => format!("{}|ip:{}", req.gateway, req.client_ip),
            KeyBy::Gateway => format!("{}|gateway", req.gateway),
        };
        if let Some(budget) = self.token_budget {
            // For the done hook, which debits the tokens this request used.
            if !set_local(DEBIT_KEY, &key) {
                return Decision::Respond(LocalResponse::error(
                    500,
                    "filter_failed",
                    "rate-limit: the host refused to keep this request's counter key",
                ));
            }
            // Cost 0: refused only when earlier responses already spent the budget.
            let v = check_limit(
                &format!("tokens|{key}"),
                0,
                budget,
                self.period_ms(),
                Technique::Fixed,
            );
            if !v.allowed || v.remaining == 0 {
                return self.refuse(
                    &format!("token budget of {budget} tokens"),
                    v.retry_after_ms,
                );
            }
        }
        let v = check_limit(&key, 1, self.limit, self.period_ms(), self.technique);
        if !v.allowed {
            return self.refuse(
                &format!("rate limit of {} requests", self.limit),
                v.retry_after_ms,
            );
        }
        Decision::proceed()
    }

    fn on_done(&mut self, summary: &Summary) {
        let (Some(budget), Some(key)) = (self.token_budget, local(DEBIT_KEY)) else {
            return;
        };
        let used = summary.tokens_in.unwrap_or(0) as u64 + summary.tokens_out.unwrap_or(0) as u64;
        if used > 0 && !summary.cached {
            debit(
                &format!("tokens|{key}"),
                used,
                budget,
                self.period_ms(),
                Technique::Fixed,
            );
        }
    }
}

aigw_plugin_sdk::export_filter!(RateLimit);

#[cfg(test)]
mod tests {
    use super::*;
    use aigw_plugin_sdk::Headers;
    use aigw_plugin_sdk::testing::MockHost;

    fn req(ip: &str, headers: &[(&str, &str)]) -> Request {
        Request {
            gateway: "g".into(),
            client_ip: ip.into(),
            headers: Headers::from_pairs(headers.iter().copied()),
            ..Request::default()
        }
    }

    fn status(config: serde_json::Value, r: &Request) -> u16 {
        let mut f = RateLimit::configure(config).unwrap();
        match f.on_request_headers(r) {
            Decision::Respond(resp) => resp.status,
            Decision::Continue(_) => 200,
        }
    }

    #[test]
    fn a_long_header_value_is_counted_under_its_digest_with_a_token_budget() {
        MockHost::reset();
        let jwt = "x".repeat(5000);
        let cfg = serde_json::json!({"limit": 1, "period_s": 60, "key": "header:authorization", "token_budget": 100});
        assert_eq!(
            status(cfg.clone(), &req("1.1.1.1", &[("authorization", &jwt)])),
            200
        );
        assert_eq!(
            status(cfg.clone(), &req("2.2.2.2", &[("authorization", &jwt)])),
            429
        );
        let other = "y".repeat(5000);
        assert_eq!(
            status(cfg, &req("1.1.1.1", &[("authorization", &other)])),
            200
        );
    }

    #[test]
    fn limit_by_ip() {
        MockHost::reset();
        let cfg = serde_json::json!({"limit": 2, "period_s": 60});
        assert_eq!(status(cfg.clone(), &req("1.1.1.1", &[])), 200);
        assert_eq!(status(cfg.clone(), &req("1.1.1.1", &[])), 200);
        assert_eq!(status(cfg.clone(), &req("1.1.1.1", &[])), 429);
        assert_eq!(status(cfg, &req("2.2.2.2", &[])), 200);
    }

    #[test]
    fn one_bucket_for_the_gateway() {
        MockHost::reset();
        let cfg = serde_json::json!({"limit": 2, "period_s": 60, "key": "gateway"});
        assert_eq!(status(cfg.clone(), &req("1.1.1.1", &[])), 200);
        assert_eq!(
            status(cfg.clone(), &req("2.2.2.2", &[("x-user", "b")])),
            200
        );
        assert_eq!(
            status(cfg, &req("3.3.3.3", &[])),
            429,
            "every client shares it"
        );
    }

    #[test]
    fn limit_by_header_falls_back_to_ip() {
        MockHost::reset();
        let cfg = serde_json::json!({"limit": 1, "period_s": 60, "key": "header:x-user"});
        assert_eq!(
            status(cfg.clone(), &req("1.1.1.1", &[("x-user", "a")])),
            200
        );
        assert_eq!(
            status(cfg.clone(), &req("1.1.1.1", &[("x-user", "a")])),
            429
        );
        assert_eq!(
            status(cfg.clone(), &req("1.1.1.1", &[("x-user", "b")])),
            200
        );
        assert_eq!(status(cfg.clone(), &req("1.1.1.1", &[])), 200);
        assert_eq!(status(cfg, &req("1.1.1.1", &[])), 429);
    }

    #[test]
    fn refusal_has_retry_after() {
        MockHost::reset();
        let cfg = serde_json::json!({"limit": 1, "period_s": 10});
        let mut f = RateLimit::configure(cfg.clone()).unwrap();
        f.on_request_headers(&req("ip", &[]));
        let mut f = RateLimit::configure(cfg).unwrap();
        match f.on_request_headers(&req("ip", &[])) {
            Decision::Respond(r) => {
                assert!(r.headers.iter().any(|h| h.name == "retry-after"));
                assert!(
                    String::from_utf8(r.body)
                        .unwrap()
                        .contains("rate limit of 1 requests per 10s")
                );
            }
            other => panic!("expected 429, got {other:?}"),
        }
    }

    #[test]
    fn token_budget_is_debited_at_done() {
        MockHost::reset();
        let cfg = serde_json::json!({"limit": 100, "period_s": 60, "token_budget": 50});
        let mut f = RateLimit::configure(cfg.clone()).unwrap();
        assert!(matches!(
            f.on_request_headers(&req("ip", &[])),
            Decision::Continue(_)
        ));
        f.on_done(&Summary {
            tokens_in: Some(30),
            tokens_out: Some(30),
            ..Summary::default()
        });
        assert_eq!(status(cfg, &req("ip", &[])), 429);
    }

    #[test]
    fn config_errors_name_the_key() {
        assert!(
            RateLimit::configure(serde_json::json!({"period_s": 1}))
                .unwrap_err()
                .contains("limit")
        );
        assert!(
            RateLimit::configure(serde_json::json!({"limit": 1, "period_s": 1, "key": "cookie"}))
                .unwrap_err()
                .contains("key")
        );
        assert!(
            RateLimit::configure(
                serde_json::json!({"limit": 1, "period_s": 1, "technique": "leaky"})
            )
            .unwrap_err()
            .contains("technique")
        );
    }

    #[test]
    fn config_is_typed_and_defaults_hold() {
        let err = |v| RateLimit::configure(v).unwrap_err();
        let misspelt = err(serde_json::json!({"limit": 1, "period_s": 1, "tecnique": "fixed"}));
        assert!(misspelt.contains("`tecnique`"), "{misspelt}");
        let typed = err(serde_json::json!({"limit": "5", "period_s": 1}));
        assert!(typed.starts_with("limit:"), "{typed}");
        let typed = err(serde_json::json!({"limit": 1, "period_s": 1, "key": 3}));
        assert!(typed.starts_with("key:"), "{typed}");
        let missing = err(serde_json::json!({"limit": 1}));
        assert!(missing.contains("`period_s`"), "{missing}");
        for (cfg, key) in [
            (serde_json::json!({"limit": 0, "period_s": 1}), "limit:"),
            (serde_json::json!({"limit": 1, "period_s": 0}), "period_s:"),
            (
                serde_json::json!({"limit": 1, "period_s": 1, "token_budget": 0}),
                "token_budget:",
            ),
            (
                serde_json::json!({"limit": 1, "period_s": 1, "token_budget": -3}),
                "token_budget:",
            ),
            (
                serde_json::json!({"limit": 1, "period_s": 1, "key": "header:"}),
                "key:",
            ),
            (
                serde_json::json!({"limit": 1, "period_s": 1, "technique": 1}),
                "technique:",
            ),
        ] {
            let e = err(cfg);
            assert!(e.starts_with(key), "{e}");
        }

        let f = RateLimit::configure(serde_json::json!({"limit": 2, "period_s": 30})).unwrap();
        assert_eq!((f.limit, f.period_s), (2, 30));
        assert_eq!(f.key_by, KeyBy::Ip);
        assert!(matches!(f.technique, Technique::Fixed));
        assert_eq!(f.token_budget, None);
        let f = RateLimit::configure(serde_json::json!({
            "limit": 2, "period_s": 30, "key": "header:X-User",
            "technique": "sliding", "token_budget": 9,
        }))
        .unwrap();
        assert_eq!(f.key_by, KeyBy::Header("x-user".into()));
        assert!(matches!(f.technique, Technique::Sliding));
        assert_eq!(f.token_budget, Some(9));
    }
}
