//! The checked parts of `[server]`: the admin listener and its token, the
//! missing-filter policy, the request and connection limits, and log
//! retention. `Config::parse` reads the client listener itself and fills in
//! the keys that are plain defaults; `price_catalog` is read in `prices`.

use super::raw::{RawRetention, RawServer};
use super::{ConfigError, OnMissingFilter, Source};
use std::net::SocketAddr;

/// Limits on what a client may send and how many may connect.
pub(super) struct Limits {
    pub max_body_bytes: usize,
    pub max_header_bytes: usize,
    pub max_connections: usize,
    pub header_read_timeout_ms: u64,
}

/// Reads `admin_listen` and `admin_token`; a listener off the loopback requires the token.
pub(super) fn read_admin(
    src: &Source,
    server: &RawServer,
) -> Result<(Option<SocketAddr>, Option<String>), ConfigError> {
    let admin_listen = match &server.admin_listen {
        Some(a) => Some(src.addr("server.admin_listen", a)?),
        None => None,
    };
    let admin_token = match &server.admin_token {
        None => None,
        Some(raw) => Some(src.secret("server.admin_token", raw)?.0),
    };
    if let Some(addr) = admin_listen
        && !addr.ip().is_loopback()
        && admin_token.is_none()
    {
        return Err(src.invalid(
            "server.admin_listen",
            format!(
                "{addr} is reachable from other machines: set server.admin_token, or listen on 127.0.0.1"
            ),
        ));
    }
    Ok((admin_listen, admin_token))
}

/// Reads `on_missing_filter`: `"error"` (the default) or `"skip"`.
pub(super) fn read_on_missing_filter(
    src: &Source,
    server: &RawServer,
) -> Result<OnMissingFilter, ConfigError> {
    match server.on_missing_filter.as_deref() {
        None | Some("error") => Ok(OnMissingFilter::Error),
        Some("skip") => Ok(OnMissingFilter::Skip),
        Some(other) => Err(src.invalid(
            "server.on_missing_filter",
            format!("expected \"error\" or \"skip\", got \"{other}\""),
        )),
    }
}

/// Reads the body, header and connection limits and the header-read timeout, with defaults.
pub(super) fn read_limits(src: &Source, server: &RawServer) -> Result<Limits, ConfigError> {
    let max_body_bytes = server.max_body_bytes.unwrap_or(25 * 1024 * 1024);
    if max_body_bytes == 0 {
        return Err(src.invalid("server.max_body_bytes", "must be greater than 0".into()));
    }
    let max_header_bytes = server.max_header_bytes.unwrap_or(64 * 1024);
    if !(8192..=16 << 20).contains(&max_header_bytes) {
        return Err(src.invalid(
            "server.max_header_bytes",
            format!("must be from 8192 to 16777216, got {max_header_bytes}"),
        ));
    }
    let max_connections = server.max_connections.unwrap_or(10_000);
    if max_connections == 0 {
        return Err(src.invalid("server.max_connections", "must be greater than 0".into()));
    }
    let header_read_timeout_ms = server.header_read_timeout_ms.unwrap_or(30_000);
    if header_read_timeout_ms == 0 {
        return Err(src.invalid(
            "server.header_read_timeout_ms",
            "must be greater than 0".into(),
        ));
    }
    Ok(Limits {
        max_body_bytes,
        max_header_bytes,
        max_connections,
        header_read_timeout_ms,
    })
}

/// Reads `[server.log_retention]`; each limit, when set, must be above 0.
pub(super) fn read_retention(
    src: &Source,
    retention: Option<RawRetention>,
) -> Result<RawRetention, ConfigError> {
    let retention = retention.unwrap_or_default();
    if retention.max_entries == Some(0) || retention.max_age_days == Some(0) {
        return Err(src.invalid(
            "server.log_retention",
            "max_entries and max_age_days must be greater than 0".into(),
        ));
    }
    Ok(retention)
}
