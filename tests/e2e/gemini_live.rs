//! Gemini Live sessions through the `google-ai-studio` route, against the mock's Live endpoint
//! (JSON in binary frames, as Google sends it): the setup and turns pass both ways, the session's
//! log entry names the model its setup message chose and carries the usage summed from each
//! turn's `usageMetadata`, priced at that model's rates; a handshake without a key gets the
//! provider's 401.

use crate::harness::*;
use crate::realtime::{Ws, connect, entries};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const LIVE: &str = "/v1/acct/live/google-ai-studio/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";

/// The next server message (JSON in a binary or text frame), within five seconds.
async fn next_message(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a message within 5 s")
            .expect("the session is open")
            .expect("a message");
        match msg {
            Message::Binary(b) => return serde_json::from_slice(&b).unwrap(),
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            _ => {}
        }
    }
}

/// One turn: the streamed text and the turn's `usageMetadata`.
async fn turn(ws: &mut Ws, text: &str) -> (String, Value) {
    let content = json!({"clientContent": {"turns": [{"role": "user", "parts": [{"text": text}]}],
                                           "turnComplete": true}});
    ws.send(Message::text(content.to_string())).await.unwrap();
    let mut said = String::new();
    loop {
        let m = next_message(ws).await;
        if let Some(parts) = m.pointer("/serverContent/modelTurn/parts") {
            said.push_str(parts[0]["text"].as_str().unwrap());
        }
        if m.pointer("/serverContent/turnComplete") == Some(&json!(true)) {
            return (said, m["usageMetadata"].clone());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gemini_live_session_is_logged_with_its_model_and_summed_usage() {
    let mock = Mock::start().await;
    let config = format!(
        "[providers.google-ai-studio]\nbase_url = \"http://{}\"\n[gateways.live]\npipeline = [\"logging\"]\n",
        mock.addr
    );
    let gw = Gateway::start_in(prepare(&config, &[]));
    // The provider's refusal comes back as it was sent.
    let (status, body) = connect(&gw, LIVE, &[]).await.err().unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("UNAUTHENTICATED"), "{body}");

    let (mut ws, _) = connect(&gw, LIVE, &[("x-goog-api-key", "goog-client")])
        .await
        .unwrap();
    let setup = json!({"setup": {"model": "models/gemini-2.0-flash",
                                 "generationConfig": {"responseModalities": ["TEXT"]}}});
    ws.send(Message::text(setup.to_string())).await.unwrap();
    assert_eq!(next_message(&mut ws).await, json!({"setupComplete": {}}));
    let (first, u1) = turn(&mut ws, "hello live gateway").await;
    assert_eq!(first, "Live mock reply to: hello live gateway");
    let (second, u2) = turn(&mut ws, "once more").await;
    assert_eq!(second, "Live mock reply to: once more");
    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {}

    let log = entries(&gw, 2).await;
    let e = log.iter().find(|e| e["status"] == 101).unwrap();
    let sum = |k: &str| u1[k].as_u64().unwrap() + u2[k].as_u64().unwrap();
    assert_eq!(e["provider"], "google-ai-studio", "{e}");
    assert_eq!(e["model"], "gemini-2.0-flash", "{e}");
    assert_eq!(e["tokens_in"], sum("promptTokenCount"), "{e}");
    assert_eq!(e["tokens_out"], sum("responseTokenCount"), "{e}");
    // gemini-2.0-flash: $0.10 in, $0.40 out per million.
    let want =
        (sum("promptTokenCount") as f64 * 0.1 + sum("responseTokenCount") as f64 * 0.4) / 1e6;
    let cost = e["cost"].as_f64().unwrap();
    assert!((cost - want).abs() < 1e-12, "cost {cost}, expected {want}");
    assert_eq!(e["metadata"]["websocket_closed_by"], "client", "{e}");
    let handshake = mock
        .requests()
        .into_iter()
        .rfind(|r| r["path"].as_str().unwrap().ends_with("BidiGenerateContent"))
        .unwrap();
    assert_eq!(handshake["headers"]["x-goog-api-key"], "goog-client");
}
