//! The plan `bench/run.sh` hands the driver (targets, counts, time bounds)
//! and the request bodies it sends. Only data: measuring is in `load` and
//! `run`.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts and bounds of one run. Every loop of the driver is bounded by a
/// count and a time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// "full" or "quick".
    pub mode: String,
    pub rounds: usize,
    /// The whole run stops measuring after this long (rounds left undone
    /// are reported as such).
    pub deadline_s: f64,
    pub warmup_requests: usize,
    pub c1_requests: usize,
    pub c1_max_s: f64,
    pub stream_requests: usize,
    pub stream_max_s: f64,
    pub conc_requests: usize,
    pub conc_max_s: f64,
    pub concurrency: Vec<usize>,
    pub request_timeout_s: f64,
    /// A round is discarded when direct-to-mock's p50 at c=1 exceeds this
    /// factor times the median of its rounds.
    pub noisy_factor: f64,
    /// Pause before reading memory "after" the load.
    pub settle_s: f64,
    pub targets: Vec<TargetSpec>,
}

/// What is measured in a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Sequential non-streamed requests on one connection.
    C1,
    /// Sequential streamed requests on one connection.
    Stream,
    /// Each of `Plan::concurrency`: that many connections, closed loop.
    Conc,
}

/// One thing measured: a URL and the process whose CPU and memory it costs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetSpec {
    /// Short key used in the report (`direct`, `nginx`, `aigw-default` …).
    pub name: String,
    pub label: String,
    /// The process (label) charged with CPU and memory; targets served by
    /// one process share it.
    pub process: String,
    pub pid: u32,
    pub url: String,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    pub model: String,
    /// Same prompt every time (cache hits); else every prompt is unique.
    #[serde(default)]
    pub fixed_prompt: Option<String>,
    pub phases: Vec<Phase>,
    /// Multiplies `c1_requests` (more samples where the differences are small).
    #[serde(default = "one")]
    pub c1_factor: f64,
}

fn one() -> f64 {
    1.0
}

/// Request bodies of one target: an OpenAI chat completion, unique prompt
/// each time unless the target asks for a fixed one.
#[derive(Debug)]
pub struct Bodies {
    model: String,
    fixed: Option<String>,
    tag: String,
    counter: AtomicU64,
}

impl Bodies {
    pub fn new(spec: &TargetSpec, nonce: &str) -> Bodies {
        Bodies {
            model: spec.model.clone(),
            fixed: spec.fixed_prompt.clone(),
            tag: format!("{nonce} {}", spec.name),
            counter: AtomicU64::new(0),
        }
    }

    pub fn next(&self, stream: bool) -> Bytes {
        let prompt = match &self.fixed {
            Some(p) => p.clone(),
            None => {
                let n = self.counter.fetch_add(1, Ordering::Relaxed);
                format!("bench {} request {n}", self.tag)
            }
        };
        let mut body = serde_json::json!({
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
        });
        if stream && let Some(o) = body.as_object_mut() {
            o.insert("stream".into(), serde_json::Value::Bool(true));
        }
        Bytes::from(body.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(fixed: Option<&str>) -> TargetSpec {
        TargetSpec {
            name: "t".into(),
            label: "t".into(),
            process: "p".into(),
            pid: 1,
            url: "http://127.0.0.1:1/".into(),
            headers: vec![],
            model: "gpt-4o-mini".into(),
            fixed_prompt: fixed.map(str::to_string),
            phases: vec![Phase::C1],
            c1_factor: 1.0,
        }
    }

    #[test]
    fn prompts_are_unique_unless_fixed() {
        let b = Bodies::new(&spec(None), "n");
        assert_ne!(b.next(false), b.next(false));
        let f = Bodies::new(&spec(Some("same")), "n");
        assert_eq!(f.next(false), f.next(false));
        let s: serde_json::Value = serde_json::from_slice(&f.next(true)).unwrap();
        assert_eq!(s["stream"], true);
        assert_eq!(s["messages"][0]["content"], "same");
    }

    #[test]
    fn plan_parses_phases() {
        let p: Vec<Phase> = serde_json::from_str(r#"["c1","stream","conc"]"#).unwrap();
        assert_eq!(p, vec![Phase::C1, Phase::Stream, Phase::Conc]);
    }
}
