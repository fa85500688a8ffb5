//! AWS event stream frames (Bedrock ConverseStream's `application/vnd.amazon.eventstream`):
//! a 12-byte prelude (total length, headers length, prelude CRC32), headers, a payload and a
//! message CRC32, all big-endian. Headers are `name length (1) · name · type (1) · value`;
//! type 7 is a string (`length (2) · bytes`).

/// Longest frame accepted; a prelude claiming more ends the stream as not an event stream.
const MAX_FRAME: usize = 16 * 1024 * 1024;

/// One frame: its headers (raw) and payload.
#[derive(Debug)]
pub struct Frame {
    pub headers: Vec<u8>,
    pub payload: Vec<u8>,
}

impl Frame {
    /// A string header's value.
    pub fn header(&self, name: &str) -> Option<String> {
        let h = &self.headers;
        let mut at = 0;
        while at < h.len() {
            let len = *h.get(at)? as usize;
            let key = h.get(at + 1..at + 1 + len)?;
            at += 1 + len;
            let kind = *h.get(at)?;
            at += 1;
            let size = match kind {
                0 | 1 => 0,
                2 => 1,
                3 => 2,
                4 => 4,
                5 | 8 => 8,
                9 => 16,
                6 | 7 => {
                    let n = u16::from_be_bytes([*h.get(at)?, *h.get(at + 1)?]) as usize;
                    at += 2;
                    n
                }
                _ => return None,
            };
            let value = h.get(at..at + size)?;
            at += size;
            if key == name.as_bytes() && kind == 7 {
                return String::from_utf8(value.to_vec()).ok();
            }
        }
        None
    }
}

/// Takes the next complete frame off the front of `pending`: `Ok(None)` when more bytes are
/// needed, `Err` when the bytes are not an event stream (a length that cannot be).
pub fn take_frame(pending: &mut Vec<u8>) -> Result<Option<Frame>, String> {
    if pending.len() < 12 {
        return Ok(None);
    }
    let word = |at: usize| {
        u32::from_be_bytes([
            pending[at],
            pending[at + 1],
            pending[at + 2],
            pending[at + 3],
        ]) as usize
    };
    let (total, headers) = (word(0), word(4));
    if (total as u64) < 16 + headers as u64 || total > MAX_FRAME {
        return Err(format!(
            "not an AWS event stream: a frame of {total} bytes with {headers} bytes of headers"
        ));
    }
    if pending.len() < total {
        return Ok(None);
    }
    let frame = Frame {
        headers: pending[12..12 + headers].to_vec(),
        payload: pending[12 + headers..total - 4].to_vec(),
    };
    pending.drain(..total);
    Ok(Some(frame))
}

/// Encodes a frame with string headers (the mock's ConverseStream).
pub fn encode(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    for (name, value) in headers {
        h.push(name.len() as u8);
        h.extend_from_slice(name.as_bytes());
        h.push(7);
        h.extend_from_slice(&(value.len() as u16).to_be_bytes());
        h.extend_from_slice(value.as_bytes());
    }
    let total = 12 + h.len() + payload.len() + 4;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&(h.len() as u32).to_be_bytes());
    let prelude_crc = crc32fast::hash(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_across_any_split() {
        let a = encode(
            &[
                (":event-type", "contentBlockDelta"),
                (":message-type", "event"),
            ],
            br#"{"delta":{"text":"Hi"}}"#,
        );
        let b = encode(
            &[(":event-type", "messageStop")],
            br#"{"stopReason":"end_turn"}"#,
        );
        let all = [a, b].concat();
        for cut in 0..all.len() {
            let mut pending = all[..cut].to_vec();
            let mut got = Vec::new();
            while let Some(f) = take_frame(&mut pending).unwrap() {
                got.push(f);
            }
            pending.extend_from_slice(&all[cut..]);
            while let Some(f) = take_frame(&mut pending).unwrap() {
                got.push(f);
            }
            assert_eq!(got.len(), 2);
            assert_eq!(
                got[0].header(":event-type").as_deref(),
                Some("contentBlockDelta")
            );
            assert_eq!(got[0].header(":message-type").as_deref(), Some("event"));
            assert_eq!(got[1].payload, br#"{"stopReason":"end_turn"}"#);
        }
        let mut junk = b"data: {\"not\": \"frames\"}\n\n".to_vec();
        assert!(take_frame(&mut junk).is_err());
    }
}
