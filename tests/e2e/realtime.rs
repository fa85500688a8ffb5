//! WebSocket sessions through a provider route, against the mock's OpenAI Realtime endpoint:
//! events pass both ways, the handshake runs the request hooks (limits, refusals), one log entry
//! per session carries the usage summed from the provider's `response.done` events, and idle
//! sessions and a shutting-down gateway close sessions with a close frame.

use crate::harness::*;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

pub(crate) type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a session; `Err(status, body)` when the handshake is refused.
pub(crate) async fn connect(
    gw: &Gateway,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(Ws, hyper::HeaderMap), (u16, String)> {
    let url = gw.url(path).replacen("http://", "ws://", 1);
    let mut req = url.into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            hyper::header::HeaderValue::from_str(v).unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, resp)) => Ok((ws, resp.headers().clone())),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err((
            resp.status().as_u16(),
            String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).to_string(),
        )),
        Err(e) => panic!("handshake failed: {e}"),
    }
}

/// The next event (a JSON text message), within five seconds.
async fn next_event(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("an event within 5 s")
            .expect("the session is open")
            .expect("a message");
        if let Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

async fn send(ws: &mut Ws, event: Value) {
    ws.send(Message::text(event.to_string())).await.unwrap();
}

/// Asks for one answer to `text`; returns the streamed text and the `response.done` usage.
async fn turn(ws: &mut Ws, text: &str) -> (String, Value) {
    send(
        ws,
        json!({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
            "content": [{"type": "input_text", "text": text}]}}),
    )
    .await;
    assert_eq!(next_event(ws).await["type"], "conversation.item.added");
    assert_eq!(next_event(ws).await["type"], "conversation.item.done");
    send(ws, json!({"type": "response.create"})).await;
    let mut deltas = String::new();
    loop {
        let e = next_event(ws).await;
        match e["type"].as_str().unwrap() {
            "response.output_text.delta" => deltas.push_str(e["delta"].as_str().unwrap()),
            "response.done" => return (deltas, e["response"]["usage"].clone()),
            _ => {}
        }
    }
}

/// Waits for the session's close frame (the code and reason), within `within`.
pub(crate) async fn closed(ws: &mut Ws, within: Duration) -> Option<(CloseCode, String)> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => {
                return frame.map(|f| (f.code, f.reason.to_string()));
            }
            Ok(Some(Ok(_))) => continue,
            Ok(_) | Err(_) => return None,
        }
    }
}

fn gateway(mock: &Mock, server: &str, extra: &str) -> Gateway {
    let config = format!(
        "{}[gateways.rt]\npipeline = [\"logging\", \"rate-limit\", \"cache\", \"retry\"]\n\
         [gateways.rt.filters.rate-limit]\nlimit = 2\nperiod_s = 60\nkey = \"ip\"\n{extra}",
        mock.providers_toml()
    );
    Gateway::start_in(prepare_with_server(server, &config, &[]))
}

