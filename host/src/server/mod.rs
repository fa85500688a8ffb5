//! The client-facing server: accept loop (HTTP/1.1 and h2 on one port),
//! routing of `/v1/{account}/{gateway}/{provider}/…`, the current pipeline
//! generation, and graceful shutdown that drains in-flight requests.

pub mod admin;
pub mod dashboard;
pub mod endpoints;
pub mod reload;
pub mod route;

use crate::config::Config;
use crate::http::body::GatewayBody;
use crate::http::error::GatewayError;
use crate::pipeline::flow::{self, Env, Route};
use crate::pipeline::{self, Generation};
use crate::runtime::Runtime;
use crate::runtime::host::Services;
use crate::store::kv::{KvLimits, KvStore};
use crate::store::limits::Limiter;
use crate::store::logs::LogStore;
use crate::store::now_ms;
use crate::telemetry::Metrics;
use arc_swap::ArcSwap;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// What every connection shares.
pub struct App {
    env: Env,
    admin_listen: Option<SocketAddr>,
    generation: ArcSwap<Generation>,
}

impl App {
    /// The generation new requests use.
    pub fn generation(&self) -> Arc<Generation> {
        self.generation.load_full()
    }

    /// Makes `generation` the one new requests use.
    pub fn swap(&self, generation: Generation) {
        self.generation.store(Arc::new(generation));
    }

    fn metrics_response(&self) -> Response<GatewayBody> {
        let s = &self.env.runtime.services;
        let logs = s.logs.as_ref().map(|l| &l.counters);
        let get = |c: Option<&std::sync::atomic::AtomicU64>| {
            c.map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
                .unwrap_or(0)
        };
        let extra = [
            (
                "aigw_log_entries_written_total",
                get(logs.map(|l| &l.written)),
            ),
            (
                "aigw_log_entries_dropped_total",
                get(logs.map(|l| &l.dropped)),
            ),
            ("aigw_log_write_errors_total", get(logs.map(|l| &l.errors))),
            ("aigw_kv_bytes", s.kv.bytes() as u64),
            ("aigw_kv_entries", s.kv.len() as u64),
            (
                "aigw_kv_evictions_total",
                s.kv.evictions.load(std::sync::atomic::Ordering::Relaxed),
            ),
            ("aigw_generation", self.generation().id),
            (
                "aigw_otlp_spans_exported_total",
                get(s.otlp.as_ref().map(|o| &o.counters.exported)),
            ),
            (
                "aigw_otlp_spans_dropped_total",
                get(s.otlp.as_ref().map(|o| &o.counters.dropped)),
            ),
            (
                "aigw_store_commands_total",
                get(s.redis.as_ref().map(|r| &r.counters.ok)),
            ),
            (
                "aigw_store_errors_total",
                get(s.redis.as_ref().map(|r| &r.counters.errors)),
            ),
        ];
        Response::new(GatewayBody::full(s.metrics.render_with(&extra)))
    }

    async fn route(&self, req: Request<Incoming>, peer: IpAddr) -> Response<GatewayBody> {
        let path = req.uri().path().to_string();
        if path == "/healthz" && req.method() == Method::GET {
            let mut r = Response::new(GatewayBody::full("ok\n"));
            *r.status_mut() = StatusCode::OK;
            return r;
        }
        // With an admin listener, metrics live there (behind its token).
        if path == "/metrics" && req.method() == Method::GET && self.admin_listen.is_none() {
            return self.metrics_response();
        }
        if req.method() == Method::POST
            && let Some((account, gateway)) = universal_path(&path)
        {
            let (parts, body) = req.into_parts();
            return endpoints::universal(
                &self.env,
                self.generation(),
                account,
                gateway,
                parts,
                body,
                peer,
            )
            .await;
        }
        let route = match parse_route(&path, req.uri().query()) {
            Ok(r) => r,
            Err(e) => return e.into_response(),
        };
        let (parts, body) = req.into_parts();
        if route.provider == "compat" {
            return endpoints::compat(&self.env, self.generation(), route, parts, body, peer).await;
        }
        flow::handle(
            &self.env,
            self.generation(),
            route,
            parts,
            flow::BodyIn::Stream(body),
            peer,
        )
        .await
    }
}

/// `/v1/{account}/{gateway}` (the universal endpoint), if that is the path.
fn universal_path(path: &str) -> Option<(String, String)> {
    route::universal(path).map(|(account, gateway)| (account.to_string(), gateway.to_string()))
}

