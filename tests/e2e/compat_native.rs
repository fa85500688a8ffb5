//! The compat endpoint to providers' native APIs over plain HTTP: chat completions translated to
//! Gemini's generateContent (JSON and stream) with the client's key in Google's header, model
//! names that would reshape the path refused, and Bedrock without a region refused naming it.

use crate::harness::*;
use hyper::StatusCode;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_reaches_gemini_natively_and_bad_models_are_refused() {
    let mock = Mock::start().await;
    let gw = Gateway::start(
        &format!(
            "[providers.google-ai-studio]\nbase_url = \"http://{0}\"\n\
             [providers.aws-bedrock]\nbase_url = \"http://{0}\"\n\
             [gateways.gw]\npipeline = [\"logging\"]\n",
            mock.addr
        ),
        &[],
    );
    let url = gw.url("/v1/acct/gw/compat/chat/completions");
    let auth = [("authorization", "Bearer goog-client")];
    let chat = |model: &str, stream: bool| {
        json!({"model": model, "stream": stream, "stream_options": {"include_usage": true},
               "messages": [{"role": "system", "content": "be brief"},
                            {"role": "user", "content": "hi gemini"}]})
        .to_string()
    };
    let r = send(
        &url,
        &auth,
        &chat("google-ai-studio/gemini-2.0-flash", false),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Gemini mock reply to: hi gemini"
    );
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    let seen = &mock.requests()[0];
    assert_eq!(
        seen["path"],
        "/v1beta/models/gemini-2.0-flash:generateContent"
    );
    assert_eq!(seen["headers"]["x-goog-api-key"], "goog-client");
    assert!(seen["headers"].get("authorization").is_none());
    assert_eq!(
        body_of(seen)["systemInstruction"]["parts"][0]["text"],
        "be brief"
    );

    let s = stream(
        &url,
        &auth,
        &chat("google-ai-studio/gemini-2.0-flash", true),
    )
    .await;
    assert_eq!(s.status, StatusCode::OK);
    assert_eq!(
        s.delta_text(),
        "Gemini mock reply to: hi gemini",
        "{}",
        s.text()
    );
    let chunks: Vec<Value> = sse_data(&s.text())
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .any(|c| c.pointer("/choices/0/finish_reason") == Some(&json!("stop")))
    );
    assert!(
        chunks.last().unwrap()["usage"]["completion_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(
        s.text().trim_end().ends_with("data: [DONE]"),
        "{}",
        s.text()
    );
    assert_eq!(mock.requests()[1]["query"], "alt=sse");

    let before = mock.requests().len();
    for model in [
        "google-ai-studio/gemini-2.0-flash/../gemini-2.5-pro",
        "google-ai-studio/gemini?key=x",
        "aws-bedrock/amazon.nova-lite-v1:0/../x",
    ] {
        let r = send(&url, &auth, &chat(model, false)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{model}: {}", r.text());
        assert!(r.text().contains("model:"), "{}", r.text());
    }
    let r = send(
        &url,
        &auth,
        &chat("aws-bedrock/amazon.nova-lite-v1:0", false),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(r.text().contains("region"), "{}", r.text());
    assert_eq!(
        mock.requests().len(),
        before,
        "refused before any provider call"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_reaches_vertex_ai_in_its_project_and_location() {
    let mock = Mock::start().await;
    let gw = Gateway::start(
        &format!(
            "[providers.google-vertex-ai]\nbase_url = \"http://{0}\"\nproject = \"my-proj\"\nregion = \"us-central1\"\n\
             [gateways.gw]\npipeline = [\"logging\"]\n",
            mock.addr
        ),
        &[],
    );
    let body = json!({"model": "google-vertex-ai/gemini-2.0-flash",
                      "messages": [{"role": "user", "content": "hi vertex"}]})
    .to_string();
    let auth = [("authorization", "Bearer ya29.oauth-token")];
    let r = send(&gw.url("/v1/acct/gw/compat/chat/completions"), &auth, &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "Gemini mock reply to: hi vertex"
    );
    let seen = &mock.requests()[0];
    assert_eq!(
        seen["path"],
        "/v1/projects/my-proj/locations/us-central1/publishers/google/models/gemini-2.0-flash:generateContent"
    );
    // Vertex AI takes the OAuth token as it was sent.
    assert_eq!(seen["headers"]["authorization"], "Bearer ya29.oauth-token");
    assert!(seen["headers"].get("x-goog-api-key").is_none());
}

#[test]
fn a_bad_vertex_project_is_refused_naming_the_key() {
    let (ok, out) = check(
        "[providers.google-vertex-ai]\nproject = \"Bad Project!\"\n[gateways.gw]\npipeline = []\n",
        &[],
    );
    assert!(!ok);
    assert!(out.contains("providers.google-vertex-ai.project"), "{out}");
}
