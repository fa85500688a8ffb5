//! Stored responses of the compat endpoint's Responses entry point (`store_responses` on a
//! gateway), so that a later request can continue one with `previous_response_id`. Each row
//! holds a response's whole conversation (the input items it continued, its own input and its
//! output) as Responses items, under the gateway and the virtual key that made it: another key
//! cannot continue it. Rows live in the log store's database (SQLite, or PostgreSQL shared by
//! replicas), bounded per gateway and key by count, bytes and age.

use super::logs::LogStoreError;
use super::logs::db::{Arg, Db};
use serde_json::Value;

const SCHEMA: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS aigw_responses (id TEXT PRIMARY KEY, gateway TEXT NOT NULL, \
     owner TEXT NOT NULL, created_at BIGINT NOT NULL, size BIGINT NOT NULL, items TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS aigw_responses_owner ON aigw_responses (gateway, owner, created_at)",
];

/// How long a stored response can be continued (OpenAI keeps them 30 days).
pub const MAX_AGE_MS: i64 = 30 * 24 * 3600 * 1000;
/// The largest conversation kept, in bytes of JSON (about eight times the largest context
/// window a model reads today); a longer one is not kept, and the next turn sends it whole.
pub const MAX_ITEMS_BYTES: usize = 32 << 20;
/// The most bytes of conversations kept for one key (or for the callers without one) in one
/// gateway; the oldest go first.
pub const MAX_OWNER_BYTES: i64 = 256 << 20;

/// Creates the table when missing.
pub fn ensure_schema(db: &mut dyn Db) -> Result<(), LogStoreError> {
    for sql in SCHEMA {
        db.exec(sql, &[])?;
    }
    Ok(())
}

/// Stores response `id`'s conversation `items` (a JSON array of Responses items) for `owner`
/// (a virtual key's id, or empty) in `gateway`. Then, for that gateway and owner only (one key
/// never pushes out another's), deletes what is older than [`MAX_AGE_MS`], the oldest beyond
/// `keep`, and the oldest beyond [`MAX_OWNER_BYTES`].
pub fn put(
    db: &mut dyn Db,
    gateway: &str,
    owner: &str,
    id: &str,
    items: &str,
    keep: u64,
    now_ms: i64,
) -> Result<(), LogStoreError> {
    let scope = || [Arg::Text(gateway.into()), Arg::Text(owner.into())];
    db.exec(
        "INSERT INTO aigw_responses (id, gateway, owner, created_at, size, items) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        &[
            Arg::Text(id.into()),
            Arg::Text(gateway.into()),
            Arg::Text(owner.into()),
            Arg::Int(now_ms),
            Arg::Int(items.len() as i64),
            Arg::Text(items.to_string()),
        ],
    )?;
    let [g, o] = scope();
    db.exec(
        "DELETE FROM aigw_responses WHERE gateway = ?1 AND owner = ?2 AND created_at < ?3",
        &[g, o, Arg::Int(now_ms - MAX_AGE_MS)],
    )?;
    let [g, o] = scope();
    db.exec(
        "DELETE FROM aigw_responses WHERE gateway = ?1 AND owner = ?2 AND created_at < \
         (SELECT created_at FROM aigw_responses WHERE gateway = ?1 AND owner = ?2 \
          ORDER BY created_at DESC LIMIT 1 OFFSET ?3)",
        &[
            g,
            o,
            Arg::Int((keep.saturating_sub(1)).min(i64::MAX as u64) as i64),
        ],
    )?;
    // The newest rows up to the byte bound stay; from the first that passes it, older go.
    let [g, o] = scope();
    db.exec(
        "DELETE FROM aigw_responses WHERE gateway = ?1 AND owner = ?2 AND created_at <= \
         (SELECT MAX(created_at) FROM (SELECT created_at, SUM(size) OVER \
          (ORDER BY created_at DESC, id) AS running FROM aigw_responses \
          WHERE gateway = ?1 AND owner = ?2) newest WHERE running > ?3)",
        &[g, o, Arg::Int(MAX_OWNER_BYTES)],
    )?;
    Ok(())
}

