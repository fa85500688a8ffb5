//! The built-in retry filter: on configured statuses (default 429, 500, 502,
//! 503, 504) and upstream connection errors, asks the host to send the request
//! again with constant, linear or exponential backoff, up to `max_attempts`
//! (≤ 5). Honours an upstream `Retry-After` (seconds). Per request:
//! `cf-aig-max-attempts`, `cf-aig-retry-delay` (ms), `cf-aig-backoff`.
//! The host never retries once a byte reached the client. The final response
//! carries `cf-aig-attempts`.

use aigw_plugin_sdk::{
    Decision, Filter, FilterInfo, HeaderEdits, LocalResponse, OnError, Request, Response,
    ResponseDecision, cf, config, host,
};
use serde::Deserialize;

/// Backoff shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    /// Same delay every time.
    Constant,
    /// delay × attempt.
    Linear,
    /// delay × 2^(attempt-1).
    Exponential,
}

impl Backoff {
    fn parse(s: &str) -> Option<Backoff> {
        match s {
            "constant" => Some(Backoff::Constant),
            "linear" => Some(Backoff::Linear),
            "exponential" => Some(Backoff::Exponential),
            _ => None,
        }
    }

    /// Delay before attempt `failed + 1`, after `failed` failed attempts.
    pub fn delay_ms(self, base: u64, failed: u32) -> u64 {
        let n = failed.max(1) as u64;
        match self {
            Backoff::Constant => base,
            Backoff::Linear => base.saturating_mul(n),
            Backoff::Exponential => base.saturating_mul(1u64 << (n - 1).min(16)),
        }
    }
}

/// Most attempts a request may ask for.
pub const MAX_ATTEMPTS: u64 = 5;
/// Longest base delay.
pub const MAX_DELAY_MS: u64 = 5_000;
/// Longest pause the filter asks for (also caps `Retry-After`).
const MAX_PAUSE_MS: u64 = 30_000;

/// The retry filter for one request.
#[derive(Debug)]
pub struct Retry {
    max_attempts: u64,
    delay_ms: u64,
    backoff: Backoff,
    on_status: Vec<u16>,
    on_connection_error: bool,
    on_timeout: bool,
}

/// The filter's table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct RawConfig {
    /// Attempts in all, the first included: 1 to [`MAX_ATTEMPTS`].
    #[serde(default = "default_max_attempts")]
    max_attempts: u64,
    /// Base delay between attempts: 0 to [`MAX_DELAY_MS`].
    #[serde(default = "default_delay_ms")]
    delay_ms: u64,
    /// `"constant"`, `"linear"` or `"exponential"` (the default).
    backoff: Option<String>,
    /// Upstream statuses worth another attempt.
    #[serde(default = "default_on_status")]
    on_status: Vec<u16>,
    /// Retry when the provider cannot be reached.
    #[serde(default = "yes")]
    on_connection_error: bool,
    /// Retry after a first-byte timeout. Off unless asked: the provider may
    /// still be working on (and billing) the timed-out request.
    #[serde(default)]
    on_timeout: bool,
}

fn default_max_attempts() -> u64 {
    3
}

fn default_delay_ms() -> u64 {
    500
}

fn default_on_status() -> Vec<u16> {
    vec![429, 500, 502, 503, 504]
}

fn yes() -> bool {
    true
}

impl Filter for Retry {
    fn describe() -> FilterInfo {
        // A retry filter that fails only costs the retry: open. Stateless: a request's
        // `cf-aig-*` overrides are kept in the host (`request-local`), not in `self`.
        FilterInfo::new()
            .on_request_headers()
            .on_response_headers()
            .on_error(OnError::Open)
            .stateless()
    }

    fn configure(value: serde_json::Value) -> Result<Self, String> {
        let raw: RawConfig = config::parse(value)?;
        let in_range = |key: &str, n: u64, min: u64, max: u64| {
            if (min..=max).contains(&n) {
                Ok(n)
            } else {
                Err(format!("{key}: expected an integer from {min} to {max}"))
            }
        };
        let max_attempts = in_range("max_attempts", raw.max_attempts, 1, MAX_ATTEMPTS)?;
        let delay_ms = in_range("delay_ms", raw.delay_ms, 0, MAX_DELAY_MS)?;
        let backoff = match raw.backoff.as_deref() {
            None => Backoff::Exponential,
            Some(b) => Backoff::parse(b)
                .ok_or("backoff: expected \"constant\", \"linear\" or \"exponential\"")?,
        };
        if raw.on_status.iter().any(|s| !(100..=599).contains(s)) {
            return Err("on_status: expected a list of HTTP statuses (100-599)".into());
        }
        Ok(Retry {
            max_attempts,
            delay_ms,
            backoff,
            on_status: raw.on_status,
            on_connection_error: raw.on_connection_error,
            on_timeout: raw.on_timeout,
        })
    }

