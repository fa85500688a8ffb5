//! The prompt-redaction filter end to end: masking before the provider and
//! the log store, restoring in JSON and split SSE answers, blocking.

use crate::harness::*;
use hyper::StatusCode;

/// An OpenAI-style SSE upstream that answers with the placeholder `[EMAIL_1]`
/// split across three events (`[EM`, `AIL_`, `1]`), each in its own TCP write.
async fn split_placeholder_upstream() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n")
                    .await;
                let pieces = ["Write to ", "[EM", "AIL_", "1] today", "."];
                for p in pieces {
                    let event = format!(
                        "data: {}\n\n",
                        serde_json::json!({"id": "c1", "object": "chat.completion.chunk",
                            "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": null}]})
                    );
                    // Split each event's bytes in two writes as well.
                    let (a, b) = event.split_at(event.len() / 2);
                    for part in [a, b] {
                        let _ = s
                            .write_all(format!("{:x}\r\n{part}\r\n", part.len()).as_bytes())
                            .await;
                        let _ = s.flush().await;
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    }
                }
                let done = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
                let _ = s
                    .write_all(format!("{:x}\r\n{done}\r\n0\r\n\r\n", done.len()).as_bytes())
                    .await;
            });
        }
    });
    (addr, task)
}

fn redaction_gateway(mock: &Mock, extra: &str, mode: &str) -> Gateway {
    let cfg = format!(
        "{}{extra}[gateways.gw]\npipeline = [\"prompt-redaction\", \"logging\"]\n\
         [gateways.gw.filters.prompt-redaction]\nmode = \"{mode}\"\non_error = \"closed\"\n\
         custom = [{{ name = \"employee_id\", pattern = \"EMP-[0-9]{{6}}\" }}]\n",
        mock.providers_toml()
    );
    Gateway::start(&cfg, &[])
}

const PII_PROMPT: &str = "Mail jane.doe@example.com, call +44 20 7946 0958, card 4111 1111 1111 1111, \
    IBAN GB82WEST12345698765432, server 10.1.2.3, key sk-proj-Abc123Def456Ghi789Jkl012Mno345, id EMP-123456";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redaction_masks_prompts_before_the_provider_and_the_log_store() {
    let mock = Mock::start().await;
    let mut gw = redaction_gateway(&mock, "", "mask");
    let url = gw.url("/v1/acct/gw/openai/chat/completions");
    let r = send(&url, &[], &chat(PII_PROMPT, false)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let seen = mock.requests();
    let upstream = body_of(&seen[0]);
    let sent = upstream["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    for placeholder in [
        "[EMAIL_1]",
        "[PHONE_1]",
        "[CREDIT_CARD_1]",
        "[IBAN_1]",
        "[IP_ADDRESS_1]",
        "[SECRET_1]",
        "[CUSTOM_EMPLOYEE_ID_1]",
    ] {
        assert!(
            sent.contains(placeholder),
            "{placeholder} missing in {sent}"
        );
    }
    for original in [
        "jane.doe",
        "7946",
        "4111",
        "GB82",
        "10.1.2.3",
        "sk-proj",
        "EMP-123456",
    ] {
        assert!(
            !sent.contains(original),
            "{original} reached the provider: {sent}"
        );
    }
    // Mask is one-way: the client sees the placeholders the model saw.
    assert!(r.text().contains("[EMAIL_1]"), "{}", r.text());
    // Anthropic-shaped bodies too (system string and content blocks).
    let anthropic = serde_json::json!({
        "model": "claude", "max_tokens": 50, "system": "Owner: ops@example.org",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "card 5555 5555 5555 4444"}]}]
    });
    let r = send(
        &gw.url("/v1/acct/gw/anthropic/v1/messages"),
        &[],
        &anthropic.to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let sent = mock.requests()[1]["body"].as_str().unwrap().to_string();
    assert!(
        !sent.contains("ops@example.org") && !sent.contains("5555"),
        "{sent}"
    );

    assert!(gw.stop());
    let entries = log_entries(&gw.data_dir());
    assert_eq!(entries.len(), 2);
    let meta = &entries[0]["metadata"];
    assert_eq!(meta["redacted_email"], "1", "{meta}");
    assert_eq!(meta["redacted_credit_card"], "1", "{meta}");
    let stored = std::fs::read(gw.data_dir().join("logs.sqlite")).unwrap();
    let stored = String::from_utf8_lossy(&stored);
    for original in [
        "jane.doe@example.com",
        "4111 1111 1111 1111",
        "ops@example.org",
    ] {
        assert!(
            !stored.contains(original),
            "{original} reached the log store"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redaction_restores_originals_in_json_and_in_split_sse_streams() {
    let mock = Mock::start().await;
    let (split, _task) = split_placeholder_upstream().await;
    let gw = redaction_gateway(
        &mock,
        &format!("[providers.splitter]\nbase_url = \"http://{split}/v1\"\n"),
        "restore",
    );
    // JSON: the mock echoes the (masked) prompt; the client gets the originals back.
    let url = gw.url("/v1/acct/gw/openai/chat/completions");
    let r = send(
        &url,
        &[],
        &chat("Please write to jane.doe@example.com today", false),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let sent = body_of(&mock.requests()[0]).to_string();
    assert!(
        sent.contains("[EMAIL_1]") && !sent.contains("jane.doe"),
        "{sent}"
    );
    let reply = r.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reply.contains("jane.doe@example.com"), "{reply}");
    assert!(!reply.contains("[EMAIL_1]"), "{reply}");
    // SSE through the mock, word by word.
    let s = stream(
        &url,
        &[],
        &chat("Please write to jane.doe@example.com today", true),
    )
    .await;
    let text = s.delta_text();
    assert!(text.contains("jane.doe@example.com"), "{text}");
    // SSE with the placeholder split across events and TCP writes.
    let s = stream(
        &gw.url("/v1/acct/gw/splitter/chat/completions"),
        &[],
        &chat("Please write to jane.doe@example.com today", true),
    )
    .await;
    assert_eq!(s.status, StatusCode::OK);
    assert!(s.error.is_none(), "{:?}", s.error);
    let text = s.delta_text();
    assert_eq!(text, "Write to jane.doe@example.com today.");
    assert!(s.text().contains("[DONE]"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redaction_block_mode_refuses_naming_the_entity_types() {
    let mock = Mock::start().await;
    let gw = redaction_gateway(&mock, "", "block");
    let url = gw.url("/v1/acct/gw/openai/chat/completions");
    let r = send(
        &url,
        &[],
        &chat("my card is 4111 1111 1111 1111, mail a@b.io", false),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        msg.contains("credit_card") && msg.contains("email"),
        "{msg}"
    );
    assert!(!msg.contains("4111") && !msg.contains("a@b.io"), "{msg}");
    assert!(mock.requests().is_empty());
    let clean = send(&url, &[], &chat("what is the capital of France?", false)).await;
    assert_eq!(clean.status, StatusCode::OK);
}
