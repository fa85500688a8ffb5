//! Host-side bindings of the `aigw:filter@0.1.0` world. The only place
//! `bindgen!` is used; the rest of the host goes through `runtime::instance`.
#![allow(missing_docs, clippy::all)]

wasmtime::component::bindgen!({
    world: "filter-plugin",
    path: "../wit",
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
