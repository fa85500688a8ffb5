//! Usage extraction from response bytes (`host/src/providers/usage.rs`):
//! never panics; the usage found, and the bytes the usage-chunk filter lets
//! through, do not depend on how the stream is cut into chunks. Input: a
//! content-type choice byte, a chunking seed byte, the body.
#![no_main]

use aigw_fuzz::StreamInput;
use aigw_fuzz::providers::usage::{
    Usage, UsageChunkFilter, UsageReader, request_model, with_stream_usage,
};
use libfuzzer_sys::fuzz_target;

fn read(content_type: &str, chunks: &[&[u8]]) -> Usage {
    let mut r = UsageReader::for_content_type(Some(content_type));
    for c in chunks {
        r.feed(c);
    }
    r.finish()
}

fn filter(chunks: &[&[u8]]) -> Vec<u8> {
    let mut f = UsageChunkFilter::default();
    let mut out = Vec::new();
    for c in chunks {
        out.extend(f.push(c, false));
    }
    out.extend(f.push(b"", true));
    out
}

fuzz_target!(|data: &[u8]| {
    let input = StreamInput::new(data);
    let content_type = match input.choice % 3 {
        0 => "text/event-stream",
        1 => "application/json",
        _ => "text/plain",
    };
    assert_eq!(
        read(content_type, &input.chunks),
        read(content_type, &[input.stream])
    );
    let out = filter(&input.chunks);
    assert_eq!(out, filter(&[input.stream]));
    assert!(out.len() <= input.stream.len());
    let _ = request_model(input.stream);
    if let Some(rewritten) = with_stream_usage(input.stream) {
        assert!(with_stream_usage(&rewritten).is_none());
        assert!(request_model(&rewritten).1);
    }
});
