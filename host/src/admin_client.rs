//! The command line's client of a running gateway's admin API (`aigw logs recost`): where the
//! admin listener is (`--admin`, else the config's `[server] admin_listen`), its token
//! (`--admin-token`, else the config's `admin_token`), and one JSON call.

use crate::http::secret::Secret;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest wait for the admin API's answer.
const TIMEOUT: Duration = Duration::from_secs(300);

/// A running gateway's admin API.
#[derive(Debug)]
pub struct AdminApi {
    base: String,
    token: Option<Secret>,
}

impl AdminApi {
    /// The admin API named by `url`, else by the config file's `[server] admin_listen`; the
    /// token is `token`, else the config's `admin_token`.
    pub fn resolve(
        config: &Path,
        url: Option<&str>,
        token: Option<String>,
    ) -> Result<Self, String> {
        // The config is needed for the address; with an explicit URL it only may hold the token.
        let loaded = match (url, &token) {
            (Some(_), Some(_)) => None,
            (Some(_), None) => crate::config::Config::load(config).ok(),
            (None, _) => Some(crate::config::Config::load(config).map_err(|e| e.to_string())?),
        };
        let base = match url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => match loaded.as_ref().and_then(|c| c.admin_listen) {
                Some(addr) => format!("http://{addr}"),
                None => {
                    return Err(format!(
                        "{}: [server] admin_listen is not set; pass --admin http://HOST:PORT",
                        config.display()
                    ));
                }
            },
        };
        if !base.starts_with("http://") {
            return Err(format!("--admin {base}: expected an http:// URL"));
        }
        let token = token
            .or_else(|| loaded.and_then(|c| c.admin_token))
            .map(Secret);
        Ok(AdminApi { base, token })
    }

    /// Sends `method path` (with `body` as JSON) and returns the JSON answer; an error answer
    /// becomes its message.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Full<bytes::Bytes>>();
        let url = format!("{}{path}", self.base);
        let mut req = Request::builder().method(method.clone()).uri(&url);
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {}", t.0));
        }
        let payload = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                bytes::Bytes::from(v.to_string())
            }
            None => bytes::Bytes::new(),
        };
        let req = req
            .body(Full::new(payload))
            .map_err(|e| format!("{method} {url}: {e}"))?;
        let answer = tokio::time::timeout(TIMEOUT, async {
            let resp = client.request(req).await.map_err(|e| {
                format!(
                    "cannot reach the admin API at {}: {e} (is `aigw serve` running?)",
                    self.base
                )
            })?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("{method} {url}: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, bytes))
        })
        .await
        .map_err(|_| format!("{method} {url}: no answer within {} s", TIMEOUT.as_secs()))??;
        let (status, bytes) = answer;
        let value: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        if status.is_success() {
            return Ok(value);
        }
        let message = value
            .pointer("/error/message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| value.to_string());
        Err(format!("{method} {path}: {status}: {message}"))
    }
}

/// `aigw logs recost`: one admin API call, its report printed as JSON.
pub async fn recost(
    gateway: &str,
    since: &str,
    until: Option<&str>,
    admin: crate::cli::AdminArgs,
) -> Result<String, String> {
    let mut query = format!("since={}", parse_time("--since", since)?);
    if let Some(u) = until {
        query.push_str(&format!("&until={}", parse_time("--until", u)?));
    }
    let api = AdminApi::resolve(&admin.config, admin.admin.as_deref(), admin.admin_token)?;
    let path = format!("/api/gateways/{}/logs/recost?{query}", segment(gateway));
    let report = api.call(Method::POST, &path, None).await?;
    serde_json::to_string_pretty(&report).map_err(|e| e.to_string())
}

