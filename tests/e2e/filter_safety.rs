//! Safe by default and loud when wrong: a filter's declared `on_error`, panic messages in
//! the log and `/api/plugins`, per-stage health there, limits that keep their count when
//! the limit changes and are per gateway, a log id on every answer, analytics by metadata.

use crate::analytics::admin;
use crate::harness::*;
use hyper::{Method, StatusCode};
use serde_json::Value;

const ADMIN: &str = "admin_listen = \"127.0.0.1:0\"\nadmin_token = \"adm1n\"\n";

fn custom_gateway(mock: &Mock, table: &str) -> Gateway {
    let dir = prepare_with_server(
        ADMIN,
        &format!(
            "{}[gateways.gw]\npipeline = [\"logging\", \"custom\"]\n[gateways.gw.filters.custom]\n{table}",
            mock.providers_toml()
        ),
        &[("custom", &test_filter_wasm())],
    );
    Gateway::start_in(dir)
}

async fn plugin(gw: &Gateway, name: &str) -> Value {
    let status = admin(gw, Method::GET, "/api/plugins", "").await.json();
    status["plugins"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("no plugin {name} in {status}"))
}

/// The test filter declares nothing about failures, and the SDK's default is closed: a
/// panic refuses the request. The client is told the filter panicked, not the panic's
/// text; the gateway log and `/api/plugins` have the text and where it was raised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_fails_closed_by_default_and_its_message_reaches_log_and_api() {
    let mock = Mock::start().await;
    let gw = custom_gateway(&mock, "mode = \"trap\"\ncircuit_failures = 2\n");
    let url = gw.url("/v1/acct/gw/openai/chat/completions");
    let r = send(&url, &[], &chat("x", false)).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text());
    let msg = r.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(msg.contains("the filter panicked"), "{msg}");
    assert!(
        !msg.contains("trapped on purpose"),
        "panic text sent to the client: {msg}"
    );
    assert!(
        mock.requests().is_empty(),
        "a failed policy let the request through"
    );
    let id = r.header("cf-aig-log-id").unwrap_or("").to_string();
    assert_eq!(id.len(), 32, "{:?}", r.headers);

    // The gateway's log is written by another process: give it a moment to land.
    let mut logs = String::new();
    for _ in 0..100 {
        logs = gw.logs();
        if logs.contains("filter panicked") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let line = logs
        .lines()
        .find(|l| l.contains("filter panicked"))
        .unwrap_or_else(|| panic!("no panic line in the log:\n{logs}"));
    assert!(line.contains("test filter trapped on purpose"), "{line}");
    assert!(line.contains("src/lib.rs:"), "no location: {line}");
    assert!(line.contains(&id), "no request id: {line}");

    let p = plugin(&gw, "custom").await;
    assert_eq!(p["declared_on_error"], "closed", "{p}");
    assert_eq!(p["status"], "failing", "{p}");
    let stage = &p["stages"][0];
    assert_eq!(stage["gateway"], "gw", "{p}");
    assert_eq!(stage["on_error"], "closed", "{p}");
    assert_eq!(stage["health"]["failures_total"], 1, "{p}");
    assert_eq!(stage["health"]["circuit"], "closed", "{p}");
    let last = &stage["health"]["last_error"];
    assert_eq!(last["request_id"], id.as_str(), "{p}");
    let text = last["message"].as_str().unwrap_or("");
    assert!(
        text.contains("panicked: test filter trapped on purpose at ")
            && text.contains("src/lib.rs:"),
        "{p}"
    );

    // A second failure opens the circuit; an open circuit of a closed filter refuses too.
    let r = send(&url, &[], &chat("x", false)).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text());
    let r = send(&url, &[], &chat("x", false)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert!(r.header("cf-aig-log-id").is_some(), "{:?}", r.headers);
    assert!(mock.requests().is_empty());
    let p = plugin(&gw, "custom").await;
    assert_eq!(p["stages"][0]["health"]["circuit"], "open", "{p}");
    assert_eq!(p["stages"][0]["health"]["failures_in_a_row"], 2, "{p}");
    // The logging filter (an observer) declared open.
    assert_eq!(plugin(&gw, "logging").await["declared_on_error"], "open");
    // The dashboard's filter table shows the same.
    let page = admin(&gw, Method::GET, "/dashboard?gateway=gw", "")
        .await
        .text();
    let table = page.split("id=filters").nth(1).unwrap_or("");
    assert!(
        table.contains("<td>failing</td><td>closed</td><td>open</td><td>2 / 2</td>")
            && table.contains("test filter trapped on purpose"),
        "{table}"
    );
}

