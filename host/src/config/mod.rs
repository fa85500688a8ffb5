//! Configuration: the TOML file as written (`raw`, unknown keys rejected) and
//! the validated `Config` the rest of the host uses. Every error names the file
//! and the key it is about. Loading filters and checking their tables is the
//! runtime's job (`runtime::catalog`), not this module's.

pub mod backends;
mod raw;

use crate::http::Secret;
use crate::providers::{self, ProviderSpec};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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

fn resolve_secret(raw: &raw::RawSecret, base: &Path) -> Result<Secret, String> {
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
    /// Behaviour on failure.
    pub on_error: OnError,
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
}

/// One gateway: who may use it and its filter pipeline.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Accepted account tags (`*` accepts any).
    pub accounts: Vec<String>,
    /// Token clients must send as `cf-aig-authorization: Bearer …`, when set.
    pub auth_token: Option<Secret>,
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
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            // Only the message and position: toml's full text quotes the source
            // line, which may hold a secret.
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
        })?;
        let invalid = |key: &str, reason: String| ConfigError::Invalid {
            file: path.to_path_buf(),
            key: key.to_string(),
            reason,
        };
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let base = std::path::absolute(parent).unwrap_or_else(|_| parent.to_path_buf());
        let server = raw.server.unwrap_or_default();
        let listen = parse_addr(server.listen.as_deref().unwrap_or("127.0.0.1:8787"))
            .map_err(|r| invalid("server.listen", r))?;
        let mock_provider = match raw.mock_provider {
            Some(m) => Some(parse_addr(&m.listen).map_err(|r| invalid("mock_provider.listen", r))?),
            None => None,
        };
        let store = match raw.store {
            None => None,
            Some(st) => backends::parse_store(st, &base).map_err(|(k, r)| invalid(&k, r))?,
        };
        let logs_postgres = match raw.logs {
            None => None,
            Some(l) => match l.backend.as_deref().unwrap_or("sqlite") {
                "sqlite" => {
                    if l.url.is_some() {
                        return Err(invalid(
                            "logs.url",
                            "only used with backend = \"postgres\"".into(),
                        ));
                    }
                    None
                }
                "postgres" => {
                    let Some(url) = &l.url else {
                        return Err(invalid(
                            "logs.url",
                            "backend = \"postgres\" needs url = \"postgres://user:password@host/db\"".into(),
                        ));
                    };
                    let url = resolve_secret(url, &base).map_err(|r| invalid("logs.url", r))?;
                    if !(url.0.starts_with("postgres://") || url.0.starts_with("postgresql://")) {
                        return Err(invalid(
                            "logs.url",
                            "expected a postgres:// or postgresql:// URL".into(),
                        ));
                    }
                    Some(url)
                }
                other => {
                    return Err(invalid(
                        "logs.backend",
                        format!("expected \"sqlite\" or \"postgres\", got \"{other}\""),
                    ));
                }
            },
        };
        let otlp = match raw.telemetry {
            None => None,
            Some(t) => match t.otlp_endpoint {
                None => {
                    if t.service_name.is_some() {
                        return Err(invalid(
                            "telemetry.service_name",
                            "only used with otlp_endpoint".into(),
                        ));
                    }
                    None
                }
                Some(e) => {
                    let host = e
                        .strip_prefix("http://")
                        .or_else(|| e.strip_prefix("https://"))
                        .unwrap_or("");
                    let ok = !host.is_empty()
                        && !host.starts_with('/')
                        && !e.chars().any(|c| c.is_whitespace() || c.is_control());
                    if !ok {
                        return Err(invalid(
                            "telemetry.otlp_endpoint",
                            format!(
                                "expected an http(s) URL like http://127.0.0.1:4318, got '{e}'"
                            ),
                        ));
                    }
                    Some(backends::OtlpSettings {
                        endpoint: e,
                        service_name: t.service_name.unwrap_or_else(|| "aigw".into()),
                    })
                }
            },
        };
        let admin_listen = match &server.admin_listen {
            Some(a) => Some(parse_addr(a).map_err(|r| invalid("server.admin_listen", r))?),
            None => None,
        };
        let admin_token = match &server.admin_token {
            None => None,
            Some(raw) => Some(
                resolve_secret(raw, &base)
                    .map_err(|r| invalid("server.admin_token", r))?
                    .0,
            ),
        };
        if let Some(addr) = admin_listen
            && !addr.ip().is_loopback()
            && admin_token.is_none()
        {
            return Err(invalid(
                "server.admin_listen",
                format!(
                    "{addr} is reachable from other machines: set server.admin_token, or listen on 127.0.0.1"
                ),
            ));
        }
        let on_missing_filter = match server.on_missing_filter.as_deref() {
            None | Some("error") => OnMissingFilter::Error,
            Some("skip") => OnMissingFilter::Skip,
            Some(other) => {
                return Err(invalid(
                    "server.on_missing_filter",
                    format!("expected \"error\" or \"skip\", got \"{other}\""),
                ));
            }
        };
        let max_body_bytes = server.max_body_bytes.unwrap_or(25 * 1024 * 1024);
        if max_body_bytes == 0 {
            return Err(invalid(
                "server.max_body_bytes",
                "must be greater than 0".into(),
            ));
        }

        let max_header_bytes = server.max_header_bytes.unwrap_or(64 * 1024);
        if !(8192..=16 << 20).contains(&max_header_bytes) {
            return Err(invalid(
                "server.max_header_bytes",
                format!("must be from 8192 to 16777216, got {max_header_bytes}"),
            ));
        }
        let max_connections = server.max_connections.unwrap_or(10_000);
        if max_connections == 0 {
            return Err(invalid(
                "server.max_connections",
                "must be greater than 0".into(),
            ));
        }
        let header_read_timeout_ms = server.header_read_timeout_ms.unwrap_or(30_000);
        if header_read_timeout_ms == 0 {
            return Err(invalid(
                "server.header_read_timeout_ms",
                "must be greater than 0".into(),
            ));
        }

        let mut providers = providers::builtin_providers();
        for (name, p) in raw.providers {
            let key = |k: &str| format!("providers.{name}.{k}");
            let mut spec = match (providers.get(&name), &p.base_url) {
                (Some(existing), _) => existing.clone(),
                (None, Some(_)) => ProviderSpec::custom(&name),
                (None, None) => {
                    return Err(invalid(
                        &key("base_url"),
                        "required for a provider that is not built in".into(),
                    ));
                }
            };
            if let Some(url) = &p.base_url {
                spec.base_url =
                    providers::parse_base_url(url).map_err(|r| invalid(&key("base_url"), r))?;
            }
            if let Some(h) = &p.auth_header {
                spec.auth_header =
                    providers::parse_auth_header(h).map_err(|r| invalid(&key("auth_header"), r))?;
            }
            if let Some(raw_key) = &p.api_key {
                spec.api_key =
                    Some(resolve_secret(raw_key, &base).map_err(|r| invalid(&key("api_key"), r))?);
            }
            for (alias, raw_key) in &p.api_keys {
                let secret = resolve_secret(raw_key, &base)
                    .map_err(|r| invalid(&key(&format!("api_keys.{alias}")), r))?;
                spec.named_keys.insert(alias.clone(), secret);
            }
            if let Some(ca) = &p.ca_file {
                let path = base.join(ca);
                if !path.is_file() {
                    return Err(invalid(
                        &key("ca_file"),
                        format!("{} is not a readable file", path.display()),
                    ));
                }
                spec.ca_file = Some(path);
            }
            match p.stream_usage.as_deref() {
                None => {}
                Some("inject") => spec.stream_usage = true,
                Some("off") => spec.stream_usage = false,
                Some(other) => {
                    return Err(invalid(
                        &key("stream_usage"),
                        format!("'{other}': expected \"inject\" or \"off\""),
                    ));
                }
            }
            if let Some(c) = &p.compat_path {
                if !c.starts_with('/') {
                    return Err(invalid(
                        &key("compat_path"),
                        format!("'{c}' must start with '/'"),
                    ));
                }
                spec.compat_path = Some(c.clone());
            }
            if let Some(t) = p.request_timeout_ms {
                if t == 0 {
                    return Err(invalid(
                        &key("request_timeout_ms"),
                        "must be greater than 0".into(),
                    ));
                }
                spec.request_timeout_ms = Some(t);
            }
            providers.insert(name, spec);
        }

        let mut prices = match &server.price_catalog {
            None => crate::providers::pricing::PriceTable::with_defaults(),
            Some(file) => {
                let path = base.join(file);
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    invalid(
                        "server.price_catalog",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                crate::providers::pricing::PriceTable::from_catalog(&text).map_err(|e| {
                    invalid("server.price_catalog", format!("{}: {e}", path.display()))
                })?
            }
        };
        if !raw.prices.is_empty() {
            prices.mark_overridden();
        }
        for (i, p) in raw.prices.iter().enumerate() {
            let ok = |v: f64| v.is_finite() && v >= 0.0;
            if !ok(p.input_per_million) || !ok(p.output_per_million) {
                return Err(invalid(
                    &format!("prices[{i}]"),
                    "input_per_million and output_per_million must be numbers >= 0".into(),
                ));
            }
            for (key, value) in [
                ("cached_input_per_million", p.cached_input_per_million),
                ("cache_write_per_million", p.cache_write_per_million),
            ] {
                if value.is_some_and(|v| !ok(v)) {
                    return Err(invalid(
                        &format!("prices[{i}].{key}"),
                        "must be a number >= 0".into(),
                    ));
                }
            }
            prices.set(crate::providers::pricing::Price {
                provider: p.provider.clone(),
                model: p.model.clone(),
                input_per_million: p.input_per_million,
                output_per_million: p.output_per_million,
                cached_input_per_million: p.cached_input_per_million,
                cache_write_per_million: p.cache_write_per_million,
            });
        }
        let retention = server.log_retention.unwrap_or_default();
        if retention.max_entries == Some(0) || retention.max_age_days == Some(0) {
            return Err(invalid(
                "server.log_retention",
                "max_entries and max_age_days must be greater than 0".into(),
            ));
        }
        let mut gateways = BTreeMap::new();
        for (name, g) in raw.gateways {
            if !valid_segment(&name) {
                return Err(invalid(
                    &format!("gateways.{name}"),
                    "gateway names use letters, digits, '-' and '_'".into(),
                ));
            }
            let accounts = g.accounts.unwrap_or_else(|| vec!["*".to_string()]);
            let auth_token = match &g.auth_token {
                Some(raw) => Some(
                    resolve_secret(raw, &base)
                        .map_err(|r| invalid(&format!("gateways.{name}.auth_token"), r))?,
                ),
                None => None,
            };
            let mut filters = BTreeMap::new();
            for (fname, table) in &g.filters {
                if !g.pipeline.contains(fname) {
                    return Err(invalid(
                        &format!("gateways.{name}.filters.{fname}"),
                        format!(
                            "filter '{fname}' has a table but is not in gateways.{name}.pipeline"
                        ),
                    ));
                }
                let _ = table;
            }
            for (i, fname) in g.pipeline.iter().enumerate() {
                if !valid_segment(fname) {
                    return Err(invalid(
                        &format!("gateways.{name}.pipeline[{i}]"),
                        format!("'{fname}' is not a valid filter name (letters, digits, '-', '_')"),
                    ));
                }
                if g.pipeline[..i].contains(fname) {
                    return Err(invalid(
                        &format!("gateways.{name}.pipeline[{i}]"),
                        format!("filter '{fname}' is listed twice"),
                    ));
                }
                let key = format!("gateways.{name}.filters.{fname}");
                let table = g.filters.get(fname).cloned().unwrap_or_default();
                let settings =
                    filter_settings(table).map_err(|(k, r)| invalid(&format!("{key}.{k}"), r))?;
                filters.insert(fname.clone(), settings);
            }
            gateways.insert(
                name,
                GatewayConfig {
                    accounts,
                    auth_token,
                    pipeline: g.pipeline,
                    filters,
                },
            );
        }
        if gateways.is_empty() {
            return Err(invalid(
                "gateways",
                "define at least one [gateways.NAME] table".into(),
            ));
        }

        Ok(Config {
            file: path.to_path_buf(),
            listen,
            plugins_dir: base.join(server.plugins_dir.as_deref().unwrap_or("plugins")),
            data_dir: base.join(server.data_dir.as_deref().unwrap_or("data")),
            max_body_bytes,
            max_header_bytes,
            max_connections,
            header_read_timeout_ms,
            request_timeout_ms: server.request_timeout_ms.unwrap_or(120_000),
            stream_idle_timeout_ms: server.stream_idle_timeout_ms.unwrap_or(120_000).max(1),
            prices,
            log_max_entries: retention.max_entries,
            log_max_age_days: retention.max_age_days,
            shutdown_grace_ms: server.shutdown_grace_ms.unwrap_or(30_000),
            admin_listen,
            admin_token,
            on_missing_filter,
            mock_provider,
            store,
            logs_postgres,
            otlp,
            providers,
            gateways,
        })
    }
}

fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|e| format!("'{text}' is not an address like 127.0.0.1:8787 ({e})"))
}

fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Splits the host's own keys off a filter table; the rest goes to `configure`.
fn filter_settings(mut table: toml::Table) -> Result<FilterSettings, (String, String)> {
    let on_error = match table.remove("on_error") {
        None => OnError::Open,
        Some(toml::Value::String(s)) if s == "open" => OnError::Open,
        Some(toml::Value::String(s)) if s == "closed" => OnError::Closed,
        Some(other) => {
            return Err((
                "on_error".into(),
                format!("expected \"open\" or \"closed\", got {other}"),
            ));
        }
    };
    let mut number = |key: &str, default: u64, max: u64| -> Result<u64, (String, String)> {
        match table.remove(key) {
            None => Ok(default),
            Some(toml::Value::Integer(n)) if n >= 1 && (n as u64) <= max => Ok(n as u64),
            Some(other) => Err((
                key.into(),
                format!("expected an integer from 1 to {max}, got {other}"),
            )),
        }
    };
    let timeout_ms = number("timeout_ms", 50, 60_000)?;
    let max_memory_mb = number("max_memory_mb", 64, MAX_FILTER_MEMORY_MB)?;
    let circuit_open_ms = number("circuit_open_ms", 30_000, 3_600_000)?;
    let circuit_failures = match table.remove("circuit_failures") {
        None => 5,
        Some(toml::Value::Integer(n)) if (0..=10_000).contains(&n) => n as u32,
        Some(other) => {
            return Err((
                "circuit_failures".into(),
                format!("expected an integer from 0 (never open) to 10000, got {other}"),
            ));
        }
    };
    let config_json = serde_json::to_string(&table).map_err(|e| (String::new(), e.to_string()))?;
    Ok(FilterSettings {
        on_error,
        timeout_ms,
        max_memory_mb,
        circuit_failures,
        circuit_open_ms,
        config_json,
    })
}

#[cfg(test)]
mod tests;
