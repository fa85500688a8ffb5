//! Test-only proptest helpers for the SSE readers in this folder: byte soup
//! that looks like SSE, and cutting one stream into network chunks.

use proptest::prelude::*;

/// Line endings the SSE format allows.
pub fn line_ending() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("\n"), Just("\r\n"), Just("\r")]
}

/// Bytes made of SSE-ish fragments (field names, JSON pieces, usage keys,
/// line endings) and arbitrary bytes, so both the parsers' happy paths and
/// their error paths are reached.
pub fn sse_soup() -> impl Strategy<Value = Vec<u8>> {
    let fragment = prop_oneof![
        Just(b"data:".to_vec()),
        Just(b"data: ".to_vec()),
        Just(b"event: message_start".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n\n".to_vec()),
        Just(b"[DONE]".to_vec()),
        Just(br#"{"choices":[],"usage":{"prompt_tokens":"#.to_vec()),
        Just(br#"{"type":"message_start","message":{"id":"m","usage":{"input_tokens":"#.to_vec()),
        Just(br#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":"#.to_vec()),
        Just(br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}"#.to_vec()),
        Just(br#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t","name":"f"}}"#.to_vec()),
        Just(br#"{"type":"message_stop"}"#.to_vec()),
        Just(br#","completion_tokens":"#.to_vec()),
        Just(b"}}".to_vec()),
        Just(b"}".to_vec()),
        any::<u64>().prop_map(|n| n.to_string().into_bytes()),
        prop::collection::vec(any::<u8>(), 0..8),
    ];
    prop::collection::vec(fragment, 0..40).prop_map(|parts| parts.concat())
}

/// Where to cut a stream: indexes resolved against its length.
pub fn cuts() -> impl Strategy<Value = Vec<prop::sample::Index>> {
    prop::collection::vec(any::<prop::sample::Index>(), 0..12)
}

/// `bytes` cut at `cuts` (empty pieces included: a chunk may be empty).
pub fn pieces<'a>(bytes: &'a [u8], cuts: &[prop::sample::Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
    at.sort_unstable();
    let mut out = Vec::with_capacity(at.len() + 1);
    let mut prev = 0;
    for a in at {
        out.push(&bytes[prev..a]);
        prev = a;
    }
    out.push(&bytes[prev..]);
    out
}
