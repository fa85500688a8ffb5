//! Rate-limit counters behind the `limits` import. `fixed`: a counter per key
//! reset at each period boundary (can be overdrawn by `debit`, for token
//! budgets). `sliding`: governor's GCRA, which spreads the allowance over the
//! period so there is no burst at window edges.
//!
//! A counter is keyed by its period and key, never by its limit: raising or lowering a
//! limit (a config reload) keeps what was already counted. For `sliding`, governor keeps
//! one limiter per quota, so every limiter shares one state store here ([`SharedTat`])
//! that carries a key's outstanding requests over when the quota it is checked against
//! changes.

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use governor::clock::Clock;
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::{Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

type Keyed = RateLimiter<String, SharedTat, OriginClock, StateInformationMiddleware>;

/// Nanoseconds on one time line for every limiter: since the first limiter was made.
fn origin_now() -> Nanos {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    Nanos::from(ORIGIN.get_or_init(Instant::now).elapsed())
}

/// governor measures a limiter's state from the instant the limiter was made (its first
/// clock reading). This clock reads 0 then, and the shared time line afterwards, so all
/// limiters measure on the same line and a key's state means the same in each.
#[derive(Debug)]
struct OriginClock {
    started: AtomicBool,
}

impl OriginClock {
    fn new() -> Self {
        OriginClock {
            started: AtomicBool::new(false),
        }
    }
}

impl Clone for OriginClock {
    fn clone(&self) -> Self {
        OriginClock {
            started: AtomicBool::new(true),
        }
    }
}

impl Clock for OriginClock {
    type Instant = Nanos;
    fn now(&self) -> Nanos {
        if !self.started.swap(true, Ordering::Relaxed) {
            return Nanos::from(0u64);
        }
        origin_now()
    }
}

/// The sliding-window state of every key: its theoretical arrival time (GCRA) and the
/// per-request interval it was computed with. A limiter with another interval (the limit
/// changed) rescales the outstanding part, so the requests already counted stay counted.
#[derive(Debug, Clone, Default)]
struct SharedTat {
    cells: Arc<DashMap<String, (u64, u64)>>,
    interval_ns: u64,
}

impl StateStore for SharedTat {
    type Key = String;

    fn measure_and_replace<T, F, E>(&self, key: &String, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let now = origin_now().as_u64();
        let rescale = |(tat, interval): (u64, u64)| -> u64 {
            if interval == self.interval_ns || tat <= now || interval == 0 {
                return tat;
            }
            let outstanding = (tat - now) as u128 * self.interval_ns as u128 / interval as u128;
            now.saturating_add(outstanding.min(u64::MAX as u128) as u64)
        };
        match self.cells.entry(key.clone()) {
            Entry::Occupied(mut e) => {
                let (value, next) = f(Some(Nanos::from(rescale(*e.get()))))?;
                e.insert((next.as_u64(), self.interval_ns));
                Ok(value)
            }
            Entry::Vacant(e) => {
                let (value, next) = f(None)?;
                e.insert((next.as_u64(), self.interval_ns));
                Ok(value)
            }
        }
    }
}

/// Window technique.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Technique {
    /// Reset at period boundaries.
    Fixed,
    /// Smooth (GCRA).
    Sliding,
}

/// The answer to a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Counted and within the limit.
    pub allowed: bool,
    /// Left in the window.
    pub remaining: u64,
    /// When refused: wait this long.
    pub retry_after_ms: u64,
}

/// All counters.
#[derive(Default)]
pub struct Limiter {
    fixed: DashMap<String, (u64, u64)>,
    sliding: DashMap<(u64, u64), Arc<Keyed>>,
    sliding_state: SharedTat,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("fixed_keys", &self.fixed.len())
            .field("sliding_quotas", &self.sliding.len())
            .finish()
    }
}

