//! Operating-system knobs used by more than one module.

use std::time::{SystemTime, UNIX_EPOCH};

/// Whole seconds from the Unix epoch to `t` (0 for a time before it): the timestamps of
/// manifests, run directories, load failures and load times.
pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Lowers the calling thread's CPU priority (nice 10 on Linux; a no-op elsewhere). Model loads
/// and index builds run this way so that they compete less with the inference threads and the
/// request path while a new version is prepared.
#[cfg(target_os = "linux")]
pub fn lower_this_threads_priority() {
    // On Linux, PRIO_PROCESS with a thread id renices only that thread.
    // SAFETY: plain syscalls on the calling thread's own id; no memory is shared.
    let rc = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10)
    };
    if rc != 0 {
        tracing::debug!("could not lower the priority of this thread");
    }
}

#[cfg(not(target_os = "linux"))]
pub fn lower_this_threads_priority() {}
