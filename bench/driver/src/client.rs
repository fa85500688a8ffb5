//! One keep-alive HTTP/1.1 connection to a target and the two kinds of call
//! made on it: a whole JSON answer (latency to the last byte) and an SSE
//! stream (time to the first body byte, gaps between events). Loopback
//! addresses only: a target URL naming any other host is refused.

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where requests of one target go.
#[derive(Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    authority: String,
    path: String,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Endpoint {
    /// `url` is `http://HOST:PORT/PATH`; HOST must be a loopback address.
    pub fn parse(url: &str, headers: &[(String, String)]) -> Result<Arc<Endpoint>> {
        let uri: hyper::Uri = url.parse().with_context(|| format!("target url {url}"))?;
        if uri.scheme_str() != Some("http") {
            bail!("{url}: only http:// targets are measured");
        }
        let authority = uri
            .authority()
            .ok_or_else(|| anyhow!("{url}: no host"))?
            .to_string();
        let host = uri.host().unwrap_or_default();
        let port = uri.port_u16().unwrap_or(80);
        let addr = (host.trim_start_matches('[').trim_end_matches(']'), port)
            .to_socket_addrs()
            .with_context(|| format!("{url}: resolving {host}"))?
            .find(|a| is_loopback(a.ip()))
            .ok_or_else(|| {
                anyhow!("{url}: not a loopback address; the benchmark only sends to this machine")
            })?;
        let headers = headers
            .iter()
            .map(|(n, v)| {
                Ok((
                    HeaderName::from_bytes(n.as_bytes()).with_context(|| format!("header {n}"))?,
                    HeaderValue::from_str(v).with_context(|| format!("header {n} value"))?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        Ok(Arc::new(Endpoint {
            addr,
            authority,
            path,
            headers,
        }))
    }

    fn request(&self, body: Bytes) -> Result<Request<Full<Bytes>>> {
        let mut builder = Request::post(self.path.as_str())
            .header(hyper::header::HOST, self.authority.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json");
        for (n, v) in &self.headers {
            builder = builder.header(n, v);
        }
        Ok(builder.body(Full::new(body))?)
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    ip.is_loopback()
}

/// A keep-alive connection; reopened when the server closed it.
pub struct Conn {
    endpoint: Arc<Endpoint>,
    sender: Option<SendRequest<Full<Bytes>>>,
    /// Connections opened after the first (server closed keep-alive, errors).
    pub reconnects: u64,
}

impl Conn {
    pub async fn open(endpoint: Arc<Endpoint>) -> Result<Conn> {
        let mut c = Conn {
            endpoint,
            sender: None,
            reconnects: 0,
        };
        c.ensure().await?;
        c.reconnects = 0;
        Ok(c)
    }

    async fn ensure(&mut self) -> Result<&mut SendRequest<Full<Bytes>>> {
        let usable = match self.sender.as_mut() {
            Some(s) => !s.is_closed() && s.ready().await.is_ok(),
            None => false,
        };
        if !usable {
            let stream = tokio::net::TcpStream::connect(self.endpoint.addr)
                .await
                .with_context(|| format!("connect {}", self.endpoint.addr))?;
            stream.set_nodelay(true)?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .context("http/1.1 handshake")?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.sender = Some(sender);
            self.reconnects += 1;
        }
        self.sender.as_mut().ok_or_else(|| anyhow!("no connection"))
    }

    /// Sends one request; when the connection turns out closed before an
    /// answer, reopens it and sends again (once). Returns the response and
    /// the instant the (last) attempt was sent, so a reconnect is not timed.
    async fn send(&mut self, body: &Bytes) -> Result<(Response<hyper::body::Incoming>, Instant)> {
        let mut last_err = None;
        for _ in 0..2 {
            let req = self.endpoint.request(body.clone())?;
            let sender = self.ensure().await?;
            let start = Instant::now();
            match sender.send_request(req).await {
                Ok(resp) => return Ok((resp, start)),
                Err(e) => {
                    self.sender = None;
                    last_err = Some(e);
                }
            }
        }
        Err(anyhow!(
            "request failed: {}",
            last_err.map(|e| e.to_string()).unwrap_or_default()
        ))
    }
}

/// What one whole-body call gave.
#[derive(Debug, Clone, Copy)]
pub struct Answer {
    pub status: StatusCode,
    pub latency_us: f64,
    /// `cf-aig-cache-status: HIT` was in the answer.
    pub cache_hit: bool,
}

/// Sends `body`, reads the whole answer; bounded by `timeout`.
pub async fn call(conn: &mut Conn, body: &Bytes, timeout: Duration) -> Result<Answer> {
    tokio::time::timeout(timeout, async {
        let (resp, start) = conn.send(body).await?;
        let status = resp.status();
        let cache_hit = resp
            .headers()
            .get("cf-aig-cache-status")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"HIT"));
        let bytes = resp.into_body().collect().await?.to_bytes();
        let latency_us = start.elapsed().as_secs_f64() * 1e6;
        if bytes.is_empty() && status.is_success() {
            bail!("empty body");
        }
        Ok(Answer {
            status,
            latency_us,
            cache_hit,
        })
    })
    .await
    .map_err(|_| anyhow!("timed out after {timeout:?}"))?
}

/// What one streamed call gave.
#[derive(Debug, Clone)]
pub struct Stream {
    pub status: StatusCode,
    /// Request sent → first non-empty body frame.
    pub ttfb_us: f64,
    /// Request sent → end of stream.
    pub total_us: f64,
    /// Time between consecutive SSE events (an event is complete at its
    /// blank line); events that arrived in one read have a gap of 0.
    pub gaps_us: Vec<f64>,
    pub events: usize,
}

/// Sends a streaming request and times its events; bounded by `timeout`.
pub async fn call_stream(conn: &mut Conn, body: &Bytes, timeout: Duration) -> Result<Stream> {
    tokio::time::timeout(timeout, async {
        let (resp, start) = conn.send(body).await?;
        let status = resp.status();
        let mut body = resp.into_body();
        let mut ttfb = None;
        let mut last_event: Option<Instant> = None;
        let mut gaps = Vec::new();
        let mut events = 0usize;
        let mut ends = EventEnds::default();
        while let Some(frame) = body.frame().await {
            let frame = frame?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if data.is_empty() {
                continue;
            }
            let now = Instant::now();
            ttfb.get_or_insert_with(|| now.duration_since(start));
            for _ in 0..ends.feed(&data) {
                if let Some(prev) = last_event {
                    gaps.push(now.duration_since(prev).as_secs_f64() * 1e6);
                }
                last_event = Some(now);
                events += 1;
            }
        }
        let total_us = start.elapsed().as_secs_f64() * 1e6;
        let ttfb = ttfb.ok_or_else(|| anyhow!("stream without a body"))?;
        Ok(Stream {
            status,
            ttfb_us: ttfb.as_secs_f64() * 1e6,
            total_us,
            gaps_us: gaps,
            events,
        })
    })
    .await
    .map_err(|_| anyhow!("timed out after {timeout:?}"))?
}

/// Counts SSE event terminators (a blank line: `\n\n`, `\r` ignored)
/// across reads, so one split between two reads still counts once.
#[derive(Debug, Default)]
struct EventEnds {
    after_newline: bool,
}

impl EventEnds {
    fn feed(&mut self, data: &[u8]) -> usize {
        let mut n = 0;
        for b in data {
            match b {
                b'\r' => {}
                b'\n' if self.after_newline => {
                    n += 1;
                    self.after_newline = false;
                }
                b'\n' => self.after_newline = true,
                _ => self.after_newline = false,
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_non_loopback_targets() {
        assert!(Endpoint::parse("http://127.0.0.1:9/v1/x", &[]).is_ok());
        assert!(Endpoint::parse("http://localhost:9/v1/x", &[]).is_ok());
        assert!(Endpoint::parse("http://10.0.0.1:9/v1/x", &[]).is_err());
        assert!(Endpoint::parse("https://127.0.0.1:9/v1/x", &[]).is_err());
    }

    #[test]
    fn counts_sse_events_across_reads() {
        let mut e = EventEnds::default();
        assert_eq!(e.feed(b"data: a\n\ndata: b\n\n"), 2);
        assert_eq!(e.feed(b"data: c\r\n\r\n"), 1);
        assert_eq!(e.feed(b"data: d\n"), 0);
        assert_eq!(e.feed(b"\ndata: e\r\n"), 1);
        assert_eq!(e.feed(b"\r\n"), 1);
    }
}
