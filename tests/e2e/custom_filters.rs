//! The filters teams write themselves: provider routing (rules, weighted
//! splits, fallbacks) and the writing-filters guide followed command by
//! command. Prompt redaction is in `redaction.rs`; the filter written in Python
//! is in `tests/optional/python_filter.rs` (it needs componentize-py).

use crate::harness::*;
use hyper::StatusCode;

/// A provider that answers every request with 503 (a failing primary).
async fn always_503() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = s.read(&mut buf).await;
                let body = r#"{"error":{"message":"overloaded"}}"#;
                let head = format!(
                    "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body.as_bytes()).await;
            });
        }
    });
    (addr, task)
}

fn routing_gateway(primary: &Mock, backup: &Mock, extra_providers: &str, rules: &str) -> Gateway {
    let cfg = format!(
        "{}[providers.backup]\nbase_url = \"http://{}/v1\"\napi_key = \"sk-backup-stored-0123456789\"\n[providers.nokey]\nbase_url = \"http://{}/v1\"\n{extra_providers}\
         [gateways.gw]\npipeline = [\"logging\", \"retry\", \"provider-routing\"]\n\
         [gateways.gw.filters.retry]\nmax_attempts = 1\n\
         [gateways.gw.filters.provider-routing]\n{rules}",
        primary.providers_toml(),
        backup.addr,
        backup.addr,
    );
    Gateway::start(&cfg, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_by_model_moves_provider_model_and_key() {
    let primary = Mock::start().await;
    let backup = Mock::start().await;
    let mut gw = routing_gateway(
        &primary,
        &backup,
        "",
        "[[gateways.gw.filters.provider-routing.rules]]\nmodel = \"cheap-*\"\ntargets = [{ provider = \"backup\", model = \"llama-small\" }]\n\
         [[gateways.gw.filters.provider-routing.rules]]\nmodel = \"to-nokey\"\ntargets = [{ provider = \"nokey\" }]\n",
    );
    let url = gw.url("/v1/acct/gw/openai/chat/completions");
    let client_key = [("authorization", "Bearer sk-client-openai-key-abcdef")];
    let body = r#"{"model":"cheap-1","messages":[{"role":"user","content":"hi"}]}"#;
    let r = send(&url, &client_key, body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        primary.requests().len(),
        0,
        "the rule must move the request"
    );
    let seen = backup.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(body_of(&seen[0])["model"], "llama-small");
    let sent = seen[0].to_string();
    assert!(
        sent.contains("sk-backup-stored-0123456789"),
        "the backup's stored key is used: {sent}"
    );
    assert!(
        !sent.contains("sk-client-openai-key"),
        "the client's OpenAI key must never reach another provider: {sent}"
    );
    // A model no rule names goes where the client said.
    let other = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
    let r = send(&url, &client_key, other).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(primary.requests().len(), 1);
    // A provider without a stored key is refused rather than handed the client's key.
    let r = send(&url, &client_key, r#"{"model":"to-nokey","messages":[]}"#).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.text());
    assert!(
        r.text().contains("[providers.nokey] api_key"),
        "{}",
        r.text()
    );
    assert!(!r.text().contains("sk-client"), "{}", r.text());
    assert_eq!(backup.requests().len(), 1, "nothing sent to nokey");
    // Streams follow the route too.
    let s = stream(&url, &client_key, &chat_with_model("cheap-2", "stream me")).await;
    assert_eq!(s.status, StatusCode::OK);
    assert!(s.text().contains("[DONE]"), "{}", s.text());
    assert_eq!(backup.requests().len(), 2);

    assert!(gw.stop());
    let entries = log_entries(&gw.data_dir());
    let routed: Vec<_> = entries
        .iter()
        .filter(|e| e["provider"] == "backup")
        .collect();
    assert_eq!(routed.len(), 2, "{entries:#?}");
    assert_eq!(routed[0]["model"], "llama-small");
    assert!(
        routed[0]["metadata"]["route"]
            .as_str()
            .unwrap_or("")
            .contains("backup/llama-small"),
        "{:#?}",
        routed[0]
    );
}

fn chat_with_model(model: &str, content: &str) -> String {
    serde_json::json!({"model": model, "stream": true, "messages": [{"role": "user", "content": content}]})
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_list_takes_over_from_failing_and_unreachable_providers() {
    let primary = Mock::start().await;
    let backup = Mock::start().await;
    let (failing, _task) = always_503().await;
    let mut gw = routing_gateway(
        &primary,
        &backup,
        &format!(
            "[providers.failing]\nbase_url = \"http://{failing}/v1\"\napi_key = \"sk-failing-key-000000\"\n\
             [providers.down]\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key = \"sk-down-key-000000\"\n"
        ),
        "[[gateways.gw.filters.provider-routing.rules]]\nmodel = \"gpt-4o*\"\n\
         targets = [{ provider = \"failing\" }]\n\
         fallback = [{ provider = \"down\" }, { provider = \"backup\", model = \"llama-big\" }]\n",
    );
    let url = gw.url("/v1/acct/gw/openai/chat/completions");
    let r = send(&url, &[], &chat("fall back please", false)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        r.header("cf-aig-attempts"),
        Some("3"),
        "failing, down, backup"
    );
    let seen = backup.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(body_of(&seen[0])["model"], "llama-big");
    assert_eq!(primary.requests().len(), 0);

    assert!(gw.stop());
    let entries = log_entries(&gw.data_dir());
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(e["provider"], "backup");
    assert_eq!(e["attempts"], 3);
    let fallback = e["metadata"]["fallback"].as_str().unwrap_or("");
    assert!(fallback.starts_with("2: backup/llama-big"), "{e:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_split_is_sticky_per_user() {
    let primary = Mock::start().await;
    let backup = Mock::start().await;
    let gw = routing_gateway(
        &primary,
        &backup,
        "",
        "[[gateways.gw.filters.provider-routing.rules]]\n\
         targets = [{ provider = \"openai\", weight = 50 }, { provider = \"backup\", weight = 50 }]\n\
         sticky = \"header:x-user\"\n",
    );
    let url = gw.url("/v1/acct/gw/openai/chat/completions");
    for round in 0..2 {
        for u in 0..16 {
            let user = format!("user-{u}");
            let r = send(
                &url,
                &[("x-user", &user)],
                &chat(&format!("q{round}"), false),
            )
            .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        }
    }
    let users = |m: &Mock| -> std::collections::BTreeMap<String, usize> {
        let mut seen = std::collections::BTreeMap::new();
        for r in m.requests() {
            let user = r["headers"]["x-user"].as_str().unwrap_or("?").to_string();
            *seen.entry(user).or_insert(0) += 1;
        }
        seen
    };
    let (a, b) = (users(&primary), users(&backup));
    assert!(
        !a.is_empty() && !b.is_empty(),
        "a 50/50 split used one side only: {a:?} {b:?}"
    );
    assert_eq!(
        a.len() + b.len(),
        16,
        "a user was split across providers: {a:?} {b:?}"
    );
    assert!(a.values().chain(b.values()).all(|n| *n == 2));
}

/// A free loopback port (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs every shell block of docs/writing-filters.md between the tour markers,
/// in order, as one script: scaffold, test, edit, build, install, serve, call,
/// hot-reload. The guide cannot rot without this test failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writing_filters_guide_works_as_written() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap();
    let guide = std::fs::read_to_string(root.join("docs/writing-filters.md")).unwrap();
    let tour = guide
        .split("<!-- tour:start -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- tour:end -->").next())
        .expect("the guide marks its tour");
    let mut blocks = Vec::new();
    let mut lines = tour.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "```sh" {
            let block: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
            blocks.push(block.join("\n"));
        }
    }
    assert!(
        blocks.len() >= 5,
        "found only {} shell blocks",
        blocks.len()
    );
    let (gw_port, mock_port) = (free_port(), free_port());
    let script = format!(
        "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n{}\n",
        blocks.join("\n")
    )
    .replace("127.0.0.1:8787", &format!("127.0.0.1:{gw_port}"))
    .replace("127.0.0.1:8790", &format!("127.0.0.1:{mock_port}"));
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("tour.sh"), &script).unwrap();
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_aigw"))
        .parent()
        .unwrap()
        .to_path_buf();
    let mut cmd = std::process::Command::new("timeout");
    cmd.arg("900")
        .arg("bash")
        .arg("tour.sh")
        .current_dir(work.path())
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin_dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        // Keeps the guide's crate dependencies warm between runs.
        .env("CARGO_TARGET_DIR", root.join("target/guide-filter"));
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
        "CARGO_MANIFEST_DIR",
        "CARGO_PKG_NAME",
    ] {
        cmd.env_remove(var);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the guide's commands failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    for expected in [
        "created filter 'no-secrets'",
        "installed filter 'no-secrets'",
        "x-no-secrets: clean",
        "\"type\":\"policy_violation\"",
        "x-no-secrets: clean-v2",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in the guide's output:\n{stdout}\n--- stderr\n{stderr}"
        );
    }
}
