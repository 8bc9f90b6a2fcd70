//! The run report: what goes into `--json-out`, and its Markdown rendering.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::run::{Load, RunOutput, Tick};
use crate::swap::SwapSummary;

/// Latency summary in µs. All zero when nothing was recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Percentiles {
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }

    fn non_empty(h: &Histogram<u64>) -> Option<Self> {
        (!h.is_empty()).then(|| Self::from_histogram(h))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Counts {
    pub total: u64,
    pub ok: u64,
    pub errors: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerSide {
    pub queue_time_us: Option<Percentiles>,
    pub inference_time_us: Option<Percentiles>,
    pub model_versions: BTreeMap<String, u64>,
    pub unparsed_timing_headers: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Errors {
    pub by_status: BTreeMap<String, u64>,
    pub by_kind: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub label: Option<String>,
    pub mode: &'static str,
    pub offered_rate: Option<f64>,
    pub connections: usize,
    pub measured_seconds: f64,
    pub requests: Counts,
    pub throughput_rps: f64,
    /// Successful requests; open loop: from the intended send time.
    pub latency_us: Percentiles,
    /// Open loop: from the actual send time (what a closed-loop tool would report).
    pub service_time_us: Option<Percentiles>,
    /// Open loop: how late the client sent; large values mean the client or pool is the limit.
    pub send_lag_us: Option<Percentiles>,
    pub server: ServerSide,
    pub errors: Errors,
    pub timeline: Vec<Tick>,
    pub swap: Option<SwapSummary>,
}

impl Report {
    pub fn new(
        label: Option<String>,
        load: Load,
        out: &RunOutput,
        swap: Option<SwapSummary>,
    ) -> Self {
        let s = &out.stats;
        let (mode, offered_rate, connections) = match load {
            Load::Open { rate, connections } => ("open", Some(rate), connections),
            Load::Closed { concurrency } => ("closed", None, concurrency),
        };
        let open = offered_rate.is_some();
        let secs = out.measured.as_secs_f64();
        Self {
            label,
            mode,
            offered_rate,
            connections,
            measured_seconds: secs,
            requests: Counts {
                total: s.total(),
                ok: s.ok,
                errors: s.errors(),
            },
            throughput_rps: if secs > 0.0 { s.ok as f64 / secs } else { 0.0 },
            latency_us: Percentiles::from_histogram(&s.latency),
            service_time_us: open.then(|| Percentiles::from_histogram(&s.service)),
            send_lag_us: open.then(|| Percentiles::from_histogram(&s.send_lag)),
            server: ServerSide {
                queue_time_us: Percentiles::non_empty(&s.queue_time),
                inference_time_us: Percentiles::non_empty(&s.inference_time),
                model_versions: s.model_versions.clone(),
                unparsed_timing_headers: s.bad_timing_headers,
            },
            errors: Errors {
                by_status: s
                    .by_status
                    .iter()
                    .map(|(k, v)| (k.to_string(), *v))
                    .collect(),
                by_kind: s
                    .by_kind
                    .iter()
                    .map(|(k, v)| (k.as_str().to_string(), *v))
                    .collect(),
            },
            timeline: out.timeline.clone(),
            swap,
        }
    }

    pub fn error_rate(&self) -> f64 {
        if self.requests.total == 0 {
            0.0
        } else {
            self.requests.errors as f64 / self.requests.total as f64
        }
    }

    /// What was offered: "rate 5000/s × 64 conns" or "concurrency 32".
    pub fn load_label(&self) -> String {
        match self.offered_rate {
            Some(r) => format!("{r:.0}/s × {} conns", self.connections),
            None => format!("concurrency {}", self.connections),
        }
    }
}

fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1e3)
}

pub const TABLE_HEADER: &str = "| load | throughput (req/s) | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | errors | server queue p99 ms | server inference p99 ms |\n|---|---|---|---|---|---|---|---|---|---|\n";

pub fn table_row(r: &Report) -> String {
    let server = |p: &Option<Percentiles>| p.map(|p| ms(p.p99)).unwrap_or_else(|| "—".into());
    let l = &r.latency_us;
    format!(
        "| {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
        r.load_label(),
        r.throughput_rps,
        ms(l.p50),
        ms(l.p90),
        ms(l.p99),
        ms(l.p999),
        ms(l.max),
        r.requests.errors,
        server(&r.server.queue_time_us),
        server(&r.server.inference_time_us),
    )
}

fn breakdown(map: &BTreeMap<String, u64>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn markdown(r: &Report) -> String {
    let mut md = String::new();
    let title = r.label.as_deref().unwrap_or("load test");
    let _ = writeln!(md, "## {title} ({} loop)\n", r.mode);
    md.push_str(TABLE_HEADER);
    md.push_str(&table_row(r));
    let _ = writeln!(
        md,
        "\n{} requests in {:.1} s measured: {} ok, {} errors.",
        r.requests.total, r.measured_seconds, r.requests.ok, r.requests.errors
    );
    if !r.errors.by_status.is_empty() {
        let _ = writeln!(md, "Errors by status: {}.", breakdown(&r.errors.by_status));
    }
    if !r.errors.by_kind.is_empty() {
        let _ = writeln!(md, "Errors by kind: {}.", breakdown(&r.errors.by_kind));
    }
    if let (Some(svc), Some(lag)) = (r.service_time_us, r.send_lag_us) {
        let _ = writeln!(
            md,
            "Service time (from actual send) p50/p99: {} / {} ms; client send lag p99: {} ms.",
            ms(svc.p50),
            ms(svc.p99),
            ms(lag.p99)
        );
    }
    if !r.server.model_versions.is_empty() {
        let _ = writeln!(
            md,
            "Responses by model version: {}.",
            breakdown(&r.server.model_versions)
        );
    }
    if let Some(s) = &r.swap {
        let _ = writeln!(
            md,
            "\n### Hot swaps: {} swaps, {} failed; window ±{:.0} ms\n",
            s.swaps.len(),
            s.failed_swaps,
            s.window_ms
        );
        md.push_str("| requests | count | errors | p50 ms | p99 ms | p99.9 ms | max ms |\n|---|---|---|---|---|---|---|\n");
        let phases = s
            .phases
            .iter()
            .map(|(name, w)| (format!("… {name} the admin request"), w));
        let rows = std::iter::once(("inside swap windows".to_string(), &s.inside))
            .chain(phases)
            .chain(std::iter::once(("outside".to_string(), &s.outside)));
        for (name, w) in rows {
            let l = &w.latency_us;
            let _ = writeln!(
                md,
                "| {name} | {} | {} | {} | {} | {} | {} |",
                w.requests,
                w.errors,
                ms(l.p50),
                ms(l.p99),
                ms(l.p999),
                ms(l.max)
            );
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Stats;
    use std::time::Duration;

    #[test]
    fn percentiles_follow_the_histogram() {
        let mut h = crate::stats::histogram();
        for v in 1..=1000u64 {
            h.record(v).unwrap();
        }
        let p = Percentiles::from_histogram(&h);
        assert_eq!(p.count, 1000);
        assert_eq!(p.p50, h.highest_equivalent(500));
        assert_eq!(p.p90, h.highest_equivalent(900));
        assert_eq!(p.p99, h.highest_equivalent(990));
        assert_eq!(p.p999, h.highest_equivalent(999));
        assert_eq!(p.max, h.highest_equivalent(1000));
        assert!((p.mean - 500.5).abs() < 1.0);
        assert!(p.p50 <= p.p90 && p.p90 <= p.p99 && p.p99 <= p.p999 && p.p999 <= p.max);
        assert_eq!(
            Percentiles::from_histogram(&crate::stats::histogram()),
            Percentiles::default()
        );
    }

    #[test]
    fn report_counts_throughput_and_errors() {
        let mut stats = Stats::new(false);
        let ok = crate::http::Response {
            status: 200,
            inference_time: Some("250us".into()),
            ..Default::default()
        };
        for _ in 0..30 {
            stats.record_response(&ok, Duration::from_millis(2), Duration::from_millis(1));
        }
        stats.record_response(
            &crate::http::Response {
                status: 429,
                ..Default::default()
            },
            Duration::ZERO,
            Duration::ZERO,
        );
        stats.record_error(crate::stats::ErrorKind::Connect);
        let out = RunOutput {
            stats,
            measured: Duration::from_secs(3),
            timeline: Vec::new(),
            swaps: Vec::new(),
        };
        let load = Load::Open {
            rate: 10.0,
            connections: 4,
        };
        let r = Report::new(Some("t".into()), load, &out, None);
        assert_eq!(
            (r.requests.total, r.requests.ok, r.requests.errors),
            (32, 30, 2)
        );
        assert!((r.throughput_rps - 10.0).abs() < 1e-9);
        assert!((r.error_rate() - 2.0 / 32.0).abs() < 1e-12);
        assert_eq!(r.errors.by_status["429"], 1);
        assert_eq!(r.errors.by_kind["connect"], 1);
        assert_eq!(r.server.inference_time_us.unwrap().p50, 250);
        assert!(r.server.queue_time_us.is_none());
        assert_eq!(r.service_time_us.unwrap().count, 30);

        let md = markdown(&r);
        assert!(md.contains("| 10/s × 4 conns | 10 | 2.000 |"), "{md}");
        assert!(md.contains("429: 1"));
        assert!(md.contains("connect: 1"));
        let json: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(json["requests"]["ok"], 30);
        assert_eq!(json["latency_us"]["p99"], r.latency_us.p99);
    }
}
