//! Recomputing the cost of stored entries from their raw usage, after prices change
//! (`aigw logs recost`, `POST /api/gateways/{name}/logs/recost`). Only entries the catalog
//! priced (or could not price) are touched: cache hits cost nothing and a client's
//! `cf-aig-custom-cost` is its own price. Entries written before raw usage was kept are
//! counted apart, never guessed.

use super::db::{Arg, Db};
use super::rollup::{self, Fact};
use super::{LogStore, LogStoreError};
use crate::providers::pricing::PriceTable;
use crate::providers::usage::Usage;
use serde_json::{Value, json};

/// Entries read per page.
const PAGE: i64 = 500;

/// What a recost run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecostReport {
    /// Entries in the range.
    pub scanned: u64,
    /// Entries whose cost or catalog version changed (including ones now unpriced).
    pub recosted: u64,
    /// Entries whose cost was already the catalog's.
    pub unchanged: u64,
    /// Entries the catalog cannot price (unknown model, no input tokens); their cost is null.
    pub unpriced: u64,
    /// Cache hits and entries with a client's custom cost: left as they are.
    pub skipped: u64,
    /// Entries logged without raw usage (before it was kept): left as they are.
    pub without_usage: u64,
}

/// The raw usage kept in an entry (`usage`), if any.
fn usage_of(entry: &Value) -> Option<Usage> {
    let u = entry.get("usage")?.as_object()?;
    let n = |k: &str| {
        u.get(k)
            .and_then(Value::as_u64)
            .map(|v| v.min(u64::from(u32::MAX)) as u32)
    };
    Some(Usage {
        tokens_in: n("input"),
        tokens_out: n("output"),
        tokens_cached: n("cached"),
        tokens_cache_write: n("cache_write"),
        tokens_image_in: n("image_input"),
        tokens_reasoning: n("reasoning"),
        tokens_audio: n("audio"),
    })
}

