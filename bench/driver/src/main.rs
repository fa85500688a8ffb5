//! `aigw-bench`: the load generator and report writer behind `bench/run.sh`.
//!
//! - `run --plan plan.json --out raw.json`: warm-up, interleaved rounds over
//!   the plan's targets (latency at c=1, streams, throughput at each
//!   concurrency), CPU and RSS of each target's process, raw JSON out.
//! - `hold --url … --pid … --streams 1000 --out hold.json`: that many
//!   streams open at once through one target while its RSS is sampled.
//! - `report --raw raw.json [--hold hold.json] [--meta meta.tsv] --out FILE.md`.
//! - `check --raw raw.json`: fails unless every target answered without errors.
//! - `free-port`: prints a free TCP port on 127.0.0.1.
//!
//! The script starts and stops the processes under test; this binary only
//! sends requests to loopback addresses and reads `/proc`.

#![allow(
    clippy::print_stdout,
    reason = "a command-line tool: its answers go to stdout"
)]

mod client;
mod load;
mod plan;
mod procfs;
mod report;
mod run;
mod stats;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "aigw-bench", about = "Side-by-side gateway benchmark driver")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measure every target of a plan in interleaved rounds.
    Run {
        #[arg(long)]
        plan: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Hold many streams open at once through one target; sample its RSS.
    Hold {
        #[arg(long)]
        url: String,
        #[arg(long)]
        pid: u32,
        #[arg(long, default_value_t = 1000)]
        streams: usize,
        /// Extra request header, `name: value` (repeatable).
        #[arg(long = "header")]
        headers: Vec<String>,
        #[arg(long, default_value = "gpt-4o-mini")]
        model: String,
        /// Upper bound on the whole hold, seconds.
        #[arg(long, default_value_t = 60.0)]
        max_s: f64,
        #[arg(long, default_value_t = 2.0)]
        settle_s: f64,
        #[arg(long, default_value = "")]
        label: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Write the markdown report.
    Report {
        #[arg(long)]
        raw: PathBuf,
        #[arg(long)]
        hold: Option<PathBuf>,
        #[arg(long)]
        meta: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Exit non-zero unless every target of a run answered without errors
    /// (no timing is judged): the smoke test of `bench/run.sh --quick`.
    Check {
        #[arg(long)]
        raw: PathBuf,
        /// Also require every held stream to have ended well.
        #[arg(long)]
        hold: Option<PathBuf>,
    },
    /// Print a free TCP port on 127.0.0.1.
    FreePort,
}

/// What `hold` writes.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct HoldFile {
    pub label: String,
    pub headers: Vec<String>,
    pub result: load::Hold,
}

fn parse_header(h: &str) -> Result<(String, String)> {
    let (n, v) = h
        .split_once(':')
        .with_context(|| format!("header {h:?}: expected `name: value`"))?;
    Ok((n.trim().to_string(), v.trim().to_string()))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // One thread: the driver shares its core with the mock provider, and a
    // single-threaded client keeps its own cost small and steady.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Run { plan, out } => {
            let text = std::fs::read_to_string(&plan)
                .with_context(|| format!("reading {}", plan.display()))?;
            let plan: plan::Plan = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", plan.display()))?;
            let raw = rt.block_on(run::run(plan, &out))?;
            println!(
                "{} rounds ({} discarded) in {:.0} s; raw results in {}",
                raw.rounds.len(),
                raw.discarded.len(),
                raw.duration_s,
                out.display()
            );
        }
        Command::Hold {
            url,
            pid,
            streams,
            headers,
            model,
            max_s,
            settle_s,
            label,
            out,
        } => {
            let parsed = headers
                .iter()
                .map(|h| parse_header(h))
                .collect::<Result<Vec<_>>>()?;
            let endpoint = client::Endpoint::parse(&url, &parsed)?;
            let spec = plan::TargetSpec {
                name: "hold".into(),
                label: label.clone(),
                process: label.clone(),
                pid,
                url,
                headers: parsed,
                model,
                fixed_prompt: None,
                phases: vec![],
                c1_factor: 1.0,
            };
            let bodies = Arc::new(plan::Bodies::new(&spec, "hold"));
            let result = rt.block_on(load::hold(
                &endpoint,
                &bodies,
                pid,
                streams,
                100,
                Duration::from_millis(100),
                Duration::from_secs_f64(max_s),
                Duration::from_secs_f64(settle_s),
            ));
            println!(
                "{} streams: {} ok, {} errors, at most {} open; RSS {} → peak {} → after {} KiB",
                streams,
                result.ok,
                result.errors,
                result.max_open,
                result.rss_before_kib,
                result.rss_peak_kib,
                result.rss_after_kib
            );
            let file = HoldFile {
                label,
                headers,
                result,
            };
            if let Some(dir) = out.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&out, serde_json::to_string_pretty(&file)?)?;
        }
        Command::Report {
            raw,
            hold,
            meta,
            out,
        } => {
            let raw: run::Raw = serde_json::from_str(
                &std::fs::read_to_string(&raw)
                    .with_context(|| format!("reading {}", raw.display()))?,
            )?;
            let hold: Option<HoldFile> = match hold {
                Some(p) if p.exists() => Some(serde_json::from_str(&std::fs::read_to_string(&p)?)?),
                _ => None,
            };
            let meta = match meta {
                Some(p) => report::Meta::parse(&std::fs::read_to_string(&p)?),
                None => report::Meta::default(),
            };
            let md = report::render(&raw, hold.as_ref(), &meta);
            std::fs::write(&out, md).with_context(|| format!("writing {}", out.display()))?;
            println!("report written to {}", out.display());
        }
        Command::Check { raw, hold } => {
            let raw: run::Raw = serde_json::from_str(
                &std::fs::read_to_string(&raw)
                    .with_context(|| format!("reading {}", raw.display()))?,
            )?;
            let mut problems = run::problems(&raw);
            if let Some(path) = hold {
                match std::fs::read_to_string(&path) {
                    Ok(text) => {
                        let h: HoldFile = serde_json::from_str(&text)?;
                        let r = &h.result;
                        if r.errors > 0 || r.ok as usize != r.requested {
                            problems.push(format!(
                                "hold: {} of {} streams ok, {} errors ({})",
                                r.ok,
                                r.requested,
                                r.errors,
                                r.first_error.as_deref().unwrap_or("-")
                            ));
                        }
                    }
                    Err(e) => problems.push(format!("hold: {}: {e}", path.display())),
                }
            }
            if !problems.is_empty() {
                anyhow::bail!("the run had problems:\n  {}", problems.join("\n  "));
            }
            println!(
                "check: {} targets, {} rounds, no errors",
                raw.plan.targets.len(),
                raw.rounds.len()
            );
        }
        Command::FreePort => {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            println!("{}", l.local_addr()?.port());
        }
    }
    Ok(())
}
