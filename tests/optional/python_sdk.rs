//! The official OpenAI and Anthropic Python SDKs against the gateway, base URL swapped.
//! Needs a Python with the `openai`, `anthropic` and `cloudflare` packages: `AIGW_PYTHON`, else
//! `.venv/bin/python` at the repository root (what `scripts/test-deps.sh` creates); the runner
//! (`main.rs`) skips these tests without one.

use crate::harness::*;
use std::path::PathBuf;
use std::process::Command;

/// A Python that imports both SDKs.
pub fn python() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let candidates = [
        std::env::var_os("AIGW_PYTHON").map(PathBuf::from),
        Some(root.join(".venv/bin/python")),
    ];
    candidates.into_iter().flatten().find(|p| {
        Command::new(p)
            .args([
                "-c",
                "import openai, anthropic, cloudflare, websocket, websockets, boto3, google.genai, cohere, cryptography",
            ])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    })
}

/// Runs `tests/sdk/{script}` with `arg` and parses the one JSON line it prints; a script that
/// fails fails the test with its output.
pub async fn run_script(script: &str, arg: String) -> serde_json::Value {
    run_script_args(script, &[arg]).await
}

/// `run_script` with several arguments.
async fn run_script_args(script: &str, args: &[String]) -> serde_json::Value {
    let python = python().expect("the runner checked for a Python with the SDKs");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/sdk")
        .join(script);
    let args = args.to_vec();
    let out =
        tokio::task::spawn_blocking(move || Command::new(python).arg(script).args(args).output())
            .await
            .unwrap()
            .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sdk script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap()
}

pub async fn openai_python_sdk_gets_completions_and_streams() {
    let mock = Mock::start().await;
    let cfg = format!(
        "{}[gateways.my-app-gateway]\npipeline = [\"logging\", \"rate-limit\", \"cache\", \"retry\"]\n[gateways.my-app-gateway.filters.rate-limit]\nlimit = 100\nperiod_s = 60\n",
        mock.providers_toml()
    );
    let gw = Gateway::start(&cfg, &[]);
    let base_url = gw.url("/v1/acct/my-app-gateway/openai");
    let v = run_script("openai_sdk.py", base_url).await;
    assert!(
        v["reply"]
            .as_str()
            .unwrap()
            .contains("hello from the python sdk"),
        "{v}"
    );
    assert!(
        v["streamed"]
            .as_str()
            .unwrap()
            .contains("stream from the python sdk"),
        "{v}"
    );
    assert!(v["chunks"].as_u64().unwrap() > 3, "{v}");
    assert!(v["prompt_tokens"].as_u64().unwrap() > 0);
    // The stream whose provider ended its body late was complete: cached, and logged so.
    assert!(v["late"].as_str().unwrap().contains("ends late"), "{v}");
    assert_eq!(v["late_again_cache"], "HIT", "{v}");
    assert_eq!(v["late_again"], v["late"], "{v}");
    let seen = mock.requests();
    assert_eq!(
        seen.len(),
        3,
        "the repeated late stream came from the cache"
    );
    assert_eq!(
        seen[0]["headers"]["authorization"],
        "Bearer sk-test-key-from-the-sdk"
    );
    let mut gw = gw;
    assert!(gw.stop());
    let entries = log_entries(&gw.data_dir());
    let late: Vec<_> = entries
        .iter()
        .filter(|e| e["cached"] == false && e["request_body"].to_string().contains("ends late"))
        .collect();
    assert_eq!(late.len(), 1, "{entries:#?}");
    assert_eq!(late[0]["outcome"], "Completed", "{}", late[0]);
    assert_eq!(late[0]["success"], true, "{}", late[0]);
}

