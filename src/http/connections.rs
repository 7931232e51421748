//! The HTTP/1.1 server loop: hyper's connection builder with the limits `axum::serve` doesn't
//! expose, so that a slow, idle, oversized or greedy client costs bounded time and memory.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt;

use super::AppError;
use super::shares::Shares;
use crate::config::{ConnectionLimits, MIN_HEADER_BYTES};
use crate::telemetry;

/// The kernel's buffers of one connection, each way: pipelined requests wait in the receive
/// buffer and answers a client has not read yet in the send buffer, so these bound what a
/// client that sends without reading can queue (hyper answers one request at a time, and
/// takes the next answer only once the last is in the send buffer). The largest answer, the
/// OpenAPI document, fits a few times over.
const SOCKET_BUFFER_BYTES: usize = 256 * 1024;

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting and waits for
/// the connections open to finish their requests, at most `limits.shutdown_timeout`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(MIN_HEADER_BYTES));
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let per_ip = Shares::new(
        limits.max_connections_per_ip,
        limits.trusted_proxies.clone(),
    );
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = accept(&listener, &open) => accepted,
        };
        let Some((tcp, peer, permit)) = accepted else {
            continue;
        };
        let io = TokioIo::new(bounded(tcp, &limits));
        let Some(share) = per_ip.take(peer.ip()) else {
            closed(CLOSED_OVER_ADDRESS_CAP, 1);
            tokio::spawn(refuse(http.clone(), io, permit));
            continue;
        };
        let service = app
            .clone()
            .map_request(move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request.map(Body::new)
            });
        let connection = http.serve_connection(io, TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
            drop(share);
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        // The tasks still serving are dropped with the runtime, closing their connections.
        let still_open = limits.max_connections - open.available_permits();
        closed(CLOSED_AT_SHUTDOWN, still_open as u64);
        tracing::warn!(
            timeout = ?limits.shutdown_timeout,
            "connections still open at the shutdown deadline are closed"
        );
    }
}

/// Why the server closed connections, for `boxoffice_http_connections_closed_total`.
const CLOSED_OVER_ADDRESS_CAP: &str = "address_cap";
const CLOSED_STALLED: &str = "response_stalled";
const CLOSED_AT_SHUTDOWN: &str = "shutdown_deadline";

fn closed(reason: &'static str, connections: u64) {
    metrics::counter!(telemetry::HTTP_CONNECTIONS_CLOSED, "reason" => reason)
        .increment(connections);
}

/// An accepted connection with its limits: no delay on small writes, its kernel buffers
/// bounded, answers no one takes closed in time, and hyper's own refusals in JSON.
fn bounded(tcp: TcpStream, limits: &ConnectionLimits) -> JsonErrors<Stalling> {
    let _ = tcp.set_nodelay(true);
    let socket = socket2::SockRef::from(&tcp);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES);
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
    JsonErrors::new(Stalling::new(tcp, limits.response_write_timeout))
}

/// Answers a connection past its address's share: one 503 `too_many_connections`, then
/// closed.
async fn refuse(
    mut http: hyper::server::conn::http1::Builder,
    io: TokioIo<JsonErrors<Stalling>>,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let refusal = hyper::service::service_fn(|_| async {
        Ok::<_, std::convert::Infallible>(AppError::TooManyConnections.into_response())
    });
    let _ = http.keep_alive(false).serve_connection(io, refusal).await;
    drop(permit);
}

/// The next connection, once one more may be open. An accept error (out of file descriptors,
/// say) is logged and waited out briefly rather than retried at once.
async fn accept(
    listener: &TcpListener,
    open: &Arc<Semaphore>,
) -> Option<(TcpStream, SocketAddr, tokio::sync::OwnedSemaphorePermit)> {
    let permit = Arc::clone(open)
        .acquire_owned()
        .await
        .expect("the semaphore is never closed");
    match listener.accept().await {
        Ok((tcp, peer)) => Some((tcp, peer, permit)),
        Err(error) => {
            tracing::warn!(%error, "cannot accept a connection");
            tokio::time::sleep(Duration::from_millis(100)).await;
            None
        }
    }
}

