//! The mock's Bedrock Converse (`POST …/model/{modelId}/converse`), in its real shape, behind a
//! real SigV4 check: the request must be signed with the mock's credentials
//! ([`ACCESS_KEY_ID`], [`SECRET_ACCESS_KEY`]) for the host it was sent to, or it gets AWS's 403
//! (`UnrecognizedClientException` for another key, `InvalidSignatureException` for a wrong
//! signature, `MissingAuthenticationTokenException` for none). Usage counts words, one token each.

use super::{MockState, count_words, header, json_response};
use crate::http::body::GatewayBody;
use hyper::header::HeaderValue;
use hyper::{Response, StatusCode};
use serde_json::{Value, json};
use std::time::SystemTime;

/// The access key the mock accepts.
pub const ACCESS_KEY_ID: &str = "AKIDMOCKBEDROCK";
/// Its secret.
pub const SECRET_ACCESS_KEY: &str = "mock-bedrock-secret/K7MDENG+bPxRfiCYEXAMPLE";

fn refused(kind: &str, message: &str) -> Response<GatewayBody> {
    let mut r = json_response(StatusCode::FORBIDDEN, json!({"message": message}));
    if let Ok(v) = HeaderValue::from_str(kind) {
        r.headers_mut().insert("x-amzn-errortype", v);
    }
    r
}

/// `x-amz-date` (`20150830T123600Z`) as a time.
fn amz_date(text: &str) -> Option<SystemTime> {
    let n = |r: std::ops::Range<usize>| text.get(r)?.parse::<u32>().ok();
    if text.len() != 16 || !text.ends_with('Z') || text.as_bytes().get(8) != Some(&b'T') {
        return None;
    }
    let month = time::Month::try_from(n(4..6)? as u8).ok()?;
    let date = time::Date::from_calendar_date(n(0..4)? as i32, month, n(6..8)? as u8).ok()?;
    let at = date
        .with_hms(n(9..11)? as u8, n(11..13)? as u8, n(13..15)? as u8)
        .ok()?;
    Some(at.assume_utc().into())
}

/// Checks the request's SigV4 signature as AWS would; the refusal AWS would send otherwise.
/// `Err((error type, message))`: the refusal AWS would send.
fn verify(
    parts: &hyper::http::request::Parts,
    body: &[u8],
) -> Result<(), (&'static str, &'static str)> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let Some(auth) = header(parts, "authorization") else {
        return Err((
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        ));
    };
    let field = |name: &str| {
        auth.split([' ', ','])
            .find_map(|p| p.strip_prefix(name).map(str::to_string))
    };
    let (Some(credential), Some(signed_headers), Some(signature)) = (
        field("Credential="),
        field("SignedHeaders="),
        field("Signature="),
    ) else {
        return Err((
            "IncompleteSignatureException",
            "Authorization header requires Credential, SignedHeaders and Signature",
        ));
    };
    let scope: Vec<&str> = credential.split('/').collect();
    if scope.len() != 5 || scope[0] != ACCESS_KEY_ID {
        return Err((
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ));
    }
    // The scope must name Bedrock and the region the request went to (the path's, here).
    let path_region = parts
        .uri
        .path()
        .strip_prefix("/bedrock-runtime/")
        .and_then(|rest| rest.split('/').next());
    if scope[3] != "bedrock" || path_region.is_some_and(|r| r != scope[2]) {
        return Err((
            "InvalidSignatureException",
            "Credential should be scoped to the correct service ('bedrock') and region.",
        ));
    }
    let Some(time) = header(parts, "x-amz-date").and_then(amz_date) else {
        return Err((
            "IncompleteSignatureException",
            "x-amz-date is missing or malformed",
        ));
    };
    let host = header(parts, "host").unwrap_or("");
    let uri = format!(
        "http://{host}{}",
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let headers: Vec<(&str, &str)> = signed_headers
        .split(';')
        .filter_map(|name| Some((name, header(parts, name)?)))
        .collect();
    let identity = aws_credential_types::Credentials::new(
        ACCESS_KEY_ID,
        SECRET_ACCESS_KEY,
        None,
        None,
        "mock",
    )
    .into();
    let expected = SignableRequest::new(
        parts.method.as_str(),
        uri,
        headers.into_iter(),
        SignableBody::Bytes(body),
    )
    .ok()
    .and_then(|signable| {
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(scope[2])
            .name(scope[3])
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .ok()?
            .into();
        Some(sign(signable, &params).ok()?.into_parts().1)
    });
    if expected.as_deref() != Some(signature.as_str()) {
        return Err((
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.",
        ));
    }
    Ok(())
}

