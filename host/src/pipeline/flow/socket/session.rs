//! A WebSocket session once both sides are upgraded: messages relayed both ways, the usage
//! the provider reports summed, and the session's one log entry.

use super::super::Exchange;
use super::super::body::BodyTask;
use super::SessionSlot;
use crate::providers::usage::{Usage, UsageReader, usage_in};
use crate::runtime::bindings::types::Outcome;
use crate::runtime::host::RequestContext;
use futures_util::{SinkExt as _, StreamExt as _};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

/// How long the closing handshake may take once either side (or the gateway) began it.
pub(super) const CLOSE_WAIT: Duration = Duration::from_secs(3);
/// Longest wait for a peer to take one message; one that does not has gone away.
const SEND_WAIT: Duration = Duration::from_secs(10);

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// The client closed it (or went away).
    Client,
    /// The provider closed it (or went away).
    Provider,
    /// The provider's connection broke, or it stopped taking messages.
    ProviderFailed,
    /// Nothing passed either way for the idle timeout.
    Idle,
    /// The gateway is shutting down.
    Shutdown,
}

impl Ended {
    fn name(self) -> &'static str {
        match self {
            Ended::Client => "client",
            Ended::Provider => "provider",
            Ended::ProviderFailed => "provider_error",
            Ended::Idle => "idle_timeout",
            Ended::Shutdown => "shutdown",
        }
    }
}

/// What passed through a session.
#[derive(Debug, Default)]
struct Tally {
    to_provider: u64,
    to_client: u64,
    bytes_in: u64,
    bytes_out: u64,
    usage: Usage,
}

/// Sums `add` into `total` (a count either has is kept).
fn add_usage(total: &mut Usage, add: &Usage) {
    fn sum(a: &mut Option<u32>, b: Option<u32>) {
        if let Some(b) = b {
            *a = Some(a.unwrap_or(0).saturating_add(b));
        }
    }
    sum(&mut total.tokens_in, add.tokens_in);
    sum(&mut total.tokens_out, add.tokens_out);
    sum(&mut total.tokens_cached, add.tokens_cached);
    sum(&mut total.tokens_reasoning, add.tokens_reasoning);
    sum(&mut total.tokens_cache_write, add.tokens_cache_write);
    sum(&mut total.tokens_image_in, add.tokens_image_in);
    sum(&mut total.tokens_audio, add.tokens_audio);
}

/// The usage a provider's message reports: OpenAI Realtime's `response.done`, or a Gemini Live
/// server message's `usageMetadata` (one per turn).
fn message_usage(text: &[u8]) -> Option<Usage> {
    let has = |needle: &[u8]| text.windows(needle.len()).any(|w| w == needle);
    if has(b"\"response.done\"") {
        let v: serde_json::Value = serde_json::from_slice(text).ok()?;
        if v.get("type")?.as_str()? != "response.done" {
            return None;
        }
        return Some(usage_in(v.pointer("/response/usage")?));
    }
    if has(b"\"usageMetadata\"") {
        let v: serde_json::Value = serde_json::from_slice(text).ok()?;
        return Some(crate::providers::usage::gemini_usage(
            v.get("usageMetadata")?,
        ));
    }
    None
}

