//! Pipelines: the ordered filters of each gateway, built from a `Config` into
//! an immutable `Generation` (filters compiled, type-checked and their tables
//! accepted by `configure` before anything serves traffic). A request takes the
//! current generation once and keeps it to the end (`flow`).

pub mod breaker;
pub mod flow;
pub(crate) mod headers;

use crate::config::{Config, FilterSettings, OnError, OnMissingFilter};
use crate::runtime::instance::{FilterError, FilterInstance};
use crate::runtime::{LoadedFilter, Runtime, Source, builtin};
use breaker::Breaker;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// One filter in one gateway's pipeline.
#[derive(Debug)]
pub struct Stage {
    /// The compiled filter.
    pub filter: Arc<LoadedFilter>,
    /// Its host settings and table for this gateway.
    pub settings: FilterSettings,
    /// Idle instances of this stage, reused by later requests.
    pub pool: InstancePool,
    /// Stops calling the filter after repeated failures.
    pub breaker: Breaker,
    /// What a failure does: the table's `on_error`, else the filter's declared default,
    /// else `open`.
    pub on_error: OnError,
}

/// Most idle instances kept per stage.
const MAX_IDLE_INSTANCES: usize = 128;
/// Requests an instance serves before it is retired (bounds what a leaking
/// filter can accumulate).
const MAX_INSTANCE_USES: u32 = 10_000;

/// Warm instances of one stage, ready to serve. An instance serves one
/// request at a time; between two requests it is `configure`d again (right
/// after the response of the first was sent), which rebuilds the filter's
/// state from its table (the SDK replaces the filter value), so nothing of a
/// previous request is visible. An instance that failed is never returned.
#[derive(Default)]
pub struct InstancePool {
    #[allow(
        clippy::vec_box,
        reason = "instances move between a request's slot (boxed) and the pool without reallocating"
    )]
    idle: std::sync::Mutex<Vec<Box<FilterInstance>>>,
}

impl std::fmt::Debug for InstancePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let idle = self.idle.lock().map(|v| v.len()).unwrap_or(0);
        f.debug_struct("InstancePool").field("idle", &idle).finish()
    }
}

impl InstancePool {
    /// An idle instance, if any.
    pub fn take(&self) -> Option<Box<FilterInstance>> {
        self.idle.lock().ok().and_then(|mut v| v.pop())
    }

    /// Returns a healthy instance after its request.
    pub fn give(&self, instance: Box<FilterInstance>) {
        if instance.uses() >= MAX_INSTANCE_USES {
            return;
        }
        if let Ok(mut v) = self.idle.lock()
            && v.len() < MAX_IDLE_INSTANCES
        {
            v.push(instance);
        }
    }
}

/// A gateway ready to serve.
#[derive(Debug)]
pub struct GatewayPipeline {
    /// Gateway name.
    pub name: String,
    /// Accepted accounts.
    pub accounts: Vec<String>,
    /// `cf-aig-authorization` token, when the gateway is authenticated.
    pub auth_token: Option<crate::http::Secret>,
    /// Whether its clients use virtual keys.
    pub keys: crate::config::KeyMode,
    /// Filters in request order.
    pub stages: Vec<Stage>,
    /// Every hook some filter of the pipeline declared (a request prepares
    /// only what some filter will see).
    pub hooks: crate::runtime::bindings::types::Hooks,
}

impl GatewayPipeline {
    /// True when `account` may use this gateway.
    pub fn accepts(&self, account: &str) -> bool {
        self.accounts.iter().any(|a| a == "*" || a == account)
    }
}

/// Everything one request needs, immutable once built.
#[derive(Debug)]
pub struct Generation {
    /// Increasing number, 1 for the first.
    pub id: u64,
    /// The configuration it was built from.
    pub config: Arc<Config>,
    /// Gateways by name.
    pub gateways: HashMap<String, Arc<GatewayPipeline>>,
    /// Loaded filters by name.
    pub filters: BTreeMap<String, Arc<LoadedFilter>>,
    /// Upstream clients of providers with their own trusted CAs.
    pub clients: HashMap<String, crate::http::upstream::UpstreamClient>,
}

/// One reason a generation could not be built.
#[derive(Debug, Clone)]
pub struct Problem {
    /// The filter concerned, if any.
    pub filter: Option<String>,
    /// Stage: read, parse, type-check, instantiate, describe, configure, missing.
    pub stage: &'static str,
    /// The message, naming the file, key or filter.
    pub message: String,
}

/// Why a generation could not be built: one problem per line.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join("\n"))]
pub struct BuildError(pub Vec<Problem>);

fn problem(filter: &str, e: &FilterError, message: String) -> Problem {
    let stage = match e {
        FilterError::Load { stage, .. } => stage,
        FilterError::Configure { .. } => "configure",
        FilterError::Call { .. } => "instantiate",
    };
    Problem {
        filter: Some(filter.to_string()),
        stage,
        message,
    }
}