pub async fn openai_and_anthropic_sdks_through_compat_and_passthrough() {
    let mock = Mock::start().await;
    let cfg = format!(
        "{}[gateways.gw]\npipeline = [\"logging\", \"cache\"]\n",
        mock.providers_toml()
    );
    let gw = Gateway::start(&cfg, &[]);
    let base = gw.url("/v1/acct/gw");
    let v = run_script("provider_sdks.py", base).await;
    assert!(
        v["compat_reply"]
            .as_str()
            .unwrap()
            .contains("compat to claude"),
        "{v}"
    );
    assert_eq!(v["compat_finish"], "stop");
    assert!(v["compat_tokens"].as_u64().unwrap() > 0);
    assert!(
        v["compat_streamed"]
            .as_str()
            .unwrap()
            .contains("compat stream to claude"),
        "{v}"
    );
    assert!(
        v["compat_openai_reply"]
            .as_str()
            .unwrap()
            .contains("compat to openai"),
        "{v}"
    );
    assert_eq!(v["compat_openai_model"], "gpt-4o-mini");
    assert!(
        v["compat_openai_streamed"]
            .as_str()
            .unwrap()
            .contains("compat stream to openai"),
        "{v}"
    );
    assert!(
        v["anthropic_reply"]
            .as_str()
            .unwrap()
            .contains("anthropic passthrough"),
        "{v}"
    );
    assert!(
        v["anthropic_streamed"]
            .as_str()
            .unwrap()
            .contains("anthropic stream"),
        "{v}"
    );
    let seen = mock.requests();
    assert_eq!(seen.len(), 6);
    let paths: Vec<&str> = seen.iter().map(|r| r["path"].as_str().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "/v1/messages",
            "/v1/messages",
            "/v1/chat/completions",
            "/v1/chat/completions",
            "/v1/messages",
            "/v1/messages"
        ]
    );
    // The compat request was translated: system prompt moved, key in x-api-key.
    let first: serde_json::Value = serde_json::from_str(seen[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(first["system"], "You are terse.");
    assert_eq!(first["model"], "claude-3-5-haiku");
    assert_eq!(first["max_tokens"], 64);
    assert_eq!(seen[0]["headers"]["x-api-key"], "sk-ant-through-compat");
    assert!(seen[0]["headers"].get("authorization").is_none());
    assert_eq!(seen[0]["headers"]["anthropic-version"], "2023-06-01");
}

/// Published prices (USD per million tokens): input, output, cached input. Written here from
/// the providers' price pages, not read from the gateway.
fn published_price(model: &str) -> (f64, f64, f64) {
    match model {
        "gpt-4o-mini" => (0.15, 0.6, 0.075),
        "text-embedding-3-small" => (0.02, 0.0, 0.02),
        "gpt-image-1" => (5.0, 40.0, 1.25),
        "claude-3-5-haiku" => (0.8, 4.0, 0.08),
        other => panic!("no test price for {other}"),
    }
}

/// The official SDKs on every API the gateway bills: each log entry's tokens and cost equal
/// what the SDK itself parsed from the answer, at the published prices.
pub async fn official_sdks_are_billed_exactly() {
    let mock = Mock::start().await;
    let cfg = format!(
        "{}[gateways.gw]\npipeline = [\"logging\"]\n",
        mock.providers_toml()
    );
    let mut gw = Gateway::start(&cfg, &[]);
    let base = gw.url("/v1/acct/gw");
    let v = run_script("billing_sdks.py", base).await;
    assert!(
        !v["responses_json"]["text"].as_str().unwrap().is_empty(),
        "{v}"
    );
    assert!(
        !v["responses_stream"]["text"].as_str().unwrap().is_empty(),
        "{v}"
    );
    assert_eq!(v["embeddings"]["vectors"], 2, "{v}");
    assert_eq!(v["images"]["images"], 1, "{v}");
    assert_eq!(v["anthropic"]["usage"]["cache_read_input_tokens"], 3, "{v}");
    assert!(gw.stop());
    let entries = log_entries(&gw.data_dir());
    assert_eq!(entries.len(), 5, "{entries:#?}");
    let n = |u: &serde_json::Value, p: &str| u.pointer(p).and_then(|x| x.as_f64()).unwrap_or(0.0);
    // Each call, its model and the path the gateway logs; tokens and cost from the SDK's usage.
    let calls = [
        ("responses_json", "gpt-4o-mini", "/responses"),
        ("responses_stream", "gpt-4o-mini", "/responses"),
        ("embeddings", "text-embedding-3-small", "/embeddings"),
        ("images", "gpt-image-1", "/images/generations"),
        ("anthropic", "claude-3-5-haiku", "/v1/messages"),
    ];
    let mut total = 0.0;
    for (call, model, path) in calls {
        let u = &v[call]["usage"];
        let (fresh, cached, output, tokens_in) = if call == "anthropic" {
            let (i, c, w) = (
                n(u, "/input_tokens"),
                n(u, "/cache_read_input_tokens"),
                n(u, "/cache_creation_input_tokens"),
            );
            (i + w, c, n(u, "/output_tokens"), i + c + w)
        } else if call == "embeddings" {
            (n(u, "/prompt_tokens"), 0.0, 0.0, n(u, "/prompt_tokens"))
        } else {
            let c = n(u, "/input_tokens_details/cached_tokens");
            (
                n(u, "/input_tokens") - c,
                c,
                n(u, "/output_tokens"),
                n(u, "/input_tokens"),
            )
        };
        let (pi, po, pc) = published_price(model);
        let want = (fresh * pi + cached * pc + output * po) / 1e6;
        let entry = entries
            .iter()
            .find(|e| {
                e["model"] == model
                    && e["path"] == path
                    && e["streamed"] == (call == "responses_stream")
            })
            .unwrap_or_else(|| panic!("{call}: no entry in {entries:#?}"));
        assert_eq!(
            entry["tokens_in"].as_f64(),
            Some(tokens_in),
            "{call}: {entry}"
        );
        let got = entry["cost"]
            .as_f64()
            .unwrap_or_else(|| panic!("{call}: no cost: {entry}"));
        assert!(
            (got - want).abs() < 1e-12,
            "{call}: logged {got}, expected {want}: {entry}"
        );
        total += want;
    }
    assert!(total > 0.0);
}

/// The official SDKs with `api_key` set to a virtual key work unmodified; the provider sees
/// only the stored keys; a wrong key is the SDK's AuthenticationError.
pub async fn official_sdks_work_with_a_virtual_key() {
    let python = python().expect("the runner checked for a Python with the SDKs");
    let mock = Mock::start().await;
    let providers = mock.providers_toml_with_keys();
    let dir = prepare_with_server(
        "admin_listen = \"127.0.0.1:0\"\nadmin_token = \"adm1n\"\n",
        &format!(
            "{providers}[gateways.gw]\nkeys = \"required\"\npipeline = [\"key-policy\", \"logging\"]\n"
        ),
        &[],
    );
    let mut gw = Gateway::start_in(dir);
    let created = send_req(request(
        hyper::Method::POST,
        &gw.admin_url("/api/keys"),
        &[("authorization", "Bearer adm1n")],
        r#"{"name": "python-app", "gateways": ["gw"], "budget_usd": {"amount": 1, "period": "day"}}"#,
    ))
    .await
    .json();
    let key = created["key"].as_str().unwrap().to_string();
    let base = gw.url("/v1/acct/gw");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/sdk/virtual_keys.py");
    let secret = key.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .arg(base)
            .arg(secret)
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sdk script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(
        v["chat"].as_str().unwrap().contains("virtual key chat"),
        "{v}"
    );
    assert!(
        v["streamed"]
            .as_str()
            .unwrap()
            .contains("virtual key stream"),
        "{v}"
    );
    assert!(
        v["anthropic"]
            .as_str()
            .unwrap()
            .contains("virtual key anthropic"),
        "{v}"
    );
    assert_eq!(v["refused"], "AuthenticationError", "{v}");
    let seen = mock.requests();
    assert_eq!(seen.len(), 3);
    assert_eq!(
        seen[0]["headers"]["authorization"],
        "Bearer sk-stored-openai"
    );
    assert_eq!(seen[2]["headers"]["x-api-key"], "sk-ant-stored");
    assert!(!seen.iter().any(|s| s.to_string().contains(&key)));
    assert!(gw.stop());
    let entries = log_entries(&gw.data_dir());
    assert_eq!(entries.len(), 3, "{entries:#?}");
    assert!(
        entries.iter().all(|e| e["key_name"] == "python-app"),
        "{entries:#?}"
    );
    assert!(!gw.logs().contains(&key));
}

/// Cloudflare's official Python SDK (`cloudflare`), with only `base_url` and `api_token`
/// changed, manages aigw: creates, lists, updates and deletes a gateway (written to the TOML
/// and applied live: the third request over a limit of 2 is a 429), and lists, reads,
/// patches and deletes its logs (tests/sdk/cloudflare_sdk.py).
pub async fn cloudflare_sdk_manages_gateways_and_logs() {
    let python = python().expect("the runner checked for a Python with the SDKs");
    let mock = Mock::start().await;
    let dir = prepare_with_server(
        "admin_listen = \"127.0.0.1:0\"\nadmin_token = \"adm1n\"\n",
        &format!(
            "# Managed through the Cloudflare SDK.\n{}[gateways.default]\npipeline = [\"logging\"]\n",
            mock.providers_toml()
        ),
        &[],
    );
    let gw = Gateway::start_in(dir);
    let base = gw.admin_url("/client/v4");
    let prefix = gw.url("/v1/cf-account");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/sdk/cloudflare_sdk.py");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .arg("300")
            .arg(python)
            .arg(script)
            .args([base.as_str(), "adm1n", "cf-account", prefix.as_str()])
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cloudflare sdk script failed:\n{stdout}\n{}\n--- gateway log\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.logs()
    );
    let v: serde_json::Value =
        serde_json::from_str(stdout.trim().lines().last().unwrap_or("")).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(
        v["chat_statuses"],
        serde_json::json!([200, 200, 429]),
        "{v}"
    );
    let file = std::fs::read_to_string(gw.config_file()).unwrap();
    assert!(
        file.contains("# Managed through the Cloudflare SDK."),
        "{file}"
    );
    assert!(
        !file.contains("[gateways.tutorial]"),
        "deleted at the end: {file}"
    );
}

