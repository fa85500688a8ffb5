//! The request log store: SQLite in WAL mode, written in batches by one
//! writer thread so appends never wait on disk. A full queue drops the entry
//! and counts it rather than blocking a request. Entries are JSON objects; the
//! columns analytics filter on are also stored on their own.

use rusqlite::{Connection, params};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Queue length between requests and the writer.
const QUEUE: usize = 16_384;
/// Most entries written in one transaction.
const BATCH: usize = 512;

/// Counters of the log store.
#[derive(Debug, Default)]
pub struct LogCounters {
    /// Entries written.
    pub written: AtomicU64,
    /// Entries dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Write failures.
    pub errors: AtomicU64,
}

/// Handle to the log store.
#[derive(Debug)]
pub struct LogStore {
    path: PathBuf,
    tx: Mutex<Option<SyncSender<Value>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Counters.
    pub counters: Arc<LogCounters>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS logs (
    id TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    gateway TEXT, provider TEXT, model TEXT,
    status INTEGER, success INTEGER, cached INTEGER,
    duration_ms INTEGER, tokens_in INTEGER, tokens_out INTEGER, cost REAL,
    entry TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_created_at ON logs(created_at);
CREATE INDEX IF NOT EXISTS logs_gateway_created ON logs(gateway, created_at);
";

impl LogStore {
    /// Opens (or creates) `dir/logs.sqlite` and starts the writer.
    pub fn open(dir: &Path) -> Result<LogStore, String> {
        Self::open_with_retention(dir, Retention::default())
    }

    /// Like `open`, deleting the oldest entries beyond `retention`.
    pub fn open_with_retention(dir: &Path, retention: Retention) -> Result<LogStore, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("{}: cannot create: {e}", dir.display()))?;
        let path = dir.join("logs.sqlite");
        let conn = open_conn(&path)?;
        let (tx, rx) = sync_channel(QUEUE);
        let counters = Arc::new(LogCounters::default());
        let c = counters.clone();
        let writer = std::thread::Builder::new()
            .name("aigw-log-writer".into())
            .spawn(move || write_loop(conn, rx, c, retention))
            .map_err(|e| format!("cannot start the log writer: {e}"))?;
        Ok(LogStore {
            path,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            counters,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues an entry (a JSON object with a string `id`).
    pub fn append(&self, entry: Value) -> Result<(), String> {
        match entry.get("id") {
            Some(Value::String(id)) if !id.is_empty() => {}
            _ => return Err("log entry needs a non-empty string \"id\"".into()),
        }
        let guard = self
            .tx
            .lock()
            .map_err(|_| "log store unavailable".to_string())?;
        let Some(tx) = guard.as_ref() else {
            return Err("log store is shut down".into());
        };
        match tx.try_send(entry) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                Err("log queue full: entry dropped".into())
            }
            Err(TrySendError::Disconnected(_)) => Err("log store is shut down".into()),
        }
    }

    /// Stops accepting entries and waits until every queued one is written.
    pub fn close(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Ok(mut w) = self.writer.lock()
            && let Some(handle) = w.take()
        {
            let _ = handle.join();
        }
    }

    /// Reads entries, newest first (used by the admin API and tests).
    pub fn recent(&self, limit: usize) -> Result<Vec<Value>, String> {
        let conn = open_conn(&self.path)?;
        let mut stmt = conn
            .prepare("SELECT entry FROM logs ORDER BY created_at DESC, rowid DESC LIMIT ?1")
            .map_err(|e| e.to_string())?;
        let rows = stmt
            .query_map(params![limit as i64], |r| r.get::<_, String>(0))
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for row in rows {
            let text = row.map_err(|e| e.to_string())?;
            out.push(serde_json::from_str(&text).map_err(|e| e.to_string())?);
        }
        Ok(out)
    }
}

impl Drop for LogStore {
    fn drop(&mut self) {
        self.close();
    }
}

fn open_conn(path: &Path) -> Result<Connection, String> {
    let conn =
        Connection::open(path).map_err(|e| format!("{}: cannot open: {e}", path.display()))?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;",
    )
    .and_then(|_| conn.execute_batch(SCHEMA))
    .map_err(|e| format!("{}: cannot prepare: {e}", path.display()))?;
    Ok(conn)
}

