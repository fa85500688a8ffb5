//! Configuration: the TOML file as written (`raw`, unknown keys rejected) and
//! the validated `Config` the rest of the host uses. Every error names the file
//! and the key it is about. Loading filters and checking their tables is the
//! runtime's job (`runtime::catalog`), not this module's.
//!
//! `Config::parse` reads the file part by part: the checked `[server]` keys
//! in `server`, the store, log and telemetry backends in `backends`,
//! `[providers.*]` in `providers`, the price catalog and `[[prices]]` in
//! `prices`, and `[gateways.*]` with their filter tables in `gateways`.

pub mod backends;
mod gateways;
mod prices;
mod providers;
mod raw;
mod server;

use crate::http::Secret;
use crate::providers::ProviderSpec;
use gateways::read_gateways;
use prices::read_prices;
use providers::read_providers;
use server::{read_admin, read_limits, read_on_missing_filter, read_retention};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use gateways::origin_of;
pub use raw::RawConfig;

/// A configuration problem, with the file and key it is about.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    /// TOML syntax or shape error (toml names the key and line).
    #[error("{file}: {message}")]
    Parse { file: PathBuf, message: String },
    /// A value that parsed but is not acceptable.
    #[error("{file}: {key}: {reason}")]
    Invalid {
        file: PathBuf,
        key: String,
        reason: String,
    },
}

/// What a filter does when it fails (trap, deadline, memory limit, bad answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Skip the filter for the rest of the request.
    Open,
    /// Answer 500 naming the filter.
    Closed,
}

pub(crate) fn resolve_secret(raw: &raw::RawSecret, base: &Path) -> Result<Secret, String> {
    let value = match raw {
        raw::RawSecret::Inline(v) => v.clone(),
        raw::RawSecret::Env { env } => {
            std::env::var(env).map_err(|_| format!("environment variable {env} is not set"))?
        }
        raw::RawSecret::File { file } => std::fs::read_to_string(base.join(file))
            .map_err(|e| format!("cannot read {}: {e}", base.join(file).display()))?
            .trim_end()
            .to_string(),
    };
    if value.is_empty() {
        return Err("the secret is empty".into());
    }
    Ok(Secret(value))
}

/// What happens when a pipeline names a filter that is neither a built-in nor
/// a file in `plugins_dir` (for instance after its `.wasm` was deleted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnMissingFilter {
    /// The configuration is rejected (startup fails; a reload keeps the old one).
    Error,
    /// The filter is dropped from the pipelines naming it, with a warning.
    Skip,
}

/// Host-side settings of one filter in one gateway.
#[derive(Debug, Clone)]
pub struct FilterSettings {
    /// Behaviour on failure, when the table sets it (otherwise the filter's declared
    /// default applies, else `open`).
    pub on_error: Option<OnError>,
    /// `websocket = "pass"`: a WebSocket session, whose messages the filter cannot read,
    /// passes it instead of being refused.
    pub websocket_pass: bool,
    /// Deadline of each hook call.
    pub timeout_ms: u64,
    /// Memory cap of the filter's instance.
    pub max_memory_mb: u64,
    /// Failed requests in a row that open the filter's circuit (0: never).
    pub circuit_failures: u32,
    /// How long an open circuit skips the filter before one probe.
    pub circuit_open_ms: u64,
    /// The rest of the table, handed to `configure` as JSON.
    pub config_json: String,
    /// Keys of that rest that look like misspelt host keys, each with the host key meant.
    pub host_key_typos: Vec<String>,
    /// The outbound HTTP the table grants (`allow_http` and its limits); shared with each
    /// instance the stage configures.
    pub http: Arc<HttpGrant>,
    /// What the table's `{ env = "…" }` and `{ file = "…" }` values resolved to: handed to the
    /// filter in its table, never shown, and masked in the filter's errors.
    pub secrets: Arc<Vec<Secret>>,
}

/// Outbound HTTP granted to a filter: `allow_http`, `http_timeout_ms`,
/// `http_max_response_bytes` in its table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpGrant {
    /// Origins it may call, as `scheme://host:port` (lower-case, port explicit).
    pub origins: Vec<String>,
    /// Longest wait for an answer, ms.
    pub timeout_ms: u64,
    /// Most bytes of an answer's body read.
    pub max_response_bytes: u64,
}

