//! Analytics rollups: per-minute and per-hour aggregates of the log store, kept
//! by the writer in the same transaction as the entries, so a report over a day
//! or a month reads a few thousand rows instead of millions of entries.
//!
//! A rollup row holds, for one gateway, span (a minute or an hour), start time
//! and (provider, model, key, team): the counters of the analytics report,
//! the failures by outcome, the cost by price catalog, and the latencies as a
//! DDSketch with 1% relative accuracy, which merges exactly across rows, so any
//! set of rows answers p50/p95/p99 within 1%.
//!
//! A report counts whole minutes: its range is widened to the minutes it
//! touches, then split into whole hours (hour rows) and minutes (minute rows).
//! Buckets are aligned to multiples of their size since the epoch, so every
//! bucket boundary falls on a minute. Only a report grouped by a metadata field
//! (not rolled up) reads the entries.
//!
//! Rows are read and updated under a row lock (PostgreSQL `FOR UPDATE`, SQLite's
//! single writer), in key order, so replicas sharing a database never lose an
//! update. Deleting entries (retention, the logs API) leaves the rollups as they
//! were: analytics count what the gateway served. Recosting entries moves their
//! cost between rows.

use super::LogStoreError;
use super::db::{Arg, Cell, Db, Dialect};
use serde_json::{Value, json};
use sketches_ddsketch::{Config as SketchConfig, DDSketch};
use std::collections::{BTreeMap, HashMap};

/// A minute, in ms.
pub const MINUTE: i64 = 60_000;
/// An hour, in ms.
pub const HOUR: i64 = 3_600_000;

/// The rollup table, in both dialects (`{blob}` is the sketch column's type).
pub(super) fn schema(dialect: Dialect) -> String {
    let (int, float, blob) = match dialect {
        Dialect::Sqlite => ("INTEGER", "REAL", "BLOB"),
        Dialect::Postgres => ("BIGINT", "DOUBLE PRECISION", "BYTEA"),
    };
    format!(
        "CREATE TABLE IF NOT EXISTS log_rollups (
    gateway TEXT NOT NULL, span_ms {int} NOT NULL, start_ms {int} NOT NULL,
    provider TEXT NOT NULL, model TEXT NOT NULL, key_id TEXT NOT NULL, team TEXT NOT NULL,
    requests {int} NOT NULL, successes {int} NOT NULL, cached {int} NOT NULL,
    status_2xx {int} NOT NULL, status_4xx {int} NOT NULL, status_5xx {int} NOT NULL,
    tokens_in {int} NOT NULL, tokens_out {int} NOT NULL,
    cost {float} NOT NULL, costed {int} NOT NULL, unpriced {int} NOT NULL,
    outcomes TEXT NOT NULL, catalogs TEXT NOT NULL, latency {blob},
    PRIMARY KEY (gateway, span_ms, start_ms, provider, model, key_id, team)
);"
    )
}

/// What a report groups by besides time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dims {
    provider: String,
    model: String,
    key: String,
    team: String,
}

/// One logged request, as far as analytics are concerned.
#[derive(Debug, Clone, Default)]
pub struct Fact {
    at: i64,
    gateway: String,
    dims: Dims,
    status: Option<i64>,
    success: Option<bool>,
    cached: Option<bool>,
    duration_ms: Option<i64>,
    tokens_in: i64,
    tokens_out: i64,
    cost: Option<f64>,
    outcome: Option<String>,
    catalog: Option<String>,
    /// The value of a metadata field, when the report groups by one.
    meta: Option<String>,
}

