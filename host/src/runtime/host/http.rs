//! `http-client`: a filter's outbound HTTP calls, only to the origins its table grants
//! (`allow_http`), through the host's connection pool, within `http_timeout_ms`, reading at
//! most `http_max_response_bytes` of the answer. The wait moves the call's deadline (like a
//! remote store's) instead of counting against the filter; every call is counted in
//! `/metrics` by outcome.

use super::HostState;
use crate::config::HttpGrant;
use crate::http::upstream::UpstreamClient;
use crate::runtime::bindings::aigw::filter::http_client::{
    self, OutboundRequest, OutboundResponse,
};
use crate::runtime::bindings::types::Header;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use std::time::{Duration, Instant};

/// Why a call failed: its `/metrics` outcome and the message the filter gets.
struct Failure {
    outcome: &'static str,
    message: String,
}

fn fail(outcome: &'static str, message: String) -> Failure {
    Failure { outcome, message }
}

impl http_client::Host for HostState {
    async fn fetch(&mut self, request: OutboundRequest) -> Result<OutboundResponse, String> {
        // All of one call's outbound waits share the grant's timeout.
        let budget = self.http.timeout_ms.saturating_sub(self.http_wait_ms);
        let checked = check(&self.http, request, budget);
        let result = match checked {
            Ok(req) => {
                self.begin_wait();
                let started = Instant::now();
                let r = send(
                    &self.services.http,
                    req,
                    budget,
                    self.http.max_response_bytes,
                )
                .await;
                self.end_wait(started);
                self.http_wait_ms = self
                    .http_wait_ms
                    .saturating_add(started.elapsed().as_millis() as u64);
                r
            }
            // Refused before any network: no wait to account for.
            Err(f) => Err(f),
        };
        let outcome = match &result {
            Ok(_) => "ok",
            Err(f) => f.outcome,
        };
        self.services
            .metrics
            .count_filter_http(&self.filter, outcome);
        result.map_err(|f| f.message)
    }
}

/// Headers the gateway sets itself: the connection's, and `host` (from the granted URL, so a
/// filter cannot reach another virtual host behind a granted origin).
const HOST_SET: [&str; 9] = [
    "host",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "transfer-encoding",
    "content-length",
    "proxy-authorization",
    "proxy-connection",
];

/// The request to send, once its origin, method and headers pass.
struct Checked {
    origin: String,
    request: hyper::Request<Full<Bytes>>,
}

fn check(grant: &HttpGrant, request: OutboundRequest, budget: u64) -> Result<Checked, Failure> {
    let uri: hyper::Uri = request
        .url
        .parse()
        .map_err(|e| fail("denied", format!("'{}' is not a URL ({e})", request.url)))?;
    let Some(origin) = crate::config::origin_of(&uri) else {
        return Err(fail(
            "denied",
            format!("'{}' is not an absolute http or https URL", request.url),
        ));
    };
    if !grant.origins.contains(&origin) {
        let granted = if grant.origins.is_empty() {
            "none: add allow_http = [\"...\"] to its table".to_string()
        } else {
            grant.origins.join(", ")
        };
        return Err(fail(
            "denied",
            format!("origin {origin} is not granted to this filter (allow_http: {granted})"),
        ));
    }
    let method = match request.method.to_ascii_uppercase().as_str() {
        m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD") => {
            hyper::Method::from_bytes(m.as_bytes())
                .map_err(|e| fail("denied", format!("method '{m}': {e}")))?
        }
        other => {
            return Err(fail(
                "denied",
                format!("method '{other}': expected GET, POST, PUT, PATCH, DELETE or HEAD"),
            ));
        }
    };
    if budget == 0 {
        return Err(fail(
            "timeout",
            format!(
                "{origin}: this call already waited {} ms on outbound HTTP (http_timeout_ms)",
                grant.timeout_ms
            ),
        ));
    }
    let mut builder = hyper::Request::builder().method(method).uri(uri);
    for h in &request.headers {
        if HOST_SET.contains(&h.name.to_ascii_lowercase().as_str()) {
            return Err(fail(
                "denied",
                format!("{origin}: header '{}' is set by the gateway", h.name),
            ));
        }
        builder = builder.header(h.name.as_str(), h.value.as_str());
    }
    let request = builder
        .body(Full::new(Bytes::from(request.body)))
        .map_err(|e| fail("denied", format!("{origin}: bad request: {e}")))?;
    Ok(Checked { origin, request })
}

