//! Hot reload: builds a new pipeline generation off the request path
//! (config parsed, filters compiled, type-checked and `configure`d) and only
//! then swaps it in atomically. Requests in flight keep the generation they
//! started with; an old generation is freed when its last request ends.
//! A rejected config or filter leaves the current generation serving, logs one
//! line (file, stage, cause) and shows in the plugin status.
//!
//! The watcher (`notify`) follows `plugins_dir` and the config file. Events are
//! debounced; a reload happens only when the content hash of the config or of
//! a `.wasm` changed. Files whose name starts with `.` or does not end in
//! `.wasm` are ignored, so the safe way to install a filter is to write it to
//! a temporary name and rename it to `<name>.wasm`.

use super::App;
use crate::config::Config;
use crate::pipeline::{self, BuildError, Generation};
use crate::runtime::{Runtime, Source, sha256_hex};
use crate::store::now_ms;
use notify::{Event, RecursiveMode, Watcher};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Quiet time after the last file event before a reload.
const DEBOUNCE: Duration = Duration::from_millis(300);

/// What the plugin status API shows for one filter.
#[derive(Debug, Clone)]
struct PluginStatus {
    source: String,
    sha256: String,
    loaded_at_ms: u64,
    generation: u64,
    status: &'static str,
    last_error: Option<String>,
}

/// The reloader: one reload at a time.
pub struct Reloader {
    runtime: Arc<Runtime>,
    config_path: PathBuf,
    app: Arc<App>,
    running: tokio::sync::Mutex<()>,
    plugins: Mutex<BTreeMap<String, PluginStatus>>,
    last_failure: Mutex<Option<Value>>,
    next_id: AtomicU64,
}

impl Reloader {
    /// A reloader for the app's current generation.
    pub fn new(runtime: Arc<Runtime>, config_path: &Path, app: Arc<App>) -> Arc<Reloader> {
        let current = app.generation();
        let r = Reloader {
            runtime,
            config_path: config_path.to_path_buf(),
            next_id: AtomicU64::new(current.id + 1),
            app,
            running: tokio::sync::Mutex::new(()),
            plugins: Mutex::new(BTreeMap::new()),
            last_failure: Mutex::new(None),
        };
        r.record_success(&current);
        Arc::new(r)
    }

    fn record_success(&self, generation: &Generation) {
        let Ok(mut plugins) = self.plugins.lock() else {
            return;
        };
        plugins.retain(|name, _| generation.filters.contains_key(name));
        for (name, f) in &generation.filters {
            let changed = plugins.get(name).is_none_or(|p| p.sha256 != f.sha256);
            let generation_id = if changed {
                generation.id
            } else {
                plugins
                    .get(name)
                    .map(|p| p.generation)
                    .unwrap_or(generation.id)
            };
            plugins.insert(
                name.clone(),
                PluginStatus {
                    source: match &f.source {
                        Source::Builtin => "built-in".into(),
                        Source::File(p) => p.display().to_string(),
                    },
                    sha256: f.sha256.clone(),
                    loaded_at_ms: f.loaded_at_ms,
                    generation: generation_id,
                    status: "active",
                    last_error: None,
                },
            );
        }
    }

    fn record_failure(&self, trigger: &str, err: &BuildError) {
        if let Ok(mut plugins) = self.plugins.lock() {
            for p in &err.0 {
                let Some(name) = &p.filter else { continue };
                let entry = plugins.entry(name.clone()).or_insert_with(|| PluginStatus {
                    source: String::new(),
                    sha256: String::new(),
                    loaded_at_ms: 0,
                    generation: 0,
                    status: "error",
                    last_error: None,
                });
                entry.status = "error";
                entry.last_error = Some(format!("{} failed: {}", p.stage, p.message));
            }
        }
        if let Ok(mut last) = self.last_failure.lock() {
            *last = Some(json!({
                "at_ms": now_ms(),
                "trigger": trigger,
                "problems": err.0.iter().map(|p| json!({"filter": p.filter, "stage": p.stage, "message": p.message})).collect::<Vec<_>>(),
            }));
        }
    }

