//! Token prices (USD per million tokens) and the cost of a request. The catalog
//! (`host/prices.toml`, shipped in the binary, or `[server] price_catalog`) covers
//! the per-token models of the built-in providers, each entry with its source and
//! date; the config's `[[prices]]` entries add to or override it. A model is matched
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
    /// USD per million image input tokens (image models). A request with image input to a
    /// model without this rate is not priced: never billed at another rate.
    pub image_input_per_million: Option<f64>,
}

impl Price {
    /// The dearest rate an input token of this model can be billed at (plain, cache read,
    /// cache write or image input), USD per million.
    pub fn max_input_rate(&self) -> f64 {
        [
            Some(self.input_per_million),
            self.cached_input_per_million,
            self.cache_write_per_million,
            self.image_input_per_million,
        ]
        .into_iter()
        .flatten()
        .fold(0.0, f64::max)
    }
}

/// The price table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriceTable {
    entries: Vec<Price>,
    /// The catalog's version (`version` in the file).
    version: String,
}

/// The catalog shipped in the binary (`host/prices.toml`).
pub const BUILTIN_CATALOG: &str = include_str!("../../prices.toml");

/// A catalog file: its version and its entries.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    version: String,
    #[serde(default)]
    prices: Vec<CatalogEntry>,
}

/// One catalog entry; `source` and `date` say where and when the price was read.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogEntry {
    provider: String,
    model: String,
    input: f64,
    output: f64,
    cached_input: Option<f64>,
    cache_write: Option<f64>,
    image_input: Option<f64>,
    source: String,
    date: String,
}

impl PriceTable {
    /// The catalog shipped in the binary.
    pub fn with_defaults() -> Self {
        // The shipped catalog is checked by a unit test; were it ever unreadable, nothing is
        // priced rather than anything guessed.
        Self::from_catalog(BUILTIN_CATALOG).unwrap_or_default()
    }

    /// Reads a catalog file's text; the error names the entry and field at fault.
    pub fn from_catalog(text: &str) -> Result<Self, String> {
        let file: CatalogFile = toml::from_str(text).map_err(|e| e.to_string())?;
        if file.version.trim().is_empty() {
            return Err("version: must not be empty".into());
        }
        let mut table = PriceTable {
            entries: Vec::with_capacity(file.prices.len()),
            version: file.version,
        };
        for (i, e) in file.prices.into_iter().enumerate() {
            if e.provider.trim().is_empty() || e.model.trim().is_empty() {
                return Err(format!("prices[{i}]: provider and model must not be empty"));
            }
            let rate_ok = |v: f64| v.is_finite() && v >= 0.0;
            let rates = [
                ("input", Some(e.input)),
                ("output", Some(e.output)),
                ("cached_input", e.cached_input),
                ("cache_write", e.cache_write),
                ("image_input", e.image_input),
            ];
            if let Some((field, _)) = rates.iter().find(|(_, v)| v.is_some_and(|v| !rate_ok(v))) {
                return Err(format!(
                    "prices[{i}].{field} ({} {}): must be a number >= 0",
                    e.provider, e.model
                ));
            }
            if e.source.trim().is_empty() || e.date.trim().is_empty() {
                return Err(format!(
                    "prices[{i}] ({} {}): source and date must say where and when the price was read",
                    e.provider, e.model
                ));
            }
            table.set(Price {
                provider: e.provider,
                model: e.model,
                input_per_million: e.input,
                output_per_million: e.output,
                cached_input_per_million: e.cached_input,
                cache_write_per_million: e.cache_write,
                image_input_per_million: e.image_input,
            });
        }
        Ok(table)
    }

    /// The catalog's version, with `+config` once `[[prices]]` changed it.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Marks the table as changed by the config's `[[prices]]`.
    pub fn mark_overridden(&mut self) {
        if !self.version.ends_with("+config") {
            self.version.push_str("+config");
        }
    }

    /// Adds or replaces an entry.
    pub fn set(&mut self, price: Price) {
        self.entries
            .retain(|e| !(e.provider == price.provider && e.model == price.model));
        self.entries.push(price);
    }

    /// The price of `model` at `provider`, if listed: the exact name, else the longest listed
    /// name that `model` extends by a version suffix only (a date, a build number, `latest`,
    /// `preview-…`, a Bedrock `v1:0`). A sibling model (`o3-pro` beside `o3`, `claude-opus-4-5`
    /// beside `claude-opus-4`) is not a version of it and stays unpriced.
    pub fn find(&self, provider: &str, model: &str) -> Option<&Price> {
        let of_provider = || self.entries.iter().filter(move |e| e.provider == provider);
        of_provider().find(|e| e.model == model).or_else(|| {
            of_provider()
                .filter(|e| {
                    model
                        .strip_prefix(e.model.as_str())
                        .is_some_and(is_version_suffix)
                })
                .max_by_key(|e| e.model.len())
        })
    }

