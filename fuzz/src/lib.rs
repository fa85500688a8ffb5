//! The host's parsers, compiled from the host's own source files without the
//! rest of the host (no wasmtime, no hyper server): `providers` (SSE usage,
//! the Anthropic stream translator, base URLs), `config` (the TOML file) and
//! `route` (gateway URL paths). Their `crate::…` imports resolve here because
//! this crate mirrors the host's module names (with a `store` shim for the
//! two settings types `config` names). Tests (`#[cfg(test)]`) are not
//! compiled; the host's own `cargo test` runs them.

#[path = "../../host/src/providers/mod.rs"]
pub mod providers;

#[path = "../../host/src/config/mod.rs"]
pub mod config;

#[path = "../../host/src/server/route.rs"]
pub mod route;

/// Shim for the one part of the host's `store` module that `config` names:
/// the Redis backend's settings (`host/src/store/redis.rs` itself needs the
/// redis client and tokio). Keep these two types as the host defines them.
pub mod store {
    /// Shim of `host/src/store/redis.rs`'s plain types.
    pub mod redis {
        /// What a call does when Redis cannot answer.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum OnError {
            /// Allowed / a miss.
            Open,
            /// Refused.
            Closed,
        }

        /// Settings of the Redis backend (`[store]`).
        #[derive(Debug, Clone)]
        pub struct RedisSettings {
            /// `redis://host:port/db` (or `rediss://`).
            pub url: String,
            /// Deadline of each command.
            pub timeout_ms: u64,
            /// Prefix of every key this gateway writes.
            pub key_prefix: String,
            /// Largest value stored.
            pub max_entry_bytes: usize,
            /// Policy for kv calls when Redis fails.
            pub kv_on_error: OnError,
            /// Policy for limit calls when Redis fails.
            pub limits_on_error: OnError,
        }
    }
}

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
