//! Per-gateway log limits (Cloudflare's `log_management` and
//! `log_management_strategy`): a gateway keeps at most `max_entries` entries;
//! when it has them all, either its oldest make room for the new
//! (`delete_oldest`) or new ones are not stored (`stop_inserting`). Either way
//! the analytics rollups count every request.
//!
//! The writer keeps each limited gateway's entry count, read from the store and
//! read again every half minute (entries deleted through the logs API, another
//! replica's writes). With one writer a gateway never holds more than its limit
//! for longer than one batch; replicas sharing PostgreSQL see each other's
//! entries at the next recount, so together they may overshoot for up to 30 s.

use super::LogStoreError;
use super::db::{Arg, Db};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a full gateway log does with a new entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// The oldest entries are deleted to make room (Cloudflare's `DELETE_OLDEST`).
    DeleteOldest,
    /// New entries are not stored (Cloudflare's `STOP_INSERTING`).
    StopInserting,
}

/// A gateway's log limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayLogLimit {
    /// Most entries kept.
    pub max_entries: u64,
    /// What happens when there are that many.
    pub when_full: WhenFull,
}

/// Limits by gateway name.
pub type GatewayLimits = HashMap<String, GatewayLogLimit>;

/// The limits the config sets: a gateway whose pipeline has `logging` with
/// `max_entries` in its table (`when_full` defaults to `delete_oldest`). The
/// filter validated the table when it loaded.
pub fn limits_of(config: &crate::config::Config) -> GatewayLimits {
    let mut out = GatewayLimits::new();
    for (name, gw) in &config.gateways {
        if !gw.pipeline.iter().any(|f| f == "logging") {
            continue;
        }
        let Some(table) = gw
            .filters
            .get("logging")
            .and_then(|f| serde_json::from_str::<Value>(&f.config_json).ok())
        else {
            continue;
        };
        let Some(max_entries) = table.get("max_entries").and_then(Value::as_u64) else {
            continue;
        };
        let when_full = match table.get("when_full").and_then(Value::as_str) {
            Some("stop_inserting") => WhenFull::StopInserting,
            _ => WhenFull::DeleteOldest,
        };
        out.insert(
            name.clone(),
            GatewayLogLimit {
                max_entries,
                when_full,
            },
        );
    }
    out
}

/// How long a gateway's entry count is trusted before it is read again.
const RECOUNT: Duration = Duration::from_secs(30);

/// The writer's side: the limits in force and the counts of limited gateways.
pub(super) struct Keeper {
    limits: Arc<Mutex<GatewayLimits>>,
    counts: HashMap<String, (u64, Instant)>,
}

fn gateway_of(e: &Value) -> Option<&str> {
    e.get("gateway").and_then(Value::as_str)
}

impl Keeper {
    pub(super) fn new(limits: Arc<Mutex<GatewayLimits>>) -> Keeper {
        Keeper {
            limits,
            counts: HashMap::new(),
        }
    }

