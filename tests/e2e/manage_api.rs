//! Cloudflare's gateway management API on the admin listener: a gateway created, changed and
//! deleted through it is written to the TOML (comments and hand-written parts kept) and
//! applied by a reload; its settings change what traffic sees; a hand edit not yet applied
//! is a 409, never overwritten; every change is recorded.

use crate::harness::*;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

const BASE: &str = "/client/v4/accounts/acct/ai-gateway";

async fn api(gw: &Gateway, method: Method, path: &str, body: Value) -> Reply {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    send_req(request(
        method,
        &gw.admin_url(&format!("{BASE}{path}")),
        &[
            ("authorization", "Bearer adm1n"),
            ("content-type", "application/json"),
        ],
        &body,
    ))
    .await
}

fn managed_gateway(mock: &Mock) -> Gateway {
    let dir = prepare_with_server(
        "admin_listen = \"127.0.0.1:0\"\nadmin_token = \"adm1n\"\n",
        &format!(
            "# Hand-written: this comment must survive API edits.\n{}\
             [gateways.legacy] # kept as written\npipeline = [\"logging\"]\n",
            mock.providers_toml()
        ),
        &[],
    );
    Gateway::start_in(dir)
}

async fn chat_status(gw: &Gateway, prompt: &str) -> (u16, Option<String>) {
    let r = send(
        &gw.url("/v1/acct/tutorial/openai/chat/completions"),
        &[],
        &chat(prompt, false),
    )
    .await;
    (
        r.status.as_u16(),
        r.header("cf-aig-cache-status").map(str::to_string),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_are_managed_through_the_toml_and_applied_live() {
    let mock = Mock::start().await;
    let gw = managed_gateway(&mock);

    // The tutorial's first step: create a gateway by name, with caching and a rate limit.
    let r = api(
        &gw,
        Method::POST,
        "/gateways",
        json!({"id": "tutorial", "cache_ttl": 300, "cache_invalidate_on_update": true,
               "collect_logs": true, "rate_limiting_interval": 60, "rate_limiting_limit": 3,
               "rate_limiting_technique": "fixed"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(v["result"]["cache_ttl"], 300, "{v}");
    assert_eq!(
        v["result"]["pipeline"],
        json!(["logging", "rate-limit", "cache"]),
        "{v}"
    );
    let file = std::fs::read_to_string(gw.config_file()).unwrap();
    assert!(file.starts_with("[server]"), "{file}");
    assert!(
        file.contains("# Hand-written: this comment must survive API edits."),
        "{file}"
    );
    assert!(
        file.contains("[gateways.legacy] # kept as written"),
        "{file}"
    );
    assert!(
        file.contains("[gateways.tutorial.filters.cache]\nttl_s = 300"),
        "{file}"
    );

    // Live at once: a miss then a hit, then the limit of 3.
    assert_eq!(chat_status(&gw, "same").await, (200, Some("MISS".into())));
    assert_eq!(chat_status(&gw, "same").await, (200, Some("HIT".into())));
    assert_eq!(chat_status(&gw, "other").await.0, 200);
    assert_eq!(chat_status(&gw, "more").await.0, 429);

    // Duplicates, unknown and unsupported fields are refused, naming the field.
    let r = api(&gw, Method::POST, "/gateways", json!({"id": "tutorial"})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
    assert_eq!(r.header("x-should-retry"), Some("false"));
    let r = api(
        &gw,
        Method::PUT,
        "/gateways/tutorial",
        json!({"colour": "red"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["errors"][0]["message"], "colour: unknown field");
    let r = api(
        &gw,
        Method::PUT,
        "/gateways/tutorial",
        json!({"logpush": true}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.text().contains("logpush: not supported by aigw"),
        "{}",
        r.text()
    );

    // Update: the cache is invalidated (cache_invalidate_on_update), the limit raised.
    let r = api(
        &gw,
        Method::PUT,
        "/gateways/tutorial",
        json!({"cache_ttl": 60, "rate_limiting_limit": 10, "rate_limiting_interval": 60}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(chat_status(&gw, "same").await, (200, Some("MISS".into())));

    // A hand edit the gateway has not applied (here: one its filter rejects, so the watcher's
    // reload fails and the running configuration stays) is never overwritten: 409.
    let file = std::fs::read_to_string(gw.config_file()).unwrap();
    let hand = format!("{file}\n[gateways.legacy.filters.logging]\ncollect_logs = 1\n");
    std::fs::write(gw.config_file(), &hand).unwrap();
    let r = api(
        &gw,
        Method::PUT,
        "/gateways/tutorial",
        json!({"cache_ttl": 30}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
    assert_eq!(r.header("x-should-retry"), Some("false"));
    assert_eq!(std::fs::read_to_string(gw.config_file()).unwrap(), hand);
    std::fs::write(gw.config_file(), &file).unwrap();

    // Browsers cannot be turned against it: JSON only, same origin, a loopback Host.
    let form = send_req(request(
        Method::POST,
        &gw.admin_url(&format!("{BASE}/gateways")),
        &[
            ("authorization", "Bearer adm1n"),
            ("content-type", "text/plain"),
        ],
        r#"{"id":"sneaky"}"#,
    ))
    .await;
    assert_eq!(
        form.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "{}",
        form.text()
    );
    let cross = send_req(request(
        Method::POST,
        &gw.admin_url(&format!("{BASE}/gateways")),
        &[
            ("authorization", "Bearer adm1n"),
            ("content-type", "application/json"),
            ("origin", "http://evil.example"),
        ],
        r#"{"id":"sneaky"}"#,
    ))
    .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN, "{}", cross.text());
    let rebound = send_req(request(
        Method::GET,
        &gw.admin_url(&format!("{BASE}/gateways")),
        &[
            ("authorization", "Bearer adm1n"),
            ("host", "evil.example:80"),
        ],
        "",
    ))
    .await;
    assert_eq!(rebound.status, StatusCode::FORBIDDEN, "{}", rebound.text());
    assert!(
        !std::fs::read_to_string(gw.config_file())
            .unwrap()
            .contains("sneaky")
    );

    // Every change is recorded.
    let r = api(&gw, Method::GET, "/gateways/tutorial/changes", Value::Null).await;
    let changes = r.json()["result"].as_array().cloned().unwrap_or_default();
    let actions: Vec<&str> = changes
        .iter()
        .filter_map(|c| c["action"].as_str())
        .collect();
    assert!(actions.ends_with(&["update", "create"]), "{changes:?}");
    assert!(
        changes[0]["actor"]
            .as_str()
            .unwrap_or("")
            .contains("127.0.0.1"),
        "{changes:?}"
    );

    // Delete: gone from the file and from the data plane.
    let reload = admin_reload(&gw).await;
    assert_eq!(reload.status, StatusCode::OK, "{}", reload.text());
    let r = api(&gw, Method::DELETE, "/gateways/tutorial", Value::Null).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["result"]["id"], "tutorial");
    assert!(
        !std::fs::read_to_string(gw.config_file())
            .unwrap()
            .contains("[gateways.tutorial]")
    );
    assert_eq!(chat_status(&gw, "x").await.0, 404);
    let r = api(&gw, Method::GET, "/gateways/tutorial", Value::Null).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["success"], false);
}

async fn admin_reload(gw: &Gateway) -> Reply {
    send_req(request(
        Method::POST,
        &gw.admin_url("/api/reload"),
        &[("authorization", "Bearer adm1n")],
        "",
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_listed_filtered_and_deleted_the_cloudflare_way() {
    let mock = Mock::start().await;
    let gw = managed_gateway(&mock);
    let url = gw.url("/v1/acct/legacy/openai/chat/completions");
    for n in 0..3 {
        let meta = format!("{{\"team\":\"{}\"}}", if n == 0 { "ads" } else { "search" });
        let r = send(
            &url,
            &[("cf-aig-metadata", &meta)],
            &chat(&format!("q{n}"), false),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let mut page = Value::Null;
    for _ in 0..100 {
        page = api(
            &gw,
            Method::GET,
            "/gateways/legacy/logs?per_page=2",
            Value::Null,
        )
        .await
        .json();
        if page["result_info"]["total_count"] == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(page["result_info"]["total_count"], 3, "{page}");
    assert_eq!(page["result"].as_array().map(Vec::len), Some(2), "{page}");
    let log = page["result"][0].clone();
    assert!(
        log["created_at"].as_str().unwrap_or("").ends_with('Z'),
        "{log}"
    );
    assert_eq!(log["provider"], "openai");
    let id = log["id"].as_str().unwrap_or("").to_string();

    let p2 = api(
        &gw,
        Method::GET,
        "/gateways/legacy/logs?per_page=2&page=2",
        Value::Null,
    )
    .await
    .json();
    assert_eq!(p2["result"].as_array().map(Vec::len), Some(1), "{p2}");
    let p3 = api(
        &gw,
        Method::GET,
        "/gateways/legacy/logs?per_page=2&page=3",
        Value::Null,
    )
    .await
    .json();
    assert_eq!(
        p3["result"],
        json!([]),
        "a page past the end is empty: {p3}"
    );

    let ads = api(
        &gw,
        Method::GET,
        "/gateways/legacy/logs?filters.key=metadata.value&filters.operator=eq&filters.value=ads",
        Value::Null,
    )
    .await
    .json();
    assert_eq!(ads["result_info"]["total_count"], 1, "{ads}");

    let r = api(
        &gw,
        Method::PATCH,
        &format!("/gateways/legacy/logs/{id}"),
        json!({"feedback": 1, "score": 80, "metadata": null}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let liked = api(
        &gw,
        Method::GET,
        "/gateways/legacy/logs?feedback=1",
        Value::Null,
    )
    .await
    .json();
    assert_eq!(liked["result_info"]["total_count"], 1, "{liked}");

    let body = api(
        &gw,
        Method::GET,
        &format!("/gateways/legacy/logs/{id}/request"),
        Value::Null,
    )
    .await;
    assert_eq!(body.header("content-type"), Some("application/json"));
    assert!(body.json()["messages"].is_array(), "{}", body.text());

    let r = api(
        &gw,
        Method::DELETE,
        "/gateways/legacy/logs?filters.key=metadata.value&filters.operator=eq&filters.value=search",
        Value::Null,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["result"]["deleted"], 2);
    let left = api(&gw, Method::GET, "/gateways/legacy/logs", Value::Null)
        .await
        .json();
    assert_eq!(left["result_info"]["total_count"], 1, "{left}");

    let r = api(
        &gw,
        Method::GET,
        "/gateways/legacy/logs?filters.key=colour&filters.operator=eq&filters.value=x",
        Value::Null,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.json()["errors"][0]["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("filters.key: 'colour'")
    );
}

/// Requests of `gateway` in the analytics (the rollups count every request, stored or not).
async fn served(gw: &Gateway, gateway: &str, want: i64) -> i64 {
    let mut n = -1;
    for _ in 0..100 {
        let r = crate::analytics::admin(
            gw,
            Method::GET,
            &format!("/api/gateways/{gateway}/analytics"),
            "",
        )
        .await
        .json();
        n = r["totals"]["requests"].as_i64().unwrap_or(-1);
        if n == want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    n
}

/// The prompts of the stored entries, oldest first.
async fn stored_prompts(gw: &Gateway, gateway: &str) -> Vec<String> {
    let page = api(
        gw,
        Method::GET,
        &format!("/gateways/{gateway}/logs?order_by_direction=asc&per_page=50"),
        Value::Null,
    )
    .await
    .json();
    let mut out = Vec::new();
    for log in page["result"].as_array().cloned().unwrap_or_default() {
        let id = log["id"].as_str().unwrap_or("").to_string();
        let body = api(
            gw,
            Method::GET,
            &format!("/gateways/{gateway}/logs/{id}/request"),
            Value::Null,
        )
        .await
        .json();
        out.push(
            body["messages"][0]["content"]
                .as_str()
                .unwrap_or("?")
                .to_string(),
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_keeps_at_most_its_log_limit_the_cloudflare_way() {
    let mock = Mock::start().await;
    let gw = managed_gateway(&mock);
    let r = api(
        &gw,
        Method::POST,
        "/gateways",
        json!({"id": "capped", "collect_logs": true, "log_management": 2,
               "log_management_strategy": "STOP_INSERTING"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!(v["result"]["log_management"], 2, "{v}");
    assert_eq!(
        v["result"]["log_management_strategy"], "STOP_INSERTING",
        "{v}"
    );
    let file = std::fs::read_to_string(gw.config_file()).unwrap();
    assert!(
        file.contains(
            "[gateways.capped.filters.logging]\nmax_entries = 2\nwhen_full = \"stop_inserting\""
        ),
        "{file}"
    );
    let url = gw.url("/v1/acct/capped/openai/chat/completions");
    let mut sent = 0;
    let mut ask = |prompt: String| {
        sent += 1;
        let url = url.clone();
        async move {
            let r = send(&url, &[], &chat(&prompt, false)).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        }
    };
    for n in 0..4 {
        ask(format!("first {n}")).await;
    }
    // All four are counted; only the first two are kept.
    assert_eq!(served(&gw, "capped", 4).await, 4);
    assert_eq!(stored_prompts(&gw, "capped").await, ["first 0", "first 1"]);

    // A larger limit that deletes the oldest: the newest three stay.
    let r = api(
        &gw,
        Method::PUT,
        "/gateways/capped",
        json!({"log_management": 3, "log_management_strategy": "DELETE_OLDEST"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    for n in 0..2 {
        ask(format!("then {n}")).await;
    }
    assert_eq!(served(&gw, "capped", 6).await, 6);
    let mut kept = Vec::new();
    for _ in 0..100 {
        kept = stored_prompts(&gw, "capped").await;
        if kept == ["first 1", "then 0", "then 1"] {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(kept, ["first 1", "then 0", "then 1"]);

    // No limit: the keys leave the file.
    let r = api(
        &gw,
        Method::PUT,
        "/gateways/capped",
        json!({"log_management": null}),
    )
    .await;
    assert_eq!(r.json()["result"]["log_management"], Value::Null);
    let file = std::fs::read_to_string(gw.config_file()).unwrap();
    assert!(!file.contains("max_entries"), "{file}");
    assert_eq!(sent, 6);
}