/// Loads every filter the config names and checks every filter table.
pub async fn build(
    runtime: &Runtime,
    config: Arc<Config>,
    id: u64,
    previous: Option<&Generation>,
) -> Result<Generation, BuildError> {
    let mut problems: Vec<Problem> = Vec::new();
    let mut missing: Vec<String> = Vec::new();
    let mut filters: BTreeMap<String, Arc<LoadedFilter>> = BTreeMap::new();
    let file = config.file.display().to_string();
    for (gw_name, gw) in &config.gateways {
        for (i, name) in gw.pipeline.iter().enumerate() {
            if filters.contains_key(name) {
                continue;
            }
            if missing.contains(name) {
                continue;
            }
            let before = previous.and_then(|g| g.filters.get(name));
            match load_filter(runtime, &config, name, before).await {
                Ok(Some(f)) => {
                    filters.insert(name.clone(), f);
                }
                Ok(None) => {
                    let message = format!(
                        "{file}: gateways.{gw_name}.pipeline[{i}]: unknown filter '{name}': no built-in filter of that name (built-ins: {}) and no {}",
                        builtin::names().collect::<Vec<_>>().join(", "),
                        config.plugins_dir.join(format!("{name}.wasm")).display()
                    );
                    if config.on_missing_filter == OnMissingFilter::Skip {
                        tracing::warn!(
                            "{message}; dropping it from the pipelines (server.on_missing_filter = \"skip\")"
                        );
                        missing.push(name.clone());
                    } else {
                        problems.push(Problem {
                            filter: Some(name.clone()),
                            stage: "missing",
                            message,
                        });
                    }
                }
                Err((e, message)) => problems.push(problem(name, &e, message)),
            }
        }
    }
    let mut gateways = HashMap::new();
    for (gw_name, gw) in &config.gateways {
        let mut stages = Vec::new();
        for name in &gw.pipeline {
            let (Some(filter), Some(settings)) = (filters.get(name), gw.filters.get(name)) else {
                continue;
            };
            let checked = match runtime
                .instantiate(
                    filter,
                    settings.timeout_ms.max(1_000),
                    settings.max_memory_mb,
                )
                .await
            {
                Ok(mut inst) => inst.configure(settings).await,
                Err(e) => Err(e),
            };
            let at = format!("{file}: gateways.{gw_name}.filters.{name}");
            if let Err(e) = checked {
                let mut message = format!("{at}: {e}");
                // A filter key that looks like a misspelt host key: say so.
                for hint in &settings.host_key_typos {
                    message.push_str(&format!("; {hint}"));
                }
                problems.push(problem(name, &e, message));
                continue;
            }
            for hint in &settings.host_key_typos {
                tracing::warn!("{at}: the filter accepted it, but {hint}");
            }
            stages.push(Stage {
                filter: filter.clone(),
                settings: settings.clone(),
                pool: InstancePool::default(),
                breaker: Breaker::new(settings.circuit_failures, settings.circuit_open_ms),
                on_error: settings
                    .on_error
                    .or(filter.info.on_error)
                    .unwrap_or(OnError::Open),
            });
        }
        gateways.insert(
            gw_name.clone(),
            Arc::new(GatewayPipeline {
                name: gw_name.clone(),
                accounts: gw.accounts.clone(),
                auth_token: gw.auth_token.clone(),
                keys: gw.keys,
                hooks: stages
                    .iter()
                    .fold(crate::runtime::bindings::types::Hooks::empty(), |all, s| {
                        all | s.filter.info.hooks
                    }),
                stages,
            }),
        );
    }
    if !problems.is_empty() {
        return Err(BuildError(problems));
    }
    let mut clients = HashMap::new();
    for (name, p) in &config.providers {
        if let Some(ca) = &p.ca_file {
            match crate::http::upstream::client_trusting(ca) {
                Ok(c) => {
                    clients.insert(name.clone(), c);
                }
                Err(e) => problems.push(Problem {
                    filter: None,
                    stage: "config",
                    message: format!("{file}: providers.{name}.ca_file: {e}"),
                }),
            }
        }
    }
    if !problems.is_empty() {
        return Err(BuildError(problems));
    }
    Ok(Generation {
        id,
        config,
        gateways,
        filters,
        clients,
    })
}

/// `plugins_dir/<name>.wasm` if present, else the built-in of that name.
/// Reuses `before` when the bytes are the same.
async fn load_filter(
    runtime: &Runtime,
    config: &Config,
    name: &str,
    before: Option<&Arc<LoadedFilter>>,
) -> Result<Option<Arc<LoadedFilter>>, (FilterError, String)> {
    let path = config.plugins_dir.join(format!("{name}.wasm"));
    let (source, bytes): (Source, std::borrow::Cow<'static, [u8]>) = match std::fs::read(&path) {
        Ok(bytes) => (Source::File(path), bytes.into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match builtin::bytes(name) {
            Some(b) => (Source::Builtin, b.into()),
            None => return Ok(None),
        },
        Err(e) => {
            let err = FilterError::Load {
                filter: name.to_string(),
                source_desc: path.display().to_string(),
                stage: "read",
                message: e.to_string(),
            };
            let message = err.to_string();
            return Err((err, message));
        }
    };
    if let Some(old) = before
        && old.source == source
        && old.sha256 == crate::runtime::sha256_hex(&bytes)
    {
        return Ok(Some(old.clone()));
    }
    runtime
        .load(name, source, &bytes)
        .await
        .map(Some)
        .map_err(|e| {
            let message = e.to_string();
            (e, message)
        })
}
