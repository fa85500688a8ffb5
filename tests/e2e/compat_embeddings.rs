//! OpenAI embeddings at the compat endpoint: to OpenAI-compatible providers (OpenAI, Gemini's
//! OpenAI-compatible path) with only the model changed, and to Cohere's v2 embed translated both
//! ways (floats, or base64 as the OpenAI SDKs ask), logged and billed from Cohere's units.

use crate::harness::*;
use base64::Engine as _;
use hyper::StatusCode;
use serde_json::{Value, json};

fn gateway(mock: &Mock) -> Gateway {
    let config = format!(
        "{}[providers.google-ai-studio]\nbase_url = \"http://{addr}\"\napi_key = \"goog-stored\"\n\
         [providers.cohere]\nbase_url = \"http://{addr}\"\napi_key = \"co-stored\"\n\
         [gateways.gw]\npipeline = [\"logging\"]\n",
        mock.providers_toml(),
        addr = mock.addr
    );
    Gateway::start(&config, &[])
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_reach_openai_gemini_and_cohere_through_compat() {
    let mock = Mock::start().await;
    let gw = gateway(&mock);
    let url = gw.url("/v1/acct/gw/compat/embeddings");
    let auth = [("authorization", "Bearer sk-client")];
    let post = |model: &str, extra: Value| {
        let mut body = json!({"model": model, "input": ["the quick brown fox", "jumps"]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let url = url.clone();
        async move { send(&url, &auth, &body.to_string()).await }
    };

    let r = post("openai/text-embedding-3-small", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["data"].as_array().unwrap().len(), 2);
    let r = post("google-ai-studio/text-embedding-004", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let seen = mock.requests();
    assert_eq!(seen[0]["path"], "/v1/embeddings");
    assert_eq!(body_of(&seen[0])["model"], "text-embedding-3-small");
    assert_eq!(seen[1]["path"], "/v1beta/openai/embeddings");
    assert_eq!(body_of(&seen[1])["model"], "text-embedding-004");
    // Google gets one key, the client's, in its own header; never the stored one beside it.
    assert_eq!(seen[1]["headers"]["x-goog-api-key"], "sk-client");
    assert!(seen[1]["headers"].get("authorization").is_none());

    // Cohere: v2 embed out, OpenAI's shape back.
    let r = post("cohere/embed-v4.0", json!({"dimensions": 4})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let answer = r.json();
    let cohere_seen = &mock.requests()[2];
    assert_eq!(cohere_seen["path"], "/v2/embed");
    assert_eq!(cohere_seen["headers"]["authorization"], "Bearer sk-client");
    let sent = body_of(cohere_seen);
    assert_eq!(sent["model"], "embed-v4.0");
    assert_eq!(sent["texts"], json!(["the quick brown fox", "jumps"]));
    assert_eq!(sent["input_type"], "search_document");
    assert_eq!(sent["output_dimension"], 4);
    assert_eq!(answer["object"], "list");
    assert_eq!(answer["model"], "embed-v4.0");
    assert_eq!(answer["data"][1]["index"], 1);
    assert_eq!(answer["data"][0]["embedding"].as_array().unwrap().len(), 4);
    assert_eq!(answer["usage"]["prompt_tokens"], 5, "{answer}");
    // base64, as the OpenAI SDKs ask by default: the same vectors, as little-endian float32.
    let r = post(
        "cohere/embed-v4.0",
        json!({"dimensions": 4, "encoding_format": "base64"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let b64 = r.json()["data"][0]["embedding"]
        .as_str()
        .unwrap()
        .to_string();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let decoded: Vec<f32> = bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(decoded, floats(&answer["data"][0]["embedding"]));

    // Refusals name what is wrong, before any provider is called.
    let before = mock.requests().len();
    let r = send(
        &url,
        &auth,
        &json!({"model": "cohere/embed-v4.0", "input": [[1, 2, 3]]}).to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(r.text().contains("token arrays"), "{}", r.text());
    let r = post("anthropic/claude-3-5-haiku", json!({})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(
        r.text().contains("no OpenAI-compatible embeddings"),
        "{}",
        r.text()
    );
    assert_eq!(mock.requests().len(), before);

    // A Cohere error comes back in OpenAI's error shape with its status.
    let r = send(
        &url,
        &[
            ("authorization", "Bearer sk-client"),
            ("x-mock-status", "429"),
        ],
        &json!({"model": "cohere/embed-v4.0", "input": "x"}).to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.json()["error"]["message"].is_string(), "{}", r.text());

    // Billed from Cohere's own units: embed-v4.0 at $0.12 per million input tokens.
    let mut gw = gw;
    assert!(gw.stop());
    let entries = log_entries(&gw.data_dir());
    let cohere: Vec<&Value> = entries
        .iter()
        .filter(|e| e["provider"] == "cohere" && e["status"] == 200)
        .collect();
    assert_eq!(cohere.len(), 2, "{entries:?}");
    assert_eq!(cohere[0]["tokens_in"], 5);
    let cost = cohere[0]["cost"].as_f64().unwrap();
    assert!((cost - 5.0 * 0.12 / 1e6).abs() < 1e-15, "{cost}");
}