fn text_field(e: &Value, k: &str) -> Option<String> {
    match e.get(k)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Fact {
    /// The fact of an entry as the writer stores it.
    pub fn of_entry(e: &Value) -> Fact {
        let s = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_string);
        let i = |k: &str| e.get(k).and_then(Value::as_i64);
        let b = |k: &str| e.get(k).and_then(Value::as_bool);
        Fact {
            at: clamp_time(i("created_at").unwrap_or(0)),
            gateway: s("gateway").unwrap_or_default(),
            dims: Dims {
                provider: s("provider").unwrap_or_default(),
                model: s("model").unwrap_or_default(),
                key: text_field(e, "key_id").unwrap_or_default(),
                team: text_field(e, "team").unwrap_or_default(),
            },
            status: i("status"),
            success: b("success"),
            cached: b("cached"),
            duration_ms: i("duration_ms"),
            tokens_in: i("tokens_in").unwrap_or(0),
            tokens_out: i("tokens_out").unwrap_or(0),
            cost: e.get("cost").and_then(Value::as_f64),
            outcome: text_field(e, "outcome"),
            catalog: text_field(e, "price_catalog"),
            meta: None,
        }
    }

    /// The columns [`Fact::of_row`] reads, `meta` (an SQL expression) last.
    fn select(dialect: Dialect, meta: &str) -> String {
        format!(
            "created_at, gateway, provider, model, {}, {}, status, success, cached, duration_ms, \
             tokens_in, tokens_out, cost, {}, {}, {meta}",
            dialect.entry_field("key_id"),
            dialect.entry_field("team"),
            dialect.entry_field("outcome"),
            dialect.entry_field("price_catalog"),
        )
    }

    fn of_row(r: &[Cell]) -> Fact {
        let opt_int = |c: &Cell| (!matches!(c, Cell::Null)).then(|| c.int());
        let opt_text = |c: &Cell| (!matches!(c, Cell::Null)).then(|| c.text());
        Fact {
            at: clamp_time(r[0].int()),
            gateway: r[1].text(),
            dims: Dims {
                provider: r[2].text(),
                model: r[3].text(),
                key: r[4].text(),
                team: r[5].text(),
            },
            status: opt_int(&r[6]),
            success: opt_int(&r[7]).map(|v| v != 0),
            cached: opt_int(&r[8]).map(|v| v != 0),
            duration_ms: opt_int(&r[9]),
            tokens_in: r[10].int(),
            tokens_out: r[11].int(),
            cost: (!matches!(r[12], Cell::Null)).then(|| r[12].float()),
            outcome: opt_text(&r[13]),
            catalog: opt_text(&r[14]),
            meta: opt_text(&r[15]),
        }
    }
}

/// Counters, failures by outcome, cost by catalog and a latency sketch.
#[derive(Clone, Default)]
pub struct Agg {
    requests: i64,
    successes: i64,
    cached: i64,
    status_2xx: i64,
    status_4xx: i64,
    status_5xx: i64,
    tokens_in: i64,
    tokens_out: i64,
    cost: f64,
    costed: i64,
    unpriced: i64,
    outcomes: BTreeMap<String, i64>,
    catalogs: BTreeMap<String, (i64, f64)>,
    latency: Option<DDSketch>,
}

/// 1% relative accuracy; 2048 bins cover 1 ms to far beyond an hour.
fn new_sketch() -> DDSketch {
    DDSketch::new(SketchConfig::defaults())
}

impl Agg {
    /// Counts `f` (`sign` -1 takes it back out; latency only when `latency`).
    fn add(&mut self, f: &Fact, sign: i64, latency: bool) {
        self.requests += sign;
        let success = f.success == Some(true);
        let cached = f.cached == Some(true);
        self.successes += sign * i64::from(success);
        self.cached += sign * i64::from(cached);
        match f.status {
            Some(200..=299) => self.status_2xx += sign,
            Some(400..=499) => self.status_4xx += sign,
            Some(500..) => self.status_5xx += sign,
            _ => {}
        }
        self.tokens_in += sign * f.tokens_in;
        self.tokens_out += sign * f.tokens_out;
        match f.cost {
            Some(c) => {
                self.cost += sign as f64 * c;
                self.costed += sign;
                if let Some(v) = &f.catalog {
                    let e = self.catalogs.entry(v.clone()).or_default();
                    e.0 += sign;
                    e.1 += sign as f64 * c;
                }
            }
            None if success && !cached && !f.dims.model.is_empty() => self.unpriced += sign,
            None => {}
        }
        if f.success == Some(false) {
            let k = f.outcome.clone().unwrap_or_else(|| "unknown".into());
            *self.outcomes.entry(k).or_default() += sign;
        }
        if latency && let Some(d) = f.duration_ms {
            self.latency.get_or_insert_with(new_sketch).add(d as f64);
        }
    }

    fn merge(&mut self, o: &Agg, latency: bool) {
        self.requests += o.requests;
        self.successes += o.successes;
        self.cached += o.cached;
        self.status_2xx += o.status_2xx;
        self.status_4xx += o.status_4xx;
        self.status_5xx += o.status_5xx;
        self.tokens_in += o.tokens_in;
        self.tokens_out += o.tokens_out;
        self.cost += o.cost;
        self.costed += o.costed;
        self.unpriced += o.unpriced;
        for (k, v) in &o.outcomes {
            *self.outcomes.entry(k.clone()).or_default() += v;
        }
        self.outcomes.retain(|_, v| *v != 0);
        for (k, (n, c)) in &o.catalogs {
            let e = self.catalogs.entry(k.clone()).or_default();
            e.0 += n;
            e.1 += c;
        }
        self.catalogs.retain(|_, (n, _)| *n != 0);
        if latency && let Some(s) = &o.latency {
            match &mut self.latency {
                // Both use the same configuration, the only way merging fails.
                Some(mine) => {
                    let _ = mine.merge(s);
                }
                None => self.latency = Some(s.clone()),
            }
        }
    }

