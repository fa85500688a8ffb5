//! The `redis` backend of the key-value and limit imports, so several gateway
//! replicas share one cache and one set of rate-limit counters.
//!
//! - kv: `SET key value PX ttl` / `GET` / `DEL`; entries over
//!   `max_entry_bytes` are refused, and expiry is Redis's own.
//! - limits: one Lua script per technique counts and checks in a single
//!   atomic step, on Redis's clock (`TIME`), so N replicas let exactly `limit`
//!   through per window. Fixed windows are aligned to multiples of the period;
//!   the sliding technique is GCRA with its theoretical arrival time in Redis.
//! - spend (dollar budgets): settled spend is a counter per scope and period; running
//!   requests' reservations are members of a sorted set scored by their expiry, so the
//!   reservations of a replica that died free themselves. One Lua script drops expired
//!   reservations, sums the rest and takes the new one only if it fits, in one atomic step.
//! - A replica that cannot reach Redis keeps serving: each call has a
//!   deadline (`timeout_ms`), failures are counted, logged at most once per
//!   5 s, and answered by the configured policy (`kv_on_error`,
//!   `limits_on_error`: open = miss / allow, closed = refuse). The connection
//!   manager reconnects by itself; while it is down, a new connection is
//!   tried at most once per second.

use crate::store::limits::{Technique, Verdict};
use crate::store::port::Unavailable;
use redis::aio::ConnectionManager;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;

pub use crate::config::backends::{OnError, RedisSettings};

/// Counters exported in /metrics.
#[derive(Debug, Default)]
pub struct RedisCounters {
    /// Commands that failed or timed out.
    pub errors: AtomicU64,
    /// Commands answered.
    pub ok: AtomicU64,
}

/// A handle to the shared store.
pub struct RedisStore {
    client: redis::Client,
    /// The live connection (read without a lock on every command).
    conn: arc_swap::ArcSwapOption<ConnectionManager>,
    /// Held while connecting; other callers fail fast instead of queueing.
    connecting: Mutex<()>,
    last_attempt_ms: AtomicU64,
    last_warning_ms: AtomicU64,
    settings: RedisSettings,
    fixed: redis::Script,
    sliding: redis::Script,
    reserve: redis::Script,
    settle: redis::Script,
    ledger: redis::Script,
    /// Counters.
    pub counters: RedisCounters,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.settings.key_prefix)
            .finish_non_exhaustive()
    }
}

/// Fixed window: KEYS[1] = counter base; ARGV = cost, limit, period_ms, enforce.
/// Returns {allowed, remaining, retry_after_ms}.
const FIXED: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cost = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local enforce = ARGV[4] == '1'
local start = now - (now % period)
local key = KEYS[1] .. ':' .. start
local used = tonumber(redis.call('GET', key) or '0')
if enforce and used + cost > limit then
  return {0, math.max(limit - used, 0), start + period - now}
end
used = redis.call('INCRBY', key, cost)
redis.call('PEXPIRE', key, start + period - now + 1000)
local allowed = 1
if used > limit then allowed = 0 end
return {allowed, math.max(limit - used, 0), 0}
";

/// Sliding window (GCRA): KEYS[1] = "theoretical arrival time (ms, float)|interval (ms)";
/// ARGV = cost, limit, period_ms, enforce. A debit is never refused. When the limit changed
/// since the stored state, its outstanding part is rescaled to the new interval, so the
/// requests already counted stay counted.
const SLIDING: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local cost = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local enforce = ARGV[4] == '1'
local interval = period / limit
local stored = redis.call('GET', KEYS[1]) or '0|0'
local sep = string.find(stored, '|', 1, true)
local tat = tonumber(sep and string.sub(stored, 1, sep - 1) or stored) or 0
local old_interval = tonumber(sep and string.sub(stored, sep + 1) or '0') or 0
if tat > now and old_interval > 0 and old_interval ~= interval then
  tat = now + (tat - now) * interval / old_interval
end
if tat < now then tat = now end
local new_tat = tat + cost * interval
local allow_at = new_tat - period
if enforce and allow_at > now then
  return {0, 0, math.ceil(allow_at - now)}
