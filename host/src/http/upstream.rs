//! The pooled upstream client: hyper-util's client over rustls (webpki roots,
//! no OpenSSL), HTTP/1.1 and HTTP/2 by ALPN, plain HTTP for local providers.

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// The client type.
pub type UpstreamClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Builds the pooled client.
pub fn client() -> UpstreamClient {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(connector());
    pooled(https)
}

/// A client that also trusts the PEM certificates in `ca_file` (for
/// self-signed or private upstreams).
pub fn client_trusting(ca_file: &std::path::Path) -> Result<UpstreamClient, String> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_trusting(Some(ca_file))?)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(connector());
    Ok(pooled(https))
}

/// A client for WebSocket handshakes: HTTP/1.1 only (an upgrade cannot ride HTTP/2), also
/// trusting `ca_file` when given.
pub fn socket_client(ca_file: Option<&std::path::Path>) -> Result<UpstreamClient, String> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_trusting(ca_file)?)
        .https_or_http()
        .enable_http1()
        .wrap_connector(connector());
    Ok(pooled(https))
}

/// TLS trusting the web's roots and the PEM certificates in `ca_file`, if any.
fn tls_trusting(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let Some(ca_file) = ca_file else {
        return Ok(rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth());
    };
    let certs = CertificateDer::pem_file_iter(ca_file)
        .map_err(|e| format!("{}: {e}", ca_file.display()))?;
    let mut added = 0;
    for cert in certs {
        let cert = cert.map_err(|e| format!("{}: {e}", ca_file.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", ca_file.display()))?;
        added += 1;
    }
    if added == 0 {
        return Err(format!("{}: no PEM certificate found", ca_file.display()));
    }
    Ok(rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn pooled(https: hyper_rustls::HttpsConnector<HttpConnector>) -> UpstreamClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .build(https)
}

fn connector() -> HttpConnector {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    http
}