/// `aigw keys …`: one admin API call; the answer printed as JSON.
pub async fn keys(cmd: crate::cli::KeysCommand) -> Result<String, String> {
    use crate::cli::KeysCommand as K;
    let list = |s: &str| -> Value {
        s.split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(|x| Value::String(x.to_string()))
            .collect()
    };
    let (admin, method, path, body) = match cmd {
        K::Create {
            name,
            gateways,
            team,
            models,
            providers,
            budget_usd,
            budget_period,
            rpm,
            tpm,
            expires,
            metadata,
            admin,
        } => {
            let mut spec = serde_json::json!({ "name": name });
            spec["gateways"] = if gateways.trim() == "*" {
                Value::String("*".into())
            } else {
                list(&gateways)
            };
            if let Some(t) = team {
                spec["team"] = Value::String(t);
            }
            if let Some(m) = models {
                spec["models"] = list(&m);
            }
            if let Some(p) = providers {
                spec["providers"] = list(&p);
            }
            if let Some(amount) = budget_usd {
                spec["budget_usd"] = serde_json::json!({"amount": amount, "period": budget_period});
            }
            if let Some(n) = rpm {
                spec["requests_per_minute"] = n.into();
            }
            if let Some(n) = tpm {
                spec["tokens_per_minute"] = n.into();
            }
            if let Some(t) = expires {
                spec["expires_at_ms"] = parse_time("--expires", &t)?.into();
            }
            if !metadata.is_empty() {
                let mut meta = serde_json::Map::new();
                for m in metadata {
                    let (k, v) = m
                        .split_once('=')
                        .ok_or_else(|| format!("--meta {m}: expected key=value"))?;
                    meta.insert(k.to_string(), Value::String(v.to_string()));
                }
                spec["metadata"] = Value::Object(meta);
            }
            (admin, Method::POST, "/api/keys".to_string(), Some(spec))
        }
        K::List { limit, admin } => (admin, Method::GET, format!("/api/keys?limit={limit}"), None),
        K::Show { id, admin } => (
            admin,
            Method::GET,
            format!("/api/keys/{}", segment(&id)),
            None,
        ),
        K::Revoke { id, admin } => (
            admin,
            Method::DELETE,
            format!("/api/keys/{}", segment(&id)),
            None,
        ),
    };
    let api = AdminApi::resolve(&admin.config, admin.admin.as_deref(), admin.admin_token)?;
    let answer = api.call(method, &path, body.as_ref()).await?;
    serde_json::to_string_pretty(&answer).map_err(|e| e.to_string())
}

/// A path segment, percent-encoded (RFC 3986 unreserved characters kept).
pub fn segment(text: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(text, SET).to_string()
}

/// A point in time for `--since`/`--until`: milliseconds since the Unix epoch, an RFC 3339
/// time (`2026-11-01T00:00:00Z`), or a duration before now (`90m`, `24h`, `7d`).
pub fn parse_time(flag: &str, text: &str) -> Result<i64, String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?;
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(ago) = humantime::parse_duration(text) {
        return Ok(now.saturating_sub(ago).as_millis() as i64);
    }
    if let Ok(at) = humantime::parse_rfc3339_weak(text) {
        return at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .map_err(|_| format!("{flag} {text}: before 1970"));
    }
    Err(format!(
        "{flag} {text}: expected milliseconds since the epoch, an RFC 3339 time \
         (2026-11-01T00:00:00Z) or a duration before now (24h, 7d)"
    ))
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn times_in_three_forms() {
        assert_eq!(
            parse_time("--since", "1700000000000"),
            Ok(1_700_000_000_000)
        );
        assert_eq!(
            parse_time("--since", "2023-11-14T22:13:20Z"),
            Ok(1_700_000_000_000)
        );
        let now = super::SystemTime::now()
            .duration_since(super::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let day_ago = parse_time("--since", "1d").unwrap_or(0);
        assert!((now - 86_400_000 - day_ago).abs() < 10_000, "{day_ago}");
        let e = parse_time("--since", "yesterday").unwrap_err();
        assert!(e.contains("--since yesterday"), "{e}");
    }
}