    /// The report's counters (the shape of the API's totals, buckets and groups).
    fn counters(&self) -> Value {
        json!({
            "requests": self.requests,
            "successes": self.successes,
            "errors": self.requests - self.successes,
            "status_2xx": self.status_2xx,
            "status_4xx": self.status_4xx,
            "status_5xx": self.status_5xx,
            "cached": self.cached,
            "cache_hit_rate": if self.requests > 0 { self.cached as f64 / self.requests as f64 } else { 0.0 },
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cost": if self.costed > 0 { json!(self.cost) } else { Value::Null },
            "unpriced": self.unpriced,
        })
    }

    fn percentiles(&self) -> Value {
        // Nearest rank, as over the entries: the k-th smallest of n with
        // k = ceil(p * n). The sketch ranks by floor(q * (n - 1)), so ask for
        // the q that lands on k.
        let q = |p: f64| {
            let s = self.latency.as_ref()?;
            let n = s.count() as f64;
            let k = ((p * n).ceil() - 1.0).max(0.0);
            let q = if n > 1.0 {
                ((k + 0.5) / (n - 1.0)).min(1.0)
            } else {
                0.0
            };
            s.quantile(q).ok().flatten().map(|v| v.round() as i64)
        };
        json!({"p50": q(0.5), "p95": q(0.95), "p99": q(0.99)})
    }

    /// The row's values after the key, in [`COLUMNS`] order.
    fn args(&self) -> Result<Vec<Arg>, LogStoreError> {
        let latency = match &self.latency {
            Some(s) => Arg::Blob(
                bincode::serde::encode_to_vec(s, bincode::config::standard())
                    .map_err(|e| LogStoreError::Corrupt(format!("latency sketch: {e}")))?,
            ),
            None => Arg::Null,
        };
        let catalogs: BTreeMap<&String, [f64; 2]> = self
            .catalogs
            .iter()
            .map(|(k, (n, c))| (k, [*n as f64, *c]))
            .collect();
        Ok(vec![
            Arg::Int(self.requests),
            Arg::Int(self.successes),
            Arg::Int(self.cached),
            Arg::Int(self.status_2xx),
            Arg::Int(self.status_4xx),
            Arg::Int(self.status_5xx),
            Arg::Int(self.tokens_in),
            Arg::Int(self.tokens_out),
            Arg::Float(self.cost),
            Arg::Int(self.costed),
            Arg::Int(self.unpriced),
            Arg::Text(json!(self.outcomes).to_string()),
            Arg::Text(json!(catalogs).to_string()),
            latency,
        ])
    }

    /// Reads the [`COLUMNS`] cells starting at `r[o]`.
    fn of_row(r: &[Cell], o: usize, latency: bool) -> Result<Agg, LogStoreError> {
        let corrupt = |what: &str, e: &dyn std::fmt::Display| {
            LogStoreError::Corrupt(format!("analytics rollup {what}: {e}"))
        };
        let outcomes: BTreeMap<String, i64> =
            serde_json::from_str(&r[o + 11].text()).map_err(|e| corrupt("outcomes", &e))?;
        let catalogs: BTreeMap<String, [f64; 2]> =
            serde_json::from_str(&r[o + 12].text()).map_err(|e| corrupt("catalogs", &e))?;
        // A sketch that does not decode (written by another version of the sketch crate)
        // costs the row its percentiles, never its counts or the entries being written.
        let sketch = match (&r[o + 13], latency) {
            (Cell::Blob(b), true) => {
                match bincode::serde::decode_from_slice::<DDSketch, _>(
                    b,
                    bincode::config::standard(),
                ) {
                    Ok((s, _)) => Some(s),
                    Err(e) => {
                        tracing::warn!(error = %e, "analytics rollup: latency sketch unreadable; starting a new one");
                        None
                    }
                }
            }
            _ => None,
        };
        Ok(Agg {
            requests: r[o].int(),
            successes: r[o + 1].int(),
            cached: r[o + 2].int(),
            status_2xx: r[o + 3].int(),
            status_4xx: r[o + 4].int(),
            status_5xx: r[o + 5].int(),
            tokens_in: r[o + 6].int(),
            tokens_out: r[o + 7].int(),
            cost: r[o + 8].float(),
            costed: r[o + 9].int(),
            unpriced: r[o + 10].int(),
            outcomes,
            catalogs: catalogs
                .into_iter()
                .map(|(k, [n, c])| (k, (n as i64, c)))
                .collect(),
            latency: sketch,
        })
    }
}

/// The value columns of a rollup row.
const COLUMNS: &str = "requests, successes, cached, status_2xx, status_4xx, status_5xx, \
     tokens_in, tokens_out, cost, costed, unpriced, outcomes, catalogs, latency";

/// The key of a rollup row.
type Key = (String, i64, i64, Dims);

