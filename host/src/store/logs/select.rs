//! Selecting log entries the way Cloudflare's logs API does: conditions on columns, entry
//! fields and metadata (`eq`, `neq`, `contains`, `lt`, `gt`), a free-text search, a sort
//! column, page and page size; counting what matches and deleting it.

use super::db::{Arg, Dialect, transaction};
use super::{LogStore, LogStoreError};
use serde_json::Value;

/// What a condition compares.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// A column of the logs table (numeric or text).
    Column(&'static str),
    /// A top-level field of the entry, as text.
    Entry(&'static str),
    /// `metadata.key`: the entry's metadata has this key.
    MetadataKey,
    /// `metadata.value`: one of the entry's metadata values.
    MetadataValue,
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Equal to one of the values.
    Eq,
    /// Equal to none of the values.
    Neq,
    /// Contains one of the values (text, case-insensitive).
    Contains,
    /// Less than the value.
    Lt,
    /// Greater than the value.
    Gt,
    /// At least the value.
    Ge,
    /// At most the value.
    Le,
}

impl Op {
    /// Cloudflare's operator names.
    pub fn parse(name: &str) -> Option<Op> {
        Some(match name {
            "eq" => Op::Eq,
            "neq" => Op::Neq,
            "contains" => Op::Contains,
            "lt" => Op::Lt,
            "gt" => Op::Gt,
            _ => return None,
        })
    }
}

/// One condition; several values are alternatives (`eq`: any of them).
#[derive(Debug, Clone, PartialEq)]
pub struct Cond {
    /// What is compared.
    pub field: Field,
    /// How.
    pub op: Op,
    /// With what.
    pub values: Vec<Arg>,
}

/// A filtered, sorted page of one gateway's entries.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Gateway (required).
    pub gateway: String,
    /// All must hold.
    pub conds: Vec<Cond>,
    /// Text searched in the whole entry (bodies and metadata included), case-insensitive.
    pub search: Option<String>,
    /// Sort column (a column of the logs table); `created_at` when none.
    pub order_by: Option<&'static str>,
    /// Oldest first.
    pub ascending: bool,
    /// Entries skipped.
    pub offset: usize,
    /// Page size.
    pub limit: usize,
}

fn field_sql(field: &Field, dialect: Dialect) -> String {
    match field {
        Field::Column(c) => (*c).to_string(),
        Field::Entry(f) => dialect.entry_field(f),
        // Both handled in `cond_sql`.
        Field::MetadataKey | Field::MetadataValue => String::new(),
    }
}

fn like(v: &Arg) -> Arg {
    let text = match v {
        Arg::Text(t) => t.clone(),
        Arg::Int(i) => i.to_string(),
        Arg::Float(f) => f.to_string(),
        Arg::Blob(_) | Arg::Null => String::new(),
    };
    // `\` escapes the pattern characters, so a searched `%` or `_` is literal.
    let escaped = text
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    Arg::Text(format!("%{escaped}%"))
}

/// The SQL of one condition, with `?` placeholders for its arguments.
fn cond_sql(c: &Cond, dialect: Dialect, args: &mut Vec<Arg>) -> String {
    let one = |expr: &str, v: &Arg, args: &mut Vec<Arg>| -> String {
        match c.op {
            Op::Contains => {
                args.push(like(v));
                format!("LOWER(CAST({expr} AS TEXT)) LIKE ? ESCAPE '\\'")
            }
            op => {
                // Integer columns compared with a fraction: compared as doubles (PostgreSQL
                // refuses a float parameter for a BIGINT).
                let expr = if matches!(v, Arg::Float(_)) {
                    format!("CAST({expr} AS DOUBLE PRECISION)")
                } else {
                    expr.to_string()
                };
                let expr = expr.as_str();
                args.push(v.clone());
                let sym = match op {
                    Op::Eq | Op::Neq => "=",
                    Op::Lt => "<",
                    Op::Gt => ">",
                    Op::Ge => ">=",
                    Op::Le => "<=",
                    Op::Contains => "=",
                };
                format!("{expr} {sym} ?")
            }
        }
    };
    let alternatives: Vec<String> = c
        .values
        .iter()
        .map(|v| match &c.field {
            Field::MetadataKey => {
                args.push(v.clone());
                match dialect {
                    Dialect::Sqlite => {
                        "EXISTS (SELECT 1 FROM json_each(entry, '$.metadata') WHERE key = ?)"
                            .to_string()
                    }
                    Dialect::Postgres => "jsonb_exists(entry::jsonb -> 'metadata', ?)".to_string(),
                }
            }
            Field::MetadataValue => {
                let each = match dialect {
                    Dialect::Sqlite => "json_each(entry, '$.metadata')",
                    Dialect::Postgres => "jsonb_each_text(entry::jsonb -> 'metadata')",
                };
                format!(
                    "EXISTS (SELECT 1 FROM {each} WHERE {})",
                    one("value", v, args)
                )
            }
            field => one(&field_sql(field, dialect), v, args),
        })
        .collect();
    let any = format!("({})", alternatives.join(" OR "));
    // `neq` keeps the entries without the field (NULL compares as unknown).
    if c.op == Op::Neq {
        format!("NOT COALESCE({any}, FALSE)")
    } else {
        any
    }
}

