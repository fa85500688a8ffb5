//! The two engines behind the log store, SQLite (embedded, the default) and
//! PostgreSQL (shared by several replicas), reached through one small
//! interface: run a statement with positional arguments, get rows of plain
//! cells. SQL is written once with `?N` placeholders and the few dialect
//! differences (JSON access, row order column, upsert, pruning) come from
//! [`Dialect`].

use super::LogStoreError;
use serde_json::Value;

/// An argument of a statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// 64-bit integer.
    Int(i64),
    /// Text.
    Text(String),
    /// Float.
    Float(f64),
    /// Bytes.
    Blob(Vec<u8>),
    /// SQL NULL.
    Null,
}

/// A cell of a result row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// SQL NULL.
    Null,
    /// Integer.
    Int(i64),
    /// Float.
    Float(f64),
    /// Text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

impl Cell {
    /// The integer (0 for NULL).
    pub fn int(&self) -> i64 {
        match self {
            Cell::Int(i) => *i,
            Cell::Float(f) => *f as i64,
            Cell::Text(t) => t.parse().unwrap_or(0),
            Cell::Blob(_) | Cell::Null => 0,
        }
    }

    /// The float (0 for NULL).
    pub fn float(&self) -> f64 {
        match self {
            Cell::Int(i) => *i as f64,
            Cell::Float(f) => *f,
            Cell::Text(t) => t.parse().unwrap_or(0.0),
            Cell::Blob(_) | Cell::Null => 0.0,
        }
    }

    /// The text ("" for NULL).
    pub fn text(&self) -> String {
        match self {
            Cell::Text(t) => t.clone(),
            Cell::Int(i) => i.to_string(),
            Cell::Float(f) => f.to_string(),
            Cell::Blob(b) => String::from_utf8_lossy(b).into_owned(),
            Cell::Null => String::new(),
        }
    }
}

/// Which SQL the engine speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite 3.
    Sqlite,
    /// PostgreSQL 12+.
    Postgres,
}

impl Dialect {
    /// The column giving insertion order (ties of `created_at`).
    pub fn seq(self) -> &'static str {
        match self {
            Dialect::Sqlite => "rowid",
            Dialect::Postgres => "seq",
        }
    }

    /// A top-level JSON field of `entry`, as text.
    pub fn entry_field(self, field: &str) -> String {
        match self {
            Dialect::Sqlite => format!("CAST(json_extract(entry, '$.\"{field}\"') AS TEXT)"),
            Dialect::Postgres => format!("(entry::jsonb ->> '{field}')"),
        }
    }

    /// A field of `entry.metadata`, as text.
    pub fn metadata_field(self, key: &str) -> String {
        match self {
            Dialect::Sqlite => {
                format!("CAST(json_extract(entry, '$.metadata.\"{key}\"') AS TEXT)")
            }
            Dialect::Postgres => format!("(entry::jsonb -> 'metadata' ->> '{key}')"),
        }
    }

    /// The suffix of a `SELECT` that locks the rows it reads until the transaction ends
    /// (PostgreSQL; SQLite's `BEGIN IMMEDIATE` already holds the only write lock).
    pub fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }

    /// `sql` with `?N` placeholders in this dialect's form.
    pub fn placeholders(self, sql: &str) -> String {
        match self {
            Dialect::Sqlite => sql.to_string(),
            Dialect::Postgres => {
                let mut out = String::with_capacity(sql.len());
                let mut chars = sql.chars().peekable();
                while let Some(c) = chars.next() {
                    if c == '?' && chars.peek().is_some_and(|n| n.is_ascii_digit()) {
                        out.push('$');
                    } else {
                        out.push(c);
                    }
                }
                out
            }
        }
    }
}

/// One connection to a log database.
pub trait Db {
    /// The dialect.
    fn dialect(&self) -> Dialect;
    /// Rows of a query.
    fn rows(&mut self, sql: &str, args: &[Arg]) -> Result<Vec<Vec<Cell>>, LogStoreError>;
    /// Runs a statement; the number of rows changed.
    fn exec(&mut self, sql: &str, args: &[Arg]) -> Result<u64, LogStoreError>;
}