/// Recosts one entry in place; what happened to it.
fn recost_entry(entry: &mut Value, prices: &PriceTable) -> Outcome {
    let source = entry.get("cost_source").and_then(Value::as_str);
    if entry.get("cached").and_then(Value::as_bool) == Some(true)
        || matches!(source, Some("custom") | Some("cache"))
    {
        return Outcome::Skipped;
    }
    let Some(usage) = usage_of(entry) else {
        return Outcome::WithoutUsage;
    };
    let provider = entry.get("provider").and_then(Value::as_str).unwrap_or("");
    let model = entry.get("model").and_then(Value::as_str);
    let path = entry.get("path").and_then(Value::as_str).unwrap_or("");
    let cost = prices.cost_at(provider, model, path, &usage);
    let version = cost.map(|_| prices.version());
    let old_cost = entry.get("cost").and_then(Value::as_f64);
    let old_version = entry.get("price_catalog").and_then(Value::as_str);
    if old_cost == cost && old_version == version {
        return if cost.is_some() {
            Outcome::Unchanged
        } else {
            Outcome::Unpriced { changed: false }
        };
    }
    entry["cost"] = json!(cost);
    entry["price_catalog"] = json!(version);
    match cost {
        Some(_) => Outcome::Recosted,
        None => Outcome::Unpriced { changed: true },
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Recosted,
    Unchanged,
    Unpriced { changed: bool },
    Skipped,
    WithoutUsage,
}

impl LogStore {
    /// Recomputes the cost of `gateway`'s entries created in `[from_ms, to_ms)` at `prices`,
    /// page by page, each page in one transaction.
    pub fn recost(
        &self,
        gateway: &str,
        from_ms: i64,
        to_ms: i64,
        prices: &PriceTable,
    ) -> Result<RecostReport, LogStoreError> {
        let mut report = RecostReport::default();
        let mut after = i64::MIN;
        // The connection is taken page by page: on PostgreSQL it is shared with the key
        // refresher and the admin API, which must not wait for a whole recost.
        while let Some(next) =
            self.with_db(|db| recost_page(db, gateway, from_ms, to_ms, prices, after, &mut report))?
        {
            after = next;
        }
        Ok(report)
    }
}

/// Recosts the page after `after`; the last row's position when more may follow.
fn recost_page(
    db: &mut dyn Db,
    gateway: &str,
    from_ms: i64,
    to_ms: i64,
    prices: &PriceTable,
    after: i64,
    report: &mut RecostReport,
) -> Result<Option<i64>, LogStoreError> {
    let seq = db.dialect().seq();
    let select = format!(
        "SELECT {seq}, id, entry FROM logs WHERE gateway = ?1 AND created_at >= ?2 \
         AND created_at < ?3 AND {seq} > ?4 ORDER BY {seq} LIMIT ?5"
    );
    {
        let rows = db.rows(
            &select,
            &[
                Arg::Text(gateway.to_string()),
                Arg::Int(from_ms),
                Arg::Int(to_ms),
                Arg::Int(after),
                Arg::Int(PAGE),
            ],
        )?;
        let Some(last) = rows.last() else {
            return Ok(None);
        };
        let next = last[0].int();
        let mut changed = Vec::new();
        for row in &rows {
            report.scanned += 1;
            let id = row[1].text();
            let original = row[2].text();
            let mut entry: Value = serde_json::from_str(&original)
                .map_err(|e| LogStoreError::Corrupt(format!("entry {id}: {e}")))?;
            let before = Fact::of_entry(&entry);
            let outcome = recost_entry(&mut entry, prices);
            match outcome {
                Outcome::Recosted => report.recosted += 1,
                Outcome::Unchanged => report.unchanged += 1,
                Outcome::Unpriced { changed: false } => report.unpriced += 1,
                Outcome::Unpriced { changed: true } => {
                    report.unpriced += 1;
                    report.recosted += 1;
                }
                Outcome::Skipped => report.skipped += 1,
                Outcome::WithoutUsage => report.without_usage += 1,
            }
            if matches!(
                outcome,
                Outcome::Recosted | Outcome::Unpriced { changed: true }
            ) {
                changed.push(Changed {
                    id,
                    original,
                    before,
                    entry,
                });
            }
        }
        write_page(db, &changed)?;
        Ok(((rows.len() as i64) == PAGE).then_some(next))
    }
}

/// An entry a recost changes: as read, and as it becomes.
struct Changed {
    id: String,
    /// The stored text it was computed from.
    original: String,
    before: Fact,
    entry: Value,
}

/// Writes a page's changed entries in one transaction, and moves their cost
/// in the analytics rollups from the old figures to the new. An entry changed
/// since it was read (another recost at the same time) is left to that one, so
/// its cost moves once.
fn write_page(db: &mut dyn Db, entries: &[Changed]) -> Result<(), LogStoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let lock = db.dialect().for_update();
    let reread = format!("SELECT entry FROM logs WHERE id = ?1{lock}");
    super::db::transaction(db, |db| {
        let mut still = Vec::with_capacity(entries.len());
        for c in entries {
            let rows = db.rows(&reread, &[Arg::Text(c.id.clone())])?;
            if rows.first().is_some_and(|r| r[0].text() == c.original) {
                still.push(c);
            }
        }
        let before: Vec<Fact> = still.iter().map(|c| c.before.clone()).collect();
        let after: Vec<Fact> = still.iter().map(|c| Fact::of_entry(&c.entry)).collect();
        rollup::apply(db, &before, -1, false)?;
        rollup::apply(db, &after, 1, false)?;
        for Changed { id, entry, .. } in still {
            let cost = match entry.get("cost").and_then(Value::as_f64) {
                Some(c) => Arg::Float(c),
                None => Arg::Null,
            };
            db.exec(
                "UPDATE logs SET cost = ?1, entry = ?2 WHERE id = ?3",
                &[cost, Arg::Text(entry.to_string()), Arg::Text(id.clone())],
            )?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::pricing::Price;

    fn table(version: &str, input: f64, output: f64) -> PriceTable {
        let mut t =
            PriceTable::from_catalog(&format!("version = \"{version}\"\n")).unwrap_or_default();
        t.set(Price {
            provider: "p".into(),
            model: "m".into(),
            input_per_million: input,
            output_per_million: output,
            cached_input_per_million: Some(input / 10.0),
            cache_write_per_million: None,
            image_input_per_million: None,
        });
        t
    }

    fn entry(id: &str, at: i64, extra: Value) -> Value {
        let mut e = json!({"id": id, "created_at": at, "gateway": "g", "provider": "p",
            "model": "m", "status": 200, "success": true, "cached": false,
            "cost": 1.0, "cost_source": "catalog", "price_catalog": "old",
            "usage": {"input": 1000, "output": 100, "cached": 400}});
        if let (Some(e), Some(x)) = (e.as_object_mut(), extra.as_object()) {
            for (k, v) in x {
                e.insert(k.clone(), v.clone());
            }
        }
        e
    }

    #[test]
    fn recost_follows_the_new_prices_and_leaves_the_rest_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        // 1200 priced entries (more than two pages), plus one of each kind left alone.
        for n in 0..1200 {
            store
                .append(entry(&format!("r{n}"), 100 + n, json!({})))
                .unwrap();
        }
        store
            .append(entry(
                "hit",
                50,
                json!({"cached": true, "cost": 0.0, "cost_source": "cache"}),
            ))
            .unwrap();
        store
            .append(entry(
                "custom",
                50,
                json!({"cost": 0.5, "cost_source": "custom"}),
            ))
            .unwrap();
        store
            .append(entry("old", 50, json!({"usage": null})))
            .unwrap();
        store
            .append(entry("other-model", 50, json!({"model": "x"})))
            .unwrap();
        store.append(entry("before", 10, json!({}))).unwrap();
        store
            .append(entry("other-gw", 50, json!({"gateway": "h"})))
            .unwrap();
        store.close();

        let prices = table("v2", 2.0, 10.0);
        let r = store.recost("g", 20, 100_000, &prices).unwrap();
        assert_eq!(
            r,
            RecostReport {
                scanned: 1204,
                recosted: 1201,
                unchanged: 0,
                unpriced: 1,
                skipped: 2,
                without_usage: 1,
            }
        );
        // 600 fresh input at $2, 400 cached at $0.2, 100 output at $10.
        let want = (600.0 * 2.0 + 400.0 * 0.2 + 100.0 * 10.0) / 1e6;
        let e = store.get("g", "r7").unwrap();
        assert_eq!(
            (e["cost"].as_f64(), e["price_catalog"].as_str()),
            (Some(want), Some("v2"))
        );
        assert_eq!(store.get("g", "custom").unwrap()["cost"], 0.5);
        assert_eq!(store.get("g", "hit").unwrap()["cost"], 0.0);
        assert_eq!(store.get("g", "old").unwrap()["cost"], 1.0);
        assert_eq!(store.get("g", "before").unwrap()["price_catalog"], "old");
        assert_eq!(store.get("h", "other-gw").unwrap()["price_catalog"], "old");
        let unpriced = store.get("g", "other-model").unwrap();
        assert!(unpriced["cost"].is_null() && unpriced["price_catalog"].is_null());
        // The cost column the analytics sum follows the entry.
        let report = store.analytics("g", 20, 100_000, 3_600_000, None).unwrap();
        let total = report["totals"]["cost"].as_f64().unwrap();
        // Plus the custom 0.5 and the 1.0 of the entry without usage, left as they were,
        // and (analytics count whole minutes) the 1.0 of the entry before the range.
        assert!((total - (1200.0 * want + 2.5)).abs() < 1e-9, "{total}");
        assert_eq!(report["totals"]["unpriced"], 1);

        // A second run at the same prices changes nothing.
        let again = store.recost("g", 20, 100_000, &prices).unwrap();
        assert_eq!(
            (again.recosted, again.unchanged, again.unpriced),
            (0, 1200, 1)
        );
    }
}
