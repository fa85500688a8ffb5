//! The Vercel AI SDK (Node) against the gateway, base URL swapped: its default calls use the
//! OpenAI Responses API; and Cloudflare's TypeScript SDK against the management API. Needs Node and `npm ci` in `tests/sdk/node` (what
//! `scripts/test-deps.sh` does); the runner (`main.rs`) skips these tests without them.

use crate::harness::*;
use std::path::PathBuf;
use std::process::Command;

fn sdk_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/sdk/node")
}

/// `node`, when it runs and the SDK packages are installed.
pub fn node() -> Option<PathBuf> {
    let installed = sdk_dir().join("node_modules/ai/package.json").is_file()
        && sdk_dir()
            .join("node_modules/@ai-sdk/openai/package.json")
            .is_file()
        && sdk_dir()
            .join("node_modules/cloudflare/package.json")
            .is_file();
    let runs = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    (installed && runs).then(|| PathBuf::from("node"))
}

/// `generateText`, `streamText` and `embedMany` work unmodified, and each log entry has the
/// tokens the SDK itself reports and their cost at the published prices.
pub async fn vercel_ai_sdk_default_calls_work_and_are_billed_exactly() {
    let node = node().expect("the runner checked for node and the SDK");
    let mock = Mock::start().await;
    let cfg = format!(
        "{}[gateways.gw]\npipeline = [\"logging\"]\n",
        mock.providers_toml()
    );
    let mut gw = Gateway::start(&cfg, &[]);
    let base = gw.url("/v1/acct/gw/openai");
    let script = sdk_dir().join("vercel_ai.mjs");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(node)
            .arg(script)
            .arg(base)
            .current_dir(sdk_dir())
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
        v["generated"]
            .as_str()
            .unwrap()
            .contains("hello from the vercel sdk"),
        "{v}"
    );
    assert!(
        v["streamed"]
            .as_str()
            .unwrap()
            .contains("stream from the vercel sdk"),
        "{v}"
    );
    assert_eq!(v["embeddings"], 2, "{v}");
    let seen = mock.requests();
    let paths: Vec<&str> = seen.iter().map(|r| r["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["/v1/responses", "/v1/responses", "/v1/embeddings"]);
    assert_eq!(
        seen[0]["headers"]["authorization"],
        "Bearer sk-vercel-ai-sdk"
    );
    assert!(gw.stop());
    let entries = log_entries(&gw.data_dir());
    assert_eq!(entries.len(), 3, "{entries:#?}");
    // gpt-4o-mini: $0.15 / $0.60 per million; text-embedding-3-small: $0.02.
    for (usage, streamed) in [("generated_usage", false), ("streamed_usage", true)] {
        let u = &v[usage];
        let (i, o) = (
            u["inputTokens"].as_f64().unwrap(),
            u["outputTokens"].as_f64().unwrap(),
        );
        let entry = entries
            .iter()
            .find(|e| e["path"] == "/responses" && e["streamed"] == streamed)
            .unwrap_or_else(|| panic!("{usage}: no entry in {entries:#?}"));
        assert_eq!(entry["tokens_in"].as_f64(), Some(i), "{usage}: {entry}");
        assert_eq!(entry["tokens_out"].as_f64(), Some(o), "{usage}: {entry}");
        let want = (i * 0.15 + o * 0.6) / 1e6;
        let got = entry["cost"].as_f64().unwrap();
        assert!((got - want).abs() < 1e-12, "{usage}: {got} vs {want}");
    }
    let tokens = v["embedded_usage"]["tokens"].as_f64().unwrap();
    let entry = entries.iter().find(|e| e["path"] == "/embeddings").unwrap();
    assert_eq!(entry["tokens_in"].as_f64(), Some(tokens), "{entry}");
    let got = entry["cost"].as_f64().unwrap();
    assert!((got - tokens * 0.02 / 1e6).abs() < 1e-12, "{got}");
}

/// Cloudflare's official TypeScript SDK (npm `cloudflare`), with only `baseURL` and `apiToken`
/// changed, manages gateways and logs (tests/sdk/node/cloudflare_sdk.mjs).
pub async fn cloudflare_typescript_sdk_manages_gateways_and_logs() {
    let node = node().expect("the runner checked for node and the SDKs");
    let mock = Mock::start().await;
    let dir = prepare_with_server(
        "admin_listen = \"127.0.0.1:0\"\nadmin_token = \"adm1n\"\n",
        &format!(
            "{}[gateways.default]\npipeline = [\"logging\"]\n",
            mock.providers_toml()
        ),
        &[],
    );
    let gw = Gateway::start_in(dir);
    let base = gw.admin_url("/client/v4");
    let prefix = gw.url("/v1/ts-account");
    let script = sdk_dir().join("cloudflare_sdk.mjs");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .arg("300")
            .arg(node)
            .arg(script)
            .args([base.as_str(), "adm1n", "ts-account", prefix.as_str()])
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cloudflare typescript sdk script failed:\n{stdout}\n{}\n--- gateway log\n{}",
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
}

/// Claude Code's native binary, installed by `npm ci` in `tests/sdk/node` (the platform
/// package, whose binary the wrapper package's install script would copy), when it runs.
pub fn claude_code() -> Option<PathBuf> {
    let scope = sdk_dir().join("node_modules/@anthropic-ai");
    let binary = std::fs::read_dir(&scope)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("claude-code-linux-"))
        })
        .map(|p| p.join("claude"))
        .find(|p| p.is_file())?;
    Command::new(&binary)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        .then_some(binary)
}

