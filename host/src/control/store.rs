//! Keys and teams in the log store's database (SQLite, or PostgreSQL shared by replicas). Keys
//! are stored by the SHA-256 of their secret, never the secret. Every change bumps one version
//! counter in the same transaction, so a replica notices any change by reading one row.

use super::keys::{KeySpec, TeamSpec};
use crate::store::logs::LogStoreError;
use crate::store::logs::db::{Arg, Cell, Db, transaction};
use serde_json::Value;

const SCHEMA: [&str; 7] = [
    "CREATE TABLE IF NOT EXISTS aigw_spend (scope TEXT NOT NULL, period_start BIGINT NOT NULL, \
     spent_nanos BIGINT NOT NULL, PRIMARY KEY (scope, period_start))",
    "CREATE TABLE IF NOT EXISTS aigw_keys (id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, \
     prefix TEXT NOT NULL, spec TEXT NOT NULL, created_at BIGINT NOT NULL, \
     updated_at BIGINT NOT NULL, revoked_at BIGINT, last_used_at BIGINT)",
    "CREATE TABLE IF NOT EXISTS aigw_teams (id TEXT PRIMARY KEY, spec TEXT NOT NULL, \
     created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, deleted_at BIGINT)",
    "CREATE TABLE IF NOT EXISTS aigw_control (name TEXT PRIMARY KEY, version BIGINT NOT NULL)",
    "INSERT INTO aigw_control (name, version) VALUES ('keys', 0) ON CONFLICT (name) DO NOTHING",
    // Gateways managed through the API: what the TOML does not say (when, and whether an
    // update clears the cache), and every change made (who, when, what).
    "CREATE TABLE IF NOT EXISTS aigw_gateways (name TEXT PRIMARY KEY, created_at BIGINT NOT NULL, \
     modified_at BIGINT NOT NULL, cache_invalidate_on_update BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS aigw_changes (at BIGINT NOT NULL, actor TEXT NOT NULL, \
     action TEXT NOT NULL, gateway TEXT NOT NULL, detail TEXT NOT NULL)",
];

/// Creates the tables when missing.
pub fn ensure_schema(db: &mut dyn Db) -> Result<(), LogStoreError> {
    for sql in SCHEMA {
        db.exec(sql, &[])?;
    }
    Ok(())
}

/// A stored key (without its secret).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredKey {
    /// `key_…`.
    pub id: String,
    /// Hex SHA-256 of the secret.
    pub hash: String,
    /// The secret's first characters.
    pub prefix: String,
    /// What it allows.
    pub spec: KeySpec,
    /// ms since the epoch.
    pub created_at_ms: i64,
    /// Last change.
    pub updated_at_ms: i64,
    /// When revoked.
    pub revoked_at_ms: Option<i64>,
    /// Last request (written every few seconds).
    pub last_used_at_ms: Option<i64>,
}

/// A stored team.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTeam {
    /// `team_…`.
    pub id: String,
    /// What it allows.
    pub spec: TeamSpec,
    /// ms since the epoch.
    pub created_at_ms: i64,
    /// Last change.
    pub updated_at_ms: i64,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> LogStoreError {
    LogStoreError::Corrupt(format!("{what}: {e}"))
}

fn opt_int(c: &Cell) -> Option<i64> {
    match c {
        Cell::Null => None,
        other => Some(other.int()),
    }
}

const KEY_COLUMNS: &str =
    "id, hash, prefix, spec, created_at, updated_at, revoked_at, last_used_at";

fn key_of(r: &[Cell]) -> Result<StoredKey, LogStoreError> {
    let id = r[0].text();
    let spec: KeySpec = serde_json::from_str(&r[3].text()).map_err(|e| corrupt(&id, e))?;
    Ok(StoredKey {
        hash: r[1].text(),
        prefix: r[2].text(),
        spec,
        created_at_ms: r[4].int(),
        updated_at_ms: r[5].int(),
        revoked_at_ms: opt_int(&r[6]),
        last_used_at_ms: opt_int(&r[7]),
        id,
    })
}

fn team_of(r: &[Cell]) -> Result<StoredTeam, LogStoreError> {
    let id = r[0].text();
    let spec: TeamSpec = serde_json::from_str(&r[1].text()).map_err(|e| corrupt(&id, e))?;
    Ok(StoredTeam {
        spec,
        created_at_ms: r[2].int(),
        updated_at_ms: r[3].int(),
        id,
    })
}

fn json_text(v: &impl serde::Serialize) -> Result<Arg, LogStoreError> {
    serde_json::to_string(v)
        .map(Arg::Text)
        .map_err(|e| corrupt("spec", e))
}

fn bump(db: &mut dyn Db) -> Result<(), LogStoreError> {
    db.exec(
        "UPDATE aigw_control SET version = version + 1 WHERE name = 'keys'",
        &[],
    )?;
    Ok(())
}

