//! Gemini Live sessions through the `google-ai-studio` route, against the mock's Live endpoint
//! (JSON in binary frames, as Google sends it). Live names its model in the session's first
//! message, so the client's side opens first: the filters judge the model the setup names
//! before the provider is called, and a refusal (the gateway's or the provider's) closes the
//! session with its status and message. The session's log entry names the model and carries
//! the usage summed from each turn's `usageMetadata`, priced at that model's rates.

use crate::analytics::admin;
use crate::harness::*;
use crate::realtime::{Ws, closed, connect, entries};
use futures_util::{SinkExt as _, StreamExt as _};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const LIVE: &str = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";

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

async fn setup(ws: &mut Ws, model: &str) {
    let setup = json!({"setup": {"model": format!("models/{model}"),
                                 "generationConfig": {"responseModalities": ["TEXT"]}}});
    ws.send(Message::text(setup.to_string())).await.unwrap();
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

fn live_calls(mock: &Mock) -> Vec<Value> {
    mock.requests()
        .into_iter()
        .filter(|r| r["path"].as_str().unwrap().ends_with("BidiGenerateContent"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gemini_live_session_is_logged_with_its_model_and_summed_usage() {
    let mock = Mock::start().await;
    let config = format!(
        "[providers.google-ai-studio]\nbase_url = \"http://{}\"\n[gateways.live]\npipeline = [\"logging\"]\n",
        mock.addr
    );
    let gw = Gateway::start_in(prepare(&config, &[]));
    let path = format!("/v1/acct/live/google-ai-studio{LIVE}");
    // The provider's refusal (no key) closes the session with its status and message.
    let (mut ws, _) = connect(&gw, &path, &[]).await.unwrap();
    setup(&mut ws, "gemini-2.0-flash").await;
    let (code, why) = closed(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(code, CloseCode::Policy);
    assert!(why.starts_with("401 UNAUTHENTICATED"), "{why}");

    let (mut ws, _) = connect(&gw, &path, &[("x-goog-api-key", "goog-client")])
        .await
        .unwrap();
    setup(&mut ws, "gemini-2.0-flash").await;
    assert_eq!(next_message(&mut ws).await, json!({"setupComplete": {}}));
    let (first, u1) = turn(&mut ws, "hello live gateway").await;
    assert_eq!(first, "Live mock reply to: hello live gateway");
    let (second, u2) = turn(&mut ws, "once more").await;
    assert_eq!(second, "Live mock reply to: once more");
    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {}

    let log = entries(&gw, 2).await;
    assert!(log.iter().any(|e| e["status"] == 401), "{log:#?}");
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
    // The setup, counted among the messages to the provider.
    assert!(
        e["metadata"]["websocket_messages"]
            .as_str()
            .unwrap()
            .starts_with("3 to provider"),
        "{e}"
    );
    let handshake = live_calls(&mock).pop().unwrap();
    assert_eq!(handshake["headers"]["x-goog-api-key"], "goog-client");
}

/// A virtual key's model list judges the model a Live session's setup names, before the
/// provider is called; a first message that is not a setup is refused without calling it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keys_model_list_judges_the_model_a_live_setup_names() {
    let mock = Mock::start().await;
    let dir = prepare_with_server(
        "admin_listen = \"127.0.0.1:0\"\nadmin_token = \"adm1n\"\n",
        &format!(
            "[providers.google-ai-studio]\nbase_url = \"http://{}\"\napi_key = \"goog-stored\"\n\
             [gateways.gw]\nkeys = \"required\"\npipeline = [\"key-policy\", \"logging\"]\n",
            mock.addr
        ),
        &[],
    );
    let gw = Gateway::start_in(dir);
    let r = admin(
        &gw,
        Method::POST,
        "/api/keys",
        &json!({"name": "flash", "gateways": "*", "models": ["gemini-2.0-flash*"]}).to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let key = r.json()["key"].as_str().unwrap().to_string();
    let path = format!("/v1/acct/gw/google-ai-studio{LIVE}");
    let auth = [("x-goog-api-key", key.as_str())];

    // No key at all: refused at the handshake, before any message.
    let (status, body) = connect(&gw, &path, &[]).await.unwrap_err();
    assert_eq!(status, 401, "{body}");
    // A model outside the key's list.
    let (mut ws, _) = connect(&gw, &path, &auth).await.unwrap();
    setup(&mut ws, "gemini-2.5-pro").await;
    let (code, why) = closed(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(code, CloseCode::Policy);
    assert!(why.starts_with("403 model_not_allowed"), "{why}");
    // A first message that is not a setup.
    let (mut ws, _) = connect(&gw, &path, &auth).await.unwrap();
    ws.send(Message::text(r#"{"clientContent": {}}"#))
        .await
        .unwrap();
    let (code, why) = closed(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(code, CloseCode::Policy);
    assert!(why.contains("setup"), "{why}");
    // A model in the query other than the setup's (filters would judge the one, the provider
    // use the other).
    let (mut ws, _) = connect(&gw, &format!("{path}?model=gemini-2.0-flash"), &auth)
        .await
        .unwrap();
    setup(&mut ws, "gemini-2.5-pro").await;
    let (code, why) = closed(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(code, CloseCode::Policy);
    assert!(why.starts_with("model:"), "{why}");
    assert!(
        live_calls(&mock).is_empty(),
        "the provider was never called"
    );

    // A model in the list: the session opens with the stored key, the setup goes first.
    let (mut ws, _) = connect(&gw, &path, &auth).await.unwrap();
    setup(&mut ws, "gemini-2.0-flash").await;
    assert_eq!(next_message(&mut ws).await, json!({"setupComplete": {}}));
    let (said, _) = turn(&mut ws, "keyed live").await;
    assert_eq!(said, "Live mock reply to: keyed live");
    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {}
    let calls = live_calls(&mock);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["headers"]["x-goog-api-key"], "goog-stored");
    // Each opened session is logged, refused or not (the keyless handshake never got past
    // admission, as any request without a required key).
    let log = entries(&gw, 4).await;
    let mut statuses: Vec<u64> = log.iter().map(|e| e["status"].as_u64().unwrap()).collect();
    statuses.sort();
    assert_eq!(statuses, [101, 400, 400, 403], "{log:#?}");
}