/// Runs `f` in one transaction: committed when it succeeds, rolled back when it fails.
pub fn transaction<R>(
    db: &mut dyn Db,
    f: impl FnOnce(&mut dyn Db) -> Result<R, LogStoreError>,
) -> Result<R, LogStoreError> {
    // SQLite: take the write lock now, so a read-then-write never meets a
    // writer that committed in between (which busy_timeout cannot wait out).
    let begin = match db.dialect() {
        Dialect::Sqlite => "BEGIN IMMEDIATE",
        Dialect::Postgres => "BEGIN",
    };
    db.exec(begin, &[])?;
    match f(db) {
        Ok(r) => match db.exec("COMMIT", &[]) {
            Ok(_) => Ok(r),
            Err(e) => {
                // Never leave the connection inside a failed transaction.
                let _ = db.exec("ROLLBACK", &[]);
                Err(e)
            }
        },
        Err(e) => {
            let _ = db.exec("ROLLBACK", &[]);
            Err(e)
        }
    }
}

/// The columns stored beside the entry, from the entry itself.
pub fn columns(e: &Value) -> [Arg; 13] {
    let s = |k: &str| match e.get(k).and_then(Value::as_str) {
        Some(v) => Arg::Text(v.to_string()),
        None => Arg::Null,
    };
    let i = |k: &str| match e.get(k).and_then(Value::as_i64) {
        Some(v) => Arg::Int(v),
        None => Arg::Null,
    };
    let b = |k: &str| match e.get(k).and_then(Value::as_bool) {
        Some(v) => Arg::Int(i64::from(v)),
        None => Arg::Null,
    };
    [
        s("id"),
        Arg::Int(e.get("created_at").and_then(Value::as_i64).unwrap_or(0)),
        s("gateway"),
        s("provider"),
        s("model"),
        i("status"),
        b("success"),
        b("cached"),
        i("duration_ms"),
        i("tokens_in"),
        i("tokens_out"),
        match e.get("cost").and_then(Value::as_f64) {
            Some(c) => Arg::Float(c),
            None => Arg::Null,
        },
        Arg::Text(e.to_string()),
    ]
}

/// The insert-or-replace statement of one entry.
pub fn upsert_sql(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => {
            "INSERT OR REPLACE INTO logs (id, created_at, gateway, provider, model, status, success,
             cached, duration_ms, tokens_in, tokens_out, cost, entry)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
        }
        Dialect::Postgres => {
            "INSERT INTO logs (id, created_at, gateway, provider, model, status, success,
             cached, duration_ms, tokens_in, tokens_out, cost, entry)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             ON CONFLICT (id) DO UPDATE SET created_at = EXCLUDED.created_at,
             gateway = EXCLUDED.gateway, provider = EXCLUDED.provider, model = EXCLUDED.model,
             status = EXCLUDED.status, success = EXCLUDED.success, cached = EXCLUDED.cached,
             duration_ms = EXCLUDED.duration_ms, tokens_in = EXCLUDED.tokens_in,
             tokens_out = EXCLUDED.tokens_out, cost = EXCLUDED.cost, entry = EXCLUDED.entry"
        }
    }
}

/// Deletes all but the newest `?1` entries.
pub fn prune_count_sql(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => {
            "DELETE FROM logs WHERE rowid IN (SELECT rowid FROM logs ORDER BY created_at DESC, rowid DESC LIMIT -1 OFFSET ?1)"
        }
        Dialect::Postgres => {
            "DELETE FROM logs WHERE seq IN (SELECT seq FROM logs ORDER BY created_at DESC, seq DESC OFFSET $1)"
        }
    }
}

// ---- SQLite ----

impl Db for rusqlite::Connection {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn rows(&mut self, sql: &str, args: &[Arg]) -> Result<Vec<Vec<Cell>>, LogStoreError> {
        let mut stmt = self.prepare_cached(sql)?;
        let n = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(args.iter().map(sqlite_value)))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut cells = Vec::with_capacity(n);
            for i in 0..n {
                use rusqlite::types::ValueRef;
                cells.push(match row.get_ref(i)? {
                    ValueRef::Null => Cell::Null,
                    ValueRef::Integer(v) => Cell::Int(v),
                    ValueRef::Real(v) => Cell::Float(v),
                    ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
                });
            }
            out.push(cells);
        }
        Ok(out)
    }

    fn exec(&mut self, sql: &str, args: &[Arg]) -> Result<u64, LogStoreError> {
        let n = self
            .prepare_cached(sql)?
            .execute(rusqlite::params_from_iter(args.iter().map(sqlite_value)))?;
        Ok(n as u64)
    }
}