    /// The most `input` and `output` tokens of `model` can cost: every input token at the
    /// dearest input rate the entry has (cache writes and image input can cost more than
    /// plain input). `None` when the model has no price.
    pub fn bound(&self, provider: &str, model: &str, input: u64, output: u64) -> Option<f64> {
        let p = self.find(provider, model)?;
        Some(
            (input as f64 * p.max_input_rate() + output as f64 * p.output_per_million)
                / 1_000_000.0,
        )
    }

    /// Cost in USD, when the model is priced and the input tokens are known (output tokens
    /// missing count as none: embeddings). Cached and cache-write tokens, part of `tokens_in`,
    /// are billed at their own rates.
    /// The cost of an answer to a request at provider path `path`. Bedrock's prices differ by
    /// region: an entry for `{region}/{model}` (e.g. from `[[prices]]`) is used first; the
    /// catalog's plain entries are us-east-1 and us-west-2 rates, and elsewhere, without a
    /// regional entry, the answer is unpriced.
    pub fn cost_at(
        &self,
        provider: &str,
        model: Option<&str>,
        path: &str,
        usage: &Usage,
    ) -> Option<f64> {
        if provider != "aws-bedrock" {
            return self.cost(provider, model, usage);
        }
        let region = path.trim_start_matches('/').split('/').nth(1).unwrap_or("");
        let regional = format!("{region}/{}", model?);
        if self.find(provider, &regional).is_some() {
            return self.cost(provider, Some(&regional), usage);
        }
        if BEDROCK_PRICED_REGIONS.contains(&region) {
            return self.cost(provider, model, usage);
        }
        None
    }

    pub fn cost(&self, provider: &str, model: Option<&str>, usage: &Usage) -> Option<f64> {
        let price = self.find(provider, model?)?;
        if usage.tokens_audio.unwrap_or(0) > 0 {
            return None;
        }
        let total_in = u64::from(usage.tokens_in?);
        let cached = u64::from(usage.tokens_cached.unwrap_or(0)).min(total_in);
        let written = u64::from(usage.tokens_cache_write.unwrap_or(0)).min(total_in - cached);
        let images = u64::from(usage.tokens_image_in.unwrap_or(0)).min(total_in - cached - written);
        let image_rate = match (images, price.image_input_per_million) {
            (0, _) => 0.0,
            (_, Some(rate)) => rate,
            (_, None) => return None,
        };
        let fresh = total_in - cached - written - images;
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
            + images as f64 * image_rate
            + out as f64 * price.output_per_million;
        Some(micro / 1_000_000.0)
    }
}

use super::usage::Usage;

/// The regions the catalog's plain Bedrock prices are for.
const BEDROCK_PRICED_REGIONS: [&str; 2] = ["us-east-1", "us-west-2"];

