//! The admin listener (`server.admin_listen`): plugin status, forced reload,
//! metrics and health. Protected by `server.admin_token` (Bearer) when set;
//! the token is compared in constant time.

use super::App;
use super::body::GatewayBody;
use super::error::GatewayError;
use super::reload::Reloader;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::Arc;
use tokio::net::TcpListener;

fn json(status: StatusCode, value: serde_json::Value) -> Response<GatewayBody> {
    let mut r = Response::new(GatewayBody::full(value.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// Equal without an early exit on the first differing byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn route(
    app: Arc<App>,
    reloader: Arc<Reloader>,
    token: Option<Arc<str>>,
    req: Request<Incoming>,
) -> Response<GatewayBody> {
    let path = req.uri().path().to_string();
    if path == "/healthz" {
        return Response::new(GatewayBody::full("ok\n"));
    }
    if let Some(token) = token {
        let sent = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !same(sent.as_bytes(), token.as_bytes()) {
            return GatewayError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the admin API needs 'Authorization: Bearer <server.admin_token>'",
            )
            .into_response();
        }
    }
    match (req.method(), path.as_str()) {
        (&Method::GET, "/metrics") => app.metrics_response(),
        (&Method::GET, "/api/plugins") => json(StatusCode::OK, reloader.status()),
        (&Method::POST, "/api/reload") => match reloader.reload("admin API").await {
            Ok(generation) => json(
                StatusCode::OK,
                serde_json::json!({"generation": generation}),
            ),
            Err(message) => {
                GatewayError::new(StatusCode::UNPROCESSABLE_ENTITY, "reload_rejected", message)
                    .into_response()
            }
        },
        _ => GatewayError::not_found(format!("no admin route {} {path}", req.method()))
            .into_response(),
    }
}

/// Serves the admin API on `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    reloader: Arc<Reloader>,
    token: Option<String>,
) {
    let token: Option<Arc<str>> = token.map(Arc::from);
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let (app, reloader, token) = (app.clone(), reloader.clone(), token.clone());
        let service = service_fn(move |req| {
            let (app, reloader, token) = (app.clone(), reloader.clone(), token.clone());
            async move { Ok::<_, std::convert::Infallible>(route(app, reloader, token, req).await) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}
