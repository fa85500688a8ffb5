//! Providers: the built-in table (name → upstream base URL), how a provider
//! path becomes an upstream URI, which headers carry provider keys (so they can
//! be redacted everywhere), and usage extraction (`usage`).

pub mod usage;

use hyper::Uri;
use std::collections::BTreeMap;

/// Where a provider lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSpec {
    /// Provider name as used in URLs.
    pub name: String,
    /// Scheme + authority + base path (no trailing slash). May contain `{account}`.
    pub base_url: String,
}

impl ProviderSpec {
    /// A provider declared only in the config file.
    pub fn custom(name: &str) -> Self {
        ProviderSpec {
            name: name.to_string(),
            base_url: String::new(),
        }
    }

    /// The upstream URI for a provider path (starting with `/`) and query.
    pub fn upstream_uri(
        &self,
        account: &str,
        path: &str,
        query: Option<&str>,
    ) -> Result<Uri, String> {
        let base = self.base_url.replace("{account}", account);
        let mut uri = String::with_capacity(base.len() + path.len() + 16);
        uri.push_str(&base);
        uri.push_str(path);
        if let Some(q) = query {
            uri.push('?');
            uri.push_str(q);
        }
        uri.parse::<Uri>().map_err(|e| {
            format!(
                "cannot build the upstream URL for provider '{}': {e}",
                self.name
            )
        })
    }
}

/// Built-in providers and their real default base URLs.
pub fn builtin_providers() -> BTreeMap<String, ProviderSpec> {
    const TABLE: &[(&str, &str)] = &[
        ("openai", "https://api.openai.com/v1"),
        ("anthropic", "https://api.anthropic.com"),
        (
            "workers-ai",
            "https://api.cloudflare.com/client/v4/accounts/{account}/ai/run",
        ),
        ("huggingface", "https://api-inference.huggingface.co/models"),
        ("groq", "https://api.groq.com/openai/v1"),
        ("mistral", "https://api.mistral.ai/v1"),
        ("deepseek", "https://api.deepseek.com"),
        ("openrouter", "https://openrouter.ai/api/v1"),
        (
            "google-ai-studio",
            "https://generativelanguage.googleapis.com",
        ),
        ("cohere", "https://api.cohere.com"),
        ("perplexity-ai", "https://api.perplexity.ai"),
        ("replicate", "https://api.replicate.com/v1"),
        ("grok", "https://api.x.ai/v1"),
        ("cerebras", "https://api.cerebras.ai/v1"),
        ("together", "https://api.together.xyz/v1"),
        ("fireworks", "https://api.fireworks.ai/inference/v1"),
        ("ollama", "http://127.0.0.1:11434"),
    ];
    TABLE
        .iter()
        .map(|(name, url)| {
            (
                name.to_string(),
                ProviderSpec {
                    name: name.to_string(),
                    base_url: url.to_string(),
                },
            )
        })
        .collect()
}

/// Validates a `base_url` from the config: http(s), a host, no query.
pub fn parse_base_url(text: &str) -> Result<String, String> {
    let trimmed = text.trim_end_matches('/');
    let probe = trimmed.replace("{account}", "account");
    let uri: Uri = probe
        .parse()
        .map_err(|e| format!("'{text}' is not a URL ({e})"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(format!("'{text}' must start with http:// or https://")),
    }
    if uri.authority().is_none() {
        return Err(format!("'{text}' has no host"));
    }
    if uri.query().is_some() {
        return Err(format!("'{text}' must not have a query string"));
    }
    Ok(trimmed.to_string())
}

/// Headers that carry provider keys or gateway tokens. They are forwarded to the
/// provider (except the gateway's own) and removed from everything else: logs,
/// summaries handed to filters, error messages.
pub const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "cf-aig-authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

/// True for a header that must never be logged.
pub fn is_secret_header(name: &str) -> bool {
    SECRET_HEADERS.iter().any(|s| name.eq_ignore_ascii_case(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_uri_joins_base_path_and_query() {
        let p = &builtin_providers()["openai"];
        let uri = p
            .upstream_uri("acct", "/chat/completions", Some("a=1"))
            .unwrap();
        assert_eq!(
            uri.to_string(),
            "https://api.openai.com/v1/chat/completions?a=1"
        );
    }

    #[test]
    fn account_placeholder_is_filled() {
        let p = &builtin_providers()["workers-ai"];
        let uri = p.upstream_uri("abc123", "/@cf/meta/llama", None).unwrap();
        assert_eq!(
            uri.to_string(),
            "https://api.cloudflare.com/client/v4/accounts/abc123/ai/run/@cf/meta/llama"
        );
    }

    #[test]
    fn base_url_validation_names_the_problem() {
        assert!(parse_base_url("ftp://x").unwrap_err().contains("http"));
        assert!(parse_base_url("http://127.0.0.1:9/v1/?a=b").is_err());
        assert_eq!(
            parse_base_url("http://127.0.0.1:9/v1/").unwrap(),
            "http://127.0.0.1:9/v1"
        );
    }

    #[test]
    fn secret_headers_are_recognised_case_insensitively() {
        assert!(is_secret_header("Authorization"));
        assert!(is_secret_header("X-Api-Key"));
        assert!(!is_secret_header("content-type"));
    }
}