/// The change counter of keys and teams.
pub fn version(db: &mut dyn Db) -> Result<i64, LogStoreError> {
    let rows = db.rows("SELECT version FROM aigw_control WHERE name = 'keys'", &[])?;
    Ok(rows.first().map(|r| r[0].int()).unwrap_or(0))
}

/// Adds a key.
pub fn insert_key(db: &mut dyn Db, key: &StoredKey) -> Result<(), LogStoreError> {
    let spec = json_text(&key.spec)?;
    transaction(db, |db| {
        db.exec(
            &format!(
                "INSERT INTO aigw_keys ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, NULL)"
            ),
            &[
                Arg::Text(key.id.clone()),
                Arg::Text(key.hash.clone()),
                Arg::Text(key.prefix.clone()),
                spec,
                Arg::Int(key.created_at_ms),
                Arg::Int(key.updated_at_ms),
            ],
        )?;
        bump(db)
    })
}

/// Replaces a key's spec, and its secret when `rotated` is `(hash, prefix)`.
pub fn update_key(
    db: &mut dyn Db,
    id: &str,
    spec: &KeySpec,
    rotated: Option<(String, String)>,
    now_ms: i64,
) -> Result<(), LogStoreError> {
    let spec = json_text(spec)?;
    transaction(db, |db| {
        let n = match rotated {
            Some((hash, prefix)) => db.exec(
                "UPDATE aigw_keys SET spec = ?1, updated_at = ?2, hash = ?3, prefix = ?4 WHERE id = ?5",
                &[spec, Arg::Int(now_ms), Arg::Text(hash), Arg::Text(prefix), Arg::Text(id.to_string())],
            )?,
            None => db.exec(
                "UPDATE aigw_keys SET spec = ?1, updated_at = ?2 WHERE id = ?3",
                &[spec, Arg::Int(now_ms), Arg::Text(id.to_string())],
            )?,
        };
        if n == 0 {
            return Err(LogStoreError::NotFound { id: id.to_string() });
        }
        bump(db)
    })
}

/// Revokes a key (kept, so its logs still name it); a revoked key stays revoked.
pub fn revoke_key(db: &mut dyn Db, id: &str, now_ms: i64) -> Result<(), LogStoreError> {
    transaction(db, |db| {
        let n = db.exec(
            "UPDATE aigw_keys SET revoked_at = COALESCE(revoked_at, ?1), updated_at = ?1 WHERE id = ?2",
            &[Arg::Int(now_ms), Arg::Text(id.to_string())],
        )?;
        if n == 0 {
            return Err(LogStoreError::NotFound { id: id.to_string() });
        }
        bump(db)
    })
}

/// One key.
pub fn get_key(db: &mut dyn Db, id: &str) -> Result<Option<StoredKey>, LogStoreError> {
    let rows = db.rows(
        &format!("SELECT {KEY_COLUMNS} FROM aigw_keys WHERE id = ?1"),
        &[Arg::Text(id.to_string())],
    )?;
    rows.first().map(|r| key_of(r)).transpose()
}

/// Keys ordered by id after `after`, at most `limit`.
pub fn list_keys(
    db: &mut dyn Db,
    after: &str,
    limit: i64,
) -> Result<Vec<StoredKey>, LogStoreError> {
    db.rows(
        &format!("SELECT {KEY_COLUMNS} FROM aigw_keys WHERE id > ?1 ORDER BY id LIMIT ?2"),
        &[Arg::Text(after.to_string()), Arg::Int(limit)],
    )?
    .iter()
    .map(|r| key_of(r))
    .collect()
}

/// Every key not revoked (what the request path resolves). A row that cannot be read is
/// left out (that key does not resolve) and logged, so one bad row cannot stop refreshes.
pub fn active_keys(db: &mut dyn Db) -> Result<Vec<StoredKey>, LogStoreError> {
    Ok(db
        .rows(
            &format!("SELECT {KEY_COLUMNS} FROM aigw_keys WHERE revoked_at IS NULL"),
            &[],
        )?
        .iter()
        .filter_map(|r| match key_of(r) {
            Ok(k) => Some(k),
            Err(e) => {
                tracing::warn!("virtual keys: a stored key cannot be read and is refused: {e}");
                None
            }
        })
        .collect())
}

/// Records when keys were last used (never moves a time back).
pub fn touch_keys(db: &mut dyn Db, used: &[(String, i64)]) -> Result<(), LogStoreError> {
    transaction(db, |db| {
        for (id, at) in used {
            db.exec(
                "UPDATE aigw_keys SET last_used_at = ?1 WHERE id = ?2 \
                 AND (last_used_at IS NULL OR last_used_at < ?1)",
                &[Arg::Int(*at), Arg::Text(id.clone())],
            )?;
        }
        Ok(())
    })
}

