//! The keys and teams admin API (admin listener, admin token):
//!
//! | route | does |
//! |---|---|
//! | `POST /api/keys` | creates a key; the answer holds its secret, shown this once only |
//! | `GET /api/keys?limit=&cursor=` | lists keys by id (never secrets) |
//! | `GET /api/keys/{id}` | one key |
//! | `PATCH /api/keys/{id}` | changes any field; `"rotate": true` issues a new secret |
//! | `DELETE /api/keys/{id}` | revokes |
//! | `POST /api/teams`, `GET /api/teams`, `GET/PATCH/DELETE /api/teams/{id}` | the same for teams |

use super::keys::{self, KeySpec, TeamSpec, parse_spec, patched};
use super::ring::KeyRing;
use super::store::{self, StoredKey, StoredTeam};
use crate::http::error::GatewayError;
use crate::pipeline::Generation;
use crate::store::logs::LogStoreError;
use hyper::{Method, StatusCode};
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// What the routes need from the serving gateway.
pub struct Ctx {
    /// The keys.
    pub ring: Arc<KeyRing>,
    /// The configuration in use (gateway and provider names).
    pub generation: Arc<Generation>,
}

fn now() -> i64 {
    crate::store::now_ms() as i64
}

fn spec_error(e: keys::SpecError) -> GatewayError {
    GatewayError::bad_request(e.to_string())
}

fn not_found(kind: &str) -> impl Fn(LogStoreError) -> GatewayError + '_ {
    move |e| match e {
        LogStoreError::NotFound { id } => GatewayError::not_found(format!("no {kind} '{id}'")),
        e => e.into(),
    }
}

fn body_object(body: &[u8]) -> Result<Map<String, Value>, GatewayError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(GatewayError::bad_request("body: expected a JSON object")),
        Err(e) => Err(GatewayError::bad_request(format!("body: not JSON: {e}"))),
    }
}

/// Runs a blocking database job.
async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, GatewayError> + Send + 'static,
) -> Result<R, GatewayError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| GatewayError::unavailable(format!("key store job failed: {e}")))?
}

/// A budget's current spend, for the admin API.
async fn spend_json(ring: &KeyRing, scope: &str, budget: &Option<keys::Budget>) -> Value {
    use crate::store::spend::Period;
    let Some(b) = budget else {
        return Value::Null;
    };
    let period = match b.period {
        keys::Period::Day => Period::Day,
        keys::Period::Month => Period::Month,
        keys::Period::Total => Period::Total,
    };
    let now = crate::store::now_ms();
    let Ok(l) = ring.spend().current(scope, period).await else {
        return json!({"error": "the shared store did not answer"});
    };
    json!({
        "spent_usd": l.spent as f64 / 1e9,
        "reserved_usd": l.reserved as f64 / 1e9,
        "limit_usd": b.amount,
        "period": b.period,
        "resets_at_ms": period.bounds(now).1,
    })
}

impl Ctx {
    async fn key_json(&self, k: &StoredKey) -> Value {
        let mut v = store::key_json(k);
        v["spend"] = spend_json(&self.ring, &k.id, &k.spec.budget_usd).await;
        v
    }

    async fn team_json(&self, t: &StoredTeam) -> Value {
        let mut v = store::team_json(t);
        v["spend"] = spend_json(&self.ring, &t.id, &t.spec.budget_usd).await;
        v
    }

    fn gateways(&self) -> Vec<String> {
        let mut g: Vec<String> = self.generation.gateways.keys().cloned().collect();
        g.sort();
        g
    }

    fn providers(&self) -> Vec<String> {
        let mut p: Vec<String> = self.generation.config.providers.keys().cloned().collect();
        p.sort();
        p
    }

