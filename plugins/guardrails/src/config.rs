//! The filter's table, checked. Errors name the key (`categories.hate: …`).

use serde::Deserialize;
use std::collections::BTreeMap;

/// Largest request body (and non-streamed answer) the filter reads.
pub const BUFFER_LIMIT: usize = 4 * 1024 * 1024;
/// OpenAI's moderation endpoint, the default for `openai-moderation`.
const OPENAI_MODERATIONS: &str = "https://api.openai.com/v1/moderations";

/// What happens to a text one of whose categories is flagged. Ordered: the strongest
/// action among a text's flagged categories applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Nothing.
    Ignore,
    /// Logged (the log entry's metadata) and, for prompts, named in a response header.
    Flag,
    /// Refused: 424 before any provider is called (prompts), or the answer ended with an
    /// error (answers).
    Block,
}

impl Action {
    /// The name used in annotations.
    pub fn name(self) -> &'static str {
        match self {
            Action::Ignore => "ignore",
            Action::Flag => "flag",
            Action::Block => "block",
        }
    }

    /// The name used in counters (`prompt_flagged`, `response_blocked`, …).
    pub fn past(self) -> &'static str {
        match self {
            Action::Ignore => "ignored",
            Action::Flag => "flagged",
            Action::Block => "blocked",
        }
    }
}

/// Which text is classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The request's messages, before they go upstream.
    Prompt,
    /// The answer, whole or window by window as it streams.
    Response,
}

impl Direction {
    /// `prompt` or `response`, as in annotations and counters.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Prompt => "prompt",
            Direction::Response => "response",
        }
    }
}

/// Which classifier decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classifier {
    /// A service with OpenAI's `/moderations` shape.
    OpenAiModeration {
        /// The endpoint URL.
        endpoint: String,
        /// Sent as a bearer token.
        api_key: Option<String>,
        /// `omni-moderation-latest` unless set.
        model: String,
    },
    /// A Llama-Guard-style model behind an OpenAI-compatible chat completions endpoint: it
    /// answers `safe`, or `unsafe` and a line of categories (`S1,S10`).
    LlamaGuard {
        /// The chat completions URL.
        endpoint: String,
        /// Sent as a bearer token.
        api_key: Option<String>,
        /// The model name at that endpoint.
        model: String,
    },
    /// The filter's own prompt-injection patterns, no network.
    Local,
}

/// An override in `categories`: one action for both directions, or one per direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(
    untagged,
    expecting = "\"flag\", \"block\", \"ignore\", or { prompt = ..., response = ... }"
)]
enum Override {
    Both(Action),
    Each(PerDirection),
}

/// `{ prompt = "block", response = "flag" }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct PerDirection {
    prompt: Option<Action>,
    response: Option<Action>,
}

/// The table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default = "default_classifier")]
    classifier: String,
    endpoint: Option<String>,
    api_key: Option<String>,
    model: Option<String>,
    #[serde(default = "block")]
    prompt: Action,
    #[serde(default = "block")]
    response: Action,
    #[serde(default)]
    categories: BTreeMap<String, Override>,
    #[serde(default = "default_window")]
    window_chars: usize,
    #[serde(default = "default_max_body")]
    max_body_bytes: usize,
}

fn default_classifier() -> String {
    "local".into()
}
fn block() -> Action {
    Action::Block
}
fn default_window() -> usize {
    800
}
fn default_max_body() -> usize {
    BUFFER_LIMIT
}

/// The checked table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub classifier: Classifier,
    /// Default action on a flagged prompt.
    pub prompt: Action,
    /// Default action on a flagged answer.
    pub response: Action,
    /// Per-category overrides (prompt, response), by the classifier's category name.
    pub categories: BTreeMap<String, (Option<Action>, Option<Action>)>,
    /// Characters of answer text per stream window.
    pub window_chars: usize,
    /// Largest body read whole.
    pub max_body_bytes: usize,
}

/// Llama Guard 3's hazard categories: code and the name `categories` may also use.
pub const LLAMA_GUARD: [(&str, &str); 14] = [
    ("S1", "violent_crimes"),
    ("S2", "non_violent_crimes"),
    ("S3", "sex_related_crimes"),
    ("S4", "child_sexual_exploitation"),
    ("S5", "defamation"),
    ("S6", "specialized_advice"),
    ("S7", "privacy"),
    ("S8", "intellectual_property"),
    ("S9", "indiscriminate_weapons"),
    ("S10", "hate"),
    ("S11", "suicide_self_harm"),
    ("S12", "sexual_content"),
    ("S13", "elections"),
    ("S14", "code_interpreter_abuse"),
];

/// OpenAI's moderation categories.
pub const OPENAI_CATEGORIES: [&str; 13] = [
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
];

/// The local classifier's one category.
pub const PROMPT_INJECTION: &str = "prompt_injection";

fn url(key: &str, value: &str) -> Result<String, String> {
    let ok = (value.starts_with("https://") || value.starts_with("http://"))
        && value
            .split("://")
            .nth(1)
            .is_some_and(|rest| !rest.is_empty());
    if ok {
        Ok(value.to_string())
    } else {
        Err(format!(
            "{key}: expected an http or https URL, got \"{value}\""
        ))
    }
}

