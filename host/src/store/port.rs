//! The ports of the shared state filters reach through the `kv` and `limits` imports. The host
//! imports call these traits and never ask which backend is behind them; each backend is one
//! file implementing them: the embedded [`KvStore`](super::kv::KvStore) and
//! [`Limiter`](super::limits::Limiter) in process memory, and
//! [`RedisStore`](super::redis::RedisStore) shared between replicas.

use super::limits::{Technique, Verdict};
use super::redis::OnError;
use std::future::Future;
use std::pin::Pin;

/// A backend call in flight (boxed: the traits are used as `dyn`).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A backend could not answer (connection lost, timed out); what that means for the filter
/// is the backend's [`KvBackend::on_error`] policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the shared store is unavailable")]
pub struct Unavailable;

/// A key-value store with expiry, behind the `kv` import. Keys arrive namespaced per filter.
pub trait KvBackend: Send + Sync + std::fmt::Debug {
    /// The value under `key`, `None` when absent or expired.
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Result<Option<Vec<u8>>, Unavailable>>;
    /// Stores `value` for `ttl_ms`; `Ok(false)` when refused (too large, no room).
    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        ttl_ms: u64,
    ) -> StoreFuture<'a, Result<bool, Unavailable>>;
    /// Removes `key`.
    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Result<(), Unavailable>>;
    /// What an [`Unavailable`] means: `Open` degrades (a miss, a refused write), `Closed`
    /// fails the filter's call.
    fn on_error(&self) -> OnError {
        OnError::Open
    }
    /// Whether calls wait on the network: their wait then extends the calling filter's
    /// deadline instead of counting against it.
    fn remote(&self) -> bool {
        false
    }
}

/// Rate-limit counters, behind the `limits` import. A backend answers every call, applying its
/// own outage policy (allow or refuse) when it cannot count.
pub trait LimitsBackend: Send + Sync + std::fmt::Debug {
    /// Counts `cost` against `key` for `limit` per `period_ms`. `enforce`: refuse when over the
    /// limit; otherwise count it regardless (a debit).
    #[allow(clippy::too_many_arguments)]
    fn check<'a>(
        &'a self,
        key: &'a str,
        cost: u64,
        limit: u64,
        period_ms: u64,
        technique: Technique,
        enforce: bool,
    ) -> StoreFuture<'a, Verdict>;
    /// Whether calls wait on the network (see [`KvBackend::remote`]).
    fn remote(&self) -> bool {
        false
    }
}
