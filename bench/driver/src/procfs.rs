//! CPU time and memory of a process under test, read from `/proc`: the
//! process and all its descendants (nginx's worker, a Python server's
//! children), so a multi-process target is charged in full. Owns nothing
//! else: it never starts or stops processes.

use std::collections::{HashMap, HashSet};

/// Clock ticks per second of `utime`/`stime` (`getconf CLK_TCK`, else 100).
pub fn clk_tck() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// The fields of `/proc/PID/stat` after the command name, so index 0 is
/// field 3 (`state`) of proc(5).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = text.rsplit_once(')')?.1;
    Some(after.split_whitespace().map(str::to_string).collect())
}

/// `pid` and every live descendant of it.
pub fn tree(pid: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let parent = stat_fields(child)
                .and_then(|f| f.get(1).and_then(|p| p.parse::<u32>().ok()))
                .unwrap_or(0);
            children.entry(parent).or_default().push(child);
        }
    }
    let mut seen = HashSet::new();
    let mut todo = vec![pid];
    let mut out = Vec::new();
    while let Some(p) = todo.pop() {
        if !seen.insert(p) {
            continue;
        }
        out.push(p);
        if let Some(c) = children.get(&p) {
            todo.extend(c.iter().copied());
        }
    }
    out
}

/// utime + stime in clock ticks, summed over `pids` (fields 14 and 15).
pub fn cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|p| stat_fields(*p))
        .map(|f| {
            let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            field(11) + field(12)
        })
        .sum()
}

/// Resident memory in KiB: now (`VmRSS`) and the high-water mark since the
/// process started (`VmHWM`), each summed over `pids`.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

pub fn memory(pids: &[u32]) -> Memory {
    let mut m = Memory::default();
    for pid in pids {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        for line in status.lines() {
            let value = |rest: &str| {
                rest.split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            if let Some(rest) = line.strip_prefix("VmRSS:") {
                m.rss_kib += value(rest);
            } else if let Some(rest) = line.strip_prefix("VmHWM:") {
                m.hwm_kib += value(rest);
            }
        }
    }
    m
}

/// Whether the process exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    stat_fields(pid)
        .and_then(|f| f.first().cloned())
        .is_some_and(|state| state != "Z" && state != "X")
}

/// The CPUs the process may run on (`Cpus_allowed_list`), for the report.
pub fn cpus_allowed(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        assert!(alive(me));
        assert!(tree(me).contains(&me));
        assert!(memory(&[me]).rss_kib > 0);
        assert!(!cpus_allowed(me).is_empty());
    }
}
