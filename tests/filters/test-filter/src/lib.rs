//! A test filter whose behaviour is chosen by its config `mode`, so the
//! end-to-end tests can exercise every host path with one component:
//! `respond` (answer early), `set-header` (rewrite request and response
//! headers), `trap` (panic), `loop` (never return), `memory-bomb` (allocate
//! without end), `reject-config` (refuse its table), `count` (report how many
//! requests this filter value saw), `fetch` (POST a chat request to `url` through the
//! host's outbound HTTP, with `token` as a bearer token, and answer with what came back).

use aigw_plugin_sdk::{
    Decision, Filter, FilterInfo, HeaderEdits, Hooks, LocalResponse, Request, Response,
    ResponseDecision,
};

/// Requests this instance served (`count` mode): module state outlives
/// `configure`, so it shows whether instances are reused.
static INSTANCE_REQUESTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// The filter; `mode` picks the behaviour.
#[derive(Debug)]
pub struct TestFilter {
    mode: String,
    status: u16,
    header: String,
    value: String,
    until_ms: u64,
    /// `fetch` mode: where, and the bearer token (a secret in the table).
    url: String,
    token: String,
    /// Requests this filter value has seen (`count` mode): always 1 when
    /// every request starts from a freshly configured value.
    seen: u32,
}

impl Filter for TestFilter {
    fn describe() -> FilterInfo {
        FilterInfo::hooks(Hooks {
            request_headers: true,
            response_headers: true,
            ..Hooks::default()
        })
    }

    fn configure(config: serde_json::Value) -> Result<Self, String> {
        let mode = config
            .get("mode")
            .and_then(|m| m.as_str())
            .ok_or("mode: required, one of respond, set-header, trap, loop, memory-bomb")?
            .to_string();
        if mode == "reject-config" {
            return Err("mode: reject-config always refuses its table".into());
        }
        // Quotes its token, as a careless filter might: the host masks it.
        if mode == "reject-token" {
            let token = config.get("token").and_then(|v| v.as_str()).unwrap_or("");
            return Err(format!("token: '{token}' is not accepted"));
        }
        let text = |key: &str, default: &str| {
            config
                .get(key)
                .and_then(|v| v.as_str())
                .unwrap_or(default)
                .to_string()
        };
        Ok(TestFilter {
            status: config.get("status").and_then(|v| v.as_u64()).unwrap_or(418) as u16,
            header: text("header", "x-test-filter"),
            value: text("value", "seen"),
            until_ms: config.get("until_ms").and_then(|v| v.as_u64()).unwrap_or(0),
            url: text("url", ""),
            token: text("token", ""),
            seen: 0,
            mode,
        })
    }