/// The gateway's table overrides what the filter declared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_overrides_the_declared_on_error() {
    let mock = Mock::start().await;
    let gw = custom_gateway(&mock, "mode = \"trap\"\non_error = \"open\"\n");
    let r = send(
        &gw.url("/v1/acct/gw/openai/chat/completions"),
        &[],
        &chat("x", false),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let p = plugin(&gw, "custom").await;
    assert_eq!(p["stages"][0]["on_error"], "open", "{p}");
    assert_eq!(p["declared_on_error"], "closed", "{p}");
}

fn limits_config(mock: &Mock, limit_a: u32, technique: &str) -> String {
    let table = |limit: u32| {
        format!(
            "limit = {limit}\nperiod_s = 3600\nkey = \"header:x-user\"\ntechnique = \"{technique}\"\n"
        )
    };
    format!(
        "{}[gateways.a]\npipeline = [\"rate-limit\", \"logging\"]\n[gateways.a.filters.rate-limit]\n{}\
         [gateways.b]\npipeline = [\"rate-limit\", \"logging\"]\n[gateways.b.filters.rate-limit]\n{}",
        mock.providers_toml(),
        table(limit_a),
        table(2)
    )
}

async fn statuses(gw: &Gateway, gateway: &str, n: usize) -> Vec<u16> {
    let url = gw.url(&format!("/v1/acct/{gateway}/openai/chat/completions"));
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(
            send(&url, &[("x-user", "ada")], &chat("x", false))
                .await
                .status
                .as_u16(),
        );
    }
    out
}

/// Two gateways running rate-limit with the same key count apart; raising a limit on a
/// reload keeps what was counted (before, the limit was part of the counter key and a
/// change gave everyone a fresh quota). Fixed and sliding windows alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_per_gateway_and_keep_their_count_when_the_limit_changes() {
    let mock = Mock::start().await;
    for technique in ["fixed", "sliding"] {
        let dir = prepare_with_server(ADMIN, &limits_config(&mock, 2, technique), &[]);
        let gw = Gateway::start_in(dir);
        assert_eq!(statuses(&gw, "a", 3).await, [200, 200, 429], "{technique}");
        assert_eq!(
            statuses(&gw, "b", 2).await,
            [200, 200],
            "{technique}: b shares a's count"
        );

        std::fs::write(gw.config_file(), {
            let text = std::fs::read_to_string(gw.config_file()).unwrap();
            text.replacen("limit = 2\n", "limit = 3\n", 1)
        })
        .unwrap();
        let reload = admin(&gw, Method::POST, "/api/reload", "").await;
        assert_eq!(reload.status, StatusCode::OK, "{}", reload.text());
        assert_eq!(
            statuses(&gw, "a", 2).await,
            [200, 429],
            "{technique}: raising 2 -> 3 must allow one more, not a fresh 3"
        );
    }
}