/// How much of the log store is kept.
#[derive(Debug, Clone, Copy, Default)]
pub struct Retention {
    /// Most entries kept.
    pub max_entries: Option<u64>,
    /// Oldest entry kept, in days.
    pub max_age_days: Option<u64>,
}

fn prune(conn: &Connection, retention: Retention) -> rusqlite::Result<usize> {
    let mut deleted = 0;
    if let Some(days) = retention.max_age_days {
        let cutoff = crate::store::now_ms() as i64 - (days as i64) * 86_400_000;
        deleted += conn.execute("DELETE FROM logs WHERE created_at < ?1", params![cutoff])?;
    }
    if let Some(max) = retention.max_entries {
        deleted += conn.execute(
            "DELETE FROM logs WHERE rowid IN (SELECT rowid FROM logs ORDER BY created_at DESC, rowid DESC LIMIT -1 OFFSET ?1)",
            params![max as i64],
        )?;
    }
    Ok(deleted)
}

fn write_loop(
    mut conn: Connection,
    rx: Receiver<Value>,
    counters: Arc<LogCounters>,
    retention: Retention,
) {
    let prunes = retention.max_entries.is_some() || retention.max_age_days.is_some();
    let mut since_prune = 0usize;
    let mut last_prune = std::time::Instant::now();
    if prunes {
        let _ = prune(&conn, retention);
    }
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        match write_batch(&mut conn, &batch) {
            Ok(()) => {
                counters
                    .written
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                since_prune += batch.len();
                let due = since_prune >= 1000
                    || last_prune.elapsed() >= std::time::Duration::from_secs(30);
                if prunes && due {
                    if let Err(e) = prune(&conn, retention) {
                        tracing::warn!("log retention failed: {e}");
                    }
                    since_prune = 0;
                    last_prune = std::time::Instant::now();
                }
            }
            Err(e) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, entries = batch.len(), "log store write failed");
            }
        }
    }
}

fn write_batch(conn: &mut Connection, batch: &[Value]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT OR REPLACE INTO logs (id, created_at, gateway, provider, model, status, success,
             cached, duration_ms, tokens_in, tokens_out, cost, entry)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?;
        for e in batch {
            let s = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_string);
            let i = |k: &str| e.get(k).and_then(Value::as_i64);
            let b = |k: &str| e.get(k).and_then(Value::as_bool).map(i64::from);
            stmt.execute(params![
                s("id"),
                i("created_at").unwrap_or(0),
                s("gateway"),
                s("provider"),
                s("model"),
                i("status"),
                b("success"),
                b("cached"),
                i("duration_ms"),
                i("tokens_in"),
                i("tokens_out"),
                e.get("cost").and_then(Value::as_f64),
                e.to_string(),
            ])?;
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_written_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        for n in 0..3 {
            store
                .append(serde_json::json!({"id": format!("r{n}"), "created_at": n, "status": 200}))
                .unwrap();
        }
        assert!(store.append(serde_json::json!({"status": 200})).is_err());
        store.close();
        let rows = store.recent(10).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0]["id"], "r2");
        assert_eq!(store.counters.written.load(Ordering::Relaxed), 3);
    }
}

/// Filters for listing log entries.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    /// Gateway (required).
    pub gateway: String,
    /// Provider name.
    pub provider: Option<String>,
    /// Model name.
    pub model: Option<String>,
    /// Exact status.
    pub status: Option<i64>,
    /// Success flag.
    pub success: Option<bool>,
    /// Cached flag.
    pub cached: Option<bool>,
    /// From this time (ms, inclusive).
    pub from_ms: Option<i64>,
    /// Until this time (ms, exclusive).
    pub to_ms: Option<i64>,
    /// Slower than this.
    pub min_duration_ms: Option<i64>,
    /// Metadata key = value (string comparison).
    pub metadata: Vec<(String, String)>,
    /// Page size (1..=1000).
    pub limit: usize,
    /// Continue after this cursor (`created_at:rowid`).
    pub cursor: Option<(i64, i64)>,
    /// Oldest first instead of newest first.
    pub ascending: bool,
}