impl Limiter {
    /// Counts `cost` against `key` if that stays within `limit` per `period_ms`.
    /// With `enforce = false` the cost is counted regardless (a debit).
    #[allow(clippy::too_many_arguments)]
    pub fn check(
        &self,
        key: &str,
        cost: u64,
        limit: u64,
        period_ms: u64,
        technique: Technique,
        now_ms: u64,
        enforce: bool,
    ) -> Verdict {
        let period_ms = period_ms.max(1);
        let limit = limit.max(1);
        match technique {
            Technique::Fixed => self.fixed(key, cost, limit, period_ms, now_ms, enforce),
            Technique::Sliding => self.sliding(key, cost, limit, period_ms, enforce),
        }
    }

    fn fixed(
        &self,
        key: &str,
        cost: u64,
        limit: u64,
        period_ms: u64,
        now_ms: u64,
        enforce: bool,
    ) -> Verdict {
        let start = now_ms - now_ms % period_ms;
        let full_key = format!("{period_ms}:{key}");
        let mut entry = self.fixed.entry(full_key).or_insert((start, 0));
        if entry.0 != start {
            *entry = (start, 0);
        }
        if enforce && entry.1.saturating_add(cost) > limit {
            return Verdict {
                allowed: false,
                remaining: limit.saturating_sub(entry.1),
                retry_after_ms: start + period_ms - now_ms,
            };
        }
        entry.1 = entry.1.saturating_add(cost);
        Verdict {
            allowed: entry.1 <= limit,
            remaining: limit.saturating_sub(entry.1),
            retry_after_ms: 0,
        }
    }

    fn sliding(&self, key: &str, cost: u64, limit: u64, period_ms: u64, enforce: bool) -> Verdict {
        let limiter = self
            .sliding
            .entry((limit, period_ms))
            .or_insert_with(|| {
                let burst =
                    NonZeroU32::new(limit.min(u32::MAX as u64) as u32).unwrap_or(NonZeroU32::MIN);
                let per_cell =
                    Duration::from_nanos((period_ms.saturating_mul(1_000_000) / limit).max(1));
                let quota = Quota::with_period(per_cell)
                    .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
                    .allow_burst(burst);
                let state = SharedTat {
                    cells: self.sliding_state.cells.clone(),
                    interval_ns: per_cell.as_nanos() as u64,
                };
                Arc::new(Keyed::new(quota, state, OriginClock::new()))
            })
            .clone();
        let key = format!("{period_ms}:{key}");
        let mut wanted = cost.min(limit).min(u32::MAX as u64) as u32;
        loop {
            let Some(n) = NonZeroU32::new(wanted) else {
                return Verdict {
                    allowed: true,
                    remaining: limit,
                    retry_after_ms: 0,
                };
            };
            match limiter.check_key_n(&key, n) {
                Ok(Ok(snapshot)) => {
                    return Verdict {
                        allowed: true,
                        remaining: snapshot.remaining_burst_capacity() as u64,
                        retry_after_ms: 0,
                    };
                }
                Ok(Err(not_until)) if enforce => {
                    let wait = not_until.wait_time_from(origin_now());
                    return Verdict {
                        allowed: false,
                        remaining: 0,
                        retry_after_ms: (wait.as_millis() as u64).max(1),
                    };
                }
                // A debit takes what capacity is left (GCRA cannot be overdrawn).
                Ok(Err(_)) | Err(_) if !enforce && wanted > 1 => wanted /= 2,
                _ => {
                    return Verdict {
                        allowed: false,
                        remaining: 0,
                        retry_after_ms: period_ms,
                    };
                }
            }
        }
    }

    /// Forgets counters of past windows.
    pub fn sweep(&self, now_ms: u64) {
        self.fixed.retain(|k, v| {
            let period = k
                .split(':')
                .next()
                .and_then(|p| p.parse::<u64>().ok())
                .unwrap_or(1);
            v.0 + period > now_ms
        });
        // A key whose arrival time has passed counts nothing any more.
        let now = origin_now().as_u64();
        self.sliding_state.cells.retain(|_, (tat, _)| *tat > now);
    }
}

