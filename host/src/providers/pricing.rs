//! Token prices (USD per million tokens) and the cost of a request. Defaults
//! cover common OpenAI, Anthropic, Groq, Mistral and DeepSeek models; the
//! config's `[[prices]]` entries add to or override them. A model is matched
//! exactly, else by the longest listed prefix (dated snapshots such as
//! `gpt-4o-2024-08-06` take the price of `gpt-4o`). Unknown model: no cost,
//! never a guess.
//!
//! Input tokens read from a provider's cache and written to it are billed at their own rates
//! when the entry has them (OpenAI's and Anthropic's cache reads at a discount, Anthropic's
//! cache writes at a premium); an entry without them bills those tokens at the input rate.
//! A request that reports input tokens but no output tokens (embeddings) costs its input.

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
    /// USD per million input tokens read from the provider's cache, if billed apart.
    pub cached_input_per_million: Option<f64>,
    /// USD per million input tokens written to the provider's cache, if billed apart.
    pub cache_write_per_million: Option<f64>,
}

/// The price table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriceTable {
    entries: Vec<Price>,
}

/// (provider, model, input, output, cached input, cache write), USD per million tokens, from
/// the providers' published price pages (openai.com/api/pricing, anthropic.com/pricing,
/// groq.com/pricing, mistral.ai/pricing, api-docs.deepseek.com), as of 2025-06. Anthropic's
/// cache write is the 5-minute rate (1.25 × input), its cache read 0.1 × input.
#[allow(clippy::type_complexity)]
const DEFAULTS: &[(&str, &str, f64, f64, Option<f64>, Option<f64>)] = &[
    ("openai", "gpt-4o", 2.5, 10.0, Some(1.25), None),
    ("openai", "gpt-4o-mini", 0.15, 0.6, Some(0.075), None),
    ("openai", "gpt-4.1", 2.0, 8.0, Some(0.5), None),
    ("openai", "gpt-4.1-mini", 0.4, 1.6, Some(0.1), None),
    ("openai", "gpt-4.1-nano", 0.1, 0.4, Some(0.025), None),
    ("openai", "gpt-4-turbo", 10.0, 30.0, None, None),
    ("openai", "gpt-3.5-turbo", 0.5, 1.5, None, None),
    ("openai", "o1", 15.0, 60.0, Some(7.5), None),
    ("openai", "o1-mini", 1.1, 4.4, Some(0.55), None),
    ("openai", "o3", 2.0, 8.0, Some(0.5), None),
    ("openai", "o3-mini", 1.1, 4.4, Some(0.55), None),
    ("openai", "o4-mini", 1.1, 4.4, Some(0.275), None),
    ("openai", "text-embedding-3-small", 0.02, 0.0, None, None),
    ("openai", "text-embedding-3-large", 0.13, 0.0, None, None),
    ("openai", "text-embedding-ada-002", 0.1, 0.0, None, None),
    (
        "anthropic",
        "claude-3-haiku",
        0.25,
        1.25,
        Some(0.03),
        Some(0.3),
    ),
    (
        "anthropic",
        "claude-3-5-haiku",
        0.8,
        4.0,
        Some(0.08),
        Some(1.0),
    ),
    (
        "anthropic",
        "claude-3-5-sonnet",
        3.0,
        15.0,
        Some(0.3),
        Some(3.75),
    ),
    (
        "anthropic",
        "claude-3-7-sonnet",
        3.0,
        15.0,
        Some(0.3),
        Some(3.75),
    ),
    (
        "anthropic",
        "claude-sonnet-4",
        3.0,
        15.0,
        Some(0.3),
        Some(3.75),
    ),
    (
        "anthropic",
        "claude-3-opus",
        15.0,
        75.0,
        Some(1.5),
        Some(18.75),
    ),
    (
        "anthropic",
        "claude-opus-4",
        15.0,
        75.0,
        Some(1.5),
        Some(18.75),
    ),
    ("groq", "llama-3.1-8b-instant", 0.05, 0.08, None, None),
    ("groq", "llama-3.3-70b-versatile", 0.59, 0.79, None, None),
    ("mistral", "mistral-large", 2.0, 6.0, None, None),
    ("mistral", "mistral-small", 0.2, 0.6, None, None),
    ("deepseek", "deepseek-chat", 0.27, 1.1, Some(0.07), None),
    (
        "deepseek",
        "deepseek-reasoner",
        0.55,
        2.19,
        Some(0.14),
        None,
    ),
];