    fn on_request_headers(&mut self, req: &Request) -> Decision {
        // Validated here (a bad value is refused before any attempt); what a later hook
        // needs is kept in the host for this request.
        let keep = |key: &str, value: String| {
            if host::set_local(key, &value) {
                Ok(())
            } else {
                Err(LocalResponse::error(
                    500,
                    "filter_failed",
                    "retry: the host refused to keep this request's overrides",
                ))
            }
        };
        let kept = (|| {
            if let Some(n) = cf::int_header(&req.headers, "cf-aig-max-attempts", 1, MAX_ATTEMPTS)? {
                keep("max_attempts", n.to_string())?;
            }
            if let Some(n) = cf::int_header(&req.headers, "cf-aig-retry-delay", 0, MAX_DELAY_MS)? {
                keep("delay_ms", n.to_string())?;
            }
            if let Some(b) = req.headers.get("cf-aig-backoff") {
                if Backoff::parse(b.trim()).is_none() {
                    return Err(cf::bad_header(
                        "cf-aig-backoff",
                        "constant, linear or exponential",
                    ));
                }
                keep("backoff", b.trim().to_string())?;
            }
            Ok(())
        })();
        match kept {
            Ok(()) => Decision::proceed(),
            Err(r) => Decision::Respond(r),
        }
    }

    fn on_response_headers(&mut self, resp: &Response) -> ResponseDecision {
        // This request's overrides, kept by its request hook.
        let number = |key: &str| host::local(key).and_then(|v| v.parse::<u64>().ok());
        let max_attempts = number("max_attempts").unwrap_or(self.max_attempts);
        let delay_ms = number("delay_ms").unwrap_or(self.delay_ms);
        let backoff = host::local("backoff")
            .and_then(|b| Backoff::parse(&b))
            .unwrap_or(self.backoff);
        let failed = match &resp.upstream_error {
            // The host reports its own first-byte timeout as a 504.
            Some(_) if resp.status == 504 => self.on_timeout,
            Some(_) => self.on_connection_error,
            None => !resp.local && self.on_status.contains(&resp.status),
        };
        if failed && (resp.attempt as u64) < max_attempts {
            let mut delay = backoff.delay_ms(delay_ms, resp.attempt);
            if let Some(secs) = resp
                .headers
                .get("retry-after")
                .and_then(|v| v.trim().parse::<u64>().ok())
            {
                delay = delay.max(secs.saturating_mul(1000));
            }
            return ResponseDecision::Retry {
                delay_ms: delay.min(MAX_PAUSE_MS) as u32,
            };
        }
        if resp.attempt == 0 {
            return ResponseDecision::proceed();
        }
        ResponseDecision::Continue(
            HeaderEdits::default().set("cf-aig-attempts", &resp.attempt.to_string()),
        )
    }
}

aigw_plugin_sdk::export_filter!(Retry);

#[cfg(test)]
mod tests {
    use super::*;
    use aigw_plugin_sdk::Headers;

    fn resp(status: u16, attempt: u32) -> Response {
        Response {
            status,
            attempt,
            ..Response::default()
        }
    }

    #[test]
    fn retries_configured_statuses_until_max() {
        let mut f = Retry::configure(
            serde_json::json!({"max_attempts": 3, "delay_ms": 100, "backoff": "exponential"}),
        )
        .unwrap();
        assert_eq!(
            f.on_response_headers(&resp(500, 1)),
            ResponseDecision::Retry { delay_ms: 100 }
        );
        assert_eq!(
            f.on_response_headers(&resp(503, 2)),
            ResponseDecision::Retry { delay_ms: 200 }
        );
        assert!(matches!(
            f.on_response_headers(&resp(500, 3)),
            ResponseDecision::Continue(_)
        ));
        assert!(matches!(
            f.on_response_headers(&resp(400, 1)),
            ResponseDecision::Continue(_)
        ));
    }

    #[test]
    fn backoff_shapes() {
        assert_eq!(Backoff::Constant.delay_ms(100, 3), 100);
        assert_eq!(Backoff::Linear.delay_ms(100, 3), 300);
        assert_eq!(Backoff::Exponential.delay_ms(100, 3), 400);
    }

