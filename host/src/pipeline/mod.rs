//! Pipelines: the ordered filters of each gateway, built from a `Config` into
//! an immutable `Generation` (filters compiled, type-checked and their tables
//! accepted by `configure` before anything serves traffic). A request takes the
//! current generation once and keeps it to the end (`flow`).

pub mod flow;
mod headers;

use crate::config::{Config, FilterSettings};
use crate::runtime::{LoadedFilter, Runtime, Source, builtin};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// One filter in one gateway's pipeline.
#[derive(Debug)]
pub struct Stage {
    /// The compiled filter.
    pub filter: Arc<LoadedFilter>,
    /// Its host settings and table for this gateway.
    pub settings: FilterSettings,
}

/// A gateway ready to serve.
#[derive(Debug)]
pub struct GatewayPipeline {
    /// Gateway name.
    pub name: String,
    /// Accepted accounts.
    pub accounts: Vec<String>,
    /// Filters in request order.
    pub stages: Vec<Stage>,
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
}

/// Why a generation could not be built: one line per problem, each naming the
/// file, key or filter.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct BuildError(pub Vec<String>);

/// Loads every filter the config names and checks every filter table.
pub async fn build(
    runtime: &Runtime,
    config: Arc<Config>,
    id: u64,
) -> Result<Generation, BuildError> {
    let mut problems = Vec::new();
    let mut filters: BTreeMap<String, Arc<LoadedFilter>> = BTreeMap::new();
    let file = config.file.display().to_string();
    for (gw_name, gw) in &config.gateways {
        for (i, name) in gw.pipeline.iter().enumerate() {
            if filters.contains_key(name) {
                continue;
            }
            match load_filter(runtime, &config, name).await {
                Ok(Some(f)) => {
                    filters.insert(name.clone(), f);
                }
                Ok(None) => problems.push(format!(
                    "{file}: gateways.{gw_name}.pipeline[{i}]: unknown filter '{name}': no built-in filter of that name (built-ins: {}) and no {}",
                    builtin::names().collect::<Vec<_>>().join(", "),
                    config.plugins_dir.join(format!("{name}.wasm")).display()
                )),
                Err(e) => problems.push(e),
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
                Ok(mut inst) => inst.configure(&settings.config_json).await,
                Err(e) => Err(e),
            };
            if let Err(e) = checked {
                problems.push(format!("{file}: gateways.{gw_name}.filters.{name}: {e}"));
                continue;
            }
            stages.push(Stage {
                filter: filter.clone(),
                settings: settings.clone(),
            });
        }
        gateways.insert(
            gw_name.clone(),
            Arc::new(GatewayPipeline {
                name: gw_name.clone(),
                accounts: gw.accounts.clone(),
                stages,
            }),
        );
    }
    if !problems.is_empty() {
        return Err(BuildError(problems));
    }
    Ok(Generation {
        id,
        config,
        gateways,
        filters,
    })
}

/// `plugins_dir/<name>.wasm` if present, else the built-in of that name.
async fn load_filter(
    runtime: &Runtime,
    config: &Config,
    name: &str,
) -> Result<Option<Arc<LoadedFilter>>, String> {
    let path = config.plugins_dir.join(format!("{name}.wasm"));
    match std::fs::read(&path) {
        Ok(bytes) => {
            return runtime
                .load(name, Source::File(path), &bytes)
                .await
                .map(Some)
                .map_err(|e| e.to_string());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{}: cannot read: {e}", path.display())),
    }
    match builtin::bytes(name) {
        Some(bytes) => runtime
            .load(name, Source::Builtin, bytes)
            .await
            .map(Some)
            .map_err(|e| e.to_string()),
        None => Ok(None),
    }
}