/// Answers a Converse request, or a ConverseStream one (`stream`) as an AWS event stream.
/// `x-mock-tool-call` / `x-mock-tool-args` make the answer one `toolUse`, until the
/// conversation ends with a `toolResult`.
pub(super) fn converse(
    _state: &MockState,
    parts: &hyper::http::request::Parts,
    body: &[u8],
    request: &Value,
    stream: bool,
) -> Response<GatewayBody> {
    if let Err((kind, message)) = verify(parts, body) {
        return refused(kind, message);
    }
    let Some(messages) = request.get("messages").and_then(Value::as_array) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"message": "1 validation error detected: Value null at 'messages' failed to satisfy constraint: Member must not be null"}),
        );
    };
    let last = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m.pointer("/content/0/text"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let reply = header(parts, "x-mock-reply")
        .map(str::to_string)
        .unwrap_or_else(|| format!("Bedrock mock reply to: {last}"));
    let input = (count_words(&Value::Array(messages.clone()))
        + count_words(request.get("system").unwrap_or(&Value::Null)))
    .max(1);
    let after_tool = messages
        .last()
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array)
        .is_some_and(|c| c.iter().any(|b| b.get("toolResult").is_some()));
    let tool = header(parts, "x-mock-tool-call")
        .filter(|_| !after_tool)
        .map(|name| {
            let args: Value = header(parts, "x-mock-tool-args")
                .and_then(|a| serde_json::from_str(a).ok())
                .unwrap_or(json!({}));
            (name.to_string(), args)
        });
    let output = match &tool {
        Some((_, args)) => (args.to_string().len() as u64 / 4).max(1) + 5,
        None => reply.split_whitespace().count() as u64,
    };
    let usage =
        json!({"inputTokens": input, "outputTokens": output, "totalTokens": input + output});
    let stop = if tool.is_some() {
        "tool_use"
    } else {
        "end_turn"
    };
    if !stream {
        let content = match &tool {
            Some((name, args)) => {
                json!([{"toolUse": {"toolUseId": "tooluse_mock1", "name": name, "input": args}}])
            }
            None => json!([{"text": reply}]),
        };
        return json_response(
            StatusCode::OK,
            json!({
                "output": {"message": {"role": "assistant", "content": content}},
                "stopReason": stop,
                "usage": usage,
                "metrics": {"latencyMs": 3},
            }),
        );
    }
    let frame = |event: &str, payload: Value| {
        crate::providers::eventstream::encode(
            &[
                (":event-type", event),
                (":content-type", "application/json"),
                (":message-type", "event"),
            ],
            payload.to_string().as_bytes(),
        )
    };
    let mut frames = vec![frame("messageStart", json!({"role": "assistant"}))];
    match &tool {
        Some((name, args)) => {
            frames.push(frame(
                "contentBlockStart",
                json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "tooluse_mock1", "name": name}}}),
            ));
            let text = args.to_string();
            let (a, b) = text.split_at(text.len() / 2);
            for piece in [a, b] {
                frames.push(frame(
                    "contentBlockDelta",
                    json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": piece}}}),
                ));
            }
        }
        None => {
            for word in reply.split_inclusive(' ') {
                frames.push(frame(
                    "contentBlockDelta",
                    json!({"contentBlockIndex": 0, "delta": {"text": word}}),
                ));
            }
        }
    }
    frames.push(frame("contentBlockStop", json!({"contentBlockIndex": 0})));
    frames.push(frame("messageStop", json!({"stopReason": stop})));
    frames.push(frame(
        "metadata",
        json!({"usage": usage, "metrics": {"latencyMs": 3}}),
    ));
    let mut r = Response::new(GatewayBody::full(frames.concat()));
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/vnd.amazon.eventstream"),
    );
    r
}