    fn on_request_headers(&mut self, request: &Request) -> Decision {
        match self.mode.as_str() {
            "respond" => Decision::Respond(
                LocalResponse::error(self.status, "blocked", "answered by test filter")
                    .with_header("x-answered-by", "test-filter"),
            ),
            "set-header" => {
                let seen = request
                    .headers
                    .get(&self.header)
                    .unwrap_or("none")
                    .to_string();
                Decision::Continue(
                    HeaderEdits::default()
                        .set(&self.header, &self.value)
                        .set("x-test-previous", &seen),
                )
            }
            "count" => {
                self.seen += 1;
                INSTANCE_REQUESTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Decision::proceed()
            }
            "log" => {
                aigw_plugin_sdk::host::log(
                    aigw_plugin_sdk::host::Level::Info,
                    &format!("test filter saw {}", request.path),
                );
                Decision::proceed()
            }
            "trap" => trap(),
            // Far more header bytes than any client takes.
            "huge-headers" => Decision::Respond(LocalResponse {
                status: 200,
                headers: (0..600)
                    .map(|i| aigw_plugin_sdk::Header {
                        name: format!("x-huge-{i}"),
                        value: "v".repeat(1000),
                    })
                    .collect(),
                body: Vec::new(),
            }),
            // A 40 MB answer: large, but a valid response.
            "huge-body" => Decision::Respond(LocalResponse {
                status: 200,
                headers: Vec::new(),
                body: vec![b'a'; 40 << 20],
            }),
            "sandbox" => Decision::Respond(LocalResponse::json(200, &sandbox_probe(&self.value))),
            // Short host waits between bursts of work: the waits must not erase the CPU.
            "fetch-loop" => loop {
                let _ = aigw_plugin_sdk::http::fetch(&aigw_plugin_sdk::http::OutboundRequest::get(
                    &self.url,
                ));
                let mut n: u64 = 0;
                for _ in 0..2_000_000u32 {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
                if n == u64::MAX {
                    return Decision::proceed();
                }
            },
            "fetch" => {
                use aigw_plugin_sdk::http::{OutboundRequest, fetch};
                let body = serde_json::json!({"model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": "asked by a filter"}]});
                let mut req = OutboundRequest::post_json(&self.url, &body);
                if !self.token.is_empty() {
                    req = req.header("authorization", &format!("Bearer {}", self.token));
                }
                match fetch(&req) {
                    Ok(answer) => Decision::Respond(LocalResponse::json(
                        200,
                        &serde_json::json!({"status": answer.status,
                            "answer": answer.json().unwrap_or(serde_json::Value::Null)}),
                    )),
                    Err(e) => Decision::Respond(LocalResponse::error(502, "fetch_failed", &e)),
                }
            }
            // Fails until a moment on the host clock, then works (circuit breaker tests).
            "trap-until" if aigw_plugin_sdk::host::now_ms() < self.until_ms => trap(),
            "loop" => spin(),
            "memory-bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    if hoard.len() == usize::MAX {
                        return Decision::proceed();
                    }
                }
            }
            _ => Decision::proceed(),
        }
    }

    fn on_response_headers(&mut self, _response: &Response) -> ResponseDecision {
        match self.mode.as_str() {
            "set-header" => {
                ResponseDecision::Continue(HeaderEdits::default().set("x-filtered", &self.value))
            }
            "count" => ResponseDecision::Continue(
                HeaderEdits::default()
                    .set("x-test-seen", &self.seen.to_string())
                    .set(
                        "x-test-instance-requests",
                        &INSTANCE_REQUESTS
                            .load(std::sync::atomic::Ordering::Relaxed)
                            .to_string(),
                    ),
            ),
            _ => ResponseDecision::proceed(),
        }
    }
}

/// Tries what a filter must not be able to do; reports each outcome.
fn sandbox_probe(target: &str) -> serde_json::Value {
    let files = match std::fs::read_dir("/") {
        Ok(d) => format!("listed {} entries", d.count()),
        Err(e) => format!("denied: {e}"),
    };
    let passwd = match std::fs::read("/etc/passwd") {
        Ok(b) => format!("read {} bytes", b.len()),
        Err(e) => format!("denied: {e}"),
    };
    let env: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
    let args: Vec<String> = std::env::args().collect();
    let network = match std::net::TcpStream::connect(target) {
        Ok(_) => "connected".to_string(),
        Err(e) => format!("denied: {e}"),
    };
    let wall_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    serde_json::json!({
        "files": files,
        "passwd": passwd,
        "env": env,
        "args": args,
        "network": network,
        "wall_ms": wall_ms,
        "host_ms": aigw_plugin_sdk::host::now_ms(),
    })
}

#[allow(clippy::panic)]
fn trap() -> Decision {
    panic!("test filter trapped on purpose")
}

fn spin() -> Decision {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
        if n == u64::MAX {
            return Decision::proceed();
        }
    }
}

aigw_plugin_sdk::export_filter!(TestFilter);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn respond_mode_answers_with_configured_status() {
        let mut f =
            TestFilter::configure(serde_json::json!({"mode": "respond", "status": 451})).unwrap();
        match f.on_request_headers(&Request::default()) {
            Decision::Respond(r) => assert_eq!(r.status, 451),
            other => panic!("expected a local response, got {other:?}"),
        }
    }

    #[test]
    fn reject_config_is_an_error() {
        assert!(TestFilter::configure(serde_json::json!({"mode": "reject-config"})).is_err());
        assert!(TestFilter::configure(serde_json::json!({})).is_err());
    }
}