end
redis.call('SET', KEYS[1], tostring(new_tat) .. '|' .. tostring(interval), 'PX', math.max(math.ceil(new_tat - now), 1))
local remaining = math.floor((now + period - new_tat) / interval)
if remaining < 0 then remaining = 0 end
return {1, remaining, 0}
";

/// Spend reservation: KEYS = settled counter, reservation set; ARGV = amount, limit, member,
/// hold_ms. Returns {taken, spent, held}.
const RESERVE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local held = 0
for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  held = held + tonumber(string.match(m, '|(%d+)$') or '0')
end
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
local amount = tonumber(ARGV[1])
if spent + held + amount > tonumber(ARGV[2]) then
  return {0, spent, held}
end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[3])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[4]) + 60000)
return {1, spent, held}
";

/// Settlement: KEYS = settled counter, reservation set; ARGV = member, charge, ttl_ms (0: no
/// expiry). The charge counts even when the reservation had expired.
const SETTLE: &str = r"
redis.call('ZREM', KEYS[2], ARGV[1])
local spent = redis.call('INCRBY', KEYS[1], ARGV[2])
if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return spent
";

/// A ledger: KEYS = settled counter, reservation set. Returns {spent, held}.
const LEDGER: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local held = 0
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], now, '+inf')) do
  held = held + tonumber(string.match(m, '|(%d+)$') or '0')
end
return {tonumber(redis.call('GET', KEYS[1]) or '0'), held}
";

impl RedisStore {
    /// The two keys of a spend ledger.
    fn spend_keys(&self, scope: &str, period_start: i64) -> (String, String) {
        (
            self.key("spend", &format!("{period_start}:{scope}")),
            self.key("spend-held", &format!("{period_start}:{scope}")),
        )
    }

    /// The store's policy when it fails (the limits setting also covers budgets).
    pub fn limits_on_error(&self) -> OnError {
        self.settings.limits_on_error
    }

    /// Takes a reservation `member` (ending in `|amount`) of `amount` nanos if it fits under
    /// `limit`, for at most `hold_ms`: `Ok(Ok(()))` taken, `Ok(Err((spent, held)))` refused.
    pub async fn spend_reserve(
        &self,
        scope: &str,
        period_start: i64,
        member: &str,
        amount: i64,
        limit: i64,
        hold_ms: u64,
    ) -> Result<Result<(), (i64, i64)>, Unavailable> {
        let (spent, held) = self.spend_keys(scope, period_start);
        let (script, member) = (self.reserve.clone(), member.to_string());
        let answer = self
            .run::<(i64, i64, i64)>("spend reserve", move |mut c| {
                Box::pin(async move {
                    script
                        .key(spent)
                        .key(held)
                        .arg(amount)
                        .arg(limit)
                        .arg(member)
                        .arg(hold_ms)
                        .invoke_async(&mut c)
                        .await
                })
            })
            .await
            .ok_or(Unavailable)?;
        Ok(match answer {
            (1, _, _) => Ok(()),
            (_, spent, held) => Err((spent, held)),
        })
    }

    /// Ends reservation `member`, adding `charge` nanos to settled spend (kept `ttl_ms`, 0:
    /// for ever).
    pub async fn spend_settle(
        &self,
        scope: &str,
        period_start: i64,
        member: &str,
        charge: i64,
        ttl_ms: u64,
    ) -> Result<(), Unavailable> {
        let (spent, held) = self.spend_keys(scope, period_start);
        let (script, member) = (self.settle.clone(), member.to_string());
        self.run::<i64>("spend settle", move |mut c| {
            Box::pin(async move {
                script
                    .key(spent)
                    .key(held)
                    .arg(member)
                    .arg(charge)
                    .arg(ttl_ms)
                    .invoke_async(&mut c)
                    .await
            })
        })
        .await
        .map(|_| ())
        .ok_or(Unavailable)
    }

    /// Drops reservation `member` without charging it (a reserve whose answer was lost may
    /// still have taken it).
    pub async fn spend_release(
        &self,
        scope: &str,
        period_start: i64,
        member: &str,
    ) -> Result<(), Unavailable> {
        let (_, held) = self.spend_keys(scope, period_start);
        let member = member.to_string();
        self.run::<i64>("spend release", move |mut c| {
            Box::pin(async move {
                redis::cmd("ZREM")
                    .arg(held)
                    .arg(member)
                    .query_async(&mut c)
                    .await
            })
        })
        .await
        .map(|_| ())
        .ok_or(Unavailable)
    }

