//! Errors the gateway answers itself, and the one place they become HTTP
//! responses: `{"error": {"type": "...", "message": "..."}}` with the status
//! that fits. Messages never contain provider keys.

use crate::http::body::GatewayBody;
use bytes::Bytes;
use hyper::{Response, StatusCode, header};

/// A response the gateway makes itself.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {kind}: {message}")]
pub struct GatewayError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable type.
    pub kind: &'static str,
    /// What went wrong, naming the header/key/filter involved.
    pub message: String,
}

impl GatewayError {
    /// 400: a bad header or body.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    /// 404: unknown route, gateway or provider.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    /// 413: body over `max_body_bytes`.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body is larger than server.max_body_bytes ({limit} bytes)"),
        )
    }
    /// 502: upstream unreachable or broken.
    pub fn bad_gateway(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, "upstream_error", message)
    }
    /// 504: upstream too slow.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GATEWAY_TIMEOUT, "upstream_timeout", message)
    }
    /// 500: a filter failed with `on_error = "closed"`.
    pub fn filter_failed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "filter_error", message)
    }
    /// 503: shutting down.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// Any status.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        GatewayError {
            status,
            kind,
            message: message.into(),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Bytes {
        Bytes::from(
            serde_json::json!({"error": {"type": self.kind, "message": self.message}}).to_string(),
        )
    }

    /// The HTTP response.
    pub fn into_response(self) -> Response<GatewayBody> {
        let body = self.body();
        let mut resp = Response::new(GatewayBody::full(body));
        *resp.status_mut() = self.status;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        resp
    }
}