/// Settled spend of every scope and period (read at start).
pub fn spend(db: &mut dyn Db) -> Result<Vec<(String, i64, i64)>, LogStoreError> {
    Ok(db
        .rows(
            "SELECT scope, period_start, spent_nanos FROM aigw_spend",
            &[],
        )?
        .iter()
        .map(|r| (r[0].text(), r[1].int(), r[2].int()))
        .collect())
}

/// Writes settled spend (never lowers a stored value).
pub fn write_spend(db: &mut dyn Db, rows: &[(String, i64, i64)]) -> Result<(), LogStoreError> {
    transaction(db, |db| {
        for (scope, start, spent) in rows {
            db.exec(
                "INSERT INTO aigw_spend (scope, period_start, spent_nanos) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (scope, period_start) DO UPDATE SET spent_nanos = \
                 CASE WHEN aigw_spend.spent_nanos < EXCLUDED.spent_nanos \
                 THEN EXCLUDED.spent_nanos ELSE aigw_spend.spent_nanos END",
                &[Arg::Text(scope.clone()), Arg::Int(*start), Arg::Int(*spent)],
            )?;
        }
        Ok(())
    })
}

/// Adds a team.
pub fn insert_team(db: &mut dyn Db, team: &StoredTeam) -> Result<(), LogStoreError> {
    let spec = json_text(&team.spec)?;
    transaction(db, |db| {
        db.exec(
            "INSERT INTO aigw_teams (id, spec, created_at, updated_at, deleted_at) VALUES (?1, ?2, ?3, ?4, NULL)",
            &[
                Arg::Text(team.id.clone()),
                spec,
                Arg::Int(team.created_at_ms),
                Arg::Int(team.updated_at_ms),
            ],
        )?;
        bump(db)
    })
}

/// Replaces a team's spec.
pub fn update_team(
    db: &mut dyn Db,
    id: &str,
    spec: &TeamSpec,
    now_ms: i64,
) -> Result<(), LogStoreError> {
    let spec = json_text(spec)?;
    transaction(db, |db| {
        let n = db.exec(
            "UPDATE aigw_teams SET spec = ?1, updated_at = ?2 WHERE id = ?3 AND deleted_at IS NULL",
            &[spec, Arg::Int(now_ms), Arg::Text(id.to_string())],
        )?;
        if n == 0 {
            return Err(LogStoreError::NotFound { id: id.to_string() });
        }
        bump(db)
    })
}

/// Deletes a team; refused while a key not revoked belongs to it.
pub fn delete_team(db: &mut dyn Db, id: &str, now_ms: i64) -> Result<(), LogStoreError> {
    transaction(db, |db| {
        let members = active_keys(db)?
            .into_iter()
            .filter(|k| k.spec.team.as_deref() == Some(id))
            .count();
        if members > 0 {
            return Err(LogStoreError::bad_query(
                "team",
                format!("team '{id}' still has {members} key(s): move or revoke them first"),
            ));
        }
        let n = db.exec(
            "UPDATE aigw_teams SET deleted_at = ?1, updated_at = ?1 WHERE id = ?2 AND deleted_at IS NULL",
            &[Arg::Int(now_ms), Arg::Text(id.to_string())],
        )?;
        if n == 0 {
            return Err(LogStoreError::NotFound { id: id.to_string() });
        }
        bump(db)
    })
}

/// Every team not deleted, ordered by id.
pub fn teams(db: &mut dyn Db) -> Result<Vec<StoredTeam>, LogStoreError> {
    db.rows(
        "SELECT id, spec, created_at, updated_at FROM aigw_teams WHERE deleted_at IS NULL ORDER BY id",
        &[],
    )?
    .iter()
    .map(|r| team_of(r))
    .collect()
}

/// A stored team as JSON for the admin API.
pub fn team_json(t: &StoredTeam) -> Value {
    let mut v = serde_json::to_value(&t.spec).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.insert("id".into(), Value::String(t.id.clone()));
        o.insert("created_at_ms".into(), t.created_at_ms.into());
        o.insert("updated_at_ms".into(), t.updated_at_ms.into());
    }
    v
}

/// A stored key as JSON for the admin API (never its secret or hash).
pub fn key_json(k: &StoredKey) -> Value {
    let mut v = serde_json::to_value(&k.spec).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.insert("id".into(), Value::String(k.id.clone()));
        o.insert("prefix".into(), Value::String(format!("{}…", k.prefix)));
        o.insert("created_at_ms".into(), k.created_at_ms.into());
        o.insert("updated_at_ms".into(), k.updated_at_ms.into());
        o.insert("revoked_at_ms".into(), k.revoked_at_ms.into());
        o.insert("last_used_at_ms".into(), k.last_used_at_ms.into());
        o.insert(
            "status".into(),
            Value::String(
                if k.revoked_at_ms.is_some() {
                    "revoked"
                } else if k
                    .spec
                    .expires_at_ms
                    .is_some_and(|t| t as i64 <= crate::store::now_ms() as i64)
                {
                    "expired"
                } else {
                    "active"
                }
                .into(),
            ),
        );
    }
    v
}