/// The guardrails filter as the official SDKs see it: a flagged prompt answers with its flags
/// in a header, a blocked prompt raises the SDK's status error (424, code 2016), and a stream
/// whose 5th window is unsafe raises mid-stream after the earlier windows arrived.
pub async fn official_sdks_see_guardrails_flags_blocks_and_cut_streams() {
    let mock = Mock::start().await;
    let cfg = format!(
        "{providers}[gateways.gw]\npipeline = [\"logging\", \"guardrails\"]\n\
         [gateways.gw.filters.guardrails]\nclassifier = \"openai-moderation\"\n\
         endpoint = \"http://{addr}/v1/moderations\"\nallow_http = [\"http://{addr}\"]\n\
         window_chars = 100\ncategories = {{ harassment = \"flag\" }}\n{slow}",
        providers = mock.providers_toml(),
        addr = mock.addr,
        slow = ["closed", "open"]
            .map(|on_error| format!(
                "[gateways.{on_error}]\npipeline = [\"logging\", \"guardrails\"]\n\
                 [gateways.{on_error}.filters.guardrails]\nclassifier = \"openai-moderation\"\n\
                 endpoint = \"http://{addr}/v1/moderations\"\nallow_http = [\"http://{addr}\"]\n\
                 http_timeout_ms = 300\non_error = \"{on_error}\"\n",
                addr = mock.addr
            ))
            .concat()
    );
    let gw = Gateway::start(&cfg, &[]);
    let v = run_script_args(
        "guardrails_sdk.py",
        &["gw", "closed", "open"].map(|g| gw.url(&format!("/v1/acct/{g}"))),
    )
    .await;
    assert!(
        v["flagged_reply"]
            .as_str()
            .unwrap()
            .contains("mock-flag:harassment"),
        "{v}"
    );
    assert!(
        v["flagged_header"].as_str().unwrap().contains("harassment"),
        "{v}"
    );
    assert_eq!(v["blocked"]["status"], 424, "{v}");
    // The SDK reads `code` as a string.
    assert_eq!(v["blocked"]["code"], "2016", "{v}");
    assert_eq!(v["stream_error"]["type"], "APIError", "{v}");
    assert!(
        v["stream_error"]["message"]
            .as_str()
            .unwrap()
            .contains("Response blocked"),
        "{v}"
    );
    let received = v["stream_received"].as_str().unwrap();
    assert!(
        received.starts_with("word00") && received.len() >= 300,
        "{v}"
    );
    assert!(
        !received.contains("mock-flag") && !received.contains("word70"),
        "{v}"
    );
    assert_eq!(v["anthropic_blocked"]["status"], 424, "{v}");
    assert!(
        v["anthropic_stream_error"]["message"]
            .as_str()
            .unwrap()
            .contains("Response blocked"),
        "{v}"
    );
    let received = v["anthropic_stream_received"].as_str().unwrap();
    assert!(
        received.starts_with("word00") && !received.contains("mock-flag"),
        "{v}"
    );
    // The chat provider never saw the blocked prompts.
    let chats: Vec<String> = mock
        .requests()
        .iter()
        .filter(|r| !r["path"].as_str().unwrap_or("").ends_with("/moderations"))
        .map(|r| r["body"].as_str().unwrap_or("").to_string())
        .collect();
    // Three calls to `gw` and the one `open` let through; `closed` refused before the provider.
    assert_eq!(chats.len(), 4, "{chats:?}");
    assert!(
        chats.iter().all(|b| !b.contains("mock-flag:violence")),
        "{chats:?}"
    );
    // The classifier timing out: the SDK's status error (503, code 7013) under `closed`, the
    // answer under `open`.
    assert_eq!(v["timeout_closed"]["status"], 503, "{v}");
    assert_eq!(v["timeout_closed"]["code"], "7013", "{v}");
    assert!(
        v["timeout_open"]["reply"]
            .as_str()
            .unwrap_or("")
            .contains("hello"),
        "{v}"
    );
    let mut gw = gw;
    assert!(gw.stop());
    // The log says what happened to each: the flag, the block, the cut stream, the timeouts.
    let entries = log_entries(&gw.data_dir());
    let meta = |gateway: &str, key: &str, value: &str| {
        entries.iter().any(|e| {
            e["gateway"] == gateway
                && e["metadata"][key]
                    .as_str()
                    .is_some_and(|v| v.contains(value))
        })
    };
    assert!(
        meta("gw", "guardrails_prompt_action", "flag"),
        "{entries:#?}"
    );
    assert!(
        meta("gw", "guardrails_prompt_categories", "harassment"),
        "{entries:#?}"
    );
    assert!(
        meta("gw", "guardrails_prompt_action", "block"),
        "{entries:#?}"
    );
    assert!(
        meta("gw", "guardrails_response_action", "block"),
        "{entries:#?}"
    );
    assert!(
        meta(
            "closed",
            "guardrails_prompt_error",
            "no answer within 300 ms"
        ),
        "{entries:#?}"
    );
    assert!(
        meta("open", "guardrails_prompt_error", "no answer within 300 ms"),
        "{entries:#?}"
    );
}

