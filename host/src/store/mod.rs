//! Shared state that outlives a request, behind the interfaces filters import:
//! the key-value store (`kv`), rate-limit counters (`limits`) and the request
//! log store (`logs`). Embedded backends by default; `redis` shares kv and
//! limits between gateway replicas. Kv and limits are reached through the
//! traits in [`port`], the log store through its `Db` trait.

pub mod kv;
pub mod limits;
pub mod logs;
pub mod port;
pub mod redis;
pub mod responses;
pub mod spend;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