/// The conversation of response `id`, when `gateway` stored it for `owner` and it is not too old.
pub fn get(
    db: &mut dyn Db,
    gateway: &str,
    owner: &str,
    id: &str,
    now_ms: i64,
) -> Result<Option<Vec<Value>>, LogStoreError> {
    let rows = db.rows(
        "SELECT items FROM aigw_responses WHERE id = ?1 AND gateway = ?2 AND owner = ?3 AND created_at >= ?4",
        &[
            Arg::Text(id.into()),
            Arg::Text(gateway.into()),
            Arg::Text(owner.into()),
            Arg::Int(now_ms - MAX_AGE_MS),
        ],
    )?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    serde_json::from_str(&row[0].text())
        .map(Some)
        .map_err(|e| LogStoreError::Corrupt(format!("stored response {id}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn db() -> rusqlite::Connection {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        ensure_schema(&mut conn).unwrap();
        conn
    }

    #[test]
    fn a_response_is_read_back_by_its_gateway_and_owner_only() {
        let mut db = db();
        let items = vec![json!({"type": "message", "role": "user", "content": "hi"})];
        let text = serde_json::to_string(&items).unwrap();
        put(&mut db, "gw", "key_a", "resp_1", &text, 10, 1_000).unwrap();
        assert_eq!(
            get(&mut db, "gw", "key_a", "resp_1", 2_000).unwrap(),
            Some(items)
        );
        assert_eq!(get(&mut db, "gw", "key_b", "resp_1", 2_000).unwrap(), None);
        assert_eq!(
            get(&mut db, "other", "key_a", "resp_1", 2_000).unwrap(),
            None
        );
        assert_eq!(get(&mut db, "gw", "key_a", "resp_2", 2_000).unwrap(), None);
        // Past its age, it cannot be continued.
        assert_eq!(
            get(&mut db, "gw", "key_a", "resp_1", 1_000 + MAX_AGE_MS + 1).unwrap(),
            None
        );
        // The same id twice is an error, never an overwrite.
        assert!(put(&mut db, "gw", "key_a", "resp_1", "[]", 10, 3_000).is_err());
    }

    #[test]
    fn each_owner_keeps_its_newest_responses() {
        let mut db = db();
        for i in 0..5 {
            put(&mut db, "gw", "", &format!("resp_{i}"), "[]", 3, i * 10).unwrap();
            put(&mut db, "other", "", &format!("o_{i}"), "[]", 100, i * 10).unwrap();
            // Another key of the same gateway pushes out none of the keyless callers'.
            put(
                &mut db,
                "gw",
                "key_b",
                &format!("b_{i}"),
                "[]",
                3,
                i * 10 + 1,
            )
            .unwrap();
        }
        let kept: Vec<bool> = (0..5)
            .map(|i| {
                get(&mut db, "gw", "", &format!("resp_{i}"), 100)
                    .unwrap()
                    .is_some()
            })
            .collect();
        assert_eq!(kept, [false, false, true, true, true]);
        assert!(get(&mut db, "other", "", "o_0", 100).unwrap().is_some());
        assert!(get(&mut db, "gw", "key_b", "b_4", 100).unwrap().is_some());
        assert!(get(&mut db, "gw", "key_b", "b_1", 100).unwrap().is_none());
    }

    #[test]
    fn an_owners_oldest_go_past_its_byte_bound() {
        let mut db = db();
        let big = format!("[\"{}\"]", "x".repeat((MAX_OWNER_BYTES / 3) as usize));
        for i in 0..4 {
            put(&mut db, "gw", "k", &format!("r{i}"), &big, 100, i * 10).unwrap();
        }
        let kept: Vec<bool> = (0..4)
            .map(|i| {
                get(&mut db, "gw", "k", &format!("r{i}"), 100)
                    .unwrap()
                    .is_some()
            })
            .collect();
        assert_eq!(kept, [false, false, true, true]);
    }
}
