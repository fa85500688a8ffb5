//! The host's parsers, compiled from the host's own source files without the
//! rest of the host (no wasmtime, no hyper server): `providers` (SSE usage,
//! the Anthropic stream translator, base URLs, prices), `config` (the TOML
//! file), `route` (gateway URL paths) and the `Secret` type they share. Their `crate::…` imports resolve here because
//! this crate mirrors the host's module names. Tests (`#[cfg(test)]`) are not
//! compiled; the host's own `cargo test` runs them.

#[path = "../../host/src/http/secret.rs"]
mod http_secret;

/// The one piece of the host's `http` module the parsers use.
pub mod http {
    pub use crate::http_secret::Secret;
}

#[path = "../../host/src/providers/mod.rs"]
pub mod providers;

#[path = "../../host/src/config/mod.rs"]
pub mod config;

#[path = "../../host/src/server/route.rs"]
pub mod route;

/// A fuzz input for a streaming parser: byte 0 is a choice for the target
/// (content type, flag), byte 1 seeds how the rest (the stream) is cut into
/// chunks. Seed files are those two bytes followed by a real stream.
#[derive(Debug)]
pub struct StreamInput<'a> {
    /// The target's own choice.
    pub choice: u8,
    /// The stream, whole.
    pub stream: &'a [u8],
    /// The same stream cut into chunks of 0 to 63 bytes.
    pub chunks: Vec<&'a [u8]>,
}

impl<'a> StreamInput<'a> {
    /// Splits a fuzz input; inputs under two bytes are an empty stream.
    pub fn new(data: &'a [u8]) -> Self {
        let (choice, seed, stream) = match data {
            [choice, seed, stream @ ..] => (*choice, *seed, stream),
            _ => (0, 0, &[][..]),
        };
        // xorshift64 from the seed byte: irregular chunk sizes, empty ones included.
        let mut state = u64::from(seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut chunks = Vec::new();
        let mut rest = stream;
        while !rest.is_empty() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let n = ((state % 64) as usize).min(rest.len());
            let (chunk, after) = rest.split_at(n);
            chunks.push(chunk);
            rest = after;
        }
        StreamInput {
            choice,
            stream,
            chunks,
        }
    }
}
