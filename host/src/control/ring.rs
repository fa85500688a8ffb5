//! The keys the request path resolves: a snapshot of every active key by the SHA-256 of its
//! secret, swapped whole when the database's change counter moves (checked every 250 ms, so a
//! revocation on any replica is refused everywhere within a second). The request path reads the
//! snapshot only; it never waits on the database.

use super::keys::{KEY_PREFIX, KeySpec, hash_secret};
use super::store::{self, StoredKey, StoredTeam};
use crate::runtime::host::Services;
use crate::store::logs::{LogStore, LogStoreError};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// How often replicas look for changed keys.
pub const REFRESH: Duration = Duration::from_millis(250);
/// How often last-used times are written.
const TOUCH_EVERY: Duration = Duration::from_secs(5);

/// Who a virtual key says is calling, with what it allows.
#[derive(Debug)]
pub struct Consumer {
    /// `key_…`.
    pub key_id: String,
    /// The key's spec.
    pub spec: KeySpec,
    /// Its team, when it has one.
    pub team: Option<Arc<StoredTeam>>,
    /// Last request through this process (ms), 0 when none since the snapshot.
    pub last_used_ms: AtomicI64,
    info: Arc<crate::runtime::host::ConsumerInfo>,
}

impl Consumer {
    /// The key's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The consumer as filters and log entries see it (built once per snapshot).
    pub fn info(&self) -> Arc<crate::runtime::host::ConsumerInfo> {
        self.info.clone()
    }

    /// Whether the key has expired at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        self.spec.expires_at_ms.is_some_and(|t| t <= now_ms)
    }
}

struct Snapshot {
    version: i64,
    by_hash: HashMap<[u8; 32], Arc<Consumer>>,
}

/// The resolvable keys of this process.
pub struct KeyRing {
    services: Arc<Services>,
    snapshot: ArcSwap<Snapshot>,
    touched_at: AtomicI64,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("keys", &self.snapshot.load().by_hash.len())
            .finish()
    }
}

fn policy(
    models: &Option<Vec<String>>,
    providers: &Option<Vec<String>>,
    budget: &Option<super::keys::Budget>,
    rpm: Option<u64>,
    tpm: Option<u64>,
) -> crate::runtime::host::PolicyInfo {
    use super::keys::Period;
    crate::runtime::host::PolicyInfo {
        models: models.clone(),
        providers: providers.clone(),
        budget_usd: budget.as_ref().map(|b| b.amount),
        budget_period: match budget.as_ref().map(|b| b.period) {
            Some(Period::Day) => "day",
            Some(Period::Month) => "month",
            Some(Period::Total) => "total",
            None => "",
        }
        .to_string(),
        requests_per_minute: rpm,
        tokens_per_minute: tpm,
    }
}

fn hex32(hex_text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(hex_text).ok()?;
    bytes.try_into().ok()
}

impl KeyRing {
    /// Creates the tables when missing and loads the keys (from the log store's database).
    pub fn open(services: Arc<Services>) -> Result<Arc<KeyRing>, LogStoreError> {
        let ring = Arc::new(KeyRing {
            services,
            snapshot: ArcSwap::from_pointee(Snapshot {
                version: -1,
                by_hash: HashMap::new(),
            }),
            touched_at: AtomicI64::new(0),
        });
        ring.store()?.with_db(store::ensure_schema)?;
        for (scope, start, spent) in ring.store()?.with_db(store::spend)? {
            ring.services.spend.restore(&scope, start, spent);
        }
        ring.refresh()?;
        Ok(ring)
    }

    fn store(&self) -> Result<&LogStore, LogStoreError> {
        self.services
            .logs
            .as_ref()
            .ok_or(LogStoreError::Unavailable("the log store is not open"))
    }

    /// The spend ledger budgets are kept in.
    pub fn spend(&self) -> &crate::store::spend::SpendLedger {
        &self.services.spend
    }

    /// Runs `f` on the database (blocking).
    pub fn with_db<R>(
        &self,
        f: impl FnOnce(&mut dyn crate::store::logs::db::Db) -> Result<R, LogStoreError>,
    ) -> Result<R, LogStoreError> {
        self.store()?.with_db(f)
    }

    /// The consumer of a presented secret, if it is an active key (revocation and expiry as of
    /// the snapshot; expiry is checked by the caller against the clock).
    pub fn resolve(&self, secret: &str) -> Option<Arc<Consumer>> {
        if !secret.starts_with(KEY_PREFIX) {
            return None;
        }
        self.snapshot
            .load()
            .by_hash
            .get(&hash_secret(secret))
            .cloned()
    }

    /// Number of active keys in the snapshot.
    pub fn len(&self) -> usize {
        self.snapshot.load().by_hash.len()
    }