/// A filter's own refusal carries `cf-aig-log-id`, also when `logging` comes after the
/// refusing filter, and the id finds the refusal's log entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filters_refusal_carries_the_log_id_of_its_entry() {
    let mock = Mock::start().await;
    let dir = prepare_with_server(ADMIN, &limits_config(&mock, 1, "fixed"), &[]);
    let gw = Gateway::start_in(dir);
    let url = gw.url("/v1/acct/a/openai/chat/completions");
    let ok = send(&url, &[("x-user", "bo")], &chat("x", false)).await;
    assert_eq!(ok.status, StatusCode::OK);
    let refused = send(&url, &[("x-user", "bo")], &chat("x", false)).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    let id = refused
        .header("cf-aig-log-id")
        .unwrap_or_else(|| panic!("no log id on the 429: {:?}", refused.headers))
        .to_string();
    assert_ne!(Some(id.as_str()), ok.header("cf-aig-log-id"));
    let mut entry = Value::Null;
    for _ in 0..100 {
        let r = admin(&gw, Method::GET, &format!("/api/gateways/a/logs/{id}"), "").await;
        if r.status == StatusCode::OK {
            entry = r.json();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(entry["status"], 429, "{entry}");
}

/// Analytics group by a metadata field a filter annotated (`group_by=meta.<key>`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_group_by_metadata() {
    let mock = Mock::start().await;
    let dir = prepare_with_server(ADMIN, &limits_config(&mock, 100, "fixed"), &[]);
    let gw = Gateway::start_in(dir);
    let url = gw.url("/v1/acct/a/openai/chat/completions");
    for team in ["search", "search", "ads"] {
        let meta = format!("{{\"team\":\"{team}\"}}");
        let r = send(
            &url,
            &[("x-user", "c"), ("cf-aig-metadata", &meta)],
            &chat("x", false),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    let mut groups = Vec::new();
    for _ in 0..100 {
        let a = admin(
            &gw,
            Method::GET,
            "/api/gateways/a/analytics?group_by=meta.team",
            "",
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        groups = a.json()["groups"].as_array().cloned().unwrap_or_default();
        let total: i64 = groups
            .iter()
            .map(|g| g["requests"].as_i64().unwrap_or(0))
            .sum();
        if total == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let count = |t: &str| {
        groups
            .iter()
            .find(|g| g["meta.team"] == t)
            .map(|g| g["requests"].clone())
    };
    assert_eq!(count("search"), Some(2.into()), "{groups:?}");
    assert_eq!(count("ads"), Some(1.into()), "{groups:?}");
    let bad = admin(
        &gw,
        Method::GET,
        "/api/gateways/a/analytics?group_by=meta.a%20b",
        "",
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text());
}

/// A virtual key's requests per minute belong to the key, wherever it calls: key-policy
/// counts them across gateways (a filter's own limits count per gateway).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keys_rate_limit_holds_across_gateways() {
    let mock = Mock::start().await;
    let providers = mock.providers_toml_with_keys();
    let dir = prepare_with_server(
        ADMIN,
        &format!(
            "{providers}[gateways.one]\nkeys = \"required\"\npipeline = [\"key-policy\", \"logging\"]\n\
             [gateways.two]\nkeys = \"required\"\npipeline = [\"key-policy\", \"logging\"]\n"
        ),
        &[],
    );
    let gw = Gateway::start_in(dir);
    let r = admin(
        &gw,
        Method::POST,
        "/api/keys",
        &serde_json::json!({"name": "k", "gateways": "*", "requests_per_minute": 3}).to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let bearer = format!("Bearer {}", r.json()["key"].as_str().unwrap_or(""));
    let auth = [("authorization", bearer.as_str())];
    let mut seen = Vec::new();
    for gateway in ["one", "two", "one", "two"] {
        let url = gw.url(&format!("/v1/acct/{gateway}/openai/chat/completions"));
        seen.push(send(&url, &auth, &chat("x", false)).await.status.as_u16());
    }
    assert_eq!(
        seen,
        [200, 200, 200, 429],
        "3 per minute for the key, not per gateway"
    );
}

/// A misspelt host key still reaches the filter (it may be the filter's own); when the
/// filter rejects it, the error names the host key meant.
#[test]
fn a_misspelt_host_key_is_named_when_the_filter_rejects_it() {
    let (ok, text) = check(
        "[gateways.g]\npipeline = [\"rate-limit\"]\n[gateways.g.filters.rate-limit]\n\
         limit = 5\nperiod_s = 60\ncircuit_failure = 3\n",
        &[],
    );
    assert!(!ok, "{text}");
    assert!(text.contains("circuit_failure"), "{text}");
    assert!(
        text.contains("'circuit_failure' is not a host key; did you mean 'circuit_failures'"),
        "{text}"
    );
}
