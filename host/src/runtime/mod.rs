//! The WebAssembly runtime: one wasmtime `Engine` (epoch interruption,
//! pooling allocator), the linker with WASI and the aigw imports, compiling a
//! filter once into an `InstancePre`, and the built-in filters embedded in the
//! binary. Per-request instances and their calls live in `instance`.

pub mod bindings;
pub mod builtin;
pub mod host;
pub mod instance;
pub mod v2;

use bindings::FilterPluginPre;
use host::{HostState, Services};
use instance::Pre;
use instance::{FilterError, FilterInstance};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances; hook deadlines are multiples of it.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Where a filter's code came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Embedded in the binary.
    Builtin,
    /// A file in `plugins_dir`.
    File(std::path::PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Builtin => write!(f, "built-in"),
            Source::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Hex sha256 of filter bytes (how filters are identified across reloads).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Hooks and body modes a filter declared.
#[derive(Debug, Clone, Copy)]
pub struct FilterInfo {
    /// Hooks to call.
    pub hooks: bindings::types::Hooks,
    /// Request body mode.
    pub request_body: bindings::types::BodyMode,
    /// Response body mode.
    pub response_body: bindings::types::BodyMode,
    /// The `on_error` default the filter declared (none: built with an SDK that predates
    /// the declaration; the host's default, `open`, applies).
    pub on_error: Option<crate::config::OnError>,
    /// The filter keeps nothing of a request in its filter value (0.2.0): an instance is
    /// configured once and lent per hook call.
    pub stateless: bool,
}

impl FilterInfo {
    /// Mistakes in what the filter declared that make the host skip one of its hooks
    /// silently: a body hook without a body mode, a body mode without its hook.
    pub fn warnings(&self) -> Vec<String> {
        use bindings::types::{BodyMode, Hooks};
        let mut out = Vec::new();
        for (hook, mode, hook_name, field) in [
            (
                Hooks::REQUEST_BODY,
                self.request_body,
                "on_request_body",
                "request_body",
            ),
            (
                Hooks::RESPONSE_BODY,
                self.response_body,
                "on_response_body",
                "response_body",
            ),
        ] {
            let declared = self.hooks.contains(hook);
            let ignored = matches!(mode, BodyMode::Ignore);
            if declared && ignored {
                out.push(format!(
                    "declares the {hook_name} hook but its {field} mode is Ignore, so the hook is never called: set {field} to BodyMode::Buffered(max_bytes) or BodyMode::Streaming"
                ));
            } else if !declared && !ignored {
                out.push(format!(
                    "sets a {field} mode but does not declare the {hook_name} hook, so the hook is never called: set hooks.{field} = true"
                ));
            }
        }
        out
    }
}

/// A compiled, type-checked filter.
pub struct LoadedFilter {
    /// Filter name.
    pub name: Arc<str>,
    /// Where it came from.
    pub source: Source,
    /// sha256 of the wasm bytes, hex.
    pub sha256: String,
    /// What `describe` returned.
    pub info: FilterInfo,
    /// When it was compiled (ms since the Unix epoch).
    pub loaded_at_ms: u64,
    pre: Pre,
}

impl LoadedFilter {
    /// The contract version it was built for ("0.1.0", "0.2.0").
    pub fn contract(&self) -> &'static str {
        self.pre.contract()
    }
}

impl std::fmt::Debug for LoadedFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedFilter")
            .field("name", &self.name)
            .field("source", &self.source)
            .field("sha256", &self.sha256)
            .finish()
    }
}

/// Engine + linker + shared services.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    /// Services filters import.
    pub services: Arc<Services>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

/// Filter instances alive at once (pooling allocator slots).
const MAX_LIVE_INSTANCES: u32 = 10_000;

