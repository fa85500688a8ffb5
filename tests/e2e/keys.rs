//! Virtual keys: created, listed, rotated and revoked through the admin API and the command
//! line; a key identifies its caller in logs, analytics and metrics; the provider only ever
//! sees the gateway's stored key; the secret appears nowhere but in the creation answer.

use crate::analytics::admin;
use crate::harness::*;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Providers with stored keys, and four gateways: `gw` (keys required), `open` (optional),
/// `free` (off, the default) and `closed` (required, granted to no test key).
fn keyed_gateway(mock: &Mock) -> Gateway {
    let providers = mock.providers_toml_with_keys();
    let dir = prepare_with_server(
        "admin_listen = \"127.0.0.1:0\"\nadmin_token = \"adm1n\"\n",
        &format!(
            "{providers}[gateways.gw]\nkeys = \"required\"\npipeline = [\"logging\"]\n\
             [gateways.open]\nkeys = \"optional\"\npipeline = [\"logging\"]\n\
             [gateways.free]\npipeline = [\"logging\"]\n\
             [gateways.closed]\nkeys = \"required\"\npipeline = []\n"
        ),
        &[],
    );
    Gateway::start_in(dir)
}

fn chat_url(gw: &Gateway, gateway: &str) -> String {
    gw.url(&format!("/v1/acct/{gateway}/openai/chat/completions"))
}

