//! The listeners: the accept loop both share (HTTP/1.1 and h2 on one port, connection cap,
//! header timeout, graceful drain: [`listener`]), routing of `/v1/{account}/{gateway}/{provider}/…`
//! on the client listener, the admin API and dashboard, hot reload, and the current pipeline
//! generation. Built and started by [`crate::app`].

pub mod admin;
pub mod cfapi;
pub mod compat;
pub mod console;
pub mod dashboard;
pub mod endpoints;
pub mod listener;
pub mod reload;
pub mod route;

use crate::http::body::GatewayBody;
use crate::http::error::GatewayError;
use crate::pipeline::Generation;
use crate::pipeline::flow::{self, Env, Route};
use crate::runtime::Runtime;
use arc_swap::ArcSwap;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Hands the gateways' log limits (the `logging` tables) to the log store.
fn set_log_limits(runtime: &Runtime, generation: &Generation) {
    if let Some(logs) = &runtime.services.logs {
        logs.set_gateway_limits(crate::store::logs::limits_of(&generation.config));
    }
}

/// What every connection shares.
pub struct App {
    env: Env,
    admin_listen: Option<SocketAddr>,
    generation: ArcSwap<Generation>,
}

impl App {
    /// The shared state of a serving gateway, starting at `generation`.
    pub fn new(
        runtime: Arc<Runtime>,
        admin_listen: Option<SocketAddr>,
        generation: Generation,
        keys: Option<Arc<crate::control::ring::KeyRing>>,
    ) -> App {
        set_log_limits(&runtime, &generation);
        App {
            env: Env {
                runtime,
                client: crate::http::upstream::client(),
                keys,
            },
            admin_listen,
            generation: ArcSwap::from_pointee(generation),
        }
    }

    /// The virtual keys (absent without a log store).
    pub fn env_keys(&self) -> Option<Arc<crate::control::ring::KeyRing>> {
        self.env.keys.clone()
    }

    /// The generation new requests use.
    pub fn generation(&self) -> Arc<Generation> {
        self.generation.load_full()
    }

    /// Makes `generation` the one new requests use.
    pub fn swap(&self, generation: Generation) {
        set_log_limits(&self.env.runtime, &generation);
        self.generation.store(Arc::new(generation));
    }

    fn metrics_response(&self) -> Response<GatewayBody> {
        let s = &self.env.runtime.services;
        let logs = s.logs.as_ref().map(|l| &l.counters);
        let get = |c: Option<&std::sync::atomic::AtomicU64>| {
            c.map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
                .unwrap_or(0)
        };
        let extra = [
            (
                "aigw_log_entries_written_total",
                get(logs.map(|l| &l.written)),
            ),
            (
                "aigw_log_entries_dropped_total",
                get(logs.map(|l| &l.dropped)),
            ),
            ("aigw_log_write_errors_total", get(logs.map(|l| &l.errors))),
            (
                "aigw_log_entries_not_stored_full_total",
                get(logs.map(|l| &l.full)),
            ),
            (
                "aigw_log_entries_evicted_total",
                get(logs.map(|l| &l.evicted)),
            ),
            ("aigw_kv_bytes", s.kv.bytes() as u64),
            ("aigw_kv_entries", s.kv.len() as u64),
            (
                "aigw_kv_evictions_total",
                s.kv.evictions.load(std::sync::atomic::Ordering::Relaxed),
            ),
            ("aigw_generation", self.generation().id),
            (
                "aigw_otlp_spans_exported_total",
                get(s.otlp.as_ref().map(|o| &o.counters.exported)),
            ),
            (
                "aigw_otlp_spans_dropped_total",
                get(s.otlp.as_ref().map(|o| &o.counters.dropped)),
            ),
            (
                "aigw_store_commands_total",
                get(s.redis.as_ref().map(|r| &r.counters.ok)),
            ),
            (
                "aigw_store_errors_total",
                get(s.redis.as_ref().map(|r| &r.counters.errors)),
            ),
        ];
        let mut text = s.metrics.render_with(&extra);
        // The price catalog costs are computed from (label-safe: the version is config text).
        let version = self
            .generation()
            .config
            .prices
            .version()
            .replace(['"', '\\', '\n'], "_");
        text.push_str(&format!(
            "# TYPE aigw_price_catalog_info gauge\naigw_price_catalog_info{{version=\"{version}\"}} 1\n"
        ));
        Response::new(GatewayBody::full(text))
    }

    /// Routes one client request: health, metrics, the universal and compat endpoints, or a
    /// provider route.
    pub async fn route(&self, req: Request<Incoming>, peer: IpAddr) -> Response<GatewayBody> {
        let path = req.uri().path().to_string();
        if path == "/healthz" && req.method() == Method::GET {
            let mut r = Response::new(GatewayBody::full("ok\n"));
            *r.status_mut() = StatusCode::OK;
            return r;
        }
        // With an admin listener, metrics live there (behind its token).
        if path == "/metrics" && req.method() == Method::GET && self.admin_listen.is_none() {
            return self.metrics_response();
        }
        if req.method() == Method::POST
            && let Some((account, gateway)) = universal_path(&path)
        {
            let (parts, body) = req.into_parts();
            return endpoints::universal(
                &self.env,
                self.generation(),
                account,
                gateway,
                parts,
                body,
                peer,
            )
            .await;
        }
        let route = match parse_route(&path, req.uri().query()) {
            Ok(r) => r,
            Err(e) => return e.into_response(),
        };
        let (parts, body) = req.into_parts();
        if route.provider == "compat" {
            return compat::compat(&self.env, self.generation(), route, parts, body, peer).await;
        }
        flow::handle(
            &self.env,
            self.generation(),
            route,
            parts,
            flow::BodyIn::Stream(body),
            peer,
        )
        .await
    }
}

/// `/v1/{account}/{gateway}` (the universal endpoint), if that is the path.
fn universal_path(path: &str) -> Option<(String, String)> {
    route::universal(path).map(|(account, gateway)| (account.to_string(), gateway.to_string()))
}

/// Splits `/v1/{account}/{gateway}/{provider}/{rest…}` (see [`route`]).
pub fn parse_route(path: &str, query: Option<&str>) -> Result<Route, GatewayError> {
    let parts = route::split_route(path).map_err(|e| GatewayError::not_found(e.to_string()))?;
    Ok(Route {
        account: parts.account.to_string(),
        gateway: parts.gateway.to_string(),
        provider: parts.provider.to_string(),
        path: parts.path.to_string(),
        query: query.map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_split_into_parts() {
        let r = parse_route("/v1/acct/gw/openai/chat/completions", Some("x=1")).unwrap();
        assert_eq!(
            (r.account.as_str(), r.gateway.as_str(), r.provider.as_str()),
            ("acct", "gw", "openai")
        );
        assert_eq!(r.path, "/chat/completions");
        assert_eq!(r.query.as_deref(), Some("x=1"));
        assert_eq!(parse_route("/v1/a/g/p", None).unwrap().path, "");
        assert_eq!(
            parse_route("/nope", None).unwrap_err().status,
            StatusCode::NOT_FOUND
        );
        assert!(
            parse_route("/v1/a/g", None)
                .unwrap_err()
                .message
                .contains("universal")
        );
        assert_eq!(universal_path("/v1/a/g"), Some(("a".into(), "g".into())));
        assert_eq!(universal_path("/v1/a/g/"), Some(("a".into(), "g".into())));
        assert_eq!(universal_path("/v1/a/g/openai"), None);
    }
}