/// Adds `facts` to the rollups (`sign` -1 takes them out; latencies only when
/// `latency`): one read and one write per touched row, in key order. Runs inside
/// the caller's transaction.
pub(super) fn apply(
    db: &mut dyn Db,
    facts: &[Fact],
    sign: i64,
    latency: bool,
) -> Result<(), LogStoreError> {
    let mut rows: BTreeMap<Key, Agg> = BTreeMap::new();
    for f in facts.iter().filter(|f| !f.gateway.is_empty()) {
        for span in [MINUTE, HOUR] {
            let start = f.at.div_euclid(span) * span;
            rows.entry((f.gateway.clone(), span, start, f.dims.clone()))
                .or_default()
                .add(f, sign, latency);
        }
    }
    let lock = db.dialect().for_update();
    // Replicas (and a recost) update a gateway's rows one at a time: with the gateway's
    // advisory lock taken first, in name order, row locks can never wait in a cycle.
    // (SQLite has one writer: `BEGIN IMMEDIATE`.)
    if db.dialect() == Dialect::Postgres {
        let gateways: std::collections::BTreeSet<&str> =
            rows.keys().map(|(g, ..)| g.as_str()).collect();
        for g in gateways {
            // exec: the lock function returns void, which no cell reads.
            db.exec(
                "SELECT pg_advisory_xact_lock(hashtext(?1))",
                &[Arg::Text(format!("aigw-rollups:{g}"))],
            )?;
        }
    }
    let select = format!(
        "SELECT {COLUMNS} FROM log_rollups WHERE gateway = ?1 AND span_ms = ?2 AND start_ms = ?3 \
         AND provider = ?4 AND model = ?5 AND key_id = ?6 AND team = ?7{lock}"
    );
    let insert = format!(
        "INSERT INTO log_rollups (gateway, span_ms, start_ms, provider, model, key_id, team, {COLUMNS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21) \
         ON CONFLICT DO NOTHING"
    );
    let update = "UPDATE log_rollups SET requests = ?8, successes = ?9, cached = ?10, \
         status_2xx = ?11, status_4xx = ?12, status_5xx = ?13, tokens_in = ?14, tokens_out = ?15, \
         cost = ?16, costed = ?17, unpriced = ?18, outcomes = ?19, catalogs = ?20, latency = ?21 \
         WHERE gateway = ?1 AND span_ms = ?2 AND start_ms = ?3 AND provider = ?4 AND model = ?5 \
         AND key_id = ?6 AND team = ?7";
    // The rows already there, read (and locked) with one range query per
    // gateway and span instead of one query per row.
    let range = format!(
        "SELECT start_ms, provider, model, key_id, team, {COLUMNS} FROM log_rollups \
         WHERE gateway = ?1 AND span_ms = ?2 AND start_ms >= ?3 AND start_ms <= ?4{lock}"
    );
    let mut spans: BTreeMap<(&str, i64), (i64, i64)> = BTreeMap::new();
    for (gateway, span, start, _) in rows.keys() {
        let r = spans.entry((gateway, *span)).or_insert((*start, *start));
        r.0 = r.0.min(*start);
        r.1 = r.1.max(*start);
    }
    let mut existing: HashMap<(String, i64, i64, Dims), Agg> = HashMap::new();
    for ((gateway, span), (lo, hi)) in spans {
        let args = [
            Arg::Text(gateway.to_string()),
            Arg::Int(span),
            Arg::Int(lo),
            Arg::Int(hi),
        ];
        for r in db.rows(&range, &args)? {
            let key = (gateway.to_string(), span, r[0].int(), dims_of(&r, 1));
            if rows.contains_key(&key) {
                existing.insert(key, Agg::of_row(&r, 5, true)?);
            }
        }
    }
    for (key, delta) in rows {
        let current = existing.remove(&key);
        let (gateway, span, start, dims) = key;
        let key = vec![
            Arg::Text(gateway),
            Arg::Int(span),
            Arg::Int(start),
            Arg::Text(dims.provider),
            Arg::Text(dims.model),
            Arg::Text(dims.key),
            Arg::Text(dims.team),
        ];
        let mut current = match current {
            Some(c) => c,
            None => {
                let mut args = key.clone();
                args.extend(delta.args()?);
                if db.exec(&insert, &args)? == 1 {
                    continue;
                }
                // Another replica added it since the range query.
                let found = db.rows(&select, &key)?;
                let Some(row) = found.first() else {
                    return Err(LogStoreError::Corrupt(
                        "analytics rollup vanished while being updated".into(),
                    ));
                };
                Agg::of_row(row, 0, true)?
            }
        };
        current.merge(&delta, true);
        let mut args = key;
        args.extend(current.args()?);
        db.exec(update, &args)?;
    }
    Ok(())
}