    fn snapshot(&self) -> GatewayLimits {
        self.limits.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn count(&mut self, db: &mut dyn Db, gateway: &str) -> Result<&mut u64, LogStoreError> {
        let stale = self
            .counts
            .get(gateway)
            .is_none_or(|(_, at)| at.elapsed() >= RECOUNT);
        if stale {
            let rows = db.rows(
                "SELECT COUNT(*) FROM logs WHERE gateway = ?1",
                &[Arg::Text(gateway.to_string())],
            )?;
            let n = rows.first().map(|r| r[0].int().max(0) as u64).unwrap_or(0);
            self.counts.insert(gateway.to_string(), (n, Instant::now()));
        }
        self.counts
            .get_mut(gateway)
            .map(|(n, _)| n)
            .ok_or(LogStoreError::Unavailable("log count"))
    }

    /// Which entries of `batch` are stored: all, except those of a gateway that
    /// is full under `stop_inserting`.
    pub(super) fn admit(
        &mut self,
        db: &mut dyn Db,
        batch: &[Value],
    ) -> Result<Vec<bool>, LogStoreError> {
        let limits = self.snapshot();
        self.counts.retain(|g, _| limits.contains_key(g));
        if limits.is_empty() {
            return Ok(vec![true; batch.len()]);
        }
        let mut admitted = Vec::with_capacity(batch.len());
        for e in batch {
            let Some((gateway, limit)) = gateway_of(e).and_then(|g| limits.get(g).map(|l| (g, *l)))
            else {
                admitted.push(true);
                continue;
            };
            let n = self.count(db, gateway)?;
            let store = match limit.when_full {
                WhenFull::StopInserting => *n < limit.max_entries,
                WhenFull::DeleteOldest => true,
            };
            if store {
                *n += 1;
            }
            admitted.push(store);
        }
        Ok(admitted)
    }

    /// After a batch is written: deletes the oldest entries of each
    /// `delete_oldest` gateway over its limit; how many.
    pub(super) fn trim(&mut self, db: &mut dyn Db) -> Result<u64, LogStoreError> {
        let limits = self.snapshot();
        let seq = db.dialect().seq();
        // By id, the primary key of both dialects.
        let sql = format!(
            "DELETE FROM logs WHERE id IN (SELECT id FROM logs WHERE gateway = ?1 \
             ORDER BY created_at ASC, {seq} ASC LIMIT ?2)"
        );
        let mut deleted = 0;
        for (gateway, (n, _)) in self.counts.iter_mut() {
            let Some(limit) = limits.get(gateway) else {
                continue;
            };
            if limit.when_full != WhenFull::DeleteOldest || *n <= limit.max_entries {
                continue;
            }
            let excess = *n - limit.max_entries;
            let gone = db.exec(&sql, &[Arg::Text(gateway.clone()), Arg::Int(excess as i64)])?;
            *n = n.saturating_sub(gone);
            deleted += gone;
        }
        Ok(deleted)
    }

    /// Forgets the counts (after a failed write), so they are read again.
    pub(super) fn forget(&mut self) {
        self.counts.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::super::LogStore;
    use super::*;
    use serde_json::json;
    use std::sync::atomic::Ordering;

    #[test]
    fn full_gateway_logs_delete_the_oldest_or_stop_inserting_and_analytics_count_all() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        let limit = |max_entries, when_full| GatewayLogLimit {
            max_entries,
            when_full,
        };
        store.set_gateway_limits(GatewayLimits::from([
            ("a".to_string(), limit(5, WhenFull::DeleteOldest)),
            ("b".to_string(), limit(3, WhenFull::StopInserting)),
        ]));
        for n in 0..10 {
            for gw in ["a", "b", "c"] {
                store
                    .append(
                        json!({"id": format!("{gw}{n}"), "created_at": 1_000 + n, "gateway": gw,
                                   "status": 200, "success": true}),
                    )
                    .unwrap();
            }
            // Several batches, so counts carry from one to the next.
            if n % 4 == 0 {
                std::thread::sleep(std::time::Duration::from_millis(30));
            }
        }
        store.close();
        let ids = |gw: &str| -> Vec<String> {
            let q = super::super::LogQuery {
                gateway: gw.into(),
                limit: 100,
                ascending: true,
                ..Default::default()
            };
            let (page, _) = store.query(&q).unwrap();
            page.iter()
                .map(|e| e["id"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(ids("a"), ["a5", "a6", "a7", "a8", "a9"]);
        assert_eq!(ids("b"), ["b0", "b1", "b2"]);
        assert_eq!(ids("c").len(), 10);
        // Whole minutes: the rollups, which count what was served.
        for gw in ["a", "b", "c"] {
            let r = store.analytics(gw, 0, 120_000, 60_000, None).unwrap();
            assert_eq!(r["totals"]["requests"], 10, "{gw}: {r}");
        }
        assert_eq!(store.counters.full.load(Ordering::Relaxed), 7);
        assert_eq!(store.counters.evicted.load(Ordering::Relaxed), 5);
        assert_eq!(store.counters.written.load(Ordering::Relaxed), 23);
    }
}