type SqlValue = rusqlite::types::Value;

fn where_clause(q: &LogQuery) -> Result<(String, Vec<SqlValue>), String> {
    let mut sql = String::from("gateway = ?");
    let mut args: Vec<SqlValue> = vec![SqlValue::Text(q.gateway.clone())];
    let mut add = |cond: &str, v: SqlValue| {
        sql.push_str(" AND ");
        sql.push_str(cond);
        args.push(v);
    };
    if let Some(p) = &q.provider {
        add("provider = ?", SqlValue::Text(p.clone()));
    }
    if let Some(m) = &q.model {
        add("model = ?", SqlValue::Text(m.clone()));
    }
    if let Some(s) = q.status {
        add("status = ?", SqlValue::Integer(s));
    }
    if let Some(s) = q.success {
        add("success = ?", SqlValue::Integer(i64::from(s)));
    }
    if let Some(c) = q.cached {
        add("cached = ?", SqlValue::Integer(i64::from(c)));
    }
    if let Some(f) = q.from_ms {
        add("created_at >= ?", SqlValue::Integer(f));
    }
    if let Some(t) = q.to_ms {
        add("created_at < ?", SqlValue::Integer(t));
    }
    if let Some(d) = q.min_duration_ms {
        add("duration_ms >= ?", SqlValue::Integer(d));
    }
    for (k, v) in &q.metadata {
        if k.is_empty()
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(format!(
                "metadata key '{k}': use letters, digits, '_' and '-'"
            ));
        }
        add(
            &format!("CAST(json_extract(entry, '$.metadata.\"{k}\"') AS TEXT) = ?"),
            SqlValue::Text(v.clone()),
        );
    }
    Ok((sql, args))
}

fn without_bodies(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("request_body");
        o.remove("response_body");
    }
    v
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

impl LogStore {
    fn reader(&self) -> Result<Connection, String> {
        open_conn(&self.path)
    }

    /// Lists entries (without bodies), newest first unless `ascending`; returns
    /// the page and the cursor of the next page.
    pub fn query(&self, q: &LogQuery) -> Result<(Vec<Value>, Option<String>), String> {
        let (mut sql_where, mut args) = where_clause(q)?;
        if let Some((at, rowid)) = q.cursor {
            let op = if q.ascending { ">" } else { "<" };
            sql_where.push_str(&format!(
                " AND (created_at {op} ? OR (created_at = ? AND rowid {op} ?))"
            ));
            args.extend([
                SqlValue::Integer(at),
                SqlValue::Integer(at),
                SqlValue::Integer(rowid),
            ]);
        }
        let order = if q.ascending { "ASC" } else { "DESC" };
        let limit = q.limit.clamp(1, 1000);
        let sql = format!(
            "SELECT rowid, created_at, entry FROM logs WHERE {sql_where} ORDER BY created_at {order}, rowid {order} LIMIT {}",
            limit + 1
        );
        let conn = self.reader()?;
        let mut stmt = conn.prepare(&sql).map_err(|e| e.to_string())?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        let mut last = None;
        let mut more = false;
        for row in rows {
            let (rowid, at, text) = row.map_err(|e| e.to_string())?;
            if out.len() == limit {
                more = true;
                break;
            }
            let mut v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            if let Some(o) = v.as_object_mut() {
                o.insert("created_at".into(), Value::from(at));
            }
            out.push(without_bodies(v));
            last = Some((at, rowid));
        }
        Ok((
            out,
            if more {
                last.map(|(a, r)| format!("{a}:{r}"))
            } else {
                None
            },
        ))
    }

    /// One entry with its bodies.
    pub fn get(&self, gateway: &str, id: &str) -> Result<Option<Value>, String> {
        let conn = self.reader()?;
        let text: Option<String> = conn
            .query_row(
                "SELECT entry FROM logs WHERE gateway = ?1 AND id = ?2",
                params![gateway, id],
                |r| r.get(0),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                other => Err(other.to_string()),
            })?;
        text.map(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
            .transpose()
    }

