//! # aigw
//!
//! A self-hosted AI gateway. Clients call
//! `/v1/{account}/{gateway}/{provider}/{provider path}` instead of the
//! provider; every policy (cache, rate limit, retry, logging, your own) is a
//! WebAssembly component run at typed hook points.
//!
//! Table of contents:
//! - [`app`]: the composition root: services, `aigw serve`, `aigw check`.
//! - [`cli`]: command line.
//! - [`config`]: TOML → validated configuration.
//! - [`server`]: listeners, routing, admin API, dashboard, reload.
//! - [`pipeline`]: per-gateway filter pipelines and the request flow.
//! - [`runtime`]: wasmtime engine, filter loading, instances, host imports.
//! - [`providers`]: provider table, key headers, usage extraction.
//! - [`store`]: key-value store, rate-limit counters, log store.
//! - [`telemetry`]: metrics and tracing.
//! - [`mock`]: the offline mock provider.
//! - [`http`]: the ground floor: client body, gateway errors, upstream client, token comparison.

pub mod admin_client;
pub mod app;
pub mod cli;
pub mod config;
pub mod control;
pub mod http;
pub mod mock;
pub mod pipeline;
pub mod plugin_cmd;
pub mod providers;
pub mod runtime;
pub mod server;
pub mod store;
pub mod telemetry;
