//! The built-in retry filter: on configured statuses (default 429, 500, 502,
//! 503, 504) and upstream connection errors, asks the host to send the request
//! again with constant, linear or exponential backoff, up to `max_attempts`
//! (≤ 5). Honours an upstream `Retry-After` (seconds). Per request:
//! `cf-aig-max-attempts`, `cf-aig-retry-delay` (ms), `cf-aig-backoff`.
//! The host never retries once a byte reached the client. The final response
//! carries `cf-aig-attempts`.

use aigw_plugin_sdk::{
    Decision, Filter, FilterInfo, HeaderEdits, Hooks, Request, Response, ResponseDecision, cf,
};

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

const KNOWN: &[&str] = &[
    "max_attempts",
    "delay_ms",
    "backoff",
    "on_status",
    "on_connection_error",
    "on_timeout",
];

impl Filter for Retry {
    fn describe() -> FilterInfo {
        FilterInfo::hooks(Hooks {
            request_headers: true,
            response_headers: true,
            ..Hooks::default()
        })
    }

    fn configure(config: serde_json::Value) -> Result<Self, String> {
        let obj = config.as_object().ok_or("expected a table")?;
        if let Some(k) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(format!("unknown key '{k}' (known: {})", KNOWN.join(", ")));
        }
        let int = |key: &str, default: u64, min: u64, max: u64| -> Result<u64, String> {
            match obj.get(key) {
                None => Ok(default),
                Some(v) => v
                    .as_u64()
                    .filter(|n| (min..=max).contains(n))
                    .ok_or(format!("{key}: expected an integer from {min} to {max}")),
            }
        };
        let backoff = match obj.get("backoff") {
            None => Backoff::Exponential,
            Some(v) => v
                .as_str()
                .and_then(Backoff::parse)
                .ok_or("backoff: expected \"constant\", \"linear\" or \"exponential\"")?,
        };
        let on_status = match obj.get("on_status") {
            None => vec![429, 500, 502, 503, 504],
            Some(v) => v
                .as_array()
                .ok_or("on_status: expected a list of HTTP statuses")?
                .iter()
                .map(|s| {
                    s.as_u64()
                        .filter(|n| (100..=599).contains(n))
                        .map(|n| n as u16)
                })
                .collect::<Option<Vec<u16>>>()
                .ok_or("on_status: expected a list of HTTP statuses (100-599)")?,
        };
        let on_connection_error = match obj.get("on_connection_error") {
            None => true,
            Some(v) => v
                .as_bool()
                .ok_or("on_connection_error: expected true or false")?,
        };
        // Off by default: after a first-byte timeout the provider may still be
        // working on (and billing) the request.
        let on_timeout = match obj.get("on_timeout") {
            None => false,
            Some(v) => v.as_bool().ok_or("on_timeout: expected true or false")?,
        };
        Ok(Retry {
            max_attempts: int("max_attempts", 3, 1, MAX_ATTEMPTS)?,
            delay_ms: int("delay_ms", 500, 0, MAX_DELAY_MS)?,
            backoff,
            on_status,
            on_connection_error,
            on_timeout,
        })
    }

    fn on_request_headers(&mut self, req: &Request) -> Decision {
        match cf::int_header(&req.headers, "cf-aig-max-attempts", 1, MAX_ATTEMPTS) {
            Ok(Some(n)) => self.max_attempts = n,
            Ok(None) => {}
            Err(r) => return Decision::Respond(r),
        }
        match cf::int_header(&req.headers, "cf-aig-retry-delay", 0, MAX_DELAY_MS) {
            Ok(Some(n)) => self.delay_ms = n,
            Ok(None) => {}
            Err(r) => return Decision::Respond(r),
        }
        if let Some(b) = req.headers.get("cf-aig-backoff") {
            match Backoff::parse(b.trim()) {
                Some(b) => self.backoff = b,
                None => {
                    return Decision::Respond(cf::bad_header(
                        "cf-aig-backoff",
                        "constant, linear or exponential",
                    ));
                }
            }
        }
        Decision::proceed()
    }

    fn on_response_headers(&mut self, resp: &Response) -> ResponseDecision {
        let failed = match &resp.upstream_error {
            // The host reports its own first-byte timeout as a 504.
            Some(_) if resp.status == 504 => self.on_timeout,
            Some(_) => self.on_connection_error,
            None => !resp.local && self.on_status.contains(&resp.status),
        };
        if failed && (resp.attempt as u64) < self.max_attempts {
            let mut delay = self.backoff.delay_ms(self.delay_ms, resp.attempt);
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
