//! Dollar budgets of virtual keys, enforced by the key-policy filter: concurrent requests never
//! spend past a budget, refusals say `budget_exceeded`, and concurrency costs no capacity a
//! sequential client would have had.

use crate::analytics::admin;
use crate::harness::*;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

/// gpt-4o at OpenAI's price page: $2.50 per million input tokens, $10 per million output.
const INPUT: f64 = 2.5;
const OUTPUT: f64 = 10.0;

fn budget_gateway(mock: &Mock) -> Gateway {
    let providers = mock.providers_toml_with_keys();
    let dir = prepare_with_server(
        "admin_listen = \"127.0.0.1:0\"\nadmin_token = \"adm1n\"\n",
        &format!(
            "{providers}[gateways.gw]\nkeys = \"required\"\npipeline = [\"key-policy\", \"logging\"]\n"
        ),
        &[],
    );
    Gateway::start_in(dir)
}

async fn budget_key(gw: &Gateway, usd: f64) -> (String, String) {
    let r = admin(
        gw,
        Method::POST,
        "/api/keys",
        &json!({"name": "budgeted", "gateways": "*",
                "budget_usd": {"amount": usd, "period": "total"}})
        .to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let v = r.json();
    (
        v["id"].as_str().unwrap().to_string(),
        v["key"].as_str().unwrap().to_string(),
    )
}

fn body(stream: bool) -> String {
    json!({"model": "gpt-4o", "max_tokens": 20, "stream": stream,
           "messages": [{"role": "user", "content": "spend a little"}]})
    .to_string()
}

/// A reply of exactly 20 words: the mock bills one token per word.
const REPLY: &str = "one two three four five six seven eight nine ten \
                     one two three four five six seven eight nine ten";

async fn spend_of(gw: &Gateway, id: &str) -> Value {
    admin(gw, Method::GET, &format!("/api/keys/{id}"), "")
        .await
        .json()["spend"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_never_spend_past_a_budget() {
    let mock = Mock::start().await;
    let gw = budget_gateway(&mock);
    let budget = 0.01;
    let (id, key) = budget_key(&gw, budget).await;
    let bearer = format!("Bearer {key}");
    let url = gw.url("/v1/acct/gw/openai/chat/completions");
    let headers = [("authorization", bearer.as_str()), ("x-mock-reply", REPLY)];

    // One request to learn the exact cost of each (the same prompt and reply every time).
    let first = send(&url, &headers, &body(false)).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    let u = &first.json()["usage"];
    let n = |k: &str| u[k].as_f64().unwrap();
    assert_eq!(n("completion_tokens"), 20.0);
    let cost = (n("prompt_tokens") * INPUT + n("completion_tokens") * OUTPUT) / 1e6;
    // The filter's worst case: the body's bytes as input tokens, max_tokens as output.
    let worst = (body(false).len() as f64 * INPUT + 20.0 * OUTPUT) / 1e6;

    // 200 clients at once.
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (url, bearer) = (url.clone(), bearer.clone());
            tokio::spawn(async move {
                let headers = [("authorization", bearer.as_str()), ("x-mock-reply", REPLY)];
                tokio::time::timeout(Duration::from_secs(60), send(&url, &headers, &body(false)))
                    .await
                    .expect("bounded")
            })
        })
        .collect();
    let mut ok = 1usize;
    let mut refused = 0usize;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                let v = r.json();
                assert_eq!(v["error"]["type"], "budget_exceeded", "{v}");
                assert_eq!(v["error"]["limit_usd"], budget, "{v}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {}", r.text()),
        }
    }
    assert_eq!(ok + refused, 201);
    assert!(refused > 0, "the budget was meant to run out");

    let spend = spend_of(&gw, &id).await;
    let spent = spend["spent_usd"].as_f64().unwrap();
    assert_eq!(spend["reserved_usd"], 0.0, "{spend}");
    assert!(spent <= budget, "spent {spent} of {budget}");
    // Exact: every success was settled at its cost (rounded up to the nano-dollar).
    assert!(
        (spent - ok as f64 * cost).abs() <= ok as f64 * 1e-9,
        "spent {spent}, {ok} × {cost}"
    );
    // As many as a sequential client would get, less one worst-case reservation.
    let sequential_floor = ((budget - worst) / cost).floor() as usize;
    assert!(
        ok >= sequential_floor,
        "{ok} succeeded; a sequential client gets at least {sequential_floor}"
    );
    eprintln!(
        "budget ${budget}: {ok} succeeded, {refused} refused; cost ${cost:.7} each, worst case ${worst:.7}; spent ${spent:.7}; sequential floor {sequential_floor}"
    );

    // The logs agree with the ledger.
    let successes = || async {
        admin(
            &gw,
            Method::GET,
            "/api/gateways/gw/logs?success=true&limit=1000",
            "",
        )
        .await
        .json()["logs"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    eventually(Duration::from_secs(5), || async {
        successes().await.len() == ok
    })
    .await;
    let logs = successes().await;
    let logged: f64 = logs.iter().filter_map(|e| e["cost"].as_f64()).sum();
    assert_eq!(logs.len(), ok);
    assert!((logged - ok as f64 * cost).abs() < 1e-9, "{logged}");
}

/// Streams the client leaves early: each reservation is settled (charged what it held, since
/// the cost is unknown without the provider's usage), none stays held, and the budget's rest
/// stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_that_end_early_do_not_keep_their_reservation() {
    let mock = Mock::start().await;
    let gw = budget_gateway(&mock);
    let (id, key) = budget_key(&gw, 0.01).await;
    let bearer = format!("Bearer {key}");
    let url = gw.url("/v1/acct/gw/openai/chat/completions");
    for _ in 0..5 {
        let req = request(
            Method::POST,
            &url,
            &[
                ("authorization", bearer.as_str()),
                ("x-mock-chunks", "20"),
                ("x-mock-chunk-delay-ms", "50"),
            ],
            &body(true),
        );
        let resp = client().request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        // Read one chunk, then hang up.
        let mut b = resp.into_body();
        let _ = http_body_util::BodyExt::frame(&mut b).await;
        drop(b);
    }
    let settled = eventually(Duration::from_secs(5), || async {
        spend_of(&gw, &id).await["reserved_usd"] == 0.0
    })
    .await;
    assert!(settled.is_some(), "{}", spend_of(&gw, &id).await);
    // Each was charged at most its worst case: the body the provider got (with the usage
    // request the gateway adds to streams) as input tokens, max_tokens as output.
    let worst: f64 = mock
        .requests()
        .iter()
        .map(|r| (r["body"].as_str().unwrap().len() as f64 * INPUT + 20.0 * OUTPUT) / 1e6)
        .sum();
    let spent = spend_of(&gw, &id).await["spent_usd"].as_f64().unwrap();
    assert!(
        spent > 0.0 && spent <= worst + 1e-9,
        "spent {spent}, worst {worst}"
    );
    // What is left is still there to spend.
    let r = send(&url, &[("authorization", bearer.as_str())], &body(false)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

/// Model and provider access and requests per minute, per key and per team, through the
/// gateway: refusals are 403 naming the allowed patterns, or 429 with Retry-After.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_provider_and_rate_rules_of_keys_and_teams() {
    let mock = Mock::start().await;
    let gw = budget_gateway(&mock);
    let team = admin(
        &gw,
        Method::POST,
        "/api/teams",
        &json!({"name": "t", "providers": ["openai"], "requests_per_minute": 3}).to_string(),
    )
    .await
    .json();
    let r = admin(
        &gw,
        Method::POST,
        "/api/keys",
        &json!({"name": "k", "gateways": "*", "team": team["id"], "models": ["gpt-4o-mini*"]})
            .to_string(),
    )
    .await
    .json();
    let bearer = format!("Bearer {}", r["key"].as_str().unwrap());
    let auth = [("authorization", bearer.as_str())];
    let url = gw.url("/v1/acct/gw/openai/chat/completions");
    let r = send(&url, &auth, &chat("allowed model", false)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let other = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]});
    let r = send(&url, &auth, &other.to_string()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "model_not_allowed");
    assert_eq!(r.json()["error"]["allowed"], json!(["gpt-4o-mini*"]));
    let r = send(
        &gw.url("/v1/acct/gw/anthropic/v1/messages"),
        &[("x-api-key", &bearer[7..])],
        &json!({"model": "claude-3-5-haiku", "max_tokens": 8,
                "messages": [{"role": "user", "content": "x"}]})
        .to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "provider_not_allowed");
    // The team's 3 requests per minute: 2 counted so far (a refused model counts, a refused
    // provider is turned away before counting), so one more passes and the next is refused.
    let r = send(&url, &auth, &chat("the third", false)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = send(&url, &auth, &chat("one too many", false)).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    assert_eq!(
        mock.requests().len(),
        2,
        "only the allowed requests reached the provider"
    );
}

