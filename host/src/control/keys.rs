//! Virtual keys and teams as data: what an admin may set on each (their specs), how a spec is
//! checked, and the secret of a key (`aigw-` and 256 random bits, kept only as its SHA-256).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// What every virtual key starts with.
pub const KEY_PREFIX: &str = "aigw-";

/// How long a budget's spend accumulates before it starts again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// A UTC day.
    Day,
    /// A UTC calendar month.
    Month,
    /// Never resets.
    Total,
}

/// A dollar budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// USD.
    pub amount: f64,
    /// When spend starts again.
    pub period: Period,
}

/// The gateways a key may use: `"*"` or a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum GatewayScope {
    /// `"*"`.
    All(String),
    /// Named gateways.
    Only(Vec<String>),
}

impl GatewayScope {
    /// Whether the key may use `gateway`.
    pub fn allows(&self, gateway: &str) -> bool {
        match self {
            GatewayScope::All(_) => true,
            GatewayScope::Only(list) => list.iter().any(|g| g == gateway),
        }
    }
}

/// What a key allows: set on creation, changed with PATCH.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    /// A name for people (the app or person using it).
    pub name: String,
    /// Gateways it may use.
    pub gateways: GatewayScope,
    /// The team whose shared budget and limits also apply (team id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// Model globs it may call (`gpt-4o*`); absent: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    /// Providers it may call; absent: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub providers: Option<Vec<String>>,
    /// Dollar budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_usd: Option<Budget>,
    /// Requests per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u64>,
    /// Tokens (input and output) per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
    /// Refused from this time on (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
    /// Flat metadata recorded with every request it makes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// What a team allows its keys together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamSpec {
    /// A name for people.
    pub name: String,
    /// Model globs its keys may call; absent: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    /// Providers its keys may call; absent: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub providers: Option<Vec<String>>,
    /// Dollar budget shared by its keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_usd: Option<Budget>,
    /// Requests per minute shared by its keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u64>,
    /// Tokens per minute shared by its keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
    /// Flat metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// A client mistake in a spec: the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// The field (`budget_usd.amount`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn bad(field: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError {
        field: field.into(),
        message: message.into(),
    }
}

/// Reads a spec from JSON; the error names the field (`budget_usd.period`).
pub fn parse_spec<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, SpecError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde's own message for an unknown field names it; keep the path for the rest.
        let field = if path == "." {
            "body".to_string()
        } else {
            path
        };
        bad(field, inner)
    })
}

/// A spec with `patch`'s fields set (null clears an optional one).
pub fn patched<T: Serialize + serde::de::DeserializeOwned>(
    current: &T,
    patch: &Map<String, Value>,
) -> Result<T, SpecError> {
    let mut value = serde_json::to_value(current).map_err(|e| bad("body", e.to_string()))?;
    let Some(fields) = value.as_object_mut() else {
        return Err(bad("body", "expected a JSON object"));
    };
    for (k, v) in patch {
        if v.is_null() {
            fields.remove(k);
        } else {
            fields.insert(k.clone(), v.clone());
        }
    }
    parse_spec(value)
}

fn check_name(name: &str) -> Result<(), SpecError> {
    if name.trim().is_empty() || name.chars().count() > 128 {
        return Err(bad("name", "expected 1 to 128 characters"));
    }
    Ok(())
}

fn check_common(
    models: &Option<Vec<String>>,
    providers: &Option<Vec<String>>,
    budget: &Option<Budget>,
    rpm: Option<u64>,
    tpm: Option<u64>,
    metadata: &Option<Map<String, Value>>,
    known_providers: &[String],
) -> Result<(), SpecError> {
    if let Some(models) = models {
        if let Some(m) = models.iter().find(|m| m.is_empty() || m.len() > 256) {
            return Err(bad(
                "models",
                format!("'{m}': expected 1 to 256 characters"),
            ));
        }
        for m in models {
            glob::Pattern::new(m)
                .map_err(|e| bad("models", format!("'{m}': not a glob pattern: {e}")))?;
        }
    }
    if let Some(providers) = providers
        && let Some(p) = providers.iter().find(|p| !known_providers.contains(p))
    {
        return Err(bad(
            "providers",
            format!(
                "unknown provider '{p}' (known: {})",
                known_providers.join(", ")
            ),
        ));
    }
    if let Some(b) = budget
        && !(b.amount.is_finite() && b.amount > 0.0 && b.amount < 1e9)
    {
        return Err(bad("budget_usd.amount", "expected USD above 0"));
    }
    if rpm == Some(0) {
        return Err(bad("requests_per_minute", "expected at least 1"));
    }
    if tpm == Some(0) {
        return Err(bad("tokens_per_minute", "expected at least 1"));
    }
    if let Some(meta) = metadata {
        if meta.len() > 32 {
            return Err(bad("metadata", "at most 32 fields"));
        }
        if let Some((k, _)) = meta.iter().find(|(k, v)| {
            k.is_empty() || k.len() > 64 || !(v.is_string() || v.is_number() || v.is_boolean())
        }) {
            return Err(bad(
                format!("metadata.{k}"),
                "expected a key of 1 to 64 characters and a string, number or boolean",
            ));
        }
    }
    Ok(())
}