/// `text` with every value of `secrets` masked as `***`, the longest first (so a secret that
/// contains another is masked whole). Values shorter than 4 bytes are left: masking them
/// would garble ordinary text.
pub fn redact(secrets: &[Secret], text: &str) -> String {
    let mut values: Vec<&str> = secrets
        .iter()
        .map(|s| s.0.as_str())
        .filter(|v| v.len() >= 4)
        .collect();
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    let mut out = text.to_string();
    for v in values {
        out = out.replace(v, "***");
    }
    out
}

/// `[gateways.NAME] keys`: whether a gateway's clients use virtual keys (`aigw-…`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KeyMode {
    /// Virtual keys are refused (the default): clients send provider keys or none.
    #[default]
    Off,
    /// A request may carry a virtual key; one that does must be valid.
    Optional,
    /// Every request carries a valid virtual key, or is refused with 401 before any filter.
    Required,
}

/// One gateway: who may use it and its filter pipeline.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Accepted account tags (`*` accepts any).
    pub accounts: Vec<String>,
    /// Token clients must send as `cf-aig-authorization: Bearer …`, when set.
    pub auth_token: Option<Secret>,
    /// Whether requests carry virtual keys (`keys`).
    pub keys: KeyMode,
    /// How many Responses-API responses to keep for `previous_response_id` (0: none).
    pub store_responses: u64,
    /// Filter names in request order.
    pub pipeline: Vec<String>,
    /// Settings per filter named in `pipeline`.
    pub filters: BTreeMap<String, FilterSettings>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the file was read from (for messages).
    pub file: PathBuf,
    /// Client listener.
    pub listen: SocketAddr,
    /// Folder of `<name>.wasm` filters (relative to the config file).
    pub plugins_dir: PathBuf,
    /// Folder for the log store and cache snapshot (relative to the config file).
    pub data_dir: PathBuf,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Largest request head accepted (HTTP/1.1 buffer, HTTP/2 header list).
    pub max_header_bytes: usize,
    /// Most client connections at once.
    pub max_connections: usize,
    /// Longest wait for a request head.
    pub header_read_timeout_ms: u64,
    /// Default wait for the upstream's first byte.
    pub request_timeout_ms: u64,
    /// Longest silence inside a response body before it is ended with an error.
    pub stream_idle_timeout_ms: u64,
    /// Longest silence, both ways, inside a WebSocket session before the gateway closes it
    /// (at most a day).
    pub websocket_idle_timeout_ms: u64,
    /// Most WebSocket sessions open at once; more are refused with a 503.
    pub max_websocket_sessions: u64,
    /// Token prices for cost estimates.
    pub prices: crate::providers::pricing::PriceTable,
    /// Log store retention: most entries kept.
    pub log_max_entries: Option<u64>,
    /// Log store retention: oldest age kept, in days.
    pub log_max_age_days: Option<u64>,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace_ms: u64,
    /// Admin listener (plugin status, reload, metrics), off when absent.
    pub admin_listen: Option<SocketAddr>,
    /// Bearer token required by the admin API, when set.
    pub admin_token: Option<String>,
    /// Missing filters: error or skip.
    pub on_missing_filter: OnMissingFilter,
    /// Start the built-in mock provider on this address (demo, offline use).
    pub mock_provider: Option<SocketAddr>,
    /// The shared kv/limits store (`[store] backend = "redis"`); `None`: in memory.
    pub store: Option<backends::RedisSettings>,
    /// PostgreSQL URL of the log store (`[logs] backend = "postgres"`); `None`: SQLite.
    pub logs_postgres: Option<Secret>,
    /// OTLP/HTTP span export (`[telemetry] otlp_endpoint`).
    pub otlp: Option<backends::OtlpSettings>,
    /// Providers by name: built-ins merged with the file's overrides.
    pub providers: BTreeMap<String, ProviderSpec>,
    /// Gateways by name.
    pub gateways: BTreeMap<String, GatewayConfig>,
    /// Hex SHA-256 of the text this was parsed from: the management API refuses to write
    /// over a file that no longer holds it (a hand edit in between).
    pub text_sha256: String,
    /// When it was parsed (ms since the epoch).
    pub loaded_at_ms: u64,
}

