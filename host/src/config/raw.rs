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
    /// Token prices added to (or replacing) the built-in table.
    #[serde(default)]
    pub prices: Vec<RawPrice>,
    /// Where kv and limits live (memory or Redis).
    pub store: Option<RawStore>,
    /// Where request logs go (SQLite or PostgreSQL).
    pub logs: Option<RawLogs>,
    /// OpenTelemetry export.
    pub telemetry: Option<RawTelemetry>,
}

/// `[telemetry]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    pub otlp_endpoint: Option<String>,
    pub service_name: Option<String>,
}

/// `[store]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub backend: Option<String>,
    pub url: Option<RawSecret>,
    pub timeout_ms: Option<u64>,
    pub key_prefix: Option<String>,
    pub max_entry_bytes: Option<usize>,
    pub kv_on_error: Option<String>,
    pub limits_on_error: Option<String>,
}

/// `[logs]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogs {
    pub backend: Option<String>,
    pub url: Option<RawSecret>,
}

/// `[[prices]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    pub provider: String,
    pub model: String,
    pub input_per_million: f64,
    pub output_per_million: f64,
    /// Input tokens read from the provider's cache (default: the input rate).
    pub cached_input_per_million: Option<f64>,
    /// Input tokens written to the provider's cache (default: the input rate).
    pub cache_write_per_million: Option<f64>,
    /// Image input tokens (default: none; such requests stay unpriced).
    pub image_input_per_million: Option<f64>,
}

/// `[server.log_retention]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    pub max_entries: Option<u64>,
    pub max_age_days: Option<u64>,
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
    pub stream_idle_timeout_ms: Option<u64>,
    pub websocket_idle_timeout_ms: Option<u64>,
    pub max_websocket_sessions: Option<u64>,
    pub log_retention: Option<RawRetention>,
    pub shutdown_grace_ms: Option<u64>,
    pub admin_listen: Option<String>,
    pub admin_token: Option<RawSecret>,
    pub on_missing_filter: Option<String>,
    /// A price catalog file replacing the one shipped in the binary.
    pub price_catalog: Option<String>,
    /// Largest request head (request line + headers) a client may send.
    pub max_header_bytes: Option<usize>,
    /// Most client connections open at once; more are answered 503 and closed.
    pub max_connections: Option<usize>,
    /// How long a client may take to send its request head.
    pub header_read_timeout_ms: Option<u64>,
}

/// A secret: written inline, or read from an environment variable.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum RawSecret {
    /// `{ env = "NAME" }`
    Env { env: String },
    /// `{ file = "path" }` (relative to the config file; trailing newline trimmed)
    File { file: String },
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
    /// Which header carries the key: authorization (Bearer), x-api-key, api-key, x-goog-api-key.
    pub auth_header: Option<String>,
    /// Stored key, injected when the client sent none.
    pub api_key: Option<RawSecret>,
    /// Named stored keys, chosen per request with `cf-aig-byok-alias`.
    #[serde(default)]
    pub api_keys: BTreeMap<String, RawSecret>,
    /// Extra PEM CA certificates trusted for this provider (self-signed upstreams).
    pub ca_file: Option<String>,
    /// Wait for the first response byte, overriding server.request_timeout_ms.
    pub request_timeout_ms: Option<u64>,
    /// `"inject"` adds `stream_options.include_usage` to streamed chats, `"off"` never does.
    pub stream_usage: Option<String>,
    /// Path of the provider's OpenAI-compatible chat endpoint, for the compat endpoint.
    pub compat_path: Option<String>,
    /// AWS credentials the gateway signs requests with (SigV4).
    pub access_key_id: Option<RawSecret>,
    pub secret_access_key: Option<RawSecret>,
    pub session_token: Option<RawSecret>,
    /// The region compat requests go to (Bedrock's AWS region, Vertex AI's location).
    pub region: Option<String>,
    /// The Google Cloud project of compat requests to Vertex AI.
    pub project: Option<String>,
}

/// `store_responses = true | false | N`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawStoreResponses {
    On(bool),
    Keep(i64),
}

/// `[gateways.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGateway {
    pub accounts: Option<Vec<String>>,
    /// Makes the gateway authenticated: clients send `cf-aig-authorization: Bearer <token>`.
    pub auth_token: Option<RawSecret>,
    /// Virtual keys: `"required"`, `"optional"` or `"off"` (the default).
    pub keys: Option<String>,
    /// Keeps the Responses entry point's responses so `previous_response_id` works: `true`
    /// (up to 10,000) or how many to keep.
    pub store_responses: Option<RawStoreResponses>,
    #[serde(default)]
    pub pipeline: Vec<String>,
    /// Per-filter tables: host keys (`on_error`, `timeout_ms`, `max_memory_mb`,
    /// `circuit_failures`, `circuit_open_ms`) plus the filter's own keys, which the
    /// filter validates.
    #[serde(default)]
    pub filters: BTreeMap<String, toml::Table>,
}
