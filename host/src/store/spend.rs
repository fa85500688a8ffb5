//! Dollar budgets as reservations, in billionths of a USD (integers: no rounding drift). A
//! request reserves its worst-case cost before it runs; the reservation fits only when settled
//! spend, plus what running requests hold, plus it stays within the limit, checked and taken
//! under one lock, so concurrent requests can never together spend past the limit. At the end
//! the request settles its exact cost (at most what it reserved, by construction of the bound)
//! or releases the reservation. Settled spend is written to the database every 250 ms and read
//! back at start, so a restart does not forget it.
//!
//! With `[store] backend = "redis"` the ledgers live in Redis instead, so every replica counts
//! against one budget: the check-and-take is one Lua script there (see `store::redis`), a
//! waiting reservation polls every 20 ms, and when Redis cannot be reached `limits_on_error`
//! decides (`closed`: refuse, `open`: let the request through unbudgeted).

use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// USD as billionths.
pub type Nanos = i64;

/// USD to nanos, rounded up (a reservation or a charge never comes out smaller).
pub fn nanos_up(usd: f64) -> Nanos {
    if !usd.is_finite() || usd <= 0.0 {
        return 0;
    }
    (usd * 1e9).ceil().min(i64::MAX as f64) as Nanos
}

/// USD to nanos, rounded down (a limit never comes out larger).
pub fn nanos_down(usd: f64) -> Nanos {
    if !usd.is_finite() || usd <= 0.0 {
        return 0;
    }
    (usd * 1e9).floor().min(i64::MAX as f64) as Nanos
}

/// A budget period: `day` or `month` (UTC) or `total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// A UTC day.
    Day,
    /// A UTC calendar month.
    Month,
    /// Never resets.
    Total,
}

impl Period {
    /// Reads `day`, `month` or `total`.
    pub fn parse(text: &str) -> Option<Period> {
        match text {
            "day" => Some(Period::Day),
            "month" => Some(Period::Month),
            "total" => Some(Period::Total),
            _ => None,
        }
    }

    /// The current period's start and end (ms since the epoch; end 0 for `total`).
    pub fn bounds(self, now_ms: u64) -> (i64, u64) {
        const DAY: u64 = 86_400_000;
        match self {
            Period::Total => (0, 0),
            Period::Day => {
                let start = now_ms - now_ms % DAY;
                (start as i64, start + DAY)
            }
            Period::Month => {
                let Ok(now) =
                    time::OffsetDateTime::from_unix_timestamp_nanos(now_ms as i128 * 1_000_000)
                else {
                    return (0, 0);
                };
                let first = now.date().replace_day(1).unwrap_or(now.date());
                let next = match first.month() {
                    time::Month::December => first
                        .replace_year(first.year() + 1)
                        .and_then(|d| d.replace_month(time::Month::January)),
                    m => first.replace_month(m.next()),
                }
                .unwrap_or(first);
                let ms = |d: time::Date| {
                    (d.midnight().assume_utc().unix_timestamp_nanos() / 1_000_000) as i64
                };
                (ms(first), ms(next).max(0) as u64)
            }
        }
    }
}

/// One scope's spend in one period.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Ledger {
    /// Settled.
    pub spent: Nanos,
    /// Held by running requests.
    pub reserved: Nanos,
}

/// Why a reservation did not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The ledger when refused.
    pub ledger: Ledger,
    /// The limit.
    pub limit: Nanos,
    /// When the period ends (0: never).
    pub resets_at_ms: u64,
}

#[derive(Debug, Clone)]
struct Held {
    ledger: (String, i64),
    amount: Nanos,
    /// When the period ends (0: never), for the shared counter's expiry.
    resets_at_ms: u64,
    /// The reservation's member in the shared store (`None`: memory, or taken unbudgeted
    /// while the shared store was down).
    member: Option<String>,
}

/// How long a shared reservation may be held before it frees itself (a replica that died
/// mid-request).
const SHARED_HOLD_MS: u64 = 15 * 60 * 1000;

