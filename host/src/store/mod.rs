//! Shared state that outlives a request, behind the interfaces filters import:
//! the key-value store (`kv`), rate-limit counters (`limits`) and the request
//! log store (`logs`). Embedded backends; each is reached only through its
//! own type so a networked backend can replace it later.

pub mod kv;
pub mod limits;
pub mod logs;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
