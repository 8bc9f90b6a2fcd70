//! Open-loop schedule: request `n` is due at `n / rate` seconds after the start, whatever happened
//! to the requests before it. Latency is measured from that intended time (wrk2), so when the
//! server stalls, the requests that *should* have been sent during the stall carry the delay.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

/// Intended send time of request `n`, relative to the start of the run.
pub fn intended_offset(n: u64, rate: f64) -> Duration {
    Duration::from_secs_f64(n as f64 / rate)
}

/// Smallest `n` with `pred(intended_offset(n))` false, for a predicate that holds for small `n`.
/// Starts from the float estimate and corrects it, so it agrees exactly with `intended_offset`
/// (a bare `floor(t * rate)` is off by one when `n / rate * rate` rounds below `n`).
fn first_not(estimate: f64, rate: f64, pred: impl Fn(Duration) -> bool) -> u64 {
    let mut n = estimate.max(0.0) as u64;
    while n > 0 && !pred(intended_offset(n - 1, rate)) {
        n -= 1;
    }
    while pred(intended_offset(n, rate)) {
        n += 1;
    }
    n
}

/// How many requests are due by `elapsed` (request 0 is due at once).
pub fn due_by(elapsed: Duration, rate: f64) -> u64 {
    first_not(elapsed.as_secs_f64() * rate, rate, |t| t <= elapsed)
}

/// Number of requests whose intended time falls strictly before `span` — e.g. the warm-up length
/// gives the index of the first measured request.
pub fn count_before(span: Duration, rate: f64) -> u64 {
    first_not(span.as_secs_f64() * rate, rate, |t| t < span)
}

/// Requests to issue: `(first measured index, total)`. With `requests`, that many are measured
/// after the warm-up; otherwise every request due before warm-up + duration is sent.
pub fn plan(rate: f64, warmup: Duration, duration: Duration, requests: Option<u64>) -> (u64, u64) {
    let first_measured = count_before(warmup, rate);
    let total = match requests {
        Some(r) => first_measured + r,
        None => count_before(warmup + duration, rate),
    };
    (first_measured, total.max(first_measured))
}

/// Shortest pacer sleep. Waking once per request at tens of thousands per second would cost the
/// client a noticeable share of a core; releasing in ticks bounds wake-ups to 10k/s, and the
/// send lag it causes is reported (`send_lag_us`), not hidden.
const MIN_TICK: Duration = Duration::from_micros(100);

/// Releases one semaphore permit per request at its intended time, from a plain OS thread:
/// tokio's timer wheel has 1 ms resolution, which would add up to a millisecond of send lag.
/// After the last request it adds `wake_extra` permits so idle workers wake up and see the end.
pub fn spawn_pacer(
    t0: Instant,
    rate: f64,
    total: u64,
    wake_extra: usize,
    permits: Arc<Semaphore>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("pacer".into())
        .spawn(move || {
            let mut released = 0u64;
            while released < total && !stop.load(Ordering::Relaxed) {
                let now = Instant::now();
                let due = due_by(now.saturating_duration_since(t0), rate).min(total);
                if due > released {
                    permits.add_permits((due - released) as usize);
                    released = due;
                }
                if released == total {
                    break;
                }
                let next = t0 + intended_offset(released, rate);
                std::thread::sleep(next.saturating_duration_since(now).max(MIN_TICK));
            }
            permits.add_permits(wake_extra);
        })
        .expect("spawning the pacer thread")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intended_times_are_evenly_spaced() {
        assert_eq!(intended_offset(0, 1000.0), Duration::ZERO);
        assert_eq!(intended_offset(1, 1000.0), Duration::from_millis(1));
        assert_eq!(intended_offset(2500, 1000.0), Duration::from_millis(2500));
        assert_eq!(intended_offset(3, 4.0), Duration::from_millis(750));
        // Non-integer rates do not accumulate rounding error.
        let t = intended_offset(3_000_000, 3.0);
        assert_eq!(t, Duration::from_secs(1_000_000));
    }

    #[test]
    fn due_count_matches_intended_times() {
        let rate = 250.0;
        for n in 0..2000u64 {
            let at = intended_offset(n, rate);
            assert!(due_by(at, rate) > n, "request {n} not due at its own time");
            if n > 0 {
                let just_before = at - Duration::from_nanos(1);
                assert_eq!(due_by(just_before, rate), n, "request {n} due early");
            }
        }
    }

    #[test]
    fn plan_counts_warmup_and_measured_requests() {
        let s = Duration::from_secs;
        // 100/s: requests 0..199 during 2 s of warm-up, 200..1199 during 10 s measured.
        assert_eq!(plan(100.0, s(2), s(10), None), (200, 1200));
        assert_eq!(plan(100.0, s(2), s(10), Some(50)), (200, 250));
        assert_eq!(plan(100.0, Duration::ZERO, s(1), None), (0, 100));
        // Fractional: 1.5/s over 1 s → requests at 0 s and 0.667 s.
        assert_eq!(plan(1.5, Duration::ZERO, s(1), None), (0, 2));
    }

    #[test]
    fn pacer_releases_exactly_total_plus_wakeups() {
        let permits = Arc::new(Semaphore::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        // 20 requests at 10k/s: done in ~2 ms.
        spawn_pacer(Instant::now(), 10_000.0, 20, 3, permits.clone(), stop)
            .join()
            .unwrap();
        assert_eq!(permits.available_permits(), 23);
    }
}
