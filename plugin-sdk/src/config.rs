//! Reading a filter's configuration into a typed struct.
//!
//! The host hands `configure` the filter's TOML table as JSON. Derive
//! `serde::Deserialize` (with `#[serde(deny_unknown_fields)]` so typos are
//! errors) and call [`parse`]: a bad table gives a message that names the
//! key's path, which `aigw check` and startup print with the filter's name.

use serde::de::DeserializeOwned;

/// Deserialises the filter's table; the error names the offending key path.
///
/// ```
/// #[derive(serde::Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Config {
///     limit: u32,
///     #[serde(default)]
///     rules: Vec<Rule>,
/// }
/// #[derive(serde::Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Rule { model: String }
///
/// let ok: Config = aigw_plugin_sdk::config::parse(serde_json::json!({"limit": 3})).unwrap();
/// assert_eq!(ok.limit, 3);
/// let err = aigw_plugin_sdk::config::parse::<Config>(
///     serde_json::json!({"limit": 3, "rules": [{"model": 1}]})).err().unwrap();
/// assert!(err.starts_with("rules[0].model:"), "{err}");
/// let err = aigw_plugin_sdk::config::parse::<Config>(serde_json::json!({"limt": 3})).err().unwrap();
/// assert!(err.contains("limt"), "{err}");
/// ```
pub fn parse<T: DeserializeOwned>(config: serde_json::Value) -> Result<T, String> {
    serde_path_to_error::deserialize(config).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        }
    })
}
