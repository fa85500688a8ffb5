//! The request log store: SQLite in WAL mode (embedded, the default) or
//! PostgreSQL (`[logs] backend = "postgres"`, shared by several replicas),
//! written in batches by one writer thread so appends never wait on disk. A
//! full queue drops the entry and counts it rather than blocking a request.
//! Entries are JSON objects; the columns analytics filter on are also stored
//! on their own. Calls fail with a [`LogStoreError`], which also decides the
//! HTTP answer of the admin API and dashboard.

use rusqlite::Connection;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub mod db;
mod error;
mod limit;
mod query;
mod recost;
mod rollup;
pub mod select;
use db::{Arg, Db};
pub use error::{BackendError, LogStoreError};
pub use limit::{GatewayLimits, GatewayLogLimit, WhenFull, limits_of};
pub use query::LogQuery;
pub use recost::RecostReport;

/// Queue length between requests and the writer.
const QUEUE: usize = 16_384;
/// Most entries written in one transaction.
const BATCH: usize = 512;
/// How long the writer lets entries gather after the first one of a batch.
const LINGER: std::time::Duration = std::time::Duration::from_millis(10);

/// Counters of the log store.
#[derive(Debug, Default)]
pub struct LogCounters {
    /// Entries written.
    pub written: AtomicU64,
    /// Entries dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Write failures.
    pub errors: AtomicU64,
    /// Entries not stored because their gateway's log was full (`stop_inserting`).
    pub full: AtomicU64,
    /// Entries deleted to make room in a full gateway log (`delete_oldest`).
    pub evicted: AtomicU64,
}

/// Where the entries live.
enum Backend {
    /// The SQLite file (a connection per reader).
    Sqlite(PathBuf),
    /// A PostgreSQL connection for readers (the writer has its own).
    Postgres(Box<Mutex<db::Postgres>>),
}

/// Handle to the log store.
pub struct LogStore {
    backend: Backend,
    tx: Mutex<Option<SyncSender<Value>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Per-gateway limits, read by the writer.
    limits: Arc<Mutex<GatewayLimits>>,
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

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = match &self.backend {
            Backend::Sqlite(p) => p.display().to_string(),
            Backend::Postgres(_) => "postgres".to_string(),
        };
        f.debug_struct("LogStore")
            .field("backend", &backend)
            .finish_non_exhaustive()
    }
}

/// The writer's connection.
enum Writer {
    Sqlite(Box<Connection>),
    Postgres(Box<db::Postgres>),
}

impl Writer {
    fn db(&mut self) -> &mut dyn Db {
        match self {
            Writer::Sqlite(c) => &mut **c,
            Writer::Postgres(p) => &mut **p,
        }
    }

    /// Stores the `admitted` entries of `batch` and counts all of them in the rollups.
    fn write(&mut self, batch: &[Value], admitted: &[bool]) -> Result<(), LogStoreError> {
        match self {
            Writer::Sqlite(c) => write_batch(c, batch, admitted),
            Writer::Postgres(p) => match p.write_batch(batch, admitted) {
                Err(first) if first.retryable() => {
                    // Once more on a new connection: the server may have
                    // restarted since the last batch.
                    tracing::warn!(error = %first, "log store write failed; retrying on a new connection");
                    p.reset();
                    p.write_batch(batch, admitted)
                }
                other => other,
            },
        }
    }
}

impl LogStore {
    /// Connects to PostgreSQL at `url` (creating or migrating the schema) and
    /// starts the writer.
    pub fn open_postgres(url: &str, retention: Retention) -> Result<LogStore, LogStoreError> {
        // The synchronous client runs its own small runtime: connect on a
        // plain thread, never on an async worker.
        let url_owned = url.to_string();
        let (reader, writer) = std::thread::spawn(move || {
            let reader = db::Postgres::connect(&url_owned)?;
            let mut writer = db::Postgres::connect(&url_owned)?;
            if let Some(n) = writer.backfill_rollups()? {
                tracing::info!(entries = n, "analytics rollups built from the stored logs");
            }
            Ok::<_, LogStoreError>((reader, writer))
        })
        .join()
        .map_err(|_| LogStoreError::Unavailable("the PostgreSQL connect thread failed"))??;
        Self::start(
            Backend::Postgres(Box::new(Mutex::new(reader))),
            Writer::Postgres(Box::new(writer)),
            retention,
        )
    }

