//! The markdown report (BENCHMARKS.md) made from a run's raw JSON, the
//! optional hold result and the script's notes (machine, versions, how each
//! peer ran or why it did not). Every number is a median over the kept
//! rounds with its min–max across them; ratios are ratios of medians.

use crate::HoldFile;
use crate::run::{LoadPhase, Raw, Round, StreamPhase, TargetRound};
use crate::stats::{self, Spread};
use std::fmt::Write as _;

/// Lines of the script's `meta.tsv`: `kind<TAB>key<TAB>value`.
#[derive(Debug, Default)]
pub struct Meta {
    rows: Vec<(String, String, String)>,
}

impl Meta {
    pub fn parse(text: &str) -> Meta {
        let rows = text
            .lines()
            .filter_map(|l| {
                let mut it = l.splitn(3, '\t');
                Some((
                    it.next()?.to_string(),
                    it.next()?.to_string(),
                    it.next().unwrap_or("").to_string(),
                ))
            })
            .collect();
        Meta { rows }
    }

    fn of<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.rows
            .iter()
            .filter(move |r| r.0 == kind)
            .map(|r| (r.1.as_str(), r.2.as_str()))
    }

    fn get(&self, kind: &str, key: &str) -> Option<&str> {
        self.rows
            .iter()
            .find(|r| r.0 == kind && r.1 == key)
            .map(|r| r.2.as_str())
    }
}

const PEERS: &[(&str, &str)] = &[
    ("nginx", "nginx"),
    ("litellm", "LiteLLM"),
    ("portkey", "Portkey"),
    ("crabllm", "crabllm"),
];

/// Per-round values of one target, over the kept rounds.
struct View<'a> {
    raw: &'a Raw,
}

impl<'a> View<'a> {
    fn kept(&self) -> impl Iterator<Item = &'a Round> + 'a {
        let discarded = &self.raw.discarded;
        self.raw
            .rounds
            .iter()
            .filter(move |r| !discarded.contains(&r.index))
    }

    fn per_round(&self, name: &str, f: impl Fn(&Round, &TargetRound) -> Option<f64>) -> Vec<f64> {
        self.kept()
            .filter_map(|r| r.targets.get(name).and_then(|t| f(r, t)))
            .collect()
    }

    fn spread(
        &self,
        name: &str,
        f: impl Fn(&Round, &TargetRound) -> Option<f64>,
    ) -> Option<Spread> {
        stats::spread(&self.per_round(name, f))
    }

    fn has(&self, name: &str) -> bool {
        self.kept().any(|r| r.targets.contains_key(name))
    }

