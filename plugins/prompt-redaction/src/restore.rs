//! Putting originals back: the placeholder → original map of one request,
//! and the restorer of a JSON (or any non-SSE) response body, which may
//! arrive in chunks that split a placeholder. Only the bytes that could still
//! become a placeholder are held back. SSE streams are `sse`'s job.

use std::collections::HashMap;

/// The placeholders issued for one request and their originals.
#[derive(Debug, Default, Clone)]
pub struct Placeholders {
    /// `[EMAIL_1]` → (original, original escaped for a JSON string).
    map: HashMap<Vec<u8>, (Vec<u8>, Vec<u8>)>,
    /// Longest placeholder, in bytes.
    max_len: usize,
}

impl Placeholders {
    /// Records `placeholder` (e.g. `[EMAIL_1]`) for `original`.
    pub fn insert(&mut self, placeholder: &str, original: &str) {
        let quoted = serde_json::Value::String(original.to_string()).to_string();
        let escaped = quoted
            .strip_prefix('"')
            .and_then(|q| q.strip_suffix('"'))
            .unwrap_or(original)
            .as_bytes()
            .to_vec();
        self.max_len = self.max_len.max(placeholder.len());
        self.map.insert(
            placeholder.as_bytes().to_vec(),
            (original.as_bytes().to_vec(), escaped),
        );
    }

    /// No placeholder was issued.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Appends `text` to `out` with every complete placeholder replaced by
    /// its original (JSON-escaped when `json`). Returns how many it replaced.
    pub fn restore_into(&self, text: &[u8], json: bool, out: &mut Vec<u8>) -> usize {
        let mut replaced = 0;
        let mut last = 0;
        let mut i = 0;
        while let Some(off) = text[i..].iter().position(|&b| b == b'[') {
            let p = i + off;
            let window = &text[p..text.len().min(p + self.max_len)];
            let hit = window
                .iter()
                .position(|&b| b == b']')
                .and_then(|q| self.map.get(&window[..=q]).map(|v| (q, v)));
            match hit {
                Some((q, (raw, escaped))) => {
                    out.extend_from_slice(&text[last..p]);
                    out.extend_from_slice(if json { escaped } else { raw });
                    replaced += 1;
                    i = p + q + 1;
                    last = i;
                }
                None => i = p + 1,
            }
        }
        out.extend_from_slice(&text[last..]);
        replaced
    }

    /// `text` with every complete placeholder replaced.
    #[cfg(test)]
    pub fn restore_str(&self, text: &str, json: bool) -> String {
        let mut out = Vec::with_capacity(text.len());
        self.restore_into(text.as_bytes(), json, &mut out);
        // Replacements are whole strings put between whole characters.
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// Where the text that could still become a placeholder begins: the last
    /// `[` when everything from it is a proper prefix of some placeholder,
    /// else `text.len()` (nothing to hold).
    pub fn hold_from(&self, text: &[u8]) -> usize {
        let Some(p) = text.iter().rposition(|&b| b == b'[') else {
            return text.len();
        };
        let tail = &text[p..];
        if tail.len() >= self.max_len || tail.contains(&b']') {
            return text.len();
        }
        if self.map.keys().any(|k| k.starts_with(tail)) {
            p
        } else {
            text.len()
        }
    }
}

/// Restores a JSON (or plain) response body chunk by chunk.
#[derive(Debug, Default)]
pub struct BodyRestorer {
    held: Vec<u8>,
    /// Placeholders put back so far.
    pub restored: usize,
}

impl BodyRestorer {
    /// The bytes to emit for this chunk (everything at `end_of_stream`).
    pub fn push(&mut self, chunk: &[u8], end_of_stream: bool, ph: &Placeholders) -> Vec<u8> {
        let mut data = std::mem::take(&mut self.held);
        data.extend_from_slice(chunk);
        let split = if end_of_stream {
            data.len()
        } else {
            ph.hold_from(&data)
        };
        self.held = data[split..].to_vec();
        let mut out = Vec::with_capacity(split);
        self.restored += ph.restore_into(&data[..split], true, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ph() -> Placeholders {
        let mut p = Placeholders::default();
        p.insert("[EMAIL_1]", "ada@example.com");
        p.insert("[EMAIL_12]", "bob@example.com");
        p.insert("[CUSTOM_NOTE_1]", "say \"hi\"\\");
        p
    }

    #[test]
    fn restores_complete_placeholders_only() {
        let p = ph();
        assert_eq!(
            p.restore_str("to [EMAIL_1] and [EMAIL_12], not [EMAIL_2] or [x]", false),
            "to ada@example.com and bob@example.com, not [EMAIL_2] or [x]"
        );
        assert_eq!(p.restore_str("[[EMAIL_1]]", false), "[ada@example.com]");
        assert_eq!(p.restore_str("é[EMAIL_1]ü", false), "éada@example.comü");
    }

    #[test]
    fn json_escapes_the_original() {
        let p = ph();
        assert_eq!(p.restore_str("[CUSTOM_NOTE_1]", false), "say \"hi\"\\");
        assert_eq!(p.restore_str("[CUSTOM_NOTE_1]", true), "say \\\"hi\\\"\\\\");
    }

    #[test]
    fn holds_only_placeholder_prefixes() {
        let p = ph();
        assert_eq!(p.hold_from(b"hello [EM"), 6);
        assert_eq!(p.hold_from(b"hello [EMAIL_1"), 6);
        assert_eq!(p.hold_from(b"hello ["), 6);
        assert_eq!(p.hold_from(b"hello [EMAIL_1]"), 15);
        assert_eq!(p.hold_from(b"hello [PHONE"), 12);
        assert_eq!(p.hold_from(b"a[EM[EMAIL_"), 4);
        assert_eq!(p.hold_from(b"array[0"), 7);
        assert_eq!(p.hold_from(b"no bracket"), 10);
    }

    #[test]
    fn body_restorer_handles_every_split() {
        let p = ph();
        let body = br#"{"content":"write to [EMAIL_1] or [EMAIL_12] [E"}"#;
        let want = br#"{"content":"write to ada@example.com or bob@example.com [E"}"#;
        for cut in 0..=body.len() {
            let mut r = BodyRestorer::default();
            let mut out = r.push(&body[..cut], false, &p);
            out.extend(r.push(&body[cut..], false, &p));
            out.extend(r.push(b"", true, &p));
            assert_eq!(out, want.to_vec(), "split at {cut}");
            assert_eq!(r.restored, 2);
        }
    }
}
