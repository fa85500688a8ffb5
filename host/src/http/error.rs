//! Errors the gateway answers itself, and the one place they become HTTP
//! responses: `{"error": {"type": "...", "message": "..."}}` with the status
//! that fits. Each error says who failed ([`Origin`]) and whether the same
//! request may succeed later ([`GatewayError::retryable`]); a retryable answer
//! carries `Retry-After`. Messages never contain provider keys.

use crate::http::body::GatewayBody;
use bytes::Bytes;
use hyper::{Response, StatusCode, header};

/// Who caused an error the gateway answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The request itself (a bad header, body, route or credential).
    Client,
    /// The gateway (at capacity, shutting down, misconfigured).
    Gateway,
    /// A filter (failed with `on_error = "closed"`).
    Filter,
    /// The provider (unreachable, too slow, broken stream).
    Upstream,
    /// A store the gateway depends on (log store, shared store).
    Store,
}

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
    /// Who failed.
    pub origin: Origin,
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
    /// 503: a store the answer needs is unavailable.
    pub fn store_unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message).caused_by(Origin::Store)
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
        Self::new(StatusCode::BAD_GATEWAY, "upstream_error", message).caused_by(Origin::Upstream)
    }
    /// 504: upstream too slow.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GATEWAY_TIMEOUT, "upstream_timeout", message)
            .caused_by(Origin::Upstream)
    }
    /// 500: a filter failed with `on_error = "closed"`.
    pub fn filter_failed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "filter_error", message)
            .caused_by(Origin::Filter)
    }
    /// 503: shutting down.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// Any status; a 4xx is the client's doing, anything else the gateway's until
    /// [`GatewayError::caused_by`] says otherwise.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        GatewayError {
            status,
            kind,
            message: message.into(),
            origin: if status.is_client_error() {
                Origin::Client
            } else {
                Origin::Gateway
            },
        }
    }

    /// The same error, caused by `origin`.
    #[must_use]
    pub fn caused_by(mut self, origin: Origin) -> Self {
        self.origin = origin;
        self
    }

    /// Whether the same request may succeed if sent again later: the provider or a store was
    /// unavailable or slow, or the gateway was at capacity. A client mistake or a filter's
    /// refusal never is.
    pub fn retryable(&self) -> bool {
        match self.origin {
            Origin::Client | Origin::Filter => false,
            Origin::Upstream | Origin::Store | Origin::Gateway => matches!(
                self.status,
                StatusCode::BAD_GATEWAY
                    | StatusCode::SERVICE_UNAVAILABLE
                    | StatusCode::GATEWAY_TIMEOUT
            ),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Bytes {
        Bytes::from(
            serde_json::json!({"error": {"type": self.kind, "message": self.message}}).to_string(),
        )
    }

    /// The response headers: JSON, and `Retry-After` on a retryable 503.
    pub fn headers(&self) -> header::HeaderMap {
        let mut headers = header::HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        if self.retryable() && self.status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        headers
    }

    /// The HTTP response.
    pub fn into_response(self) -> Response<GatewayBody> {
        let mut resp = Response::new(GatewayBody::full(self.body()));
        *resp.status_mut() = self.status;
        *resp.headers_mut() = self.headers();
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::{GatewayError, Origin};
    use hyper::StatusCode;

    #[test]
    fn each_error_says_who_failed_and_whether_to_retry() {
        let cases = [
            (GatewayError::bad_request("x"), Origin::Client, false),
            (GatewayError::not_found("x"), Origin::Client, false),
            (GatewayError::too_large(1), Origin::Client, false),
            (GatewayError::bad_gateway("x"), Origin::Upstream, true),
            (GatewayError::timeout("x"), Origin::Upstream, true),
            (GatewayError::filter_failed("x"), Origin::Filter, false),
            (GatewayError::unavailable("x"), Origin::Gateway, true),
            (GatewayError::store_unavailable("x"), Origin::Store, true),
            (
                GatewayError::new(StatusCode::UNAUTHORIZED, "unauthorized", "x"),
                Origin::Client,
                false,
            ),
        ];
        for (e, origin, retry) in cases {
            assert_eq!(e.origin, origin, "{e}");
            assert_eq!(e.retryable(), retry, "{e}");
        }
    }

    #[test]
    fn a_retryable_503_says_when_to_come_back() {
        let r = GatewayError::store_unavailable("log store down").into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers().get("retry-after").unwrap(), "1");
        let r = GatewayError::bad_request("no").into_response();
        assert!(r.headers().get("retry-after").is_none());
    }
}