/// The model a Gemini Live session's first message sets up (`{"setup": {"model":
/// "models/…"}}`), without its `models/` (or Vertex AI's `…/models/`) prefix. A setup that
/// names no model, or names one twice (the filters would judge one and the provider might
/// read the other), is refused with a message naming it.
pub(super) fn setup_model(text: &[u8]) -> Result<String, String> {
    use serde::de::{Deserializer as _, IgnoredAny, MapAccess, Visitor};
    struct Models(Vec<String>);
    impl<'de> Visitor<'de> for Models {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a setup object")
        }
        fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Vec<String>, A::Error> {
            while let Some(key) = map.next_key::<String>()? {
                if key == "model" {
                    self.0.push(map.next_value::<String>()?);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(self.0)
        }
    }
    struct Setup(Option<Vec<String>>, usize);
    impl<'de> Visitor<'de> for Setup {
        type Value = (Option<Vec<String>>, usize);
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Self::Value, A::Error> {
            while let Some(key) = map.next_key::<String>()? {
                if key == "setup" {
                    self.1 += 1;
                    struct Inner;
                    impl<'de> serde::de::DeserializeSeed<'de> for Inner {
                        type Value = Vec<String>;
                        fn deserialize<D: serde::Deserializer<'de>>(
                            self,
                            d: D,
                        ) -> Result<Vec<String>, D::Error> {
                            d.deserialize_map(Models(Vec::new()))
                        }
                    }
                    self.0 = Some(map.next_value_seed(Inner)?);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok((self.0, self.1))
        }
    }
    const EXPECTED: &str = "the first message must be {\"setup\": {\"model\": \"models/…\"}}";
    let mut de = serde_json::Deserializer::from_slice(text);
    let (models, setups) = de
        .deserialize_map(Setup(None, 0))
        .map_err(|e| format!("{EXPECTED}: {e}"))?;
    let models = models.ok_or(EXPECTED)?;
    if setups > 1 || models.len() > 1 {
        return Err("setup.model: given more than once".into());
    }
    let model = models.into_iter().next().ok_or(EXPECTED)?;
    let model = model
        .rsplit_once("/models/")
        .map_or(model.as_str(), |(_, m)| m);
    let model = model.strip_prefix("models/").unwrap_or(model);
    if model.is_empty() {
        return Err(EXPECTED.into());
    }
    Ok(model.to_string())
}

/// The payload of a data message (Gemini Live sends its JSON in binary frames).
pub(super) fn payload(msg: &Message) -> Option<&[u8]> {
    match msg {
        Message::Text(t) => Some(t.as_bytes()),
        Message::Binary(b) => Some(b),
        _ => None,
    }
}

/// A session's limits.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Longest silence (no data message either way).
    pub(super) idle: Duration,
    /// Largest message or frame.
    pub(super) max_message: usize,
}

pub(super) async fn session(
    ex: Exchange,
    client: Client,
    upstream: OnUpgrade,
    limits: Limits,
    slot: SessionSlot,
) {
    let config = socket_config(limits);
    let socket = |io: Upgraded, role: Role| {
        WebSocketStream::from_raw_socket(TokioIo::new(io), role, Some(config))
    };
    let (client, first, upstream) = match client {
        Client::Upgrading(c) => {
            let (c, u) = tokio::join!(c, upstream);
            let c = match c {
                Ok(c) => socket(c, Role::Server).await,
                Err(e) => {
                    tracing::debug!("client upgrade failed: {e}");
                    return end(ex, slot, Outcome::ClientAborted, None, Tally::default()).await;
                }
            };
            (c, None, u)
        }
        Client::Open(c, first) => (*c, first, upstream.await),
    };
    let mut client = client;
    let (outcome, ended, tally) = match upstream {
        Ok(u) => {
            let upstream = socket(u, Role::Client).await;
            let closing = ex.runtime.services.closing.subscribe();
            let (ended, tally) = relay(client, upstream, first, limits.idle, closing).await;
            let outcome = match ended {
                Ended::ProviderFailed => Outcome::UpstreamError,
                _ => Outcome::Completed,
            };
            (outcome, Some(ended), tally)
        }
        Err(e) => {
            tracing::warn!("provider upgrade failed: {e}");
            let frame = close(CloseCode::Error, "the provider's connection failed");
            let _ = tokio::time::timeout(CLOSE_WAIT, client.send(frame)).await;
            (Outcome::UpstreamError, None, Tally::default())
        }
    };
    end(ex, slot, outcome, ended, tally).await;
}

/// The client's side of a session: still upgrading, or open with the first message it sent.
pub(super) enum Client {
    Upgrading(OnUpgrade),
    Open(Box<Socket>, Option<First>),
}

/// A session's first client message, read by the gateway before the provider was called; it
/// is the first the provider gets.
pub(super) struct First(pub Message);

fn socket_config(limits: Limits) -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(limits.max_message))
        .max_frame_size(Some(limits.max_message))
}

/// The client's side of a session, upgraded.
pub(super) async fn server_socket(io: Upgraded, limits: Limits) -> Socket {
    WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, Some(socket_config(limits)))
        .await
}

/// The first data message the client sends within `wait` (none if it closes, fails or waits).
pub(super) async fn first_message(ws: &mut Socket, wait: Duration) -> Option<Message> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(m @ (Message::Text(_) | Message::Binary(_))))) => return Some(m),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)))) => continue,
            _ => return None,
        }
    }
}

