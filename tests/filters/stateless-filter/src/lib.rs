//! A filter that declares `stateless` (contract 0.2.0): configured once per instance and lent
//! to requests per hook call. With an empty table it passes everything through (the
//! benchmark's no-op filter). Its table can ask it to:
//! - `tag = "NAME"`: copy the request header NAME, when present, to `x-stateless-tag` on
//!   the request sent upstream (a header read on demand, and one set on the lent set);
//! - `probe = true`: report, in `x-probe-calls`, how many hook calls this filter value
//!   has served and, in `x-probe-configures`, how many times this instance was configured.
//!   A stateless filter would never keep such a count; the tests use it to see that the host
//!   configures its instance once and reuses it;
//! - `fail_response = true`: panic in the response-headers hook (after a request hook that
//!   succeeded), for the circuit breaker's tests.

use aigw_plugin_sdk::{
    Decision, Filter, FilterInfo, HeaderEdits, Request, Response, ResponseDecision,
};
use std::sync::atomic::{AtomicU32, Ordering};

/// `configure` calls this instance has had (module state: outlives a reconfiguration).
static CONFIGURES: AtomicU32 = AtomicU32::new(0);

/// The filter.
#[derive(Debug)]
pub struct Stateless {
    tag: Option<String>,
    probe: bool,
    fail_response: bool,
    /// Hook calls this value served (probe only).
    calls: AtomicU32,
}

impl Filter for Stateless {
    fn describe() -> FilterInfo {
        FilterInfo::new()
            .on_request_headers()
            .on_response_headers()
            .stateless()
    }

    fn configure(config: serde_json::Value) -> Result<Self, String> {
        CONFIGURES.fetch_add(1, Ordering::Relaxed);
        let tag = match config.get("tag") {
            None => None,
            Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.to_ascii_lowercase()),
            Some(_) => return Err("tag: expected a header name".into()),
        };
        let probe = match config.get("probe") {
            None => false,
            Some(serde_json::Value::Bool(b)) => *b,
            Some(_) => return Err("probe: expected true or false".into()),
        };
        let fail_response = matches!(
            config.get("fail_response"),
            Some(serde_json::Value::Bool(true))
        );
        Ok(Stateless {
            tag,
            probe,
            fail_response,
            calls: AtomicU32::new(0),
        })
    }

    fn on_request_headers(&mut self, req: &Request) -> Decision {
        self.calls.fetch_add(1, Ordering::Relaxed);
        match self.tag.as_deref().and_then(|name| req.headers.get(name)) {
            Some(v) => Decision::Continue(HeaderEdits::default().set("x-stateless-tag", v)),
            None => Decision::proceed(),
        }
    }

    #[allow(clippy::panic, reason = "the failure the circuit-breaker tests need")]
    fn on_response_headers(&mut self, _resp: &Response) -> ResponseDecision {
        if self.fail_response {
            panic!("fail_response is set");
        }
        let calls = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let mut edits = HeaderEdits::default();
        if self.probe {
            edits = edits.set("x-probe-calls", &calls.to_string()).set(
                "x-probe-configures",
                &CONFIGURES.load(Ordering::Relaxed).to_string(),
            );
        }
        ResponseDecision::Continue(edits)
    }
}

aigw_plugin_sdk::export_filter!(Stateless);

#[cfg(test)]
mod tests {
    use super::*;
    use aigw_plugin_sdk::testing::{Exchange, run};

    #[test]
    fn passes_through_and_tags_requests() {
        let out = run::<Stateless>(
            serde_json::json!({"tag": "x-team"}),
            Exchange::default().header("x-team", "blue"),
        );
        let (request, _) = out.upstream_request.expect("sent upstream");
        assert_eq!(request.headers.get("x-stateless-tag"), Some("blue"));
        assert!(Stateless::configure(serde_json::json!({"tag": 3})).is_err());
    }
}
