//! `[providers.NAME]`: the built-in providers, each table changing one of
//! them or adding a new one.

use super::raw::RawProvider;
use super::{ConfigError, Source};
use crate::providers::{self, ProviderSpec};
use std::collections::BTreeMap;

/// Reads `[providers.*]` over the built-ins; a provider not built in must set `base_url`.
pub(super) fn read_providers(
    src: &Source,
    raw: BTreeMap<String, RawProvider>,
) -> Result<BTreeMap<String, ProviderSpec>, ConfigError> {
    let mut specs = providers::builtin_providers();
    for (name, p) in raw {
        let mut spec = match (specs.get(&name), &p.base_url) {
            (Some(existing), _) => existing.clone(),
            (None, Some(_)) => ProviderSpec::custom(&name),
            (None, None) => {
                return Err(src.invalid(
                    &format!("providers.{name}.base_url"),
                    "required for a provider that is not built in".into(),
                ));
            }
        };
        apply_provider(src, &name, &p, &mut spec)?;
        specs.insert(name, spec);
    }
    Ok(specs)
}

/// Checks the keys of one `[providers.NAME]` table and applies them to `spec`.
fn apply_provider(
    src: &Source,
    name: &str,
    p: &RawProvider,
    spec: &mut ProviderSpec,
) -> Result<(), ConfigError> {
    let key = |k: &str| format!("providers.{name}.{k}");
    if let Some(url) = &p.base_url {
        spec.base_url =
            providers::parse_base_url(url).map_err(|r| src.invalid(&key("base_url"), r))?;
    }
    if let Some(h) = &p.auth_header {
        spec.auth_header =
            providers::parse_auth_header(h).map_err(|r| src.invalid(&key("auth_header"), r))?;
    }
    // Both go into URL paths: lower-case letters, digits and '-' only.
    let path_name = |v: &str| {
        !v.is_empty()
            && v.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    if let Some(region) = &p.region {
        if !path_name(region) {
            return Err(src.invalid(
                &key("region"),
                format!("'{region}' is not a region name (such as \"us-east-1\" or \"global\")"),
            ));
        }
        spec.region = Some(region.clone());
    }
    if let Some(project) = &p.project {
        if !path_name(project) {
            return Err(src.invalid(
                &key("project"),
                format!("'{project}' is not a Google Cloud project id"),
            ));
        }
        spec.project = Some(project.clone());
    }
    match (&p.access_key_id, &p.secret_access_key) {
        (Some(id), Some(secret)) => {
            spec.aws = Some(providers::sigv4::AwsCredentials {
                access_key_id: src.secret(&key("access_key_id"), id)?,
                secret_access_key: src.secret(&key("secret_access_key"), secret)?,
                session_token: match &p.session_token {
                    Some(t) => Some(src.secret(&key("session_token"), t)?),
                    None => None,
                },
            });
        }
        (None, None) if p.session_token.is_some() => {
            return Err(src.invalid(
                &key("session_token"),
                "needs access_key_id and secret_access_key beside it".into(),
            ));
        }
        (None, None) => {}
        (Some(_), None) => {
            return Err(src.invalid(
                &key("secret_access_key"),
                "required with access_key_id".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(src.invalid(
                &key("access_key_id"),
                "required with secret_access_key".into(),
            ));
        }
    }
    if let Some(raw_key) = &p.api_key {
        spec.api_key = Some(src.secret(&key("api_key"), raw_key)?);
    }
    for (alias, raw_key) in &p.api_keys {
        let secret = src.secret(&key(&format!("api_keys.{alias}")), raw_key)?;
        spec.named_keys.insert(alias.clone(), secret);
    }
    if let Some(ca) = &p.ca_file {
        let path = src.base.join(ca);
        if !path.is_file() {
            return Err(src.invalid(
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
            return Err(src.invalid(
                &key("stream_usage"),
                format!("'{other}': expected \"inject\" or \"off\""),
            ));
        }
    }
    if let Some(c) = &p.compat_path {
        if !c.starts_with('/') {
            return Err(src.invalid(&key("compat_path"), format!("'{c}' must start with '/'")));
        }
        spec.compat_path = Some(c.clone());
    }
    if let Some(t) = p.request_timeout_ms {
        if t == 0 {
            return Err(src.invalid(&key("request_timeout_ms"), "must be greater than 0".into()));
        }
        spec.request_timeout_ms = Some(t);
    }
    Ok(())
}
