//! The body type the gateway sends to clients: either bytes it already has,
//! or a channel fed by the request's response task (upstream bytes after the
//! response filters). An `Err` item aborts the stream so a client never
//! mistakes a broken upstream stream for a clean end.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// Error type of the client body.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// A client response body.
#[derive(Debug)]
pub enum GatewayBody {
    /// Whole body (or already sent).
    Full(Option<Bytes>),
    /// Chunks as the response task produces them.
    Channel(mpsc::Receiver<Result<Bytes, BodyError>>),
    /// Chunks as the response task produces them, counting those the connection has taken
    /// (so the task can tell what a client that left had been handed).
    Counted(
        mpsc::Receiver<Result<Bytes, BodyError>>,
        std::sync::Arc<std::sync::atomic::AtomicU64>,
    ),
}

impl GatewayBody {
    /// A body from bytes.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let b = bytes.into();
        if b.is_empty() {
            GatewayBody::Full(None)
        } else {
            GatewayBody::Full(Some(b))
        }
    }
}

impl Body for GatewayBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            GatewayBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            GatewayBody::Channel(rx) => match rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
            GatewayBody::Counted(rx, taken) => match rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(b))) => {
                    taken.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                    Poll::Ready(Some(Ok(Frame::data(b))))
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, GatewayBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            GatewayBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            GatewayBody::Full(None) => SizeHint::with_exact(0),
            GatewayBody::Channel(_) | GatewayBody::Counted(..) => SizeHint::default(),
        }
    }
}
