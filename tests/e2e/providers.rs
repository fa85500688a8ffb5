//! Provider surface: authenticated gateways, stored keys (BYOK), per-provider
//! conventions and a TLS upstream with a self-signed certificate.

use crate::harness::*;
use hyper::StatusCode;
use std::sync::Arc;

fn url(gw: &Gateway) -> String {
    gw.url("/v1/acct/gw/openai/chat/completions")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authenticated_gateway_needs_the_token_before_any_filter_runs() {
    let mock = Mock::start().await;
    let cfg = format!(
        "{}[gateways.gw]\nauth_token = \"gw-secret-token\"\npipeline = [\"custom\"]\n[gateways.gw.filters.custom]\nmode = \"set-header\"\n",
        mock.providers_toml()
    );
    let gw = Gateway::start(&cfg, &[("custom", &test_filter_wasm())]);
    for headers in [
        vec![],
        vec![("cf-aig-authorization", "Bearer wrong")],
        vec![("cf-aig-authorization", "gw-secret-token")],
    ] {
        let r = send(&url(&gw), &headers, &chat("x", false)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{headers:?}");
        assert_eq!(r.json()["error"]["type"], "unauthorized");
        assert!(!r.text().contains("gw-secret-token"));
    }
    assert!(mock.requests().is_empty());
    let ok = send(
        &url(&gw),
        &[("cf-aig-authorization", "Bearer gw-secret-token")],
        &chat("x", false),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.header("x-filtered"), Some("seen"), "the filter ran");
    let seen = mock.requests();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0]["headers"].get("cf-aig-authorization").is_none(),
        "token forwarded upstream"
    );
    assert!(!gw.logs().contains("gw-secret-token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_keys_are_injected_only_when_the_client_sent_none() {
    let mock = Mock::start().await;
    let cfg = format!(
        "[providers.openai]\nbase_url = \"http://{0}/v1\"\napi_key = {{ env = \"AIGW_TEST_STORED_KEY\" }}\n\
         api_keys = {{ team-a = \"sk-team-a\", team-b = {{ file = \"team-b.key\" }} }}\n\
         [providers.anthropic]\nbase_url = \"http://{0}\"\napi_key = \"sk-ant-stored\"\n\
         [gateways.gw]\npipeline = []\n",
        mock.addr
    );
    let dir = prepare(&cfg, &[]);
    std::fs::write(dir.path().join("team-b.key"), "sk-team-b\n").unwrap();
    let gw = Gateway::start_with_env(dir, &[("AIGW_TEST_STORED_KEY", "sk-stored-default")]);
    send(&url(&gw), &[], &chat("x", false)).await;
    send(
        &url(&gw),
        &[("authorization", "Bearer sk-client-own")],
        &chat("x", false),
    )
    .await;
    send(
        &url(&gw),
        &[("cf-aig-byok-alias", "team-a")],
        &chat("x", false),
    )
    .await;
    send(
        &url(&gw),
        &[("cf-aig-byok-alias", "team-b")],
        &chat("x", false),
    )
    .await;
    send(
        &gw.url("/v1/acct/gw/anthropic/v1/messages"),
        &[],
        r#"{"model":"claude","max_tokens":5,"messages":[]}"#,
    )
    .await;
    let bad = send(
        &url(&gw),
        &[("cf-aig-byok-alias", "team-z")],
        &chat("x", false),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.text().contains("cf-aig-byok-alias") && bad.text().contains("team-a"));
    assert!(!bad.text().contains("sk-team-a"));
    let seen = mock.requests();
    let auth: Vec<_> = seen
        .iter()
        .map(|r| {
            r["headers"]["authorization"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(auth[0], "Bearer sk-stored-default");
    assert_eq!(auth[1], "Bearer sk-client-own");
    assert_eq!(auth[2], "Bearer sk-team-a");
    assert_eq!(auth[3], "Bearer sk-team-b");
    assert_eq!(seen[4]["headers"]["x-api-key"], "sk-ant-stored");
    assert!(
        seen.iter()
            .all(|r| r["headers"].get("cf-aig-byok-alias").is_none())
    );
    for secret in [
        "sk-stored-default",
        "sk-team-a",
        "sk-team-b",
        "sk-ant-stored",
    ] {
        assert!(!gw.logs().contains(secret), "{secret} in the process log");
    }
}

/// A TLS server with a fresh self-signed certificate, proxying to the mock.
async fn tls_mock(mock: &Mock, dir: &std::path::Path) -> std::net::SocketAddr {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
    std::fs::write(dir.join("upstream-ca.pem"), cert.pem()).unwrap();
    let certs = vec![cert.der().clone()];
    let private = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, private)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let plain = mock.addr;
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut upstream) = tokio::net::TcpStream::connect(plain).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_upstream_with_a_self_signed_certificate_is_trusted_through_config() {
    let mock = Mock::start().await;
    let certs = tempfile::tempdir().unwrap();
    let tls = tls_mock(&mock, certs.path()).await;
    let ca = certs.path().join("upstream-ca.pem");
    let cfg = format!(
        "[providers.private]\nbase_url = \"https://localhost:{port}/v1\"\nca_file = \"{ca}\"\n\
         [providers.untrusted]\nbase_url = \"https://localhost:{port}/v1\"\n\
         [gateways.gw]\npipeline = []\n",
        port = tls.port(),
        ca = ca.display()
    );
    let gw = Gateway::start(&cfg, &[]);
    let ok = send(
        &gw.url("/v1/a/gw/private/chat/completions"),
        &[],
        &chat("over tls", false),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    assert!(ok.text().contains("over tls"));
    let refused = send(
        &gw.url("/v1/a/gw/untrusted/chat/completions"),
        &[],
        &chat("x", false),
    )
    .await;
    assert_eq!(refused.status, StatusCode::BAD_GATEWAY);
    assert!(
        refused.text().to_lowercase().contains("certificate"),
        "{}",
        refused.text()
    );
    let (ok, text) = check(
        "[providers.private]\nbase_url = \"https://localhost:1/v1\"\nca_file = \"missing.pem\"\n[gateways.gw]\n",
        &[],
    );
    assert!(!ok && text.contains("providers.private.ca_file"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compat_endpoint_routes_provider_slash_model() {
    let mock = Mock::start().await;
    let gw = Gateway::start(
        &format!(
            "{}[providers.workers-ai]\nbase_url = \"http://{}/client/v4/accounts/{{account}}/ai/run\"\n\
             [gateways.gw]\npipeline = [\"cache\"]\n",
            mock.providers_toml(),
            mock.addr
        ),
        &[],
    );
    let compat = gw.url("/v1/acct/gw/compat/chat/completions");
    let body =
        r#"{"model":"openai/gpt-4o-mini","messages":[{"role":"user","content":"via compat"}]}"#;
    let r = send(&compat, &[("authorization", "Bearer sk-x")], body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["model"], "gpt-4o-mini");
    assert_eq!(
        r.header("cf-aig-cache-status"),
        Some("MISS"),
        "filters run for compat requests"
    );
    let seen = mock.requests();
    assert_eq!(seen[0]["path"], "/v1/chat/completions");
    let sent: serde_json::Value = serde_json::from_str(seen[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent["model"], "gpt-4o-mini");
    assert_eq!(seen[0]["headers"]["authorization"], "Bearer sk-x");

    let s = stream(&compat, &[], r#"{"model":"openai/gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"streamed compat"}]}"#).await;
    assert_eq!(s.status, StatusCode::OK);
    assert_eq!(
        sse_data(&s.text()).last().map(String::as_str),
        Some("[DONE]")
    );

    for (model, needle) in [
        ("gpt-4o", "model: expected"),
        ("nosuch/x", "unknown provider"),
        ("replicate/llama", "no OpenAI-compatible"),
    ] {
        let r = send(
            &compat,
            &[],
            &format!(r#"{{"model":"{model}","messages":[]}}"#),
        )
        .await;
        assert!(r.status.is_client_error(), "{model}");
        assert!(r.text().contains(needle), "{model}: {}", r.text());
    }

    // Workers AI: its OpenAI-compatible API beside `ai/run`, the model as Cloudflare names it;
    // its own route still runs a model by path.
    let r = send(
        &compat,
        &[("authorization", "Bearer cf-token")],
        r#"{"model":"workers-ai/@cf/meta/llama-3.1-8b-instruct","messages":[{"role":"user","content":"hi workers"}]}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let seen = mock.requests();
    let last = seen.last().unwrap();
    assert_eq!(
        last["path"],
        "/client/v4/accounts/acct/ai/v1/chat/completions"
    );
    assert_eq!(body_of(last)["model"], "@cf/meta/llama-3.1-8b-instruct");
    assert_eq!(last["headers"]["authorization"], "Bearer cf-token");
    let r = send(
        &gw.url("/v1/acct/gw/workers-ai/@cf/meta/llama-3.1-8b-instruct"),
        &[("authorization", "Bearer cf-token")],
        r#"{"messages":[{"role":"user","content":"run it"}]}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        mock.requests().last().unwrap()["path"],
        "/client/v4/accounts/acct/ai/run/@cf/meta/llama-3.1-8b-instruct"
    );
}

/// An upstream that answers every request with a 400 JSON error: Anthropic's shape on
/// `/v1/messages`, OpenAI's on other paths; with `code` and `param` unless the request
/// carries `x-test-error: plain`.
async fn erroring_upstream() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                // The whole request: its head, then its body (by length or to the last chunk).
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let head = loop {
                    let n = match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok());
                    let done = match length {
                        Some(length) => buf.len() >= end + 4 + length,
                        None => !head.contains("chunked") || buf.ends_with(b"0\r\n\r\n"),
                    };
                    if done {
                        break head;
                    }
                };
                let path = head.split(' ').nth(1).unwrap_or("").to_string();
                let plain = head.contains("x-test-error: plain");
                let mut error = serde_json::json!({
                    "type": "invalid_request_error",
                    "message": "max_tokens: at most 4096",
                });
                if !plain {
                    error["code"] = "max_tokens_too_large".into();
                    error["param"] = "max_tokens".into();
                }
                let body = if path.starts_with("/v1/messages") {
                    serde_json::json!({"type": "error", "error": error})
                } else {
                    serde_json::json!({"error": error})
                }
                .to_string();
                let _ = s
                    .write_all(
                        format!(
                            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compat_endpoint_keeps_an_errors_code_and_param() {
    let upstream = erroring_upstream().await;
    let gw = Gateway::start(
        &format!(
            "[providers.openai]\nbase_url = \"http://{upstream}/v1\"\n\
             [providers.anthropic]\nbase_url = \"http://{upstream}\"\n\
             [gateways.gw]\npipeline = []\n"
        ),
        &[],
    );
    let compat = gw.url("/v1/acct/gw/compat/chat/completions");
    let body = |model: &str| {
        format!(
            r#"{{"model":"{model}","max_tokens":5,"messages":[{{"role":"user","content":"hi"}}]}}"#
        )
    };
    // Translated from Anthropic's error shape, and passed through from an OpenAI-compatible one.
    for model in ["anthropic/claude-3-5-haiku", "openai/gpt-4o-mini"] {
        let r = send(&compat, &[("authorization", "Bearer sk-x")], &body(model)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{model}: {}", r.text());
        let error = &r.json()["error"];
        assert_eq!(
            error["type"],
            "invalid_request_error",
            "{model}: {}",
            r.text()
        );
        assert_eq!(error["message"], "max_tokens: at most 4096", "{model}");
        assert_eq!(
            error["code"],
            "max_tokens_too_large",
            "{model}: {}",
            r.text()
        );
        assert_eq!(error["param"], "max_tokens", "{model}: {}", r.text());
    }
    // An Anthropic error without them: both present and null, as in OpenAI's errors.
    let r = send(
        &compat,
        &[("authorization", "Bearer sk-x"), ("x-test-error", "plain")],
        &body("anthropic/claude-3-5-haiku"),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    let reply = r.json();
    let error = reply["error"].as_object().unwrap();
    assert_eq!(error["type"], "invalid_request_error", "{}", r.text());
    assert!(
        error["code"].is_null() && error["param"].is_null(),
        "{}",
        r.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_universal_endpoint_falls_back_through_its_steps() {
    let mock = Mock::start().await;
    let gw = Gateway::start(
        &format!(
            "{}[gateways.gw]\npipeline = [\"logging\"]\n",
            mock.providers_toml()
        ),
        &[],
    );
    let universal = gw.url("/v1/acct/gw");
    let steps = serde_json::json!([
        {"provider": "openai", "endpoint": "chat/completions",
         "headers": {"authorization": "Bearer sk-first", "x-mock-status": "503"},
         "query": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "first"}]}},
        {"provider": "anthropic", "endpoint": "v1/messages",
         "headers": {"x-api-key": "sk-ant-second", "anthropic-version": "2023-06-01"},
         "query": {"model": "claude-3-5-haiku", "max_tokens": 16, "messages": [{"role": "user", "content": "second"}]}}
    ]);
    let r = send(
        &universal,
        &[("content-type", "application/json")],
        &steps.to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("cf-aig-step"), Some("1"));
    assert_eq!(r.json()["type"], "message");
    let seen = mock.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0]["path"], "/v1/chat/completions");
    assert_eq!(seen[1]["path"], "/v1/messages");
    assert_eq!(seen[1]["headers"]["x-api-key"], "sk-ant-second");

    // Every step failing: the last answer is returned, with its step.
    let failing = serde_json::json!([
        {"provider": "openai", "endpoint": "chat/completions", "headers": {"x-mock-status": "500"}, "query": {}},
        {"provider": "openai", "endpoint": "chat/completions", "headers": {"x-mock-status": "429"}, "query": {}}
    ]);
    let r = send(&universal, &[], &failing.to_string()).await;
    assert_eq!(r.status.as_u16(), 429);
    assert_eq!(r.header("cf-aig-step"), Some("1"));

    let bad = send(&universal, &[], r#"[{"provider":"openai"}]"#).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.text().contains("[0].endpoint"), "{}", bad.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_ends_with_an_explicit_sse_error_event() {
    let mock = Mock::start().await;
    let dir = prepare_with_server(
        "stream_idle_timeout_ms = 300\n",
        &format!("{}[gateways.gw]\npipeline = []\n", mock.providers_toml()),
        &[],
    );
    let gw = Gateway::start_in(dir);
    let s = stream(
        &url(&gw),
        &[("x-mock-chunks", "3"), ("x-mock-chunk-delay-ms", "2000")],
        &chat("stall", true),
    )
    .await;
    assert_eq!(s.status, StatusCode::OK);
    let text = s.text();
    assert!(text.contains("event: error"), "{text}");
    assert!(text.contains("stream_idle_timeout"), "{text}");
    assert!(s.error.is_some(), "a stalled stream must not end cleanly");
    // A request timeout bounds only the first byte: a slow but live stream is not cut.
    let live = stream(
        &url(&gw),
        &[
            ("x-mock-chunks", "4"),
            ("x-mock-chunk-delay-ms", "150"),
            ("cf-aig-request-timeout", "100"),
        ],
        &chat("slow but alive", true),
    )
    .await;
    assert!(live.error.is_none(), "{:?}", live.error);
    assert_eq!(
        sse_data(&live.text()).last().map(String::as_str),
        Some("[DONE]")
    );
}

/// `stream_usage = "off"`: a strict OpenAI-compatible provider never receives
/// `stream_options` (the default `inject` adds it so the stream ends with its usage), and a
/// mistyped value is refused naming the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_usage_off_never_sends_stream_options() {
    let mock = Mock::start().await;
    let cfg = format!(
        "[providers.strict]\nbase_url = \"http://{0}/v1\"\nstream_usage = \"off\"\n\
         [providers.openai]\nbase_url = \"http://{0}/v1\"\n[gateways.gw]\npipeline = [\"logging\"]\n",
        mock.addr
    );
    let gw = Gateway::start(&cfg, &[]);
    for provider in ["strict", "openai"] {
        let s = stream(
            &gw.url(&format!("/v1/acct/gw/{provider}/chat/completions")),
            &[],
            &chat("count my tokens", true),
        )
        .await;
        assert_eq!(s.status.as_u16(), 200);
        assert!(s.text().contains("[DONE]"));
    }
    let bodies: Vec<serde_json::Value> = mock
        .requests()
        .iter()
        .map(|r| serde_json::from_str(r["body"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(bodies.len(), 2);
    assert!(
        bodies[0].get("stream_options").is_none(),
        "stream_usage = \"off\" still sent {}",
        bodies[0]
    );
    assert_eq!(bodies[1]["stream_options"]["include_usage"], true);
    // A model without a price: usage known, cost unknown, counted.
    let body = serde_json::json!({"model": "mystery-model",
        "messages": [{"role": "user", "content": "price me"}]})
    .to_string();
    let r = send(&gw.url("/v1/acct/gw/openai/chat/completions"), &[], &body).await;
    assert_eq!(r.status.as_u16(), 200);
    let metrics_text = || async {
        send_req(request(hyper::Method::GET, &gw.url("/metrics"), &[], ""))
            .await
            .text()
    };
    eventually(std::time::Duration::from_secs(3), || async {
        metrics_text().await.contains("mystery-model")
    })
    .await;
    let metrics = metrics_text().await;
    // The strict provider's stream carried no usage: its cost is unknown, and counted.
    assert!(
        metrics.contains("aigw_usage_missing_total{provider=\"strict\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("aigw_price_missing_total{provider=\"openai\",model=\"mystery-model\"} 1"),
        "{metrics}"
    );
    let (ok, text) = check(
        &format!(
            "[providers.strict]\nbase_url = \"http://{}/v1\"\nstream_usage = \"sometimes\"\n",
            mock.addr
        ),
        &[],
    );
    assert!(!ok);
    assert!(text.contains("providers.strict.stream_usage"), "{text}");
}
