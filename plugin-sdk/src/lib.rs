//! # aigw plugin SDK
//!
//! Write an aigw filter: a WebAssembly component the gateway runs at request and
//! response hook points. Implement [`Filter`] (every hook defaults to pass-through),
//! call [`export_filter!`], and build with
//! `cargo build --release --target wasm32-wasip2`. Drop the `.wasm` into the
//! gateway's `plugins_dir` and name it in a gateway's `pipeline`.
//!
//! ```
//! use aigw_plugin_sdk::{Decision, Filter, FilterInfo, LocalResponse, OnError, Request};
//!
//! /// Refuses requests without an `x-team` header.
//! struct RequireTeam;
//!
//! impl Filter for RequireTeam {
//!     fn describe() -> FilterInfo {
//!         // Declare every hook the impl defines: the host calls only these.
//!         FilterInfo::new().on_request_headers().on_error(OnError::Closed)
//!     }
//!     fn configure(_config: serde_json::Value) -> Result<Self, String> {
//!         Ok(RequireTeam)
//!     }
//!     fn on_request_headers(&mut self, req: &Request) -> Decision {
//!         match req.headers.get("x-team") {
//!             Some(_) => Decision::proceed(),
//!             None => Decision::Respond(LocalResponse::error(400, "bad_request", "x-team header is required")),
//!         }
//!     }
//! }
//! aigw_plugin_sdk::export_filter!(RequireTeam);
//!
//! let mut f = RequireTeam::configure(serde_json::json!({})).unwrap();
//! assert!(matches!(f.on_request_headers(&Request::default()), Decision::Respond(_)));
//! ```
//!
//! Test a filter the way the host runs it with [`testing::run`] (feature `testing`): it
//! calls only the declared hooks, in the host's order, with the declared body modes, and
//! fails when the filter implements a hook `describe` does not declare.
//!
//! A filter instance serves one request: the host instantiates the component,
//! calls [`Filter::configure`] with the filter's TOML table (as JSON), then the
//! hooks in order. State kept in `self` lasts for that request; state shared
//! between requests goes through [`host`] (key-value store, limit counters).
#![deny(missing_docs)]

extern crate self as aigw_plugin_sdk;

pub mod answer;
#[doc(hidden)]
pub mod bindings;
pub mod body;
pub mod budget;
pub mod cf;
pub mod chat;
pub mod config;
pub mod glob;
#[doc(hidden)]
pub mod glue;
mod harness;
pub mod host;
pub mod http;
mod lent;
pub mod testing;
mod types;

pub use types::*;

/// A filter: one policy applied to requests and responses.
///
/// Only `describe` and `configure` are required; each hook defaults to
/// passing everything through. The host calls only the hooks `describe` lists: a hook
/// implemented here but not declared there is never called. [`testing::run`] and
/// [`testing::check_hooks`] catch that in a unit test.
pub trait Filter: Sized + 'static {
    /// Which hooks to call and how to deliver bodies.
    ///
    /// ```
    /// # use aigw_plugin_sdk::*;
    /// let info = FilterInfo { hooks: Hooks { response_body: true, ..Hooks::default() },
    ///     response_body: BodyMode::Streaming, ..FilterInfo::default() };
    /// assert_eq!(info.response_body, BodyMode::Streaming);
    /// ```
    fn describe() -> FilterInfo;

    /// Builds the filter from its TOML table (as JSON). An `Err` message rejects
    /// the configuration: `aigw check` and startup print it with the filter's name.
    ///
    /// ```
    /// # use aigw_plugin_sdk::*;
    /// struct Limit(u64);
    /// impl Filter for Limit {
    ///     fn describe() -> FilterInfo { FilterInfo::default() }
    ///     fn configure(c: serde_json::Value) -> Result<Self, String> {
    ///         c.get("limit").and_then(|v| v.as_u64()).map(Limit).ok_or("limit: expected a number".into())
    ///     }
    /// }
    /// assert!(Limit::configure(serde_json::json!({})).is_err());
    /// ```
    fn configure(config: serde_json::Value) -> Result<Self, String>;

    /// Called with the request head, in pipeline order.
    ///
    /// ```
    /// # use aigw_plugin_sdk::*;
    /// # struct F; impl Filter for F { fn describe() -> FilterInfo { FilterInfo::default() }
    /// # fn configure(_: serde_json::Value) -> Result<Self, String> { Ok(F) } }
    /// assert_eq!(F.on_request_headers(&Request::default()), Decision::proceed());
    /// ```
    fn on_request_headers(&mut self, _request: &Request) -> Decision {
        __hooks::default_reached(__hooks::REQUEST_HEADERS);
        Decision::proceed()
    }

    /// Called with the whole request body, after every request-headers hook.
    ///
    /// ```
    /// # use aigw_plugin_sdk::*;
    /// # struct F; impl Filter for F { fn describe() -> FilterInfo { FilterInfo::default() }
    /// # fn configure(_: serde_json::Value) -> Result<Self, String> { Ok(F) } }
    /// assert_eq!(F.on_request_body(b"{}"), BodyDecision::Continue);
    /// ```
    fn on_request_body(&mut self, _body: &[u8]) -> BodyDecision {
        __hooks::default_reached(__hooks::REQUEST_BODY);
        BodyDecision::Continue
    }

    /// Called with the response head, in reverse pipeline order. May ask for a retry.
    ///
    /// ```
    /// # use aigw_plugin_sdk::*;
    /// # struct F; impl Filter for F { fn describe() -> FilterInfo { FilterInfo::default() }
    /// # fn configure(_: serde_json::Value) -> Result<Self, String> { Ok(F) } }
    /// assert_eq!(F.on_response_headers(&Response::default()), ResponseDecision::proceed());
    /// ```
    fn on_response_headers(&mut self, _response: &Response) -> ResponseDecision {
        __hooks::default_reached(__hooks::RESPONSE_HEADERS);
        ResponseDecision::proceed()
    }

    /// Called per response chunk (streaming) or once with the whole body (buffered).
    ///
    /// ```
    /// # use aigw_plugin_sdk::*;
    /// # struct F; impl Filter for F { fn describe() -> FilterInfo { FilterInfo::default() }
    /// # fn configure(_: serde_json::Value) -> Result<Self, String> { Ok(F) } }
    /// assert_eq!(F.on_response_body(b"data: {}\n\n", false), ChunkDecision::Continue);
    /// ```
    fn on_response_body(&mut self, _chunk: &[u8], _end_of_stream: bool) -> ChunkDecision {
        __hooks::default_reached(__hooks::RESPONSE_BODY);
        ChunkDecision::Continue
    }

    /// Called once the request is over, with its summary.
    ///
    /// ```
    /// # use aigw_plugin_sdk::*;
    /// # struct F; impl Filter for F { fn describe() -> FilterInfo { FilterInfo::default() }
    /// # fn configure(_: serde_json::Value) -> Result<Self, String> { Ok(F) } }
    /// F.on_done(&Summary::default());
    /// ```
    fn on_done(&mut self, _summary: &Summary) {
        __hooks::default_reached(__hooks::DONE);
    }
}