    /// Settled and held nanos of a ledger.
    pub async fn spend_ledger(
        &self,
        scope: &str,
        period_start: i64,
    ) -> Result<(i64, i64), Unavailable> {
        let (spent, held) = self.spend_keys(scope, period_start);
        let script = self.ledger.clone();
        self.run::<(i64, i64)>("spend ledger", move |mut c| {
            Box::pin(async move { script.key(spent).key(held).invoke_async(&mut c).await })
        })
        .await
        .ok_or(Unavailable)
    }

    /// A store for `settings`; connects lazily (a replica starts even when
    /// Redis is down).
    pub fn new(settings: RedisSettings) -> Result<RedisStore, String> {
        let client = redis::Client::open(settings.url.as_str())
            .map_err(|e| format!("store.url: not a Redis URL: {e}"))?;
        Ok(RedisStore {
            client,
            conn: arc_swap::ArcSwapOption::empty(),
            connecting: Mutex::new(()),
            last_attempt_ms: AtomicU64::new(0),
            last_warning_ms: AtomicU64::new(0),
            settings,
            fixed: redis::Script::new(FIXED),
            sliding: redis::Script::new(SLIDING),
            reserve: redis::Script::new(RESERVE),
            settle: redis::Script::new(SETTLE),
            ledger: redis::Script::new(LEDGER),
            counters: RedisCounters::default(),
        })
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.settings.timeout_ms)
    }

    /// The shared connection, connecting when there is none (at most one
    /// attempt per second while Redis is unreachable).
    async fn connection(&self) -> Result<ConnectionManager, String> {
        if let Some(c) = self.conn.load_full() {
            return Ok((*c).clone());
        }
        let Ok(_connecting) = self.connecting.try_lock() else {
            return Err("not connected (a connection attempt is under way)".into());
        };
        if let Some(c) = self.conn.load_full() {
            return Ok((*c).clone());
        }
        let now = crate::store::now_ms();
        let last = self.last_attempt_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < 1000 {
            return Err("not connected (next attempt within 1 s)".into());
        }
        self.last_attempt_ms.store(now, Ordering::Relaxed);
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(self.timeout().max(Duration::from_millis(200)))
            .set_response_timeout(self.timeout())
            .set_number_of_retries(1);
        let manager = tokio::time::timeout(
            self.timeout().max(Duration::from_millis(250)),
            ConnectionManager::new_with_config(self.client.clone(), config),
        )
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
        tracing::info!("connected to Redis for the shared store");
        self.conn.store(Some(std::sync::Arc::new(manager.clone())));
        Ok(manager)
    }

    fn failed(&self, what: &str, e: &str) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        let now = crate::store::now_ms();
        let last = self.last_warning_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 5000 {
            self.last_warning_ms.store(now, Ordering::Relaxed);
            tracing::warn!(
                "shared store (Redis) unavailable for {what}: {e}; kv_on_error = {:?}, limits_on_error = {:?}",
                self.settings.kv_on_error,
                self.settings.limits_on_error
            );
        }
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        what: &str,
        cmd: impl FnOnce(ConnectionManager) -> redis::RedisFuture<'static, T>,
    ) -> Option<T> {
        let conn = match self.connection().await {
            Ok(c) => c,
            Err(e) => {
                self.failed(what, &e);
                return None;
            }
        };
        match tokio::time::timeout(self.timeout(), cmd(conn)).await {
            Ok(Ok(v)) => {
                self.counters.ok.fetch_add(1, Ordering::Relaxed);
                Some(v)
            }
            Ok(Err(e)) => {
                self.failed(what, &e.to_string());
                None
            }
            Err(_) => {
                self.failed(
                    what,
                    &format!("no answer within {} ms", self.settings.timeout_ms),
                );
                None
            }
        }
    }

    fn key(&self, kind: &str, key: &str) -> String {
        format!("{}{kind}:{key}", self.settings.key_prefix)
    }

    /// The kv policy when Redis fails.
    pub fn kv_on_error(&self) -> OnError {
        self.settings.kv_on_error
    }

    /// A kv value (`Ok(None)`: absent); `Err` when Redis failed.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Unavailable> {
        let k = self.key("kv", key);
        self.run::<Option<Vec<u8>>>("kv get", move |mut c| {
            Box::pin(async move { redis::cmd("GET").arg(k).query_async(&mut c).await })
        })
        .await
        .ok_or(Unavailable)
    }

    /// Stores a value with its TTL (`Ok(false)`: refused as too large);
    /// `Err` when Redis failed.
    pub async fn set(&self, key: &str, value: &[u8], ttl_ms: u64) -> Result<bool, Unavailable> {
        if value.len() > self.settings.max_entry_bytes || ttl_ms == 0 {
            return Ok(false);
        }
        let k = self.key("kv", key);
        let v = value.to_vec();
        self.run::<()>("kv set", move |mut c| {
            Box::pin(async move {
                redis::cmd("SET")
                    .arg(k)
                    .arg(v)
                    .arg("PX")
                    .arg(ttl_ms)
                    .query_async(&mut c)
                    .await
            })
        })
        .await
        .map(|_| true)
        .ok_or(Unavailable)
    }

    /// Deletes a value; `Err` when Redis failed.
    pub async fn delete(&self, key: &str) -> Result<(), Unavailable> {
        let k = self.key("kv", key);
        self.run::<()>("kv delete", move |mut c| {
            Box::pin(async move { redis::cmd("DEL").arg(k).query_async(&mut c).await })
        })
        .await
        .ok_or(Unavailable)
    }

    /// Counts `cost` against `key` atomically across replicas (`enforce`:
    /// refuse when over; otherwise a debit).
    pub async fn check(
        &self,
        key: &str,
        cost: u64,
        limit: u64,
        period_ms: u64,
        technique: Technique,
        enforce: bool,
    ) -> Verdict {
        let limit = limit.max(1);
        let period_ms = period_ms.max(1);
        let (script, kind) = match technique {
            Technique::Fixed => (self.fixed.clone(), "fixed"),
            Technique::Sliding => (self.sliding.clone(), "sliding"),
        };
        // Not keyed by the limit: changing a limit keeps the count.
        let k = self.key(kind, &format!("{period_ms}:{key}"));
        let answer = self
            .run::<(u64, u64, u64)>("limits", move |mut c| {
                Box::pin(async move {
                    script
                        .key(k)
                        .arg(cost)
                        .arg(limit)
                        .arg(period_ms)
                        .arg(if enforce { "1" } else { "0" })
                        .invoke_async(&mut c)
                        .await
                })
            })
            .await;
        match answer {
            Some((allowed, remaining, retry_after_ms)) => Verdict {
                allowed: allowed == 1,
                remaining,
                retry_after_ms,
            },
            None => match self.settings.limits_on_error {
                OnError::Open => Verdict {
                    allowed: true,
                    remaining: 0,
                    retry_after_ms: 0,
                },
                OnError::Closed => Verdict {
                    allowed: false,
                    remaining: 0,
                    retry_after_ms: 1000,
                },
            },
        }
    }
}