    /// Builds and swaps in a new generation; the old one keeps serving on error.
    pub async fn reload(&self, trigger: &str) -> Result<u64, String> {
        let _one_at_a_time = self.running.lock().await;
        let metrics = &self.runtime.services.metrics;
        metrics.reloads.fetch_add(1, Ordering::Relaxed);
        let current = self.app.generation();
        let config = match Config::load(&self.config_path) {
            Ok(c) => c,
            Err(e) => {
                metrics.reload_failures.fetch_add(1, Ordering::Relaxed);
                let err = BuildError(vec![pipeline::Problem {
                    filter: None,
                    stage: "config",
                    message: e.to_string(),
                }]);
                tracing::error!(
                    trigger,
                    stage = "config",
                    "reload rejected, generation {} keeps serving: {e}",
                    current.id
                );
                self.record_failure(trigger, &err);
                return Err(e.to_string());
            }
        };
        warn_restart_only(&current.config, &config);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        match pipeline::build(&self.runtime, Arc::new(config), id, Some(&current)).await {
            Ok(generation) => {
                self.record_success(&generation);
                self.app.swap(generation);
                tracing::info!(trigger, generation = id, "reloaded");
                Ok(id)
            }
            Err(err) => {
                metrics.reload_failures.fetch_add(1, Ordering::Relaxed);
                for p in &err.0 {
                    tracing::error!(
                        trigger,
                        stage = p.stage,
                        filter = p.filter.as_deref().unwrap_or("-"),
                        "reload rejected, generation {} keeps serving: {}",
                        current.id,
                        p.message
                    );
                }
                self.record_failure(trigger, &err);
                Err(err.to_string())
            }
        }
    }