/// Settled spend outlives a restart: a budget is not reset by restarting the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_survives_a_restart() {
    let mock = Mock::start().await;
    let gw = budget_gateway(&mock);
    let (id, key) = budget_key(&gw, 1.0).await;
    let bearer = format!("Bearer {key}");
    let url = gw.url("/v1/acct/gw/openai/chat/completions");
    let r = send(&url, &[("authorization", bearer.as_str())], &body(false)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // Settled when the request is done, just after its answer.
    eventually(Duration::from_secs(3), || async {
        spend_of(&gw, &id).await["spent_usd"].as_f64() > Some(0.0)
    })
    .await;
    let before = spend_of(&gw, &id).await["spent_usd"].as_f64().unwrap();
    assert!(before > 0.0);
    let gw = gw.restart();
    let after = spend_of(&gw, &id).await["spent_usd"].as_f64().unwrap();
    assert_eq!(after, before);
}

/// Gateway-wide spend rules (`spend-limit`), without virtual keys: one limit per
/// `cf-aig-metadata` user, held like a key's budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_limit_rules_hold_per_metadata_value() {
    let mock = Mock::start().await;
    // gpt-4o: each request costs $0.000215 and may cost up to about $0.0005.
    let gw = Gateway::start(
        &format!(
            "{}[gateways.gw]\npipeline = [\"spend-limit\", \"logging\"]\n\
             [gateways.gw.filters.spend-limit]\nrules = [{{ usd = 0.001, period = \"day\", by = \"metadata.user\" }}]\n",
            mock.providers_toml()
        ),
        &[],
    );
    let url = gw.url("/v1/acct/gw/openai/chat/completions");
    let send_as = |user: &'static str| {
        let url = url.clone();
        async move {
            let meta = format!(r#"{{"user":"{user}"}}"#);
            send(
                &url,
                &[("cf-aig-metadata", &meta), ("x-mock-reply", REPLY)],
                &body(false),
            )
            .await
        }
    };
    let mut ada = Vec::new();
    for _ in 0..6 {
        ada.push(send_as("ada").await.status);
    }
    let ok = ada.iter().filter(|s| **s == StatusCode::OK).count();
    // Sequentially: $0.000215 each, refused once spent + worst case passes $0.001.
    assert!((3..=4).contains(&ok), "{ada:?}");
    assert!(
        ada[ok..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "{ada:?}"
    );
    let r = send_as("ada").await;
    assert_eq!(r.json()["error"]["type"], "budget_exceeded");
    assert_eq!(r.json()["error"]["rule"]["by"], "metadata.user");
    // Another user has a limit of their own.
    assert_eq!(send_as("bob").await.status, StatusCode::OK);
}

