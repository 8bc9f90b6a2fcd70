//! Freeing swapped-out versions off the request path. A version leaves the registry when a
//! swap replaces it, but requests and queued batches may still hold it; whichever of them let
//! go last used to free it: the HTTP worker (in the swap itself, or at the end of a request) or
//! the inference thread (at the end of a batch). Freeing a version is freeing its item matrix,
//! index, plan and tables — hundreds of MB at 10^6 items — and on those threads it is a stall
//! that every request behind it waits out. Retired versions go to one thread instead, at the
//! lowered priority of model loads, which frees each once nobody else holds it.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::model::LoadedModel;

/// How often a retired version still held by a request is looked at again. Requests hold a
/// version for milliseconds; freeing it a few tens of ms late costs nothing.
const RECHECK_EVERY: Duration = Duration::from_millis(50);

/// Hands retired versions to the freeing thread, started on the first retirement.
pub struct Retirer<T: Send + Sync + 'static = LoadedModel> {
    /// `None` until the first retirement, and while the thread cannot be started (tried again
    /// at the next retirement).
    tx: Mutex<Option<Sender<Arc<T>>>>,
}

impl<T: Send + Sync + 'static> Default for Retirer<T> {
    fn default() -> Self {
        Retirer {
            tx: Mutex::new(None),
        }
    }
}

impl<T: Send + Sync + 'static> Retirer<T> {
    /// Takes the registry's reference to a version that is no longer live; the version is
    /// freed on the retiring thread once no request or batch holds it any more.
    pub fn retire(&self, model: Arc<T>) {
        let mut tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        if tx.is_none() {
            *tx = spawn();
        }
        match tx.as_ref() {
            // The thread only stops when its sender is gone, so a send fails only if it panicked.
            Some(sender) => {
                if let Err(mpsc::SendError(model)) = sender.send(model) {
                    *tx = None;
                    drop(model);
                }
            }
            // No thread: freed here or by the last request, as before.
            None => drop(model),
        }
    }
}

fn spawn<T: Send + Sync + 'static>() -> Option<Sender<Arc<T>>> {
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("model-retire".into())
        .spawn(move || {
            crate::os::lower_this_threads_priority();
            free_when_unused(&rx);
        });
    match spawned {
        Ok(_) => Some(tx),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the thread that frees retired model versions; they are freed on the request path");
            None
        }
    }
}

fn free_when_unused<T>(rx: &Receiver<Arc<T>>) {
    let mut held: Vec<Arc<T>> = Vec::new();
    loop {
        let next = if held.is_empty() {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(RECHECK_EVERY)
        };
        match next {
            Ok(model) => held.push(model),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) if held.is_empty() => return,
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(RECHECK_EVERY),
        }
        let before = held.len();
        // A retired version is out of the registry (and `ArcSwap::swap` has turned the
        // readers' borrowed loads into counted references), so no new reference to it can
        // appear: a count of 1 (ours) stays 1, and dropping it here frees it here.
        held.retain(|m| Arc::strong_count(m) > 1);
        if held.len() < before {
            // mimalloc returns freed pages to the OS lazily (a purge ~1 s later, run by
            // whichever thread next frees or allocates a page: often an inference thread);
            // forcing it here does that work on this thread.
            crate::os::return_freed_memory();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reports the name of the thread that drops it.
    struct Tracked(mpsc::Sender<Option<String>>);

    impl Drop for Tracked {
        fn drop(&mut self) {
            let _ = self
                .0
                .send(std::thread::current().name().map(str::to_string));
        }
    }

    #[test]
    fn a_retired_version_is_freed_on_the_retire_thread_once_its_last_holder_lets_go() {
        let retirer = Retirer::<Tracked>::default();
        let (tx, dropped) = mpsc::channel();
        let version = Arc::new(Tracked(tx));
        let request = Arc::clone(&version);
        retirer.retire(version);
        // A request still holds it; the retirer's reference keeps it alive too.
        assert_eq!(Arc::strong_count(&request), 2);
        assert!(dropped.try_recv().is_err());
        drop(request);
        let by = dropped
            .recv_timeout(Duration::from_secs(30))
            .expect("freed once the request let go");
        assert_eq!(by.as_deref(), Some("model-retire"));

        // Nobody else holds the next one: freed by the same thread, not by the caller.
        let (tx, dropped) = mpsc::channel();
        retirer.retire(Arc::new(Tracked(tx)));
        let by = dropped.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(by.as_deref(), Some("model-retire"));
    }
}