/// A connection whose writes fail once the client has taken no bytes for `timeout`: hyper
/// then closes it. The clock runs only while a write waits, so a quiet event stream or an
/// idle keep-alive connection is not cut by it.
struct Stalling {
    tcp: TcpStream,
    timeout: Duration,
    /// Armed when a write first waits; disarmed by any progress.
    deadline: Pin<Box<tokio::time::Sleep>>,
    armed: bool,
    /// Counted once, however often hyper writes to it afterwards.
    expired: bool,
}

impl Stalling {
    fn new(tcp: TcpStream, timeout: Duration) -> Self {
        Self {
            tcp,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            armed: false,
            expired: false,
        }
    }

    /// What a write that came back `outcome` means, with the clock.
    fn progress<T>(
        &mut self,
        cx: &mut Context<'_>,
        outcome: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match outcome {
            Poll::Ready(result) => {
                self.armed = false;
                Poll::Ready(result)
            }
            Poll::Pending => {
                if !self.armed {
                    self.armed = true;
                    let at = tokio::time::Instant::now() + self.timeout;
                    self.deadline.as_mut().reset(at);
                }
                ready!(self.deadline.as_mut().poll(cx));
                if !self.expired {
                    self.expired = true;
                    closed(CLOSED_STALLED, 1);
                }
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client took none of its answer in time",
                )))
            }
        }
    }
}

impl AsyncRead for Stalling {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stalling {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let outcome = Pin::new(&mut self.tcp).poll_write(cx, buf);
        self.progress(cx, outcome)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let outcome = Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs);
        self.progress(cx, outcome)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let outcome = Pin::new(&mut self.tcp).poll_flush(cx);
        self.progress(cx, outcome)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let outcome = Pin::new(&mut self.tcp).poll_shutdown(cx);
        self.progress(cx, outcome)
    }
}

/// hyper answers a request it cannot parse (two different `Content-Length`s, a malformed
/// header, a header over the limit) itself, with a status and an empty body, before any
/// router sees it. This gives such an answer the JSON error body every other one has: a head
/// of a 4xx with `content-length: 0` and no type can only be hyper's (the router's 4xx all
/// carry JSON), and is written as the same status with `AppError::Other`'s body instead.
struct JsonErrors<T> {
    io: T,
    /// The answer written in place of hyper's, and how much of it is out.
    pending: Option<(Vec<u8>, usize)>,
}

impl<T: AsyncWrite + Unpin> JsonErrors<T> {
    fn new(io: T) -> Self {
        Self { io, pending: None }
    }

    /// The JSON answer for `head`, if it is a bodiless 4xx of hyper's own.
    fn replacement(head: &[u8]) -> Option<Vec<u8>> {
        if !head.starts_with(b"HTTP/1.1 4") || !head.ends_with(b"\r\n\r\n") {
            return None;
        }
        let lower = head.to_ascii_lowercase();
        let has = |needle: &[u8]| lower.windows(needle.len()).any(|w| w == needle);
        if !has(b"\r\ncontent-length: 0\r\n") || has(b"\r\ncontent-type:") {
            return None;
        }
        let status = std::str::from_utf8(head.get(9..12)?).ok()?.parse().ok()?;
        let status = axum::http::StatusCode::from_u16(status).ok()?;
        let (_, body) = AppError::Other(status).json();
        let body = body.to_string();
        let line = head.split(|&b| b == b'\r').next()?;
        let mut answer = line.to_vec();
        answer.extend_from_slice(
            format!(
                "\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        Some(answer)
    }

    /// Writes out what is left of a replacement answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((answer, written)) = &mut self.pending {
            if *written == answer.len() {
                self.pending = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &answer[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }

    /// Takes `head` in, answering with the replacement instead, if it has one.
    fn replaced(&mut self, head: &[u8]) -> bool {
        match Self::replacement(head) {
            Some(answer) => {
                self.pending = Some((answer, 0));
                true
            }
            None => false,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonErrors<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonErrors<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if self.replaced(buf) {
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if let [head] = bufs
            && self.replaced(head)
        {
            return Poll::Ready(Ok(head.len()));
        }
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