/// Claude Code, headless (`claude -p`), through the compat endpoint's Messages entry point to
/// a model of an OpenAI-shaped provider: the model asks for one Bash call (the mock does, told
/// by `ANTHROPIC_CUSTOM_HEADERS`), Claude Code runs it and sends the result back, the model
/// answers with it. Offline: telemetry and updates are off, everything is on loopback.
pub async fn claude_code_runs_a_tool_turn_through_the_gateway() {
    let claude = claude_code().expect("the runner checked for Claude Code");
    let mock = Mock::start().await;
    let cfg = format!(
        "{}[gateways.gw]\npipeline = [\"logging\"]\n",
        mock.providers_toml()
    );
    let mut gw = Gateway::start(&cfg, &[]);
    let base = gw.url("/v1/acct/gw/compat");
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let (home_path, work_path) = (home.path().to_path_buf(), work.path().to_path_buf());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(claude)
            .args([
                "-p",
                "run the marker command",
                "--model",
                "openai/gpt-4o-mini",
                "--allowedTools",
                "Bash(echo:*)",
            ])
            .current_dir(work_path)
            .env("HOME", home_path)
            .env("ANTHROPIC_BASE_URL", base)
            .env("ANTHROPIC_API_KEY", "sk-openai-for-claude-code")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_TELEMETRY", "1")
            .env("DISABLE_AUTOUPDATER", "1")
            .env(
                "ANTHROPIC_CUSTOM_HEADERS",
                "x-mock-tool-call: Bash\nx-mock-tool-args: {\"command\": \"echo tool-ran-$((6*7))\", \"description\": \"Print a marker\"}",
            )
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "claude failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The shell ran the command (it computed 42) and the model's answer carries its output.
    assert!(stdout.contains("tool-ran-42"), "{stdout}");
    let chats: Vec<serde_json::Value> = mock
        .requests()
        .iter()
        .filter(|r| r["path"] == "/v1/chat/completions")
        .map(body_of)
        .collect();
    assert!(chats.len() >= 2, "{chats:?}");
    assert_eq!(chats[0]["model"], "gpt-4o-mini");
    let last = chats.last().unwrap();
    let messages = last["messages"].as_array().unwrap();
    let result = messages.last().unwrap();
    assert_eq!(result["role"], "tool", "{last}");
    assert!(
        result["content"].as_str().unwrap().contains("tool-ran-42"),
        "{last}"
    );
    let call = &messages[messages.len() - 2];
    assert_eq!(call["tool_calls"][0]["function"]["name"], "Bash", "{last}");
    assert!(gw.stop());
    let entries = log_entries(&gw.data_dir());
    let turns = entries.iter().filter(|e| e["provider"] == "openai").count();
    assert!(turns >= 2, "{entries:#?}");
}