    /// Routes `/api/keys…` and `/api/teams…`; `None` for any other path.
    pub async fn route(
        &self,
        method: &Method,
        path: &str,
        query: &str,
        body: &[u8],
    ) -> Option<Result<(StatusCode, Value), GatewayError>> {
        let decoded: Vec<String> = path
            .trim_matches('/')
            .split('/')
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect();
        let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
        let result = match (method, segments.as_slice()) {
            (&Method::POST, ["api", "keys"]) => self.create_key(body).await,
            (&Method::GET, ["api", "keys"]) => self.list_keys(query).await,
            (&Method::GET, ["api", "keys", id]) => self.get_key(id).await,
            (&Method::PATCH, ["api", "keys", id]) => self.patch_key(id, body).await,
            (&Method::DELETE, ["api", "keys", id]) => self.revoke_key(id).await,
            (&Method::POST, ["api", "teams"]) => self.create_team(body).await,
            (&Method::GET, ["api", "teams"]) => self.list_teams().await,
            (&Method::GET, ["api", "teams", id]) => self.get_team(id).await,
            (&Method::PATCH, ["api", "teams", id]) => self.patch_team(id, body).await,
            (&Method::DELETE, ["api", "teams", id]) => self.delete_team(id).await,
            (_, ["api", "keys" | "teams", ..]) => Err(GatewayError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{method} {path}: not an admin route"),
            )),
            _ => return None,
        };
        Some(result)
    }

    /// Makes this process see a change at once (others see it within a second).
    async fn refresh(&self) {
        let ring = self.ring.clone();
        let _ = tokio::task::spawn_blocking(move || ring.refresh()).await;
    }

    async fn team_exists_checker(&self) -> Result<Vec<String>, GatewayError> {
        let ring = self.ring.clone();
        blocking(move || {
            Ok(ring
                .with_db(store::teams)?
                .into_iter()
                .map(|t| t.id)
                .collect())
        })
        .await
    }

    async fn create_key(&self, body: &[u8]) -> Result<(StatusCode, Value), GatewayError> {
        let spec: KeySpec = parse_spec(Value::Object(body_object(body)?)).map_err(spec_error)?;
        let teams = self.team_exists_checker().await?;
        spec.check(&self.gateways(), &self.providers(), |t| {
            teams.iter().any(|x| x == t)
        })
        .map_err(spec_error)?;
        let secret = keys::new_secret().map_err(GatewayError::unavailable)?;
        let now = now();
        let key = StoredKey {
            id: format!("key_{}", uuid::Uuid::new_v4().simple()),
            hash: hex::encode(keys::hash_secret(&secret)),
            prefix: keys::display_prefix(&secret),
            spec,
            created_at_ms: now,
            updated_at_ms: now,
            revoked_at_ms: None,
            last_used_at_ms: None,
        };
        let ring = self.ring.clone();
        let stored = key.clone();
        blocking(move || Ok(ring.with_db(|db| store::insert_key(db, &stored))?)).await?;
        self.refresh().await;
        let mut v = self.key_json(&key).await;
        v["key"] = Value::String(secret);
        Ok((StatusCode::CREATED, v))
    }

    async fn list_keys(&self, query: &str) -> Result<(StatusCode, Value), GatewayError> {
        let (mut limit, mut after) = (100i64, String::new());
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "limit" => {
                    limit = v
                        .parse::<i64>()
                        .ok()
                        .filter(|n| (1..=1000).contains(n))
                        .ok_or_else(|| {
                            GatewayError::bad_request("limit: expected an integer from 1 to 1000")
                        })?
                }
                "cursor" => after = v.into_owned(),
                other => {
                    return Err(GatewayError::bad_request(format!(
                        "{other}: unknown parameter (known: limit, cursor)"
                    )));
                }
            }
        }
        let ring = self.ring.clone();
        let page =
            blocking(move || Ok(ring.with_db(|db| store::list_keys(db, &after, limit))?)).await?;
        let next = (page.len() as i64 == limit)
            .then(|| page.last().map(|k| k.id.clone()))
            .flatten();
        let mut keys = Vec::with_capacity(page.len());
        for k in &page {
            keys.push(self.key_json(k).await);
        }
        Ok((StatusCode::OK, json!({"keys": keys, "next_cursor": next})))
    }

    async fn stored_key(&self, id: &str) -> Result<StoredKey, GatewayError> {
        let ring = self.ring.clone();
        let wanted = id.to_string();
        blocking(move || Ok(ring.with_db(|db| store::get_key(db, &wanted))?))
            .await?
            .ok_or_else(|| GatewayError::not_found(format!("no key '{id}'")))
    }

    async fn get_key(&self, id: &str) -> Result<(StatusCode, Value), GatewayError> {
        Ok((
            StatusCode::OK,
            self.key_json(&self.stored_key(id).await?).await,
        ))
    }

    async fn patch_key(&self, id: &str, body: &[u8]) -> Result<(StatusCode, Value), GatewayError> {
        let mut patch = body_object(body)?;
        let rotate = match patch.remove("rotate") {
            None | Some(Value::Bool(false)) => false,
            Some(Value::Bool(true)) => true,
            Some(_) => return Err(GatewayError::bad_request("rotate: expected true or false")),
        };
        let current = self.stored_key(id).await?;
        if current.revoked_at_ms.is_some() {
            return Err(GatewayError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("key '{id}' is revoked; create a new one"),
            ));
        }
        let spec: KeySpec = patched(&current.spec, &patch).map_err(spec_error)?;
        let teams = self.team_exists_checker().await?;
        spec.check(&self.gateways(), &self.providers(), |t| {
            teams.iter().any(|x| x == t)
        })
        .map_err(spec_error)?;
        let secret = if rotate {
            Some(keys::new_secret().map_err(GatewayError::unavailable)?)
        } else {
            None
        };
        let rotated = secret
            .as_ref()
            .map(|s| (hex::encode(keys::hash_secret(s)), keys::display_prefix(s)));
        let ring = self.ring.clone();
        let (key_id, new_spec, now) = (id.to_string(), spec.clone(), now());
        blocking(move || {
            ring.with_db(|db| store::update_key(db, &key_id, &new_spec, rotated, now))
                .map_err(not_found("key"))
        })
        .await?;
        self.refresh().await;
        let mut v = self.key_json(&self.stored_key(id).await?).await;
        if let Some(s) = secret {
            v["key"] = Value::String(s);
        }
        Ok((StatusCode::OK, v))
    }

    async fn revoke_key(&self, id: &str) -> Result<(StatusCode, Value), GatewayError> {
        let ring = self.ring.clone();
        let key_id = id.to_string();
        blocking(move || {
            ring.with_db(|db| store::revoke_key(db, &key_id, now()))
                .map_err(not_found("key"))
        })
        .await?;
        self.refresh().await;
        Ok((
            StatusCode::OK,
            self.key_json(&self.stored_key(id).await?).await,
        ))
    }

    async fn create_team(&self, body: &[u8]) -> Result<(StatusCode, Value), GatewayError> {
        let spec: TeamSpec = parse_spec(Value::Object(body_object(body)?)).map_err(spec_error)?;
        spec.check(&self.providers()).map_err(spec_error)?;
        let now = now();
        let team = StoredTeam {
            id: format!("team_{}", uuid::Uuid::new_v4().simple()),
            spec,
            created_at_ms: now,
            updated_at_ms: now,
        };
        let ring = self.ring.clone();
        let stored = team.clone();
        blocking(move || Ok(ring.with_db(|db| store::insert_team(db, &stored))?)).await?;
        self.refresh().await;
        Ok((StatusCode::CREATED, self.team_json(&team).await))
    }

    async fn list_teams(&self) -> Result<(StatusCode, Value), GatewayError> {
        let ring = self.ring.clone();
        let teams = blocking(move || Ok(ring.with_db(store::teams)?)).await?;
        let mut out = Vec::with_capacity(teams.len());
        for t in &teams {
            out.push(self.team_json(t).await);
        }
        let teams = out;
        Ok((StatusCode::OK, json!({ "teams": teams })))
    }

    async fn stored_team(&self, id: &str) -> Result<StoredTeam, GatewayError> {
        let ring = self.ring.clone();
        blocking(move || Ok(ring.with_db(store::teams)?))
            .await?
            .into_iter()
            .find(|t| t.id == id)
            .ok_or_else(|| GatewayError::not_found(format!("no team '{id}'")))
    }

    async fn get_team(&self, id: &str) -> Result<(StatusCode, Value), GatewayError> {
        Ok((
            StatusCode::OK,
            self.team_json(&self.stored_team(id).await?).await,
        ))
    }

    async fn patch_team(&self, id: &str, body: &[u8]) -> Result<(StatusCode, Value), GatewayError> {
        let patch = body_object(body)?;
        let current = self.stored_team(id).await?;
        let spec: TeamSpec = patched(&current.spec, &patch).map_err(spec_error)?;
        spec.check(&self.providers()).map_err(spec_error)?;
        let ring = self.ring.clone();
        let (team_id, new_spec) = (id.to_string(), spec);
        blocking(move || {
            ring.with_db(|db| store::update_team(db, &team_id, &new_spec, now()))
                .map_err(not_found("team"))
        })
        .await?;
        self.refresh().await;
        Ok((
            StatusCode::OK,
            self.team_json(&self.stored_team(id).await?).await,
        ))
    }

    async fn delete_team(&self, id: &str) -> Result<(StatusCode, Value), GatewayError> {
        let ring = self.ring.clone();
        let team_id = id.to_string();
        blocking(move || {
            ring.with_db(|db| store::delete_team(db, &team_id, now()))
                .map_err(not_found("team"))
        })
        .await?;
        self.refresh().await;
        Ok((StatusCode::OK, json!({"id": id, "deleted": true})))
    }
}
