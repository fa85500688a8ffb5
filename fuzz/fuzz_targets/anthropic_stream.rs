//! The Anthropic → OpenAI translation (`host/src/providers/anthropic.rs`):
//! never panics; a stream gives the same output however it is cut into
//! chunks, and every `data:` line it writes is JSON or `[DONE]`. Input: an
//! include-usage byte, a chunking seed byte, the stream (or a JSON body).
#![no_main]

use aigw_fuzz::StreamInput;
use aigw_fuzz::providers::anthropic::{StreamTranslator, request_to_anthropic, response_to_openai};
use libfuzzer_sys::fuzz_target;

fn translate(include_usage: bool, chunks: &[&[u8]]) -> (String, bool) {
    let mut t = StreamTranslator::new("claude", 1, include_usage);
    let out: String = chunks.iter().map(|c| t.feed(c)).collect();
    (out, t.finished())
}

fuzz_target!(|data: &[u8]| {
    let input = StreamInput::new(data);
    let include_usage = input.choice & 1 == 1;
    let (out, finished) = translate(include_usage, &input.chunks);
    assert_eq!(
        (out.clone(), finished),
        translate(include_usage, &[input.stream])
    );
    for line in out.lines() {
        if let Some(data) = line.strip_prefix("data: ") {
            assert!(
                data == "[DONE]" || serde_json::from_str::<serde_json::Value>(data).is_ok(),
                "{data}"
            );
        }
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(input.stream) {
        let _ = response_to_openai(&v, "m", 0);
        let _ = request_to_anthropic(&v, "m");
    }
});
