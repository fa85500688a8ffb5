//! Stored responses (`store_responses`) in one PostgreSQL shared by two replicas: a
//! conversation answered by one replica is continued by `previous_response_id` on the other,
//! and reaches the provider whole.

use crate::harness::*;
use crate::shared_stores::postgres_url;
use hyper::StatusCode;
use serde_json::{Value, json};

pub async fn a_response_stored_by_one_replica_is_continued_on_the_other() {
    let pg = postgres_url();
    let mock = Mock::start().await;
    let cfg = format!(
        "{}[logs]\nbackend = \"postgres\"\nurl = \"{pg}\"\n[gateways.kept]\nstore_responses = 5\npipeline = [\"logging\"]\n",
        mock.providers_toml()
    );
    let (a, b) = (Gateway::start(&cfg, &[]), Gateway::start(&cfg, &[]));
    let path = "/v1/acct/kept/compat/responses";
    let model = "anthropic/claude-3-5-haiku";
    let auth = ("authorization", "Bearer sk-pg");
    let r = send(
        &a.url(path),
        &[auth, ("x-mock-reply", "Noted, Ada.")],
        &json!({"model": model, "input": "My name is Ada."}).to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    let r = send(
        &b.url(path),
        &[auth],
        &json!({"model": model, "input": "Who am I?", "previous_response_id": id}).to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["previous_response_id"], id.as_str());
    let last = mock.requests().last().cloned().unwrap();
    let turns: Vec<Value> = body_of(&last)["messages"].as_array().unwrap().clone();
    assert_eq!(turns.len(), 3, "{turns:?}");
    assert_eq!(turns[1]["role"], "assistant");
    assert!(turns[1].to_string().contains("Noted, Ada."), "{turns:?}");
    let r = send(
        &b.url(path),
        &[auth],
        &json!({"model": model, "input": "x", "previous_response_id": "resp_unknown"}).to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "previous_response_not_found");
    // The gateway keeps its newest 5: after five more, the first is gone.
    for i in 0..5 {
        let r = send(
            &a.url(path),
            &[auth],
            &json!({"model": model, "input": format!("filler {i}")}).to_string(),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let r = send(
        &b.url(path),
        &[auth],
        &json!({"model": model, "input": "again", "previous_response_id": id}).to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
}