impl super::port::LimitsBackend for Limiter {
    fn check<'a>(
        &'a self,
        key: &'a str,
        cost: u64,
        limit: u64,
        period_ms: u64,
        technique: Technique,
        enforce: bool,
    ) -> super::port::StoreFuture<'a, Verdict> {
        Box::pin(std::future::ready(Limiter::check(
            self,
            key,
            cost,
            limit,
            period_ms,
            technique,
            super::now_ms(),
            enforce,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_window_counts_and_resets() {
        let l = Limiter::default();
        for _ in 0..3 {
            assert!(
                l.check("ip", 1, 3, 1000, Technique::Fixed, 5_000, true)
                    .allowed
            );
        }
        let refused = l.check("ip", 1, 3, 1000, Technique::Fixed, 5_400, true);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after_ms, 600);
        assert!(
            l.check("other", 1, 3, 1000, Technique::Fixed, 5_400, true)
                .allowed
        );
        assert!(
            l.check("ip", 1, 3, 1000, Technique::Fixed, 6_000, true)
                .allowed
        );
    }

    #[test]
    fn sliding_window_refuses_after_limit() {
        let l = Limiter::default();
        for _ in 0..5 {
            assert!(
                l.check("k", 1, 5, 60_000, Technique::Sliding, 0, true)
                    .allowed
            );
        }
        let v = l.check("k", 1, 5, 60_000, Technique::Sliding, 0, true);
        assert!(!v.allowed);
        assert!(v.retry_after_ms > 0 && v.retry_after_ms <= 12_000, "{v:?}");
    }

    #[test]
    fn changing_the_limit_keeps_the_count() {
        let l = Limiter::default();
        // Fixed: 3 of 3 used; raised to 5, two more fit, not five.
        for _ in 0..3 {
            assert!(
                l.check("k", 1, 3, 60_000, Technique::Fixed, 1_000, true)
                    .allowed
            );
        }
        assert!(
            !l.check("k", 1, 3, 60_000, Technique::Fixed, 1_000, true)
                .allowed
        );
        let v = l.check("k", 1, 5, 60_000, Technique::Fixed, 1_000, true);
        assert!(v.allowed && v.remaining == 1, "{v:?}");
        assert!(
            l.check("k", 1, 5, 60_000, Technique::Fixed, 1_000, true)
                .allowed
        );
        assert!(
            !l.check("k", 1, 5, 60_000, Technique::Fixed, 1_000, true)
                .allowed
        );
        // Lowered to 2: already over, refused.
        assert!(
            !l.check("k", 1, 2, 60_000, Technique::Fixed, 1_000, true)
                .allowed
        );

        // Sliding: 4 of 4 per hour used; raised to 6, two more fit.
        for _ in 0..4 {
            assert!(
                l.check("s", 1, 4, 3_600_000, Technique::Sliding, 0, true)
                    .allowed
            );
        }
        assert!(
            !l.check("s", 1, 4, 3_600_000, Technique::Sliding, 0, true)
                .allowed
        );
        assert!(
            l.check("s", 1, 6, 3_600_000, Technique::Sliding, 0, true)
                .allowed
        );
        assert!(
            l.check("s", 1, 6, 3_600_000, Technique::Sliding, 0, true)
                .allowed
        );
        let v = l.check("s", 1, 6, 3_600_000, Technique::Sliding, 0, true);
        assert!(
            !v.allowed,
            "the four counted at the old limit stay counted: {v:?}"
        );
        // Another key is untouched by all of this.
        assert!(
            l.check("t", 1, 6, 3_600_000, Technique::Sliding, 0, true)
                .allowed
        );
    }

    #[test]
    fn debit_overdraws_fixed_windows() {
        let l = Limiter::default();
        l.check("u", 150, 100, 60_000, Technique::Fixed, 0, false);
        assert!(
            !l.check("u", 1, 100, 60_000, Technique::Fixed, 1, true)
                .allowed
        );
    }
}