    fn start(
        backend: Backend,
        writer: Writer,
        retention: Retention,
    ) -> Result<LogStore, LogStoreError> {
        let (tx, rx) = sync_channel(QUEUE);
        let counters = Arc::new(LogCounters::default());
        let limits = Arc::new(Mutex::new(GatewayLimits::new()));
        let c = counters.clone();
        let keeper = limit::Keeper::new(limits.clone());
        let writer = std::thread::Builder::new()
            .name("aigw-log-writer".into())
            .spawn(move || write_loop(writer, rx, c, retention, keeper))
            .map_err(|e| LogStoreError::open("cannot start the log writer", e))?;
        Ok(LogStore {
            backend,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            limits,
            counters,
        })
    }

    /// Sets the per-gateway log limits (from the config; replaced on reload).
    pub fn set_gateway_limits(&self, limits: GatewayLimits) {
        if let Ok(mut l) = self.limits.lock() {
            *l = limits;
        }
    }

    /// Runs `f` on a reading connection.
    pub(crate) fn with_db<R>(
        &self,
        f: impl FnOnce(&mut dyn Db) -> Result<R, LogStoreError>,
    ) -> Result<R, LogStoreError> {
        match &self.backend {
            Backend::Sqlite(path) => {
                let mut conn = open_conn(path)?;
                f(&mut conn)
            }
            Backend::Postgres(pg) => {
                let mut pg = pg
                    .lock()
                    .map_err(|_| LogStoreError::Unavailable("log store unavailable"))?;
                f(&mut *pg)
            }
        }
    }

    /// Opens (or creates) `dir/logs.sqlite` and starts the writer.
    pub fn open(dir: &Path) -> Result<LogStore, LogStoreError> {
        Self::open_with_retention(dir, Retention::default())
    }

    /// Like `open`, deleting the oldest entries beyond `retention`.
    pub fn open_with_retention(
        dir: &Path,
        retention: Retention,
    ) -> Result<LogStore, LogStoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| LogStoreError::open(format!("{}: cannot create", dir.display()), e))?;
        let path = dir.join("logs.sqlite");
        let mut conn = open_conn(&path)?;
        if let Some(n) = backfill_rollups(&mut conn)? {
            tracing::info!(entries = n, "analytics rollups built from the stored logs");
        }
        Self::start(
            Backend::Sqlite(path),
            Writer::Sqlite(Box::new(conn)),
            retention,
        )
    }

    /// Queues an entry (a JSON object with a string `id`).
    pub fn append(&self, entry: Value) -> Result<(), LogStoreError> {
        match entry.get("id") {
            Some(Value::String(id)) if !id.is_empty() => {}
            _ => return Err(LogStoreError::MissingId),
        }
        let guard = self
            .tx
            .lock()
            .map_err(|_| LogStoreError::Unavailable("log store unavailable"))?;
        let Some(tx) = guard.as_ref() else {
            return Err(LogStoreError::Closed);
        };
        match tx.try_send(entry) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                Err(LogStoreError::QueueFull)
            }
            Err(TrySendError::Disconnected(_)) => Err(LogStoreError::Closed),
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
    pub fn recent(&self, limit: usize) -> Result<Vec<Value>, LogStoreError> {
        self.with_db(|db| {
            let sql = format!(
                "SELECT entry FROM logs ORDER BY created_at DESC, {} DESC LIMIT ?1",
                db.dialect().seq()
            );
            db.rows(&sql, &[Arg::Int(limit as i64)])?
                .iter()
                .map(|r| {
                    serde_json::from_str(&r[0].text())
                        .map_err(|e| LogStoreError::Corrupt(e.to_string()))
                })
                .collect()
        })
    }
}

impl Drop for LogStore {
    fn drop(&mut self) {
        self.close();
    }
}