impl super::port::KvBackend for RedisStore {
    fn get<'a>(
        &'a self,
        key: &'a str,
    ) -> super::port::StoreFuture<'a, Result<Option<Vec<u8>>, super::port::Unavailable>> {
        Box::pin(async move { RedisStore::get(self, key).await })
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        ttl_ms: u64,
    ) -> super::port::StoreFuture<'a, Result<bool, super::port::Unavailable>> {
        Box::pin(async move { RedisStore::set(self, key, value, ttl_ms).await })
    }

    fn delete<'a>(
        &'a self,
        key: &'a str,
    ) -> super::port::StoreFuture<'a, Result<(), super::port::Unavailable>> {
        Box::pin(async move { RedisStore::delete(self, key).await })
    }

    fn on_error(&self) -> OnError {
        self.kv_on_error()
    }

    fn remote(&self) -> bool {
        true
    }
}

impl super::port::LimitsBackend for RedisStore {
    fn check<'a>(
        &'a self,
        key: &'a str,
        cost: u64,
        limit: u64,
        period_ms: u64,
        technique: Technique,
        enforce: bool,
    ) -> super::port::StoreFuture<'a, Verdict> {
        Box::pin(RedisStore::check(
            self, key, cost, limit, period_ms, technique, enforce,
        ))
    }

    fn remote(&self) -> bool {
        true
    }
}
