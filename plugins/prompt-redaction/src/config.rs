//! The filter's table, checked: mode, built-in entities, custom patterns and
//! the body limit. Errors name the key (`custom[0].pattern: …`). Compiling
//! the patterns is `detect`'s job; this module only reads and checks shapes.

use serde_json::{Map, Value};

/// The largest request body the filter is handed (its buffered limit).
pub const BUFFER_LIMIT: usize = 4 * 1024 * 1024;
/// Longest custom entity name.
const MAX_NAME: usize = 32;
/// Most custom patterns.
const MAX_CUSTOM: usize = 32;

/// What the filter does with a request that contains findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Replace each finding with a placeholder, one way.
    Mask,
    /// Replace, then put the originals back into the response.
    Restore,
    /// Refuse the request with a 400 naming the entity types found.
    Block,
    /// Only report what was found (log metadata, the `cf-aig-dlp` header); change nothing.
    Flag,
}

/// What the filter does with answers that contain findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseCheck {
    /// Answers are not scanned.
    Off,
    /// Report findings (log metadata; the `cf-aig-dlp` header when the head is still held).
    Flag,
    /// Refuse the answer: a 400 (Cloudflare's code 2030), or an error event that ends a stream.
    Block,
}

/// A built-in entity type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Builtin {
    /// E-mail addresses.
    Email,
    /// International and US phone numbers.
    Phone,
    /// Payment card numbers (Luhn-checked).
    CreditCard,
    /// IBANs (length and mod-97 checked).
    Iban,
    /// IPv4 and IPv6 addresses.
    IpAddress,
    /// API keys, tokens, private keys and other high-entropy strings.
    Secret,
}

impl Builtin {
    /// Every built-in type, in the order messages list them.
    pub const ALL: [Builtin; 6] = [
        Builtin::Email,
        Builtin::Phone,
        Builtin::CreditCard,
        Builtin::Iban,
        Builtin::IpAddress,
        Builtin::Secret,
    ];

    /// The name used in config, annotations and block messages.
    pub fn name(self) -> &'static str {
        match self {
            Builtin::Email => "email",
            Builtin::Phone => "phone",
            Builtin::CreditCard => "credit_card",
            Builtin::Iban => "iban",
            Builtin::IpAddress => "ip_address",
            Builtin::Secret => "secret",
        }
    }

    fn parse(name: &str) -> Option<Builtin> {
        Builtin::ALL.into_iter().find(|b| b.name() == name)
    }
}

/// A user pattern: `{ name = "employee_id", pattern = "EMP-[0-9]{6}" }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomSpec {
    /// Lower-case name (`[a-z][a-z0-9_]*`), used in annotations and messages.
    pub name: String,
    /// The regular expression (checked when compiled).
    pub pattern: String,
}

/// The checked table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// What to do with findings.
    pub mode: Mode,
    /// Built-in types to detect.
    pub entities: Vec<Builtin>,
    /// User patterns, in table order.
    pub custom: Vec<CustomSpec>,
    /// Larger request bodies are refused (413) rather than passed unchecked.
    pub max_body_bytes: usize,
    /// Whether and how answers are scanned.
    pub response: ResponseCheck,
    /// Characters of streamed answer text per window (`response = "block"`).
    pub window_chars: usize,
}

const KNOWN: &[&str] = &[
    "mode",
    "entities",
    "custom",
    "max_body_bytes",
    "response",
    "window_chars",
];

fn unknown_key(obj: &Map<String, Value>, known: &[&str], at: &str) -> Result<(), String> {
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(format!(
            "{at}unknown key '{k}' (known: {})",
            known.join(", ")
        )),
        None => Ok(()),
    }
}

/// Reads and checks the table (as JSON).
pub fn parse(config: &Value) -> Result<Config, String> {
    let obj = config.as_object().ok_or("expected a table")?;
    unknown_key(obj, KNOWN, "")?;
    let mode = match obj.get("mode") {
        None => Mode::Mask,
        Some(v) => match v.as_str() {
            Some("mask") => Mode::Mask,
            Some("restore") => Mode::Restore,
            Some("block") => Mode::Block,
            Some("flag") => Mode::Flag,
            _ => {
                return Err(format!(
                    "mode: expected \"mask\", \"restore\", \"block\" or \"flag\", got {v}"
                ));
            }
        },
    };
    let response = match obj.get("response") {
        None => ResponseCheck::Off,
        Some(v) => match v.as_str() {
            Some("off") => ResponseCheck::Off,
            Some("flag") => ResponseCheck::Flag,
            Some("block") => ResponseCheck::Block,
            _ => {
                return Err(format!(
                    "response: expected \"off\", \"flag\" or \"block\", got {v}"
                ));
            }
        },
    };
    if mode == Mode::Restore && response == ResponseCheck::Block {
        return Err("response: \"block\" would refuse the values restore puts back into answers; use mode = \"mask\" or response = \"flag\"".into());
    }
    let window_chars = match obj.get("window_chars") {
        None => 800,
        Some(v) => v
            .as_u64()
            .filter(|n| (50..=100_000).contains(n))
            .ok_or(format!(
                "window_chars: expected an integer from 50 to 100000, got {v}"
            ))? as usize,
    };
    let entities = match obj.get("entities") {
        None => Builtin::ALL.to_vec(),
        Some(v) => {
            let list = v
                .as_array()
                .ok_or("entities: expected a list of entity names")?;
            let mut out: Vec<Builtin> = Vec::new();
            for (i, item) in list.iter().enumerate() {
                let b = item.as_str().and_then(Builtin::parse).ok_or_else(|| {
                    let names: Vec<_> = Builtin::ALL.iter().map(|b| b.name()).collect();
                    format!(
                        "entities[{i}]: expected one of {}, got {item}",
                        names.join(", ")
                    )
                })?;
                if !out.contains(&b) {
                    out.push(b);
                }
            }
            out.sort();
            out
        }
    };
    let custom = match obj.get("custom") {
        None => Vec::new(),
        Some(v) => parse_custom(v)?,
    };
    if entities.is_empty() && custom.is_empty() {
        return Err(
            "entities: nothing to detect (the list is empty and there is no custom pattern)".into(),
        );
    }
    let max_body_bytes = match obj.get("max_body_bytes") {
        None => BUFFER_LIMIT,
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=BUFFER_LIMIT as u64).contains(n))
            .ok_or(format!(
                "max_body_bytes: expected an integer from 1 to {BUFFER_LIMIT}, got {v}"
            ))? as usize,
    };
    Ok(Config {
        mode,
        entities,
        custom,
        max_body_bytes,
        response,
        window_chars,
    })
}