fn engine_config(pooling: bool, cache_dir: Option<&std::path::Path>) -> wasmtime::Config {
    let mut cfg = wasmtime::Config::new();
    if let Some(dir) = cache_dir {
        // Compiled code is cached on disk, keyed by wasmtime on the wasm bytes
        // and the engine's settings: a restart skips compilation.
        let mut cache_config = wasmtime::CacheConfig::new();
        cache_config.with_directory(dir);
        match wasmtime::Cache::new(cache_config) {
            Ok(cache) => {
                cfg.cache(Some(cache));
            }
            Err(e) => tracing::warn!(dir = %dir.display(), "compilation cache disabled: {e}"),
        }
    }
    cfg.wasm_component_model(true);
    cfg.epoch_interruption(true);
    // `AIGW_WASM_PROFILER=perfmap` names filter code in `perf` profiles
    // (/tmp/perf-PID.map); a diagnostic switch, off by default.
    if std::env::var("AIGW_WASM_PROFILER").is_ok_and(|v| v == "perfmap") {
        cfg.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    if pooling {
        let mut pool = PoolingAllocationConfig::default();
        // Sized for thousands of concurrent requests (a held SSE stream keeps
        // the instances of its filters with body or done hooks). Slots are
        // address space reserved up front, not resident memory.
        pool.total_component_instances(MAX_LIVE_INSTANCES)
            .total_core_instances(MAX_LIVE_INSTANCES * 4)
            .total_memories(MAX_LIVE_INSTANCES)
            .total_tables(MAX_LIVE_INSTANCES * 2)
            .total_stacks(MAX_LIVE_INSTANCES)
            .max_memory_size((crate::config::MAX_FILTER_MEMORY_MB as usize) << 20)
            .max_component_instance_size(1 << 20)
            .max_core_instances_per_component(32)
            .max_memories_per_component(8)
            .max_tables_per_component(16)
            // Reset a returned slot in place instead of unmapping it: with the
            // PAGEMAP_SCAN ioctl (Linux 6.7+) only the pages a filter dirtied
            // are restored, which avoids an madvise + TLB shootdown per request.
            .linear_memory_keep_resident(4 << 20)
            .table_keep_resident(256 << 10)
            .async_stack_keep_resident(256 << 10)
            .pagemap_scan(wasmtime::Enabled::Auto)
            .decommit_batch_size(32);
        cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    cfg
}

impl Runtime {
    /// Builds the engine (pooling allocator, falling back to on-demand
    /// allocation where the pool cannot be reserved) and starts the epoch ticker.
    pub fn new(
        services: Arc<Services>,
        cache_dir: Option<&std::path::Path>,
    ) -> Result<Runtime, String> {
        let engine = match Engine::new(&engine_config(true, cache_dir)) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "pooling allocator unavailable, using on-demand allocation");
                Engine::new(&engine_config(false, cache_dir))
                    .map_err(|e| format!("cannot create the wasm engine: {e}"))?
            }
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| format!("cannot link WASI: {e}"))?;
        bindings::FilterPlugin::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| format!("cannot link the aigw imports: {e}"))?;
        // 0.2.0 imports the 0.1.0 services linked above; only its resources are new.
        bindings::v2::aigw::filter0_2_0::types::add_to_linker::<HostState, HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| format!("cannot link the aigw 0.2.0 imports: {e}"))?;
        bindings::v2::aigw::filter0_2_0::request_local::add_to_linker::<
            HostState,
            HasSelf<HostState>,
        >(&mut linker, |s| s)
        .map_err(|e| format!("cannot link the aigw 0.2.0 imports: {e}"))?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("aigw-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| format!("cannot start the epoch thread: {e}"))?;
        Ok(Runtime {
            engine,
            linker,
            services,
        })
    }

    /// Compiles and type-checks a filter, then asks it to `describe` itself.
    /// Errors name the stage: parse, type-check or describe.
    pub async fn load(
        &self,
        name: &str,
        source: Source,
        bytes: &[u8],
    ) -> Result<Arc<LoadedFilter>, FilterError> {
        let name: Arc<str> = Arc::from(name);
        let fail = |stage: &'static str, e: String| FilterError::Load {
            filter: name.to_string(),
            source_desc: source.to_string(),
            stage,
            message: e,
        };
        let sha256 = sha256_hex(bytes);
        let component = {
            // Compilation is CPU work (milliseconds): keep it off the async workers
            // so requests in flight are not delayed by a reload.
            let engine = self.engine.clone();
            let owned = bytes.to_vec();
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => handle
                    .spawn_blocking(move || Component::from_binary(&engine, &owned))
                    .await
                    .map_err(|e| fail("parse", format!("compiler task failed: {e}")))?,
                Err(_) => Component::from_binary(&engine, &owned),
            }
            .map_err(|e| fail("parse", format!("{e:#}")))?
        };
        let exports = |version: &str| {
            component
                .get_export_index(None, format!("aigw:filter/filter@{version}"))
                .is_some()
        };
        let v2 = exports("0.2.0");
        if !v2 && !exports("0.1.0") {
            return Err(fail(
                "type-check",
                "the component exports neither aigw:filter/filter@0.1.0 nor aigw:filter/filter@0.2.0: build it with the aigw plugin SDK or against one of the contracts in wit/".to_string(),
            ));
        }
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| fail("type-check", format!("{e:#}")))?;
        let pre = if v2 {
            bindings::v2::FilterPluginPre::new(pre).map(Pre::V2)
        } else {
            FilterPluginPre::new(pre).map(Pre::V1)
        }
        .map_err(|e| fail("type-check", format!("{e:#}")))?;
        let mut probe = FilterInstance::new(
            &self.engine,
            &pre,
            name.clone(),
            self.services.clone(),
            1_000,
            64,
        )
        .await
        .map_err(|e| fail("instantiate", e.to_string()))?;
        let info = probe
            .describe()
            .await
            .map_err(|e| fail("describe", e.to_string()))?;
        for w in info.warnings() {
            tracing::warn!(filter = &*name, source = %source, "{w}");
        }
        Ok(Arc::new(LoadedFilter {
            name,
            source,
            sha256,
            info,
            loaded_at_ms: crate::store::now_ms(),
            pre,
        }))
    }

    /// A fresh instance of a loaded filter with the given limits.
    pub async fn instantiate(
        &self,
        filter: &LoadedFilter,
        timeout_ms: u64,
        max_memory_mb: u64,
    ) -> Result<FilterInstance, FilterError> {
        FilterInstance::new(
            &self.engine,
            &filter.pre,
            filter.name.clone(),
            self.services.clone(),
            timeout_ms,
            max_memory_mb,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::FilterInfo;
    use super::bindings::types::{BodyMode, Hooks};

    #[test]
    fn declarations_that_skip_a_hook_are_warned_about() {
        let info = |hooks, request_body, response_body| FilterInfo {
            hooks,
            request_body,
            response_body,
            on_error: None,
            stateless: false,
        };
        let fine = info(
            Hooks::REQUEST_HEADERS | Hooks::REQUEST_BODY | Hooks::RESPONSE_BODY,
            BodyMode::Buffered(10),
            BodyMode::Streaming,
        );
        assert!(fine.warnings().is_empty());
        let w = info(Hooks::REQUEST_BODY, BodyMode::Ignore, BodyMode::Ignore).warnings();
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains("on_request_body") && w[0].contains("Ignore"),
            "{w:?}"
        );
        let w = info(Hooks::empty(), BodyMode::Ignore, BodyMode::Streaming).warnings();
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains("does not declare the on_response_body hook"),
            "{w:?}"
        );
    }
}
