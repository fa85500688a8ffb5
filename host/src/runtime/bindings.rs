//! Host-side bindings of the filter contract, one module per version: this module is
//! `aigw:filter@0.1.0` (whose types the pipeline uses throughout), `v2` is
//! `aigw:filter@0.2.0`, which imports the 0.1.0 host services and so shares their
//! implementations. The only place `bindgen!` is used; the rest of the host goes through
//! `runtime::instance`.
#![allow(missing_docs, clippy::all)]

wasmtime::component::bindgen!({
    world: "aigw:filter/filter-plugin@0.1.0",
    path: "../wit/0.1.0",
    // Exports are called asynchronously (on a fiber) so WASI calls a filter
    // makes, such as writing a panic message to stderr, never block a tokio
    // worker.
    exports: { default: async },
    // kv and limits may go over the network (the Redis backend): async, so a
    // filter waiting on them parks its fiber instead of a tokio worker.
    imports: {
        "aigw:filter/kv.get": async | trappable,
        "aigw:filter/kv.set": async | trappable,
        "aigw:filter/kv.delete": async | trappable,
        "aigw:filter/limits.check": async,
        "aigw:filter/limits.debit": async,
        "aigw:filter/limits.check-across-gateways": async,
        "aigw:filter/limits.debit-across-gateways": async,
        // A reservation may wait for running requests to settle.
        "aigw:filter/spend.reserve": async,
        // With budgets in Redis these go over the network.
        "aigw:filter/spend.settle": async,
        "aigw:filter/spend.spent": async,
        // Outbound HTTP waits on the network.
        "aigw:filter/http-client.fetch": async,
    },
});

pub use self::aigw::filter::types;

/// `aigw:filter@0.2.0`.
pub mod v2 {
    wasmtime::component::bindgen!({
        world: "aigw:filter/filter-plugin@0.2.0",
        path: "../wit/0.2.0",
        exports: { default: async },
        imports: { default: trappable },
        with: {
            "aigw:filter/types@0.1.0": super::aigw::filter::types,
            "aigw:filter/kv@0.1.0": super::aigw::filter::kv,
            "aigw:filter/limits@0.1.0": super::aigw::filter::limits,
            "aigw:filter/telemetry@0.1.0": super::aigw::filter::telemetry,
            "aigw:filter/log-store@0.1.0": super::aigw::filter::log_store,
            "aigw:filter/context@0.1.0": super::aigw::filter::context,
            "aigw:filter/spend@0.1.0": super::aigw::filter::spend,
            "aigw:filter/manifest@0.1.0": super::aigw::filter::manifest,
            "aigw:filter/http-client@0.1.0": super::aigw::filter::http_client,
            "aigw:filter/types@0.2.0.fields": crate::runtime::v2::Fields,
            "aigw:filter/types@0.2.0.body": crate::runtime::v2::Body,
        },
    });
}