/// Reads and checks the table.
pub fn parse(config: serde_json::Value) -> Result<Config, String> {
    let raw: Raw = aigw_plugin_sdk::config::parse(config)?;
    let classifier = match raw.classifier.as_str() {
        "openai-moderation" => Classifier::OpenAiModeration {
            endpoint: url(
                "endpoint",
                raw.endpoint.as_deref().unwrap_or(OPENAI_MODERATIONS),
            )?,
            api_key: raw.api_key,
            model: raw
                .model
                .unwrap_or_else(|| "omni-moderation-latest".into()),
        },
        "llama-guard" => Classifier::LlamaGuard {
            endpoint: url(
                "endpoint",
                raw.endpoint.as_deref().ok_or(
                    "endpoint: llama-guard needs the chat completions URL of the model (e.g. \"https://api.groq.com/openai/v1/chat/completions\")",
                )?,
            )?,
            api_key: raw.api_key,
            model: raw
                .model
                .ok_or("model: llama-guard needs the model's name at the endpoint")?,
        },
        "local" => {
            for key in ["endpoint", "api_key", "model"] {
                let set = match key {
                    "endpoint" => raw.endpoint.is_some(),
                    "api_key" => raw.api_key.is_some(),
                    _ => raw.model.is_some(),
                };
                if set {
                    return Err(format!(
                        "{key}: the local classifier calls no service; remove it or set classifier"
                    ));
                }
            }
            Classifier::Local
        }
        other => {
            return Err(format!(
                "classifier: expected \"openai-moderation\", \"llama-guard\" or \"local\", got \"{other}\""
            ));
        }
    };
    let mut categories = BTreeMap::new();
    for (name, o) in raw.categories {
        let key = canonical_category(&classifier, &name).ok_or_else(|| {
            format!(
                "categories.{name}: not a category of this classifier (known: {})",
                known_categories(&classifier).join(", ")
            )
        })?;
        let pair = match o {
            Override::Both(a) => (Some(a), Some(a)),
            Override::Each(PerDirection { prompt, response }) => (prompt, response),
        };
        categories.insert(key, pair);
    }
    if !(50..=100_000).contains(&raw.window_chars) {
        return Err(format!(
            "window_chars: expected 50 to 100000, got {}",
            raw.window_chars
        ));
    }
    if raw.max_body_bytes == 0 || raw.max_body_bytes > BUFFER_LIMIT {
        return Err(format!(
            "max_body_bytes: expected 1 to {BUFFER_LIMIT}, got {}",
            raw.max_body_bytes
        ));
    }
    Ok(Config {
        classifier,
        prompt: raw.prompt,
        response: raw.response,
        categories,
        window_chars: raw.window_chars,
        max_body_bytes: raw.max_body_bytes,
    })
}

/// The categories a classifier reports.
fn known_categories(c: &Classifier) -> Vec<String> {
    match c {
        Classifier::OpenAiModeration { .. } => {
            OPENAI_CATEGORIES.iter().map(|s| s.to_string()).collect()
        }
        Classifier::LlamaGuard { .. } => LLAMA_GUARD
            .iter()
            .map(|(code, name)| format!("{code} ({name})"))
            .collect(),
        Classifier::Local => vec![PROMPT_INJECTION.to_string()],
    }
}

/// The name a classifier reports for `name` (Llama Guard: the code, also from its name).
fn canonical_category(c: &Classifier, name: &str) -> Option<String> {
    match c {
        Classifier::OpenAiModeration { .. } => {
            OPENAI_CATEGORIES.contains(&name).then(|| name.to_string())
        }
        Classifier::LlamaGuard { .. } => LLAMA_GUARD
            .iter()
            .find(|(code, long)| code.eq_ignore_ascii_case(name) || *long == name)
            .map(|(code, _)| code.to_string()),
        // Cloudflare's code for prompt injection is P1.
        Classifier::Local => (name == PROMPT_INJECTION || name.eq_ignore_ascii_case("P1"))
            .then(|| PROMPT_INJECTION.to_string()),
    }
}

impl Config {
    /// The action for a flagged `category` in `direction`.
    pub fn action(&self, category: &str, direction: Direction) -> Action {
        let (p, r) = self
            .categories
            .get(category)
            .copied()
            .unwrap_or((None, None));
        match direction {
            Direction::Prompt => p.unwrap_or(self.prompt),
            Direction::Response => r.unwrap_or(self.response),
        }
    }

    /// Whether anything in `direction` can be blocked (a classifier failure then refuses under
    /// `on_error = "closed"`; with flags only, the text passes unclassified, as Cloudflare does).
    pub fn can_block(&self, direction: Direction) -> bool {
        let default = match direction {
            Direction::Prompt => self.prompt,
            Direction::Response => self.response,
        };
        default == Action::Block
            || self.categories.values().any(|(p, r)| {
                let a = match direction {
                    Direction::Prompt => p,
                    Direction::Response => r,
                };
                *a == Some(Action::Block)
            })
    }

    /// Whether anything in `direction` can be flagged or blocked (else it is not classified).
    pub fn active(&self, direction: Direction) -> bool {
        let default = match direction {
            Direction::Prompt => self.prompt,
            Direction::Response => self.response,
        };
        default != Action::Ignore
            || self.categories.values().any(|(p, r)| {
                let a = match direction {
                    Direction::Prompt => p,
                    Direction::Response => r,
                };
                a.is_some_and(|a| a != Action::Ignore)
            })
    }
}
