//! What bounds a connection from below the HTTP layer: a client that sends requests and never
//! reads its answers fills the socket's send buffer, and every write then waits; such a
//! connection held its slot (and megabytes of kernel buffer) for as long as the client liked.
//!
//! - [`WriteDeadline`]: a write that makes no progress for the client timeout fails, and the
//!   connection is closed;
//! - [`Capped`]: after [`MAX_REQUESTS_PER_CONNECTION`] requests a connection's answer says
//!   `Connection: close`, so that no connection pipelines without end.

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Requests one connection may make before it is closed (as nginx's `keepalive_requests`,
/// lower: clients reconnect at no cost on loopback and little elsewhere).
pub const MAX_REQUESTS_PER_CONNECTION: usize = 256;

/// A stream whose writes fail once they have made no progress for `timeout`.
pub struct WriteDeadline<S> {
    inner: S,
    timeout: Duration,
    /// Armed while a write waits; cleared by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteDeadline<S> {
    pub fn new(inner: S, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            stalled: None,
        }
    }

    /// What a write's poll comes to: progress clears the deadline, waiting arms it, and a
    /// deadline passed is an error.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(result) => {
                self.stalled = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                let timeout = self.timeout;
                let deadline = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "the client took no part of the answer for {} s",
                            timeout.as_secs_f64()
                        ),
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A connection's service that counts its requests and closes the connection after
/// [`MAX_REQUESTS_PER_CONNECTION`].
pub struct Capped<S> {
    inner: S,
    served: Arc<AtomicUsize>,
}

impl<S> Capped<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            served: Arc::new(AtomicUsize::new(0)),
        }
    }
}

type Answer = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl<S> hyper::service::Service<Request<Incoming>> for Capped<S>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let served = self.served.fetch_add(1, Ordering::Relaxed) + 1;
        let answer = self.inner.call(request);
        Box::pin(async move {
            let mut response = answer.await?;
            if served >= MAX_REQUESTS_PER_CONNECTION {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer that never reads: writes fill the socket's buffers, then fail after the timeout
    /// instead of waiting for ever.
    #[tokio::test]
    async fn a_write_the_peer_never_takes_fails_after_the_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let _peer = tokio::net::TcpStream::connect(address).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let mut stream = WriteDeadline::new(stream, Duration::from_millis(200));
        let chunk = vec![0u8; 1 << 20];
        let mut written = 0usize;
        let error = loop {
            let write = std::future::poll_fn(|cx| Pin::new(&mut stream).poll_write(cx, &chunk));
            match write.await {
                Ok(n) => written += n,
                Err(e) => break e,
            }
            assert!(written < 1 << 30, "the writes never stalled");
        };
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(written > 0);
    }
}
