//! Stored responses at the compat endpoint's Responses entry point (`store_responses`): a
//! conversation continued by `previous_response_id` over JSON and streamed turns reaches the
//! provider whole; a response sent with `store: false`, made under another virtual key, or
//! unknown is not found; a gateway that keeps none says which setting to change.

use crate::analytics::admin;
use crate::harness::*;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

/// The `data:` JSON of a Responses stream's `response.completed` event.
fn completed(text: &str) -> Value {
    sse_data(text)
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find(|e| e["type"] == "response.completed")
        .map(|e| e["response"].clone())
        .unwrap_or(Value::Null)
}

/// The (role, text) turns of the last request the mock got (Anthropic Messages).
fn turns_sent(mock: &Mock) -> Vec<(String, String)> {
    let last = mock.requests().last().cloned().unwrap();
    body_of(&last)["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let text = match &m["content"] {
                Value::String(s) => s.clone(),
                Value::Array(parts) => parts
                    .iter()
                    .filter_map(|p| p["text"].as_str())
                    .collect::<String>(),
                _ => String::new(),
            };
            (m["role"].as_str().unwrap_or("").to_string(), text)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previous_response_id_continues_a_stored_conversation() {
    let mock = Mock::start().await;
    let dir = prepare_with_server(
        "admin_listen = \"127.0.0.1:0\"\nadmin_token = \"adm1n\"\n",
        &format!(
            "{}[gateways.gw]\nkeys = \"optional\"\nstore_responses = 100\npipeline = [\"logging\"]\n\
             [gateways.plain]\npipeline = []\n\
             [gateways.locked]\nauth_token = \"s3cret\"\nstore_responses = true\npipeline = []\n",
            mock.providers_toml_with_keys()
        ),
        &[],
    );
    let gw = Gateway::start_in(dir);
    let url = gw.url("/v1/acct/gw/compat/responses");
    let auth = ("authorization", "Bearer sk-test");
    let model = "anthropic/claude-3-5-haiku";

    // Turn 1, JSON, with instructions (which later turns do not inherit, as on OpenAI).
    let r = send(
        &url,
        &[auth, ("x-mock-reply", "Hello Ada.")],
        &json!({"model": model, "instructions": "be brief", "input": "My name is Ada."})
            .to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let first = r.json();
    let first_id = first["id"].as_str().unwrap().to_string();
    assert!(
        first_id.starts_with("resp_") && first_id.len() > 20,
        "{first}"
    );
    assert_eq!(first["store"], true, "{first}");
    assert_eq!(first["previous_response_id"], Value::Null, "{first}");

    // Turn 2, streamed, continues turn 1.
    let s = stream(
        &url,
        &[auth, ("x-mock-reply", "You are Ada.")],
        &json!({"model": model, "input": "What is my name?", "stream": true,
                "previous_response_id": first_id})
        .to_string(),
    )
    .await;
    assert_eq!(s.status, StatusCode::OK);
    let second = completed(&s.text());
    assert_eq!(
        second["previous_response_id"],
        first_id.as_str(),
        "{second}"
    );
    let second_id = second["id"].as_str().unwrap().to_string();
    assert_ne!(second_id, first_id);
    assert_eq!(
        turns_sent(&mock),
        [
            ("user".to_string(), "My name is Ada.".to_string()),
            ("assistant".into(), "Hello Ada.".into()),
            ("user".into(), "What is my name?".into()),
        ]
    );
    assert!(
        body_of(mock.requests().last().unwrap())
            .get("system")
            .is_none(),
        "instructions are not carried over"
    );

    // Turn 3, JSON, continues the streamed turn: the whole conversation goes upstream.
    let r = send(
        &url,
        &[auth, ("x-mock-reply", "Goodbye.")],
        &json!({"model": model, "input": [{"role": "user", "content": "Bye."}],
                "previous_response_id": second_id, "store": false})
        .to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let third = r.json();
    assert_eq!(third["store"], false, "{third}");
    assert_eq!(turns_sent(&mock).len(), 5, "{:?}", turns_sent(&mock));
    assert_eq!(turns_sent(&mock)[3].1, "You are Ada.");

    // Not stored (`store: false`), unknown, or under another key: not found, in OpenAI's shape.
    let sent_before = mock.requests().len();
    for id in [third["id"].as_str().unwrap(), "resp_nope"] {
        let r = send(
            &url,
            &[auth],
            &json!({"model": model, "input": "more", "previous_response_id": id}).to_string(),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
        assert_eq!(r.json()["error"]["code"], "previous_response_not_found");
        assert_eq!(r.json()["error"]["param"], "previous_response_id");
    }
    let key = admin(
        &gw,
        Method::POST,
        "/api/keys",
        &json!({"name": "a", "gateways": "*"}).to_string(),
    )
    .await;
    assert_eq!(key.status, StatusCode::CREATED, "{}", key.text());
    let secret = format!("Bearer {}", key.json()["key"].as_str().unwrap());
    let r = send(
        &url,
        &[("authorization", &secret)],
        &json!({"model": model, "input": "more", "previous_response_id": first_id}).to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "previous_response_not_found");
    // The key's own conversation is its own.
    let r = send(
        &url,
        &[("authorization", &secret), ("x-mock-reply", "Noted.")],
        &json!({"model": model, "input": "I am key a."}).to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let keyed_id = r.json()["id"].as_str().unwrap().to_string();
    for (who, status) in [(auth.1, StatusCode::BAD_REQUEST), (&secret, StatusCode::OK)] {
        let r = send(
            &url,
            &[("authorization", who)],
            &json!({"model": model, "input": "again", "previous_response_id": keyed_id})
                .to_string(),
        )
        .await;
        assert_eq!(r.status, status, "{}", r.text());
    }
    assert_eq!(mock.requests().len(), sent_before + 2);

    // An authenticated gateway checks its token before it reads anything stored.
    let r = send(
        &gw.url("/v1/acct/locked/compat/responses"),
        &[auth],
        &json!({"model": model, "input": "x", "previous_response_id": first_id}).to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());

    // A gateway that keeps no responses names the setting.
    let r = send(
        &gw.url("/v1/acct/plain/compat/responses"),
        &[auth],
        &json!({"model": model, "input": "x", "previous_response_id": first_id}).to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(r.text().contains("store_responses"), "{}", r.text());
}
