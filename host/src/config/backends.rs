//! Settings of the optional backends (shared store, log database, span
//! export) and the reading of `[store]`, `[logs]` and `[telemetry]`. They
//! live in the configuration module so it depends on nothing but itself (the
//! fuzz targets compile it alone).

use super::raw::{RawLogs, RawStore, RawTelemetry};
use super::{ConfigError, Source};
use crate::http::Secret;
use std::path::Path;

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

/// `[store]`: `None` for the in-memory backend.
pub(super) fn parse_store(
    st: RawStore,
    base: &Path,
) -> Result<Option<RedisSettings>, (String, String)> {
    let on_error = |key: &str, v: &Option<String>| match v.as_deref() {
        None | Some("open") => Ok(OnError::Open),
        Some("closed") => Ok(OnError::Closed),
        Some(other) => Err((
            format!("store.{key}"),
            format!("expected \"open\" or \"closed\", got \"{other}\""),
        )),
    };
    match st.backend.as_deref().unwrap_or("memory") {
        "memory" => {
            if st.url.is_some() {
                return Err((
                    "store.url".into(),
                    "only used with backend = \"redis\"".into(),
                ));
            }
            Ok(None)
        }
        "redis" => {
            let Some(url) = &st.url else {
                return Err((
                    "store.url".into(),
                    "backend = \"redis\" needs url = \"redis://127.0.0.1:6379/0\"".into(),
                ));
            };
            let url = super::resolve_secret(url, base).map_err(|r| ("store.url".to_string(), r))?;
            if !(url.0.starts_with("redis://") || url.0.starts_with("rediss://")) {
                return Err((
                    "store.url".into(),
                    "expected a redis:// or rediss:// URL".into(),
                ));
            }
            let timeout_ms = st.timeout_ms.unwrap_or(25);
            if !(1..=10_000).contains(&timeout_ms) {
                return Err((
                    "store.timeout_ms".into(),
                    format!("expected 1 to 10000, got {timeout_ms}"),
                ));
            }
            Ok(Some(RedisSettings {
                url: url.0,
                timeout_ms,
                key_prefix: st.key_prefix.unwrap_or_else(|| "aigw:".into()),
                max_entry_bytes: st.max_entry_bytes.unwrap_or(4 << 20),
                kv_on_error: on_error("kv_on_error", &st.kv_on_error)?,
                limits_on_error: on_error("limits_on_error", &st.limits_on_error)?,
            }))
        }
        other => Err((
            "store.backend".into(),
            format!("expected \"memory\" or \"redis\", got \"{other}\""),
        )),
    }
}

/// The three backend tables, read; `None` where the built-in default is used.
pub(super) struct Backends {
    /// `[store]`: Redis, or in memory.
    pub store: Option<RedisSettings>,
    /// `[logs]`: the PostgreSQL URL, or SQLite.
    pub logs_postgres: Option<Secret>,
    /// `[telemetry]`: span export, or none.
    pub otlp: Option<OtlpSettings>,
}

/// Reads and checks `[store]`, `[logs]` and `[telemetry]`, in that order.
pub(super) fn read_backends(
    src: &Source,
    store: Option<RawStore>,
    logs: Option<RawLogs>,
    telemetry: Option<RawTelemetry>,
) -> Result<Backends, ConfigError> {
    let invalid = |(key, reason): (String, String)| src.invalid(&key, reason);
    let store = match store {
        None => None,
        Some(st) => parse_store(st, &src.base).map_err(invalid)?,
    };
    let logs_postgres = match logs {
        None => None,
        Some(l) => parse_logs(l, &src.base).map_err(invalid)?,
    };
    let otlp = match telemetry {
        None => None,
        Some(t) => parse_telemetry(t).map_err(invalid)?,
    };
    Ok(Backends {
        store,
        logs_postgres,
        otlp,
    })
}

/// `[logs]`: the PostgreSQL URL, or `None` for the SQLite backend.
fn parse_logs(l: RawLogs, base: &Path) -> Result<Option<Secret>, (String, String)> {
    match l.backend.as_deref().unwrap_or("sqlite") {
        "sqlite" => {
            if l.url.is_some() {
                return Err((
                    "logs.url".into(),
                    "only used with backend = \"postgres\"".into(),
                ));
            }
            Ok(None)
        }
        "postgres" => {
            let Some(url) = &l.url else {
                return Err((
                    "logs.url".into(),
                    "backend = \"postgres\" needs url = \"postgres://user:password@host/db\""
                        .into(),
                ));
            };
            let url = super::resolve_secret(url, base).map_err(|r| ("logs.url".to_string(), r))?;
            if !(url.0.starts_with("postgres://") || url.0.starts_with("postgresql://")) {
                return Err((
                    "logs.url".into(),
                    "expected a postgres:// or postgresql:// URL".into(),
                ));
            }
            Ok(Some(url))
        }
        other => Err((
            "logs.backend".into(),
            format!("expected \"sqlite\" or \"postgres\", got \"{other}\""),
        )),
    }
}

/// `[telemetry]`: the OTLP export settings, or `None` when `otlp_endpoint` is unset.
fn parse_telemetry(t: RawTelemetry) -> Result<Option<OtlpSettings>, (String, String)> {
    let Some(e) = t.otlp_endpoint else {
        if t.service_name.is_some() {
            return Err((
                "telemetry.service_name".into(),
                "only used with otlp_endpoint".into(),
            ));
        }
        return Ok(None);
    };
    let host = e
        .strip_prefix("http://")
        .or_else(|| e.strip_prefix("https://"))
        .unwrap_or("");
    let ok = !host.is_empty()
        && !host.starts_with('/')
        && !e.chars().any(|c| c.is_whitespace() || c.is_control());
    if !ok {
        return Err((
            "telemetry.otlp_endpoint".into(),
            format!("expected an http(s) URL like http://127.0.0.1:4318, got '{e}'"),
        ));
    }
    Ok(Some(OtlpSettings {
        endpoint: e,
        service_name: t.service_name.unwrap_or_else(|| "aigw".into()),
    }))
}
