//! The generated WIT bindings. Private to the SDK: filters use the SDK's own
//! types, so a change in the generator never leaks into filter code.
#![allow(unsafe_code, missing_docs, clippy::all)]

wit_bindgen::generate!({
    world: "filter-plugin",
    // The SDK's own copy of wit/filter.wit, so a published package is
    // self-contained (tests/wit_copy.rs keeps it equal to the repository's).
    path: "wit",
    pub_export_macro: true,
    export_macro_name: "export",
    default_bindings_module: "aigw_plugin_sdk::__private::bindings",
    runtime_path: "aigw_plugin_sdk::__private::wit_bindgen::rt",
    bitflags_path: "aigw_plugin_sdk::__private::wit_bindgen::rt::bitflags",
    generate_all,
});
