//! Gateways managed through the API: Cloudflare's gateway settings (caching, rate limiting,
//! logs, retries, authentication) read from and written to a gateway's pipeline in the TOML,
//! which stays the single source of truth.
//!
//! Each setting is one built-in filter: `cache_ttl` → `cache` (`ttl_s`), the rate-limiting
//! fields → `rate-limit` (one bucket for the gateway, `key = "gateway"`), `collect_logs` →
//! `logging`, the retry fields → `retry`. Turning a setting on inserts its filter at its
//! place among the managed ones (logging, rate-limit, cache, retry) and leaves every other
//! filter where it is; turning it off removes the filter and its table. A table's other keys
//! (set by hand) are kept; a value the request does not change is not rewritten. Edits go
//! through `toml_edit`, so comments, order and formatting of the rest of the file stay.

use crate::config::GatewayConfig;
use serde_json::{Map, Value};
use toml_edit::{Array, DocumentMut, Item, Table, value};

/// The managed filters, in the order they take in a pipeline.
const MANAGED: [&str; 4] = ["logging", "rate-limit", "cache", "retry"];

/// Cloudflare's gateway settings, as aigw keeps them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Settings {
    /// Seconds a cached answer lives; none: no cache.
    pub cache_ttl: Option<u64>,
    /// Logs kept (`logging` with `collect_logs`).
    pub collect_logs: bool,
    /// Rate-limit window in seconds; none: no rate limit.
    pub rate_limiting_interval: Option<u64>,
    /// Requests per window.
    pub rate_limiting_limit: Option<u64>,
    /// `fixed` or `sliding`.
    pub rate_limiting_technique: Option<String>,
    /// Whether clients must send `cf-aig-authorization` (a token set in the TOML).
    pub authentication: bool,
    /// Attempts in all (the `retry` filter); none: no retries.
    pub retry_max_attempts: Option<u64>,
    /// Base delay between attempts, ms.
    pub retry_delay: Option<u64>,
    /// `constant`, `linear` or `exponential`.
    pub retry_backoff: Option<String>,
    /// Most log entries the gateway keeps (`logging`'s `max_entries`); none: no limit.
    pub log_management: Option<u64>,
    /// `DELETE_OLDEST` or `STOP_INSERTING` (`logging`'s `when_full`), with a limit.
    pub log_management_strategy: Option<String>,
}

/// Cloudflare's strategy name for `when_full`, and back.
fn strategy_of(when_full: &str) -> &'static str {
    match when_full {
        "stop_inserting" => "STOP_INSERTING",
        _ => "DELETE_OLDEST",
    }
}

fn table_json(gw: &GatewayConfig, filter: &str) -> Option<Value> {
    if !gw.pipeline.iter().any(|f| f == filter) {
        return None;
    }
    Some(
        gw.filters
            .get(filter)
            .and_then(|s| serde_json::from_str(&s.config_json).ok())
            .unwrap_or(Value::Object(Map::new())),
    )
}

impl Settings {
    /// What a configured gateway does, in these terms.
    pub fn of(gw: &GatewayConfig) -> Settings {
        let mut s = Settings {
            authentication: gw.auth_token.is_some(),
            ..Settings::default()
        };
        if let Some(c) = table_json(gw, "cache") {
            // The cache filter's default TTL is an hour; 0 stores nothing.
            let ttl = c["ttl_s"].as_u64().unwrap_or(3600);
            s.cache_ttl = (ttl > 0).then_some(ttl);
        }
        if let Some(l) = table_json(gw, "logging") {
            s.collect_logs = l["collect_logs"].as_bool().unwrap_or(true);
            s.log_management = l["max_entries"].as_u64();
            if s.log_management.is_some() {
                let when = l["when_full"].as_str().unwrap_or("delete_oldest");
                s.log_management_strategy = Some(strategy_of(when).to_string());
            }
        }
        if let Some(r) = table_json(gw, "rate-limit") {
            s.rate_limiting_interval = r["period_s"].as_u64();
            s.rate_limiting_limit = r["limit"].as_u64();
            s.rate_limiting_technique =
                Some(r["technique"].as_str().unwrap_or("fixed").to_string());
        }
        if let Some(r) = table_json(gw, "retry") {
            s.retry_max_attempts = Some(r["max_attempts"].as_u64().unwrap_or(3));
            s.retry_delay = Some(r["delay_ms"].as_u64().unwrap_or(500));
            s.retry_backoff = Some(r["backoff"].as_str().unwrap_or("exponential").to_string());
        }
        s
    }
}

