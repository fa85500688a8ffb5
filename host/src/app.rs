//! The composition root: builds the services a config asks for (key-value store, limits, log
//! store, metrics, OTLP export, Redis), the runtime and the first pipeline generation, and runs
//! `aigw serve` (listeners, hot reload, maintenance, drain) and `aigw check`. Everything else is
//! handed what it needs from here.

use crate::config::Config;
use crate::pipeline;
use crate::runtime::Runtime;
use crate::runtime::host::Services;
use crate::server::listener::{self, Limits};
use crate::server::{App, admin, reload};
use crate::store::kv::{KvLimits, KvStore};
use crate::store::limits::Limiter;
use crate::store::logs::LogStore;
use crate::store::now_ms;
use crate::store::port::{KvBackend, LimitsBackend};
use crate::telemetry::Metrics;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Services for a config: kv (restored from the snapshot), limits, logs, metrics.
pub fn services(config: &Config, with_log_store: bool) -> Result<Arc<Services>, String> {
    let kv = Arc::new(KvStore::new(KvLimits::default()));
    let limiter = Arc::new(Limiter::default());
    let redis = match &config.store {
        Some(settings) => Some(Arc::new(crate::store::redis::RedisStore::new(
            settings.clone(),
        )?)),
        None => None,
    };
    // The ports filters reach: Redis when configured, else process memory.
    let (kv_port, limits_port): (Arc<dyn KvBackend>, Arc<dyn LimitsBackend>) = match &redis {
        Some(r) => (r.clone(), r.clone()),
        None => (kv.clone(), limiter.clone()),
    };
    let retention = crate::store::logs::Retention {
        max_entries: config.log_max_entries,
        max_age_days: config.log_max_age_days,
    };
    let logs = match (&config.logs_postgres, with_log_store) {
        (_, false) => None,
        (Some(url), true) => {
            Some(LogStore::open_postgres(&url.0, retention).map_err(|e| format!("logs.url: {e}"))?)
        }
        (None, true) => Some(
            LogStore::open_with_retention(&config.data_dir, retention)
                .map_err(|e| e.to_string())?,
        ),
    };
    Ok(Arc::new(Services {
        kv,
        limiter,
        kv_port,
        limits_port,
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
        spend: crate::store::spend::SpendLedger::new(redis.clone()),
        redis,
        http: crate::http::upstream::client(),
        closing: tokio::sync::watch::channel(false).0,
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
        let names: Vec<String> = gw
            .stages
            .iter()
            .map(|s| {
                let mode = match s.on_error {
                    crate::config::OnError::Open => "open",
                    crate::config::OnError::Closed => "closed",
                };
                format!("{} (on_error {mode})", s.filter.name)
            })
            .collect();
        lines.push(format!("gateway {name}: pipeline [{}]", names.join(", ")));
        for stage in &gw.stages {
            for hint in &stage.settings.host_key_typos {
                lines.push(format!(
                    "warning: gateways.{name}.filters.{}: {hint}",
                    stage.filter.name
                ));
            }
        }
    }
    for (name, f) in &generation.filters {
        lines.push(format!(
            "filter {name}: {} sha256:{}",
            f.source,
            &f.sha256[..16]
        ));
        for w in f.info.warnings() {
            lines.push(format!("warning: filter {name}: {w}"));
        }
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
    // Virtual keys live in the log store's database; the request path reads a snapshot.
    let keys = match services.logs {
        Some(_) => {
            let s = services.clone();
            let ring = tokio::task::spawn_blocking(move || {
                // Stored responses (`store_responses`) live beside the keys.
                if let Some(logs) = &s.logs {
                    logs.with_db(crate::store::responses::ensure_schema)?;
                }
                crate::control::ring::KeyRing::open(s)
            })
            .await
            .map_err(|e| format!("virtual keys: {e}"))?
            .map_err(|e| format!("virtual keys: {e}"))?;
            ring.spawn_refresher();
            Some(ring)
        }
        None => None,
    };
    let app = Arc::new(App::new(
        runtime.clone(),
        config.admin_listen,
        generation,
        keys,
    ));
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
                Limits::of(&config),
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

    // WebSocket sessions outlive their connection's HTTP part: told to close on the signal.
    {
        let services = services.clone();
        tokio::spawn(async move {
            listener::shutdown_signal().await;
            services.closing.send_replace(true);
        });
    }
    let client_app = app.clone();
    listener::accept_loop(
        "server.listen",
        listener,
        Limits::of(&config),
        services.clone(),
        move |req, peer| {
            let app = client_app.clone();
            async move { app.route(req, peer).await }
        },
    )
    .await;
    // The admin listener saw the same signal and drains on its own, within the same grace.
    if let Some(admin) = admin {
        let grace = Duration::from_millis(config.shutdown_grace_ms);
        if tokio::time::timeout(grace, admin).await.is_err() {
            tracing::warn!("admin listener did not drain within the grace period");
        }
    }
    maintenance.abort();
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
    // The last settlements: budgets keep them across the restart.
    if let Some(ring) = &app.env_keys() {
        let ring = ring.clone();
        match tokio::task::spawn_blocking(move || ring.write_spend()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("cannot write budget spend: {e}"),
            Err(e) => tracing::warn!("cannot write budget spend: {e}"),
        }
    }
    if let Some(logs) = &services.logs {
        logs.close();
    }
    tracing::info!("stopped");
    Ok(())
}
