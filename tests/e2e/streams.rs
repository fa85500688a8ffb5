//! How a stream ends: a client that hangs up right after the terminal event (as the sync
//! OpenAI SDK does) had the whole answer, and a provider that stalls after it does not undo it.

use crate::harness::*;
use hyper::StatusCode;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Streams `body` over a raw connection and hangs up as soon as `marker` has arrived, as the
/// sync OpenAI Python SDK does after `data: [DONE]`; returns what was read.
async fn stream_and_hang_up(
    addr: SocketAddr,
    path: &str,
    headers: &str,
    body: &str,
    marker: &str,
) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n{headers}content-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if String::from_utf8_lossy(&got).contains(marker) {
            break;
        }
    }
    drop(s);
    String::from_utf8_lossy(&got).to_string()
}

/// A client that leaves right after the terminal event, before the provider's end of body
/// (which real servers send a few milliseconds later), got the whole answer: the request is
/// logged completed and successful, with its tokens, and the answer is cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_the_client_leaves_after_its_terminal_event_is_complete_and_cached() {
    let mock = Mock::start().await;
    let cfg = format!(
        "{}[gateways.gw]\npipeline = [\"logging\", \"cache\"]\n",
        mock.providers_toml()
    );
    let mut gw = Gateway::start(&cfg, &[]);
    let body = chat("stream then hang up", true);
    let got = stream_and_hang_up(
        gw.addr,
        "/v1/a/gw/openai/chat/completions",
        "x-mock-end-delay-ms: 300\r\n",
        &body,
        "data: [DONE]",
    )
    .await;
    assert!(got.contains("data: [DONE]"), "{got}");
    // Anthropic's terminal event, the same way.
    let messages = serde_json::json!({
        "model": "claude-3-5-haiku", "max_tokens": 50, "stream": true,
        "messages": [{"role": "user", "content": "anthropic then hang up"}]
    })
    .to_string();
    let got = stream_and_hang_up(
        gw.addr,
        "/v1/a/gw/anthropic/messages",
        "x-mock-end-delay-ms: 300\r\n",
        &messages,
        "event: message_stop",
    )
    .await;
    assert!(got.contains("message_stop"), "{got}");
    // Leaving before the terminal event is still an abort.
    let got = stream_and_hang_up(
        gw.addr,
        "/v1/a/gw/openai/chat/completions",
        "x-mock-chunks: 20\r\nx-mock-chunk-delay-ms: 50\r\n",
        &chat("leave early", true),
        "data: {",
    )
    .await;
    assert!(!got.contains("[DONE]"));
    // The first stream's answer is stored once the provider's body ends (300 ms after its
    // last event): then the same request is a hit.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let again = stream(&gw.url("/v1/a/gw/openai/chat/completions"), &[], &body).await;
    let hit = again
        .headers
        .get("cf-aig-cache-status")
        .is_some_and(|v| v == "HIT");
    assert!(hit, "the complete stream was not cached");
    assert!(gw.stop());
    let entries = log_entries(&gw.data_dir());
    let by_path = |needle: &str, outcome: &str| {
        entries
            .iter()
            .filter(|e| {
                e["path"].as_str().unwrap_or("").contains(needle) && e["outcome"] == outcome
            })
            .count()
    };
    let completed: Vec<_> = entries
        .iter()
        .filter(|e| e["outcome"] == "Completed" && e["cached"] != true)
        .collect();
    assert_eq!(completed.len(), 2, "{entries:#?}");
    for e in &completed {
        assert_eq!(e["success"], true, "{e}");
        assert!(e["tokens_out"].as_u64().unwrap_or(0) > 0, "{e}");
    }
    assert_eq!(by_path("messages", "Completed"), 1, "{entries:#?}");
    assert_eq!(
        by_path("chat/completions", "ClientAborted"),
        1,
        "{entries:#?}"
    );
}

/// A provider that stalls after its terminal event (its end of body later than
/// `stream_idle_timeout_ms`) does not undo a complete answer: the client gets a clean end, no
/// error event, and the request is logged completed and cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_after_the_terminal_event_does_not_fail_a_complete_stream() {
    let mock = Mock::start().await;
    let dir = prepare_with_server(
        "stream_idle_timeout_ms = 400\n",
        &format!(
            "{}[gateways.gw]\npipeline = [\"logging\", \"cache\"]\n",
            mock.providers_toml()
        ),
        &[],
    );
    let mut gw = Gateway::start_in(dir);
    let url = gw.url("/v1/a/gw/openai/chat/completions");
    let body = chat("stall after done", true);
    let s = stream(&url, &[("x-mock-end-delay-ms", "1500")], &body).await;
    assert_eq!(s.status, StatusCode::OK);
    assert!(s.error.is_none(), "{:?}", s.error);
    let text = s.text();
    assert!(text.contains("[DONE]"), "{text}");
    assert!(!text.contains("event: error"), "{text}");
    let again = stream(&url, &[("x-mock-end-delay-ms", "1500")], &body).await;
    assert_eq!(
        again
            .headers
            .get("cf-aig-cache-status")
            .and_then(|v| v.to_str().ok()),
        Some("HIT")
    );
    assert!(gw.stop());
    let entries = log_entries(&gw.data_dir());
    assert_eq!(entries[0]["outcome"], "Completed", "{}", entries[0]);
    assert_eq!(entries[0]["success"], true, "{}", entries[0]);
}