    fn label(&self, name: &str) -> String {
        self.raw
            .plan
            .targets
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.label.clone())
            .unwrap_or_else(|| name.to_string())
    }

    fn c1_p50(&self, name: &str) -> Option<Spread> {
        self.spread(name, |_, t| Some(t.c1.as_ref()?.latency_us?.p50))
    }

    /// p50 (or p99) at c=1 minus direct's in the same round.
    fn added(&self, name: &str, p99: bool) -> Option<Spread> {
        let pick = move |t: &TargetRound| {
            let s = t.c1.as_ref()?.latency_us?;
            Some(if p99 { s.p99 } else { s.p50 })
        };
        self.spread(name, |r, t| {
            Some(pick(t)? - pick(r.targets.get("direct")?)?)
        })
    }

    fn conc(&self, name: &str, c: usize, f: impl Fn(&LoadPhase) -> Option<f64>) -> Option<Spread> {
        self.spread(name, |_, t| {
            t.conc.iter().find(|p| p.concurrency == c).and_then(&f)
        })
    }

    fn rps(&self, name: &str, c: usize) -> Option<Spread> {
        self.conc(name, c, |p| (p.ok > 0).then_some(p.rps))
    }

    /// CPU µs per request over all kept rounds of a phase (ticks summed,
    /// then divided, so the 10 ms tick does not round each round away).
    fn cpu_per_request(&self, name: &str, c: usize) -> Option<f64> {
        let (mut ticks, mut ok) = (0u64, 0u64);
        for r in self.kept() {
            let Some(t) = r.targets.get(name) else {
                continue;
            };
            let phase = if c == 1 {
                t.c1.as_ref()
            } else {
                t.conc.iter().find(|p| p.concurrency == c)
            };
            if let Some(p) = phase {
                ticks += p.cpu_ticks;
                ok += p.ok;
            }
        }
        (ok > 0).then(|| ticks as f64 * 1e6 / self.raw.clk_tck / ok as f64)
    }

    fn errors(&self, name: &str) -> (u64, u64) {
        let mut ok = 0;
        let mut err = 0;
        for r in self.kept() {
            if let Some(t) = r.targets.get(name) {
                for p in t.c1.iter().chain(t.conc.iter()) {
                    ok += p.ok;
                    err += p.errors;
                }
                if let Some(s) = &t.stream {
                    ok += s.ok;
                    err += s.errors;
                }
            }
        }
        (ok, err)
    }

    fn first_error(&self, name: &str) -> Option<String> {
        self.kept()
            .filter_map(|r| r.targets.get(name))
            .flat_map(|t| {
                t.c1.iter()
                    .chain(t.conc.iter())
                    .filter_map(|p| p.first_error.clone())
                    .chain(t.stream.iter().filter_map(|s| s.first_error.clone()))
            })
            .next()
    }

    fn stream(&self, name: &str, f: impl Fn(&StreamPhase) -> Option<f64>) -> Option<Spread> {
        self.spread(name, |_, t| t.stream.as_ref().and_then(&f))
    }

    fn stream_added(&self, name: &str, f: impl Fn(&StreamPhase) -> Option<f64>) -> Option<Spread> {
        self.spread(name, |r, t| {
            Some(f(t.stream.as_ref()?)? - f(r.targets.get("direct")?.stream.as_ref()?)?)
        })
    }

    /// µs per added no-op filter: per round, the least-squares slope of the
    /// c=1 p50 over 0, 1, 2, 4, 8 filters.
    fn noop_slope(&self) -> Option<Spread> {
        let values: Vec<f64> = self
            .kept()
            .filter_map(|r| {
                let pts: Vec<(f64, f64)> = [0usize, 1, 2, 4, 8]
                    .iter()
                    .filter_map(|n| {
                        let p = r
                            .targets
                            .get(&format!("noop-{n}"))?
                            .c1
                            .as_ref()?
                            .latency_us?
                            .p50;
                        Some((*n as f64, p))
                    })
                    .collect();
                (pts.len() >= 3).then(|| stats::slope(&pts)).flatten()
            })
            .collect();
        stats::spread(&values)
    }
}

fn us(s: Option<Spread>) -> String {
    match s {
        Some(s) => format!("{:.0} ({:.0}–{:.0})", s.median, s.min, s.max),
        None => "–".into(),
    }
}

fn us1(s: Option<Spread>) -> String {
    match s {
        Some(s) => format!("{:.1} ({:.1}–{:.1})", s.median, s.min, s.max),
        None => "–".into(),
    }
}

fn ms(s: Option<Spread>) -> String {
    match s {
        Some(s) => format!(
            "{:.2} ({:.2}–{:.2})",
            s.median / 1e3,
            s.min / 1e3,
            s.max / 1e3
        ),
        None => "–".into(),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b.abs() > f64::EPSILON => Some(a / b),
        _ => None,
    }
}

fn x(r: Option<f64>) -> String {
    match r {
        Some(r) if r.abs() >= 100.0 => format!("{r:.0}×"),
        Some(r) => format!("{r:.2}×"),
        None => "–".into(),
    }
}

fn mib(kib: u64) -> String {
    if kib == 0 {
        "–".into()
    } else {
        format!("{:.1}", kib as f64 / 1024.0)
    }
}

fn med(s: Option<Spread>) -> Option<f64> {
    s.map(|s| s.median)
}

/// One line of the targets table.
struct Check {
    what: String,
    measured: String,
    limit: String,
    met: Option<bool>,
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "**met**",
        Some(false) => "**not met**",
        None => "not measured",
    }
}

