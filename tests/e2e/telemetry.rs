//! Telemetry export: each request becomes an OTLP span with the GenAI attributes, sent to a
//! stand-in collector.

use crate::harness::*;
use std::time::Duration;

/// Every span the stand-in collector has received so far.
fn exported_spans(got: &std::sync::Mutex<Vec<serde_json::Value>>) -> Vec<serde_json::Value> {
    got.lock()
        .unwrap()
        .iter()
        .flat_map(|req| {
            req["resourceSpans"][0]["scopeSpans"][0]["spans"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

/// A stand-in OpenTelemetry collector: keeps every OTLP/HTTP JSON body POSTed
/// to /v1/traces.
async fn collector() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
) {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = got.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let store = store.clone();
                        async move {
                            let ok = req.uri().path() == "/v1/traces"
                                && req
                                    .headers()
                                    .get("content-type")
                                    .is_some_and(|v| v == "application/json");
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            if ok && let Ok(v) = serde_json::from_slice(&body) {
                                store.lock().unwrap().push(v);
                            }
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from_static(b"{}")),
                            ))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_is_exported_as_an_otlp_span_with_genai_attributes() {
    let mock = Mock::start().await;
    let (addr, got) = collector().await;
    let cfg = format!(
        "{}[telemetry]\notlp_endpoint = \"http://{addr}\"\nservice_name = \"aigw-test\"\n\
         [gateways.gw]\npipeline = [\"logging\"]\n",
        mock.providers_toml()
    );
    let gw = Gateway::start(&cfg, &[]);
    let url = gw.url("/v1/acct/gw/openai/chat/completions");
    let ok = send(&url, &[], &chat("trace me", false)).await;
    let log_id = ok.header("cf-aig-log-id").unwrap().to_string();
    let failed = send(&url, &[("x-mock-status", "503")], &chat("fail", false)).await;
    assert_eq!(failed.status.as_u16(), 503);
    let spans = || exported_spans(&got);
    let arrived = eventually(Duration::from_secs(5), || async { spans().len() >= 2 }).await;
    assert!(
        arrived.is_some(),
        "spans never reached the collector: {:?}",
        got.lock().unwrap()
    );
    let all = got.lock().unwrap().clone();
    let resource = &all[0]["resourceSpans"][0]["resource"]["attributes"];
    assert!(resource.to_string().contains("aigw-test"), "{resource}");
    let spans = spans();
    let attr = |span: &serde_json::Value, key: &str| -> serde_json::Value {
        span["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == key)
            .map(|a| a["value"].clone())
            .unwrap_or(serde_json::Value::Null)
    };
    let ok_span = spans
        .iter()
        .find(|s| {
            s["traceId"]
                .as_str()
                .unwrap_or("")
                .eq_ignore_ascii_case(&log_id)
        })
        .unwrap_or_else(|| panic!("no span with trace id {log_id}: {spans:#?}"));
    assert_eq!(ok_span["name"], "chat gpt-4o-mini");
    assert_eq!(
        attr(ok_span, "gen_ai.operation.name")["stringValue"],
        "chat"
    );
    assert_eq!(
        attr(ok_span, "gen_ai.provider.name")["stringValue"],
        "openai"
    );
    assert_eq!(
        attr(ok_span, "gen_ai.request.model")["stringValue"],
        "gpt-4o-mini"
    );
    let tokens = attr(ok_span, "gen_ai.usage.input_tokens")["intValue"].clone();
    assert!(
        tokens.as_str().map(|t| t != "0").unwrap_or(false) || tokens.as_i64().unwrap_or(0) > 0,
        "{ok_span}"
    );
    assert!(
        attr(ok_span, "gen_ai.usage.output_tokens").is_object(),
        "{ok_span}"
    );
    assert!(
        attr(ok_span, "aigw.cost")["doubleValue"].is_number(),
        "{ok_span}"
    );
    let failed_span = spans
        .iter()
        .find(|s| {
            attr(s, "http.response.status_code")["intValue"]
                .to_string()
                .contains("503")
        })
        .unwrap_or_else(|| panic!("no 503 span: {spans:#?}"));
    assert_eq!(
        failed_span["status"]["code"], 2,
        "ERROR status: {failed_span}"
    );
    // The exporter counts a span once the collector has answered: wait for that.
    let metrics = || async {
        send_req(request(hyper::Method::GET, &gw.url("/metrics"), &[], ""))
            .await
            .text()
    };
    eventually(Duration::from_secs(5), || async {
        metrics().await.contains("aigw_otlp_spans_exported_total 2")
    })
    .await;
    let m = metrics().await;
    assert!(m.contains("aigw_otlp_spans_exported_total 2"), "{m}");
}

/// A client's W3C `traceparent` is continued: the exported span is in the client's trace, with
/// the client's span as its parent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incoming_traceparent_continues_the_clients_trace() {
    let mock = Mock::start().await;
    let (addr, got) = collector().await;
    let cfg = format!(
        "{}[telemetry]\notlp_endpoint = \"http://{addr}\"\n[gateways.gw]\npipeline = [\"logging\"]\n",
        mock.providers_toml()
    );
    let gw = Gateway::start(&cfg, &[]);
    let url = gw.url("/v1/acct/gw/openai/chat/completions");
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let header = format!("00-{trace}-{parent}-01");
    let r = send(&url, &[("traceparent", &header)], &chat("traced", false)).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    // A malformed one is ignored: that span has the request id as its trace id.
    let r2 = send(
        &url,
        &[("traceparent", "00-zz-00-01")],
        &chat("untraced", false),
    )
    .await;
    let log_id = r2.header("cf-aig-log-id").unwrap().to_string();
    let spans = || exported_spans(&got);
    let arrived = eventually(Duration::from_secs(5), || async { spans().len() >= 2 }).await;
    assert!(arrived.is_some(), "spans never arrived");
    let spans = spans();
    let id = |s: &serde_json::Value, k: &str| s[k].as_str().unwrap_or("").to_ascii_lowercase();
    let continued = spans
        .iter()
        .find(|s| id(s, "traceId") == trace)
        .unwrap_or_else(|| panic!("no span in the client's trace: {spans:#?}"));
    assert_eq!(id(continued, "parentSpanId"), parent, "{continued}");
    assert_ne!(id(continued, "spanId"), parent);
    let own = spans
        .iter()
        .find(|s| id(s, "traceId") == log_id.to_ascii_lowercase())
        .unwrap_or_else(|| panic!("no span with the request id as trace id: {spans:#?}"));
    assert_eq!(id(own, "parentSpanId"), "", "{own}");
}

/// At `RUST_LOG=debug` each request has a `request` span with its id (the log id), each filter
/// call a `filter` span inside it, and a filter's own log line carries the request id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_logs_show_a_span_per_request_and_per_filter_call() {
    let mock = Mock::start().await;
    let cfg = format!(
        "{}[gateways.gw]\npipeline = [\"logging\", \"custom\", \"cache\"]\n[gateways.gw.filters.custom]\nmode = \"log\"\n",
        mock.providers_toml()
    );
    let dir = prepare(&cfg, &[("custom", &test_filter_wasm())]);
    let gw = Gateway::start_with_env(dir, &[("RUST_LOG", "debug")]);
    let url = gw.url("/v1/acct/gw/openai/chat/completions");
    // Two requests at once: each line must carry its own request's id.
    let (one, two) = (chat("span me", false), chat("and me", false));
    let (r, other) = tokio::join!(send(&url, &[], &one), send(&url, &[], &two));
    assert_eq!(other.status.as_u16(), 200);
    let other_id = other.header("cf-aig-log-id").unwrap().to_string();
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let id = r.header("cf-aig-log-id").unwrap().to_string();
    let request_span = format!("request{{id={id} gateway=gw provider=openai");
    eventually(Duration::from_secs(5), || async {
        gw.logs().contains("request done")
    })
    .await;
    let logs = gw.logs();
    let lines: Vec<&str> = logs.lines().filter(|l| l.contains(&request_span)).collect();
    assert!(
        lines.iter().any(
            |l| l.contains("filter{name=custom hook=on-request-headers}")
                && l.contains("test filter saw")
                && (l.contains(&format!("request_id=\"{id}\""))
                    || l.contains(&format!("request_id={id}")))
        ),
        "the filter's log line is not inside its request and filter spans:\n{logs}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("request done") && l.contains("status=200")),
        "the request's last line does not carry its status:\n{logs}"
    );
    // Each filter line is in exactly one request's span, with that request's id: ids never mix.
    let other_span = format!("request{{id={other_id} gateway=gw provider=openai");
    let filter_lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("test filter saw"))
        .collect();
    assert_eq!(filter_lines.len(), 2, "{logs}");
    for line in filter_lines {
        let (mine, theirs) = (line.contains(&request_span), line.contains(&other_span));
        assert!(mine != theirs, "{line}");
        let own_id = if mine { &id } else { &other_id };
        assert!(line.contains(own_id.as_str()), "{line}");
        let foreign = if mine { &other_id } else { &id };
        assert!(!line.contains(foreign.as_str()), "{line}");
    }
}
