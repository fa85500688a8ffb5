//! The generated WIT bindings. Private to the SDK: filters use the SDK's own
//! types, so a change in the generator never leaks into filter code.
#![allow(unsafe_code, missing_docs, clippy::all)]

wit_bindgen::generate!({
    world: "aigw:filter/filter-plugin@0.2.0",
    // The SDK's own copy of wit/0.2.0 (and of wit/0.1.0, whose host services 0.2.0
    // imports, under deps/), so a published package is self-contained (tests/wit_copy.rs
    // keeps it equal to the repository's).
    path: "wit",
    pub_export_macro: true,
    export_macro_name: "export",
    default_bindings_module: "aigw_plugin_sdk::__private::bindings",
    runtime_path: "aigw_plugin_sdk::__private::wit_bindgen::rt",
    bitflags_path: "aigw_plugin_sdk::__private::wit_bindgen::rt::bitflags",
    generate_all,
});

/// The host services (0.1.0 interfaces, imported as they are by 0.2.0 filters).
pub use self::aigw::filter0_1_0 as services;
/// The 0.2.0 request-local values.
pub use self::aigw::filter0_2_0::request_local as v2_local;
/// The 0.2.0 types and resources.
pub use self::aigw::filter0_2_0::types as v2;
