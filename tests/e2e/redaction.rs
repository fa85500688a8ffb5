//! The prompt-redaction filter end to end: masking before the provider and
//! the log store, restoring in JSON and split SSE answers, blocking.

use crate::harness::*;
use hyper::StatusCode;
use serde_json::json;

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

/// Block mode reads every API's prompt shape, not only chat completions': a Responses body
/// (`instructions`, `input` items), an embeddings `input`, Gemini's `contents` and a Bedrock
/// Converse body on their provider routes are refused before the provider is called, and the
/// same bodies without personal data pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_mode_reads_responses_embeddings_gemini_and_converse_bodies() {
    let mock = Mock::start().await;
    let gw = redaction_gateway(
        &mock,
        &format!(
            "[providers.google-ai-studio]\nbase_url = \"http://{}\"\n",
            mock.addr
        ),
        "block",
    );
    let cases = [
        (
            "openai/responses",
            json!({"model": "gpt-4o", "input": [{"role": "user", "content": [
                {"type": "input_text", "text": "mail PII"}]}]}),
        ),
        (
            "openai/responses",
            json!({"model": "gpt-4o", "instructions": "answer PII", "input": "hi"}),
        ),
        (
            "openai/embeddings",
            json!({"model": "text-embedding-3-small", "input": ["fine", "PII"]}),
        ),
        (
            "google-ai-studio/v1beta/models/gemini-2.0-flash:generateContent",
            json!({"contents": [{"role": "user", "parts": [{"text": "PII"}]}]}),
        ),
        (
            "openai/chat/completions",
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": [
                {"text": "PII"}]}]}),
        ),
    ];
    for (i, (route, body)) in cases.into_iter().enumerate() {
        let url = gw.url(&format!("/v1/acct/gw/{route}"));
        let pii = body.to_string().replace("PII", "jane.doe@example.com");
        let r = send(&url, &[], &pii).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{route}: {}", r.text());
        assert!(r.text().contains("email"), "{route}: {}", r.text());
        assert_eq!(mock.requests().len(), i, "{route} reached the provider");
        let clean = body.to_string().replace("PII", "the weather");
        let r = send(&url, &[], &clean).await;
        assert_eq!(r.status, StatusCode::OK, "{route}: {}", r.text());
        assert_eq!(mock.requests().len(), i + 1, "{route}");
    }
}

/// DLP on answers: a non-streamed answer with a finding becomes a 400 with code 2030 and the
/// `cf-aig-dlp` header (the head is still held), a streamed one ends with an error event
/// before the finding, and in flag mode both pass with what was found in the header or the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_with_personal_data_are_refused_or_flagged() {
    let mock = Mock::start().await;
    let gw = Gateway::start(
        &format!(
            "{}[gateways.block]\npipeline = [\"logging\", \"prompt-redaction\"]\n\
             [gateways.block.filters.prompt-redaction]\nresponse = \"block\"\nwindow_chars = 60\n\
             [gateways.flag]\npipeline = [\"logging\", \"prompt-redaction\"]\n\
             [gateways.flag.filters.prompt-redaction]\nmode = \"flag\"\nresponse = \"flag\"\n",
            mock.providers_toml()
        ),
        &[],
    );
    let leaky = [("x-mock-reply", "Sure, her address is eve@example.net.")];
    let r = send(
        &gw.url("/v1/acct/block/openai/chat/completions"),
        &leaky,
        &chat("who?", false),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], 2030);
    assert!(!r.text().contains("eve@example.net"));
    let dlp: serde_json::Value = serde_json::from_str(r.header("cf-aig-dlp").unwrap()).unwrap();
    assert_eq!(dlp["action"], "BLOCK");
    assert_eq!(dlp["findings"][0]["check"], "RESPONSE");
    assert!(r.header("cf-aig-log-id").is_some());

    let words: Vec<String> = (0..30).map(|i| format!("word{i:02}")).collect();
    let reply = format!(
        "{} mail eve@example.net {}",
        words.join(" "),
        words.join(" ")
    );
    let s = stream(
        &gw.url("/v1/acct/block/openai/chat/completions"),
        &[("x-mock-reply", &reply)],
        &chat("who?", true),
    )
    .await;
    let text = s.text();
    assert!(s.delta_text().starts_with("word00"), "{text}");
    assert!(!text.contains("eve@example.net"), "{text}");
    assert!(text.contains("\"code\":2030"), "{text}");

    let r = send(
        &gw.url("/v1/acct/flag/openai/chat/completions"),
        &leaky,
        &chat("mail me at ada@example.com", false),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.text().contains("eve@example.net"));
    let dlp: serde_json::Value = serde_json::from_str(r.header("cf-aig-dlp").unwrap()).unwrap();
    assert_eq!(dlp["action"], "FLAG");
    let checks: Vec<&str> = dlp["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    assert_eq!(checks, ["REQUEST", "RESPONSE"], "{dlp}");
    // Flag mode sent the prompt unchanged.
    assert!(
        mock.requests().last().unwrap()["body"]
            .as_str()
            .unwrap()
            .contains("ada@example.com")
    );
    let mut gw = gw;
    assert!(gw.stop());
    let entries = log_entries(&gw.data_dir());
    let flagged = entries.iter().find(|e| e["gateway"] == "flag").unwrap();
    assert_eq!(flagged["metadata"]["dlp_request"], "email", "{flagged}");
    assert_eq!(flagged["metadata"]["dlp_response"], "email", "{flagged}");
}
