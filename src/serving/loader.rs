//! Loading one version off the request path: on its own thread at a lower CPU priority, under a
//! deadline, with a fingerprint of the version's files taken before they are read (so a failed
//! load is remembered against exactly the files it saw).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, OwnedSemaphorePermit};

use super::model::{load_version, LoadError, LoadSpec, LoadedModel};
use crate::engine::BuildProgress;

/// The right to run one model-load thread: held by the thread until it really ends, and
/// counted in `distilrec_model_load_threads` meanwhile.
pub struct LoadSlot {
    _permit: OwnedSemaphorePermit,
    running: prometheus::IntGauge,
}

impl LoadSlot {
    pub fn new(permit: OwnedSemaphorePermit, running: prometheus::IntGauge) -> Self {
        running.inc();
        LoadSlot {
            _permit: permit,
            running,
        }
    }
}

impl Drop for LoadSlot {
    fn drop(&mut self) {
        self.running.dec();
    }
}

/// One attempt at loading a version.
pub struct Attempt {
    pub result: Result<LoadedModel, LoadError>,
    /// The files' fingerprint before reading; `None` if even the stat did not finish in time.
    pub fingerprint: Option<u64>,
}

/// Loads the bundle in `dir` with [`load_version`] on a low-priority thread. A load stuck in a
/// read (hung NFS) or in an endless graph keeps its thread but not the caller: after `deadline`
/// without progress the attempt is a [`LoadError::Timeout`], and a panic is a
/// [`LoadError::Panic`]. Progress is rows added to an ANN graph (`spec.progress`): a build
/// that takes minutes of CPU is not stalled I/O, so each row it adds restarts the deadline. `slot` is
/// held by the thread itself until it really ends (Rust cannot stop a thread), so whoever
/// hands out slots knows that a timed-out load is still running.
pub async fn load_off_thread(
    dir: PathBuf,
    spec: LoadSpec,
    deadline: Duration,
    slot: LoadSlot,
) -> Attempt {
    let fingerprint_dir = dir.clone();
    let progress = Arc::clone(&spec.progress);
    let (print_tx, mut print_rx) = oneshot::channel::<u64>();
    let work = run_low_priority(move || {
        let _slot = slot;
        // Taken before reading so a write racing with the load changes it and gets a retry;
        // sent ahead of the load so a panic or a timeout is remembered against it too.
        let _ = print_tx.send(fingerprint(&fingerprint_dir));
        load_version(&dir, spec)
    });
    let result = match until_stalled(work, deadline, &progress).await {
        Some(Some(result)) => result,
        Some(None) => Err(LoadError::Panic),
        None => Err(LoadError::Timeout(deadline)),
    };
    // After a timeout the thread may still be stuck taking it (a hung stat): wait only briefly.
    let fingerprint = match print_rx.try_recv() {
        Ok(p) => Some(p),
        Err(_) => tokio::time::timeout(Duration::from_secs(1), print_rx)
            .await
            .ok()
            .and_then(Result::ok),
    };
    Attempt {
        result,
        fingerprint,
    }
}

/// How often a waiting load looks at its progress (and logs it while a graph is built).
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Awaits `work` until it finishes (`Some`) or `deadline` passes without `progress` moving
/// (`None`).
async fn until_stalled<T>(
    work: impl std::future::Future<Output = T>,
    deadline: Duration,
    progress: &BuildProgress,
) -> Option<T> {
    tokio::pin!(work);
    let mut seen = progress.get();
    let mut moved_at = tokio::time::Instant::now();
    let mut logged_at = tokio::time::Instant::now();
    loop {
        let left = deadline.saturating_sub(moved_at.elapsed());
        if left.is_zero() {
            return None;
        }
        if let Ok(done) = tokio::time::timeout(left.min(PROGRESS_EVERY), &mut work).await {
            return Some(done);
        }
        let now = progress.get();
        if now != seen {
            seen = now;
            moved_at = tokio::time::Instant::now();
            if logged_at.elapsed() >= Duration::from_secs(10) {
                logged_at = tokio::time::Instant::now();
                tracing::info!(rows_indexed = now.0, rows = now.1, "building the ANN graph");
            }
        }
    }
}

/// Size and mtime of a version directory and its files: changes when the bundle is rewritten,
/// which is when a refused version deserves another try.
pub fn fingerprint(dir: &Path) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let stamp = |p: &Path, h: &mut std::collections::hash_map::DefaultHasher| {
        if let Ok(m) = std::fs::metadata(p) {
            m.len().hash(h);
            m.modified().ok().hash(h);
        }
    };
    stamp(dir, &mut h);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    for f in &files {
        f.hash(&mut h);
        stamp(f, &mut h);
    }
    h.finish()
}

/// Runs a model load on its own thread at a lower CPU priority (nice 10 on Linux) and waits for
/// it without blocking an async worker. Parsing, optimising and warming a model is a burst of
/// CPU; at nice 0 it competes with the inference threads and the request path and shows up as a
/// latency spike while a version is swapped in (loadtest/bench.sh measures that window).
/// `None` if the load panicked.
async fn run_low_priority<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("model-load".into())
        .spawn(move || {
            crate::os::lower_this_threads_priority();
            // A panic drops `tx`, which the receiver reports as `None`.
            let done = work();
            crate::os::return_freed_memory();
            let _ = tx.send(done);
        });
    match spawned {
        Ok(_) => rx.await.ok(),
        Err(e) => {
            tracing::error!(error = %e, "cannot start a model-load thread");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    /// A build that keeps adding rows outlives the deadline many times over and still finishes;
    /// the clock is tokio's paused one, so this waits for events, not for wall time.
    #[tokio::test(start_paused = true)]
    async fn a_build_making_progress_is_not_cut_by_the_deadline() {
        let progress = BuildProgress::default();
        let work = async {
            for _ in 0..50 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                progress.done.fetch_add(1, Ordering::Relaxed);
            }
            7
        };
        let started = tokio::time::Instant::now();
        let out = until_stalled(work, Duration::from_millis(1500), &progress).await;
        assert_eq!(out, Some(7));
        assert!(
            started.elapsed() >= Duration::from_secs(10),
            "ran past the deadline"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_load_is_cut_at_the_deadline_after_its_last_progress() {
        let progress = BuildProgress::default();
        let work = async {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(500)).await;
                progress.done.fetch_add(1, Ordering::Relaxed);
            }
            std::future::pending::<()>().await
        };
        let started = tokio::time::Instant::now();
        let out = until_stalled(work, Duration::from_secs(3), &progress).await;
        assert_eq!(out, None);
        // Last progress at 2.5 s (seen by the 1 s check at 3 s), then 3 s without any.
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(5) && waited <= Duration::from_secs(7),
            "{waited:?}"
        );
    }

    #[test]
    fn fingerprint_changes_when_a_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("model.onnx"), b"abc").unwrap();
        let a = fingerprint(dir.path());
        assert_eq!(a, fingerprint(dir.path()));
        std::fs::write(dir.path().join("model.onnx"), b"abcd").unwrap();
        assert_ne!(a, fingerprint(dir.path()));
        let b = fingerprint(dir.path());
        std::fs::write(dir.path().join("items.tsv"), b"x").unwrap();
        assert_ne!(b, fingerprint(dir.path()));
    }
}
