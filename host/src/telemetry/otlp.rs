//! Optional OpenTelemetry export: one span per request, sent as OTLP/HTTP
//! JSON to `[telemetry] otlp_endpoint` (`{endpoint}/v1/traces`), with the
//! GenAI semantic-convention attributes (operation, provider, model, input
//! and output tokens) plus the gateway's own (cost, cache, attempts). The
//! message types and their JSON mapping are `opentelemetry-proto`'s.
//!
//! Spans are queued (bounded; a full queue drops and counts) and sent in
//! batches of up to 512, at least once a second, by one task. The trace id is
//! the request id, so a span and its log entry (`cf-aig-log-id`) match, unless the client sent
//! a valid W3C `traceparent`: then the span joins the client's trace as a child of its span.

use crate::http::upstream::UpstreamClient;
use crate::runtime::bindings::types::{Outcome, Summary};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// Spans waiting to be sent.
const QUEUE: usize = 8192;
/// Most spans per export request.
const BATCH: usize = 512;

pub use crate::config::backends::OtlpSettings;

/// Counters exported in /metrics.
#[derive(Debug, Default)]
pub struct OtlpCounters {
    /// Spans the collector accepted.
    pub exported: AtomicU64,
    /// Spans dropped (queue full or the collector failed).
    pub dropped: AtomicU64,
}

/// The exporter: a queue and the task sending batches.
#[derive(Debug)]
pub struct OtlpExporter {
    tx: mpsc::Sender<Span>,
    /// Counters.
    pub counters: std::sync::Arc<OtlpCounters>,
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn text(key: &str, v: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.to_string()))
}

fn int(key: &str, v: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(v))
}

/// The GenAI operation of a provider path.
fn operation(path: &str) -> &'static str {
    if path.ends_with("/chat/completions") || path.ends_with("/messages") {
        "chat"
    } else if path.ends_with("/embeddings") {
        "embeddings"
    } else if path.ends_with("/completions") {
        "text_completion"
    } else {
        "other"
    }
}

/// The trace id and parent span id of a W3C `traceparent` header
/// (`00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`); `None` when it is malformed, uses
/// the invalid version `ff`, or has an all-zero id (the spec says to ignore such a header).
pub fn parse_traceparent(value: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut parts = value.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let lower_hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !lower_hex(version, 2) || version == "ff" || !lower_hex(flags, 2) {
        return None;
    }
    // Version 00 has exactly four fields; later versions may append more.
    if version == "00" && parts.next().is_some() {
        return None;
    }
    if !lower_hex(trace, 32) || !lower_hex(parent, 16) {
        return None;
    }
    let trace = hex::decode(trace).ok()?;
    let parent = hex::decode(parent).ok()?;
    if trace.iter().all(|b| *b == 0) || parent.iter().all(|b| *b == 0) {
        return None;
    }
    Some((trace, parent))
}

