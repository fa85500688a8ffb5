//! Token prices (USD per million tokens) and the cost of a request. Defaults
//! cover common OpenAI, Anthropic, Groq, Mistral and DeepSeek models; the
//! config's `[[prices]]` entries add to or override them. A model is matched
//! exactly, else by the longest listed prefix (dated snapshots such as
//! `gpt-4o-2024-08-06` take the price of `gpt-4o`). Unknown model: no cost,
//! never a guess.

/// One price entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Price {
    /// Provider name.
    pub provider: String,
    /// Model name or prefix.
    pub model: String,
    /// USD per million input tokens.
    pub input_per_million: f64,
    /// USD per million output tokens.
    pub output_per_million: f64,
}

/// The price table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriceTable {
    entries: Vec<Price>,
}

const DEFAULTS: &[(&str, &str, f64, f64)] = &[
    ("openai", "gpt-4o", 2.5, 10.0),
    ("openai", "gpt-4o-mini", 0.15, 0.6),
    ("openai", "gpt-4.1", 2.0, 8.0),
    ("openai", "gpt-4.1-mini", 0.4, 1.6),
    ("openai", "gpt-4.1-nano", 0.1, 0.4),
    ("openai", "gpt-4-turbo", 10.0, 30.0),
    ("openai", "gpt-3.5-turbo", 0.5, 1.5),
    ("openai", "o1", 15.0, 60.0),
    ("openai", "o1-mini", 1.1, 4.4),
    ("openai", "o3", 2.0, 8.0),
    ("openai", "o3-mini", 1.1, 4.4),
    ("openai", "o4-mini", 1.1, 4.4),
    ("anthropic", "claude-3-haiku", 0.25, 1.25),
    ("anthropic", "claude-3-5-haiku", 0.8, 4.0),
    ("anthropic", "claude-3-5-sonnet", 3.0, 15.0),
    ("anthropic", "claude-3-7-sonnet", 3.0, 15.0),
    ("anthropic", "claude-sonnet-4", 3.0, 15.0),
    ("anthropic", "claude-3-opus", 15.0, 75.0),
    ("anthropic", "claude-opus-4", 15.0, 75.0),
    ("groq", "llama-3.1-8b-instant", 0.05, 0.08),
    ("groq", "llama-3.3-70b-versatile", 0.59, 0.79),
    ("mistral", "mistral-large", 2.0, 6.0),
    ("mistral", "mistral-small", 0.2, 0.6),
    ("deepseek", "deepseek-chat", 0.27, 1.1),
    ("deepseek", "deepseek-reasoner", 0.55, 2.19),
];

impl PriceTable {
    /// The default prices.
    pub fn with_defaults() -> Self {
        PriceTable {
            entries: DEFAULTS
                .iter()
                .map(|(p, m, i, o)| Price {
                    provider: p.to_string(),
                    model: m.to_string(),
                    input_per_million: *i,
                    output_per_million: *o,
                })
                .collect(),
        }
    }

    /// Adds or replaces an entry.
    pub fn set(&mut self, price: Price) {
        self.entries
            .retain(|e| !(e.provider == price.provider && e.model == price.model));
        self.entries.push(price);
    }

    /// The price of `model` at `provider`, if listed.
    pub fn find(&self, provider: &str, model: &str) -> Option<&Price> {
        let of_provider = || self.entries.iter().filter(move |e| e.provider == provider);
        of_provider().find(|e| e.model == model).or_else(|| {
            of_provider()
                .filter(|e| model.starts_with(&e.model))
                .max_by_key(|e| e.model.len())
        })
    }

    /// Cost in USD, when the model is priced and both token counts are known.
    pub fn cost(
        &self,
        provider: &str,
        model: Option<&str>,
        tokens_in: Option<u32>,
        tokens_out: Option<u32>,
    ) -> Option<f64> {
        let price = self.find(provider, model?)?;
        let (i, o) = (tokens_in? as f64, tokens_out? as f64);
        Some((i * price.input_per_million + o * price.output_per_million) / 1_000_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_then_longest_prefix() {
        let t = PriceTable::with_defaults();
        assert_eq!(
            t.find("openai", "gpt-4o-mini").unwrap().input_per_million,
            0.15
        );
        assert_eq!(
            t.find("openai", "gpt-4o-2024-08-06")
                .unwrap()
                .input_per_million,
            2.5
        );
        assert_eq!(
            t.find("openai", "gpt-4o-mini-2024-07-18")
                .unwrap()
                .input_per_million,
            0.15
        );
        assert!(t.find("openai", "mystery-model").is_none());
        assert!(t.find("groq", "gpt-4o").is_none());
    }

    #[test]
    fn cost_needs_price_and_tokens() {
        let mut t = PriceTable::with_defaults();
        let c = t
            .cost("openai", Some("gpt-4o"), Some(1_000_000), Some(500_000))
            .unwrap();
        assert!((c - 7.5).abs() < 1e-9);
        assert_eq!(t.cost("openai", Some("unknown"), Some(1), Some(1)), None);
        assert_eq!(t.cost("openai", Some("gpt-4o"), None, Some(1)), None);
        t.set(Price {
            provider: "openai".into(),
            model: "gpt-4o".into(),
            input_per_million: 1.0,
            output_per_million: 1.0,
        });
        assert!(
            (t.cost("openai", Some("gpt-4o"), Some(1_000_000), Some(0))
                .unwrap()
                - 1.0)
                .abs()
                < 1e-9
        );
    }
}