/// Exports a [`Filter`] as the component's `aigw:filter/filter` interface.
/// Use it once, in the filter crate's `lib.rs` (crate type `cdylib`).
///
/// ```ignore
/// aigw_plugin_sdk::export_filter!(MyFilter);
/// ```
#[macro_export]
macro_rules! export_filter {
    ($ty:ty) => {
        // Exported only for wasm: native builds (unit tests) link no component exports.
        #[cfg(target_arch = "wasm32")]
        #[allow(unsafe_code)]
        const _: () = {
            struct AigwFilterExport;
            impl $crate::__private::Guest for AigwFilterExport {
                fn describe() -> $crate::__private::v2::FilterInfo {
                    $crate::glue::describe::<$ty>()
                }
                fn configure(config_json: String) -> Result<(), String> {
                    $crate::glue::configure::<$ty>(config_json)
                }
                fn on_request_headers(
                    request: $crate::__private::v2::RequestHead,
                    headers: &$crate::__private::v2::Fields,
                ) -> $crate::__private::v2::Decision {
                    $crate::glue::on_request_headers::<$ty>(request, headers)
                }
                fn on_request_body(
                    body: &$crate::__private::v2::Body,
                ) -> $crate::__private::v2::BodyDecision {
                    $crate::glue::on_request_body::<$ty>(body)
                }
                fn on_response_headers(
                    response: $crate::__private::v2::ResponseHead,
                    headers: &$crate::__private::v2::Fields,
                ) -> $crate::__private::v2::ResponseDecision {
                    $crate::glue::on_response_headers::<$ty>(response, headers)
                }
                fn on_response_body(
                    chunk: Vec<u8>,
                    end_of_stream: bool,
                ) -> $crate::__private::wit::ChunkDecision {
                    $crate::glue::on_response_body::<$ty>(chunk, end_of_stream)
                }
                fn on_done(
                    summary: $crate::__private::v2::Summary,
                    request_headers: &$crate::__private::v2::Fields,
                    response_headers: &$crate::__private::v2::Fields,
                ) {
                    $crate::glue::on_done::<$ty>(summary, request_headers, response_headers)
                }
            }
    $crate::__private::export!(AigwFilterExport with_types_in $crate::__private::bindings);
        };
    };
}

/// Which default hook bodies ran: lets `testing` tell a hook the filter overrides from
/// one it left at the default.
#[doc(hidden)]
pub mod __hooks {
    use std::cell::Cell;

    pub const REQUEST_HEADERS: u8 = 1;
    pub const REQUEST_BODY: u8 = 2;
    pub const RESPONSE_HEADERS: u8 = 4;
    pub const RESPONSE_BODY: u8 = 8;
    pub const DONE: u8 = 16;

    thread_local! {
        static REACHED: Cell<u8> = const { Cell::new(0) };
    }

    /// A default hook body ran.
    pub fn default_reached(bit: u8) {
        REACHED.with(|r| r.set(r.get() | bit));
    }

    /// Clears the record and returns what it held.
    pub fn take() -> u8 {
        REACHED.with(|r| r.replace(0))
    }
}

#[doc(hidden)]
pub mod __private {
    pub use crate::bindings;
    pub use crate::bindings::export;
    pub use crate::bindings::exports::aigw::filter0_2_0::filter::Guest;
    pub use crate::bindings::services::types as wit;
    pub use crate::bindings::v2;
    pub use wit_bindgen;
}
