//! Rate-limit counters behind the `limits` import. `fixed`: a counter per key
//! reset at each period boundary (can be overdrawn by `debit`, for token
//! budgets). `sliding`: governor's GCRA, which spreads the allowance over the
//! period so there is no burst at window edges; one keyed limiter per quota.

use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

type Keyed =
    RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

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
        let full_key = format!("{period_ms}:{limit}:{key}");
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
                let per_cell = Duration::from_nanos((period_ms * 1_000_000 / limit).max(1));
                let quota = Quota::with_period(per_cell)
                    .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
                    .allow_burst(burst);
                Arc::new(RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>())
            })
            .clone();
        let key = key.to_string();
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
                    let wait = not_until.wait_time_from(DefaultClock::default().now());
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
        for l in self.sliding.iter() {
            l.value().retain_recent();
        }
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
    fn debit_overdraws_fixed_windows() {
        let l = Limiter::default();
        l.check("u", 150, 100, 60_000, Technique::Fixed, 0, false);
        assert!(
            !l.check("u", 1, 100, 60_000, Technique::Fixed, 1, true)
                .allowed
        );
    }
}