/// The dimensions in the four cells from `r[o]`.
fn dims_of(r: &[Cell], o: usize) -> Dims {
    Dims {
        provider: r[o].text(),
        model: r[o + 1].text(),
        key: r[o + 2].text(),
        team: r[o + 3].text(),
    }
}

/// Entries read per step of a rebuild.
const PAGE: i64 = 5_000;

/// Builds the rollups of every entry already stored, once (a store written by a
/// version without rollups): returns how many entries it counted. Runs inside the
/// caller's transaction, which also records that it ran.
pub(super) fn backfill(db: &mut dyn Db) -> Result<u64, LogStoreError> {
    let seq = db.dialect().seq();
    // From the entries themselves, read as the writer reads them (`Fact::of_entry`), so a
    // later recost moves cost between the same rows.
    let sql = format!("SELECT entry, {seq} FROM logs WHERE {seq} > ?1 ORDER BY {seq} LIMIT {PAGE}");
    let mut after = i64::MIN;
    let mut counted = 0u64;
    loop {
        let rows = db.rows(&sql, &[Arg::Int(after)])?;
        let Some(last) = rows.last() else { break };
        after = last[1].int();
        let facts: Vec<Fact> = rows
            .iter()
            .filter_map(|r| serde_json::from_str::<Value>(&r[0].text()).ok())
            .map(|e| Fact::of_entry(&e))
            .collect();
        apply(db, &facts, 1, true)?;
        counted += facts.len() as u64;
        if (rows.len() as i64) < PAGE {
            break;
        }
    }
    Ok(counted)
}

/// Times outside 1970 ..= 9999 are clamped into it, so the arithmetic below cannot overflow.
const LAST_MS: i64 = 253_402_300_799_999;

fn clamp_time(t: i64) -> i64 {
    t.clamp(0, LAST_MS)
}

fn ceil_to(t: i64, span: i64) -> i64 {
    -((-t).div_euclid(span) * span)
}

fn floor_to(t: i64, span: i64) -> i64 {
    t.div_euclid(span) * span
}

/// Appends `[lo, hi)` to `v`, joined to the last interval when they touch.
fn push(v: &mut Vec<(i64, i64)>, lo: i64, hi: i64) {
    if lo >= hi {
        return;
    }
    match v.last_mut() {
        Some(last) if last.1 == lo => last.1 = hi,
        _ => v.push((lo, hi)),
    }
}

/// Which parts of `[from, to)` each source answers: (entries, minute rows, hour rows).
type Plan = (Vec<(i64, i64)>, Vec<(i64, i64)>, Vec<(i64, i64)>);

/// Splits `[from, to)` (whole minutes) into hour rows for the whole hours inside
/// a bucket and minute rows for the rest. Without rollups (`use_rollups` false,
/// or buckets shorter than a minute) the entries answer it all.
fn plan(from: i64, to: i64, bucket: i64, use_rollups: bool) -> Plan {
    let (mut raw, mut minutes, mut hours) = (Vec::new(), Vec::new(), Vec::new());
    if !use_rollups || bucket % MINUTE != 0 {
        push(&mut raw, from, to);
        return (raw, minutes, hours);
    }
    let (e0, e1) = (ceil_to(from, MINUTE), floor_to(to, MINUTE));
    let mut a = e0;
    while a < e1 {
        let b = (floor_to(a, bucket) + bucket).min(e1);
        let (h0, h1) = (ceil_to(a, HOUR), floor_to(b, HOUR));
        if h0 < h1 {
            push(&mut minutes, a, h0);
            push(&mut hours, h0, h1);
            push(&mut minutes, h1, b);
        } else {
            push(&mut minutes, a, b);
        }
        a = b;
    }
    (raw, minutes, hours)
}

/// What a report groups by.
#[derive(Debug, Clone, Copy)]
pub(super) enum Group<'a> {
    /// A dimension of the rollups: model, provider, key or team.
    Dim(&'a str),
    /// A metadata field (only the entries know it).
    Meta(&'a str),
}

impl Group<'_> {
    fn of<'f>(&self, f: &'f Fact) -> &'f str {
        match self {
            Group::Dim("model") => &f.dims.model,
            Group::Dim("provider") => &f.dims.provider,
            Group::Dim("key") => &f.dims.key,
            Group::Dim("team") => &f.dims.team,
            Group::Dim(_) => "",
            Group::Meta(_) => f.meta.as_deref().unwrap_or(""),
        }
    }

    fn name(&self) -> String {
        match self {
            Group::Dim(d) => d.to_string(),
            Group::Meta(k) => format!("meta.{k}"),
        }
    }
}

