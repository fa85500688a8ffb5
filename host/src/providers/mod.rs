//! Providers: the built-in table (name → upstream base URL), how a provider
//! path becomes an upstream URI, which headers carry provider keys (so they can
//! be redacted everywhere), and usage extraction (`usage`).

pub mod anthropic;
pub mod chat_chunk;
pub mod chat_request;
pub mod cohere;
pub mod cohere_chat;
pub mod converse;
pub mod eventstream;
pub mod gemini;
pub mod messages;
pub mod pricing;
pub mod responses;
pub mod sigv4;
#[cfg(test)]
mod sse_strategies;
pub mod stream_end;
pub mod usage;

use crate::http::Secret;
use hyper::Uri;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// How a provider expects its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthHeader {
    /// Header name (lower-case).
    pub name: &'static str,
    /// The value is `Bearer <key>`.
    pub bearer: bool,
}

impl AuthHeader {
    const BEARER: AuthHeader = AuthHeader {
        name: "authorization",
        bearer: true,
    };
    const X_API_KEY: AuthHeader = AuthHeader {
        name: "x-api-key",
        bearer: false,
    };
    const API_KEY: AuthHeader = AuthHeader {
        name: "api-key",
        bearer: false,
    };
    const GOOG: AuthHeader = AuthHeader {
        name: "x-goog-api-key",
        bearer: false,
    };

    /// The header value for `key`.
    pub fn value(&self, key: &str) -> String {
        if self.bearer {
            format!("Bearer {key}")
        } else {
            key.to_string()
        }
    }
}

/// Parses `auth_header` from the config.
pub fn parse_auth_header(text: &str) -> Result<AuthHeader, String> {
    match text.to_ascii_lowercase().as_str() {
        "authorization" | "bearer" => Ok(AuthHeader::BEARER),
        "x-api-key" => Ok(AuthHeader::X_API_KEY),
        "api-key" => Ok(AuthHeader::API_KEY),
        "x-goog-api-key" => Ok(AuthHeader::GOOG),
        other => Err(format!(
            "'{other}' is not a known key header (authorization, x-api-key, api-key, x-goog-api-key)"
        )),
    }
}

/// Where a provider lives and how it is authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSpec {
    /// Provider name as used in URLs.
    pub name: String,
    /// Scheme + authority + base path (no trailing slash). `{account}` is the
    /// URL's account; each `{segment}` takes the next leading segment of the
    /// provider path (Azure resource, Bedrock service and region).
    pub base_url: String,
    /// The header carrying the key.
    pub auth_header: AuthHeader,
    /// Stored key injected when the client sent none.
    pub api_key: Option<Secret>,
    /// Named stored keys (`cf-aig-byok-alias`).
    pub named_keys: BTreeMap<String, Secret>,
    /// Extra trusted CA certificates (PEM).
    pub ca_file: Option<PathBuf>,
    /// First-byte timeout for this provider.
    pub request_timeout_ms: Option<u64>,
    /// Path of its OpenAI-compatible chat completions endpoint (compat endpoint).
    pub compat_path: Option<String>,
    /// Speaks Anthropic Messages: the compat endpoint translates to and from it.
    pub anthropic_messages: bool,
    /// Streamed chat requests get `stream_options.include_usage` added (`stream_usage =
    /// "inject"`), so the provider ends the stream with its token counts; off for providers
    /// that refuse unknown fields. With it off, usage the provider sends by itself is still read.
    pub stream_usage: bool,
    /// Stored AWS credentials: every request is signed with them (SigV4).
    pub aws: Option<sigv4::AwsCredentials>,
    /// Speaks Gemini's `generateContent`: the compat endpoint translates chat to and from it.
    pub gemini_native: bool,
    /// Speaks Bedrock Converse: the compat endpoint translates chat to and from it, in `region`.
    pub bedrock_converse: bool,
    /// Speaks Cohere's v2 chat: the compat endpoint translates chat to and from it (unless
    /// `compat_path` is set, which names an OpenAI-compatible path instead).
    pub cohere_native: bool,
    /// The region the compat endpoint sends native requests to: Bedrock's AWS region, Vertex
    /// AI's location (`global` when unset).
    pub region: Option<String>,
    /// The Google Cloud project of Vertex AI requests from the compat endpoint.
    pub project: Option<String>,
}

impl ProviderSpec {
    /// A provider declared only in the config file (Bearer keys by default).
    pub fn custom(name: &str) -> Self {
        ProviderSpec {
            name: name.to_string(),
            base_url: String::new(),
            auth_header: AuthHeader::BEARER,
            api_key: None,
            named_keys: BTreeMap::new(),
            ca_file: None,
            request_timeout_ms: None,
            compat_path: None,
            aws: None,
            gemini_native: false,
            bedrock_converse: false,
            cohere_native: false,
            region: None,
            project: None,
            anthropic_messages: false,
            stream_usage: true,
        }
    }

    /// Whether the compat endpoint can send it a chat completion: natively translated
    /// (Anthropic, Gemini, Bedrock, Cohere) or at its OpenAI-compatible path.
    pub fn takes_chat(&self) -> bool {
        self.anthropic_messages
            || self.gemini_native
            || self.bedrock_converse
            || self.cohere_native
            || self.compat_path.is_some()
    }