/// Every scope's spend in this process.
#[derive(Debug, Default)]
pub struct SpendLedger {
    ledgers: DashMap<(String, i64), Ledger>,
    held: DashMap<u64, Held>,
    next_id: AtomicU64,
    /// Ledgers whose spend changed since the last write.
    dirty: DashMap<(String, i64), ()>,
    /// Settlements above their reservation (USD nanos over), counted, never hidden.
    pub overshoot_nanos: AtomicU64,
    /// Woken at every settlement (reservations waiting for room).
    settled: tokio::sync::Notify,
    /// The shared store, when replicas share budgets.
    shared: Option<std::sync::Arc<super::redis::RedisStore>>,
}

impl SpendLedger {
    /// A ledger in this process, or in `shared` (Redis) when replicas share budgets.
    pub fn new(shared: Option<std::sync::Arc<super::redis::RedisStore>>) -> SpendLedger {
        SpendLedger {
            shared,
            ..SpendLedger::default()
        }
    }

    /// Whether budgets live in the shared store.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    fn hold(
        &self,
        key: (String, i64),
        amount: Nanos,
        resets_at_ms: u64,
        member: Option<String>,
    ) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        self.held.insert(
            id,
            Held {
                ledger: key,
                amount,
                resets_at_ms,
                member,
            },
        );
        id
    }

    /// Reserves `amount` for `scope` in `period` if it fits under `limit`.
    pub fn reserve(
        &self,
        scope: &str,
        period: Period,
        amount: Nanos,
        limit: Nanos,
        now_ms: u64,
    ) -> Result<u64, Refusal> {
        let (start, resets_at_ms) = period.bounds(now_ms);
        let key = (scope.to_string(), start);
        let amount = amount.max(0);
        {
            // The shard lock makes check-and-take one step.
            let mut l = self.ledgers.entry(key.clone()).or_default();
            let after = l.spent.saturating_add(l.reserved).saturating_add(amount);
            if after > limit {
                return Err(Refusal {
                    ledger: *l,
                    limit,
                    resets_at_ms,
                });
            }
            l.reserved = l.reserved.saturating_add(amount);
        }
        Ok(self.hold(key, amount, resets_at_ms, None))
    }

    /// Like [`SpendLedger::reserve`], but when the reservation would fit once running requests
    /// settle (settled spend plus it fits the limit), waits for settlements up to `wait`.
    /// Refuses at once when settled spend alone leaves no room.
    pub async fn reserve_waiting(
        &self,
        scope: &str,
        period: Period,
        amount: Nanos,
        limit: Nanos,
        wait: std::time::Duration,
    ) -> Result<u64, Refusal> {
        let deadline = tokio::time::Instant::now() + wait;
        if let Some(shared) = &self.shared {
            return self
                .reserve_shared(shared, scope, period, amount.max(0), limit, deadline)
                .await;
        }
        loop {
            // Registered before the check, so a settlement in between is not missed.
            let notified = self.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.reserve(scope, period, amount, limit, super::now_ms()) {
                Ok(id) => return Ok(id),
                Err(r) => {
                    let could_fit = r.ledger.spent.saturating_add(amount) <= limit;
                    if !could_fit || tokio::time::Instant::now() >= deadline {
                        return Err(r);
                    }
                    if tokio::time::timeout_at(deadline, notified).await.is_err() {
                        return self.reserve(scope, period, amount, limit, super::now_ms());
                    }
                }
            }
        }
    }

    async fn reserve_shared(
        &self,
        shared: &super::redis::RedisStore,
        scope: &str,
        period: Period,
        amount: Nanos,
        limit: Nanos,
        deadline: tokio::time::Instant,
    ) -> Result<u64, Refusal> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        // Unique across replicas; ends with the amount the script sums.
        let member = format!("{}:{id}|{amount}", uuid::Uuid::new_v4().simple());
        loop {
            let (start, resets_at_ms) = period.bounds(super::now_ms());
            let key = (scope.to_string(), start);
            match shared
                .spend_reserve(scope, start, &member, amount, limit, SHARED_HOLD_MS)
                .await
            {
                Ok(Ok(())) => {
                    self.held.insert(
                        id,
                        Held {
                            ledger: key,
                            amount,
                            resets_at_ms,
                            member: Some(member),
                        },
                    );
                    return Ok(id);
                }
                Ok(Err((spent, reserved))) => {
                    let refusal = Refusal {
                        ledger: Ledger { spent, reserved },
                        limit,
                        resets_at_ms,
                    };
                    let could_fit = spent.saturating_add(amount) <= limit;
                    if !could_fit || tokio::time::Instant::now() >= deadline {
                        return Err(refusal);
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(_) => {
                    // The script may have run and only its answer been lost: drop the hold it
                    // may have taken (best effort; otherwise it expires by itself).
                    let _ = shared.spend_release(scope, start, &member).await;
                    return match shared.limits_on_error() {
                        super::redis::OnError::Closed => Err(Refusal {
                            ledger: Ledger::default(),
                            limit,
                            resets_at_ms,
                        }),
                        // Let through without a shared reservation; its cost is still added
                        // when the store answers again at settlement.
                        super::redis::OnError::Open => {
                            Ok(self.hold(key, amount, resets_at_ms, None))
                        }
                    };
                }
            }
        }
    }

    /// Removes an open hold, counting any part of `charge` above it as overshoot; the hold and
    /// the charge (never negative). `None` when the id was settled already.
    fn take_hold(&self, id: u64, charge: Nanos) -> Option<(Held, Nanos)> {
        let (_, held) = self.held.remove(&id)?;
        let charge = charge.max(0);
        if charge > held.amount {
            self.overshoot_nanos
                .fetch_add((charge - held.amount) as u64, Ordering::Relaxed);
        }
        Some((held, charge))
    }

    /// Ends a reservation wherever it is kept: `charge` becomes spend, the hold goes.
    pub async fn finish(&self, id: u64, charge: Nanos) {
        let Some(shared) = &self.shared else {
            return self.settle(id, charge);
        };
        let Some((held, charge)) = self.take_hold(id, charge) else {
            return;
        };
        let ttl = match held.resets_at_ms {
            0 => 0,
            end => end.saturating_sub(super::now_ms()) + 86_400_000,
        };
        let member = held.member.unwrap_or_default();
        if shared
            .spend_settle(&held.ledger.0, held.ledger.1, &member, charge, ttl)
            .await
            .is_err()
        {
            tracing::warn!(
                scope = %held.ledger.0,
                "budget spend of {charge} nano-USD not recorded: the shared store did not answer"
            );
        }
    }

    /// The ledger of `scope` in the current `period`, wherever it is kept.
    pub async fn current(
        &self,
        scope: &str,
        period: Period,
    ) -> Result<Ledger, super::port::Unavailable> {
        let now = super::now_ms();
        match &self.shared {
            None => Ok(self.ledger(scope, period, now)),
            Some(shared) => {
                let (start, _) = period.bounds(now);
                let (spent, reserved) = shared.spend_ledger(scope, start).await?;
                Ok(Ledger { spent, reserved })
            }
        }
    }

    /// Ends a reservation: `charge` becomes spend, the hold goes. Unknown ids (settled
    /// already) do nothing.
    pub fn settle(&self, id: u64, charge: Nanos) {
        let Some((held, charge)) = self.take_hold(id, charge) else {
            return;
        };
        if let Some(mut l) = self.ledgers.get_mut(&held.ledger) {
            l.reserved = (l.reserved - held.amount).max(0);
            l.spent = l.spent.saturating_add(charge);
        }
        if charge > 0 {
            self.dirty.insert(held.ledger, ());
        }
        self.settled.notify_waiters();
    }

    /// What a reservation holds, if open.
    pub fn held(&self, id: u64) -> Option<Nanos> {
        self.held.get(&id).map(|h| h.amount)
    }

    /// The ledger of `scope` in the current `period`.
    pub fn ledger(&self, scope: &str, period: Period, now_ms: u64) -> Ledger {
        let (start, _) = period.bounds(now_ms);
        self.ledgers
            .get(&(scope.to_string(), start))
            .map(|l| *l)
            .unwrap_or_default()
    }

    /// Sets settled spend read back from the database (at start).
    pub fn restore(&self, scope: &str, period_start: i64, spent: Nanos) {
        let mut l = self
            .ledgers
            .entry((scope.to_string(), period_start))
            .or_default();
        l.spent = l.spent.max(spent);
    }

    /// Marks ledgers as changed again (their write failed).
    pub fn mark_dirty(&self, rows: &[(String, i64, Nanos)]) {
        for (scope, start, _) in rows {
            self.dirty.insert((scope.clone(), *start), ());
        }
    }

    /// The settled spend of ledgers changed since the last call: (scope, period start, spent).
    pub fn take_dirty(&self) -> Vec<(String, i64, Nanos)> {
        let keys: Vec<(String, i64)> = self.dirty.iter().map(|e| e.key().clone()).collect();
        keys.into_iter()
            .filter_map(|k| {
                self.dirty.remove(&k);
                let spent = self.ledgers.get(&k)?.spent;
                Some((k.0, k.1, spent))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: u64 = 1_764_000_000_000; // 2025-11-24

    #[test]
    fn periods() {
        let (start, end) = Period::Day.bounds(NOW);
        assert_eq!((start as u64) % 86_400_000, 0);
        assert_eq!(end - start as u64, 86_400_000);
        // 2025-11-24 is in November: 2025-11-01 to 2025-12-01.
        assert_eq!(
            Period::Month.bounds(NOW),
            (1_761_955_200_000, 1_764_547_200_000)
        );
        // December rolls into January.
        assert_eq!(
            Period::Month.bounds(1_765_000_000_000),
            (1_764_547_200_000, 1_767_225_600_000)
        );
        assert_eq!(Period::Total.bounds(NOW), (0, 0));
    }

    #[test]
    fn a_reservation_that_does_not_fit_is_refused() {
        let l = SpendLedger::default();
        let a = l.reserve("k", Period::Day, 600, 1000, NOW).unwrap();
        let e = l.reserve("k", Period::Day, 600, 1000, NOW).unwrap_err();
        assert_eq!(
            e.ledger,
            Ledger {
                spent: 0,
                reserved: 600
            }
        );
        l.settle(a, 100);
        assert_eq!(
            l.ledger("k", Period::Day, NOW),
            Ledger {
                spent: 100,
                reserved: 0
            }
        );
        let b = l.reserve("k", Period::Day, 900, 1000, NOW).unwrap();
        l.settle(b, 0);
        l.settle(b, 500); // settled twice: ignored
        assert_eq!(l.ledger("k", Period::Day, NOW).spent, 100);
        // Another day starts from nothing.
        assert_eq!(
            l.ledger("k", Period::Day, NOW + 86_400_000),
            Ledger::default()
        );
    }

    #[test]
    fn concurrent_reservations_never_pass_the_limit() {
        let l = std::sync::Arc::new(SpendLedger::default());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || {
                    let mut ok = 0;
                    for _ in 0..1000 {
                        if let Ok(id) = l.reserve("k", Period::Total, 7, 10_000, NOW) {
                            l.settle(id, 7);
                            ok += 1;
                        }
                    }
                    ok
                })
            })
            .collect();
        let ok: i64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        let spent = l.ledger("k", Period::Total, NOW).spent;
        assert_eq!(spent, ok * 7);
        assert!(spent <= 10_000);
        assert_eq!(ok, 10_000 / 7, "every reservation that fit was taken");
    }

    proptest! {
        /// Any sequence of reserves and settles: spend never negative, never past the limit
        /// when every charge is within its reservation, holds back to zero at the end, and a
        /// charge above its reservation is counted as overshoot.
        #[test]
        fn reservation_arithmetic(ops in proptest::collection::vec((0i64..5_000, 0i64..6_000), 1..200),
                                  limit in 0i64..100_000) {
            let l = SpendLedger::default();
            let mut over = 0u64;
            for (reserve, charge) in ops {
                if let Ok(id) = l.reserve("k", Period::Total, reserve, limit, NOW) {
                    let c = charge.min(reserve * 2);
                    if c > reserve { over += (c - reserve) as u64; }
                    l.settle(id, c);
                }
                let ledger = l.ledger("k", Period::Total, NOW);
                prop_assert!(ledger.spent >= 0 && ledger.reserved == 0);
            }
            prop_assert_eq!(l.overshoot_nanos.load(Ordering::Relaxed), over);
            let spent = l.ledger("k", Period::Total, NOW).spent;
            prop_assert!(spent <= limit + over as i64);
        }
    }
}
