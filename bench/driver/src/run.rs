//! The measurement run: memory at rest, warm-up, interleaved rounds over all
//! targets (the starting target rotates each round, so drift on a shared
//! machine hits every target alike), memory after, and the noisy-round rule.
//! Writes everything measured as raw JSON; the report is made from it.

use crate::client::Endpoint;
use crate::load::{self, Calls, RssSampler, Streams};
use crate::plan::{Bodies, Phase, Plan, TargetSpec};
use crate::procfs;
use crate::stats::{self, Summary};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Everything one run measured.
#[derive(Debug, Serialize, Deserialize)]
pub struct Raw {
    pub plan: Plan,
    pub clk_tck: f64,
    pub started_unix_s: u64,
    pub duration_s: f64,
    /// Per process label.
    pub processes: BTreeMap<String, ProcRecord>,
    /// Per target name.
    pub warmup: BTreeMap<String, Warmup>,
    pub rounds: Vec<Round>,
    /// Indexes of rounds left out of every median.
    pub discarded: Vec<usize>,
    pub discard_reasons: Vec<String>,
    /// Why fewer rounds than planned ran, if so.
    pub stopped_early: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ProcRecord {
    pub pid: u32,
    pub cpus_allowed: String,
    /// After start and the readiness check, before any warm-up.
    pub idle_kib: u64,
    /// Highest VmRSS sampled while one of its targets was under load.
    pub peak_sampled_kib: u64,
    /// VmHWM at the end of the run (includes start-up).
    pub hwm_end_kib: u64,
    /// VmRSS `settle_s` after the last round.
    pub after_kib: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Warmup {
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// False when warm-up got no successful answer: left out of the rounds.
    pub available: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Round {
    pub index: usize,
    pub order: Vec<String>,
    pub targets: BTreeMap<String, TargetRound>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct TargetRound {
    pub c1: Option<LoadPhase>,
    pub stream: Option<StreamPhase>,
    pub conc: Vec<LoadPhase>,
}

/// One load phase of one target in one round.
#[derive(Debug, Serialize, Deserialize)]
pub struct LoadPhase {
    pub concurrency: usize,
    pub ok: u64,
    pub errors: u64,
    pub cache_hits: u64,
    pub reconnects: u64,
    pub elapsed_s: f64,
    pub rps: f64,
    pub latency_us: Option<Summary>,
    /// utime + stime of the target's process tree during the phase.
    pub cpu_ticks: u64,
    pub cpu_us_per_request: Option<f64>,
    pub rss_peak_kib: u64,
    pub first_error: Option<String>,
}

/// Sequential streams of one target in one round.
#[derive(Debug, Serialize, Deserialize)]
pub struct StreamPhase {
    pub ok: u64,
    pub errors: u64,
    pub ttfb_us: Option<Summary>,
    pub gap_us: Option<Summary>,
    pub total_us: Option<Summary>,
    pub events_per_stream: Option<f64>,
    pub cpu_ticks: u64,
    pub first_error: Option<String>,
}

struct Target {
    spec: TargetSpec,
    endpoint: Arc<Endpoint>,
    bodies: Arc<Bodies>,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

/// Measures CPU ticks and peak RSS of `pid`'s tree around `work`.
async fn metered<T>(pid: u32, work: impl std::future::Future<Output = T>) -> (T, u64, u64) {
    let pids = procfs::tree(pid);
    let before = procfs::cpu_ticks(&pids);
    let sampler = RssSampler::start(pids.clone(), Duration::from_millis(50));
    let out = work.await;
    let peak = sampler.finish().await;
    let after = procfs::cpu_ticks(&pids);
    (out, after.saturating_sub(before), peak)
}

fn load_phase(concurrency: usize, mut calls: Calls, ticks: u64, peak: u64, clk: f64) -> LoadPhase {
    let latency_us = stats::summarize(&mut calls.latencies_us);
    LoadPhase {
        concurrency,
        ok: calls.ok,
        errors: calls.errors,
        cache_hits: calls.cache_hits,
        reconnects: calls.reconnects,
        elapsed_s: calls.elapsed_s,
        rps: if calls.elapsed_s > 0.0 {
            calls.ok as f64 / calls.elapsed_s
        } else {
            0.0
        },
        latency_us,
        cpu_ticks: ticks,
        cpu_us_per_request: (calls.ok > 0).then(|| ticks as f64 * 1e6 / clk / calls.ok as f64),
        rss_peak_kib: peak,
        first_error: calls.first_error,
    }
}

fn stream_phase(mut s: Streams, ticks: u64) -> StreamPhase {
    let events = stats::median(&s.events);
    StreamPhase {
        ok: s.ok,
        errors: s.errors,
        ttfb_us: stats::summarize(&mut s.ttfb_us),
        gap_us: stats::summarize(&mut s.gaps_us),
        total_us: stats::summarize(&mut s.totals_us),
        events_per_stream: events,
        cpu_ticks: ticks,
        first_error: s.first_error,
    }
}

async fn measure(t: &Target, plan: &Plan, clk: f64, deadline: Instant) -> TargetRound {
    let timeout = secs(plan.request_timeout_s);
    let pid = t.spec.pid;
    let mut out = TargetRound::default();
    for phase in &t.spec.phases {
        if Instant::now() > deadline {
            break;
        }
        match phase {
            Phase::C1 => {
                let n = (plan.c1_requests as f64 * t.spec.c1_factor).round() as usize;
                let max = secs(plan.c1_max_s * t.spec.c1_factor);
                let (calls, ticks, peak) = metered(
                    pid,
                    load::sequential(&t.endpoint, &t.bodies, n, max, timeout),
                )
                .await;
                out.c1 = Some(load_phase(1, calls, ticks, peak, clk));
            }
            Phase::Stream => {
                let max = secs(plan.stream_max_s);
                let (s, ticks, _) = metered(
                    pid,
                    load::streams(&t.endpoint, &t.bodies, plan.stream_requests, max, timeout),
                )
                .await;
                out.stream = Some(stream_phase(s, ticks));
            }
            Phase::Conc => {
                for &c in &plan.concurrency {
                    if Instant::now() > deadline {
                        break;
                    }
                    let max = secs(plan.conc_max_s);
                    let (calls, ticks, peak) = metered(
                        pid,
                        load::concurrent(
                            &t.endpoint,
                            &t.bodies,
                            c,
                            plan.conc_requests,
                            max,
                            timeout,
                        ),
                    )
                    .await;
                    out.conc.push(load_phase(c, calls, ticks, peak, clk));
                }
            }
        }
    }
    out
}

async fn warm_up(t: &Target, plan: &Plan) -> Warmup {
    let timeout = secs(plan.request_timeout_s);
    let max = secs(plan.c1_max_s.max(5.0));
    let seq = load::sequential(&t.endpoint, &t.bodies, plan.warmup_requests, max, timeout).await;
    let mut w = Warmup {
        ok: seq.ok,
        errors: seq.errors,
        first_error: seq.first_error,
        available: seq.ok > 0,
    };
    if !w.available {
        return w;
    }
    if t.spec.phases.contains(&Phase::Conc) {
        let c = plan.concurrency.iter().copied().max().unwrap_or(16);
        let n = plan.warmup_requests.max(c * 2);
        let burst = load::concurrent(&t.endpoint, &t.bodies, c, n, max, timeout).await;
        w.ok += burst.ok;
        w.errors += burst.errors;
        w.first_error = w.first_error.or(burst.first_error);
    }
    if t.spec.phases.contains(&Phase::Stream) {
        let s = load::streams(&t.endpoint, &t.bodies, 2, max, timeout).await;
        w.ok += s.ok;
        w.errors += s.errors;
        w.first_error = w.first_error.or(s.first_error);
    }
    w
}

/// Runs the plan and writes the raw JSON to `out`.
pub async fn run(plan: Plan, out: &Path) -> Result<Raw> {
    let started = Instant::now();
    let deadline = started + secs(plan.deadline_s);
    let clk = procfs::clk_tck();
    let nonce = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let mut targets = Vec::new();
    let mut processes: BTreeMap<String, ProcRecord> = BTreeMap::new();
    for spec in &plan.targets {
        if !procfs::alive(spec.pid) {
            bail!("target {}: process {} is not running", spec.name, spec.pid);
        }
        let endpoint = Endpoint::parse(&spec.url, &spec.headers)
            .with_context(|| format!("target {}", spec.name))?;
        processes
            .entry(spec.process.clone())
            .or_insert_with(|| ProcRecord {
                pid: spec.pid,
                cpus_allowed: procfs::cpus_allowed(spec.pid),
                idle_kib: procfs::memory(&procfs::tree(spec.pid)).rss_kib,
                ..ProcRecord::default()
            });
        targets.push(Target {
            bodies: Arc::new(Bodies::new(spec, &nonce)),
            spec: spec.clone(),
            endpoint,
        });
    }

    let mut warmup = BTreeMap::new();
    for t in &targets {
        let w = warm_up(t, &plan).await;
        eprintln!(
            "warm-up {}: {} ok, {} errors{}",
            t.spec.name,
            w.ok,
            w.errors,
            w.first_error
                .as_deref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default()
        );
        warmup.insert(t.spec.name.clone(), w);
    }
    let live: Vec<&Target> = targets
        .iter()
        .filter(|t| warmup.get(&t.spec.name).is_some_and(|w| w.available))
        .collect();

    let mut rounds = Vec::new();
    let mut stopped_early = None;
    for r in 0..plan.rounds {
        if Instant::now() > deadline {
            stopped_early = Some(format!(
                "deadline of {} s reached after {r} of {} rounds",
                plan.deadline_s, plan.rounds
            ));
            break;
        }
        let mut round = Round {
            index: r,
            ..Round::default()
        };
        let k = if live.is_empty() { 0 } else { r % live.len() };
        let order: Vec<&&Target> = live.iter().skip(k).chain(live.iter().take(k)).collect();
        for t in order {
            if Instant::now() > deadline {
                break;
            }
            let tr = measure(t, &plan, clk, deadline).await;
            round.order.push(t.spec.name.clone());
            round.targets.insert(t.spec.name.clone(), tr);
        }
        eprintln!(
            "round {}/{} done at {:.0} s",
            r + 1,
            plan.rounds,
            started.elapsed().as_secs_f64()
        );
        rounds.push(round);
    }

    tokio::time::sleep(secs(plan.settle_s)).await;
    for (label, p) in processes.iter_mut() {
        let pids = procfs::tree(p.pid);
        let m = procfs::memory(&pids);
        p.after_kib = m.rss_kib;
        p.hwm_end_kib = m.hwm_kib;
        p.peak_sampled_kib = rounds
            .iter()
            .flat_map(|r| r.targets.iter())
            .filter(|(name, _)| {
                targets
                    .iter()
                    .any(|t| &t.spec.name == *name && &t.spec.process == label)
            })
            .flat_map(|(_, tr)| tr.c1.iter().chain(tr.conc.iter()))
            .map(|ph| ph.rss_peak_kib)
            .max()
            .unwrap_or(0);
    }

    let (discarded, discard_reasons) = noisy_rounds(&rounds, plan.noisy_factor);
    let raw = Raw {
        plan,
        clk_tck: clk,
        started_unix_s: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            .saturating_sub(started.elapsed().as_secs()),
        duration_s: started.elapsed().as_secs_f64(),
        processes,
        warmup,
        rounds,
        discarded,
        discard_reasons,
        stopped_early,
    };
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, serde_json::to_string_pretty(&raw)?)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(raw)
}

/// What went wrong in a run, if anything: a target left out after warm-up,
/// a target missing from a round, a phase with errors or without answers.
/// Timing is never judged here.
pub fn problems(raw: &Raw) -> Vec<String> {
    let mut out = Vec::new();
    if raw.rounds.is_empty() {
        out.push("no round was measured".to_string());
    }
    for spec in &raw.plan.targets {
        match raw.warmup.get(&spec.name) {
            Some(w) if w.available => {}
            Some(w) => out.push(format!(
                "{}: no successful warm-up answer ({})",
                spec.name,
                w.first_error.as_deref().unwrap_or("?")
            )),
            None => out.push(format!("{}: not warmed up", spec.name)),
        }
        for r in &raw.rounds {
            let Some(t) = r.targets.get(&spec.name) else {
                out.push(format!("{}: missing from round {}", spec.name, r.index + 1));
                continue;
            };
            let phases = t.c1.iter().chain(t.conc.iter());
            for p in phases {
                if p.errors > 0 || p.ok == 0 {
                    out.push(format!(
                        "{} round {} c={}: {} ok, {} errors ({})",
                        spec.name,
                        r.index + 1,
                        p.concurrency,
                        p.ok,
                        p.errors,
                        p.first_error.as_deref().unwrap_or("-")
                    ));
                }
            }
            if let Some(s) = &t.stream
                && (s.errors > 0 || s.ok == 0)
            {
                out.push(format!(
                    "{} round {} streams: {} ok, {} errors ({})",
                    spec.name,
                    r.index + 1,
                    s.ok,
                    s.errors,
                    s.first_error.as_deref().unwrap_or("-")
                ));
            }
        }
    }
    out
}

/// Rounds where direct-to-mock's own p50 at c=1 was above `factor` × the
/// median of its rounds: the machine was busy, so every target's numbers
/// of that round are left out.
pub fn noisy_rounds(rounds: &[Round], factor: f64) -> (Vec<usize>, Vec<String>) {
    let direct: Vec<(usize, f64)> = rounds
        .iter()
        .filter_map(|r| {
            let p50 = r.targets.get("direct")?.c1.as_ref()?.latency_us?.p50;
            Some((r.index, p50))
        })
        .collect();
    let values: Vec<f64> = direct.iter().map(|d| d.1).collect();
    let Some(med) = stats::median(&values) else {
        return (Vec::new(), Vec::new());
    };
    direct
        .iter()
        .filter(|(_, p50)| *p50 > factor * med)
        .map(|(i, p50)| {
            (
                *i,
                format!(
                    "round {}: direct p50 {p50:.0} µs > {factor} × median {med:.0} µs",
                    i + 1
                ),
            )
        })
        .unzip()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(index: usize, direct_p50: f64) -> Round {
        let mut r = Round {
            index,
            ..Round::default()
        };
        let mut lat = vec![direct_p50; 3];
        r.targets.insert(
            "direct".into(),
            TargetRound {
                c1: Some(load_phase(
                    1,
                    Calls {
                        latencies_us: std::mem::take(&mut lat),
                        ok: 3,
                        elapsed_s: 1.0,
                        ..Calls::default()
                    },
                    0,
                    0,
                    100.0,
                )),
                ..TargetRound::default()
            },
        );
        r
    }

    fn raw_with(rounds: Vec<Round>, available: bool) -> Raw {
        let plan: Plan = serde_json::from_value(serde_json::json!({
            "mode": "quick", "rounds": 1, "deadline_s": 1.0, "warmup_requests": 1,
            "c1_requests": 1, "c1_max_s": 1.0, "stream_requests": 1, "stream_max_s": 1.0,
            "conc_requests": 1, "conc_max_s": 1.0, "concurrency": [16], "request_timeout_s": 1.0,
            "noisy_factor": 1.5, "settle_s": 0.0,
            "targets": [{"name": "direct", "label": "d", "process": "mock", "pid": 1,
                         "url": "http://127.0.0.1:1/", "model": "m", "phases": ["c1"]}]
        }))
        .unwrap();
        let mut warmup = BTreeMap::new();
        warmup.insert(
            "direct".to_string(),
            Warmup {
                ok: u64::from(available),
                available,
                ..Warmup::default()
            },
        );
        Raw {
            plan,
            clk_tck: 100.0,
            started_unix_s: 0,
            duration_s: 1.0,
            processes: BTreeMap::new(),
            warmup,
            rounds,
            discarded: vec![],
            discard_reasons: vec![],
            stopped_early: None,
        }
    }

    #[test]
    fn problems_name_errors_and_missing_targets() {
        assert!(problems(&raw_with(vec![round(0, 100.0)], true)).is_empty());
        assert!(!problems(&raw_with(vec![], true)).is_empty());
        assert!(!problems(&raw_with(vec![round(0, 100.0)], false)).is_empty());
        let mut bad = round(0, 100.0);
        if let Some(c1) = bad.targets.get_mut("direct").and_then(|t| t.c1.as_mut()) {
            c1.errors = 2;
            c1.first_error = Some("status 502".into());
        }
        let p = problems(&raw_with(vec![bad], true));
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("status 502"), "{p:?}");
        assert!(!problems(&raw_with(vec![Round::default()], true)).is_empty());
    }

    #[test]
    fn a_noisy_direct_round_is_discarded() {
        let rounds: Vec<Round> = [100.0, 110.0, 400.0, 95.0, 105.0]
            .iter()
            .enumerate()
            .map(|(i, p)| round(i, *p))
            .collect();
        let (d, why) = noisy_rounds(&rounds, 1.5);
        assert_eq!(d, vec![2]);
        assert!(why[0].contains("round 3"));
    }
}
