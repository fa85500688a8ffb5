//! Reading the log store: filtered, paginated listing, one entry, feedback
//! patches, and the analytics report (from the rollups, see `rollup`).

use super::db::{Arg, Db, Dialect};
use super::rollup::{Group, report};
use super::{LogStore, LogStoreError};
use serde_json::Value;

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
    /// Only the unpriced requests (successful, uncached, to a model, cost unknown), or only
    /// the others.
    pub unpriced: Option<bool>,
    /// Virtual key id.
    pub key: Option<String>,
    /// Team id.
    pub team: Option<String>,
    /// Metadata key = value (string comparison).
    pub metadata: Vec<(String, String)>,
    /// Page size (1..=1000).
    pub limit: usize,
    /// Continue after this cursor (`created_at:rowid`).
    pub cursor: Option<(i64, i64)>,
    /// Oldest first instead of newest first.
    pub ascending: bool,
}

fn where_clause(q: &LogQuery, dialect: Dialect) -> Result<(String, Vec<Arg>), LogStoreError> {
    let mut sql = String::from("gateway = ?1");
    let mut args: Vec<Arg> = vec![Arg::Text(q.gateway.clone())];
    match q.unpriced {
        Some(true) => {
            sql.push_str(" AND cost IS NULL AND success = 1 AND cached = 0 AND model IS NOT NULL")
        }
        Some(false) => sql.push_str(
            " AND NOT (cost IS NULL AND success = 1 AND cached = 0 AND model IS NOT NULL)",
        ),
        None => {}
    }
    let mut add = |cond: &str, v: Arg| {
        args.push(v);
        sql.push_str(" AND ");
        sql.push_str(&cond.replace('?', &format!("?{}", args.len())));
    };
    if let Some(p) = &q.provider {
        add("provider = ?", Arg::Text(p.clone()));
    }
    if let Some(m) = &q.model {
        add("model = ?", Arg::Text(m.clone()));
    }
    if let Some(s) = q.status {
        add("status = ?", Arg::Int(s));
    }
    if let Some(s) = q.success {
        add("success = ?", Arg::Int(i64::from(s)));
    }
    if let Some(c) = q.cached {
        add("cached = ?", Arg::Int(i64::from(c)));
    }
    if let Some(f) = q.from_ms {
        add("created_at >= ?", Arg::Int(f));
    }
    if let Some(t) = q.to_ms {
        add("created_at < ?", Arg::Int(t));
    }
    if let Some(d) = q.min_duration_ms {
        add("duration_ms >= ?", Arg::Int(d));
    }
    if let Some(k) = &q.key {
        add(
            &format!("{} = ?", dialect.entry_field("key_id")),
            Arg::Text(k.clone()),
        );
    }
    if let Some(t) = &q.team {
        add(
            &format!("{} = ?", dialect.entry_field("team")),
            Arg::Text(t.clone()),
        );
    }
    for (k, v) in &q.metadata {
        if !valid_meta_key(k) {
            // The client wrote the key as a `meta.{key}` parameter.
            return Err(LogStoreError::BadQuery {
                param: format!("meta.{k}"),
                message: format!("metadata key '{k}': use letters, digits, '_' and '-'"),
            });
        }
        add(
            &format!("{} = ?", dialect.metadata_field(k)),
            Arg::Text(v.clone()),
        );
    }
    Ok((sql, args))
}

/// A metadata key safe to put in a JSON path: letters, digits, `_` and `-`.
fn valid_meta_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 64
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn without_bodies(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("request_body");
        o.remove("response_body");
    }
    v
}

impl LogStore {
    /// Lists entries (without bodies), newest first unless `ascending`; returns
    /// the page and the cursor of the next page.
    pub fn query(&self, q: &LogQuery) -> Result<(Vec<Value>, Option<String>), LogStoreError> {
        self.with_db(|db| query_page(db, q))
    }

    /// One entry with its bodies; `NotFound` when the gateway has no such id.
    pub fn get(&self, gateway: &str, id: &str) -> Result<Value, LogStoreError> {
        self.with_db(|db| get_entry(db, gateway, id))?
            .ok_or_else(|| LogStoreError::NotFound { id: id.to_string() })
    }

