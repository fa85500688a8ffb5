//! `[gateways.NAME]`: who may use each gateway and its filter pipeline. Each
//! filter's table is split into the host's keys (failure policy, deadline,
//! memory, circuit breaker) and the rest, which goes to the filter as JSON.

use super::raw::{RawGateway, RawStoreResponses};
use super::{
    ConfigError, FilterSettings, GatewayConfig, HttpGrant, KeyMode, MAX_FILTER_MEMORY_MB, OnError,
    Source,
};
use crate::http::secret::Secret;
use std::collections::BTreeMap;
use std::path::Path;

/// Responses kept by `store_responses = true`.
pub const DEFAULT_STORED_RESPONSES: u64 = 10_000;

/// Reads every `[gateways.NAME]`; the file must define at least one.
pub(super) fn read_gateways(
    src: &Source,
    raw: BTreeMap<String, RawGateway>,
) -> Result<BTreeMap<String, GatewayConfig>, ConfigError> {
    let mut gateways = BTreeMap::new();
    for (name, g) in raw {
        let gateway = read_gateway(src, &name, g)?;
        gateways.insert(name, gateway);
    }
    if gateways.is_empty() {
        return Err(src.invalid(
            "gateways",
            "define at least one [gateways.NAME] table".into(),
        ));
    }
    Ok(gateways)
}

/// Reads one gateway: its name, accounts (default `*`), auth token and pipeline.
fn read_gateway(src: &Source, name: &str, g: RawGateway) -> Result<GatewayConfig, ConfigError> {
    if !valid_segment(name) {
        return Err(src.invalid(
            &format!("gateways.{name}"),
            "gateway names use letters, digits, '-' and '_'".into(),
        ));
    }
    let accounts = g.accounts.unwrap_or_else(|| vec!["*".to_string()]);
    let auth_token = match &g.auth_token {
        Some(raw) => Some(src.secret(&format!("gateways.{name}.auth_token"), raw)?),
        None => None,
    };
    let keys = match g.keys.as_deref() {
        None | Some("off") => KeyMode::Off,
        Some("optional") => KeyMode::Optional,
        Some("required") => KeyMode::Required,
        Some(other) => {
            return Err(src.invalid(
                &format!("gateways.{name}.keys"),
                format!("'{other}': expected \"required\", \"optional\" or \"off\""),
            ));
        }
    };
    let store_responses = match g.store_responses {
        None | Some(RawStoreResponses::On(false)) => 0,
        Some(RawStoreResponses::On(true)) => DEFAULT_STORED_RESPONSES,
        Some(RawStoreResponses::Keep(n)) if n > 0 => n as u64,
        Some(RawStoreResponses::Keep(n)) => {
            return Err(src.invalid(
                &format!("gateways.{name}.store_responses"),
                format!("{n}: expected true, false or how many responses to keep (at least 1)"),
            ));
        }
    };
    let filters = read_pipeline(src, name, &g.pipeline, &g.filters)?;
    Ok(GatewayConfig {
        accounts,
        auth_token,
        keys,
        store_responses,
        pipeline: g.pipeline,
        filters,
    })
}

/// Checks a pipeline and its filter tables, and reads the settings of each listed filter.
fn read_pipeline(
    src: &Source,
    name: &str,
    pipeline: &[String],
    tables: &BTreeMap<String, toml::Table>,
) -> Result<BTreeMap<String, FilterSettings>, ConfigError> {
    for fname in tables.keys() {
        if !pipeline.contains(fname) {
            return Err(src.invalid(
                &format!("gateways.{name}.filters.{fname}"),
                format!("filter '{fname}' has a table but is not in gateways.{name}.pipeline"),
            ));
        }
    }
    let mut filters = BTreeMap::new();
    for (i, fname) in pipeline.iter().enumerate() {
        if !valid_segment(fname) {
            return Err(src.invalid(
                &format!("gateways.{name}.pipeline[{i}]"),
                format!("'{fname}' is not a valid filter name (letters, digits, '-', '_')"),
            ));
        }
        if pipeline[..i].contains(fname) {
            return Err(src.invalid(
                &format!("gateways.{name}.pipeline[{i}]"),
                format!("filter '{fname}' is listed twice"),
            ));
        }
        let key = format!("gateways.{name}.filters.{fname}");
        let table = tables.get(fname).cloned().unwrap_or_default();
        let settings = filter_settings(fname, table, &src.base)
            .map_err(|(k, r)| src.invalid(&format!("{key}.{k}"), r))?;
        filters.insert(fname.clone(), settings);
    }
    Ok(filters)
}