/// The span of one finished request; a client's valid `traceparent` makes it a child of the
/// client's span in the client's trace, else the request id is the trace id.
pub fn span_of(s: &Summary, traceparent: Option<&str>) -> Span {
    let parent = traceparent.and_then(parse_traceparent);
    let (trace_id, parent_span_id) = match parent {
        Some((trace, parent)) => (trace, parent),
        None => (
            hex::decode(&s.request_id)
                .ok()
                .filter(|b| b.len() == 16)
                .unwrap_or_else(|| uuid::Uuid::new_v4().as_bytes().to_vec()),
            Vec::new(),
        ),
    };
    let span_id = uuid::Uuid::new_v4().as_bytes()[..8].to_vec();
    let op = operation(&s.path);
    let model = s.model.as_deref().unwrap_or("");
    let mut attributes = vec![
        text("gen_ai.operation.name", op),
        text("gen_ai.provider.name", &s.provider),
        text("gen_ai.system", &s.provider),
        int("http.response.status_code", i64::from(s.status)),
        text("aigw.gateway", &s.gateway),
        text("aigw.account", &s.account),
        text("aigw.request_id", &s.request_id),
        text("url.path", &s.path),
        kv("aigw.cached", any_value::Value::BoolValue(s.cached)),
        kv("aigw.streamed", any_value::Value::BoolValue(s.streamed)),
        int("aigw.attempts", i64::from(s.attempts)),
        text("aigw.outcome", &format!("{:?}", s.outcome)),
    ];
    if !model.is_empty() {
        attributes.push(text("gen_ai.request.model", model));
    }
    if let Some(t) = s.tokens_in {
        attributes.push(int("gen_ai.usage.input_tokens", i64::from(t)));
    }
    if let Some(t) = s.tokens_out {
        attributes.push(int("gen_ai.usage.output_tokens", i64::from(t)));
    }
    if let Some(c) = s.cost {
        attributes.push(kv("aigw.cost", any_value::Value::DoubleValue(c)));
    }
    let start = s.created_at_ms.saturating_mul(1_000_000);
    let end = start.saturating_add(u64::from(s.duration_ms).saturating_mul(1_000_000));
    let failed = !s.success || matches!(s.outcome, Outcome::FilterFailed | Outcome::UpstreamError);
    Span {
        trace_id,
        span_id,
        parent_span_id,
        name: if model.is_empty() {
            op.to_string()
        } else {
            format!("{op} {model}")
        },
        kind: span::SpanKind::Client as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes,
        status: Some(Status {
            code: if failed {
                status::StatusCode::Error as i32
            } else {
                status::StatusCode::Ok as i32
            },
            message: String::new(),
        }),
        ..Default::default()
    }
}

impl OtlpExporter {
    /// Starts the sending task (needs a tokio runtime).
    pub fn start(settings: OtlpSettings, client: UpstreamClient) -> OtlpExporter {
        let (tx, rx) = mpsc::channel(QUEUE);
        let counters = std::sync::Arc::new(OtlpCounters::default());
        tokio::spawn(send_loop(settings, client, rx, counters.clone()));
        OtlpExporter { tx, counters }
    }

    /// Queues the span of a finished request (never waits).
    pub fn record(&self, summary: &Summary, traceparent: Option<&str>) {
        if self.tx.try_send(span_of(summary, traceparent)).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn send_loop(
    settings: OtlpSettings,
    client: UpstreamClient,
    mut rx: mpsc::Receiver<Span>,
    counters: std::sync::Arc<OtlpCounters>,
) {
    let url = format!("{}/v1/traces", settings.endpoint.trim_end_matches('/'));
    let resource = Resource {
        attributes: vec![
            text("service.name", &settings.service_name),
            text("service.version", env!("CARGO_PKG_VERSION")),
        ],
        ..Default::default()
    };
    let mut last_warning = std::time::Instant::now() - Duration::from_secs(60);
    while let Some(first) = rx.recv().await {
        let mut spans = vec![first];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while spans.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(s)) => spans.push(s),
                _ => break,
            }
        }
        let n = spans.len() as u64;
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "aigw".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        let result = match serde_json::to_vec(&request) {
            Ok(body) => post(&client, &url, body).await,
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(()) => {
                counters.exported.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                counters.dropped.fetch_add(n, Ordering::Relaxed);
                if last_warning.elapsed() >= Duration::from_secs(5) {
                    last_warning = std::time::Instant::now();
                    tracing::warn!(endpoint = %url, "OTLP export failed, {n} spans dropped: {e}");
                }
            }
        }
    }
}

async fn post(client: &UpstreamClient, url: &str, body: Vec<u8>) -> Result<(), String> {
    let req = hyper::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .map_err(|_| "no answer within 10 s".to_string())?
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let _ = resp.into_body().collect().await;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("collector answered {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_traceparent;

    #[test]
    fn a_valid_traceparent_gives_its_trace_and_parent_ids() {
        let (trace, parent) =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(hex::encode(trace), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex::encode(parent), "00f067aa0ba902b7");
        // A later version may carry more fields.
        assert!(
            parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x")
                .is_some()
        );
    }

    #[test]
    fn malformed_or_invalid_traceparents_are_ignored() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }
}
