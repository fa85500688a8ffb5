//! What the TOML does not say about a managed gateway (when it was created and modified,
//! whether an update clears its cache) and the record of every change made through the
//! management API, in the log store's database beside keys and teams.

use crate::store::logs::LogStoreError;
use crate::store::logs::db::{Arg, Db, transaction};
use serde_json::{Value, json};

/// A gateway's record.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayMeta {
    /// ms since the epoch.
    pub created_at_ms: i64,
    /// ms since the epoch.
    pub modified_at_ms: i64,
    /// Whether an update clears the gateway's cached answers.
    pub cache_invalidate_on_update: bool,
}

/// The record of `name`, if the API ever wrote one.
pub fn meta(db: &mut dyn Db, name: &str) -> Result<Option<GatewayMeta>, LogStoreError> {
    let rows = db.rows(
        "SELECT created_at, modified_at, cache_invalidate_on_update FROM aigw_gateways WHERE name = ?1",
        &[Arg::Text(name.to_string())],
    )?;
    Ok(rows.first().map(|r| GatewayMeta {
        created_at_ms: r[0].int(),
        modified_at_ms: r[1].int(),
        cache_invalidate_on_update: r[2].int() != 0,
    }))
}

/// Writes `name`'s record and the change, in one transaction.
pub fn record(
    db: &mut dyn Db,
    name: &str,
    meta: Option<&GatewayMeta>,
    actor: &str,
    action: &str,
    detail: &Value,
    now_ms: i64,
) -> Result<(), LogStoreError> {
    transaction(db, |db| {
        db.exec(
            "DELETE FROM aigw_gateways WHERE name = ?1",
            &[Arg::Text(name.to_string())],
        )?;
        if let Some(m) = meta {
            db.exec(
                "INSERT INTO aigw_gateways (name, created_at, modified_at, cache_invalidate_on_update) \
                 VALUES (?1, ?2, ?3, ?4)",
                &[
                    Arg::Text(name.to_string()),
                    Arg::Int(m.created_at_ms),
                    Arg::Int(m.modified_at_ms),
                    Arg::Int(i64::from(m.cache_invalidate_on_update)),
                ],
            )?;
        }
        record_change(db, name, actor, action, detail, now_ms)
    })
}

/// Records a change that leaves the gateway's record as it is (logs deleted).
pub fn record_change(
    db: &mut dyn Db,
    name: &str,
    actor: &str,
    action: &str,
    detail: &Value,
    now_ms: i64,
) -> Result<(), LogStoreError> {
    db.exec(
        "INSERT INTO aigw_changes (at, actor, action, gateway, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        &[
            Arg::Int(now_ms),
            Arg::Text(actor.to_string()),
            Arg::Text(action.to_string()),
            Arg::Text(name.to_string()),
            Arg::Text(detail.to_string()),
        ],
    )?;
    Ok(())
}

/// The latest changes, newest first (of one gateway when named).
pub fn changes(
    db: &mut dyn Db,
    gateway: Option<&str>,
    limit: usize,
) -> Result<Vec<Value>, LogStoreError> {
    let limit = limit.clamp(1, 1000);
    let rows = match gateway {
        Some(g) => db.rows(
            &format!("SELECT at, actor, action, gateway, detail FROM aigw_changes WHERE gateway = ?1 ORDER BY at DESC LIMIT {limit}"),
            &[Arg::Text(g.to_string())],
        )?,
        None => db.rows(
            &format!("SELECT at, actor, action, gateway, detail FROM aigw_changes ORDER BY at DESC LIMIT {limit}"),
            &[],
        )?,
    };
    Ok(rows
        .iter()
        .map(|r| {
            json!({
                "at_ms": r[0].int(),
                "actor": r[1].text(),
                "action": r[2].text(),
                "gateway": r[3].text(),
                "detail": serde_json::from_str::<Value>(&r[4].text()).unwrap_or(Value::Null),
            })
        })
        .collect())
}