/// Closes the client's side of a session that will not open, with `why` as the close reason
/// (cut to the 123 bytes a close frame carries).
pub(super) async fn refuse(ws: &mut Socket, code: CloseCode, why: &str) {
    let mut reason = why.to_string();
    if reason.len() > 123 {
        let mut at = 120;
        while !reason.is_char_boundary(at) {
            at -= 1;
        }
        reason.truncate(at);
        reason.push_str("...");
    }
    let _ = tokio::time::timeout(CLOSE_WAIT, ws.send(close(code, &reason))).await;
    // The client's answering close frame, then the connection ends.
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// The session's log entry.
async fn end(
    mut ex: Exchange,
    slot: SessionSlot,
    outcome: Outcome,
    ended: Option<Ended>,
    tally: Tally,
) {
    drop(slot);
    if let Some(ended) = ended {
        RequestContext::annotate(&ex.context, "websocket_closed_by", ended.name().into());
    }
    RequestContext::annotate(
        &ex.context,
        "websocket_messages",
        format!(
            "{} to provider, {} to client",
            tally.to_provider, tally.to_client
        ),
    );
    ex.request_bytes = tally.bytes_in;
    ex.armed = false;
    let mut task = BodyTask::abandoned(ex);
    task.status = 101;
    task.outcome = outcome;
    task.streamed = true;
    task.response_bytes = tally.bytes_out;
    task.usage = UsageReader::Known(tally.usage);
    task.done().await;
}

pub(super) type Socket = WebSocketStream<TokioIo<Upgraded>>;

fn close(code: CloseCode, why: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: why.to_string().into(),
    }))
}

/// One side of a session: where its messages go, and whether it still takes them.
struct Side {
    sink: futures_util::stream::SplitSink<Socket, Message>,
    open: bool,
}

impl Side {
    /// Sends within `wait`; a side that does not take the message in time, or fails, is gone.
    async fn send(&mut self, msg: Message, wait: Duration) -> bool {
        if !self.open {
            return false;
        }
        let sent = matches!(
            tokio::time::timeout(wait, self.sink.send(msg)).await,
            Ok(Ok(()))
        );
        if !sent {
            self.open = false;
        }
        sent
    }
}