pub fn render(raw: &Raw, hold: Option<&HoldFile>, meta: &Meta) -> String {
    let v = View { raw };
    let quick = raw.plan.mode == "quick";
    let mut md = String::new();
    let w = &mut md;
    let date = meta.get("machine", "date").unwrap_or("?");
    let _ = writeln!(w, "# aigw benchmarks: side by side\n");
    let _ = writeln!(
        w,
        "Generated by `bench/run.sh{}` on {date}. Rerun it from a fresh clone to reproduce; it installs \
         its tools, starts every process on loopback, measures and rewrites this file (raw JSON in \
         `{}/`).\n",
        if quick { " --quick" } else { "" },
        meta.get("files", "dir").unwrap_or("target/bench")
    );
    if quick {
        let _ = writeln!(
            w,
            "> **Quick smoke run**: tiny counts, {} rounds, {} build of aigw. The numbers below only show \
             that every step works; they are not a measurement.\n",
            raw.plan.rounds,
            meta.get("build", "profile").unwrap_or("?")
        );
    }
    let cores = raw.plan.concurrency.clone();
    let c_lo = cores.first().copied().unwrap_or(16);
    let c_hi = cores.last().copied().unwrap_or(64);

    // ---- Headline -------------------------------------------------------
    let _ = writeln!(w, "## Headline\n");
    let direct_p50 = v.c1_p50("direct");
    let _ = writeln!(
        w,
        "Added latency is a target's p50 at concurrency 1 minus direct-to-mock's p50 in the same round \
         (direct: {} µs); the ratio is aigw's added p50 ÷ the comparator's (below 1: aigw adds less). \
         Throughput ratios are aigw's requests/s ÷ the comparator's (above 1: aigw serves more). Medians \
         over {} kept rounds, min–max in brackets.\n",
        direct_p50
            .map(|s| format!("{:.0}", s.median))
            .unwrap_or("–".into()),
        v.kept().count()
    );
    let _ = writeln!(
        w,
        "| comparator | its added p50 µs | aigw empty: added p50 ratio | aigw default (4 filters): added p50 ratio | its req/s c={c_lo} | aigw default ÷ it, c={c_lo} | its req/s c={c_hi} | aigw default ÷ it, c={c_hi} |"
    );
    let _ = writeln!(w, "|---|---:|---:|---:|---:|---:|---:|---:|");
    let empty_added = med(v.added("aigw-empty", false));
    let default_added = med(v.added("aigw-default", false));
    let default_rps_lo = med(v.rps("aigw-default", c_lo));
    let default_rps_hi = med(v.rps("aigw-default", c_hi));
    for (name, title) in PEERS {
        if !v.has(name) {
            let why = meta
                .get("skip", name)
                .map(str::to_string)
                .unwrap_or_else(|| "not measured".into());
            let _ = writeln!(w, "| {title} | {why} | | | | | | |");
            continue;
        }
        let added = med(v.added(name, false));
        let _ = writeln!(
            w,
            "| {title} | {} | {} | {} | {} | {} | {} | {} |",
            us(v.added(name, false)),
            x(ratio(empty_added, added)),
            x(ratio(default_added, added)),
            us(v.rps(name, c_lo)),
            x(ratio(default_rps_lo, med(v.rps(name, c_lo)))),
            us(v.rps(name, c_hi)),
            x(ratio(default_rps_hi, med(v.rps(name, c_hi)))),
        );
    }
    let _ = writeln!(
        w,
        "\naigw itself, for context: empty pipeline adds {} µs at p50, default pipeline {} µs, a cache \
         hit answers in {} µs (p50, whole request); default pipeline serves {} req/s at c={c_lo} and {} \
         at c={c_hi}.\n",
        us(v.added("aigw-empty", false)),
        us(v.added("aigw-default", false)),
        us(v.c1_p50("aigw-cache-hit")),
        us(v.rps("aigw-default", c_lo)),
        us(v.rps("aigw-default", c_hi)),
    );

    // ---- Targets --------------------------------------------------------
    let nginx_added = med(v.added("nginx", false));
    let mut checks = Vec::new();
    let cmp = |a: Option<f64>, limit: Option<f64>, le: bool| match (a, limit) {
        (Some(a), Some(l)) => Some(if le { a <= l } else { a >= l }),
        _ => None,
    };
    for (name, what, factor) in [
        ("aigw-empty", "added p50 at c=1, empty pipeline", 1.2),
        ("aigw-default", "added p50 at c=1, default 4 filters", 1.5),
    ] {
        let a = med(v.added(name, false));
        checks.push(Check {
            what: what.into(),
            measured: format!(
                "{} µs = {} nginx's {} µs",
                a.map(|a| format!("{a:.0}")).unwrap_or("–".into()),
                x(ratio(a, nginx_added)),
                nginx_added.map(|a| format!("{a:.0}")).unwrap_or("–".into())
            ),
            limit: format!("≤ {factor}× nginx"),
            met: cmp(a, nginx_added.map(|n| n * factor), true),
        });
    }
    for (peer, title, factor) in [
        ("crabllm", "crabllm", 0.6),
        ("portkey", "Portkey", 15.0),
        ("litellm", "LiteLLM", 150.0),
    ] {
        let theirs = med(v.rps(peer, c_lo));
        checks.push(Check {
            what: format!("req/s at c={c_lo}, default pipeline vs {title}"),
            measured: match theirs {
                Some(t) => format!(
                    "{} vs {t:.0} = {}",
                    default_rps_lo
                        .map(|a| format!("{a:.0}"))
                        .unwrap_or("–".into()),
                    x(ratio(default_rps_lo, Some(t)))
                ),
                None => meta
                    .get("skip", peer)
                    .map(|s| format!("{title} not measured: {s}"))
                    .unwrap_or_else(|| format!("{title} not measured")),
            },
            limit: format!("≥ {factor}× {title}"),
            met: cmp(default_rps_lo, theirs.map(|t| t * factor), false),
        });
    }
    let nginx_rps = med(v.rps("nginx", c_lo));
    let empty_rps = med(v.rps("aigw-empty", c_lo));
    checks.push(Check {
        what: format!("req/s at c={c_lo}, empty pipeline vs nginx"),
        measured: format!(
            "{} vs {} = {}",
            empty_rps.map(|a| format!("{a:.0}")).unwrap_or("–".into()),
            nginx_rps.map(|a| format!("{a:.0}")).unwrap_or("–".into()),
            x(ratio(empty_rps, nginx_rps))
        ),
        limit: "≥ 0.6× nginx".into(),
        met: cmp(empty_rps, nginx_rps.map(|n| n * 0.6), false),
    });
    // The upstream must outrun every target, or the ratios above measure the mock.
    let direct_rps = med(v.rps("direct", c_lo));
    let fastest = [
        "nginx",
        "aigw-empty",
        "aigw-default",
        "crabllm",
        "portkey",
        "litellm",
    ]
    .iter()
    .filter_map(|t| med(v.rps(t, c_lo)).map(|r| (*t, r)))
    .fold(None, |best: Option<(&str, f64)>, (t, r)| match best {
        Some((_, b)) if b >= r => best,
        _ => Some((t, r)),
    });
    checks.push(Check {
        what: format!(
            "upstream headroom: direct-to-mock req/s at c={c_lo} over the fastest target's"
        ),
        measured: match fastest {
            Some((t, r)) => format!(
                "{} vs {t} {r:.0} = {}",
                direct_rps.map(|a| format!("{a:.0}")).unwrap_or("–".into()),
                x(ratio(direct_rps, Some(r)))
            ),
            None => "–".into(),
        },
        limit: "≥ 1.5×".into(),
        met: cmp(direct_rps, fastest.map(|(_, r)| r * 1.5), false),
    });
    let hit = med(v.c1_p50("aigw-cache-hit"));
    checks.push(Check {
        what: "cache hit p50 (whole request)".into(),
        measured: format!(
            "{} µs vs nginx added {} µs",
            hit.map(|a| format!("{a:.0}")).unwrap_or("–".into()),
            nginx_added.map(|a| format!("{a:.0}")).unwrap_or("–".into())
        ),
        limit: "≤ nginx's added p50".into(),
        met: cmp(hit, nginx_added, true),
    });
    let ttfb_added = med(v.stream_added("aigw-default", |s| Some(s.ttfb_us?.p50)));
    let ttfb_empty = med(v.stream_added("aigw-empty", |s| Some(s.ttfb_us?.p50)));
    checks.push(Check {
        what: "streaming: added time to first byte, default pipeline".into(),
        measured: format!(
            "{} µs (empty pipeline: {} µs)",
            ttfb_added.map(|a| format!("{a:.0}")).unwrap_or("–".into()),
            ttfb_empty.map(|a| format!("{a:.0}")).unwrap_or("–".into())
        ),
        limit: "≤ 1 ms".into(),
        met: ttfb_added.map(|a| a <= 1000.0),
    });
    let slope = med(v.noop_slope());
    checks.push(Check {
        what: "each extra no-op filter (slope over 0/1/2/4/8)".into(),
        measured: format!(
            "{} µs",
            slope.map(|a| format!("{a:.1}")).unwrap_or("–".into())
        ),
        limit: "≤ 4 µs".into(),
        met: slope.map(|a| a <= 4.0),
    });
    let idle = raw.processes.get("aigw-default").map(|p| p.idle_kib);
    checks.push(Check {
        what: "RSS idle, aigw default pipeline".into(),
        measured: format!("{} MiB", idle.map(mib).unwrap_or("–".into())),
        limit: "≤ 30 MiB".into(),
        met: idle.filter(|k| *k > 0).map(|k| k as f64 <= 30.0 * 1024.0),
    });
    let held = hold.map(|h| &h.result);
    checks.push(Check {
        what: match held {
            Some(h) => format!(
                "RSS holding {} concurrent streams (default pipeline)",
                h.requested
            ),
            None => "RSS holding 1,000 concurrent streams".into(),
        },
        measured: match held {
            Some(h) => format!(
                "{} MiB peak, {} streams open at most, {} ok / {} errors",
                mib(h.rss_peak_kib),
                h.max_open,
                h.ok,
                h.errors
            ),
            None => "–".into(),
        },
        limit: "≤ 200 MiB".into(),
        met: held
            .filter(|h| h.ok > 0 && h.requested >= 1000)
            .map(|h| h.rss_peak_kib as f64 <= 200.0 * 1024.0),
    });
    let _ = writeln!(w, "### Targets\n");
    let _ = writeln!(w, "| target | measured | limit | verdict |");
    let _ = writeln!(w, "|---|---|---|---|");
    for c in &checks {
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} |",
            c.what,
            c.measured,
            c.limit,
            if quick && c.met.is_some() {
                "(quick run: not judged)"
            } else {
                verdict(c.met)
            }
        );
    }
    let _ = writeln!(w);

    // ---- Absolute numbers -----------------------------------------------
    let main_targets: Vec<String> = raw
        .plan
        .targets
        .iter()
        .filter(|t| !t.name.starts_with("noop-"))
        .map(|t| t.name.clone())
        .collect();
    let _ = writeln!(w, "## Latency and throughput\n");
    let _ = writeln!(
        w,
        "Non-streamed chat completions (unique prompts: every cache lookup misses, except for \
         *aigw cache hit*, which repeats one prompt). c=1: sequential on one keep-alive connection; \
         c={c_lo} and c={c_hi}: that many keep-alive connections in a closed loop. CPU is utime+stime \
         of the target's process tree (direct: the mock itself) over the phase ÷ answered requests, \
         all kept rounds together.\n"
    );
    let _ = writeln!(
        w,
        "| target | p50 µs c=1 | p99 µs c=1 | added p50 µs | added p99 µs | req/s c={c_lo} | p99 ms c={c_lo} | req/s c={c_hi} | p99 ms c={c_hi} | CPU µs/req c=1 | CPU µs/req c={c_lo} | CPU µs/req c={c_hi} | errors |"
    );
    let _ = writeln!(
        w,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for name in &main_targets {
        if !v.has(name) {
            continue;
        }
        let (ok, err) = v.errors(name);
        let cpu = |c| {
            v.cpu_per_request(name, c)
                .map(|c| format!("{c:.0}"))
                .unwrap_or("–".into())
        };
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {}{} |",
            v.label(name),
            us(v.c1_p50(name)),
            us(v.spread(name, |_, t| Some(t.c1.as_ref()?.latency_us?.p99))),
            if name == "direct" {
                "–".into()
            } else {
                us(v.added(name, false))
            },
            if name == "direct" {
                "–".into()
            } else {
                us(v.added(name, true))
            },
            us(v.rps(name, c_lo)),
            ms(v.conc(name, c_lo, |p| Some(p.latency_us?.p99))),
            us(v.rps(name, c_hi)),
            ms(v.conc(name, c_hi, |p| Some(p.latency_us?.p99))),
            cpu(1),
            cpu(c_lo),
            cpu(c_hi),
            err,
            if err > 0 {
                format!(" of {}", ok + err)
            } else {
                String::new()
            }
        );
    }
    let hits: (u64, u64) = v
        .kept()
        .filter_map(|r| r.targets.get("aigw-cache-hit"))
        .flat_map(|t| t.c1.iter().chain(t.conc.iter()))
        .fold((0, 0), |a, p| (a.0 + p.cache_hits, a.1 + p.ok));
    if hits.1 > 0 {
        let _ = writeln!(
            w,
            "\n*aigw cache hit*: {} of {} answers carried `cf-aig-cache-status: HIT`.",
            hits.0, hits.1
        );
    }
    for name in &main_targets {
        if let Some(e) = v.first_error(name) {
            let _ = writeln!(
                w,
                "\n{}: first error: `{}`",
                v.label(name),
                e.replace('`', "'")
            );
        }
    }
    let _ = writeln!(w);

    // ---- Memory -----------------------------------------------------------
    let _ = writeln!(w, "## Memory (RSS)\n");
    let _ = writeln!(
        w,
        "Summed over the process tree. Idle: after start and one readiness request, before warm-up. \
         Peak: highest VmRSS sampled every 50 ms while one of its targets was under load. VmHWM: the \
         kernel's high-water mark at the end (includes start-up). After: {} s after the last round.\n",
        raw.plan.settle_s
    );
    let _ = writeln!(
        w,
        "| process | serves | CPUs | idle MiB | peak under load MiB | VmHWM MiB | after MiB |"
    );
    let _ = writeln!(w, "|---|---|---|---:|---:|---:|---:|");
    for (label, p) in &raw.processes {
        let serves: Vec<String> = raw
            .plan
            .targets
            .iter()
            .filter(|t| &t.process == label)
            .map(|t| t.name.clone())
            .collect();
        let _ = writeln!(
            w,
            "| {label} | {} | {} | {} | {} | {} | {} |",
            serves.join(", "),
            p.cpus_allowed,
            mib(p.idle_kib),
            mib(p.peak_sampled_kib),
            mib(p.hwm_end_kib),
            mib(p.after_kib)
        );
    }
    if let Some(h) = hold {
        let r = &h.result;
        let _ = writeln!(
            w,
            "\n**{} concurrent streams** through {} (a fresh process; request headers {}): {} ok, {} \
             errors, at most {} open at one sample, over {:.1} s. RSS before {} MiB, peak {} MiB \
             ({} MiB at the sample with most streams open), {} MiB after, VmHWM {} MiB.{}",
            r.requested,
            h.label,
            h.headers
                .iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", "),
            r.ok,
            r.errors,
            r.max_open,
            r.duration_s,
            mib(r.rss_before_kib),
            mib(r.rss_peak_kib),
            mib(r.rss_at_max_open_kib),
            mib(r.rss_after_kib),
            mib(r.hwm_end_kib),
            r.first_error
                .as_deref()
                .map(|e| format!(" First error: `{e}`."))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(w);

    // ---- Streaming --------------------------------------------------------
    let _ = writeln!(w, "## Streaming\n");
    let _ = writeln!(
        w,
        "Sequential streamed chat completions through the mock's paced SSE (one word per event, 10 ms \
         apart). Time to first byte: request sent → first body bytes. Gap: time between consecutive \
         SSE events as they arrive (events that arrive in one read count 0). Added: minus \
         direct-to-mock in the same round. A gateway that asks the provider for the usage chunk \
         (aigw, crabllm) gets one more paced event per stream; see Targets and peers.\n"
    );
    let _ = writeln!(
        w,
        "| target | TTFB p50 µs | added TTFB p50 µs | gap p50 ms | gap p99 ms | added gap p50 µs | events/stream | stream p50 ms |"
    );
    let _ = writeln!(w, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for name in &main_targets {
        if !v
            .kept()
            .any(|r| r.targets.get(name).is_some_and(|t| t.stream.is_some()))
        {
            continue;
        }
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            v.label(name),
            us(v.stream(name, |s| Some(s.ttfb_us?.p50))),
            if name == "direct" {
                "–".into()
            } else {
                us(v.stream_added(name, |s| Some(s.ttfb_us?.p50)))
            },
            ms(v.stream(name, |s| Some(s.gap_us?.p50))),
            ms(v.stream(name, |s| Some(s.gap_us?.p99))),
            if name == "direct" {
                "–".into()
            } else {
                us(v.stream_added(name, |s| Some(s.gap_us?.p50)))
            },
            med(v.stream(name, |s| s.events_per_stream))
                .map(|e| format!("{e:.0}"))
                .unwrap_or("–".into()),
            ms(v.stream(name, |s| Some(s.total_us?.p50))),
        );
    }
    let _ = writeln!(w);

    // ---- No-op filters ----------------------------------------------------
    let _ = writeln!(w, "## Cost of a filter\n");
    let _ = writeln!(
        w,
        "aigw with 0, 1, 2, 4 and 8 copies of a no-op filter (`tests/filters/stateless-filter` with an \
         empty table: a contract 0.2.0 filter that declares `stateless`, with request-headers and \
         response-headers hooks that pass through without reading a header), one gateway each in one \
         process, c=1. Per round the slope of p50 over the filter count is fitted by least squares.\n"
    );
    let _ = writeln!(
        w,
        "| no-op filters | p50 µs | p99 µs | p50 over 0 filters µs |"
    );
    let _ = writeln!(w, "|---:|---:|---:|---:|");
    for n in [0usize, 1, 2, 4, 8] {
        let name = format!("noop-{n}");
        if !v.has(&name) {
            continue;
        }
        let _ = writeln!(
            w,
            "| {n} | {} | {} | {} |",
            us(v.c1_p50(&name)),
            us(v.spread(&name, |_, t| Some(t.c1.as_ref()?.latency_us?.p99))),
            us(v.spread(&name, |r, t| {
                Some(
                    t.c1.as_ref()?.latency_us?.p50
                        - r.targets.get("noop-0")?.c1.as_ref()?.latency_us?.p50,
                )
            }))
        );
    }
    let _ = writeln!(
        w,
        "\nµs per added no-op filter: **{}** (median of per-round slopes, min–max).\n",
        us1(v.noop_slope())
    );

    // ---- Method -----------------------------------------------------------
    let p = &raw.plan;
    let _ = writeln!(w, "## Method\n");
    let _ = writeln!(
        w,
        "- Everything on loopback (127.0.0.1). CPU placement: every gateway/proxy process pinned with \
         `taskset -c 1`; the mock provider and the load generator (`aigw-bench`, one thread) on core 0. \
         Observed `Cpus_allowed_list`: {}.",
        raw.processes
            .iter()
            .map(|(l, p)| format!("{l} = {}", p.cpus_allowed))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (k, val) in meta.of("placement") {
        let _ = writeln!(w, "- {k}: {val}");
    }
    let _ = writeln!(
        w,
        "- Warm-up per target: {} sequential requests, a c={} burst, 2 streams. A target with no \
         successful warm-up answer is left out (see Peers).",
        p.warmup_requests,
        p.concurrency.iter().max().unwrap_or(&0)
    );
    let _ = writeln!(
        w,
        "- {} rounds planned, {} run, interleaved: each round measures every target once, starting one \
         target later than the round before. Per target and round: c=1 up to {} requests or {} s; \
         {} streams or {} s; each concurrency up to {} requests or {} s. Request timeout {} s; whole \
         run bounded at {} s.{}",
        p.rounds,
        raw.rounds.len(),
        p.c1_requests,
        p.c1_max_s,
        p.stream_requests,
        p.stream_max_s,
        p.conc_requests,
        p.conc_max_s,
        p.request_timeout_s,
        p.deadline_s,
        raw.stopped_early
            .as_deref()
            .map(|s| format!(" Stopped early: {s}."))
            .unwrap_or_default()
    );
    let _ = writeln!(
        w,
        "- Noise guard: a round is discarded when direct-to-mock's own c=1 p50 exceeds {}× the median \
         of its rounds. Discarded: {}.",
        p.noisy_factor,
        if raw.discard_reasons.is_empty() {
            "none".to_string()
        } else {
            raw.discard_reasons.join("; ")
        }
    );
    let _ = writeln!(
        w,
        "- Medians across kept rounds with min–max; added latency is computed per round against that \
         round's direct-to-mock, then the median taken. Run took {:.0} s.",
        raw.duration_s
    );
    for (_, val) in meta.of("note") {
        let _ = writeln!(w, "- {val}");
    }
    let _ = writeln!(w);

    // ---- Peers and versions ---------------------------------------------
    let _ = writeln!(w, "## Targets and peers\n");
    let _ = writeln!(w, "| target | what it is |");
    let _ = writeln!(w, "|---|---|");
    for t in &raw.plan.targets {
        let status = match raw.warmup.get(&t.name) {
            Some(wu) if !wu.available => format!(
                " — **left out**: no successful warm-up answer ({})",
                wu.first_error.as_deref().unwrap_or("?")
            ),
            _ => String::new(),
        };
        let _ = writeln!(w, "| {} | {}{status} |", t.name, t.label);
    }
    let _ = writeln!(w);
    for (name, how) in meta.of("peer") {
        let _ = writeln!(w, "- **{name}**: {how}");
    }
    for (name, why) in meta.of("skip") {
        let _ = writeln!(w, "- **{name} not measured**: {why}");
    }
    let _ = writeln!(w, "\n## Machine and versions\n");
    for (k, val) in meta.of("machine") {
        let _ = writeln!(w, "- {k}: {val}");
    }
    for (k, val) in meta.of("version") {
        let _ = writeln!(w, "- {k}: {val}");
    }
    let dir = meta.get("files", "dir").unwrap_or("target/bench");
    let _ = writeln!(
        w,
        "\nRaw results: `{dir}/raw.json` (every round, every phase), `{dir}/hold.json`, \
         `{dir}/plan.json`, `{dir}/meta.tsv`; process logs in `{dir}/logs/`."
    );
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_parses_tab_rows() {
        let m = Meta::parse("version\tnginx\t1.22.1\nskip\tlitellm\tno python\nbad line\n");
        assert_eq!(m.get("version", "nginx"), Some("1.22.1"));
        assert_eq!(m.get("skip", "litellm"), Some("no python"));
        assert_eq!(m.of("version").count(), 1);
    }

    #[test]
    fn ratios_and_formats() {
        assert_eq!(x(ratio(Some(3.0), Some(2.0))), "1.50×");
        assert_eq!(x(ratio(Some(300.0), Some(1.0))), "300×");
        assert_eq!(x(ratio(Some(1.0), Some(0.0))), "–");
        assert_eq!(mib(2048), "2.0");
    }
}
