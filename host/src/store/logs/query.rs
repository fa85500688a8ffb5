//! Reading the log store: filtered, paginated listing, one entry, feedback
//! patches, and the analytics report (totals, buckets, percentiles, groups).

use super::{LogStore, open_conn};
use rusqlite::{Connection, params};
use serde_json::{Value, json};

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
pub(super) fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
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