/// Why an edit cannot be made: the field (a JSON name) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditError {
    /// The field.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn err(field: &str, message: impl Into<String>) -> EditError {
    EditError {
        field: field.to_string(),
        message: message.into(),
    }
}

/// `gateways` of the document, created (as a header-less table) when missing.
fn gateways(doc: &mut DocumentMut) -> Result<&mut Table, EditError> {
    let root = doc.as_table_mut();
    if !root.contains_key("gateways") {
        let mut t = Table::new();
        t.set_implicit(true);
        root.insert("gateways", Item::Table(t));
    }
    root.get_mut("gateways")
        .and_then(Item::as_table_mut)
        .ok_or_else(|| err("id", "the config file's `gateways` is not a table"))
}

/// Whether the document has gateway `name`.
pub fn exists(doc: &DocumentMut, name: &str) -> bool {
    doc.get("gateways")
        .and_then(Item::as_table)
        .is_some_and(|g| g.contains_key(name))
}

/// Removes gateway `name`; false when it was not there.
pub fn remove(doc: &mut DocumentMut, name: &str) -> bool {
    doc.get_mut("gateways")
        .and_then(Item::as_table_mut)
        .and_then(|g| g.remove(name))
        .is_some()
}

/// Writes `new` into gateway `name` (created when missing), given what it was (`old`).
pub fn apply(
    doc: &mut DocumentMut,
    name: &str,
    old: &Settings,
    new: &Settings,
) -> Result<(), EditError> {
    let gateways = gateways(doc)?;
    if !gateways.contains_key(name) {
        gateways.insert(name, Item::Table(Table::new()));
    }
    let gw = gateways
        .get_mut(name)
        .and_then(Item::as_table_mut)
        .ok_or_else(|| err("id", format!("gateways.{name} is not a table")))?;
    if !gw.contains_key("pipeline") {
        gw.insert("pipeline", value(Array::new()));
    }

    // Authentication needs a token, which is a secret: the TOML sets it, not this API.
    match (old.authentication, new.authentication) {
        (false, true) => {
            return Err(err(
                "authentication",
                format!(
                    "set gateways.{name}.auth_token in the config file (for instance {{ env = \"AIGW_{}_TOKEN\" }}); clients then send it as cf-aig-authorization",
                    name.to_uppercase().replace('-', "_")
                ),
            ));
        }
        (true, false) => {
            return Err(err(
                "authentication",
                format!(
                    "remove gateways.{name}.auth_token from the config file to turn authentication off (the token is a secret this API does not touch)"
                ),
            ));
        }
        _ => {}
    }

    let wanted = |filter: &str| match filter {
        "logging" => new.collect_logs || old.collect_logs || new.log_management.is_some(),
        "rate-limit" => new.rate_limiting_limit.is_some(),
        "cache" => new.cache_ttl.is_some(),
        _ => new.retry_max_attempts.is_some(),
    };
    for filter in MANAGED {
        set_in_pipeline(gw, filter, wanted(filter))?;
    }

    // Each filter's table: only what changed is written; other keys stay.
    if new.collect_logs != old.collect_logs {
        if new.collect_logs {
            // Logging that was off by its table: on again (absent, the default is on).
            if let Some(t) = filter_table(gw, "logging", false) {
                t.remove("collect_logs");
            }
        } else if let Some(t) = filter_table(gw, "logging", true) {
            t.insert("collect_logs", value(false));
        }
    }
    if (new.log_management, &new.log_management_strategy)
        != (old.log_management, &old.log_management_strategy)
    {
        match new.log_management {
            Some(max) => {
                if let Some(t) = filter_table(gw, "logging", true) {
                    t.insert("max_entries", value(max as i64));
                    let when = match new.log_management_strategy.as_deref() {
                        Some("STOP_INSERTING") => "stop_inserting",
                        _ => "delete_oldest",
                    };
                    t.insert("when_full", value(when));
                }
            }
            None => {
                if let Some(t) = filter_table(gw, "logging", false) {
                    t.remove("max_entries");
                    t.remove("when_full");
                }
            }
        }
    }
    if let Some(ttl) = new.cache_ttl
        && (old.cache_ttl != Some(ttl))
        && let Some(t) = filter_table(gw, "cache", true)
    {
        t.insert("ttl_s", value(ttl as i64));
    }
    if let Some(limit) = new.rate_limiting_limit {
        let interval = new.rate_limiting_interval.ok_or_else(|| {
            err(
                "rate_limiting_interval",
                "required (seconds) with rate_limiting_limit",
            )
        })?;
        let fresh = old.rate_limiting_limit.is_none();
        if let Some(t) = filter_table(gw, "rate-limit", true) {
            if fresh {
                t.insert("key", value("gateway"));
            }
            if fresh || old.rate_limiting_limit != Some(limit) {
                t.insert("limit", value(limit as i64));
            }
            if fresh || old.rate_limiting_interval != Some(interval) {
                t.insert("period_s", value(interval as i64));
            }
            if let Some(tech) = &new.rate_limiting_technique
                && (fresh || old.rate_limiting_technique.as_ref() != Some(tech))
            {
                t.insert("technique", value(tech.as_str()));
            }
        }
    }
    if new.retry_max_attempts.is_some() {
        let fresh = old.retry_max_attempts.is_none();
        if let Some(t) = filter_table(gw, "retry", true) {
            if let Some(n) = new.retry_max_attempts
                && (fresh || old.retry_max_attempts != Some(n))
            {
                t.insert("max_attempts", value(n as i64));
            }
            if let Some(d) = new.retry_delay
                && (fresh || old.retry_delay != Some(d))
            {
                t.insert("delay_ms", value(d as i64));
            }
            if let Some(b) = &new.retry_backoff
                && (fresh || old.retry_backoff.as_ref() != Some(b))
            {
                t.insert("backoff", value(b.as_str()));
            }
        }
    }
    // An empty `filters` table left behind is dropped.
    if gw
        .get("filters")
        .and_then(Item::as_table)
        .is_some_and(Table::is_empty)
    {
        gw.remove("filters");
    }
    Ok(())
}

