//! AWS Signature Version 4 from stored credentials (`[providers.aws-bedrock]
//! access_key_id`, `secret_access_key`, `session_token`), computed by the `aws-sigv4` crate.
//!
//! The signature covers the host, so a client cannot sign for the gateway's address and have it
//! hold at AWS. With stored credentials the gateway signs every attempt itself, just before it
//! is sent (retries get a fresh date), after dropping whatever signature the client sent.
//! Without them, requests the client signed for the AWS host pass through as they are.
//!
//! The signing scope comes from the upstream host (`{service}.{region}.amazonaws.com`), or,
//! for a base URL that is not AWS's (a proxy, the mock), from the provider path's leading
//! `/{service}/{region}/` segments, as in Cloudflare's URL scheme. `bedrock-runtime` is signed
//! as `bedrock`, the name AWS checks.

use crate::http::Secret;
use hyper::header::{HOST, HeaderValue};
use hyper::{HeaderMap, Uri};
use std::time::SystemTime;

/// Stored AWS credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

/// Headers of a signature the client made (stale once the gateway signs).
const CLIENT_SIGNATURE: [&str; 4] = [
    "authorization",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
];

/// The (signing name, region) of a request to `uri` whose provider path is `path`.
pub fn scope(uri: &Uri, path: &str) -> Option<(String, String)> {
    let host = uri.host()?;
    let from_host = host
        .strip_suffix(".amazonaws.com")
        .and_then(|rest| rest.split_once('.'));
    let (service, region) = match from_host {
        Some(pair) => pair,
        None => {
            let mut segments = path.trim_start_matches('/').split('/');
            (segments.next()?, segments.next()?)
        }
    };
    if service.is_empty() || region.is_empty() {
        return None;
    }
    let name = match service {
        "bedrock-runtime" | "bedrock-agent-runtime" => "bedrock",
        other => other,
    };
    Some((name.to_string(), region.to_string()))
}

/// Signs a request in place: the client's signature headers go, `host`, `x-amz-date`,
/// `authorization` (and `x-amz-security-token` with a session token) come.
pub fn sign(
    creds: &AwsCredentials,
    method: &str,
    uri: &Uri,
    path: &str,
    headers: &mut HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<(), String> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    for name in CLIENT_SIGNATURE {
        headers.remove(name);
    }
    let (name, region) = scope(uri, path).ok_or_else(|| {
        format!("no AWS service and region in '{uri}' (expected {{service}}.{{region}}.amazonaws.com or a path /{{service}}/{{region}}/…)")
    })?;
    // The host the client library will send, signed as it is sent.
    let host = uri.authority().ok_or("the upstream URL has no host")?;
    let host = HeaderValue::from_str(host.as_str()).map_err(|e| e.to_string())?;
    headers.insert(HOST, host);
    let pairs: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let signable = SignableRequest::new(
        method,
        uri.to_string(),
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .map_err(|e| e.to_string())?;
    let identity = aws_credential_types::Credentials::new(
        creds.access_key_id.0.clone(),
        creds.secret_access_key.0.clone(),
        creds.session_token.as_ref().map(|t| t.0.clone()),
        None,
        "aigw-config",
    )
    .into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(&region)
        .name(&name)
        .time(now)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    let (signed, _) = instructions.into_parts();
    for h in signed {
        let mut value = HeaderValue::from_str(h.value()).map_err(|e| e.to_string())?;
        value.set_sensitive(
            h.sensitive() || matches!(h.name(), "authorization" | "x-amz-security-token"),
        );
        headers.insert(h.name(), value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    /// 2015-08-30T12:36:00Z, the SigV4 test suite's time.
    fn suite_time() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_440_938_160)
    }

    fn suite_creds() -> AwsCredentials {
        // AWS's published example credentials (the SigV4 test suite's).
        AwsCredentials {
            access_key_id: Secret("AKIDEXAMPLE".into()),
            secret_access_key: Secret("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into()),
            session_token: None,
        }
    }

    #[test]
    fn the_published_post_vanilla_vector_is_reproduced() {
        // AWS SigV4 test suite, `post-vanilla`: POST / to example.amazonaws.com, service
        // "service" in us-east-1 (a host without a region: the scope comes from the path).
        let uri: Uri = "https://example.amazonaws.com/".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            HeaderValue::from_static("the client's own"),
        );
        headers.insert("x-amz-security-token", HeaderValue::from_static("stale"));
        let path = "/service/us-east-1";
        sign(
            &suite_creds(),
            "POST",
            &uri,
            path,
            &mut headers,
            b"",
            suite_time(),
        )
        .unwrap();
        assert_eq!(headers["x-amz-date"], "20150830T123600Z");
        assert_eq!(headers["host"], "example.amazonaws.com");
        assert_eq!(
            headers["authorization"],
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
        );
        assert!(headers["authorization"].is_sensitive());
        assert!(headers.get("x-amz-security-token").is_none());
    }

    #[test]
    fn a_session_token_is_sent_and_signed() {
        let creds = AwsCredentials {
            session_token: Some(Secret("session-token".into())),
            ..suite_creds()
        };
        let uri: Uri = "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse"
            .parse()
            .unwrap();
        let mut headers = HeaderMap::new();
        sign(
            &creds,
            "POST",
            &uri,
            "/model/m/converse",
            &mut headers,
            b"{}",
            suite_time(),
        )
        .unwrap();
        assert_eq!(headers["x-amz-security-token"], "session-token");
        let auth = headers["authorization"].to_str().unwrap();
        assert!(auth.contains("/us-east-1/bedrock/aws4_request"), "{auth}");
        assert!(auth.contains("x-amz-security-token"), "{auth}");
    }

    #[test]
    fn bedrock_scopes_come_from_the_host_or_the_path() {
        let aws: Uri = "https://bedrock-runtime.eu-west-3.amazonaws.com/model/x/converse"
            .parse()
            .unwrap();
        assert_eq!(
            scope(&aws, "/model/x/converse"),
            Some(("bedrock".into(), "eu-west-3".into()))
        );
        let mock: Uri = "http://127.0.0.1:9/bedrock-runtime/us-east-1/model/x/converse"
            .parse()
            .unwrap();
        assert_eq!(
            scope(&mock, "/bedrock-runtime/us-east-1/model/x/converse"),
            Some(("bedrock".into(), "us-east-1".into()))
        );
        assert_eq!(scope(&mock, "/model"), None);
        let mut headers = HeaderMap::new();
        let err = sign(
            &suite_creds(),
            "POST",
            &mock,
            "/model",
            &mut headers,
            b"",
            suite_time(),
        );
        assert!(err.unwrap_err().contains("no AWS service and region"));
    }
}