/// Splits `/v1/{account}/{gateway}/{provider}/{rest…}` (see [`route`]).
pub fn parse_route(path: &str, query: Option<&str>) -> Result<Route, GatewayError> {
    let parts = route::split_route(path).map_err(|e| GatewayError::not_found(e.to_string()))?;
    Ok(Route {
        account: parts.account.to_string(),
        gateway: parts.gateway.to_string(),
        provider: parts.provider.to_string(),
        path: parts.path.to_string(),
        query: query.map(str::to_string),
    })
}

/// Services for a config: kv (restored from the snapshot), limits, logs, metrics.
pub fn services(config: &Config, with_log_store: bool) -> Result<Arc<Services>, String> {
    let kv = KvStore::new(KvLimits::default());
    let retention = crate::store::logs::Retention {
        max_entries: config.log_max_entries,
        max_age_days: config.log_max_age_days,
    };
    let logs = match (&config.logs_postgres, with_log_store) {
        (_, false) => None,
        (Some(url), true) => {
            Some(LogStore::open_postgres(&url.0, retention).map_err(|e| format!("logs.url: {e}"))?)
        }
        (None, true) => Some(LogStore::open_with_retention(&config.data_dir, retention)?),
    };
    Ok(Arc::new(Services {
        kv,
        limiter: Limiter::default(),
        logs,
        metrics: Metrics::default(),
        // Only a serving gateway exports (not `aigw check`).
        otlp: config
            .otlp
            .clone()
            .filter(|_| with_log_store)
            .map(|settings| {
                crate::telemetry::otlp::OtlpExporter::start(
                    settings,
                    crate::http::upstream::client(),
                )
            }),
        redis: match &config.store {
            Some(settings) => Some(Arc::new(crate::store::redis::RedisStore::new(
                settings.clone(),
            )?)),
            None => None,
        },
    }))
}

fn snapshot_path(config: &Config) -> std::path::PathBuf {
    config.data_dir.join("kv-snapshot.bin")
}

/// `aigw check`: loads the config and every filter, and runs `configure`.
pub async fn check(config_path: &Path) -> Result<String, String> {
    let config = Config::load(config_path).map_err(|e| e.to_string())?;
    let services = services(&config, false)?;
    let runtime = Runtime::new(services, Some(&config.data_dir.join("wasm-cache")))?;
    let generation = pipeline::build(&runtime, Arc::new(config), 1, None)
        .await
        .map_err(|e| e.to_string())?;
    let mut lines = Vec::new();
    for (name, gw) in &generation.gateways {
        let names: Vec<&str> = gw.stages.iter().map(|s| &*s.filter.name).collect();
        lines.push(format!("gateway {name}: pipeline [{}]", names.join(", ")));
    }
    for (name, f) in &generation.filters {
        lines.push(format!(
            "filter {name}: {} sha256:{}",
            f.source,
            &f.sha256[..16]
        ));
    }
    Ok(lines.join("\n"))
}