/// The log entries once `n` are written (the gateway has stopped or will within the wait).
pub(crate) async fn entries(gw: &Gateway, n: usize) -> Vec<Value> {
    let found = eventually(Duration::from_secs(5), || async {
        log_entries(&gw.data_dir()).len() >= n
    })
    .await;
    assert!(found.is_some(), "{n} log entries expected");
    log_entries(&gw.data_dir())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_realtime_session_relays_events_both_ways_and_logs_its_summed_usage() {
    let mock = Mock::start().await;
    let gw = gateway(&mock, "", "");
    let path = "/v1/acct/rt/openai/realtime?model=gpt-realtime";
    let (mut ws, head) = connect(&gw, path, &[("authorization", "Bearer sk-client")])
        .await
        .unwrap();
    let log_id = head["cf-aig-log-id"].to_str().unwrap().to_string();
    let created = next_event(&mut ws).await;
    assert_eq!(created["type"], "session.created");
    assert_eq!(created["session"]["model"], "gpt-realtime");
    send(
        &mut ws,
        json!({"type": "session.update", "session": {"instructions": "be brief"}}),
    )
    .await;
    let updated = next_event(&mut ws).await;
    assert_eq!(updated["session"]["instructions"], "be brief", "{updated}");
    let (first, u1) = turn(&mut ws, "hello there gateway").await;
    assert_eq!(first, "Realtime mock reply to: hello there gateway");
    let (second, u2) = turn(&mut ws, "and again").await;
    assert_eq!(second, "Realtime mock reply to: and again");
    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {}

    // The provider saw the client's key and the model, and no compression offer.
    let handshake = mock
        .requests()
        .into_iter()
        .find(|r| r["path"] == "/v1/realtime")
        .unwrap();
    assert_eq!(handshake["headers"]["authorization"], "Bearer sk-client");
    assert_eq!(handshake["query"], "model=gpt-realtime");
    assert!(handshake["headers"]["sec-websocket-extensions"].is_null());
    assert!(
        eventually(Duration::from_secs(3), || async {
            mock.state.open_sockets() == 0
        })
        .await
        .is_some(),
        "the provider's side was closed"
    );

    let log = entries(&gw, 1).await;
    assert_eq!(log.len(), 1, "one entry per session: {log:?}");
    let e = &log[0];
    let sum = |k: &str| u1[k].as_u64().unwrap() + u2[k].as_u64().unwrap();
    assert_eq!(e["id"], log_id.as_str());
    assert_eq!(e["status"], 101, "{e}");
    assert_eq!(e["success"], true, "{e}");
    assert_eq!(e["path"], "/realtime");
    assert_eq!(e["model"], "gpt-realtime");
    assert_eq!(e["streamed"], true);
    assert_eq!(e["tokens_in"], sum("input_tokens"), "{e}");
    assert_eq!(e["tokens_out"], sum("output_tokens"), "{e}");
    let want = (sum("input_tokens") as f64 * 4.0 + sum("output_tokens") as f64 * 16.0) / 1e6;
    let cost = e["cost"].as_f64().unwrap();
    assert!((cost - want).abs() < 1e-12, "cost {cost}, expected {want}");
    assert_eq!(e["metadata"]["websocket_closed_by"], "client", "{e}");
    assert_eq!(
        e["metadata"]["websocket_messages"], "5 to provider, 33 to client",
        "{e}"
    );
    assert!(e["response_size"].as_u64().unwrap() > 1000, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_run_the_request_hooks_and_pass_provider_refusals_through() {
    let mock = Mock::start().await;
    let gw = gateway(
        &mock,
        "",
        "[gateways.guarded]\npipeline = [\"logging\", \"guardrails\"]\n\
         [gateways.guarded.filters.guardrails]\nclassifier = \"local\"\n\
         [gateways.lenient]\npipeline = [\"logging\", \"guardrails\"]\n\
         [gateways.lenient.filters.guardrails]\nclassifier = \"local\"\nwebsocket = \"pass\"\n",
    );
    let path = "/v1/acct/rt/openai/realtime?model=gpt-realtime";
    // No key from the client and none stored: the provider's 401 comes back as it was sent.
    let (status, body) = connect(&gw, path, &[]).await.unwrap_err();
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("missing_api_key"), "{body}");
    // The rate limit (2 per minute by IP) counts handshakes: the third is refused.
    let key = [("authorization", "Bearer sk-client")];
    let (mut ws, _) = connect(&gw, path, &key).await.unwrap();
    assert_eq!(next_event(&mut ws).await["type"], "session.created");
    let (status, body) = connect(&gw, path, &key).await.unwrap_err();
    assert_eq!(status, 429, "{body}");
    ws.close(None).await.unwrap();
    // A filter that reads answers, closed, cannot read a session: refused, naming it.
    let guarded = "/v1/acct/guarded/openai/realtime?model=gpt-realtime";
    let (status, body) = connect(&gw, guarded, &key).await.unwrap_err();
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("'guardrails'") && body.contains("set websocket = "),
        "{body}"
    );
    // Let through explicitly (`websocket = "pass"`): the session passes it unread.
    let lenient = "/v1/acct/lenient/openai/realtime?model=gpt-realtime";
    let (mut ws, _) = connect(&gw, lenient, &key).await.unwrap();
    assert_eq!(next_event(&mut ws).await["type"], "session.created");
    ws.close(None).await.unwrap();
    let realtime_handshakes = mock
        .requests()
        .iter()
        .filter(|r| r["path"] == "/v1/realtime")
        .count();
    assert_eq!(
        realtime_handshakes, 3,
        "refused handshakes never reach the provider"
    );
    // The model judged is the model sent: a second `model` in the query is refused.
    let twice = "/v1/acct/lenient/openai/realtime?model=gpt-realtime&model=gpt-4o-realtime-preview";
    let (status, body) = connect(&gw, twice, &key).await.unwrap_err();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("more than once"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_beyond_the_limit_are_refused_until_one_ends() {
    let mock = Mock::start().await;
    let gw = gateway(&mock, "max_websocket_sessions = 1\n", "");
    let path = "/v1/acct/rt/openai/realtime?model=gpt-realtime";
    let key = [("authorization", "Bearer sk-client")];
    let (mut first, _) = connect(&gw, path, &key).await.unwrap();
    next_event(&mut first).await;
    let (status, body) = connect(&gw, path, &key).await.unwrap_err();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("max_websocket_sessions"), "{body}");
    first.close(None).await.unwrap();
    while let Some(Ok(_)) = first.next().await {}
    let mut again = None;
    for _ in 0..40 {
        if let Ok((ws, _)) = connect(&gw, path, &key).await {
            again = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut again = again.expect("a place frees when the first session ends");
    assert_eq!(next_event(&mut again).await["type"], "session.created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_tokens_leave_a_session_unpriced_rather_than_billed_at_text_rates() {
    let mock = Mock::start().await;
    let gw = gateway(&mock, "", "");
    let path = "/v1/acct/rt/openai/realtime?model=gpt-realtime";
    let (mut ws, _) = connect(
        &gw,
        path,
        &[
            ("authorization", "Bearer sk-client"),
            ("x-mock-audio-tokens", "40"),
        ],
    )
    .await
    .unwrap();
    next_event(&mut ws).await;
    let (_, usage) = turn(&mut ws, "speak to me").await;
    assert_eq!(usage["output_token_details"]["audio_tokens"], 40);
    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {}
    let e = &entries(&gw, 1).await[0];
    assert_eq!(e["tokens_out"], usage["output_tokens"], "{e}");
    assert_eq!(e["usage"]["audio"], 40, "{e}");
    assert!(
        e["cost"].is_null(),
        "audio is not priced at text rates: {e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_close_and_a_shutdown_closes_open_ones() {
    let mock = Mock::start().await;
    let gw = gateway(&mock, "websocket_idle_timeout_ms = 400\n", "");
    let path = "/v1/acct/rt/openai/realtime?model=gpt-realtime";
    let key = [("authorization", "Bearer sk-client")];
    let (mut ws, _) = connect(&gw, path, &key).await.unwrap();
    next_event(&mut ws).await;
    let (code, reason) = closed(&mut ws, Duration::from_secs(5))
        .await
        .expect("a close frame after the idle timeout");
    assert_eq!(code, CloseCode::Normal);
    assert!(reason.contains("websocket_idle_timeout_ms"), "{reason}");
    while let Some(Ok(_)) = ws.next().await {}
    assert!(
        eventually(Duration::from_secs(3), || async {
            mock.state.open_sockets() == 0
        })
        .await
        .is_some()
    );
    let e = &entries(&gw, 1).await[0];
    assert_eq!(e["metadata"]["websocket_closed_by"], "idle_timeout", "{e}");

    let mut gw = gateway(&mock, "", "");
    let (mut ws, _) = connect(&gw, path, &key).await.unwrap();
    next_event(&mut ws).await;
    let data_dir = gw.data_dir();
    let stopping = std::thread::spawn(move || {
        let ok = gw.stop();
        (ok, gw)
    });
    let (code, reason) = closed(&mut ws, Duration::from_secs(10))
        .await
        .expect("a close frame when the gateway shuts down");
    assert_eq!(code, CloseCode::Away);
    assert!(reason.contains("shutting down"), "{reason}");
    while let Some(Ok(_)) = ws.next().await {}
    let (stopped, _gw) = stopping.join().unwrap();
    assert!(stopped, "the gateway exits cleanly with a session open");
    let log = log_entries(&data_dir);
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["metadata"]["websocket_closed_by"], "shutdown");
    assert_eq!(mock.state.open_sockets(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_keys_apply_at_the_handshake_and_a_budget_refuses_an_unbounded_session() {
    use crate::analytics::admin;
    use hyper::{Method, StatusCode};
    let mock = Mock::start().await;
    let dir = prepare_with_server(
        "admin_listen = \"127.0.0.1:0\"\nadmin_token = \"adm1n\"\n",
        &format!(
            "{}[gateways.gw]\nkeys = \"required\"\npipeline = [\"key-policy\", \"logging\"]\n",
            mock.providers_toml_with_keys()
        ),
        &[],
    );
    let gw = Gateway::start_in(dir);
    let key = |body: Value| {
        let gw = &gw;
        async move {
            let r = admin(gw, Method::POST, "/api/keys", &body.to_string()).await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
            format!("Bearer {}", r.json()["key"].as_str().unwrap())
        }
    };
    let realtime = key(json!({"name": "rt", "gateways": "*", "models": ["gpt-realtime*"]})).await;
    let mini = key(json!({"name": "mini", "gateways": "*", "models": ["gpt-4o-mini*"]})).await;
    let budgeted = key(json!({"name": "b", "gateways": "*",
        "budget_usd": {"amount": 5, "period": "day"}}))
    .await;
    let path = "/v1/acct/gw/openai/realtime?model=gpt-realtime";
    let (status, body) = connect(&gw, path, &[]).await.unwrap_err();
    assert_eq!(status, 401, "no key: {body}");
    let (status, body) = connect(&gw, path, &[("authorization", &mini)])
        .await
        .unwrap_err();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("model_not_allowed"), "{body}");
    let (status, body) = connect(&gw, path, &[("authorization", &budgeted)])
        .await
        .unwrap_err();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("budget_unbounded"), "{body}");
    let (mut ws, _) = connect(&gw, path, &[("authorization", &realtime)])
        .await
        .unwrap();
    next_event(&mut ws).await;
    let (_, usage) = turn(&mut ws, "keyed session").await;
    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {}
    let handshakes: Vec<Value> = mock
        .requests()
        .into_iter()
        .filter(|r| r["path"] == "/v1/realtime")
        .collect();
    assert_eq!(
        handshakes.len(),
        1,
        "refused sessions never reach the provider"
    );
    assert_eq!(
        handshakes[0]["headers"]["authorization"], "Bearer sk-stored-openai",
        "the provider gets the stored key, never the virtual one"
    );
    let log = entries(&gw, 3).await;
    let session = log.iter().find(|e| e["status"] == 101).unwrap();
    assert!(session["key_id"].is_string(), "{session}");
    assert_eq!(session["tokens_out"], usage["output_tokens"]);
}

/// A client that stops reading while the provider keeps sending: the gateway's send to it
/// stalls, and after SEND_WAIT (10 s) the session ends as the client's, the provider's side is
/// closed and the session is logged, rather than held open forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_ends_its_session() {
    let mock = Mock::start().await;
    let gw = gateway(&mock, "", "");
    let path = "/v1/acct/rt/openai/realtime?model=gpt-realtime";
    // A long reply: each response.create brings thousands of delta events.
    let reply = "word ".repeat(4000);
    let (mut ws, _) = connect(
        &gw,
        path,
        &[
            ("authorization", "Bearer sk-client"),
            ("x-mock-reply", reply.trim()),
        ],
    )
    .await
    .unwrap();
    next_event(&mut ws).await;
    for _ in 0..20 {
        send(&mut ws, json!({"type": "response.create"})).await;
    }
    // Never read again. The session ends within SEND_WAIT plus the closing handshake.
    let logged = eventually(Duration::from_secs(30), || async {
        !log_entries(&gw.data_dir()).is_empty()
    })
    .await;
    assert!(logged.is_some(), "the stalled session was ended and logged");
    let e = &log_entries(&gw.data_dir())[0];
    assert_eq!(e["metadata"]["websocket_closed_by"], "client", "{e}");
    assert!(
        eventually(Duration::from_secs(5), || async {
            mock.state.open_sockets() == 0
        })
        .await
        .is_some(),
        "the provider's side was closed"
    );
    drop(ws);
}