impl PriceTable {
    /// The default prices.
    pub fn with_defaults() -> Self {
        PriceTable {
            entries: DEFAULTS
                .iter()
                .map(|(p, m, i, o, cached, write)| Price {
                    provider: p.to_string(),
                    model: m.to_string(),
                    input_per_million: *i,
                    output_per_million: *o,
                    cached_input_per_million: *cached,
                    cache_write_per_million: *write,
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

    /// Cost in USD, when the model is priced and the input tokens are known (output tokens
    /// missing count as none: embeddings). Cached and cache-write tokens, part of `tokens_in`,
    /// are billed at their own rates.
    pub fn cost(&self, provider: &str, model: Option<&str>, usage: &Usage) -> Option<f64> {
        let price = self.find(provider, model?)?;
        let total_in = u64::from(usage.tokens_in?);
        let cached = u64::from(usage.tokens_cached.unwrap_or(0)).min(total_in);
        let written = u64::from(usage.tokens_cache_write.unwrap_or(0)).min(total_in - cached);
        let fresh = total_in - cached - written;
        let out = u64::from(usage.tokens_out.unwrap_or(0));
        let micro = fresh as f64 * price.input_per_million
            + cached as f64
                * price
                    .cached_input_per_million
                    .unwrap_or(price.input_per_million)
            + written as f64
                * price
                    .cache_write_per_million
                    .unwrap_or(price.input_per_million)
            + out as f64 * price.output_per_million;
        Some(micro / 1_000_000.0)
    }
}

use super::usage::Usage;

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(tokens_in: Option<u32>, tokens_out: Option<u32>) -> Usage {
        Usage {
            tokens_in,
            tokens_out,
            ..Usage::default()
        }
    }

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
            .cost(
                "openai",
                Some("gpt-4o"),
                &usage(Some(1_000_000), Some(500_000)),
            )
            .unwrap();
        assert!((c - 7.5).abs() < 1e-9);
        assert_eq!(
            t.cost("openai", Some("unknown"), &usage(Some(1), Some(1))),
            None
        );
        assert_eq!(
            t.cost("openai", Some("gpt-4o"), &usage(None, Some(1))),
            None
        );
        t.set(Price {
            provider: "openai".into(),
            model: "gpt-4o".into(),
            input_per_million: 1.0,
            output_per_million: 1.0,
            cached_input_per_million: None,
            cache_write_per_million: None,
        });
        assert!(
            (t.cost("openai", Some("gpt-4o"), &usage(Some(1_000_000), Some(0)))
                .unwrap()
                - 1.0)
                .abs()
                < 1e-9
        );
    }

    #[test]
    fn embeddings_cost_their_input() {
        let t = PriceTable::with_defaults();
        let c = t
            .cost(
                "openai",
                Some("text-embedding-3-small"),
                &usage(Some(1_000_000), None),
            )
            .unwrap();
        assert!((c - 0.02).abs() < 1e-12, "{c}");
    }

    #[test]
    fn cached_and_cache_write_tokens_have_their_own_rates() {
        let t = PriceTable::with_defaults();
        // OpenAI: 1,000 prompt tokens of which 800 cached; 100 out.
        let u = Usage {
            tokens_in: Some(1000),
            tokens_out: Some(100),
            tokens_cached: Some(800),
            ..Usage::default()
        };
        let c = t.cost("openai", Some("gpt-4o-mini"), &u).unwrap();
        let want = (200.0 * 0.15 + 800.0 * 0.075 + 100.0 * 0.6) / 1e6;
        assert!((c - want).abs() < 1e-15, "{c} {want}");
        // Anthropic: 21 fresh + 3,000 read + 1,000 written, 50 out.
        let u = Usage {
            tokens_in: Some(4021),
            tokens_out: Some(50),
            tokens_cached: Some(3000),
            tokens_cache_write: Some(1000),
            ..Usage::default()
        };
        let c = t
            .cost("anthropic", Some("claude-sonnet-4-20250514"), &u)
            .unwrap();
        let want = (21.0 * 3.0 + 3000.0 * 0.3 + 1000.0 * 3.75 + 50.0 * 15.0) / 1e6;
        assert!((c - want).abs() < 1e-15, "{c} {want}");
        // Without a cached rate, cached tokens cost the input rate (never under-billed).
        let u = Usage {
            tokens_in: Some(1000),
            tokens_out: Some(0),
            tokens_cached: Some(1000),
            ..Usage::default()
        };
        let c = t.cost("groq", Some("llama-3.3-70b-versatile"), &u).unwrap();
        assert!((c - 1000.0 * 0.59 / 1e6).abs() < 1e-15);
        // Counts that do not add up never go negative.
        let u = Usage {
            tokens_in: Some(10),
            tokens_out: Some(0),
            tokens_cached: Some(50),
            tokens_cache_write: Some(50),
            ..Usage::default()
        };
        assert!(t.cost("anthropic", Some("claude-3-haiku"), &u).unwrap() >= 0.0);
    }
}
