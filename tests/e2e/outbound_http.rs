//! A filter's outbound HTTP (`http-client`): only to the origins its table grants, with a
//! secret from the environment that never shows (masked in the filter's errors, counted but
//! not listed by `/api/plugins`), and every call counted in `/metrics`.

use crate::harness::*;
use hyper::{Method, StatusCode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_calls_only_the_origins_its_table_grants() {
    let mock = Mock::start().await;
    let target = format!("http://{}/v1/chat/completions", mock.addr);
    let config = format!(
        "{providers}\
         [gateways.granted]\npipeline = [\"probe\"]\n\
         [gateways.granted.filters.probe]\nmode = \"fetch\"\nurl = \"{target}\"\n\
         token = {{ env = \"AIGW_TEST_PROBE_TOKEN\" }}\nallow_http = [\"http://{addr}\"]\n\
         [gateways.refused]\npipeline = [\"probe\"]\n\
         [gateways.refused.filters.probe]\nmode = \"fetch\"\nurl = \"{target}\"\n\
         allow_http = [\"https://moderation.example:8443\"]\n",
        providers = mock.providers_toml(),
        addr = mock.addr,
    );
    let dir = prepare_with_server(
        "admin_listen = \"127.0.0.1:0\"\nadmin_token = \"adm1n\"\n",
        &config,
        &[("probe", &test_filter_wasm())],
    );
    let gw = Gateway::start_with_env(dir, &[("AIGW_TEST_PROBE_TOKEN", "s3cret-probe-token")]);

    // Granted: the filter's call reaches the service, with the secret from the environment.
    let r = send(
        &gw.url("/v1/acct/granted/openai/chat/completions"),
        &[],
        &chat("hi", false),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["answer"]["object"], "chat.completion", "{v}");
    let calls: Vec<_> = mock
        .requests()
        .into_iter()
        .filter(|q| q["headers"]["authorization"] == "Bearer s3cret-probe-token")
        .collect();
    assert_eq!(calls.len(), 1, "{:?}", mock.requests());
    assert!(
        calls[0]["body"]
            .as_str()
            .unwrap_or("")
            .contains("asked by a filter")
    );

    // Not granted: the call fails with an error naming the origin; nothing is sent.
    let before = mock.requests().len();
    let r = send(
        &gw.url("/v1/acct/refused/openai/chat/completions"),
        &[],
        &chat("hi", false),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.text());
    let message = r.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        message.contains(&format!("origin http://{} is not granted", mock.addr))
            && message.contains("https://moderation.example:8443"),
        "{message}"
    );
    assert_eq!(mock.requests().len(), before);

    // Counted by outcome; /api/plugins shows the grants and only the number of secrets.
    let metrics = crate::analytics::admin(&gw, Method::GET, "/metrics", "")
        .await
        .text();
    assert!(
        metrics.contains("aigw_filter_http_requests_total{filter=\"probe\",outcome=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("aigw_filter_http_requests_total{filter=\"probe\",outcome=\"denied\"} 1"),
        "{metrics}"
    );
    let plugins = crate::analytics::admin(&gw, Method::GET, "/api/plugins", "")
        .await
        .text();
    assert!(!plugins.contains("s3cret-probe-token"), "{plugins}");
    let v: serde_json::Value = serde_json::from_str(&plugins).unwrap();
    let probe = v["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "probe")
        .cloned()
        .unwrap();
    let granted = probe["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["gateway"] == "granted")
        .cloned()
        .unwrap();
    assert_eq!(
        granted["capabilities"]["allow_http"][0],
        format!("http://{}", mock.addr),
        "{granted}"
    );
    assert_eq!(granted["capabilities"]["secrets"], 1, "{granted}");
    assert!(!gw.logs().contains("s3cret-probe-token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_in_a_filter_table_are_masked_and_bad_grants_are_named() {
    // The filter quotes its token when it refuses its table: the host masks it.
    let config = "[gateways.g]\npipeline = [\"probe\"]\n\
                  [gateways.g.filters.probe]\nmode = \"reject-token\"\n\
                  token = { env = \"AIGW_TEST_PROBE_TOKEN\" }\n";
    let dir = prepare(config, &[("probe", &test_filter_wasm())]);
    let out = aigw()
        .arg("check")
        .arg("--config")
        .arg(dir.path().join("aigw.toml"))
        .env("AIGW_TEST_PROBE_TOKEN", "s3cret-probe-token")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("token: '***' is not accepted"), "{text}");
    assert!(!text.contains("s3cret-probe-token"), "{text}");

    // A missing variable, an origin with a path, a non-http scheme: each named.
    for (table, want) in [
        (
            "token = { env = \"AIGW_TEST_UNSET_VARIABLE\" }",
            "gateways.g.filters.probe.token: environment variable AIGW_TEST_UNSET_VARIABLE is not set",
        ),
        (
            "allow_http = [\"https://m.example/v1\"]",
            "gateways.g.filters.probe.allow_http[0]: 'https://m.example/v1': an origin has no path",
        ),
        (
            "allow_http = [\"https://m.example:99999\"]",
            "gateways.g.filters.probe.allow_http[0]: 'https://m.example:99999': the port is not a number",
        ),
        (
            "token = { file = \"../secret.txt\" }",
            "gateways.g.filters.probe.token: secret file '../secret.txt': use a path inside the config file's folder",
        ),
        (
            "allow_http = [\"ftp://m.example\"]",
            "gateways.g.filters.probe.allow_http[0]: 'ftp://m.example': expected an http:// or https:// origin",
        ),
    ] {
        let config = format!(
            "[gateways.g]\npipeline = [\"probe\"]\n[gateways.g.filters.probe]\nmode = \"fetch\"\n{table}\n"
        );
        let (ok, text) = check(&config, &[("probe", &test_filter_wasm())]);
        assert!(!ok, "{table}: {text}");
        assert!(text.contains(want), "{table}: {text}");
    }
    // A key of the table itself named `env` is the filter's, not a secret reference.
    let (ok, text) = check(
        "[gateways.g]\npipeline = [\"probe\"]\n[gateways.g.filters.probe]\nmode = \"count\"\nenv = \"staging\"\n",
        &[("probe", &test_filter_wasm())],
    );
    assert!(ok, "{text}");
}

/// A filter that alternates short outbound calls with bursts of CPU work still meets its
/// `timeout_ms`: a wait moves the deadline but never erases the CPU used before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_on_outbound_http_do_not_erase_the_cpu_deadline() {
    let mock = Mock::start().await;
    let config = format!(
        "{providers}\
         [gateways.g]\npipeline = [\"probe\"]\n\
         [gateways.g.filters.probe]\nmode = \"fetch-loop\"\nurl = \"http://{addr}/v1/models\"\n\
         allow_http = [\"http://{addr}\"]\ntimeout_ms = 50\non_error = \"closed\"\n",
        providers = mock.providers_toml(),
        addr = mock.addr,
    );
    let dir = prepare(&config, &[("probe", &test_filter_wasm())]);
    let gw = Gateway::start_in(dir);
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        send(
            &gw.url("/v1/acct/g/openai/chat/completions"),
            &[],
            &chat("x", false),
        ),
    )
    .await
    .expect("the filter kept running past its deadline");
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text());
    let msg = r.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(msg.contains("deadline exceeded"), "{msg}");
    // It made calls before it was stopped.
    assert!(
        mock.requests().iter().any(|q| q["path"] == "/v1/models"),
        "{:?}",
        mock.requests()
    );
}
