//! The HTTP/1.1 server loop: hyper's connection builder with the limits `axum::serve` doesn't
//! expose, so that a slow, idle or oversized client costs bounded time and memory.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// What one client may cost.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// From when a connection is ready for a request (just opened, or idle after an answer)
    /// until that request's whole header has arrived; then the connection is closed. So also
    /// how long an idle keep-alive connection is kept.
    pub header_read_timeout: Duration,
    /// Most bytes of a request line and its headers; beyond it 431 and the connection closes.
    pub max_header_bytes: usize,
    /// Most connections open at once; beyond it new ones wait in the kernel's queue.
    pub max_connections: usize,
}

/// The smallest header limit hyper accepts.
pub const MIN_HEADER_BYTES: usize = 8192;

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting and waits for
/// the connections open to finish their requests.
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
        let _ = tcp.set_nodelay(true);
        let service = app
            .clone()
            .map_request(move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request.map(Body::new)
            });
        let connection =
            http.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The next connection, once one more may be open. An accept error (out of file descriptors,
/// say) is logged and waited out briefly rather than retried at once.
async fn accept(
    listener: &TcpListener,
    open: &Arc<Semaphore>,
) -> Option<(
    tokio::net::TcpStream,
    SocketAddr,
    tokio::sync::OwnedSemaphorePermit,
)> {
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
