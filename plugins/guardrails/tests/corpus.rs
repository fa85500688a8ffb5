//! The local prompt-injection check against a corpus of public attack strings and benign
//! prompts (tests/fixtures/prompt-injection, sources in its SOURCES.md): detection and
//! false-positive rates, per group and in all, printed (`--nocapture`) and held above floors
//! so that a change that loses detection, or flags ordinary prompts, fails.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use aigw_filter_guardrails::is_injection;
use std::path::PathBuf;

/// (group id, lines) of a corpus file; groups start at `# I1 …` / `# B1 …` comments.
fn groups(file: &str) -> Vec<(String, Vec<String>)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/prompt-injection")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            let id = comment.split_whitespace().next().unwrap_or("");
            let is_group = id.len() >= 2
                && (id.starts_with('I') || id.starts_with('B'))
                && id[1..].chars().all(|c| c.is_ascii_digit());
            if is_group {
                out.push((id.to_string(), Vec::new()));
            }
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        if let Some((_, lines)) = out.last_mut() {
            lines.push(line.to_string());
        }
    }
    out
}

/// Flagged and total lines, in all and in the held-out half (odd lines of each group: the
/// patterns were tuned looking only at the even ones), groups in `exclude` left out.
#[derive(Default)]
struct Tally {
    flagged: usize,
    total: usize,
    held_out_flagged: usize,
    held_out_total: usize,
}

fn measure(file: &str, exclude: &[&str]) -> Tally {
    let mut t = Tally::default();
    for (id, lines) in groups(file) {
        let hits: Vec<bool> = lines.iter().map(|l| is_injection(l)).collect();
        let flagged = hits.iter().filter(|h| **h).count();
        println!(
            "{file} {id}: {flagged}/{} flagged ({:.0}%)",
            lines.len(),
            100.0 * flagged as f64 / lines.len().max(1) as f64
        );
        if exclude.contains(&id.as_str()) {
            continue;
        }
        t.flagged += flagged;
        t.total += lines.len();
        for (i, h) in hits.iter().enumerate() {
            if i % 2 == 1 {
                t.held_out_total += 1;
                t.held_out_flagged += usize::from(*h);
            }
        }
    }
    t
}

fn pct(n: usize, of: usize) -> f64 {
    100.0 * n as f64 / of.max(1) as f64
}

#[test]
fn detection_and_false_positive_rates_on_the_public_corpus() {
    let started = std::time::Instant::now();
    let attacks = measure("injections.txt", &[]);
    // B9 quotes attack phrases in questions about injection: reported, not counted.
    let benign = measure("benign.txt", &["B9"]);
    println!(
        "local classifier: detection {}/{} = {:.1}% (held-out half {}/{} = {:.1}%), \
         false positives {}/{} = {:.1}% (held-out half {}/{} = {:.1}%)",
        attacks.flagged,
        attacks.total,
        pct(attacks.flagged, attacks.total),
        attacks.held_out_flagged,
        attacks.held_out_total,
        pct(attacks.held_out_flagged, attacks.held_out_total),
        benign.flagged,
        benign.total,
        pct(benign.flagged, benign.total),
        benign.held_out_flagged,
        benign.held_out_total,
        pct(benign.held_out_flagged, benign.held_out_total),
    );
    let bytes: usize = ["injections.txt", "benign.txt"]
        .iter()
        .flat_map(|f| groups(f))
        .flat_map(|(_, lines)| lines)
        .map(|l| l.len())
        .sum();
    println!(
        "scanned {} KB in {:?} (natively, with this build's profile; reading the files included)",
        bytes / 1024,
        started.elapsed()
    );
    assert!(
        attacks.total >= 300 && benign.total >= 150,
        "corpus not found whole"
    );
    let detection = pct(attacks.flagged, attacks.total);
    let false_positive = pct(benign.flagged, benign.total);
    assert!(
        detection >= DETECTION_FLOOR,
        "detection fell to {detection:.1}%"
    );
    assert!(
        false_positive <= FALSE_POSITIVE_CEILING,
        "false positives rose to {false_positive:.1}%"
    );
}

/// Floors a little under what the patterns measure today (see the README), in percent.
const DETECTION_FLOOR: f64 = 62.0;
const FALSE_POSITIVE_CEILING: f64 = 1.5;

#[test]
#[ignore = "prints the tuning half's misses and false alarms"]
fn print_tuning_half() {
    for (file, want) in [("injections.txt", false), ("benign.txt", true)] {
        for (id, lines) in groups(file) {
            for (i, l) in lines.iter().enumerate() {
                if i % 2 == 0 && is_injection(l) == want {
                    println!("{id} {}", l.chars().take(300).collect::<String>());
                }
            }
        }
    }
}