fn open_conn(path: &Path) -> Result<Connection, LogStoreError> {
    let conn = Connection::open(path)
        .map_err(|e| LogStoreError::open(format!("{}: cannot open", path.display()), e))?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;",
    )
    .and_then(|_| conn.execute_batch(SCHEMA))
    .and_then(|_| conn.execute_batch(&rollup::schema(db::Dialect::Sqlite)))
    .map_err(|e| LogStoreError::open(format!("{}: cannot prepare", path.display()), e))?;
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

fn prune(db: &mut dyn Db, retention: Retention) -> Result<u64, LogStoreError> {
    let mut deleted = 0;
    if let Some(days) = retention.max_age_days {
        let cutoff = crate::store::now_ms() as i64 - (days as i64) * 86_400_000;
        deleted += db.exec(
            "DELETE FROM logs WHERE created_at < ?1",
            &[Arg::Int(cutoff)],
        )?;
    }
    if let Some(max) = retention.max_entries {
        let sql = db::prune_count_sql(db.dialect());
        deleted += db.exec(sql, &[Arg::Int(max as i64)])?;
    }
    Ok(deleted)
}

fn write_loop(
    mut conn: Writer,
    rx: Receiver<Value>,
    counters: Arc<LogCounters>,
    retention: Retention,
    mut keeper: limit::Keeper,
) {
    let prunes = retention.max_entries.is_some() || retention.max_age_days.is_some();
    let mut since_prune = 0usize;
    let mut last_prune = std::time::Instant::now();
    if prunes {
        let _ = prune(conn.db(), retention);
    }
    let mut backlog = false;
    while let Ok(first) = rx.recv() {
        // Let a burst gather: one transaction for many entries instead of a
        // commit (and a wake-up of this thread) per request. Sleeping, not
        // waiting on the queue, so senders have no one to wake meanwhile.
        if !backlog {
            std::thread::sleep(LINGER);
        }
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        backlog = batch.len() == BATCH;
        // A full gateway log under `stop_inserting` stores nothing more; when its count
        // cannot be read, the entries are stored (the write will tell what is wrong).
        let admitted = keeper.admit(conn.db(), &batch).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "log limits: cannot count a gateway's entries");
            keeper.forget();
            vec![true; batch.len()]
        });
        match conn.write(&batch, &admitted) {
            Ok(()) => {
                let stored = admitted.iter().filter(|a| **a).count() as u64;
                counters.written.fetch_add(stored, Ordering::Relaxed);
                counters
                    .full
                    .fetch_add(batch.len() as u64 - stored, Ordering::Relaxed);
                match keeper.trim(conn.db()) {
                    Ok(n) => {
                        counters.evicted.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(e) => {
                        keeper.forget();
                        tracing::warn!(error = %e, "log limits: cannot delete the oldest entries");
                    }
                }
                since_prune += batch.len();
                let due = since_prune >= 1000
                    || last_prune.elapsed() >= std::time::Duration::from_secs(30);
                if prunes && due {
                    if let Err(e) = prune(conn.db(), retention) {
                        tracing::warn!("log retention failed: {e}");
                    }
                    since_prune = 0;
                    last_prune = std::time::Instant::now();
                }
            }
            Err(e) => {
                keeper.forget();
                counters.errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, entries = batch.len(), "log store write failed");
            }
        }
    }
}

/// Writes a batch and its analytics rollups in one transaction.
fn write_batch(
    conn: &mut Connection,
    batch: &[Value],
    admitted: &[bool],
) -> Result<(), LogStoreError> {
    db::transaction(conn, |db| {
        for (e, _) in batch.iter().zip(admitted).filter(|(_, a)| **a) {
            db.exec(db::upsert_sql(db::Dialect::Sqlite), &db::columns(e))?;
        }
        let facts: Vec<_> = batch.iter().map(rollup::Fact::of_entry).collect();
        rollup::apply(db, &facts, 1, true)
    })
}