/// The Codex CLI, installed by `npm ci` in `tests/sdk/node`, when node runs its launcher.
pub fn codex() -> Option<PathBuf> {
    let launcher = sdk_dir().join("node_modules/@openai/codex/bin/codex.js");
    Command::new("node")
        .arg(&launcher)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        .then_some(launcher)
}

/// Codex (`codex exec`, headless) through the compat endpoint's Responses entry point to an
/// Anthropic model: the model asks for one `exec_command` call (the mock does, told by the
/// provider's `http_headers` in Codex's config), Codex runs it in its sandbox and sends the
/// output back, the model answers with it. Offline: everything is on loopback.
pub async fn codex_runs_a_tool_turn_through_the_gateway() {
    let codex = codex().expect("the runner checked for Codex");
    let mock = Mock::start().await;
    let cfg = format!(
        "{}[gateways.gw]\npipeline = [\"logging\"]\n",
        mock.providers_toml()
    );
    let mut gw = Gateway::start(&cfg, &[]);
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".codex")).unwrap();
    std::fs::write(
        home.path().join(".codex/config.toml"),
        format!(
            "model = \"anthropic/claude-3-5-haiku\"\nmodel_provider = \"aigw\"\n\n\
             [model_providers.aigw]\nname = \"aigw\"\nbase_url = \"{}\"\nenv_key = \"AIGW_KEY\"\n\
             wire_api = \"responses\"\nhttp_headers = {{ \"x-mock-tool-call\" = \"exec_command\", \
             \"x-mock-tool-args\" = \"{{\\\"cmd\\\": \\\"echo codex-ran-$((6*7))\\\"}}\" }}\n",
            gw.url("/v1/acct/gw/compat")
        ),
    )
    .unwrap();
    let (home_path, work_path) = (home.path().to_path_buf(), work.path().to_path_buf());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(codex)
            // The command is an echo in a temporary folder: no sandbox needed, so the test
            // does not depend on the machine allowing one.
            .args([
                "exec",
                "--skip-git-repo-check",
                "--sandbox",
                "danger-full-access",
                "run the marker command",
            ])
            .current_dir(work_path)
            .env("HOME", &home_path)
            .env("CODEX_HOME", home_path.join(".codex"))
            .env("AIGW_KEY", "sk-ant-for-codex")
            .stdin(std::process::Stdio::null())
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "codex failed:\n{stdout}\n{stderr}");
    // The shell ran the command (it computed 42), and the model's last answer carries its
    // output, sent back as an Anthropic tool_result.
    assert!(stdout.contains("codex-ran-42"), "{stdout}\n{stderr}");
    let turns: Vec<serde_json::Value> = mock
        .requests()
        .iter()
        .filter(|r| r["path"] == "/v1/messages")
        .map(body_of)
        .collect();
    assert!(turns.len() >= 2, "{turns:?}");
    assert_eq!(turns[0]["model"], "claude-3-5-haiku");
    assert!(
        turns[0]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "exec_command"),
        "{}",
        turns[0]
    );
    let last = turns.last().unwrap()["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["content"][0]["type"], "tool_result", "{last}");
    assert!(
        last["content"][0]["content"]
            .as_str()
            .unwrap()
            .contains("codex-ran-42"),
        "{last}"
    );
    assert_eq!(
        mock.requests()[0]["headers"]["x-api-key"],
        "sk-ant-for-codex"
    );
    assert!(gw.stop());
    let entries = log_entries(&gw.data_dir());
    assert!(
        entries
            .iter()
            .filter(|e| e["provider"] == "anthropic")
            .count()
            >= 2,
        "{entries:#?}"
    );
}
