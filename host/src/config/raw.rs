//! The configuration file exactly as written. `deny_unknown_fields` everywhere
//! so a typo is an error naming the key, never silently ignored.

use serde::Deserialize;
use std::collections::BTreeMap;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub server: Option<RawServer>,
    pub mock_provider: Option<RawMock>,
    #[serde(default)]
    pub providers: BTreeMap<String, RawProvider>,
    #[serde(default)]
    pub gateways: BTreeMap<String, RawGateway>,
}

/// `[server]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
    pub plugins_dir: Option<String>,
    pub data_dir: Option<String>,
    pub max_body_bytes: Option<usize>,
    pub request_timeout_ms: Option<u64>,
    pub shutdown_grace_ms: Option<u64>,
    pub admin_listen: Option<String>,
    pub admin_token: Option<RawSecret>,
    pub on_missing_filter: Option<String>,
}

/// A secret: written inline, or read from an environment variable.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum RawSecret {
    /// `{ env = "NAME" }`
    Env { env: String },
    /// `"value"`
    Inline(String),
}

/// `[mock_provider]`: start the built-in mock provider beside the gateway.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMock {
    pub listen: String,
}

/// `[providers.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub base_url: Option<String>,
}

/// `[gateways.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGateway {
    pub accounts: Option<Vec<String>>,
    #[serde(default)]
    pub pipeline: Vec<String>,
    /// Per-filter tables: host keys (`on_error`, `timeout_ms`, `max_memory_mb`)
    /// plus the filter's own keys, which the filter validates.
    #[serde(default)]
    pub filters: BTreeMap<String, toml::Table>,
}
