//! Graceful shutdown: on SIGTERM / ctrl-c, readiness turns false first, then the listeners stop
//! accepting and in-flight requests drain (bounded by `--drain-timeout-s`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

/// Resolves on the first SIGTERM or ctrl-c (SIGINT).
pub async fn signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("ctrl-c received"),
        _ = terminate => tracing::info!("SIGTERM received"),
    }
}

/// Waits for `trigger`, then marks the server as draining (readiness false) and cancels
/// `token`, which every listener uses as its graceful-shutdown signal.
pub async fn begin_on<F>(trigger: F, draining: Arc<AtomicBool>, token: CancellationToken)
where
    F: std::future::Future<Output = ()>,
{
    tokio::select! {
        _ = trigger => {}
        _ = token.cancelled() => {}
    }
    draining.store(true, Ordering::Release);
    tracing::info!("shutting down: readiness is false, draining in-flight requests");
    token.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readiness_turns_false_before_listeners_are_told() {
        let draining = Arc::new(AtomicBool::new(false));
        let token = CancellationToken::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(begin_on(
            async {
                let _ = rx.await;
            },
            Arc::clone(&draining),
            token.clone(),
        ));
        assert!(!draining.load(Ordering::Acquire));
        tx.send(()).unwrap();
        token.cancelled().await;
        assert!(draining.load(Ordering::Acquire));
        task.await.unwrap();
    }
}