fn parse_custom(v: &Value) -> Result<Vec<CustomSpec>, String> {
    let list = v
        .as_array()
        .ok_or("custom: expected a list of { name, pattern } tables")?;
    if list.len() > MAX_CUSTOM {
        return Err(format!("custom: at most {MAX_CUSTOM} patterns"));
    }
    let mut out: Vec<CustomSpec> = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let at = format!("custom[{i}]");
        let obj = item
            .as_object()
            .ok_or(format!("{at}: expected a {{ name, pattern }} table"))?;
        unknown_key(obj, &["name", "pattern"], &format!("{at}: "))?;
        let name = obj
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| valid_name(n))
            .ok_or(format!(
                "{at}.name: expected a lower-case name of 1 to {MAX_NAME} characters \
                 (a-z, 0-9, _; starting with a letter)"
            ))?;
        if Builtin::parse(name).is_some() {
            return Err(format!("{at}.name: '{name}' is a built-in entity"));
        }
        if out.iter().any(|c| c.name == name) {
            return Err(format!("{at}.name: '{name}' is used twice"));
        }
        let pattern = obj
            .get("pattern")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .ok_or(format!(
                "{at}.pattern: expected a non-empty regular expression"
            ))?;
        out.push(CustomSpec {
            name: name.to_string(),
            pattern: pattern.to_string(),
        });
    }
    Ok(out)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= MAX_NAME
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(v: Value) -> String {
        parse(&v).unwrap_err()
    }

    #[test]
    fn defaults() {
        let c = parse(&json!({})).unwrap();
        assert_eq!(c.mode, Mode::Mask);
        assert_eq!(c.entities, Builtin::ALL.to_vec());
        assert!(c.custom.is_empty());
        assert_eq!(c.max_body_bytes, BUFFER_LIMIT);
    }

    #[test]
    fn full_table() {
        let c = parse(&json!({"mode": "restore", "entities": ["secret", "email", "email"],
            "custom": [{"name": "employee_id", "pattern": "EMP-[0-9]{6}"}], "max_body_bytes": 1000}))
        .unwrap();
        assert_eq!(c.mode, Mode::Restore);
        assert_eq!(c.entities, vec![Builtin::Email, Builtin::Secret]);
        assert_eq!(c.custom[0].name, "employee_id");
        assert_eq!(c.max_body_bytes, 1000);
    }

    #[test]
    fn errors_name_the_key() {
        assert!(err(json!({"modes": "mask"})).contains("'modes'"));
        assert!(err(json!({"mode": "erase"})).starts_with("mode:"));
        assert!(err(json!({"response": "mask"})).starts_with("response:"));
        assert!(err(json!({"mode": "restore", "response": "block"})).starts_with("response:"));
        assert!(err(json!({"window_chars": 10})).starts_with("window_chars:"));
        assert!(err(json!({"entities": "email"})).starts_with("entities:"));
        assert!(err(json!({"entities": ["email", "ssn"]})).starts_with("entities[1]:"));
        assert!(err(json!({"entities": []})).starts_with("entities:"));
        assert!(err(json!({"custom": {}})).starts_with("custom:"));
        assert!(err(json!({"custom": [{"name": "x"}]})).starts_with("custom[0].pattern:"));
        assert!(err(json!({"custom": [{"pattern": "x"}]})).starts_with("custom[0].name:"));
        assert!(
            err(json!({"custom": [{"name": "Bad Name", "pattern": "x"}]}))
                .starts_with("custom[0].name:")
        );
        assert!(
            err(json!({"custom": [{"name": "email", "pattern": "x"}]}))
                .starts_with("custom[0].name:")
        );
        assert!(
            err(json!({"custom": [{"name": "a", "pattern": "x"}, {"name": "a", "pattern": "y"}]}))
                .starts_with("custom[1].name:")
        );
        assert!(
            err(json!({"custom": [{"name": "a", "pattern": "x", "flags": "i"}]}))
                .starts_with("custom[0]: unknown key 'flags'")
        );
        assert!(err(json!({"max_body_bytes": 0})).starts_with("max_body_bytes:"));
        assert!(err(json!({"max_body_bytes": 5_000_000})).starts_with("max_body_bytes:"));
        assert_eq!(err(json!([])), "expected a table");
    }

    #[test]
    fn custom_alone_is_enough() {
        let c = parse(&json!({"entities": [], "custom": [{"name": "a", "pattern": "x"}]})).unwrap();
        assert!(c.entities.is_empty());
    }
}