/// The Anthropic SDK at the compat endpoint's Messages entry point: text, stream and tool
/// calls (JSON and streamed, then the tool's result) translated to an OpenAI-shaped provider
/// and back, an Anthropic model passed through, and a provider error raised as the SDK's own.
pub async fn anthropic_sdk_reaches_openai_models_through_messages() {
    let mock = Mock::start().await;
    let cfg = format!(
        "{}[gateways.gw]\npipeline = [\"logging\"]\n",
        mock.providers_toml()
    );
    let gw = Gateway::start(&cfg, &[]);
    let base = gw.url("/v1/acct/gw");
    let v = run_script("messages_sdk.py", base).await;
    assert!(
        v["text"]
            .as_str()
            .unwrap()
            .contains("hello through messages"),
        "{v}"
    );
    assert_eq!(v["stop_reason"], "end_turn", "{v}");
    assert!(v["usage"]["input"].as_u64().unwrap() > 0, "{v}");
    assert!(v["usage"]["output"].as_u64().unwrap() > 0, "{v}");
    assert!(
        v["streamed"]
            .as_str()
            .unwrap()
            .contains("stream through messages"),
        "{v}"
    );
    assert_eq!(v["stream_stop_reason"], "end_turn", "{v}");
    assert!(v["stream_usage"]["output"].as_u64().unwrap() > 0, "{v}");
    for key in ["tool", "stream_tool"] {
        assert_eq!(v[key]["name"], "get_weather", "{v}");
        assert_eq!(v[key]["input"]["city"], "Paris", "{v}");
        assert_eq!(v[key]["stop_reason"], "tool_use", "{v}");
    }
    assert!(
        v["after_tool"].as_str().unwrap().contains("18 degrees"),
        "{v}"
    );
    assert!(
        v["claude"]
            .as_str()
            .unwrap()
            .contains("hello claude through compat"),
        "{v}"
    );
    assert!(
        v["claude_streamed"]
            .as_str()
            .unwrap()
            .contains("stream claude through compat"),
        "{v}"
    );
    assert_eq!(v["error"]["type"], "RateLimitError", "{v}");
    assert_eq!(v["error"]["status"], 429, "{v}");

    let seen = mock.requests();
    let paths: Vec<&str> = seen.iter().map(|r| r["path"].as_str().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "/v1/chat/completions",
            "/v1/chat/completions",
            "/v1/chat/completions",
            "/v1/chat/completions",
            "/v1/chat/completions",
            "/v1/messages",
            "/v1/messages",
            "/v1/chat/completions"
        ]
    );
    // The Anthropic SDK's key went to the OpenAI-shaped provider as a Bearer token.
    assert_eq!(
        seen[0]["headers"]["authorization"],
        "Bearer sk-openai-through-messages"
    );
    assert!(seen[0]["headers"].get("x-api-key").is_none());
    let first = body_of(&seen[0]);
    assert_eq!(first["model"], "gpt-4o-mini");
    assert_eq!(first["messages"][0]["role"], "system");
    // The tool's result reached the provider as a tool message after the call.
    let turn = body_of(&seen[4]);
    assert_eq!(
        turn["messages"][1]["tool_calls"][0]["function"]["name"], "get_weather",
        "{turn}"
    );
    assert_eq!(turn["messages"][2]["role"], "tool", "{turn}");
    assert!(
        turn["messages"][2]["content"]
            .as_str()
            .unwrap()
            .contains("18 degrees")
    );
    let claude = body_of(&seen[5]);
    assert_eq!(claude["model"], "claude-3-5-haiku");
    // Logged and billed like any chat completion.
    let mut gw = gw;
    assert!(gw.stop());
    let entries = log_entries(&gw.data_dir());
    let streamed = entries
        .iter()
        .find(|e| e["streamed"] == true && e["provider"] == "openai")
        .unwrap();
    assert!(streamed["tokens_out"].as_u64().unwrap() > 0, "{streamed}");
    assert!(streamed["cost"].as_f64().unwrap() > 0.0, "{streamed}");
}