/// The WHERE clause of a selection, placeholders numbered `?1…`.
fn where_sql(s: &Selection, dialect: Dialect) -> (String, Vec<Arg>) {
    let mut args = vec![Arg::Text(s.gateway.clone())];
    let mut parts = vec!["gateway = ?".to_string()];
    for c in &s.conds {
        if c.values.is_empty() {
            continue;
        }
        parts.push(cond_sql(c, dialect, &mut args));
    }
    if let Some(q) = &s.search {
        parts.push("LOWER(entry) LIKE ? ESCAPE '\\'".to_string());
        args.push(like(&Arg::Text(q.clone())));
    }
    (number(&parts.join(" AND ")), args)
}

/// `?` → `?1`, `?2`, … in order (a `??` is PostgreSQL's `?` operator, kept as one `?`).
fn number(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    let mut chars = sql.chars().peekable();
    while let Some(ch) = chars.next() {
        if ch == '?' {
            if chars.peek() == Some(&'?') {
                chars.next();
                out.push('?');
                continue;
            }
            n += 1;
            out.push_str(&format!("?{n}"));
        } else {
            out.push(ch);
        }
    }
    out
}

impl LogStore {
    /// A page of entries (without bodies) and how many match in all.
    pub fn select(&self, s: &Selection) -> Result<(Vec<Value>, u64), LogStoreError> {
        self.with_db(|db| {
            let dialect = db.dialect();
            let (w, args) = where_sql(s, dialect);
            let total = db
                .rows(&format!("SELECT COUNT(*) FROM logs WHERE {w}"), &args)?
                .first()
                .map(|r| r[0].int())
                .unwrap_or(0) as u64;
            let order = s.order_by.unwrap_or("created_at");
            let dir = if s.ascending { "ASC" } else { "DESC" };
            let seq = dialect.seq();
            let sql = format!(
                "SELECT created_at, entry FROM logs WHERE {w} ORDER BY {order} {dir}, created_at {dir}, {seq} {dir} LIMIT {} OFFSET {}",
                s.limit.clamp(1, 1000),
                s.offset
            );
            let mut out = Vec::new();
            for row in db.rows(&sql, &args)? {
                let mut v: Value = serde_json::from_str(&row[1].text())
                    .map_err(|e| LogStoreError::Corrupt(e.to_string()))?;
                if let Some(o) = v.as_object_mut() {
                    o.insert("created_at".into(), Value::from(row[0].int()));
                    o.remove("request_body");
                    o.remove("response_body");
                }
                out.push(v);
            }
            Ok((out, total))
        })
    }