    /// Sets `feedback` (-1 or 1), `score` (number) and/or merges `metadata`.
    pub fn patch(&self, gateway: &str, id: &str, patch: &Value) -> Result<Option<Value>, String> {
        let Some(obj) = patch.as_object() else {
            return Err("body: expected a JSON object with feedback, score and/or metadata".into());
        };
        if let Some(k) = obj
            .keys()
            .find(|k| !["feedback", "score", "metadata"].contains(&k.as_str()))
        {
            return Err(format!(
                "{k}: unknown field (known: feedback, score, metadata)"
            ));
        }
        let Some(mut entry) = self.get(gateway, id)? else {
            return Ok(None);
        };
        if let Some(f) = obj.get("feedback") {
            match f.as_i64() {
                Some(-1) | Some(1) => entry["feedback"] = f.clone(),
                _ => return Err("feedback: expected -1 or 1".into()),
            }
        }
        if let Some(s) = obj.get("score") {
            if !s.is_number() {
                return Err("score: expected a number".into());
            }
            entry["score"] = s.clone();
        }
        if let Some(m) = obj.get("metadata") {
            let Some(m) = m.as_object() else {
                return Err("metadata: expected a flat JSON object".into());
            };
            if !entry["metadata"].is_object() {
                entry["metadata"] = Value::Object(Default::default());
            }
            for (k, v) in m {
                if !(v.is_string() || v.is_number() || v.is_boolean()) {
                    return Err(format!(
                        "metadata.{k}: expected a string, number or boolean"
                    ));
                }
                entry["metadata"][k] = v.clone();
            }
        }
        let conn = self.reader()?;
        conn.execute(
            "UPDATE logs SET entry = ?1 WHERE gateway = ?2 AND id = ?3",
            params![entry.to_string(), gateway, id],
        )
        .map_err(|e| e.to_string())?;
        Ok(Some(entry))
    }

    /// Totals, per-bucket series and an optional breakdown for a time range.
    pub fn analytics(
        &self,
        gateway: &str,
        from_ms: i64,
        to_ms: i64,
        bucket_ms: i64,
        group_by: Option<&str>,
    ) -> Result<Value, String> {
        let conn = self.reader()?;
        let totals_sql = "SELECT COUNT(*), COALESCE(SUM(success),0), COALESCE(SUM(cached),0),
            COALESCE(SUM(status BETWEEN 200 AND 299),0), COALESCE(SUM(status BETWEEN 400 AND 499),0),
            COALESCE(SUM(status >= 500),0), COALESCE(SUM(tokens_in),0), COALESCE(SUM(tokens_out),0),
            COALESCE(SUM(cost),0.0), COUNT(cost)";
        let row_to = |r: &rusqlite::Row<'_>, offset: usize| -> rusqlite::Result<Value> {
            let requests: i64 = r.get(offset)?;
            let cached: i64 = r.get(offset + 2)?;
            Ok(json!({
                "requests": requests,
                "successes": r.get::<_, i64>(offset + 1)?,
                "errors": requests - r.get::<_, i64>(offset + 1)?,
                "status_2xx": r.get::<_, i64>(offset + 3)?,
                "status_4xx": r.get::<_, i64>(offset + 4)?,
                "status_5xx": r.get::<_, i64>(offset + 5)?,
                "cached": cached,
                "cache_hit_rate": if requests > 0 { cached as f64 / requests as f64 } else { 0.0 },
                "tokens_in": r.get::<_, i64>(offset + 6)?,
                "tokens_out": r.get::<_, i64>(offset + 7)?,
                "cost": if r.get::<_, i64>(offset + 9)? > 0 { json!(r.get::<_, f64>(offset + 8)?) } else { Value::Null },
            }))
        };
        let range = "gateway = ?1 AND created_at >= ?2 AND created_at < ?3";
        let mut totals = conn
            .query_row(
                &format!("{totals_sql} FROM logs WHERE {range}"),
                params![gateway, from_ms, to_ms],
                |r| row_to(r, 0),
            )
            .map_err(|e| e.to_string())?;

