//! Host-side bindings of the `aigw:filter@0.1.0` world. The only place
//! `bindgen!` is used; the rest of the host goes through `runtime::instance`.
#![allow(missing_docs, clippy::all)]

wasmtime::component::bindgen!({
    world: "filter-plugin",
    path: "../wit",
});

pub use aigw::filter::types;