    /// Sets `feedback` (-1 or 1), `score` (number) and/or merges `metadata`;
    /// the updated entry, or `NotFound` when the gateway has no such id.
    pub fn patch(&self, gateway: &str, id: &str, patch: &Value) -> Result<Value, LogStoreError> {
        let Some(obj) = patch.as_object() else {
            return Err(LogStoreError::bad_query(
                "body",
                "expected a JSON object with feedback, score and/or metadata",
            ));
        };
        if let Some(k) = obj
            .keys()
            .find(|k| !["feedback", "score", "metadata"].contains(&k.as_str()))
        {
            return Err(LogStoreError::bad_query(
                k.as_str(),
                "unknown field (known: feedback, score, metadata)",
            ));
        }
        self.with_db(|db| {
            let Some(mut entry) = get_entry(db, gateway, id)? else {
                return Err(LogStoreError::NotFound { id: id.to_string() });
            };
            if let Some(f) = obj.get("feedback") {
                match f.as_i64() {
                    Some(-1) | Some(1) => entry["feedback"] = f.clone(),
                    _ => return Err(LogStoreError::bad_query("feedback", "expected -1 or 1")),
                }
            }
            if let Some(s) = obj.get("score") {
                if !s.is_number() {
                    return Err(LogStoreError::bad_query("score", "expected a number"));
                }
                entry["score"] = s.clone();
            }
            if let Some(m) = obj.get("metadata") {
                let Some(m) = m.as_object() else {
                    return Err(LogStoreError::bad_query(
                        "metadata",
                        "expected a flat JSON object",
                    ));
                };
                if !entry["metadata"].is_object() {
                    entry["metadata"] = Value::Object(Default::default());
                }
                for (k, v) in m {
                    if !(v.is_string() || v.is_number() || v.is_boolean()) {
                        return Err(LogStoreError::bad_query(
                            format!("metadata.{k}"),
                            "expected a string, number or boolean",
                        ));
                    }
                    entry["metadata"][k] = v.clone();
                }
            }
            db.exec(
                "UPDATE logs SET entry = ?1 WHERE gateway = ?2 AND id = ?3",
                &[
                    Arg::Text(entry.to_string()),
                    Arg::Text(gateway.to_string()),
                    Arg::Text(id.to_string()),
                ],
            )?;
            Ok(entry)
        })
    }

    /// Totals, per-bucket series and an optional breakdown for a time range.
    pub fn analytics(
        &self,
        gateway: &str,
        from_ms: i64,
        to_ms: i64,
        bucket_ms: i64,
        group_by: Option<&str>,
    ) -> Result<Value, LogStoreError> {
        let meta_key = group_by.and_then(|g| g.strip_prefix("meta."));
        match (group_by, meta_key) {
            (None | Some("model" | "provider" | "key" | "team"), _) => {}
            (_, Some(k)) if valid_meta_key(k) => {}
            (_, Some(k)) => {
                return Err(LogStoreError::bad_query(
                    "group_by",
                    format!("metadata key '{k}': use letters, digits, '_' and '-' (at most 64)"),
                ));
            }
            (Some(other), None) => {
                return Err(LogStoreError::bad_query(
                    "group_by",
                    format!("expected model, provider, key, team or meta.<key>, got '{other}'"),
                ));
            }
        }
        let group = match (group_by, meta_key) {
            (_, Some(k)) => Some(Group::Meta(k)),
            (Some(dim), None) => Some(Group::Dim(dim)),
            (None, _) => None,
        };
        self.with_db(|db| report(db, gateway, from_ms, to_ms, bucket_ms, group))
    }
}

fn query_page(
    db: &mut dyn Db,
    q: &LogQuery,
) -> Result<(Vec<Value>, Option<String>), LogStoreError> {
    let dialect = db.dialect();
    let seq = dialect.seq();
    let (mut sql_where, mut args) = where_clause(q, dialect)?;
    if let Some((at, rowid)) = q.cursor {
        let op = if q.ascending { ">" } else { "<" };
        let n = args.len();
        sql_where.push_str(&format!(
            " AND (created_at {op} ?{} OR (created_at = ?{} AND {seq} {op} ?{}))",
            n + 1,
            n + 2,
            n + 3
        ));
        args.extend([Arg::Int(at), Arg::Int(at), Arg::Int(rowid)]);
    }
    let order = if q.ascending { "ASC" } else { "DESC" };
    let limit = q.limit.clamp(1, 1000);
    let sql = format!(
        "SELECT {seq}, created_at, entry FROM logs WHERE {sql_where} ORDER BY created_at {order}, {seq} {order} LIMIT {}",
        limit + 1
    );
    let rows = db.rows(&sql, &args)?;
    let mut out = Vec::new();
    let mut last = None;
    let mut more = false;
    for row in rows {
        let (rowid, at, text) = (row[0].int(), row[1].int(), row[2].text());
        if out.len() == limit {
            more = true;
            break;
        }
        let mut v: Value =
            serde_json::from_str(&text).map_err(|e| LogStoreError::Corrupt(e.to_string()))?;
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

fn get_entry(db: &mut dyn Db, gateway: &str, id: &str) -> Result<Option<Value>, LogStoreError> {
    let rows = db.rows(
        "SELECT entry FROM logs WHERE gateway = ?1 AND id = ?2",
        &[Arg::Text(gateway.to_string()), Arg::Text(id.to_string())],
    )?;
    rows.first()
        .map(|r| {
            serde_json::from_str(&r[0].text()).map_err(|e| LogStoreError::Corrupt(e.to_string()))
        })
        .transpose()
}