impl KeySpec {
    /// Checks the spec against the configured gateways and providers and the known teams.
    pub fn check(
        &self,
        gateways: &[String],
        providers: &[String],
        team_exists: impl Fn(&str) -> bool,
    ) -> Result<(), SpecError> {
        check_name(&self.name)?;
        match &self.gateways {
            GatewayScope::All(s) if s == "*" => {}
            GatewayScope::All(s) => {
                return Err(bad(
                    "gateways",
                    format!("'{s}': expected \"*\" or a list of gateway names"),
                ));
            }
            GatewayScope::Only(list) => {
                if list.is_empty() {
                    return Err(bad("gateways", "expected \"*\" or at least one gateway"));
                }
                if let Some(g) = list.iter().find(|g| !gateways.contains(g)) {
                    return Err(bad(
                        "gateways",
                        format!("unknown gateway '{g}' (known: {})", gateways.join(", ")),
                    ));
                }
            }
        }
        if let Some(t) = &self.team
            && !team_exists(t)
        {
            return Err(bad("team", format!("no team '{t}'")));
        }
        check_common(
            &self.models,
            &self.providers,
            &self.budget_usd,
            self.requests_per_minute,
            self.tokens_per_minute,
            &self.metadata,
            providers,
        )
    }
}

impl TeamSpec {
    /// Checks the spec against the configured providers.
    pub fn check(&self, providers: &[String]) -> Result<(), SpecError> {
        check_name(&self.name)?;
        check_common(
            &self.models,
            &self.providers,
            &self.budget_usd,
            self.requests_per_minute,
            self.tokens_per_minute,
            &self.metadata,
            providers,
        )
    }
}

/// A new key secret: `aigw-` and 32 random bytes, base64url.
pub fn new_secret() -> Result<String, String> {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for a key: {e}"))?;
    Ok(format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// The stored form of a secret: its SHA-256.
pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The part of a secret shown in listings (`aigw-AbCd…`), enough to tell keys apart.
pub fn display_prefix(secret: &str) -> String {
    secret.chars().take(KEY_PREFIX.len() + 4).collect()
}

/// Whether `model` matches a glob (`*`, `?`, `[…]`); a pattern that does not parse matches
/// nothing (specs are checked on the way in).
pub fn glob_match(pattern: &str, model: &str) -> bool {
    glob::Pattern::new(pattern).is_ok_and(|p| p.matches(model))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn gateways() -> Vec<String> {
        vec!["gw".into(), "other".into()]
    }

    fn providers() -> Vec<String> {
        vec!["openai".into(), "anthropic".into()]
    }

    #[test]
    fn specs_are_checked_naming_the_field() {
        let ok: KeySpec = parse_spec(json!({"name": "app", "gateways": "*",
            "budget_usd": {"amount": 1.5, "period": "day"}, "models": ["gpt-4o*"]}))
        .unwrap();
        assert!(ok.check(&gateways(), &providers(), |_| false).is_ok());
        let cases = [
            (json!({"name": "a"}), "gateways"),
            (json!({"name": "a", "gateways": "*", "colour": 1}), "colour"),
            (
                json!({"name": "a", "gateways": "*", "budget_usd": {"amount": 1, "period": "week"}}),
                "budget_usd.period",
            ),
            (
                json!({"name": "a", "gateways": "*", "requests_per_minute": -1}),
                "requests_per_minute",
            ),
        ];
        for (body, field) in cases {
            let e = parse_spec::<KeySpec>(body.clone()).unwrap_err();
            assert!(e.to_string().contains(field), "{body}: {e}");
        }
        let checked = [
            (json!({"name": "", "gateways": "*"}), "name"),
            (
                json!({"name": "a", "gateways": ["nope"]}),
                "unknown gateway 'nope'",
            ),
            (json!({"name": "a", "gateways": "all"}), "gateways"),
            (
                json!({"name": "a", "gateways": "*", "providers": ["x"]}),
                "unknown provider 'x'",
            ),
            (
                json!({"name": "a", "gateways": "*", "budget_usd": {"amount": 0, "period": "day"}}),
                "budget_usd.amount",
            ),
            (
                json!({"name": "a", "gateways": "*", "team": "t1"}),
                "no team 't1'",
            ),
            (
                json!({"name": "a", "gateways": "*", "metadata": {"x": {"y": 1}}}),
                "metadata.x",
            ),
        ];
        for (body, text) in checked {
            let spec: KeySpec = parse_spec(body.clone()).unwrap();
            let e = spec
                .check(&gateways(), &providers(), |_| false)
                .unwrap_err();
            assert!(e.to_string().contains(text), "{body}: {e}");
        }
    }

    #[test]
    fn a_patch_sets_and_clears_fields() {
        let spec: KeySpec =
            parse_spec(json!({"name": "a", "gateways": "*", "requests_per_minute": 5})).unwrap();
        let p = json!({"requests_per_minute": null, "models": ["claude-*"]});
        let next = patched(&spec, p.as_object().unwrap()).unwrap();
        assert_eq!(next.requests_per_minute, None);
        assert_eq!(next.models, Some(vec!["claude-*".to_string()]));
        let p = json!({"name": null});
        assert!(
            patched(&spec, p.as_object().unwrap())
                .unwrap_err()
                .to_string()
                .contains("name")
        );
    }

    #[test]
    fn secrets_are_long_random_and_hashed() {
        let (a, b) = (new_secret().unwrap(), new_secret().unwrap());
        assert!(
            a.starts_with(KEY_PREFIX) && a.len() == KEY_PREFIX.len() + 43,
            "{a}"
        );
        assert_ne!(a, b);
        assert_ne!(hash_secret(&a), hash_secret(&b));
        assert_eq!(display_prefix(&a).len(), KEY_PREFIX.len() + 4);
    }

    #[test]
    fn globs() {
        for (p, m, want) in [
            ("*", "anything", true),
            ("gpt-4o*", "gpt-4o-mini", true),
            ("gpt-4o*", "gpt-4", false),
            ("claude-?-haiku", "claude-3-haiku", true),
            ("*mini", "o4-mini", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
        ] {
            assert_eq!(glob_match(p, m), want, "{p} {m}");
        }
    }
}