/// The OpenAI SDK's Responses API at the compat endpoint: text, stream and function calls
/// (JSON and streamed, then the call's output) to an Anthropic model through two translations
/// and back, an OpenAI model passed through, `previous_response_id` refused where the gateway
/// keeps no responses, and continuing a tool call by `previous_response_id` where it does.
pub async fn openai_responses_reach_anthropic_models_through_compat() {
    let mock = Mock::start().await;
    let cfg = format!(
        "{}[providers.groq]\nbase_url = \"http://{}/openai/v1\"\n[gateways.gw]\npipeline = [\"logging\"]\n[gateways.kept]\nstore_responses = true\npipeline = [\"logging\"]\n",
        mock.providers_toml(),
        mock.addr
    );
    let gw = Gateway::start(&cfg, &[]);
    let base = gw.url("/v1/acct/gw");
    let kept = gw.url("/v1/acct/kept");
    let v = run_script_args("responses_sdk.py", &[base, kept]).await;
    assert!(
        v["text"]
            .as_str()
            .unwrap()
            .contains("hello through responses"),
        "{v}"
    );
    assert_eq!(v["status"], "completed", "{v}");
    assert!(v["usage"]["input"].as_u64().unwrap() > 0, "{v}");
    assert!(
        v["streamed"]
            .as_str()
            .unwrap()
            .contains("stream through responses"),
        "{v}"
    );
    assert_eq!(v["streamed"], v["stream_final"], "{v}");
    assert!(v["stream_usage"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["tool"]["name"], "get_weather", "{v}");
    assert_eq!(v["tool"]["arguments"]["city"], "Paris", "{v}");
    assert_eq!(v["stream_tool"]["arguments"]["city"], "Paris", "{v}");
    assert_eq!(v["stream_tool"]["final_arguments"]["city"], "Paris", "{v}");
    assert!(!v["after_tool"].as_str().unwrap().is_empty(), "{v}");
    assert!(
        v["openai"]
            .as_str()
            .unwrap()
            .contains("hello openai through compat responses"),
        "{v}"
    );
    assert_eq!(v["stateful"]["status"], 400, "{v}");
    assert_eq!(v["compat_stream_tool"]["arguments"]["city"], "Paris", "{v}");
    assert_eq!(
        v["compat_stream_tool"]["final"],
        serde_json::json!(["function_call"]),
        "{v}"
    );
    assert_eq!(
        v["continued"]["previous"], v["continued"]["first_id"],
        "{v}"
    );
    assert_eq!(v["continued"]["first_store"], true, "{v}");
    assert!(!v["continued"]["text"].as_str().unwrap().is_empty(), "{v}");

    let seen = mock.requests();
    // The continued turn reached Anthropic whole: the question, the call, its result.
    let continued = body_of(seen.last().unwrap());
    let turns = continued["messages"].as_array().unwrap();
    assert_eq!(turns.len(), 3, "{continued}");
    assert_eq!(turns[1]["content"][0]["type"], "tool_use", "{continued}");
    assert_eq!(turns[2]["content"][0]["type"], "tool_result", "{continued}");
    assert!(turns[2].to_string().contains("21 degrees"), "{continued}");
    let seen = &seen[..seen.len() - 2];
    let paths: Vec<&str> = seen.iter().map(|r| r["path"].as_str().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "/v1/messages",
            "/v1/messages",
            "/v1/messages",
            "/v1/messages",
            "/v1/messages",
            "/v1/responses",
            "/openai/v1/chat/completions"
        ]
    );
    // Translated twice: the instructions are Anthropic's system prompt, the key its x-api-key.
    let first = body_of(&seen[0]);
    assert_eq!(first["system"], "You are terse.", "{first}");
    assert_eq!(first["model"], "claude-3-5-haiku");
    assert_eq!(seen[0]["headers"]["x-api-key"], "sk-ant-through-responses");
    let tools = body_of(&seen[2]);
    assert_eq!(tools["tools"][0]["name"], "get_weather", "{tools}");
    let turn = body_of(&seen[4]);
    let last = turn["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["content"][0]["type"], "tool_result", "{turn}");
    let mut gw = gw;
    assert!(gw.stop());
    let entries = log_entries(&gw.data_dir());
    assert_eq!(entries.len(), 9, "{} entries", entries.len());
    assert!(
        entries
            .iter()
            .all(|e| e["tokens_out"].as_u64().unwrap_or(0) > 0),
        "{entries:#?}"
    );
}

/// The OpenAI SDK's Realtime client (`client.realtime.connect`) through a provider route: the
/// session update and two text turns pass both ways, and the session's one log entry carries
/// the usage the SDK saw in `response.done`, priced at gpt-realtime's text rates.
pub async fn openai_realtime_sessions_pass_through_and_are_billed_exactly() {
    let mock = Mock::start().await;
    let cfg = format!(
        "{}[gateways.gw]\npipeline = [\"logging\", \"rate-limit\"]\n[gateways.gw.filters.rate-limit]\nlimit = 10\nperiod_s = 60\n",
        mock.providers_toml()
    );
    let mut gw = Gateway::start(&cfg, &[]);
    let base = gw.url("/v1/acct/gw/openai");
    let v = run_script("realtime_sdk.py", base).await;
    assert!(v["error"].is_null(), "{v}");
    assert_eq!(v["instructions"], "be brief", "{v}");
    let turns = v["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 2, "{v}");
    assert_eq!(
        turns[0]["text"],
        "Realtime mock reply to: hello realtime sdk"
    );
    assert_eq!(turns[1]["text"], "Realtime mock reply to: and once more");
    let handshake = mock
        .requests()
        .into_iter()
        .find(|r| r["path"] == "/v1/realtime")
        .unwrap();
    assert_eq!(
        handshake["headers"]["authorization"],
        "Bearer sk-realtime-client"
    );
    assert_eq!(handshake["query"], "model=gpt-realtime");
    assert!(gw.stop());
    let entries = log_entries(&gw.data_dir());
    assert_eq!(entries.len(), 1, "{entries:?}");
    let e = &entries[0];
    let sum = |k: &str| turns.iter().map(|t| t[k].as_u64().unwrap()).sum::<u64>();
    assert_eq!(e["status"], 101, "{e}");
    assert_eq!(e["tokens_in"], sum("input"), "{e}");
    assert_eq!(e["tokens_out"], sum("output"), "{e}");
    let want = (sum("input") as f64 * 4.0 + sum("output") as f64 * 16.0) / 1e6;
    let cost = e["cost"].as_f64().unwrap();
    assert!((cost - want).abs() < 1e-12, "cost {cost}, expected {want}");
    assert_eq!(e["metadata"]["websocket_closed_by"], "client", "{e}");
}

/// The OpenAI SDK's embeddings at the compat endpoint to OpenAI, Gemini and Cohere: each
/// answers in OpenAI's shape, and Cohere's vectors decode to the same numbers whether the SDK
/// asked for its default encoding or for floats.
pub async fn openai_embeddings_reach_gemini_and_cohere_through_compat() {
    let mock = Mock::start().await;
    let cfg = format!(
        "{}[providers.google-ai-studio]\nbase_url = \"http://{addr}\"\n[providers.cohere]\nbase_url = \"http://{addr}\"\n[gateways.gw]\npipeline = [\"logging\"]\n",
        mock.providers_toml(),
        addr = mock.addr
    );
    let gw = Gateway::start(&cfg, &[]);
    let base = gw.url("/v1/acct/gw");
    let v = run_script("embeddings_sdk.py", base).await;
    for model in [
        "openai/text-embedding-3-small",
        "google-ai-studio/text-embedding-004",
        "cohere/embed-v4.0",
    ] {
        assert_eq!(v[model]["n"], 2, "{v}");
        assert!(!v[model]["first"].as_array().unwrap().is_empty(), "{v}");
    }
    assert_eq!(v["cohere/embed-v4.0"]["model"], "embed-v4.0", "{v}");
    assert_eq!(v["cohere/embed-v4.0"]["usage"], 5, "{v}");
    let default: Vec<f64> =
        serde_json::from_value(v["cohere/embed-v4.0"]["first"].clone()).unwrap();
    let floats: Vec<f64> = serde_json::from_value(v["cohere_float"].clone()).unwrap();
    assert_eq!(default.len(), floats.len());
    for (a, b) in default.iter().zip(&floats) {
        assert!((a - b).abs() < 1e-6, "{default:?} vs {floats:?}");
    }
    let paths: Vec<String> = mock
        .requests()
        .iter()
        .map(|r| r["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        paths,
        [
            "/v1/embeddings",
            "/v1beta/openai/embeddings",
            "/v2/embed",
            "/v2/embed"
        ]
    );
}

/// boto3's bedrock-runtime `converse` through the aws-bedrock route: boto3's own signature (for
/// the gateway's host) is replaced by the gateway's, made from stored credentials, which the
/// mock verifies as AWS would; the answer comes back in Converse's shape and is billed.
pub async fn bedrock_for_boto3_and_the_openai_sdk_is_signed_by_the_gateway_and_billed() {
    let mock = Mock::start().await;
    let cfg = format!(
        "[providers.aws-bedrock]\nbase_url = \"http://{}\"\nregion = \"us-east-1\"\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n[gateways.gw]\npipeline = [\"logging\"]\n",
        mock.addr,
        aigw::mock::bedrock::ACCESS_KEY_ID,
        aigw::mock::bedrock::SECRET_ACCESS_KEY
    );
    let mut gw = Gateway::start(&cfg, &[]);
    let endpoint = gw.url("/v1/acct/gw");
    let v = run_script("bedrock_sdk.py", endpoint).await;
    assert_eq!(v["text"], "Bedrock mock reply to: hello from boto3", "{v}");
    assert_eq!(v["stop"], "end_turn");
    let seen = &mock.requests()[0];
    assert_eq!(
        seen["path"],
        "/bedrock-runtime/us-east-1/model/amazon.nova-lite-v1%3A0/converse"
    );
    let auth = seen["headers"]["authorization"].as_str().unwrap();
    assert!(auth.contains(aigw::mock::bedrock::ACCESS_KEY_ID), "{auth}");
    assert!(!auth.contains("AKIDCLIENTONLY"), "{auth}");
    // The OpenAI SDK at the compat endpoint, translated to Converse and back.
    assert_eq!(
        v["compat"]["text"], "Bedrock mock reply to: hello bedrock through compat",
        "{v}"
    );
    assert_eq!(v["compat"]["finish"], "stop");
    assert!(v["compat"]["in"].as_u64().unwrap() > 0);
    assert_eq!(
        v["compat_stream"]["text"], "Bedrock mock reply to: stream bedrock through compat",
        "{v}"
    );
    assert_eq!(v["compat_stream"]["finish"], "stop");
    assert!(v["compat_stream"]["usage"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["compat_tool"]["name"], "get_weather", "{v}");
    assert_eq!(v["compat_tool"]["args"]["city"], "Paris");
    assert_eq!(v["compat_tool"]["finish"], "tool_calls");
    assert_eq!(v["compat_stream_tool"]["name"], "get_weather", "{v}");
    assert_eq!(v["compat_stream_tool"]["args"]["city"], "Paris", "{v}");
    assert_eq!(v["compat_after_tool"], "Bedrock mock reply to: ", "{v}");
    let requests = mock.requests();
    // The Anthropic SDK at compat/messages, through the same translation.
    assert_eq!(
        v["messages"]["text"], "Bedrock mock reply to: hello messages",
        "{v}"
    );
    assert_eq!(v["messages"]["stop"], "end_turn", "{v}");
    assert_eq!(
        v["messages_stream"]["text"], "Bedrock mock reply to: stream messages",
        "{v}"
    );
    assert!(v["messages_stream"]["out"].as_u64().unwrap() > 0, "{v}");
    let compat: Vec<&serde_json::Value> = requests.iter().skip(1).collect();
    assert_eq!(compat.len(), 7);
    assert_eq!(
        compat[1]["path"],
        "/bedrock-runtime/us-east-1/model/amazon.nova-lite-v1%3A0/converse-stream"
    );
    let after = body_of(compat[4]);
    assert_eq!(
        after["messages"][2]["content"][0]["toolResult"]["content"][0]["text"], "18 degrees",
        "{after}"
    );
    assert!(gw.stop());
    let entries = log_entries(&gw.data_dir());
    let e = &entries[0];
    assert_eq!(e["status"], 200, "{e}");
    let streamed = entries.iter().find(|e| e["streamed"] == true).unwrap();
    assert!(streamed["tokens_out"].as_u64().unwrap() > 0, "{streamed}");
    assert_eq!(e["tokens_in"], v["input"]);
    assert_eq!(e["tokens_out"], v["output"]);
    let want = (v["input"].as_f64().unwrap() * 0.06 + v["output"].as_f64().unwrap() * 0.24) / 1e6;
    assert!((e["cost"].as_f64().unwrap() - want).abs() < 1e-15, "{e}");
}

/// Google's google-genai SDK through the google-ai-studio route: generate, stream and a function
/// call pass through in Gemini's own shape, and are logged and billed from `usageMetadata`.
pub async fn gemini_passes_through_for_google_genai_and_translates_for_the_openai_sdk() {
    let mock = Mock::start().await;
    let cfg = format!(
        "[providers.google-ai-studio]\nbase_url = \"http://{}\"\n[gateways.gw]\npipeline = [\"logging\"]\n",
        mock.addr
    );
    let mut gw = Gateway::start(&cfg, &[]);
    let base = gw.url("/v1/acct/gw");
    let v = run_script("gemini_sdk.py", base).await;
    assert_eq!(
        v["text"], "Gemini mock reply to: hello gemini passthrough",
        "{v}"
    );
    assert_eq!(
        v["streamed"], "Gemini mock reply to: stream gemini please",
        "{v}"
    );
    assert_eq!(v["call"]["name"], "get_weather", "{v}");
    assert_eq!(v["call"]["args"]["city"], "Paris", "{v}");
    let seen = mock.requests();
    // google-genai picks the API version (`v1` in 3.x, `v1beta` before): the path passes as sent.
    assert!(
        seen[0]["path"]
            .as_str()
            .unwrap()
            .ends_with("/models/gemini-2.0-flash:generateContent"),
        "{}",
        seen[0]["path"]
    );
    assert_eq!(seen[0]["headers"]["x-goog-api-key"], "goog-client-key");
    assert!(
        seen[1]["path"]
            .as_str()
            .unwrap()
            .ends_with("/models/gemini-2.0-flash:streamGenerateContent"),
        "{}",
        seen[1]["path"]
    );
    assert_eq!(seen[1]["query"], "alt=sse");
    // The OpenAI SDK at the compat endpoint, translated to Gemini's own API and back.
    assert_eq!(
        v["compat"]["text"], "Gemini mock reply to: hello gemini through compat",
        "{v}"
    );
    assert_eq!(v["compat"]["finish"], "stop");
    assert!(v["compat"]["in"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(
        v["compat_stream"]["text"], "Gemini mock reply to: stream gemini through compat",
        "{v}"
    );
    assert_eq!(v["compat_stream"]["finish"], "stop");
    assert!(v["compat_stream"]["usage"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["compat_tool"]["name"], "get_weather", "{v}");
    assert_eq!(v["compat_tool"]["args"]["city"], "Paris", "{v}");
    assert_eq!(v["compat_tool"]["finish"], "tool_calls");
    assert_eq!(
        v["compat_after_tool"], "Gemini mock reply to: ",
        "the turn after the tool's result is answered: {v}"
    );
    assert_eq!(
        v["compat_responses"]["text"], "Gemini mock reply to: hello responses to gemini",
        "{v}"
    );
    assert_eq!(v["compat_responses"]["status"], "completed", "{v}");
    assert_eq!(
        v["compat_responses_stream"]["text"], "Gemini mock reply to: stream responses to gemini",
        "{v}"
    );
    assert_eq!(
        v["compat_responses_stream"]["text"], v["compat_responses_stream"]["final"],
        "{v}"
    );
    assert_eq!(v["compat_responses_tool"]["name"], "get_weather", "{v}");
    assert_eq!(
        v["compat_responses_tool"]["arguments"]["city"], "Paris",
        "{v}"
    );
    let compat: Vec<&serde_json::Value> = seen
        .iter()
        .filter(|r| r["headers"]["x-goog-api-key"] == "goog-through-compat")
        .collect();
    assert_eq!(compat.len(), 7, "{seen:?}");
    assert_eq!(
        compat[0]["path"],
        "/v1beta/models/gemini-2.0-flash:generateContent"
    );
    assert!(compat[0]["headers"].get("authorization").is_none());
    let first = body_of(compat[0]);
    assert_eq!(first["systemInstruction"]["parts"][0]["text"], "be brief");
    assert_eq!(compat[1]["query"], "alt=sse");
    let after = body_of(compat[3]);
    assert_eq!(
        after["contents"][2]["parts"][0]["functionResponse"]["response"]["temp"], "18 degrees",
        "{after}"
    );
    // The Anthropic SDK at compat/messages, through the same translation.
    assert_eq!(
        v["messages"]["text"], "Gemini mock reply to: hello messages",
        "{v}"
    );
    assert_eq!(v["messages"]["stop"], "end_turn", "{v}");
    assert!(v["messages"]["in"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(
        v["messages_stream"]["text"], "Gemini mock reply to: stream messages",
        "{v}"
    );
    assert_eq!(v["messages_stream"]["stop"], "end_turn", "{v}");
    assert!(v["messages_stream"]["out"].as_u64().unwrap() > 0, "{v}");
    assert!(gw.stop());
    let entries = log_entries(&gw.data_dir());
    assert_eq!(entries.len(), 12, "{} entries", entries.len());
    let first = &entries[0];
    assert_eq!(first["model"], "gemini-2.0-flash");
    assert_eq!(first["tokens_in"], v["usage"]["in"]);
    assert_eq!(first["tokens_out"], v["usage"]["out"]);
    let want = (v["usage"]["in"].as_f64().unwrap() * 0.1
        + v["usage"]["out"].as_f64().unwrap() * 0.4)
        / 1e6;
    assert!(
        (first["cost"].as_f64().unwrap() - want).abs() < 1e-15,
        "{first}"
    );
    let streamed = entries.iter().find(|e| e["streamed"] == true).unwrap();
    assert!(streamed["tokens_out"].as_u64().unwrap() > 0, "{streamed}");
}
