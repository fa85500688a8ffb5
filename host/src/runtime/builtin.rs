//! The built-in filters, compiled to wasm32-wasip2 by `build.rs` and embedded.

include!(concat!(env!("OUT_DIR"), "/builtins.rs"));

/// The embedded bytes of built-in filter `name`.
pub fn bytes(name: &str) -> Option<&'static [u8]> {
    BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// Names of all built-in filters.
pub fn names() -> impl Iterator<Item = &'static str> {
    BUILTINS.iter().map(|(n, _)| *n)
}
