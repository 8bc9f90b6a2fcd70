//! Hot-swap scenario: load model versions through the admin API at a fixed interval, then compare
//! the requests in flight around each swap with the rest of the run.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::http::{Conn, Target};
use crate::report::Percentiles;
use crate::stats::{histogram, micros, record_us, Record};

/// Loading a big catalogue can take a while; a swap that takes longer than this is reported as
/// failed rather than hanging the run.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct SwapSpec {
    pub admin: Target,
    pub token: Option<String>,
    pub model: String,
    pub versions: Vec<u64>,
    pub every: Duration,
    pub window: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct SwapEvent {
    pub version: u64,
    /// µs since the run began (same clock as the request records).
    pub start_us: u64,
    pub end_us: u64,
    pub status: Option<u16>,
    pub error: Option<String>,
}

impl SwapEvent {
    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Runs swaps at `measure_start + k·every` until `end` or until `stop` flips.
pub async fn run_swaps(
    spec: SwapSpec,
    t0: Instant,
    measure_start: Instant,
    end: Option<Instant>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<SwapEvent> {
    let mut events = Vec::new();
    let path = format!("/admin/models/{}/load", spec.model);
    for k in 1u32.. {
        let at = measure_start + spec.every * k;
        if end.is_some_and(|end| at >= end) {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(at.into()) => {}
            _ = stop.changed() => break,
        }
        let version = spec.versions[(k as usize - 1) % spec.versions.len()];
        let body = serde_json::json!({ "version": version }).to_string();
        let request = spec
            .admin
            .post_json(&path, body.as_bytes(), spec.token.as_deref());
        let start = Instant::now();
        let result = tokio::time::timeout(ADMIN_TIMEOUT, async {
            let mut conn = Conn::connect(&spec.admin.addr())
                .await
                .map_err(|e| format!("connect: {e}"))?;
            conn.round_trip(&request).await.map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|_| Err("timeout".to_string()));
        let done = Instant::now();
        let (status, error) = match result {
            Ok(r) => (Some(r.status), None),
            Err(e) => (None, Some(e)),
        };
        if error.is_some() || !status.is_some_and(|s| (200..300).contains(&s)) {
            eprintln!("swap to version {version} failed: status {status:?} error {error:?}");
        }
        events.push(SwapEvent {
            version,
            start_us: micros(start.saturating_duration_since(t0)),
            end_us: micros(done.saturating_duration_since(t0)),
            status,
            error,
        });
    }
    events
}

/// `[start - window, end + window]` in µs for each swap.
pub fn windows(events: &[SwapEvent], window: Duration) -> Vec<(u64, u64)> {
    let w = micros(window);
    events
        .iter()
        .map(|e| (e.start_us.saturating_sub(w), e.end_us + w))
        .collect()
}

/// Where in a swap window a request ran: before the admin request was sent (the server does
/// nothing about the swap yet, so this is the window's own noise), while it ran (the load and
/// the swap), or after its answer (the new version serving, the old one being freed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Before,
    During,
    After,
}

impl Phase {
    pub const ALL: [Phase; 3] = [Phase::Before, Phase::During, Phase::After];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Before => "before",
            Phase::During => "during",
            Phase::After => "after",
        }
    }
}