    /// Deletes what a selection matches: every match, or with `limit` the first `limit` in
    /// its order. How many were deleted.
    pub fn delete_selected(
        &self,
        s: &Selection,
        limit: Option<usize>,
    ) -> Result<u64, LogStoreError> {
        self.with_db(|db| {
            transaction(db, |db| {
                let dialect = db.dialect();
                let (w, args) = where_sql(s, dialect);
                let seq = dialect.seq();
                let sql = match limit {
                    None => format!("DELETE FROM logs WHERE {w}"),
                    Some(n) => {
                        let order = s.order_by.unwrap_or("created_at");
                        let dir = if s.ascending { "ASC" } else { "DESC" };
                        format!(
                            "DELETE FROM logs WHERE {seq} IN (SELECT {seq} FROM logs WHERE {w} ORDER BY {order} {dir}, {seq} {dir} LIMIT {n})"
                        )
                    }
                };
                db.exec(&sql, &args)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store() -> (tempfile::TempDir, LogStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        for (n, (model, ok, cost, team)) in [
            ("gpt-4o-mini", true, 0.5, "search"),
            ("gpt-4o", true, 2.0, "ads"),
            ("gpt-4o-mini", false, 0.0, "search"),
            ("claude-3-haiku", true, 1.0, "ads"),
        ]
        .iter()
        .enumerate()
        {
            store
                .append(json!({"id": format!("r{n}"), "created_at": n, "gateway": "g", "model": model,
                               "provider": "openai", "success": ok, "status": if *ok { 200 } else { 429 },
                               "cost": cost, "metadata": {"team": team},
                               "request_body": format!("prompt number {n} 100%")}))
                .unwrap();
        }
        store
            .append(json!({"id": "other", "created_at": 9, "gateway": "h", "model": "gpt-4o"}))
            .unwrap();
        store.close();
        (dir, store)
    }

    fn ids(v: &[Value]) -> Vec<&str> {
        v.iter().filter_map(|e| e["id"].as_str()).collect()
    }

    #[test]
    fn conditions_search_order_pages_and_delete() {
        let (_dir, store) = store();
        let base = Selection {
            gateway: "g".into(),
            limit: 10,
            ..Selection::default()
        };
        let (all, total) = store.select(&base).unwrap();
        assert_eq!((ids(&all), total), (vec!["r3", "r2", "r1", "r0"], 4));

        let s = Selection {
            conds: vec![Cond {
                field: Field::Column("model"),
                op: Op::Contains,
                values: vec![Arg::Text("4O-MINI".into())],
            }],
            ascending: true,
            ..base.clone()
        };
        assert_eq!(ids(&store.select(&s).unwrap().0), ["r0", "r2"]);

        let s = Selection {
            conds: vec![
                Cond {
                    field: Field::Column("cost"),
                    op: Op::Gt,
                    values: vec![Arg::Float(0.75)],
                },
                Cond {
                    field: Field::Column("model"),
                    op: Op::Neq,
                    values: vec![Arg::Text("gpt-4o".into())],
                },
            ],
            ..base.clone()
        };
        assert_eq!(ids(&store.select(&s).unwrap().0), ["r3"]);

        let s = Selection {
            conds: vec![Cond {
                field: Field::MetadataValue,
                op: Op::Eq,
                values: vec![Arg::Text("ads".into())],
            }],
            order_by: Some("cost"),
            ascending: true,
            ..base.clone()
        };
        assert_eq!(ids(&store.select(&s).unwrap().0), ["r3", "r1"]);
        let s = Selection {
            conds: vec![Cond {
                field: Field::MetadataKey,
                op: Op::Eq,
                values: vec![Arg::Text("team".into())],
            }],
            ..base.clone()
        };
        assert_eq!(store.select(&s).unwrap().1, 4);

        // The search reads bodies too; a searched `%` is literal.
        let s = Selection {
            search: Some("NUMBER 2 100%".into()),
            ..base.clone()
        };
        assert_eq!(ids(&store.select(&s).unwrap().0), ["r2"]);
        let s = Selection {
            search: Some("2%".into()),
            ..base.clone()
        };
        assert!(store.select(&s).unwrap().0.is_empty());

        // Pages.
        let s = Selection {
            limit: 3,
            offset: 3,
            ..base.clone()
        };
        let (page, total) = store.select(&s).unwrap();
        assert_eq!((ids(&page), total), (vec!["r0"], 4));

        // Delete what failed; the other gateway is untouched.
        let s = Selection {
            conds: vec![Cond {
                field: Field::Column("success"),
                op: Op::Eq,
                values: vec![Arg::Int(0)],
            }],
            ..base.clone()
        };
        assert_eq!(store.delete_selected(&s, None).unwrap(), 1);
        assert_eq!(store.select(&base).unwrap().1, 3);
        assert_eq!(store.delete_selected(&base, Some(2)).unwrap(), 2);
        assert_eq!(ids(&store.select(&base).unwrap().0), ["r0"]);
        let other = Selection {
            gateway: "h".into(),
            limit: 10,
            ..Selection::default()
        };
        assert_eq!(store.select(&other).unwrap().1, 1);
    }

    #[test]
    fn placeholders_are_numbered_in_order() {
        assert_eq!(
            number("a = ? AND b ?? ? OR c = ?"),
            "a = ?1 AND b ? ?2 OR c = ?3"
        );
    }
}
