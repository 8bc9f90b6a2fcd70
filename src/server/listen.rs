//! Accepting connections: a cap on open connections, a header / idle keep-alive timeout, a
//! write-progress timeout ([`WriteDeadline`]) and graceful draining, built from hyper's HTTP/1 connection builder and hyper-util's
//! graceful-shutdown tracker (`axum::serve` has neither a timeout nor a cap: 20k half-open
//! connections were enough to exhaust the process's file descriptors).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use prometheus::IntGauge;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::write_deadline::WriteDeadline;

#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub max_connections: usize,
    /// Time to receive a complete request head; hyper restarts it whenever a keep-alive
    /// connection waits for its next request, so it is the idle timeout too.
    pub header_timeout: Duration,
    /// Longest a response write may stay blocked (a client that stopped reading) before the
    /// connection is closed.
    pub write_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then stops accepting and waits for
/// the open connections to finish their in-flight requests (idle ones close at once).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    open: IntGauge,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    loop {
        // At the cap, stop accepting: new clients wait in the kernel's backlog rather than
        // costing a file descriptor each.
        let permit = tokio::select! {
            p = Arc::clone(&permits).acquire_owned() => {
                p.expect("the connection semaphore is never closed")
            }
            _ = shutdown.cancelled() => break,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE / ENFILE / ECONNABORTED: back off instead of spinning on the error.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let conn = graceful.watch(builder.serve_connection(
            TokioIo::new(WriteDeadline::new(stream, limits.write_timeout)),
            service,
        ));
        let open = open.clone();
        open.inc();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            open.dec();
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