/// The analytics report: totals (with p50/p95/p99 latency, failures by outcome
/// and cost by price catalog), a series of buckets of `bucket` ms aligned to
/// multiples of `bucket`, and groups when asked.
pub(super) fn report(
    db: &mut dyn Db,
    gateway: &str,
    from: i64,
    to: i64,
    bucket: i64,
    group: Option<Group<'_>>,
) -> Result<Value, LogStoreError> {
    let bucket = bucket.clamp(1, LAST_MS);
    let (from, to) = (clamp_time(from), clamp_time(to));
    // Analytics count whole minutes, the rollups' resolution: a range is widened to
    // the minutes it touches (the response says so in from_ms and to_ms), so a report
    // never mixes rollups with entries (which retention and the logs API delete).
    let (from, to) = if bucket % MINUTE == 0 {
        (floor_to(from, MINUTE), ceil_to(to, MINUTE))
    } else {
        (from, to)
    };
    let dialect = db.dialect();
    // A metadata field is not rolled up: its reports read the entries.
    let (raw, minutes, hours) = plan(from, to, bucket, !matches!(group, Some(Group::Meta(_))));
    let mut buckets: BTreeMap<i64, Agg> = BTreeMap::new();
    let mut groups: HashMap<String, Agg> = HashMap::new();

    let meta = match group {
        Some(Group::Meta(k)) => dialect.metadata_field(k),
        _ => "NULL".to_string(),
    };
    let sql = format!(
        "SELECT {} FROM logs WHERE gateway = ?1 AND created_at >= ?2 AND created_at < ?3",
        Fact::select(dialect, &meta)
    );
    for (lo, hi) in raw {
        let rows = db.rows(
            &sql,
            &[Arg::Text(gateway.to_string()), Arg::Int(lo), Arg::Int(hi)],
        )?;
        for r in rows {
            let f = Fact::of_row(&r);
            let b = floor_to(f.at, bucket);
            buckets.entry(b).or_default().add(&f, 1, true);
            if let Some(g) = group {
                groups
                    .entry(g.of(&f).to_string())
                    .or_default()
                    .add(&f, 1, false);
            }
        }
    }

    let sql = format!(
        "SELECT start_ms, provider, model, key_id, team, {COLUMNS} FROM log_rollups \
         WHERE gateway = ?1 AND span_ms = ?2 AND start_ms >= ?3 AND start_ms < ?4"
    );
    for (span, parts) in [(MINUTE, minutes), (HOUR, hours)] {
        for (lo, hi) in parts {
            let rows = db.rows(
                &sql,
                &[
                    Arg::Text(gateway.to_string()),
                    Arg::Int(span),
                    Arg::Int(lo),
                    Arg::Int(hi),
                ],
            )?;
            for r in rows {
                let agg = Agg::of_row(&r, 5, true)?;
                if let Some(g) = group {
                    let f = Fact {
                        dims: dims_of(&r, 1),
                        ..Fact::default()
                    };
                    groups
                        .entry(g.of(&f).to_string())
                        .or_default()
                        .merge(&agg, false);
                }
                buckets
                    .entry(floor_to(r[0].int(), bucket))
                    .or_default()
                    .merge(&agg, true);
            }
        }
    }

    let mut total = Agg::default();
    let mut series = Vec::new();
    for (start, agg) in &buckets {
        total.merge(agg, true);
        if agg.requests == 0 {
            continue;
        }
        let mut v = agg.counters();
        v["latency_ms"] = agg.percentiles();
        v["start_ms"] = json!((*start).max(from));
        series.push(v);
    }
    let mut totals = total.counters();
    totals["latency_ms"] = total.percentiles();
    totals["errors_by_type"] = json!(total.outcomes);
    totals["price_catalogs"] = total
        .catalogs
        .iter()
        .map(|(v, (n, c))| json!({"version": v, "requests": n, "cost": c}))
        .collect();
    let mut out = json!({"gateway": gateway, "from_ms": from, "to_ms": to, "bucket_ms": bucket,
                         "totals": totals, "buckets": series});
    if let Some(g) = group {
        let name = g.name();
        let mut list: Vec<(String, Agg)> = groups
            .into_iter()
            .filter(|(_, a)| a.requests != 0)
            .collect();
        list.sort_by(|a, b| b.1.requests.cmp(&a.1.requests).then_with(|| a.0.cmp(&b.0)));
        out["groups"] = list
            .into_iter()
            .map(|(k, a)| {
                let mut v = a.counters();
                v[name.as_str()] = json!(k);
                v
            })
            .collect();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_splits_into_minutes_and_hours() {
        // 00:01 .. 03:10 with hourly buckets.
        let (from, to) = (MINUTE, 3 * HOUR + 10 * MINUTE);
        let (raw, minutes, hours) = plan(from, to, HOUR, true);
        assert!(raw.is_empty());
        assert_eq!(
            minutes,
            vec![(MINUTE, HOUR), (3 * HOUR, 3 * HOUR + 10 * MINUTE)]
        );
        assert_eq!(hours, vec![(HOUR, 3 * HOUR)]);
        // Buckets smaller than an hour use minutes only; no rollups, entries only.
        let (_, minutes, hours) = plan(from, to, 10 * MINUTE, true);
        assert_eq!(minutes, vec![(MINUTE, 3 * HOUR + 10 * MINUTE)]);
        assert!(hours.is_empty());
        assert_eq!(plan(from, to, HOUR, false).0, vec![(from, to)]);
        // Buckets shorter than a minute: entries.
        assert_eq!(plan(10, 50, 1_000, true).0, vec![(10, 50)]);
        // Buckets of 90 minutes: whole hours only where a bucket holds them.
        let (_, minutes, hours) = plan(0, 3 * HOUR, 90 * MINUTE, true);
        assert_eq!(hours, vec![(0, HOUR), (2 * HOUR, 3 * HOUR)]);
        assert_eq!(minutes, vec![(HOUR, 2 * HOUR)]);
    }

    #[test]
    fn sketches_merge_and_stay_within_one_percent() {
        let mut a = Agg::default();
        let mut b = Agg::default();
        let mut all: Vec<i64> = Vec::new();
        for i in 0..10_000i64 {
            let d = 5 + (i * 7919) % 3000;
            all.push(d);
            let f = Fact {
                duration_ms: Some(d),
                success: Some(true),
                ..Fact::default()
            };
            if i % 3 == 0 { &mut a } else { &mut b }.add(&f, 1, true);
        }
        // Through the stored form, as a report reads it.
        let args = b.args().unwrap();
        let cells: Vec<Cell> = args
            .iter()
            .map(|a| match a {
                Arg::Int(i) => Cell::Int(*i),
                Arg::Float(f) => Cell::Float(*f),
                Arg::Text(t) => Cell::Text(t.clone()),
                Arg::Blob(b) => Cell::Blob(b.clone()),
                Arg::Null => Cell::Null,
            })
            .collect();
        let b = Agg::of_row(&cells, 0, true).unwrap();
        a.merge(&b, true);
        all.sort_unstable();
        assert_eq!(a.requests, 10_000);
        let p = a.percentiles();
        for (name, q) in [("p50", 0.5), ("p95", 0.95), ("p99", 0.99)] {
            let exact = all[((q * all.len() as f64).ceil() as usize) - 1] as f64;
            let got = p[name].as_f64().unwrap();
            assert!(
                (got - exact).abs() <= exact * 0.01 + 1.0,
                "{name}: {got} vs {exact}"
            );
        }
    }

    use super::super::LogStore;

    /// Entries over three hours and a bit, with every kind of field.
    fn entries() -> Vec<Value> {
        (0..2_000i64)
            .map(|i| {
                let provider = ["openai", "anthropic"][(i % 2) as usize];
                let model = ["m1", "m2", "m3"][(i % 3) as usize];
                let status = [200, 200, 200, 429, 502][(i % 5) as usize];
                let outcome = ["rate_limited", "upstream_5xx"][(i % 2) as usize];
                let mut e = json!({
                    "id": format!("r{i}"), "created_at": 7 * HOUR + i * 5_777, "gateway": "g",
                    "provider": provider, "model": model, "status": status,
                    "success": i % 5 < 3, "cached": i % 7 == 0,
                    "duration_ms": (i * 7919) % 4000, "tokens_in": i % 100, "tokens_out": i % 50,
                    "key_id": format!("k{}", i % 4),
                    "outcome": outcome,
                    "usage": {"input": i % 100, "output": i % 50},
                });
                if i % 11 != 0 {
                    e["cost"] = json!(0.001 * (i % 13) as f64);
                    e["price_catalog"] = json!(if i < 1000 { "v1" } else { "v2" });
                }
                e
            })
            .collect()
    }

    /// The report computed from the entries alone, for comparison.
    fn exact(
        entries: &[Value],
        from: i64,
        to: i64,
        bucket: i64,
    ) -> (Agg, BTreeMap<i64, Agg>, Vec<i64>) {
        let mut total = Agg::default();
        let mut buckets: BTreeMap<i64, Agg> = BTreeMap::new();
        let mut durations = Vec::new();
        for e in entries {
            let f = Fact::of_entry(e);
            if f.at < from || f.at >= to {
                continue;
            }
            total.add(&f, 1, false);
            buckets
                .entry(floor_to(f.at, bucket))
                .or_default()
                .add(&f, 1, false);
            durations.extend(f.duration_ms);
        }
        durations.sort_unstable();
        (total, buckets, durations)
    }

    fn check(store: &LogStore, entries: &[Value], from: i64, to: i64, bucket: i64) {
        let r = store
            .analytics("g", from, to, bucket, Some("model"))
            .unwrap();
        // Whole minutes, unless the buckets are shorter.
        let (from, to) = if bucket % MINUTE == 0 {
            (floor_to(from, MINUTE), ceil_to(to, MINUTE))
        } else {
            (from, to)
        };
        assert_eq!(
            (r["from_ms"].as_i64(), r["to_ms"].as_i64()),
            (Some(from), Some(to))
        );
        let (total, buckets, durations) = exact(entries, from, to, bucket);
        let mut want = total.counters();
        want["errors_by_type"] = json!(total.outcomes);
        let got = &r["totals"];
        for k in [
            "requests",
            "successes",
            "errors",
            "status_2xx",
            "status_4xx",
            "status_5xx",
            "cached",
            "tokens_in",
            "tokens_out",
            "unpriced",
            "errors_by_type",
        ] {
            assert_eq!(got[k], want[k], "{k} over {from}..{to} by {bucket}");
        }
        let (a, b) = (got["cost"].as_f64().unwrap(), total.cost);
        assert!((a - b).abs() < 1e-9, "cost {a} vs {b}");
        let series = r["buckets"].as_array().unwrap();
        assert_eq!(series.len(), buckets.len());
        for (v, (start, agg)) in series.iter().zip(&buckets) {
            assert_eq!(v["start_ms"], json!((*start).max(from)));
            assert_eq!(v["requests"], agg.requests);
            assert_eq!(v["tokens_in"], agg.tokens_in);
        }
        let groups: i64 = r["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["requests"].as_i64().unwrap())
            .sum();
        assert_eq!(groups, total.requests);
        for (name, q) in [("p50", 0.5), ("p95", 0.95), ("p99", 0.99)] {
            let exact = durations[((q * durations.len() as f64).ceil() as usize) - 1] as f64;
            let got = got["latency_ms"][name].as_f64().unwrap();
            // Within 1%, give or take the rounding to whole ms and one rank.
            assert!(
                (got - exact).abs() <= exact * 0.011 + 2.0,
                "{name}: {got} vs {exact}"
            );
        }
    }

    #[test]
    fn reports_from_rollups_equal_reports_from_the_entries() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        let entries = entries();
        for e in &entries {
            store.append(e.clone()).unwrap();
        }
        store.close();
        let start = 7 * HOUR;
        // Aligned and unaligned ranges; minute, 24-minute, hour and day buckets.
        for (from, to) in [
            (start, start + 4 * HOUR),
            (start + 12_345, start + 3 * HOUR + 54_321),
            (start - HOUR, start + 10 * HOUR),
            (start + 61_000, start + 119_000),
        ] {
            for bucket in [MINUTE, 24 * MINUTE, HOUR, 24 * HOUR, 1_000] {
                check(&store, &entries, from, to, bucket);
            }
        }
    }

    #[test]
    fn rollups_are_built_for_an_older_store_and_follow_a_recost() {
        use crate::providers::pricing::{Price, PriceTable};
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        let entries = entries();
        for e in &entries {
            store.append(e.clone()).unwrap();
        }
        store.close();
        // As a version without rollups left it.
        let conn = rusqlite::Connection::open(dir.path().join("logs.sqlite")).unwrap();
        conn.execute_batch("DELETE FROM log_rollups; PRAGMA user_version = 0;")
            .unwrap();
        drop(conn);
        let store = LogStore::open(dir.path()).unwrap();
        check(&store, &entries, 7 * HOUR + 30_000, 10 * HOUR + 1, HOUR);

        // A recost moves the cost; the other figures stay, and the report still
        // equals the entries'.
        let mut prices = PriceTable::from_catalog("version = \"v3\"\n").unwrap_or_default();
        prices.set(Price {
            provider: "openai".into(),
            model: "m1".into(),
            input_per_million: 1.0,
            output_per_million: 2.0,
            cached_input_per_million: None,
            cache_write_per_million: None,
            image_input_per_million: None,
        });
        let before = store.analytics("g", 0, 20 * HOUR, HOUR, None).unwrap();
        let report = store.recost("g", 0, 20 * HOUR, &prices).unwrap();
        assert!(report.recosted > 0, "{report:?}");
        let after = store.analytics("g", 0, 20 * HOUR, HOUR, None).unwrap();
        let stored: Vec<Value> = store.recent(10_000).unwrap();
        check(&store, &stored, 7 * HOUR + 30_000, 10 * HOUR + 1, HOUR);
        assert_eq!(after["totals"]["requests"], before["totals"]["requests"]);
        assert_ne!(after["totals"]["cost"], before["totals"]["cost"]);
        let catalogs = after["totals"]["price_catalogs"].as_array().unwrap();
        assert!(
            catalogs.iter().any(|c| c["version"] == "v3"),
            "{catalogs:?}"
        );
    }
}
