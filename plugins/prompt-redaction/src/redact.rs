//! Replacing the findings of a chat body with placeholders. A placeholder is
//! `[LABEL_N]` (`[EMAIL_1]`, `[CUSTOM_EMPLOYEE_ID_2]`): numbered per label in
//! order of first appearance, the same value always getting the same one
//! within a request, so identical bodies redact identically (cache keys
//! stay stable). Placeholders already written in the body (a masked earlier
//! turn) are never issued again. Detection is `detect`'s job; putting
//! originals back is `restore`'s.

use crate::detect::{Detector, Kind};
use crate::restore::Placeholders;
use aigw_plugin_sdk::chat::ChatRequest;
use std::collections::{HashMap, HashSet};

/// The placeholders of one request and what they replaced.
#[derive(Debug, Default)]
pub struct Redaction {
    /// (label, original) → placeholder.
    issued: HashMap<(String, String), String>,
    /// Last number used per label.
    next: HashMap<String, u32>,
    /// Placeholder-shaped strings found in the body before redacting.
    reserved: HashSet<String>,
    /// Occurrences per kind.
    counts: Vec<(Kind, u64)>,
    /// Placeholder → original.
    pub placeholders: Placeholders,
}

/// Where a kind goes in messages and annotations: built-ins in their fixed
/// order, then custom patterns in table order.
pub fn rank(kind: Kind) -> usize {
    match kind {
        Kind::Builtin(b) => b as usize,
        Kind::Custom(i) => 100 + i,
    }
}

/// Every `[A-Z0-9_]+` between brackets (at most 64 bytes) in `raw`.
fn placeholder_shapes(raw: &[u8]) -> HashSet<String> {
    let mut found = HashSet::new();
    let mut i = 0;
    while let Some(off) = raw[i..].iter().position(|&b| b == b'[') {
        let p = i + off;
        let window = &raw[p + 1..raw.len().min(p + 66)];
        if let Some(q) = window.iter().position(|&b| b == b']')
            && q > 0
            && window[..q]
                .iter()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_')
        {
            found.insert(String::from_utf8_lossy(&raw[p..p + q + 2]).into_owned());
        }
        i = p + 1;
    }
    found
}

impl Redaction {
    /// A redaction for a request whose raw body is `raw`.
    pub fn new(raw: &[u8]) -> Redaction {
        Redaction {
            reserved: placeholder_shapes(raw),
            ..Redaction::default()
        }
    }

    /// Replaces every finding in `text`.
    pub fn redact(&mut self, detector: &Detector, text: &mut String) {
        let findings = detector.find(text);
        if findings.is_empty() {
            return;
        }
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for f in findings {
            out.push_str(&text[last..f.start]);
            out.push_str(&self.placeholder(detector, f.kind, &text[f.start..f.end]));
            last = f.end;
        }
        out.push_str(&text[last..]);
        *text = out;
    }

    fn placeholder(&mut self, detector: &Detector, kind: Kind, original: &str) -> String {
        match self.counts.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => self.counts.push((kind, 1)),
        }
        let label = detector.label(kind);
        let key = (label, original.to_string());
        if let Some(p) = self.issued.get(&key) {
            return p.clone();
        }
        let n = self.next.entry(key.0.clone()).or_insert(0);
        let placeholder = loop {
            *n += 1;
            let candidate = format!("[{}_{}]", key.0, n);
            if !self.reserved.contains(&candidate) {
                break candidate;
            }
        };
        self.placeholders.insert(&placeholder, original);
        self.issued.insert(key, placeholder.clone());
        placeholder
    }

    /// Occurrences per kind name, in `rank` order.
    pub fn counts<'a>(&self, detector: &'a Detector) -> Vec<(&'a str, u64)> {
        let mut c = self.counts.clone();
        c.sort_by_key(|(k, _)| rank(*k));
        c.into_iter().map(|(k, n)| (detector.name(k), n)).collect()
    }

    /// Every occurrence replaced.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|(_, n)| n).sum()
    }
}

/// Redacts every text piece of `chat`.
pub fn redact_chat(detector: &Detector, chat: &mut ChatRequest, raw: &[u8]) -> Redaction {
    let mut r = Redaction::new(raw);
    chat.for_each_text_mut(|_, text| r.redact(detector, text));
    r
}

/// The kinds found in `chat`, in `rank` order (values are not kept).
pub fn kinds_in(detector: &Detector, chat: &ChatRequest) -> Vec<Kind> {
    let mut kinds: Vec<Kind> = Vec::new();
    chat.for_each_text(|_, text| {
        for f in detector.find(text) {
            if !kinds.contains(&f.kind) {
                kinds.push(f.kind);
            }
        }
    });
    kinds.sort_by_key(|k| rank(*k));
    kinds
}
