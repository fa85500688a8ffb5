//! Provider answers in the client's protocol: streams translated event by event, whole answers
//! at once.

use super::responses_in::Keep;
use crate::http::body::{BodyError, GatewayBody};
use crate::http::error::GatewayError;
use crate::providers::{anthropic, cohere_chat, converse, gemini, messages, responses};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Response;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use serde_json::Value;

/// The stream translator of answers that are never streams (embeddings): whatever arrives is
/// passed on.
pub(super) struct NoStream;

impl StreamTranslate for NoStream {
    fn feed(&mut self, bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }
    fn finish(&mut self) -> String {
        String::new()
    }
    fn finished(&self) -> bool {
        true
    }
}

/// A translator of one provider stream into the client's protocol.
pub trait StreamTranslate: Send + 'static {
    /// The client's bytes for these provider bytes.
    fn feed(&mut self, bytes: &[u8]) -> String;
    /// What to send when the provider's stream ended (closing events, if it ended cleanly).
    fn finish(&mut self) -> String;
    /// Whether the client's protocol's terminal event was sent.
    fn finished(&self) -> bool;
    /// The finished answer as one object, once, when the protocol has one to keep.
    fn completed(&mut self) -> Option<Value> {
        None
    }
}

impl StreamTranslate for anthropic::StreamTranslator {
    fn feed(&mut self, bytes: &[u8]) -> String {
        anthropic::StreamTranslator::feed(self, bytes)
    }
    fn finish(&mut self) -> String {
        String::new()
    }
    fn finished(&self) -> bool {
        anthropic::StreamTranslator::finished(self)
    }
}

impl StreamTranslate for messages::StreamToAnthropic {
    fn feed(&mut self, bytes: &[u8]) -> String {
        messages::StreamToAnthropic::feed(self, bytes)
    }
    fn finish(&mut self) -> String {
        messages::StreamToAnthropic::finish(self)
    }
    fn finished(&self) -> bool {
        messages::StreamToAnthropic::finished(self)
    }
}

impl StreamTranslate for converse::StreamToChat {
    fn feed(&mut self, bytes: &[u8]) -> String {
        converse::StreamToChat::feed(self, bytes)
    }
    fn finish(&mut self) -> String {
        converse::StreamToChat::finish(self)
    }
    fn finished(&self) -> bool {
        converse::StreamToChat::finished(self)
    }
}

impl StreamTranslate for cohere_chat::StreamToChat {
    fn feed(&mut self, bytes: &[u8]) -> String {
        cohere_chat::StreamToChat::feed(self, bytes)
    }
    fn finish(&mut self) -> String {
        cohere_chat::StreamToChat::finish(self)
    }
    fn finished(&self) -> bool {
        cohere_chat::StreamToChat::finished(self)
    }
}

impl StreamTranslate for gemini::StreamToChat {
    fn feed(&mut self, bytes: &[u8]) -> String {
        gemini::StreamToChat::feed(self, bytes)
    }
    fn finish(&mut self) -> String {
        gemini::StreamToChat::finish(self)
    }
    fn finished(&self) -> bool {
        gemini::StreamToChat::finished(self)
    }
}

impl StreamTranslate for responses::StreamToResponses {
    fn completed(&mut self) -> Option<Value> {
        self.take_completed()
    }
    fn feed(&mut self, bytes: &[u8]) -> String {
        responses::StreamToResponses::feed(self, bytes)
    }
    fn finish(&mut self) -> String {
        responses::StreamToResponses::finish(self)
    }
    fn finished(&self) -> bool {
        responses::StreamToResponses::finished(self)
    }
}

/// The provider's answer in the client's protocol: a successful event stream through
/// `stream`, event by event (a stream that ends without its terminal event is ended as broken,
/// never as complete); any other answer read whole and given to `whole` with its status
/// (`None`, for a body it cannot read, passes it on unchanged).
pub(super) async fn translate<T: StreamTranslate>(
    resp: Response<GatewayBody>,
    stream: T,
    whole: impl FnOnce(u16, &[u8]) -> Option<Value>,
) -> Response<GatewayBody> {
    translate_keeping(resp, stream, whole, None).await
}

/// [`translate`], keeping the finished answer when `keep` says where, before the client sees
/// it complete.
pub(super) async fn translate_keeping<T: StreamTranslate>(
    resp: Response<GatewayBody>,
    mut stream: T,
    whole: impl FnOnce(u16, &[u8]) -> Option<Value>,
    keep: Option<Keep>,
) -> Response<GatewayBody> {
    let (mut head, body) = resp.into_parts();
    let streamed = head
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| {
            c.starts_with("text/event-stream")
                || c.starts_with("application/vnd.amazon.eventstream")
        });
    head.headers.remove(CONTENT_LENGTH);
    if streamed && head.status.is_success() {
        // Whatever the provider streamed in, the client gets server-sent events.
        head.headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, BodyError>>(16);
        tokio::spawn(async move {
            let mut body = body;
            loop {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        let Ok(data) = frame.into_data() else {
                            continue;
                        };
                        let out = stream.feed(&data);
                        if let Some(k) = &keep
                            && let Some(done) = stream.completed()
                        {
                            k.scope.keep(&k.before, &done).await;
                        }
                        if !out.is_empty() && tx.send(Ok(Bytes::from(out))).await.is_err() {
                            return;
                        }
                    }
                    Some(Err(e)) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                    None => break,
                }
            }
            let tail = stream.finish();
            if let Some(k) = &keep
                && let Some(done) = stream.completed()
            {
                k.scope.keep(&k.before, &done).await;
            }
            if !tail.is_empty() {
                let _ = tx.send(Ok(Bytes::from(tail))).await;
            }
            if !stream.finished() {
                let _ = tx
                    .send(Err(
                        "the provider's stream ended before its last event".into()
                    ))
                    .await;
            }
        });
        return Response::from_parts(head, GatewayBody::Channel(rx));
    }
    let bytes = match http_body_util::Limited::new(body, 64 * 1024 * 1024)
        .collect()
        .await
    {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            return GatewayError::bad_gateway(format!("provider response unreadable: {e}"))
                .into_response();
        }
    };
    let Some(out) = whole(head.status.as_u16(), &bytes) else {
        head.headers
            .insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        return Response::from_parts(head, GatewayBody::full(bytes));
    };
    if let Some(k) = &keep
        && head.status.is_success()
        && matches!(
            out.get("status").and_then(Value::as_str),
            Some("completed" | "incomplete")
        )
    {
        k.scope.keep(&k.before, &out).await;
    }
    let out = out.to_string();
    head.headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    head.headers
        .insert(CONTENT_LENGTH, HeaderValue::from(out.len()));
    Response::from_parts(head, GatewayBody::full(out))
}