/// Counts the entries already stored into the analytics rollups, once per file
/// (`PRAGMA user_version` records it).
fn backfill_rollups(conn: &mut Connection) -> Result<Option<u64>, LogStoreError> {
    db::transaction(conn, |db| {
        let version = db.rows("PRAGMA user_version", &[])?;
        if version
            .first()
            .is_some_and(|r| r[0].int() >= db::ROLLUP_VERSION)
        {
            return Ok(None);
        }
        let n = rollup::backfill(db)?;
        db.exec(
            &format!("PRAGMA user_version = {}", db::ROLLUP_VERSION),
            &[],
        )?;
        Ok(Some(n))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

    #[test]
    fn client_mistakes_are_bad_queries_naming_the_parameter() {
        use crate::http::error::GatewayError;
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        store
            .append(json!({"id": "r1", "created_at": 1, "gateway": "g"}))
            .unwrap();
        store.close();

        let q = LogQuery {
            gateway: "g".into(),
            metadata: vec![("user id".into(), "ada".into())],
            limit: 10,
            ..LogQuery::default()
        };
        let e = store.query(&q).unwrap_err();
        assert!(
            matches!(&e, LogStoreError::BadQuery { param, .. } if param == "meta.user id"),
            "{e:?}"
        );
        let g = GatewayError::from(e);
        assert_eq!(g.status, hyper::StatusCode::BAD_REQUEST);
        assert!(g.message.contains("'user id'"), "{}", g.message);

        let e = store.analytics("g", 0, 10, 1, Some("colour")).unwrap_err();
        assert!(
            matches!(&e, LogStoreError::BadQuery { param, .. } if param == "group_by"),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "group_by: expected model, provider, key, team or meta.<key>, got 'colour'"
        );

        let e = store.patch("g", "r1", &json!({"feedback": 5})).unwrap_err();
        assert_eq!(e.to_string(), "feedback: expected -1 or 1");
        assert!(matches!(&e, LogStoreError::BadQuery { param, .. } if param == "feedback"));
        let e = store.patch("g", "r1", &json!({"colour": 1})).unwrap_err();
        assert!(matches!(&e, LogStoreError::BadQuery { param, .. } if param == "colour"));
        assert_eq!(
            store.patch("g", "r1", &json!({"feedback": -1})).unwrap()["feedback"],
            -1
        );
    }

    #[test]
    fn analytics_group_by_a_metadata_field() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        for (n, team) in ["search", "search", "ads"].iter().enumerate() {
            store
                .append(
                    json!({"id": format!("r{n}"), "created_at": n, "gateway": "g", "status": 200,
                               "success": true, "cost": 0.5, "metadata": {"team": team}}),
                )
                .unwrap();
        }
        store
            .append(json!({"id": "r9", "created_at": 5, "gateway": "g", "status": 429}))
            .unwrap();
        store.close();
        let a = store.analytics("g", 0, 10, 10, Some("meta.team")).unwrap();
        let groups = a["groups"].as_array().unwrap();
        let by = |t: &str| groups.iter().find(|g| g["meta.team"] == t).cloned();
        assert_eq!(by("search").unwrap()["requests"], 2, "{a}");
        assert_eq!(by("search").unwrap()["cost"], 1.0, "{a}");
        assert_eq!(by("ads").unwrap()["requests"], 1, "{a}");
        assert_eq!(
            by("").unwrap()["requests"],
            1,
            "entries without the field: {a}"
        );
        let e = store
            .analytics("g", 0, 10, 10, Some("meta.a b"))
            .unwrap_err();
        assert!(e.to_string().contains("metadata key 'a b'"), "{e}");
    }

    #[test]
    fn unknown_ids_and_a_closed_store_have_their_own_errors() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        assert!(matches!(
            store.append(json!({"id": ""})),
            Err(LogStoreError::MissingId)
        ));
        store.close();
        assert!(matches!(
            store.append(json!({"id": "late"})),
            Err(LogStoreError::Closed)
        ));
        let e = store.get("g", "nope").unwrap_err();
        assert!(matches!(&e, LogStoreError::NotFound { id } if id == "nope"));
        assert_eq!(e.to_string(), "no log entry 'nope'");
        assert!(matches!(
            store.patch("g", "nope", &json!({"score": 1})),
            Err(LogStoreError::NotFound { .. })
        ));
    }
}

#[cfg(test)]
mod retention_tests {
    use super::*;
    use serde_json::json;

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
}
