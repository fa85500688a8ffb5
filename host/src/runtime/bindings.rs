//! Host-side bindings of the `aigw:filter@0.1.0` world. The only place
//! `bindgen!` is used; the rest of the host goes through `runtime::instance`.
#![allow(missing_docs, clippy::all)]

wasmtime::component::bindgen!({
    world: "filter-plugin",
    path: "../wit",
    // Exports are called asynchronously (on a fiber) so WASI calls a filter
    // makes, such as writing a panic message to stderr, never block a tokio
    // worker; the aigw imports themselves are plain synchronous functions.
    exports: { default: async },
});

pub use self::aigw::filter::types;