/// Whether `rest`, what follows a listed model name, only names a version of that model:
/// `-2024-08-06`, `-20241022`, `@20240620`, `-001`, `-latest`, `-preview-06-17`, `-exp-0827`,
/// `-v1:0`. A short number (`-5`) names another model, not a version.
fn is_version_suffix(rest: &str) -> bool {
    let Some(tag) = rest.strip_prefix('-').or_else(|| rest.strip_prefix('@')) else {
        return false;
    };
    let numeric = |s: &str| {
        !s.is_empty()
            && s.chars().all(|c| c.is_ascii_digit() || c == '-')
            && s.chars().filter(char::is_ascii_digit).count() >= 3
    };
    if tag == "latest" || numeric(tag) {
        return true;
    }
    if let Some(v) = tag.strip_prefix('v') {
        // Bedrock: `v1`, `v1:0`, `v2:0`.
        return !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == ':');
    }
    ["preview", "exp"].iter().any(|word| {
        tag.strip_prefix(word)
            .is_some_and(|after| after.is_empty() || after.strip_prefix('-').is_some_and(numeric))
    })
}

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
            image_input_per_million: None,
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
    fn the_shipped_catalog_reads_and_covers_every_provider_that_bills_per_token() {
        let t = PriceTable::from_catalog(BUILTIN_CATALOG).unwrap();
        assert!(!t.version().is_empty());
        assert_eq!(t, PriceTable::with_defaults());
        for provider in [
            "openai",
            "anthropic",
            "google-ai-studio",
            "groq",
            "mistral",
            "deepseek",
            "grok",
            "cohere",
            "perplexity-ai",
            "cerebras",
        ] {
            assert!(
                t.entries.iter().any(|e| e.provider == provider),
                "no price for {provider}"
            );
        }
        // Dated names resolve to their family.
        assert_eq!(
            t.find("anthropic", "claude-sonnet-4-5-20250929")
                .unwrap()
                .model,
            "claude-sonnet-4-5"
        );
        assert_eq!(
            t.find("google-ai-studio", "gemini-2.5-flash-lite-preview-06-17")
                .unwrap()
                .model,
            "gemini-2.5-flash-lite"
        );
    }

    #[test]
    fn a_bad_catalog_is_refused_naming_the_entry() {
        let bad = "version = \"x\"\n[[prices]]\nprovider = \"p\"\nmodel = \"m\"\ninput = -1.0\noutput = 1.0\nsource = \"s\"\ndate = \"d\"\n";
        let e = PriceTable::from_catalog(bad).unwrap_err();
        assert!(e.contains("prices[0].input"), "{e}");
        let e = PriceTable::from_catalog("version = \"x\"\n[[prices]]\nprovider = \"p\"\n")
            .unwrap_err();
        assert!(e.contains("model"), "{e}");
        let e = PriceTable::from_catalog(
            "version = \"x\"\n[[prices]]\nprovider = \"p\"\nmodel = \"m\"\ninput = 1.0\noutput = 1.0\nsource = \"\"\ndate = \"d\"\n",
        )
        .unwrap_err();
        assert!(e.contains("source"), "{e}");
    }

    #[test]
    fn only_a_version_suffix_inherits_a_price() {
        let t = PriceTable::with_defaults();
        let model = |provider: &str, name: &str| t.find(provider, name).map(|p| p.model.clone());
        for (provider, name, want) in [
            ("openai", "gpt-4o-2024-08-06", Some("gpt-4o")),
            ("openai", "gpt-4o-mini-2024-07-18", Some("gpt-4o-mini")),
            (
                "anthropic",
                "claude-3-5-sonnet-20241022",
                Some("claude-3-5-sonnet"),
            ),
            (
                "anthropic",
                "claude-3-5-haiku-latest",
                Some("claude-3-5-haiku"),
            ),
            (
                "anthropic",
                "claude-sonnet-4-5-20250929",
                Some("claude-sonnet-4-5"),
            ),
            (
                "google-ai-studio",
                "gemini-2.0-flash-001",
                Some("gemini-2.0-flash"),
            ),
            (
                "google-ai-studio",
                "gemini-2.5-flash-preview-05-20",
                Some("gemini-2.5-flash"),
            ),
            ("openai", "o3-pro", None),
            ("openai", "gpt-5-pro", None),
            ("anthropic", "claude-opus-4-5", None),
            ("grok", "grok-4-fast", None),
            ("openai", "gpt-4o-audio-preview-x", None),
        ] {
            assert_eq!(model(provider, name).as_deref(), want, "{provider} {name}");
        }
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
    fn bedrock_is_priced_only_where_its_prices_are_known() {
        let t = PriceTable::with_defaults();
        let usage = Usage {
            tokens_in: Some(1_000_000),
            tokens_out: Some(0),
            ..Usage::default()
        };
        let m = Some("amazon.nova-lite-v1:0");
        let east = t.cost_at(
            "aws-bedrock",
            m,
            "/bedrock-runtime/us-east-1/model/x/converse",
            &usage,
        );
        assert_eq!(east, Some(0.06));
        let paris = "/bedrock-runtime/eu-west-3/model/x/converse";
        assert_eq!(t.cost_at("aws-bedrock", m, paris, &usage), None);
        let mut regional = t.clone();
        regional.set(Price {
            provider: "aws-bedrock".into(),
            model: "eu-west-3/amazon.nova-lite-v1:0".into(),
            input_per_million: 0.078,
            output_per_million: 0.312,
            cached_input_per_million: None,
            cache_write_per_million: None,
            image_input_per_million: None,
        });
        assert_eq!(
            regional.cost_at("aws-bedrock", m, paris, &usage),
            Some(0.078)
        );
        assert_eq!(
            t.cost_at("openai", Some("gpt-4o-mini"), "/x", &usage),
            Some(0.15)
        );
    }

    #[test]
    fn image_input_tokens_need_their_own_rate() {
        let mut t = PriceTable::with_defaults();
        let usage = Usage {
            tokens_in: Some(50),
            tokens_out: Some(1000),
            tokens_image_in: Some(10),
            ..Usage::default()
        };
        let cost = t.cost("openai", Some("gpt-image-1"), &usage).unwrap();
        assert!((cost - (40.0 * 5.0 + 10.0 * 10.0 + 1000.0 * 40.0) / 1e6).abs() < 1e-15);
        t.set(Price {
            provider: "openai".into(),
            model: "gpt-image-1".into(),
            input_per_million: 5.0,
            output_per_million: 40.0,
            cached_input_per_million: None,
            cache_write_per_million: None,
            image_input_per_million: None,
        });
        assert_eq!(t.cost("openai", Some("gpt-image-1"), &usage), None);
        let text_only = Usage {
            tokens_image_in: Some(0),
            ..usage
        };
        assert!(t.cost("openai", Some("gpt-image-1"), &text_only).is_some());
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
            tokens_image_in: None,
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
            tokens_image_in: None,
            ..Usage::default()
        };
        assert!(t.cost("anthropic", Some("claude-3-haiku"), &u).unwrap() >= 0.0);
    }
}