    /// The plugin status document (`GET /api/plugins`).
    pub fn status(&self) -> Value {
        let generation = self.app.generation();
        let plugins: Vec<Value> = self
            .plugins
            .lock()
            .map(|p| {
                p.iter()
                    .map(|(name, s)| {
                        let loaded = generation.filters.get(name);
                        let info = loaded.map(|f| f.info);
                        // Per gateway using it: the effective on_error and the circuit.
                        let mut stages = Vec::new();
                        let mut failing = false;
                        let mut gateways: Vec<_> = generation.gateways.iter().collect();
                        gateways.sort_by(|a, b| a.0.cmp(b.0));
                        for (gw, pipeline) in gateways {
                            for stage in
                                pipeline.stages.iter().filter(|st| &*st.filter.name == name)
                            {
                                let health = stage.breaker.health();
                                failing |=
                                    health.circuit != "closed" || health.failures_in_a_row > 0;
                                let http = &stage.settings.http;
                                stages.push(json!({
                                    "gateway": gw,
                                    "on_error": on_error_name(stage.on_error),
                                    "health": health,
                                    // What its table grants; secrets only counted.
                                    "capabilities": {
                                        "allow_http": http.origins,
                                        "http_timeout_ms": http.timeout_ms,
                                        "http_max_response_bytes": http.max_response_bytes,
                                        "secrets": stage.settings.secrets.len(),
                                    },
                                }));
                            }
                        }
                        let status = if s.status == "active" && failing {
                            "failing"
                        } else {
                            s.status
                        };
                        json!({
                            "name": name,
                            "source": s.source,
                            "sha256": s.sha256,
                            // The contract it was built against.
                            "wit_version": loaded.map(|f| format!("aigw:filter@{}", f.contract())),
                            "stateless": info.map(|i| i.stateless),
                            "loaded_at_ms": s.loaded_at_ms,
                            "generation": s.generation,
                            "status": status,
                            "last_error": s.last_error,
                            "declared_on_error": info.and_then(|i| i.on_error).map(on_error_name),
                            "warnings": info.map(|i| i.warnings()).unwrap_or_default(),
                            "stages": stages,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let last_failure = self.last_failure.lock().map(|l| l.clone()).unwrap_or(None);
        json!({
            "generation": generation.id,
            "config": self.config_path.display().to_string(),
            "plugins": plugins,
            "last_reload_failure": last_failure,
        })
    }
}

fn on_error_name(e: crate::config::OnError) -> &'static str {
    match e {
        crate::config::OnError::Open => "open",
        crate::config::OnError::Closed => "closed",
    }
}

fn warn_restart_only(old: &Config, new: &Config) {
    let mut changed = Vec::new();
    if old.listen != new.listen {
        changed.push("server.listen");
    }
    if old.admin_listen != new.admin_listen {
        changed.push("server.admin_listen");
    }
    if old.data_dir != new.data_dir {
        changed.push("server.data_dir");
    }
    if old.plugins_dir != new.plugins_dir {
        changed.push("server.plugins_dir");
    }
    if old.mock_provider != new.mock_provider {
        changed.push("mock_provider");
    }
    if !changed.is_empty() {
        tracing::warn!(
            "{} changed: these take effect after a restart",
            changed.join(", ")
        );
    }
}

/// Content fingerprint of the config file and every `.wasm` in the plugins dir.
/// Taken before a generation is built, so a change made while it builds is seen.
pub fn fingerprint(config_path: &Path, plugins_dir: &Path) -> String {
    let mut parts = vec![sha256_hex(&std::fs::read(config_path).unwrap_or_default())];
    let mut files: Vec<PathBuf> = std::fs::read_dir(plugins_dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| is_filter_file(p))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    for f in files {
        parts.push(format!(
            "{}={}",
            f.display(),
            sha256_hex(&std::fs::read(&f).unwrap_or_default())
        ));
    }
    sha256_hex(parts.join("\n").as_bytes())
}

fn is_filter_file(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    !name.starts_with('.') && name.ends_with(".wasm")
}

/// Watches the plugins dir and the config file; reloads on content changes.
/// The returned watcher must be kept alive.
pub fn watch(
    reloader: Arc<Reloader>,
    plugins_dir: &Path,
    initial_fingerprint: String,
) -> Result<notify::RecommendedWatcher, String> {
    std::fs::create_dir_all(plugins_dir)
        .map_err(|e| format!("{}: cannot create: {e}", plugins_dir.display()))?;
    let config_path =
        std::path::absolute(&reloader.config_path).unwrap_or(reloader.config_path.clone());
    let config_dir = config_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let plugins_dir = std::path::absolute(plugins_dir).unwrap_or(plugins_dir.to_path_buf());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let (cfg, plugins) = (config_path.clone(), plugins_dir.clone());
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<Event>| {
        let Ok(event) = res else { return };
        let relevant = event
            .paths
            .iter()
            .any(|p| p == &cfg || (p.parent() == Some(plugins.as_path()) && is_filter_file(p)));
        if relevant {
            let _ = tx.send(());
        }
    })
    .map_err(|e| format!("cannot start the file watcher: {e}"))?;
    watcher
        .watch(&plugins_dir, RecursiveMode::NonRecursive)
        .map_err(|e| format!("{}: cannot watch: {e}", plugins_dir.display()))?;
    watcher
        .watch(&config_dir, RecursiveMode::NonRecursive)
        .map_err(|e| format!("{}: cannot watch: {e}", config_dir.display()))?;
    tokio::spawn(async move {
        let mut applied = initial_fingerprint;
        while rx.recv().await.is_some() {
            // Debounce: wait until the files have been quiet for a moment.
            while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {}
            let now = fingerprint(&config_path, &plugins_dir);
            if now == applied {
                continue;
            }
            applied = now;
            let _ = reloader.reload("file change").await;
        }
    });
    Ok(watcher)
}