/// Largest per-filter memory cap the engine's pool is sized for.
pub const MAX_FILTER_MEMORY_MB: u64 = 256;

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        Config::parse(path, &text)
    }

    /// Validates configuration text; `path` is used for messages and relative paths.
    ///
    /// Each part of the file is read by its own function and the first error
    /// stops the rest, so the order of the calls below decides which problem
    /// is reported when a file has several.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw = parse_toml(path, text)?;
        let src = Source::new(path);
        let server = raw.server.unwrap_or_default();
        let listen = src.addr(
            "server.listen",
            server.listen.as_deref().unwrap_or("127.0.0.1:8787"),
        )?;
        let mock_provider = match &raw.mock_provider {
            Some(m) => Some(src.addr("mock_provider.listen", &m.listen)?),
            None => None,
        };
        let backends = backends::read_backends(&src, raw.store, raw.logs, raw.telemetry)?;
        let (admin_listen, admin_token) = read_admin(&src, &server)?;
        let on_missing_filter = read_on_missing_filter(&src, &server)?;
        let limits = read_limits(&src, &server)?;
        let providers = read_providers(&src, raw.providers)?;
        let prices = read_prices(&src, server.price_catalog.as_deref(), &raw.prices)?;
        let retention = read_retention(&src, server.log_retention)?;
        let gateways = read_gateways(&src, raw.gateways)?;

        Ok(Config {
            file: path.to_path_buf(),
            listen,
            plugins_dir: src
                .base
                .join(server.plugins_dir.as_deref().unwrap_or("plugins")),
            data_dir: src.base.join(server.data_dir.as_deref().unwrap_or("data")),
            max_body_bytes: limits.max_body_bytes,
            max_header_bytes: limits.max_header_bytes,
            max_connections: limits.max_connections,
            header_read_timeout_ms: limits.header_read_timeout_ms,
            request_timeout_ms: server.request_timeout_ms.unwrap_or(120_000),
            stream_idle_timeout_ms: server.stream_idle_timeout_ms.unwrap_or(120_000).max(1),
            websocket_idle_timeout_ms: server
                .websocket_idle_timeout_ms
                .unwrap_or(300_000)
                .clamp(1, 86_400_000),
            max_websocket_sessions: server.max_websocket_sessions.unwrap_or(1_000),
            prices,
            log_max_entries: retention.max_entries,
            log_max_age_days: retention.max_age_days,
            shutdown_grace_ms: server.shutdown_grace_ms.unwrap_or(30_000),
            admin_listen,
            admin_token,
            on_missing_filter,
            mock_provider,
            store: backends.store,
            logs_postgres: backends.logs_postgres,
            otlp: backends.otlp,
            providers,
            gateways,
            text_sha256: crate::runtime::sha256_hex(text.as_bytes()),
            loaded_at_ms: crate::store::now_ms(),
        })
    }
}

/// Deserializes the raw file; an error keeps toml's message and position, not the quoted line.
fn parse_toml(path: &Path, text: &str) -> Result<RawConfig, ConfigError> {
    toml::from_str(text).map_err(|e| {
        // toml's full text quotes the offending line, which may hold a
        // secret, so only its message and a line/column are kept.
        let at = e
            .span()
            .map(|span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let col = before
                    .rsplit('\n')
                    .next()
                    .map(|l| l.chars().count() + 1)
                    .unwrap_or(1);
                format!("line {line}, column {col}: ")
            })
            .unwrap_or_default();
        ConfigError::Parse {
            file: path.to_path_buf(),
            message: format!("{at}{}", e.message().trim_end().replace('\n', " ")),
        }
    })
}

/// The file being read: named in every error, and its folder is where
/// relative paths (plugins, data, secrets, CA files, catalog) start from.
struct Source<'a> {
    file: &'a Path,
    base: PathBuf,
}

impl<'a> Source<'a> {
    /// Takes the file's folder (absolute when possible) as the base of relative paths.
    fn new(file: &'a Path) -> Self {
        let parent = file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let base = std::path::absolute(parent).unwrap_or_else(|_| parent.to_path_buf());
        Source { file, base }
    }

    /// An error saying the value at `key` is not acceptable, and why.
    fn invalid(&self, key: &str, reason: String) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_path_buf(),
            key: key.to_string(),
            reason,
        }
    }

    /// Resolves the secret written at `key` (inline, env or file).
    fn secret(&self, key: &str, raw: &raw::RawSecret) -> Result<Secret, ConfigError> {
        resolve_secret(raw, &self.base).map_err(|r| self.invalid(key, r))
    }

    /// Parses the socket address written at `key`.
    fn addr(&self, key: &str, text: &str) -> Result<SocketAddr, ConfigError> {
        text.parse().map_err(|e| {
            self.invalid(
                key,
                format!("'{text}' is not an address like 127.0.0.1:8787 ({e})"),
            )
        })
    }
}

#[cfg(test)]
mod tests;
