//! Token prices: a catalog (the one shipped in the binary, or the file named
//! by `server.price_catalog`) with the file's `[[prices]]` entries on top.

use super::raw::RawPrice;
use super::{ConfigError, Source};
use crate::providers::pricing::{Price, PriceTable};

/// Reads the catalog, then checks each `[[prices]]` entry and sets it over the catalog's.
pub(super) fn read_prices(
    src: &Source,
    catalog: Option<&str>,
    raw: &[RawPrice],
) -> Result<PriceTable, ConfigError> {
    let mut prices = read_catalog(src, catalog)?;
    if !raw.is_empty() {
        prices.mark_overridden();
    }
    for (i, p) in raw.iter().enumerate() {
        prices.set(read_price(src, i, p)?);
    }
    Ok(prices)
}

/// Reads the `server.price_catalog` file, or takes the shipped catalog when it is unset.
fn read_catalog(src: &Source, catalog: Option<&str>) -> Result<PriceTable, ConfigError> {
    let Some(file) = catalog else {
        return Ok(PriceTable::with_defaults());
    };
    let path = src.base.join(file);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        src.invalid(
            "server.price_catalog",
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    PriceTable::from_catalog(&text)
        .map_err(|e| src.invalid("server.price_catalog", format!("{}: {e}", path.display())))
}

/// Checks that entry `i` of `[[prices]]` has finite, non-negative rates; makes it a `Price`.
fn read_price(src: &Source, i: usize, p: &RawPrice) -> Result<Price, ConfigError> {
    if p.provider.trim().is_empty() || p.model.trim().is_empty() {
        return Err(src.invalid(
            &format!("prices[{i}]"),
            "provider and model must not be empty".into(),
        ));
    }
    let ok = |v: f64| v.is_finite() && v >= 0.0;
    if !ok(p.input_per_million) || !ok(p.output_per_million) {
        return Err(src.invalid(
            &format!("prices[{i}]"),
            "input_per_million and output_per_million must be numbers >= 0".into(),
        ));
    }
    for (key, value) in [
        ("cached_input_per_million", p.cached_input_per_million),
        ("cache_write_per_million", p.cache_write_per_million),
        ("image_input_per_million", p.image_input_per_million),
    ] {
        if value.is_some_and(|v| !ok(v)) {
            return Err(src.invalid(
                &format!("prices[{i}].{key}"),
                "must be a number >= 0".into(),
            ));
        }
    }
    Ok(Price {
        provider: p.provider.clone(),
        model: p.model.clone(),
        input_per_million: p.input_per_million,
        output_per_million: p.output_per_million,
        cached_input_per_million: p.cached_input_per_million,
        cache_write_per_million: p.cache_write_per_million,
        image_input_per_million: p.image_input_per_million,
    })
}