    #[test]
    fn connection_errors_and_retry_after() {
        let mut f =
            Retry::configure(serde_json::json!({"delay_ms": 10, "backoff": "constant"})).unwrap();
        let down = Response {
            status: 502,
            attempt: 1,
            upstream_error: Some("refused".into()),
            local: true,
            ..Response::default()
        };
        assert_eq!(
            f.on_response_headers(&down),
            ResponseDecision::Retry { delay_ms: 10 }
        );
        let limited = Response {
            status: 429,
            attempt: 1,
            headers: Headers::from_pairs([("retry-after", "2")]),
            ..Response::default()
        };
        assert_eq!(
            f.on_response_headers(&limited),
            ResponseDecision::Retry { delay_ms: 2000 }
        );
    }

    #[test]
    fn per_request_headers_override_and_validate() {
        let mut f = Retry::configure(serde_json::json!({})).unwrap();
        let req = Request {
            headers: Headers::from_pairs([("cf-aig-max-attempts", "1")]),
            ..Request::default()
        };
        assert!(matches!(f.on_request_headers(&req), Decision::Continue(_)));
        assert!(matches!(
            f.on_response_headers(&resp(500, 1)),
            ResponseDecision::Continue(_)
        ));
        for (h, v) in [
            ("cf-aig-max-attempts", "9"),
            ("cf-aig-retry-delay", "x"),
            ("cf-aig-backoff", "random"),
        ] {
            let req = Request {
                headers: Headers::from_pairs([(h, v)]),
                ..Request::default()
            };
            match f.on_request_headers(&req) {
                Decision::Respond(r) => assert!(String::from_utf8(r.body).unwrap().contains(h)),
                other => panic!("expected 400 for {h}, got {other:?}"),
            }
        }
    }

    #[test]
    fn config_limits() {
        assert!(
            Retry::configure(serde_json::json!({"max_attempts": 6}))
                .unwrap_err()
                .contains("max_attempts")
        );
        assert!(
            Retry::configure(serde_json::json!({"delay_ms": 6000}))
                .unwrap_err()
                .contains("delay_ms")
        );
        assert!(
            Retry::configure(serde_json::json!({"on_status": [700]}))
                .unwrap_err()
                .contains("on_status")
        );
    }

    #[test]
    fn config_is_typed_and_defaults_hold() {
        let err = |v| Retry::configure(v).unwrap_err();
        let misspelt = err(serde_json::json!({"max_attempt": 2}));
        assert!(misspelt.contains("`max_attempt`"), "{misspelt}");
        for (cfg, key) in [
            (serde_json::json!({"delay_ms": "10"}), "delay_ms:"),
            (serde_json::json!({"max_attempts": 0}), "max_attempts:"),
            (serde_json::json!({"max_attempts": -1}), "max_attempts:"),
            (serde_json::json!({"backoff": "random"}), "backoff:"),
            (serde_json::json!({"backoff": 2}), "backoff:"),
            (serde_json::json!({"on_status": 500}), "on_status:"),
            (serde_json::json!({"on_status": [500, 99]}), "on_status:"),
            (serde_json::json!({"on_status": [70000]}), "on_status[0]:"),
            (serde_json::json!({"on_status": ["500"]}), "on_status[0]:"),
            (serde_json::json!({"on_timeout": "yes"}), "on_timeout:"),
            (
                serde_json::json!({"on_connection_error": 0}),
                "on_connection_error:",
            ),
        ] {
            let e = err(cfg);
            assert!(e.starts_with(key), "{e}");
        }

        let f = Retry::configure(serde_json::json!({})).unwrap();
        assert_eq!((f.max_attempts, f.delay_ms), (3, 500));
        assert_eq!(f.backoff, Backoff::Exponential);
        assert_eq!(f.on_status, [429, 500, 502, 503, 504]);
        assert!(f.on_connection_error && !f.on_timeout);
        let f = Retry::configure(serde_json::json!({
            "max_attempts": 5, "delay_ms": 0, "backoff": "linear", "on_status": [],
            "on_connection_error": false, "on_timeout": true,
        }))
        .unwrap();
        assert_eq!((f.max_attempts, f.delay_ms), (5, 0));
        assert_eq!(f.backoff, Backoff::Linear);
        assert!(f.on_status.is_empty());
        assert!(!f.on_connection_error && f.on_timeout);
    }

    #[test]
    fn first_byte_timeouts_are_not_retried_unless_asked() {
        let timeout = Response {
            status: 504,
            attempt: 1,
            upstream_error: Some("no response within 100 ms".into()),
            local: true,
            ..Response::default()
        };
        let mut f = Retry::configure(serde_json::json!({})).unwrap();
        assert!(matches!(
            f.on_response_headers(&timeout),
            ResponseDecision::Continue(_)
        ));
        let mut f =
            Retry::configure(serde_json::json!({"on_timeout": true, "delay_ms": 5})).unwrap();
        assert!(matches!(
            f.on_response_headers(&timeout),
            ResponseDecision::Retry { .. }
        ));
    }
}
