//! Operating-system knobs used by more than one module, and the byte-size syntax of every
//! memory flag (the server's caps, `distill --max-memory`).

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

/// Returns the free pages of this thread's allocator heap to the OS. mimalloc (the server's
/// allocator) keeps pages freed on a thread for that thread's next allocations and purges them
/// only as that thread goes on allocating; a model-load thread frees hundreds of MB of
/// transient buffers (file bytes, decoded copies) and then exits, so without this they stay
/// resident. A no-op for memory of any other allocator.
pub fn return_freed_memory() {
    // SAFETY: `mi_collect` takes no pointers; it only walks mimalloc's own heap of this thread.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// A byte count with an optional binary suffix: `1048576`, `512K`, `64M`, `8G`, `1T`, `8GiB`,
/// `1.5k`. No space before the suffix and no bare `B` (`64 MB` is refused), no negatives, no
/// overflow.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(end);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a byte count (e.g. 1048576, 512K, 64M, 8G)"))?;
    let shift = match suffix {
        "" => 0,
        "K" | "k" | "KiB" => 10,
        "M" | "m" | "MiB" => 20,
        "G" | "g" | "GiB" => 30,
        "T" | "t" | "TiB" => 40,
        other => return Err(format!("unknown size suffix `{other}` (K, M, G or T)")),
    };
    let bytes = number * (1u64 << shift) as f64;
    if !(bytes.is_finite() && bytes < u64::MAX as f64) {
        return Err(format!("`{s}` is too large"));
    }
    Ok(bytes as u64)
}