    /// Whether the snapshot has no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reloads the snapshot when the database changed; true when it did. Blocking.
    pub fn refresh(&self) -> Result<bool, LogStoreError> {
        let store = self.store()?;
        let current = self.snapshot.load();
        let version = store.with_db(store::version)?;
        if version == current.version {
            return Ok(false);
        }
        let (keys, teams) = store.with_db(|db| Ok((store::active_keys(db)?, store::teams(db)?)))?;
        let teams: HashMap<String, Arc<StoredTeam>> = teams
            .into_iter()
            .map(|t| (t.id.clone(), Arc::new(t)))
            .collect();
        let mut by_hash = HashMap::with_capacity(keys.len());
        for StoredKey { id, hash, spec, .. } in keys {
            let Some(h) = hex32(&hash) else { continue };
            // A key used since the last write keeps its time across the swap.
            let last = current
                .by_hash
                .get(&h)
                .map(|c| c.last_used_ms.load(Ordering::Relaxed))
                .unwrap_or(0);
            let team = match &spec.team {
                None => None,
                Some(t) => match teams.get(t) {
                    Some(team) => Some(team.clone()),
                    // Its team's limits cannot be applied: the key does not resolve.
                    None => {
                        tracing::warn!(key = %id, team = %t, "virtual key refused: its team does not exist");
                        continue;
                    }
                },
            };
            let info = Arc::new(crate::runtime::host::ConsumerInfo {
                key_id: id.clone(),
                key_name: spec.name.clone(),
                team: team.as_ref().map(|t| t.id.clone()),
                team_name: team.as_ref().map(|t| t.spec.name.clone()),
                metadata: spec
                    .metadata
                    .iter()
                    .flatten()
                    .map(|(k, v)| {
                        let text = match v {
                            serde_json::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        (k.clone(), text)
                    })
                    .collect(),
                key_policy: policy(
                    &spec.models,
                    &spec.providers,
                    &spec.budget_usd,
                    spec.requests_per_minute,
                    spec.tokens_per_minute,
                ),
                team_policy: team.as_ref().map(|t| {
                    policy(
                        &t.spec.models,
                        &t.spec.providers,
                        &t.spec.budget_usd,
                        t.spec.requests_per_minute,
                        t.spec.tokens_per_minute,
                    )
                }),
            });
            by_hash.insert(
                h,
                Arc::new(Consumer {
                    key_id: id,
                    spec,
                    team,
                    last_used_ms: AtomicI64::new(last),
                    info,
                }),
            );
        }
        self.snapshot.store(Arc::new(Snapshot { version, by_hash }));
        Ok(true)
    }

    /// Writes the last-used times of keys used since the previous write. Blocking.
    pub fn write_last_used(&self) -> Result<(), LogStoreError> {
        let since = self.touched_at.load(Ordering::Relaxed);
        let used: Vec<(String, i64)> = self
            .snapshot
            .load()
            .by_hash
            .values()
            .filter_map(|c| {
                let at = c.last_used_ms.load(Ordering::Relaxed);
                (at > since).then(|| (c.key_id.clone(), at))
            })
            .collect();
        if let Some(newest) = used.iter().map(|(_, at)| *at).max() {
            self.with_db(|db| store::touch_keys(db, &used))?;
            self.touched_at.fetch_max(newest, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Writes the settled spend changed since the last write. Blocking.
    pub fn write_spend(&self) -> Result<(), LogStoreError> {
        let dirty = self.services.spend.take_dirty();
        if dirty.is_empty() {
            return Ok(());
        }
        let written = self.with_db(|db| store::write_spend(db, &dirty));
        if written.is_err() {
            // Tried again at the next tick.
            self.services.spend.mark_dirty(&dirty);
        }
        written
    }

    /// Keeps the snapshot current, spend and last-used times written, until the process ends.
    pub fn spawn_refresher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let ring = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REFRESH);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_touch = tokio::time::Instant::now();
            loop {
                tick.tick().await;
                let touch = last_touch.elapsed() >= TOUCH_EVERY;
                if touch {
                    last_touch = tokio::time::Instant::now();
                }
                let r = ring.clone();
                // Each step on its own: a failed spend write must not hold back revocations.
                let result = tokio::task::spawn_blocking(move || {
                    if let Err(e) = r.refresh() {
                        tracing::warn!("virtual keys: cannot refresh: {e}");
                    }
                    if let Err(e) = r.write_spend() {
                        tracing::warn!("budgets: cannot write spend (kept for the next try): {e}");
                    }
                    if touch && let Err(e) = r.write_last_used() {
                        tracing::warn!("virtual keys: cannot write last-used times: {e}");
                    }
                })
                .await;
                if let Err(e) = result {
                    tracing::warn!("virtual keys: refresh task failed: {e}");
                }
            }
        })
    }
}