async fn create(gw: &Gateway, path: &str, body: Value) -> Value {
    let r = admin(gw, Method::POST, path, &body.to_string()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    r.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_keys_identify_callers_and_only_stored_provider_keys_go_upstream() {
    let mock = Mock::start().await;
    let gw = keyed_gateway(&mock);

    // Keys and a team, through the admin API.
    let team = create(&gw, "/api/teams", json!({"name": "research"})).await;
    let team_id = team["id"].as_str().unwrap().to_string();
    let a = create(
        &gw,
        "/api/keys",
        json!({"name": "app-a", "gateways": ["gw", "open", "free"], "metadata": {"env": "prod"}}),
    )
    .await;
    let b = create(
        &gw,
        "/api/keys",
        json!({"name": "ada", "gateways": "*", "team": team_id}),
    )
    .await;
    let (a_key, a_id) = (a["key"].as_str().unwrap(), a["id"].as_str().unwrap());
    let (b_key, b_id) = (b["key"].as_str().unwrap(), b["id"].as_str().unwrap());
    assert!(a_key.starts_with("aigw-") && a_key.len() >= 5 + 43, "{a}");
    assert_ne!(a_key, b_key);
    assert_eq!(a["status"], "active");
    // Mistakes are refused naming the field.
    for (body, field) in [
        (json!({"name": "x"}), "gateways"),
        (json!({"name": "x", "gateways": ["nope"]}), "nope"),
        (
            json!({"name": "x", "gateways": "*", "colour": "red"}),
            "colour",
        ),
        (
            json!({"name": "x", "gateways": "*", "budget_usd": {"amount": 1, "period": "week"}}),
            "budget_usd.period",
        ),
        (
            json!({"name": "x", "gateways": "*", "team": "team_nope"}),
            "team",
        ),
    ] {
        let r = admin(&gw, Method::POST, "/api/keys", &body.to_string()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(r.text().contains(field), "{body}: {}", r.text());
    }

    // Required: no key, a wrong key, a key for another gateway: refused before the provider.
    let r = send(&chat_url(&gw, "gw"), &[], &chat("no key", false)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    assert!(r.text().contains("requires a virtual key"), "{}", r.text());
    let forged = format!("Bearer aigw-{}", "x".repeat(43));
    let r = send(
        &chat_url(&gw, "gw"),
        &[("authorization", &forged)],
        &chat("forged", false),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let bearer_a = format!("Bearer {a_key}");
    let r = send(
        &chat_url(&gw, "closed"),
        &[("authorization", &bearer_a)],
        &chat("closed", false),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert!(mock.requests().is_empty(), "nothing reached the provider");

    // A valid key: the provider gets the stored key, never the virtual one.
    let r = send(
        &chat_url(&gw, "gw"),
        &[("authorization", &bearer_a)],
        &chat("as app a", false),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = send(
        &gw.url("/v1/acct/gw/anthropic/v1/messages"),
        &[("x-api-key", b_key), ("anthropic-version", "2023-06-01")],
        &json!({"model": "claude-3-5-haiku", "max_tokens": 16,
                "messages": [{"role": "user", "content": "as ada"}]})
        .to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let seen = mock.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0]["headers"]["authorization"],
        "Bearer sk-stored-openai"
    );
    assert_eq!(seen[1]["headers"]["x-api-key"], "sk-ant-stored");
    assert!(
        !seen.iter().any(|s| s.to_string().contains("aigw-")),
        "{seen:?}"
    );

    // Optional: a client's own provider key still works; a virtual key is resolved.
    let r = send(
        &chat_url(&gw, "open"),
        &[("authorization", "Bearer sk-client-own")],
        &chat("own key", false),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        mock.requests()[2]["headers"]["authorization"],
        "Bearer sk-client-own"
    );
    let r = send(
        &chat_url(&gw, "open"),
        &[("api-key", a_key)],
        &chat("azure style", false),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        mock.requests()[3]["headers"]["authorization"],
        "Bearer sk-stored-openai"
    );
    // Off: a virtual key is refused, not forwarded.
    let r = send(
        &chat_url(&gw, "free"),
        &[("authorization", &bearer_a)],
        &chat("off", false),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    assert_eq!(mock.requests().len(), 4);

    // Log entries, the logs API and analytics know who called.
    let logs = crate::analytics::logs_once(&gw, 2, 100).await;
    assert_eq!(logs.len(), 2, "{logs:#?}");
    let by_a: Vec<&Value> = logs.iter().filter(|e| e["key_id"] == a_id).collect();
    assert_eq!(by_a.len(), 1);
    assert_eq!(by_a[0]["key_name"], "app-a");
    assert_eq!(by_a[0]["key_metadata"]["env"], "prod");
    let by_b = logs.iter().find(|e| e["key_id"] == b_id).unwrap();
    assert_eq!(
        (&by_b["team"], &by_b["team_name"]),
        (&json!(team_id), &json!("research"))
    );
    let page = admin(
        &gw,
        Method::GET,
        &format!("/api/gateways/gw/logs?key={b_id}"),
        "",
    )
    .await
    .json();
    assert_eq!(page["logs"].as_array().map(Vec::len), Some(1), "{page}");
    let page = admin(
        &gw,
        Method::GET,
        &format!("/api/gateways/gw/logs?team={team_id}"),
        "",
    )
    .await
    .json();
    assert_eq!(page["logs"][0]["key_id"], b_id, "{page}");
    let report = admin(
        &gw,
        Method::GET,
        "/api/gateways/gw/analytics?group_by=key",
        "",
    )
    .await
    .json();
    let groups = report["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{report}");
    assert!(
        groups
            .iter()
            .any(|g| g["key"] == a_id && g["requests"] == 1),
        "{report}"
    );
    let metrics = admin(&gw, Method::GET, "/metrics", "").await.text();
    assert!(
        metrics.contains(&format!(
            "aigw_key_requests_total{{key=\"{a_id}\",team=\"\"}} 2"
        )),
        "{metrics}"
    );

    // The dashboard breaks the hour down by key.
    let page = admin(&gw, Method::GET, "/dashboard?gateway=gw", "")
        .await
        .text();
    assert!(
        page.contains("By virtual key") && page.contains(a_id),
        "{page}"
    );

    // Listing shows prefixes and status, never a secret.
    let list = admin(&gw, Method::GET, "/api/keys", "").await;
    assert_eq!(list.json()["keys"].as_array().map(Vec::len), Some(2));
    let shown = admin(&gw, Method::GET, &format!("/api/keys/{a_id}"), "")
        .await
        .text();
    for text in [list.text(), shown] {
        assert!(!text.contains(a_key) && !text.contains(b_key), "{text}");
    }

    // Rotation: the new secret works at once, the old one not.
    let r = admin(
        &gw,
        Method::PATCH,
        &format!("/api/keys/{b_id}"),
        r#"{"rotate": true, "metadata": {"env": "staging"}}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let rotated = r.json();
    let new_b = rotated["key"].as_str().unwrap().to_string();
    assert_ne!(new_b, b_key);
    assert_eq!(rotated["metadata"]["env"], "staging");
    let r = send(
        &chat_url(&gw, "gw"),
        &[("x-api-key", b_key)],
        &chat("old secret", false),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = send(
        &chat_url(&gw, "gw"),
        &[("x-api-key", &new_b)],
        &chat("new secret", false),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);

    // The command line: create, list, show, revoke against the running gateway.
    let cli = |args: &[&str]| {
        let out = aigw()
            .args(args)
            .args(["--admin", &gw.admin_url(""), "--admin-token", "adm1n"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let c = cli(&[
        "keys",
        "create",
        "--name",
        "from-cli",
        "--gateways",
        "gw",
        "--models",
        "gpt-4o*",
        "--meta",
        "owner=ops",
    ]);
    let c_key = c["key"].as_str().unwrap().to_string();
    assert_eq!(c["models"], json!(["gpt-4o*"]));
    assert_eq!(
        cli(&["keys", "list"])["keys"].as_array().map(Vec::len),
        Some(3)
    );
    assert_eq!(
        cli(&["keys", "show", c["id"].as_str().unwrap()])["name"],
        "from-cli"
    );
    let r = send(
        &chat_url(&gw, "gw"),
        &[("authorization", &format!("Bearer {c_key}"))],
        &chat("cli key", false),
    )
    .await;
    // Its model list is a limit, and this gateway has no key-policy to enforce it.
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert!(r.text().contains("key-policy"), "{}", r.text());
    // Both headers carrying the same key: both are removed, the provider gets its own key.
    let r = send(
        &chat_url(&gw, "gw"),
        &[("authorization", &bearer_a), ("x-api-key", a_key)],
        &chat("twice", false),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let last = mock.requests().pop().unwrap();
    assert!(!last.to_string().contains("aigw-"), "{last}");

    // Revocation: refused within a second.
    assert_eq!(cli(&["keys", "revoke", a_id])["status"], "revoked");
    let r = send(
        &chat_url(&gw, "gw"),
        &[("authorization", &bearer_a)],
        &chat("revoked", false),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // The secrets are nowhere: not in the database, the process log, /metrics or the mock.
    let mut gw = gw;
    assert!(gw.stop());
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(gw.data_dir()).unwrap() {
        stored.extend(std::fs::read(entry.unwrap().path()).unwrap_or_default());
    }
    let stored = String::from_utf8_lossy(&stored);
    let process_log = gw.logs();
    for secret in [a_key, b_key, new_b.as_str(), c_key.as_str()] {
        assert!(!stored.contains(secret), "a secret is in the database");
        assert!(
            !process_log.contains(secret),
            "a secret is in the process log"
        );
        assert!(!metrics.contains(secret));
    }
}

/// A revoked key is refused by another replica sharing the database within a second, under
/// load, with no answer but 200 or 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_on_one_replica_is_seen_by_another_within_a_second() {
    let mock = Mock::start().await;
    let dir = prepare_with_server(
        "admin_listen = \"127.0.0.1:0\"\nadmin_token = \"adm1n\"\n",
        &format!(
            "{}[gateways.gw]\nkeys = \"required\"\npipeline = []\n",
            mock.providers_toml()
        ),
        &[],
    );
    // Two processes on one SQLite database (the same data_dir).
    let config = std::fs::read_to_string(dir.path().join("aigw.toml")).unwrap();
    let one = Gateway::start_in(dir);
    let dir2 = prepare("", &[]);
    std::fs::write(
        dir2.path().join("aigw.toml"),
        config.replace(
            "data_dir = \"data\"",
            &format!("data_dir = \"{}\"", one.data_dir().display()),
        ),
    )
    .unwrap();
    let two = Gateway::start_in(dir2);
    let key = create(
        &one,
        "/api/keys",
        json!({"name": "shared", "gateways": "*"}),
    )
    .await;
    let bearer = format!("Bearer {}", key["key"].as_str().unwrap());
    let ok_on_two = eventually(Duration::from_secs(2), || async {
        send(
            &chat_url(&two, "gw"),
            &[("authorization", &bearer)],
            &chat("hi", false),
        )
        .await
        .status
            == StatusCode::OK
    })
    .await;
    assert!(
        ok_on_two.is_some(),
        "the new key reached the second replica"
    );
    // Load on the second replica (4 clients in a loop, bounded in count and time) while the
    // first revokes the key: every answer is 200 or 401, and none is 200 a second after.
    let stop_at = Instant::now() + Duration::from_secs(4);
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (url, bearer) = (chat_url(&two, "gw"), bearer.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                for _ in 0..2000 {
                    if Instant::now() >= stop_at {
                        break;
                    }
                    let status = send(&url, &[("authorization", &bearer)], &chat("load", false))
                        .await
                        .status;
                    seen.push((Instant::now(), status));
                }
                seen
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = admin(
        &one,
        Method::DELETE,
        &format!("/api/keys/{}", key["id"].as_str().unwrap()),
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let revoked_at = Instant::now();
    let mut answers = Vec::new();
    for t in load {
        answers.extend(t.await.unwrap());
    }
    assert!(answers.len() > 20, "the load ran: {}", answers.len());
    assert!(
        answers
            .iter()
            .all(|(_, s)| *s == StatusCode::OK || *s == StatusCode::UNAUTHORIZED),
        "only 200 and 401"
    );
    assert!(
        answers
            .iter()
            .any(|(at, s)| *s == StatusCode::OK && *at < revoked_at)
    );
    let last_ok = answers
        .iter()
        .filter(|(_, s)| *s == StatusCode::OK)
        .map(|(at, _)| *at)
        .max()
        .unwrap();
    let took = last_ok.saturating_duration_since(revoked_at);
    assert!(
        took < Duration::from_secs(1),
        "still served {took:?} after the revocation"
    );
    assert!(
        answers
            .iter()
            .any(|(at, s)| *s == StatusCode::UNAUTHORIZED && *at > revoked_at),
        "refused after the revocation"
    );
}