/// Gives the gateway's cache a new namespace, so answers cached before are not served
/// again (Cloudflare's `cache_invalidate_on_update`).
pub fn invalidate_cache(doc: &mut DocumentMut, name: &str, namespace: &str) {
    if let Some(t) = doc
        .get_mut("gateways")
        .and_then(|g| g.get_mut(name))
        .and_then(Item::as_table_mut)
        .and_then(|gw| filter_table(gw, "cache", true))
    {
        t.insert("namespace", value(namespace));
    }
}

/// The table `gateways.NAME.filters.FILTER`, created when `create` and missing.
fn filter_table<'a>(gw: &'a mut Table, filter: &str, create: bool) -> Option<&'a mut Table> {
    if !gw.contains_key("filters") {
        if !create {
            return None;
        }
        let mut t = Table::new();
        t.set_implicit(true);
        gw.insert("filters", Item::Table(t));
    }
    let filters = gw.get_mut("filters")?.as_table_mut()?;
    if !filters.contains_key(filter) {
        if !create {
            return None;
        }
        filters.insert(filter, Item::Table(Table::new()));
    }
    filters.get_mut(filter)?.as_table_mut()
}

/// Adds `filter` to the pipeline at its place among the managed filters, or removes it (and
/// its table).
fn set_in_pipeline(gw: &mut Table, filter: &str, on: bool) -> Result<(), EditError> {
    let pipeline = gw
        .get_mut("pipeline")
        .and_then(Item::as_array_mut)
        .ok_or_else(|| err("id", "the gateway's pipeline is not an array"))?;
    let names: Vec<String> = pipeline
        .iter()
        .map(|v| v.as_str().unwrap_or("").to_string())
        .collect();
    let present = names.iter().position(|n| n == filter);
    match (present, on) {
        (Some(_), true) | (None, false) => {}
        (Some(i), false) => {
            pipeline.remove(i);
            if let Some(f) = gw.get_mut("filters").and_then(Item::as_table_mut) {
                f.remove(filter);
            }
        }
        (None, true) => {
            let rank = |n: &str| MANAGED.iter().position(|m| *m == n);
            let mine = rank(filter).unwrap_or(0);
            let at = names
                .iter()
                .position(|n| rank(n).is_some_and(|r| r > mine))
                .or_else(|| {
                    names
                        .iter()
                        .rposition(|n| rank(n).is_some_and(|r| r < mine))
                        .map(|i| i + 1)
                })
                .unwrap_or(if filter == "logging" { 0 } else { names.len() });
            pipeline.insert(at, filter);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway(doc: &str, name: &str) -> GatewayConfig {
        let c = crate::config::Config::parse(std::path::Path::new("/x/aigw.toml"), doc).unwrap();
        c.gateways[name].clone()
    }

    const FILE: &str = "# the team's gateways\n\
        [server]\nlisten = \"127.0.0.1:8787\" # main\n\n\
        [gateways.app]\n# our own filter stays in front\npipeline = [\"redact\", \"logging\"]\n\
        [gateways.app.filters.redact]\nmode = \"mask\"\n";

    #[test]
    fn settings_round_trip_and_the_rest_of_the_file_stays() {
        let mut doc: DocumentMut = FILE.parse().unwrap();
        let before = Settings {
            collect_logs: true,
            ..Settings::default()
        };
        let new = Settings {
            cache_ttl: Some(300),
            collect_logs: true,
            rate_limiting_interval: Some(60),
            rate_limiting_limit: Some(20),
            rate_limiting_technique: Some("sliding".into()),
            retry_max_attempts: Some(2),
            retry_delay: Some(100),
            retry_backoff: Some("constant".into()),
            ..Settings::default()
        };
        apply(&mut doc, "app", &before, &new).unwrap();
        let text = doc.to_string();
        assert!(text.starts_with("# the team's gateways\n"), "{text}");
        assert!(
            text.contains("listen = \"127.0.0.1:8787\" # main"),
            "{text}"
        );
        assert!(text.contains("# our own filter stays in front"), "{text}");
        assert!(
            text.contains(
                "pipeline = [\"redact\", \"logging\", \"rate-limit\", \"cache\", \"retry\"]"
            ),
            "{text}"
        );
        let raw = text.replace("mode = \"mask\"", "");
        let gw = gateway(&raw, "app");
        assert_eq!(Settings::of(&gw), new, "{text}");
        assert!(text.contains("key = \"gateway\""), "{text}");

        // Off again: the filters and their tables go; a new gateway is created beside.
        let off = Settings {
            collect_logs: false,
            ..Settings::default()
        };
        apply(&mut doc, "app", &new, &off).unwrap();
        apply(&mut doc, "tutorial", &Settings::default(), &new).unwrap();
        let text = doc.to_string();
        assert!(
            text.contains("pipeline = [\"redact\", \"logging\"]"),
            "{text}"
        );
        assert!(!text.contains("[gateways.app.filters.cache]"), "{text}");
        assert!(text.contains("collect_logs = false"), "{text}");
        assert!(exists(&doc, "tutorial"));
        let gw = gateway(&text.replace("mode = \"mask\"", ""), "tutorial");
        assert_eq!(Settings::of(&gw), new);
        assert!(remove(&mut doc, "tutorial") && !exists(&doc, "tutorial"));
        assert!(!remove(&mut doc, "tutorial"));
    }

    #[test]
    fn authentication_needs_a_token_from_the_file() {
        let mut doc: DocumentMut = FILE.parse().unwrap();
        let on = Settings {
            authentication: true,
            ..Settings::default()
        };
        let e = apply(&mut doc, "app", &Settings::default(), &on).unwrap_err();
        assert_eq!(e.field, "authentication");
        assert!(e.message.contains("gateways.app.auth_token"), "{e:?}");
        let e = apply(
            &mut doc,
            "app",
            &Settings::default(),
            &Settings {
                rate_limiting_limit: Some(5),
                ..Settings::default()
            },
        )
        .unwrap_err();
        assert_eq!(e.field, "rate_limiting_interval");
    }
}