async fn send(
    client: &UpstreamClient,
    checked: Checked,
    budget_ms: u64,
    max: u64,
) -> Result<OutboundResponse, Failure> {
    let Checked {
        origin,
        request: req,
    } = checked;
    let exchange = async {
        let response = client
            .request(req)
            .await
            .map_err(|e| fail("error", format!("{origin}: {e}")))?;
        let (head, body) = response.into_parts();
        let body = Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX))
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    fail(
                        "too_large",
                        format!(
                            "{origin}: the answer is over {max} bytes (http_max_response_bytes)"
                        ),
                    )
                } else {
                    fail("error", format!("{origin}: reading the answer: {e}"))
                }
            })?
            .to_bytes();
        let headers = head
            .headers
            .iter()
            .filter_map(|(n, v)| {
                Some(Header {
                    name: n.as_str().to_string(),
                    value: v.to_str().ok()?.to_string(),
                })
            })
            .collect();
        Ok(OutboundResponse {
            status: head.status.as_u16(),
            headers,
            body: Vec::from(body),
        })
    };
    match tokio::time::timeout(Duration::from_millis(budget_ms), exchange).await {
        Ok(r) => r,
        Err(_) => Err(fail(
            "timeout",
            format!("{origin}: no answer within {budget_ms} ms (what remained of http_timeout_ms)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> HttpGrant {
        HttpGrant {
            origins: vec![
                "https://m.example:443".into(),
                "http://127.0.0.1:9000".into(),
            ],
            timeout_ms: 1000,
            max_response_bytes: 1024,
        }
    }

    fn req(url: &str, headers: &[(&str, &str)]) -> OutboundRequest {
        OutboundRequest {
            method: "post".into(),
            url: url.into(),
            headers: headers
                .iter()
                .map(|(n, v)| Header {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            body: b"{}".to_vec(),
        }
    }

    fn denied(r: Result<Checked, Failure>) -> String {
        match r {
            Ok(c) => panic!("sent to {}", c.origin),
            Err(f) => format!("{}: {}", f.outcome, f.message),
        }
    }

    #[test]
    fn only_granted_origins_with_the_gateways_own_host_header() {
        let ok = check(&grant(), req("https://M.example/v1/moderations", &[]), 1000);
        assert!(ok.is_ok_and(|c| c.origin == "https://m.example:443"));
        assert!(check(&grant(), req("http://127.0.0.1:9000/x?y=1", &[]), 1000).is_ok());
        // Userinfo names no host: this goes to evil.example.
        let e = denied(check(
            &grant(),
            req("https://m.example@evil.example/", &[]),
            1000,
        ));
        assert!(
            e.starts_with("denied: origin https://evil.example:443 is not granted"),
            "{e}"
        );
        // Same host, other port or scheme.
        assert!(check(&grant(), req("http://m.example/", &[]), 1000).is_err());
        assert!(check(&grant(), req("http://127.0.0.1:9001/", &[]), 1000).is_err());
        // The Host header would reach another virtual host behind the granted origin.
        let e = denied(check(
            &grant(),
            req("https://m.example/", &[("Host", "admin.internal")]),
            1000,
        ));
        assert!(e.contains("header 'Host' is set by the gateway"), "{e}");
        let e = denied(check(&grant(), req("ftp://m.example/", &[]), 1000));
        assert!(e.contains("not an absolute http or https URL"), "{e}");
        // The call's outbound time is spent.
        let e = denied(check(&grant(), req("https://m.example/", &[]), 0));
        assert!(e.starts_with("timeout:"), "{e}");
        let mut bad = req("https://m.example/", &[]);
        bad.method = "CONNECT".into();
        assert!(denied(check(&grant(), bad, 1000)).contains("method 'CONNECT'"));
    }
}
