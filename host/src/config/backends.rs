//! Plain settings of the optional backends (shared store, span export), kept
//! here so the configuration module depends on nothing but itself (the fuzz
//! targets compile it alone).

/// What a call does when Redis cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// kv: a miss / not stored; limits: allowed.
    Open,
    /// kv: the filter's call fails (its own `on_error` decides); limits: refused.
    Closed,
}

/// Settings of the Redis backend (`[store]`).
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `redis://host:port/db` (or `rediss://`).
    pub url: String,
    /// Deadline of each command.
    pub timeout_ms: u64,
    /// Prefix of every key this gateway writes.
    pub key_prefix: String,
    /// Largest value stored.
    pub max_entry_bytes: usize,
    /// Policy for kv calls when Redis fails.
    pub kv_on_error: OnError,
    /// Policy for limit calls when Redis fails.
    pub limits_on_error: OnError,
}

/// `[telemetry]` settings.
#[derive(Debug, Clone)]
pub struct OtlpSettings {
    /// Collector base URL, e.g. `http://127.0.0.1:4318`.
    pub endpoint: String,
    /// `service.name` of the resource.
    pub service_name: String,
}