/// True for a name made of ASCII letters, digits, `-` and `_` (not empty).
fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The built-in filters that hold money and access: they always fail closed (a failure, a
/// time or memory limit, an open circuit refuses the request), and get more time and memory
/// by default, since they read whole request bodies.
const POLICY_FILTERS: [&str; 2] = ["key-policy", "spend-limit"];

/// Splits the host's own keys off a filter table; the rest goes to `configure`.
fn filter_settings(
    name: &str,
    mut table: toml::Table,
    base: &Path,
) -> Result<FilterSettings, (String, String)> {
    let policy = POLICY_FILTERS.contains(&name);
    let on_error = match table.remove("on_error") {
        None if policy => Some(OnError::Closed),
        None => None,
        Some(toml::Value::String(s)) if s == "open" && policy => {
            return Err((
                "on_error".into(),
                format!("'{name}' enforces access and budgets: it always fails closed"),
            ));
        }
        Some(toml::Value::String(s)) if s == "open" => Some(OnError::Open),
        Some(toml::Value::String(s)) if s == "closed" => Some(OnError::Closed),
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
    let (default_ms, default_mb) = if policy { (1_000, 256) } else { (50, 64) };
    let timeout_ms = number("timeout_ms", default_ms, 60_000)?;
    let max_memory_mb = number(
        "max_memory_mb",
        default_mb.min(MAX_FILTER_MEMORY_MB),
        MAX_FILTER_MEMORY_MB,
    )?;
    let circuit_open_ms = number("circuit_open_ms", 30_000, 3_600_000)?;
    let http_timeout_ms = number("http_timeout_ms", 5_000, 60_000)?;
    let http_max_response_bytes = number("http_max_response_bytes", 1 << 20, 64 << 20)?;
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
    let origins = match table.remove("allow_http") {
        None => Vec::new(),
        Some(toml::Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                toml::Value::String(s) => origin(s).map_err(|e| (format!("allow_http[{i}]"), e)),
                other => Err((
                    format!("allow_http[{i}]"),
                    format!("expected an origin such as \"https://host:8443\", got {other}"),
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err((
                "allow_http".into(),
                format!("expected a list of origins such as [\"https://host:8443\"], got {other}"),
            ));
        }
    };
    let websocket_pass = match table.remove("websocket") {
        None => false,
        Some(toml::Value::String(s)) if s == "pass" => true,
        Some(toml::Value::String(s)) if s == "refuse" => false,
        Some(other) => {
            return Err((
                "websocket".into(),
                format!(
                    "expected \"refuse\" (a WebSocket session the filter cannot read is refused) or \"pass\" (it passes unread), got {other}"
                ),
            ));
        }
    };
    let host_key_typos = host_key_typos(&table);
    let mut secrets = Vec::new();
    // The values of the table (the table itself is never a secret reference).
    for (k, v) in table.iter_mut() {
        resolve_secrets(v, k, base, &mut secrets)?;
    }
    let config_json = serde_json::to_string(&table).map_err(|e| (String::new(), e.to_string()))?;
    Ok(FilterSettings {
        on_error,
        websocket_pass,
        timeout_ms,
        max_memory_mb,
        circuit_failures,
        circuit_open_ms,
        config_json,
        host_key_typos,
        http: std::sync::Arc::new(HttpGrant {
            origins,
            timeout_ms: http_timeout_ms,
            max_response_bytes: http_max_response_bytes,
        }),
        secrets: std::sync::Arc::new(secrets),
    })
}

/// An origin of `allow_http` as `scheme://host:port`: http or https, a host, no path.
pub(crate) fn origin(text: &str) -> Result<String, String> {
    let uri: hyper::Uri = text
        .parse()
        .map_err(|e| format!("'{text}' is not a URL ({e})"))?;
    let Some(origin) = origin_of(&uri) else {
        return Err(format!(
            "'{text}': expected an http:// or https:// origin with a host"
        ));
    };
    // `port_u16` reads an unparsable port as none (the default): refuse it instead.
    if let Some(a) = uri.authority() {
        let hostport = a.as_str().rsplit('@').next().unwrap_or("");
        let port = match hostport.rsplit_once(']') {
            Some((_, rest)) => rest.strip_prefix(':'),
            None => hostport.rsplit_once(':').map(|(_, p)| p),
        };
        if port.is_some_and(|p| !p.is_empty()) && a.port_u16().is_none() {
            return Err(format!(
                "'{text}': the port is not a number from 0 to 65535"
            ));
        }
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!(
            "'{text}': an origin has no path or query (scheme, host and port only)"
        ));
    }
    Ok(origin)
}

/// The origin of an absolute http or https URL, as `scheme://host:port` (lower-case, port
/// explicit); none for anything else.
pub fn origin_of(uri: &hyper::Uri) -> Option<String> {
    let scheme = match uri.scheme_str()? {
        "http" => "http",
        "https" => "https",
        _ => return None,
    };
    let host = uri.host().filter(|h| !h.is_empty())?;
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    Some(format!("{scheme}://{}:{port}", host.to_ascii_lowercase()))
}

/// Replaces each `{ env = "NAME" }` or `{ file = "PATH" }` in a filter table by the secret it
/// names, collecting the values (so they can be masked in the filter's errors).
fn resolve_secrets(
    v: &mut toml::Value,
    at: &str,
    base: &Path,
    secrets: &mut Vec<Secret>,
) -> Result<(), (String, String)> {
    let path = |k: &str| {
        if at.is_empty() {
            k.to_string()
        } else {
            format!("{at}.{k}")
        }
    };
    match v {
        toml::Value::Table(t) if t.len() == 1 => {
            let raw = match t.iter().next() {
                Some((k, toml::Value::String(name))) if k == "env" => {
                    Some(super::raw::RawSecret::Env { env: name.clone() })
                }
                Some((k, toml::Value::String(file))) if k == "file" => {
                    // Beside the config: a table edited in the console cannot read any file.
                    let p = Path::new(file);
                    if p.is_absolute()
                        || p.components()
                            .any(|c| matches!(c, std::path::Component::ParentDir))
                    {
                        return Err((
                            at.to_string(),
                            format!(
                                "secret file '{file}': use a path inside the config file's folder (no '..', not absolute)"
                            ),
                        ));
                    }
                    Some(super::raw::RawSecret::File { file: file.clone() })
                }
                _ => None,
            };
            match raw {
                Some(raw) => {
                    let secret =
                        super::resolve_secret(&raw, base).map_err(|e| (at.to_string(), e))?;
                    *v = toml::Value::String(secret.0.clone());
                    secrets.push(secret);
                }
                None => {
                    for (k, inner) in t.iter_mut() {
                        resolve_secrets(inner, &path(k), base, secrets)?;
                    }
                }
            }
        }
        toml::Value::Table(t) => {
            for (k, inner) in t.iter_mut() {
                resolve_secrets(inner, &path(k), base, secrets)?;
            }
        }
        toml::Value::Array(list) => {
            for (i, inner) in list.iter_mut().enumerate() {
                resolve_secrets(inner, &format!("{at}[{i}]"), base, secrets)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The host's keys in a filter table, each with what it sets (for the hint of a misspelt one).
const HOST_KEYS: [(&str, &str); 9] = [
    (
        "websocket",
        "whether a WebSocket session the filter cannot read is refused (\"refuse\") or passes (\"pass\")",
    ),
    (
        "allow_http",
        "the origins the filter may call over HTTP, such as [\"https://host:8443\"]",
    ),
    (
        "http_timeout_ms",
        "the longest wait for an outbound HTTP answer, in milliseconds",
    ),
    (
        "http_max_response_bytes",
        "the most bytes of an outbound HTTP answer read",
    ),
    (
        "on_error",
        "what a failing call does: \"open\" skips the filter, \"closed\" refuses the request",
    ),
    (
        "timeout_ms",
        "the CPU deadline of each call, in milliseconds",
    ),
    (
        "max_memory_mb",
        "the memory cap of the filter's instance, in MiB",
    ),
    (
        "circuit_failures",
        "failed requests in a row that open the filter's circuit",
    ),
    (
        "circuit_open_ms",
        "how long an open circuit keeps the filter from being called, in milliseconds",
    ),
];

/// Keys left for the filter (the host keys are already taken out) that look like a misspelt
/// host key (`circuit_failure`, `timeout`, `on-error`, `max_memory`), each with the host key
/// meant. They still go to the filter (it may have such a key of its own); when its
/// `configure` rejects the table the error names the host key, and when it accepts it the
/// gateway warns.
fn host_key_typos(table: &toml::Table) -> Vec<String> {
    table
        .keys()
        .filter_map(|key| {
            host_key_like(key).map(|(host_key, what)| {
                format!("'{key}' is not a host key; did you mean '{host_key}' ({what})?")
            })
        })
        .collect()
}

/// The host key that `key` most likely misspells: compared lower-cased with `-` read as
/// `_`, within edit distance 2 of the host key or of its name without the unit suffix
/// (`timeout`, `max_memory`, `circuit_open`). No key of the built-in filters is that close.
fn host_key_like(key: &str) -> Option<(&'static str, &'static str)> {
    if key.len() > 32 {
        return None;
    }
    let key: String = key
        .chars()
        .map(|c| {
            if c == '-' {
                '_'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    HOST_KEYS
        .iter()
        .filter_map(|&(host, what)| {
            let stem = host
                .strip_suffix("_ms")
                .or_else(|| host.strip_suffix("_mb"))
                .unwrap_or(host);
            let distance = edit_distance(&key, host).min(edit_distance(&key, stem));
            (distance <= 2).then_some((distance, host, what))
        })
        .min_by_key(|&(distance, ..)| distance)
        .map(|(_, host, what)| (host, what))
}

/// Levenshtein distance between `a` and `b` (insertions, deletions, substitutions of chars).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    // row[j]: the distance between the part of `a` read so far and b[..j].
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != cb))
                .min(above + 1)
                .min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}
