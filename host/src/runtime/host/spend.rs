//! The `spend` import: dollar budgets held by reservation (see `store::spend`), each
//! reservation tracked in its request's context so the host settles what a filter left open.

use super::{HostState, lock};
use crate::runtime::bindings::aigw::filter::spend;

impl spend::Host for HostState {
    async fn reserve(
        &mut self,
        scope: String,
        usd: f64,
        limit_usd: f64,
        period: String,
        wait_ms: u64,
    ) -> Result<u64, spend::Refusal> {
        use crate::store::spend::{Period, nanos_down, nanos_up};
        let refused = |spent: i64, reserved: i64, resets_at_ms: u64| spend::Refusal {
            spent_usd: spent as f64 / 1e9,
            reserved_usd: reserved as f64 / 1e9,
            limit_usd,
            resets_at_ms,
        };
        // Fail closed: an unknown period or a reservation outside a request is refused.
        let (Some(period), Some(ctx)) = (Period::parse(&period), self.request.clone()) else {
            return Err(refused(0, 0, 0));
        };
        let started = std::time::Instant::now();
        let reserved = self
            .services
            .spend
            .reserve_waiting(
                &scope,
                period,
                nanos_up(usd),
                nanos_down(limit_usd),
                std::time::Duration::from_millis(wait_ms.min(300_000)),
            )
            .await;
        // Waiting for other requests is the host's time, not the filter's.
        self.host_wait_ms = self
            .host_wait_ms
            .saturating_add(started.elapsed().as_millis() as u64);
        match reserved {
            Ok(id) => {
                lock(&ctx).reservations.push(id);
                Ok(id)
            }
            Err(r) => Err(refused(r.ledger.spent, r.ledger.reserved, r.resets_at_ms)),
        }
    }

    async fn settle(&mut self, reservation: u64, usd: f64) {
        // Only this request's own reservations.
        let Some(ctx) = &self.request else { return };
        {
            let mut ctx = lock(ctx);
            let Some(i) = ctx.reservations.iter().position(|r| *r == reservation) else {
                return;
            };
            ctx.reservations.swap_remove(i);
        }
        let started = std::time::Instant::now();
        self.services
            .spend
            .finish(reservation, crate::store::spend::nanos_up(usd))
            .await;
        self.host_wait_ms = self
            .host_wait_ms
            .saturating_add(started.elapsed().as_millis() as u64);
    }

    async fn spent(&mut self, scope: String, period: String) -> f64 {
        let Some(p) = crate::store::spend::Period::parse(&period) else {
            return 0.0;
        };
        match self.services.spend.current(&scope, p).await {
            Ok(l) => l.spent as f64 / 1e9,
            Err(_) => 0.0,
        }
    }

    fn price_bound(
        &mut self,
        provider: String,
        model: String,
        input_tokens: u64,
        output_tokens: u64,
    ) -> Option<f64> {
        let ctx = self.request.as_ref()?;
        let config = lock(ctx).providers.clone();
        config
            .prices
            .bound(&provider, &model, input_tokens, output_tokens)
    }
}
