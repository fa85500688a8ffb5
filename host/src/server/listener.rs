//! One accept loop for every listener (the client listener and the admin listener): a cap on
//! open connections (a short 503 beyond it), a header-read timeout and a header size limit, and
//! on SIGTERM / Ctrl-C a graceful drain of in-flight requests within the grace period.

use crate::config::Config;
use crate::http::body::GatewayBody;
use crate::runtime::host::Services;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// The limits a listener enforces (`[server]`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout_ms: u64,
    pub max_header_bytes: usize,
    pub shutdown_grace_ms: u64,
}

impl Limits {
    /// The `[server]` limits of `config`.
    pub fn of(config: &Config) -> Limits {
        Limits {
            max_connections: config.max_connections,
            header_read_timeout_ms: config.header_read_timeout_ms,
            max_header_bytes: config.max_header_bytes,
            shutdown_grace_ms: config.shutdown_grace_ms,
        }
    }
}

/// Accepts connections on `listener` and serves each request with `handle(request, peer ip)`
/// until a shutdown signal, then drains: returns once in-flight connections have finished or
/// the grace period is over. `name` tags its log lines (`server.listen`, `server.admin_listen`).
pub async fn accept_loop<H, F>(
    name: &'static str,
    listener: TcpListener,
    limits: Limits,
    services: Arc<Services>,
    handle: H,
) where
    H: Fn(Request<Incoming>, IpAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<GatewayBody>> + Send + 'static,
{
    let grace = Duration::from_millis(limits.shutdown_grace_ms);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Without a timer hyper enforces no header-read timeout: slow clients could
    // hold connections forever. A head over max_header_bytes gets 431.
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms))
        .max_buf_size(limits.max_header_bytes);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes.min(u32::MAX as usize) as u32);
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(listener = name, "accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let Ok(permit) = connections.clone().try_acquire_owned() else {
                    services.metrics.connections_refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::spawn(refuse_connection(stream));
                    continue;
                };
                let handle = handle.clone();
                let peer_ip = peer.ip();
                let service = service_fn(move |req| {
                    let handle = handle.clone();
                    // Boxed: a request's future holds the whole pipeline state
                    // (kilobytes), and hyper moves the service future several
                    // times per request; moving a pointer costs nothing.
                    Box::pin(async move {
                        Ok::<_, std::convert::Infallible>(handle(req, peer_ip).await)
                    })
                });
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, "connection ended: {e}");
                    }
                    drop(permit);
                });
            }
            _ = &mut shutdown => {
                tracing::info!(listener = name, "shutting down: draining in-flight requests");
                break;
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            listener = name,
            "shutdown grace period over; closing remaining connections"
        );
    }
}

/// Over `max_connections`: a short 503 and close, instead of a hung client.
async fn refuse_connection(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    const BODY: &str = r#"{"error":{"message":"gateway at capacity: too many open connections (server.max_connections); retry shortly","type":"unavailable"}}"#;
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = stream.write_all(reply.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// SIGTERM or Ctrl-C; every listener waits on its own copy.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