/// A routing filter cannot take a keyed request past what its key allows: not to a model the
/// key may not use, and not to a dearer model than its budget hold was priced at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_stays_within_the_keys_models_and_budget_hold() {
    let mock = Mock::start().await;
    let providers = mock.providers_toml_with_keys();
    let gw = Gateway::start_in(prepare_with_server(
        "admin_listen = \"127.0.0.1:0\"\nadmin_token = \"adm1n\"\n",
        &format!(
            "{providers}[gateways.gw]\nkeys = \"required\"\npipeline = [\"key-policy\", \"logging\", \"provider-routing\"]\n\
             [[gateways.gw.filters.provider-routing.rules]]\nmodel = \"gpt-4o-mini\"\ntargets = [{{ provider = \"openai\", model = \"gpt-4o\" }}]\n"
        ),
        &[],
    ));
    let create = |body: Value| {
        let gw = &gw;
        async move {
            admin(gw, Method::POST, "/api/keys", &body.to_string())
                .await
                .json()["key"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let url = gw.url("/v1/acct/gw/openai/chat/completions");
    // Model list: the route to gpt-4o is refused.
    let listed =
        create(json!({"name": "mini-only", "gateways": "*", "models": ["gpt-4o-mini"]})).await;
    let r = send(
        &url,
        &[("authorization", &format!("Bearer {listed}"))],
        &chat("route me", false),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert!(r.text().contains("may not use"), "{}", r.text());
    // Budget: the hold was priced at gpt-4o-mini; gpt-4o costs more, so the route is refused.
    let budgeted = create(json!({"name": "budgeted", "gateways": "*",
        "budget_usd": {"amount": 1.0, "period": "day"}}))
    .await;
    let r = send(
        &url,
        &[("authorization", &format!("Bearer {budgeted}"))],
        &chat("route me", false),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert!(r.text().contains("budget hold"), "{}", r.text());
    // A key without such limits is routed.
    let free = create(json!({"name": "free", "gateways": "*"})).await;
    let r = send(
        &url,
        &[("authorization", &format!("Bearer {free}"))],
        &chat("route me", false),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["model"], "gpt-4o");
    assert_eq!(mock.requests().len(), 1);
}
