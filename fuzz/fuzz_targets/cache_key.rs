//! Cache-key canonical JSON (`plugins/cache`): never panics; canonical text
//! is canonical (a fixed point) and holds the same JSON value as the body.
#![no_main]

use aigw_filter_cache::canonical_body;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|body: &[u8]| {
    let canonical = canonical_body(body);
    assert_eq!(canonical_body(&canonical), canonical);
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => {
            let back: Value = serde_json::from_slice(&canonical).unwrap();
            assert_eq!(back, v);
        }
        Err(_) => assert_eq!(canonical, body),
    }
});
