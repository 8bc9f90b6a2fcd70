//! Per-worker measurements (merged at the end, so the hot path takes no lock) and the live
//! counters behind the progress line.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Why a request produced no HTTP response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Connect,
    Timeout,
    Io,
    Protocol,
    /// Open loop only: due before the end but still waiting for a connection when the drain
    /// deadline passed — the client could not offer the rate.
    NotSent,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Io => "io",
            ErrorKind::Protocol => "protocol",
            ErrorKind::NotSent => "not_sent",
        }
    }
}

/// One measured request, kept only in the hot-swap scenario (to classify by swap window later).
#[derive(Debug, Clone, Copy)]
pub struct Record {
    /// Intended (open) or actual (closed) start, µs since the run began.
    pub start_us: u64,
    pub end_us: u64,
    pub ok: bool,
}

pub fn histogram() -> Histogram<u64> {
    // Auto-resizing, 3 significant digits: a worker that only ever sees sub-10 ms latencies keeps
    // a few tens of KB instead of the ~200 KB a histogram bounded at an hour would allocate.
    Histogram::new(3).expect("3 significant figures is a valid histogram precision")
}

/// Latencies above an hour are clamped: they only come from a broken clock or run.
const MAX_RECORDED_US: u64 = 3_600_000_000;

/// Records into an auto-resizing histogram (`saturating_record` would clamp to its current,
/// tiny range instead of growing it).
pub fn record_us(h: &mut Histogram<u64>, us: u64) {
    h.record(us.min(MAX_RECORDED_US))
        .expect("an hour in µs fits an auto-resizing histogram");
}

pub struct Stats {
    /// Successful requests (2xx), µs, from the intended send time in open loop.
    pub latency: Histogram<u64>,
    /// Successful requests, µs, from the moment the request was written.
    pub service: Histogram<u64>,
    /// Open loop: how late the client wrote each request after its intended time, µs.
    pub send_lag: Histogram<u64>,
    pub queue_time: Histogram<u64>,
    pub inference_time: Histogram<u64>,
    pub ok: u64,
    pub by_status: BTreeMap<u16, u64>,
    pub by_kind: BTreeMap<ErrorKind, u64>,
    pub model_versions: BTreeMap<String, u64>,
    /// Timing headers present but not in a recognised unit.
    pub bad_timing_headers: u64,
    pub records: Option<Vec<Record>>,
}

impl Stats {
    pub fn new(keep_records: bool) -> Self {
        Self {
            latency: histogram(),
            service: histogram(),
            send_lag: histogram(),
            queue_time: histogram(),
            inference_time: histogram(),
            ok: 0,
            by_status: BTreeMap::new(),
            by_kind: BTreeMap::new(),
            model_versions: BTreeMap::new(),
            bad_timing_headers: 0,
            records: keep_records.then(Vec::new),
        }
    }

    pub fn errors(&self) -> u64 {
        self.by_status.values().sum::<u64>() + self.by_kind.values().sum::<u64>()
    }

    pub fn total(&self) -> u64 {
        self.ok + self.errors()
    }

    pub fn record_response(
        &mut self,
        resp: &crate::http::Response,
        latency: Duration,
        service: Duration,
    ) -> bool {
        if let Some(v) = &resp.model_version {
            match self.model_versions.get_mut(v) {
                Some(c) => *c += 1,
                None => {
                    self.model_versions.insert(v.clone(), 1);
                }
            }
        }
        for (header, hist) in [
            (&resp.queue_time, &mut self.queue_time),
            (&resp.inference_time, &mut self.inference_time),
        ] {
            if let Some(h) = header {
                match parse_time_us(h) {
                    Some(us) => record_us(hist, us),
                    None => self.bad_timing_headers += 1,
                }
            }
        }
        let ok = (200..300).contains(&resp.status);
        if ok {
            self.ok += 1;
            record_us(&mut self.latency, micros(latency));
            record_us(&mut self.service, micros(service));
        } else {
            *self.by_status.entry(resp.status).or_default() += 1;
        }
        ok
    }

    pub fn record_error(&mut self, kind: ErrorKind) {
        *self.by_kind.entry(kind).or_default() += 1;
    }