/// `aigw serve`: runs until SIGTERM / Ctrl-C, then drains.
pub async fn serve(config_path: &Path) -> Result<(), String> {
    let config = Config::load(config_path).map_err(|e| e.to_string())?;
    let services = services(&config, true)?;
    match services.kv.load_snapshot(&snapshot_path(&config), now_ms()) {
        Ok(0) => {}
        Ok(n) => tracing::info!(entries = n, "restored the key-value snapshot"),
        Err(e) => tracing::warn!("ignoring the key-value snapshot: {e}"),
    }
    let initial_fingerprint = reload::fingerprint(config_path, &config.plugins_dir);
    let runtime = Arc::new(Runtime::new(
        services.clone(),
        Some(&config.data_dir.join("wasm-cache")),
    )?);
    let config = Arc::new(config);
    let generation = pipeline::build(&runtime, config.clone(), 1, None)
        .await
        .map_err(|e| e.to_string())?;

    if let Some(addr) = config.mock_provider {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("mock_provider.listen {addr}: cannot bind: {e}"))?;
        let bound = listener.local_addr().map_err(|e| e.to_string())?;
        tracing::info!("mock provider listening on http://{bound}");
        tokio::spawn(crate::mock::serve(
            listener,
            Arc::new(crate::mock::MockState::default()),
        ));
    }

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("server.listen {}: cannot bind: {e}", config.listen))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let app = Arc::new(App {
        env: Env {
            runtime: runtime.clone(),
            client: crate::http::upstream::client(),
        },
        admin_listen: config.admin_listen,
        generation: ArcSwap::from_pointee(generation),
    });
    let reloader = reload::Reloader::new(runtime.clone(), config_path, app.clone());
    let _watcher = match reload::watch(reloader.clone(), &config.plugins_dir, initial_fingerprint) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!("hot reload disabled: {e}");
            None
        }
    };
    let admin = match config.admin_listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| format!("server.admin_listen {addr}: cannot bind: {e}"))?;
            let admin_bound = listener.local_addr().map_err(|e| e.to_string())?;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "aigw admin listening on http://{admin_bound}");
            let _ = out.flush();
            Some(tokio::spawn(admin::serve(
                listener,
                app.clone(),
                reloader.clone(),
                config.admin_token.clone(),
            )))
        }
        None => None,
    };
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "aigw listening on http://{bound}");
        let _ = out.flush();
    }
    tracing::info!(%bound, gateways = app.generation().gateways.len(), "serving");

    let maintenance = {
        let services = services.clone();
        let path = snapshot_path(&config);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            tick.tick().await;
            loop {
                tick.tick().await;
                let now = now_ms();
                services.kv.sweep(now);
                services.limiter.sweep(now);
                if !services.kv.is_empty() {
                    // Copying and writing the store is blocking work.
                    let (services, path) = (services.clone(), path.clone());
                    let saved =
                        tokio::task::spawn_blocking(move || services.kv.save_snapshot(&path, now))
                            .await;
                    if let Ok(Err(e)) = saved {
                        tracing::warn!("cannot write the key-value snapshot: {e}");
                    }
                }
            }
        })
    };

    accept_loop(listener, app, &config).await;
    maintenance.abort();
    if let Some(admin) = admin {
        admin.abort();
    }
    // Let the last body tasks run their done hooks (log entries, token
    // budgets) before the log store closes, within the grace period.
    let waited = std::time::Instant::now();
    let grace = Duration::from_millis(config.shutdown_grace_ms);
    while services
        .metrics
        .body_tasks
        .load(std::sync::atomic::Ordering::Acquire)
        > 0
        && waited.elapsed() < grace
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    match services.kv.save_snapshot(&snapshot_path(&config), now_ms()) {
        Ok(n) => tracing::info!(entries = n, "saved the key-value snapshot"),
        Err(e) => tracing::warn!("cannot write the key-value snapshot: {e}"),
    }
    if let Some(logs) = &services.logs {
        logs.close();
    }
    tracing::info!("stopped");
    Ok(())
}

async fn accept_loop(listener: TcpListener, app: Arc<App>, config: &Config) {
    let grace = Duration::from_millis(config.shutdown_grace_ms);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Without a timer hyper enforces no header-read timeout: slow clients could
    // hold connections forever. A head over max_header_bytes gets 431.
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_millis(config.header_read_timeout_ms))
        .max_buf_size(config.max_header_bytes);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_header_list_size(config.max_header_bytes.min(u32::MAX as usize) as u32);
    let connections = Arc::new(tokio::sync::Semaphore::new(config.max_connections));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let Ok(permit) = connections.clone().try_acquire_owned() else {
                    app.env.runtime.services.metrics.connections_refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::spawn(refuse_connection(stream));
                    continue;
                };
                let app = app.clone();
                let peer_ip = peer.ip();
                let service = service_fn(move |req| {
                    let app = app.clone();
                    // Boxed: a request's future holds the whole pipeline state
                    // (kilobytes), and hyper moves the service future several
                    // times per request; moving a pointer costs nothing.
                    Box::pin(async move {
                        Ok::<_, std::convert::Infallible>(app.route(req, peer_ip).await)
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
                tracing::info!("shutting down: draining in-flight requests");
                break;
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; closing remaining connections");
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

async fn shutdown_signal() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_split_into_parts() {
        let r = parse_route("/v1/acct/gw/openai/chat/completions", Some("x=1")).unwrap();
        assert_eq!(
            (r.account.as_str(), r.gateway.as_str(), r.provider.as_str()),
            ("acct", "gw", "openai")
        );
        assert_eq!(r.path, "/chat/completions");
        assert_eq!(r.query.as_deref(), Some("x=1"));
        assert_eq!(parse_route("/v1/a/g/p", None).unwrap().path, "");
        assert_eq!(
            parse_route("/nope", None).unwrap_err().status,
            StatusCode::NOT_FOUND
        );
        assert!(
            parse_route("/v1/a/g", None)
                .unwrap_err()
                .message
                .contains("universal")
        );
        assert_eq!(universal_path("/v1/a/g"), Some(("a".into(), "g".into())));
        assert_eq!(universal_path("/v1/a/g/"), Some(("a".into(), "g".into())));
        assert_eq!(universal_path("/v1/a/g/openai"), None);
    }
}