/// An argument as a SQLite value.
pub fn sqlite_value(a: &Arg) -> rusqlite::types::Value {
    use rusqlite::types::Value as V;
    match a {
        Arg::Int(i) => V::Integer(*i),
        Arg::Text(t) => V::Text(t.clone()),
        Arg::Float(f) => V::Real(*f),
        Arg::Blob(b) => V::Blob(b.clone()),
        Arg::Null => V::Null,
    }
}

// ---- PostgreSQL ----

/// Schema of the PostgreSQL log store, applied at start (idempotent). The
/// version table records what was applied, so later versions can migrate.
pub const POSTGRES_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS aigw_schema (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS logs (
    seq BIGSERIAL NOT NULL,
    id TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    gateway TEXT, provider TEXT, model TEXT,
    status BIGINT, success BIGINT, cached BIGINT,
    duration_ms BIGINT, tokens_in BIGINT, tokens_out BIGINT, cost DOUBLE PRECISION,
    entry TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_created_at ON logs(created_at);
CREATE INDEX IF NOT EXISTS logs_gateway_created ON logs(gateway, created_at);
CREATE INDEX IF NOT EXISTS logs_seq ON logs(seq);
INSERT INTO aigw_schema (version) SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM aigw_schema);
";

/// The advisory lock taken while the schema is applied.
const SCHEMA_LOCK: i64 = 0x6169_6777;

/// The schema version whose stores have analytics rollups.
pub const ROLLUP_VERSION: i64 = 2;

/// A PostgreSQL connection (the synchronous client; used from the writer
/// thread and from blocking tasks).
pub struct Postgres {
    url: String,
    client: Option<postgres::Client>,
    /// Prepared statements of the live client, by SQL text.
    prepared: std::collections::HashMap<String, postgres::Statement>,
}

impl Postgres {
    /// Connects and applies the schema.
    pub fn connect(url: &str) -> Result<Postgres, LogStoreError> {
        let mut pg = Postgres {
            url: url.to_string(),
            client: None,
            prepared: Default::default(),
        };
        // One replica at a time: concurrent CREATE TABLE IF NOT EXISTS can collide.
        let schema = format!(
            "SELECT pg_advisory_lock({SCHEMA_LOCK});{POSTGRES_SCHEMA}{}SELECT pg_advisory_unlock({SCHEMA_LOCK});",
            super::rollup::schema(Dialect::Postgres)
        );
        pg.client()?
            .batch_execute(&schema)
            .map_err(|e| LogStoreError::open("cannot create the log schema", e))?;
        Ok(pg)
    }

    /// The live client, reconnecting after a failure.
    pub fn client(&mut self) -> Result<&mut postgres::Client, LogStoreError> {
        if self.client.as_ref().is_some_and(|c| c.is_closed()) {
            self.reset();
        }
        if self.client.is_none() {
            // The error names the step only: the URL may hold a password.
            let c = postgres::Client::connect(&self.url, postgres::NoTls)
                .map_err(|e| LogStoreError::open("cannot connect to PostgreSQL", e))?;
            self.client = Some(c);
        }
        self.client
            .as_mut()
            .ok_or(LogStoreError::Unavailable("no PostgreSQL connection"))
    }

    /// Forgets the connection (after an error), so the next call reconnects.
    pub fn reset(&mut self) {
        self.client = None;
        self.prepared.clear();
    }

    /// The prepared statement of `sql` (in `?N` form) on the live client.
    fn statement(&mut self, sql: &str) -> Result<postgres::Statement, LogStoreError> {
        if let Some(s) = self.prepared.get(sql) {
            return Ok(s.clone());
        }
        let text = Dialect::Postgres.placeholders(sql);
        let stmt = match self.client()?.prepare(&text) {
            Ok(s) => s,
            Err(e) => {
                if e.is_closed() {
                    self.reset();
                }
                return Err(e.into());
            }
        };
        // Bounded: the statements are the store's own, but reports vary a little.
        if self.prepared.len() >= 256 {
            self.prepared.clear();
        }
        self.prepared.insert(sql.to_string(), stmt.clone());
        Ok(stmt)
    }

    /// Writes the admitted entries of a batch, and the rollups of all, in one transaction.
    pub fn write_batch(&mut self, batch: &[Value], admitted: &[bool]) -> Result<(), LogStoreError> {
        transaction(self, |db| {
            for (e, _) in batch.iter().zip(admitted).filter(|(_, a)| **a) {
                db.exec(upsert_sql(Dialect::Postgres), &columns(e))?;
            }
            let facts: Vec<_> = batch.iter().map(super::rollup::Fact::of_entry).collect();
            super::rollup::apply(db, &facts, 1, true)
        })
    }

    /// Counts the entries already stored into the analytics rollups, once per
    /// database: the first replica to get here does it while the others wait.
    pub fn backfill_rollups(&mut self) -> Result<Option<u64>, LogStoreError> {
        transaction(self, |db| {
            let rows = db.rows("SELECT version FROM aigw_schema FOR UPDATE", &[])?;
            if rows.first().is_some_and(|r| r[0].int() >= ROLLUP_VERSION) {
                return Ok(None);
            }
            let n = super::rollup::backfill(db)?;
            db.exec(
                "UPDATE aigw_schema SET version = CAST(?1 AS BIGINT)",
                &[Arg::Int(ROLLUP_VERSION)],
            )?;
            Ok(Some(n))
        })
    }
}

/// SQL NULL for a parameter of any type.
#[derive(Debug)]
struct AnyNull;

impl postgres::types::ToSql for AnyNull {
    fn to_sql(
        &self,
        _: &postgres::types::Type,
        _: &mut bytes::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        Ok(postgres::types::IsNull::Yes)
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

fn pg_param(a: &Arg) -> Box<dyn postgres::types::ToSql + Sync> {
    match a {
        Arg::Int(i) => Box::new(*i),
        Arg::Text(t) => Box::new(t.clone()),
        Arg::Float(f) => Box::new(*f),
        Arg::Blob(b) => Box::new(b.clone()),
        Arg::Null => Box::new(AnyNull),
    }
}

impl Db for Postgres {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn rows(&mut self, sql: &str, args: &[Arg]) -> Result<Vec<Vec<Cell>>, LogStoreError> {
        use postgres::types::Type;
        let params: Vec<Box<dyn postgres::types::ToSql + Sync>> =
            args.iter().map(pg_param).collect();
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
            params.iter().map(|p| p.as_ref()).collect();
        let result = if args.is_empty() && !sql.contains('?') {
            // Also statements that cannot be prepared (BEGIN, COMMIT).
            self.client()?.query(sql, &[])
        } else {
            let stmt = self.statement(sql)?;
            self.client()?.query(&stmt, &refs)
        };
        let rows = match result {
            Ok(r) => r,
            Err(e) => {
                if e.is_closed() {
                    self.reset();
                }
                return Err(e.into());
            }
        };
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut cells = Vec::with_capacity(row.len());
            for (i, col) in row.columns().iter().enumerate() {
                let t = col.type_();
                let cell = if *t == Type::INT8 {
                    row.try_get::<_, Option<i64>>(i)
                        .map(|v| v.map_or(Cell::Null, Cell::Int))
                } else if *t == Type::INT4 {
                    row.try_get::<_, Option<i32>>(i)
                        .map(|v| v.map_or(Cell::Null, |v| Cell::Int(v.into())))
                } else if *t == Type::FLOAT8 {
                    row.try_get::<_, Option<f64>>(i)
                        .map(|v| v.map_or(Cell::Null, Cell::Float))
                } else if *t == Type::BYTEA {
                    row.try_get::<_, Option<Vec<u8>>>(i)
                        .map(|v| v.map_or(Cell::Null, Cell::Blob))
                } else {
                    row.try_get::<_, Option<String>>(i)
                        .map(|v| v.map_or(Cell::Null, Cell::Text))
                };
                cells.push(
                    cell.map_err(|e| {
                        LogStoreError::Corrupt(format!("column {}: {e}", col.name()))
                    })?,
                );
            }
            out.push(cells);
        }
        Ok(out)
    }

    fn exec(&mut self, sql: &str, args: &[Arg]) -> Result<u64, LogStoreError> {
        let params: Vec<Box<dyn postgres::types::ToSql + Sync>> =
            args.iter().map(pg_param).collect();
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
            params.iter().map(|p| p.as_ref()).collect();
        let result = if args.is_empty() {
            self.client()?.execute(sql, &[])
        } else {
            let stmt = self.statement(sql)?;
            self.client()?.execute(&stmt, &refs)
        };
        result.map_err(|e| {
            if e.is_closed() {
                self.reset();
            }
            e.into()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_rewritten_for_postgres_only() {
        let sql = "SELECT a FROM t WHERE b = ?1 AND c = ?12 AND d = '?'";
        assert_eq!(Dialect::Sqlite.placeholders(sql), sql);
        assert_eq!(
            Dialect::Postgres.placeholders(sql),
            "SELECT a FROM t WHERE b = $1 AND c = $12 AND d = '?'"
        );
    }
}
