//! End-to-end tests: the real `aigw` binary on port 0, against the mock
//! provider running in the test process.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::type_complexity
)]

mod harness;

mod accounting;
mod analytics;
mod bedrock;
mod budgets;
mod builtin_filters;
mod compat_embeddings;
mod compat_native;
mod console;
mod contract;
mod core;
mod custom_filters;
mod faults;
mod filter_failures;
mod filter_safety;
mod gemini_live;
mod guardrails;
mod hot_reload;
mod keys;
mod manage_api;
mod messages;
mod outbound_http;
mod providers;
mod realtime;
mod redaction;
mod sdk_source;
mod security;
mod stored_responses;
mod streams;
mod telemetry;
mod under_load;