/// Relays messages both ways until the session ends; pings are answered on each side by the
/// library and not relayed. Every send is bounded: a peer that stops reading ends the session,
/// and once it is ending, the closing handshake gets `CLOSE_WAIT`.
async fn relay(
    client: Socket,
    upstream: Socket,
    first: Option<First>,
    idle: Duration,
    mut closing: tokio::sync::watch::Receiver<bool>,
) -> (Ended, Tally) {
    let (to_client, mut from_client) = client.split();
    let (to_provider, mut from_provider) = upstream.split();
    let mut client = Side {
        sink: to_client,
        open: true,
    };
    let mut provider = Side {
        sink: to_provider,
        open: true,
    };
    let (mut reading_client, mut reading_provider) = (true, true);
    let mut tally = Tally::default();
    let mut ended: Option<Ended> = None;
    if let Some(First(msg)) = first {
        tally.to_provider += 1;
        tally.bytes_in += msg.len() as u64;
        if !provider.send(msg, SEND_WAIT).await {
            ended = Some(Ended::ProviderFailed);
            client
                .send(close(CloseCode::Away, "provider went away"), CLOSE_WAIT)
                .await;
        }
    }
    let mut last = tokio::time::Instant::now();
    let mut close_by: Option<tokio::time::Instant> = None;
    // Polled only until a session end is known (then never again).
    let mut shutdown = std::pin::pin!(async move {
        let _ = closing.wait_for(|c| *c).await;
    });
    loop {
        if ended.is_some() && close_by.is_none() {
            close_by = Some(tokio::time::Instant::now() + CLOSE_WAIT);
        }
        if !reading_client && !reading_provider {
            break;
        }
        let deadline = close_by.unwrap_or(last + idle);
        tokio::select! {
            m = from_client.next(), if reading_client => match m {
                Some(Ok(Message::Close(frame))) => {
                    ended.get_or_insert(Ended::Client);
                    provider.send(Message::Close(frame), CLOSE_WAIT).await;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(msg)) => {
                    last = tokio::time::Instant::now();
                    tally.to_provider += 1;
                    tally.bytes_in += msg.len() as u64;
                    if !provider.send(msg, SEND_WAIT).await && ended.is_none() {
                        ended = Some(Ended::ProviderFailed);
                        client.send(close(CloseCode::Away, "provider went away"), CLOSE_WAIT).await;
                    }
                }
                Some(Err(_)) | None => {
                    reading_client = false;
                    client.open = false;
                    if ended.is_none() {
                        ended = Some(Ended::Client);
                        provider.send(close(CloseCode::Away, "client went away"), CLOSE_WAIT).await;
                    }
                }
            },
            m = from_provider.next(), if reading_provider => match m {
                Some(Ok(Message::Close(frame))) => {
                    ended.get_or_insert(Ended::Provider);
                    client.send(Message::Close(frame), CLOSE_WAIT).await;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(msg)) => {
                    last = tokio::time::Instant::now();
                    tally.to_client += 1;
                    tally.bytes_out += msg.len() as u64;
                    // Counted whether or not the client takes it: the provider bills it.
                    if let Some(u) = payload(&msg).and_then(message_usage) {
                        add_usage(&mut tally.usage, &u);
                    }
                    if !client.send(msg, SEND_WAIT).await && ended.is_none() {
                        ended = Some(Ended::Client);
                        provider.send(close(CloseCode::Away, "client went away"), CLOSE_WAIT).await;
                    }
                }
                Some(Err(_)) | None => {
                    reading_provider = false;
                    provider.open = false;
                    if ended.is_none() {
                        ended = Some(if m.is_some() { Ended::ProviderFailed } else { Ended::Provider });
                        client.send(close(CloseCode::Away, "provider went away"), CLOSE_WAIT).await;
                    }
                }
            },
            _ = &mut shutdown, if ended.is_none() => {
                ended = Some(Ended::Shutdown);
                client.send(close(CloseCode::Away, "gateway shutting down"), CLOSE_WAIT).await;
                provider.send(close(CloseCode::Away, "gateway shutting down"), CLOSE_WAIT).await;
            }
            _ = tokio::time::sleep_until(deadline) => {
                if close_by.is_some() {
                    break;
                }
                ended = Some(Ended::Idle);
                let why = format!("idle for {} ms (server.websocket_idle_timeout_ms)", idle.as_millis());
                client.send(close(CloseCode::Normal, &why), CLOSE_WAIT).await;
                provider.send(close(CloseCode::Normal, &why), CLOSE_WAIT).await;
            }
        }
    }
    let _ = tokio::time::timeout(CLOSE_WAIT, client.sink.close()).await;
    let _ = tokio::time::timeout(CLOSE_WAIT, provider.sink.close()).await;
    (ended.unwrap_or(Ended::Client), tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_read_from_response_done_only() {
        let done = r#"{"type":"response.done","response":{"usage":{"total_tokens":30,"input_tokens":20,"output_tokens":10,"input_token_details":{"cached_tokens":4,"text_tokens":20,"audio_tokens":0},"output_token_details":{"text_tokens":10,"audio_tokens":0}}}}"#;
        let u = message_usage(done.as_bytes()).unwrap();
        assert_eq!(
            (u.tokens_in, u.tokens_out, u.tokens_cached, u.tokens_audio),
            (Some(20), Some(10), Some(4), Some(0))
        );
        assert!(message_usage(br#"{"type":"response.created","note":"response.done"}"#).is_none());
        assert!(message_usage(br#"{"type":"response.output_text.delta","delta":"hi"}"#).is_none());
        let mut total = Usage::default();
        add_usage(&mut total, &u);
        add_usage(&mut total, &u);
        assert_eq!((total.tokens_in, total.tokens_out), (Some(40), Some(20)));
        assert_eq!(total.tokens_reasoning, None);
    }

    #[test]
    fn gemini_live_usage_and_model_are_read() {
        let turn = br#"{"serverContent":{"turnComplete":true},"usageMetadata":{"promptTokenCount":12,"responseTokenCount":5,"thoughtsTokenCount":2,"totalTokenCount":19,"promptTokensDetails":[{"modality":"TEXT","tokenCount":12}],"responseTokensDetails":[{"modality":"TEXT","tokenCount":5}]}}"#;
        let u = message_usage(turn).unwrap();
        assert_eq!(
            (
                u.tokens_in,
                u.tokens_out,
                u.tokens_reasoning,
                u.tokens_audio
            ),
            (Some(12), Some(7), Some(2), None)
        );
        let spoken = br#"{"usageMetadata":{"promptTokenCount":30,"responseTokenCount":40,"responseTokensDetails":[{"modality":"AUDIO","tokenCount":40}]}}"#;
        assert_eq!(message_usage(spoken).unwrap().tokens_audio, Some(40));
        assert!(
            message_usage(
                br#"{"serverContent":{"modelTurn":{"parts":[{"text":"usageMetadata"}]}}}"#
            )
            .is_none()
        );
        assert_eq!(
            setup_model(br#"{"setup":{"generationConfig":{"model":1},"model":"models/gemini-live-2.5-flash"}}"#),
            Ok("gemini-live-2.5-flash".into())
        );
        assert_eq!(
            setup_model(br#"{"setup":{"model":"projects/p/locations/l/publishers/google/models/gemini-2.0-flash"}}"#),
            Ok("gemini-2.0-flash".into())
        );
        for bad in [
            &br#"{"clientContent":{}}"#[..],
            br#"{"setup":{}}"#,
            br#"{"setup":{"model":"models/"}}"#,
            br#"not json"#,
            br#"{"setup":{"model":"models/a","model":"models/b"}}"#,
            br#"{"setup":{"model":"models/a"},"setup":{"model":"models/b"}}"#,
        ] {
            assert!(
                setup_model(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(
            setup_model(br#"{"setup":{"model":"a","model":"b"}}"#)
                .unwrap_err()
                .contains("more than once")
        );
    }
}
