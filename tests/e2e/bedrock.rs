//! Bedrock Converse through the gateway, signed with SigV4 from stored credentials: the mock
//! checks the signature as AWS does (host, date, body), so a request the gateway did not sign,
//! or signed with the wrong secret, is refused there with AWS's 403.

use crate::harness::*;
use aigw::mock::bedrock::{ACCESS_KEY_ID, SECRET_ACCESS_KEY};
use hyper::StatusCode;
use serde_json::json;

fn gateway(mock: &Mock, secret: &str) -> Gateway {
    let config = format!(
        "[providers.aws-bedrock]\nbase_url = \"http://{}\"\naccess_key_id = \"{ACCESS_KEY_ID}\"\n\
         secret_access_key = {{ env = \"AIGW_TEST_AWS_SECRET\" }}\n\
         [gateways.gw]\npipeline = [\"logging\", \"retry\"]\n",
        mock.addr
    );
    Gateway::start_with_env(prepare(&config, &[]), &[("AIGW_TEST_AWS_SECRET", secret)])
}

fn converse(text: &str) -> String {
    json!({"messages": [{"role": "user", "content": [{"text": text}]}],
           "system": [{"text": "be brief"}], "inferenceConfig": {"maxTokens": 64}})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converse_is_signed_with_stored_credentials_and_billed() {
    let mock = Mock::start().await;
    let gw = gateway(&mock, SECRET_ACCESS_KEY);
    let url = gw.url(
        "/v1/acct/gw/aws-bedrock/bedrock-runtime/us-east-1/model/amazon.nova-lite-v1%3A0/converse",
    );
    // A client's own signature (made for the gateway's host) is replaced, never forwarded.
    let stale = [
        (
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDCLIENT/20250101/us-east-1/bedrock/aws4_request, SignedHeaders=host, Signature=00",
        ),
        ("x-amz-date", "20250101T000000Z"),
        ("content-type", "application/json"),
    ];
    let r = send(&url, &stale, &converse("hello bedrock")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!(
        v["output"]["message"]["content"][0]["text"],
        "Bedrock mock reply to: hello bedrock"
    );
    let seen = &mock.requests()[0];
    assert_eq!(
        seen["path"],
        "/bedrock-runtime/us-east-1/model/amazon.nova-lite-v1%3A0/converse"
    );
    let auth = seen["headers"]["authorization"].as_str().unwrap();
    assert!(
        auth.starts_with(&format!("AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/")),
        "{auth}"
    );
    assert!(auth.contains("/us-east-1/bedrock/aws4_request"), "{auth}");
    assert!(!auth.contains("AKIDCLIENT"));

    // Billed from Bedrock's usage at the catalog's nova-lite rates.
    let (input, output) = (
        v["usage"]["inputTokens"].as_u64().unwrap(),
        v["usage"]["outputTokens"].as_u64().unwrap(),
    );
    let mut gw = gw;
    assert!(gw.stop());
    let entries = log_entries(&gw.data_dir());
    let e = &entries[0];
    assert_eq!(e["model"], "amazon.nova-lite-v1:0");
    assert_eq!(e["tokens_in"], input);
    assert_eq!(e["tokens_out"], output);
    let want = (input as f64 * 0.06 + output as f64 * 0.24) / 1e6;
    assert!((e["cost"].as_f64().unwrap() - want).abs() < 1e-15, "{e}");
    assert!(
        !gw.logs().contains(SECRET_ACCESS_KEY),
        "the secret never reaches the gateway's log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_gets_aws_refusal_and_a_retried_attempt_is_signed_too() {
    let mock = Mock::start().await;
    let gw = gateway(&mock, "not-the-secret");
    let url = gw.url(
        "/v1/acct/gw/aws-bedrock/bedrock-runtime/us-east-1/model/amazon.nova-lite-v1%3A0/converse",
    );
    let r = send(&url, &[], &converse("x")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert_eq!(
        r.header("x-amzn-errortype"),
        Some("InvalidSignatureException")
    );
    drop(gw);
    // With the right secret, a retried attempt (the first gets a 503) is signed too and
    // verifies (within one second the date, and so the signature, may be the same).
    let gw = gateway(&mock, SECRET_ACCESS_KEY);
    let url = gw.url(
        "/v1/acct/gw/aws-bedrock/bedrock-runtime/us-east-1/model/amazon.nova-lite-v1%3A0/converse",
    );
    let r = send(
        &url,
        &[
            ("x-mock-status", "503"),
            ("x-mock-fail-times", "1"),
            ("x-mock-fail-key", "bedrock-retry"),
        ],
        &converse("retry me"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let attempts = mock
        .requests()
        .iter()
        .filter(|r| r["body"].as_str().unwrap_or("").contains("retry me"))
        .count();
    assert_eq!(
        attempts, 2,
        "one failed attempt, one signed afresh and accepted"
    );
}