    /// The upstream URI for a provider path (starting with `/`) and query.
    pub fn upstream_uri(
        &self,
        account: &str,
        path: &str,
        query: Option<&str>,
    ) -> Result<Uri, String> {
        let mut base = self.base_url.replace("{account}", account);
        let mut rest = path;
        while base.contains("{segment}") {
            let trimmed = rest.strip_prefix('/').unwrap_or(rest);
            let (segment, after) = match trimmed.find('/') {
                Some(i) => (&trimmed[..i], &trimmed[i..]),
                None => (trimmed, ""),
            };
            if segment.is_empty()
                || !segment
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(format!(
                    "provider '{}' needs more path segments (its base URL is {})",
                    self.name, self.base_url
                ));
            }
            base = base.replacen("{segment}", segment, 1);
            rest = after;
        }
        // Workers AI: `…/ai/run/{model}` runs a model; its OpenAI-compatible API is beside
        // that, at `…/ai/v1/…` (as Cloudflare's gateway maps `workers-ai/v1/…`).
        if self.name == "workers-ai"
            && rest.starts_with("/v1/")
            && let Some(parent) = base.strip_suffix("/run")
        {
            base = parent.to_string();
        }
        let mut uri = String::with_capacity(base.len() + rest.len() + 16);
        uri.push_str(&base);
        uri.push_str(rest);
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

/// Built-in providers: real default base URLs and key conventions.
pub fn builtin_providers() -> BTreeMap<String, ProviderSpec> {
    use AuthHeader as A;
    let table: &[(&str, &str, AuthHeader)] = &[
        ("openai", "https://api.openai.com/v1", A::BEARER),
        ("anthropic", "https://api.anthropic.com", A::X_API_KEY),
        (
            "azure-openai",
            "https://{segment}.openai.azure.com/openai/deployments",
            A::API_KEY,
        ),
        (
            "workers-ai",
            "https://api.cloudflare.com/client/v4/accounts/{account}/ai/run",
            A::BEARER,
        ),
        (
            "huggingface",
            "https://api-inference.huggingface.co/models",
            A::BEARER,
        ),
        ("groq", "https://api.groq.com/openai/v1", A::BEARER),
        ("mistral", "https://api.mistral.ai/v1", A::BEARER),
        ("cohere", "https://api.cohere.com", A::BEARER),
        ("deepseek", "https://api.deepseek.com", A::BEARER),
        ("perplexity-ai", "https://api.perplexity.ai", A::BEARER),
        ("replicate", "https://api.replicate.com/v1", A::BEARER),
        ("openrouter", "https://openrouter.ai/api/v1", A::BEARER),
        ("grok", "https://api.x.ai/v1", A::BEARER),
        (
            "google-ai-studio",
            "https://generativelanguage.googleapis.com",
            A::GOOG,
        ),
        (
            "google-vertex-ai",
            "https://aiplatform.googleapis.com",
            A::BEARER,
        ),
        (
            "aws-bedrock",
            "https://{segment}.{segment}.amazonaws.com",
            A::BEARER,
        ),
        ("cerebras", "https://api.cerebras.ai/v1", A::BEARER),
        ("together", "https://api.together.xyz/v1", A::BEARER),
        (
            "fireworks",
            "https://api.fireworks.ai/inference/v1",
            A::BEARER,
        ),
        ("ollama", "http://127.0.0.1:11434", A::BEARER),
    ];
    table
        .iter()
        .map(|(name, url, auth)| {
            let mut spec = ProviderSpec::custom(name);
            spec.base_url = url.to_string();
            spec.auth_header = *auth;
            spec.compat_path = match *name {
                "openai" | "groq" | "mistral" | "deepseek" | "openrouter" | "perplexity-ai"
                | "grok" | "cerebras" | "together" | "fireworks" => {
                    Some("/chat/completions".into())
                }
                "google-ai-studio" => Some("/v1beta/openai/chat/completions".into()),
                "ollama" | "workers-ai" => Some("/v1/chat/completions".into()),
                _ => None,
            };
            spec.anthropic_messages = *name == "anthropic";
            spec.gemini_native = matches!(*name, "google-ai-studio" | "google-vertex-ai");
            spec.bedrock_converse = *name == "aws-bedrock";
            // Cohere's native v2 chat, unless `compat_path` names its OpenAI-compatible API.
            spec.cohere_native = *name == "cohere";
            // Mistral and Perplexity refuse fields they do not know (and send usage in their
            // last chunk by themselves); every other provider gets the usage request on its
            // OpenAI-style chat streams, so that token budgets see what a stream spent.
            spec.stream_usage = !matches!(*name, "mistral" | "perplexity-ai" | "cohere");
            (name.to_string(), spec)
        })
        .collect()
}

/// Validates a `base_url` from the config: http(s), a host, no query.
pub fn parse_base_url(text: &str) -> Result<String, String> {
    let trimmed = text.trim_end_matches('/');
    let probe = trimmed
        .replace("{account}", "account")
        .replace("{segment}", "segment");
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
    "x-amz-security-token",
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
        // Its OpenAI-compatible API is beside `run`.
        let uri = p
            .upstream_uri("abc123", "/v1/chat/completions", None)
            .unwrap();
        assert_eq!(
            uri.to_string(),
            "https://api.cloudflare.com/client/v4/accounts/abc123/ai/v1/chat/completions"
        );
    }

    #[test]
    fn segments_fill_azure_and_bedrock_hosts() {
        let p = builtin_providers();
        let azure = p["azure-openai"]
            .upstream_uri(
                "a",
                "/my-resource/gpt4o/chat/completions",
                Some("api-version=2024-06-01"),
            )
            .unwrap();
        assert_eq!(
            azure.to_string(),
            "https://my-resource.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2024-06-01"
        );
        let bedrock = p["aws-bedrock"]
            .upstream_uri("a", "/bedrock-runtime/us-east-1/model/x/invoke", None)
            .unwrap();
        assert_eq!(
            bedrock.to_string(),
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/x/invoke"
        );
        assert!(p["azure-openai"].upstream_uri("a", "", None).is_err());
        assert!(
            p["aws-bedrock"]
                .upstream_uri("a", "/evil.com@x/y", None)
                .is_err()
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