        // Latency percentiles, overall and per bucket, from one ordered scan.
        let mut stmt = conn
            .prepare(&format!(
                "SELECT (created_at - ?2) / ?4, duration_ms FROM logs WHERE {range} AND duration_ms IS NOT NULL ORDER BY 1"
            ))
            .map_err(|e| e.to_string())?;
        let rows = stmt
            .query_map(params![gateway, from_ms, to_ms, bucket_ms], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
            })
            .map_err(|e| e.to_string())?;
        let mut all = Vec::new();
        let mut per_bucket: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
        for row in rows {
            let (b, d) = row.map_err(|e| e.to_string())?;
            all.push(d);
            per_bucket.entry(b).or_default().push(d);
        }
        all.sort_unstable();
        let latency = |v: &[i64]| json!({"p50": percentile(v, 0.5), "p95": percentile(v, 0.95), "p99": percentile(v, 0.99)});
        totals["latency_ms"] = latency(&all);

        let mut stmt = conn
            .prepare(&format!(
                "SELECT (created_at - ?2) / ?4, {} FROM logs WHERE {range} GROUP BY 1 ORDER BY 1",
                &totals_sql[7..]
            ))
            .map_err(|e| e.to_string())?;
        let rows = stmt
            .query_map(params![gateway, from_ms, to_ms, bucket_ms], |r| {
                Ok((r.get::<_, i64>(0)?, row_to(r, 1)?))
            })
            .map_err(|e| e.to_string())?;
        let mut buckets = Vec::new();
        for row in rows {
            let (b, mut v) = row.map_err(|e| e.to_string())?;
            let mut d = per_bucket.remove(&b).unwrap_or_default();
            d.sort_unstable();
            v["latency_ms"] = latency(&d);
            v["start_ms"] = json!(from_ms + b * bucket_ms);
            buckets.push(v);
        }

        let mut errors_by_type = serde_json::Map::new();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT COALESCE(json_extract(entry, '$.outcome'), 'unknown'), COUNT(*) FROM logs WHERE {range} AND success = 0 GROUP BY 1"
            ))
            .map_err(|e| e.to_string())?;
        let rows = stmt
            .query_map(params![gateway, from_ms, to_ms], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
            .map_err(|e| e.to_string())?;
        for row in rows {
            let (k, n) = row.map_err(|e| e.to_string())?;
            errors_by_type.insert(k, json!(n));
        }
        totals["errors_by_type"] = Value::Object(errors_by_type);

        let mut out = json!({"gateway": gateway, "from_ms": from_ms, "to_ms": to_ms, "bucket_ms": bucket_ms,
                             "totals": totals, "buckets": buckets});
        if let Some(dim) = group_by {
            let column = match dim {
                "model" => "model",
                "provider" => "provider",
                other => {
                    return Err(format!(
                        "group_by: expected model or provider, got '{other}'"
                    ));
                }
            };
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT COALESCE({column}, ''), {} FROM logs WHERE {range} GROUP BY 1 ORDER BY 2 DESC",
                    &totals_sql[7..]
                ))
                .map_err(|e| e.to_string())?;
            let rows = stmt
                .query_map(params![gateway, from_ms, to_ms], |r| {
                    let mut v = row_to(r, 1)?;
                    v[column] = json!(r.get::<_, String>(0)?);
                    Ok(v)
                })
                .map_err(|e| e.to_string())?;
            let groups: Result<Vec<Value>, _> = rows.collect();
            out["groups"] = Value::Array(groups.map_err(|e| e.to_string())?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod retention_tests {
    use super::*;

    #[test]
    fn retention_keeps_the_newest_entries() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        for n in 0..5 {
            store
                .append(json!({"id": format!("r{n}"), "created_at": n, "gateway": "g"}))
                .unwrap();
        }
        store.close();
        let store = LogStore::open_with_retention(
            dir.path(),
            Retention {
                max_entries: Some(3),
                max_age_days: None,
            },
        )
        .unwrap();
        store.close();
        let ids: Vec<String> = store
            .recent(10)
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids, vec!["r4", "r3", "r2"]);
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), Some(50));
        assert_eq!(percentile(&v, 0.99), Some(99));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