    pub fn merge(&mut self, other: Stats) {
        for (a, b) in [
            (&mut self.latency, &other.latency),
            (&mut self.service, &other.service),
            (&mut self.send_lag, &other.send_lag),
            (&mut self.queue_time, &other.queue_time),
            (&mut self.inference_time, &other.inference_time),
        ] {
            a.add(b).expect("auto-resizing histograms accept any value");
        }
        self.ok += other.ok;
        for (k, v) in other.by_status {
            *self.by_status.entry(k).or_default() += v;
        }
        for (k, v) in other.by_kind {
            *self.by_kind.entry(k).or_default() += v;
        }
        for (k, v) in other.model_versions {
            *self.model_versions.entry(k).or_default() += v;
        }
        self.bad_timing_headers += other.bad_timing_headers;
        if let (Some(a), Some(b)) = (&mut self.records, other.records) {
            a.extend(b);
        }
    }
}

pub fn micros(d: Duration) -> u64 {
    d.as_micros().min(u64::MAX as u128) as u64
}

/// Parses a timing header into µs. `ns`, `us`/`µs`, `ms` and `s` suffixes are honoured. A bare
/// integer is µs (what the distilrec server sends); a bare decimal number is seconds (the
/// `Server-Timing`-like convention other servers use).
pub fn parse_time_us(value: &str) -> Option<u64> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return v.parse().ok();
    }
    let (number, scale) = if let Some(n) = v.strip_suffix("ns") {
        (n, 1e-3)
    } else if let Some(n) = v.strip_suffix("us").or_else(|| v.strip_suffix("µs")) {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1e6)
    } else {
        (v, 1e6)
    };
    let x: f64 = number.trim().parse().ok()?;
    (x.is_finite() && x >= 0.0).then(|| (x * scale).round() as u64)
}

/// Counters read by the progress line; workers bump them once per finished request.
#[derive(Default)]
pub struct Live {
    pub ok: AtomicU64,
    pub errors: AtomicU64,
    pub latency_sum_us: AtomicU64,
    pub latency_max_us: AtomicU64,
}

impl Live {
    pub fn add(&self, ok: bool, latency_us: u64) {
        if ok {
            self.ok.fetch_add(1, Ordering::Relaxed);
            self.latency_sum_us.fetch_add(latency_us, Ordering::Relaxed);
            self.latency_max_us.fetch_max(latency_us, Ordering::Relaxed);
        } else {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Response;

    #[test]
    fn parses_timing_headers_in_any_unit() {
        assert_eq!(parse_time_us("0.000125"), Some(125));
        assert_eq!(parse_time_us("125"), Some(125));
        assert_eq!(parse_time_us("2.0"), Some(2_000_000));
        assert_eq!(parse_time_us("125us"), Some(125));
        assert_eq!(parse_time_us("125µs"), Some(125));
        assert_eq!(parse_time_us(" 1.5ms "), Some(1500));
        assert_eq!(parse_time_us("2s"), Some(2_000_000));
        assert_eq!(parse_time_us("2500ns"), Some(3));
        assert_eq!(parse_time_us("12 ms"), Some(12_000));
        assert_eq!(parse_time_us("fast"), None);
        assert_eq!(parse_time_us("-1ms"), None);
        assert_eq!(parse_time_us(""), None);
    }

    #[test]
    fn records_and_merges_outcomes() {
        let ok = Response {
            status: 200,
            model_version: Some("2".into()),
            queue_time: Some("10us".into()),
            inference_time: Some("bogus".into()),
            close: false,
        };
        let busy = Response {
            status: 503,
            ..Response::default()
        };
        let ms = Duration::from_millis;
        let mut a = Stats::new(false);
        assert!(a.record_response(&ok, ms(3), ms(2)));
        assert!(!a.record_response(&busy, ms(1), ms(1)));
        let mut b = Stats::new(false);
        b.record_response(&ok, ms(5), ms(5));
        b.record_error(ErrorKind::Timeout);
        a.merge(b);
        assert_eq!((a.ok, a.errors(), a.total()), (2, 2, 4));
        assert_eq!(a.by_status[&503], 1);
        assert_eq!(a.by_kind[&ErrorKind::Timeout], 1);
        assert_eq!(a.model_versions["2"], 2);
        assert_eq!(a.bad_timing_headers, 2);
        assert_eq!(a.latency.len(), 2);
        assert_eq!(a.queue_time.len(), 2);
        assert_eq!(a.latency.max(), a.latency.highest_equivalent(5000));
    }
}