/// The phase of the first swap window (`windows`, one per event) `record` overlaps: `None`
/// if it overlaps none (its lifetime is outside every window). `During` if it overlaps the
/// admin request itself, else `Before` or `After` by which side of it the request ran on.
pub fn phase(record: &Record, events: &[SwapEvent], windows: &[(u64, u64)]) -> Option<Phase> {
    events.iter().zip(windows).find_map(|(e, &(lo, hi))| {
        if record.start_us > hi || record.end_us < lo {
            None
        } else if record.start_us <= e.end_us && record.end_us >= e.start_us {
            Some(Phase::During)
        } else if record.end_us < e.start_us {
            Some(Phase::Before)
        } else {
            Some(Phase::After)
        }
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct WindowStats {
    pub requests: u64,
    pub errors: u64,
    pub latency_us: Percentiles,
}

#[derive(Debug, Clone, Serialize)]
pub struct SwapSummary {
    pub window_ms: f64,
    pub swaps: Vec<SwapEvent>,
    pub failed_swaps: usize,
    pub inside: WindowStats,
    /// `inside` split by [`Phase`], in the order of [`Phase::ALL`].
    pub phases: Vec<(String, WindowStats)>,
    pub outside: WindowStats,
}

/// Splits the measured requests into inside/outside swap windows. Also returns the two latency
/// histograms for the plot.
pub fn summarise(
    records: &[Record],
    events: Vec<SwapEvent>,
    window: Duration,
) -> (SwapSummary, Histogram<u64>, Histogram<u64>) {
    let wins = windows(&events, window);
    let (mut h_in, mut h_out) = (histogram(), histogram());
    let (mut n_in, mut n_out, mut e_in, mut e_out) = (0, 0, 0, 0);
    let mut by_phase = Phase::ALL.map(|_| (0u64, 0u64, histogram()));
    for r in records {
        let phase = phase(r, &events, &wins);
        let (n, e, h) = if phase.is_some() {
            (&mut n_in, &mut e_in, &mut h_in)
        } else {
            (&mut n_out, &mut e_out, &mut h_out)
        };
        *n += 1;
        let latency = r.end_us.saturating_sub(r.start_us);
        if r.ok {
            record_us(h, latency);
        } else {
            *e += 1;
        }
        if let Some(p) = phase {
            let (n, e, h) = &mut by_phase[p as usize];
            *n += 1;
            if r.ok {
                record_us(h, latency);
            } else {
                *e += 1;
            }
        }
    }
    let phases = Phase::ALL
        .iter()
        .zip(&by_phase)
        .map(|(p, (n, e, h))| {
            let stats = WindowStats {
                requests: *n,
                errors: *e,
                latency_us: Percentiles::from_histogram(h),
            };
            (p.name().to_string(), stats)
        })
        .collect();
    let summary = SwapSummary {
        window_ms: window.as_secs_f64() * 1e3,
        failed_swaps: events.iter().filter(|e| !e.succeeded()).count(),
        swaps: events,
        inside: WindowStats {
            requests: n_in,
            errors: e_in,
            latency_us: Percentiles::from_histogram(&h_in),
        },
        phases,
        outside: WindowStats {
            requests: n_out,
            errors: e_out,
            latency_us: Percentiles::from_histogram(&h_out),
        },
    };
    (summary, h_in, h_out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(start_us: u64, end_us: u64, status: u16) -> SwapEvent {
        SwapEvent {
            version: 1,
            start_us,
            end_us,
            status: Some(status),
            error: None,
        }
    }

    fn rec(start_us: u64, end_us: u64, ok: bool) -> Record {
        Record {
            start_us,
            end_us,
            ok,
        }
    }

    #[test]
    fn windows_pad_each_swap() {
        let w = windows(
            &[event(1_000_000, 1_050_000, 200), event(100, 200, 200)],
            Duration::from_millis(250),
        );
        assert_eq!(w, vec![(750_000, 1_300_000), (0, 250_200)]);
    }

    #[test]
    fn overlap_counts_requests_in_flight_during_a_window() {
        let e = [event(1400, 1600, 200)];
        let w = [(1000, 2000)];
        let inside = |start, end| phase(&rec(start, end, true), &e, &w).is_some();
        assert!(inside(900, 1000), "ends at the window start");
        assert!(inside(1500, 1600), "inside");
        assert!(inside(500, 5000), "spans the window");
        assert!(!inside(100, 999), "ends before");
        assert!(!inside(2001, 2100), "starts after");
    }

    #[test]
    fn summary_separates_inside_from_outside() {
        let records = [
            rec(0, 100, true),
            rec(10_000, 10_900, true),
            rec(10_100, 10_400, false),
            rec(50_000, 50_300, true),
        ];
        let events = vec![event(10_500, 10_600, 200), event(90_000, 90_010, 500)];
        let (s, h_in, h_out) = summarise(&records, events, Duration::from_micros(200));
        assert_eq!((s.inside.requests, s.inside.errors), (2, 1));
        assert_eq!((s.outside.requests, s.outside.errors), (2, 0));
        assert_eq!((h_in.len(), h_out.len()), (1, 2));
        assert_eq!(s.inside.latency_us.max, h_in.highest_equivalent(900));
        assert_eq!(s.failed_swaps, 1);
    }

    #[test]
    fn phases_split_the_window_around_the_admin_request() {
        let events = [event(10_000, 11_000, 200)];
        let wins = windows(&events, Duration::from_micros(500));
        let at = |start, end| phase(&rec(start, end, true), &events, &wins);
        assert_eq!(at(9_400, 9_600), Some(Phase::Before));
        assert_eq!(at(9_900, 10_100), Some(Phase::During), "overlaps the start");
        assert_eq!(at(10_900, 11_200), Some(Phase::During), "overlaps the end");
        assert_eq!(at(11_100, 11_300), Some(Phase::After));
        assert_eq!(at(8_000, 9_400), None);
        assert_eq!(at(11_600, 12_000), None);
        let (s, ..) = summarise(
            &[rec(9_400, 9_600, true), rec(11_100, 11_300, false)],
            events.to_vec(),
            Duration::from_micros(500),
        );
        let counts: Vec<_> = s
            .phases
            .iter()
            .map(|(n, w)| (n.as_str(), w.requests, w.errors))
            .collect();
        assert_eq!(
            counts,
            [("before", 1, 0), ("during", 0, 0), ("after", 1, 1)]
        );
    }
}
