//! Every Prometheus metric the server exports, registered in one place (the HTTP layer, the
//! registry and the batcher record into it; `GET /metrics` renders it).
//!
//! The registry belongs to the app state (not the process-global default registry) so several
//! servers in one test process do not collide. Labels are low-cardinality: route *templates*,
//! model names, versions, status codes — never raw paths, item or user ids.

use prometheus::{
    exponential_buckets, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

const PREFIX: &str = "distilrec";

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `route` (template), `method`, `status`.
    pub http_requests: IntCounterVec,
    /// `route`, `method`.
    pub http_duration: HistogramVec,
    /// `model`: time from enqueue to the start of the model call.
    pub queue_duration: HistogramVec,
    /// `model`: one observation per model call (batch).
    pub inference_duration: HistogramVec,
    /// `model`: requests per model call.
    pub batch_size: HistogramVec,
    /// `model`: requests admitted and not yet taken into a batch.
    pub queue_depth: IntGaugeVec,
    /// `model`, `result` (`ok` or a failure kind).
    pub model_load: IntCounterVec,
    /// `model`, `version`: 1 for the live version; the old label set is removed on swap.
    pub model_live: IntGaugeVec,
    /// `model`: versions held in memory (live + ones still used by in-flight requests).
    pub model_instances: IntGaugeVec,
    /// `model`: read + check + load + warm-up of one version, successful or not.
    pub reload_duration: HistogramVec,
    /// `model`: history / exclude ids not in the model's vocabulary.
    pub unknown_items: IntCounterVec,
    /// `model`: requests dropped before inference because the client had gone.
    pub cancelled: IntCounterVec,
    /// `listener` (`public` / `admin`): open connections.
    pub connections: IntGaugeVec,
    /// No labels: scans of the model repository (or of one model's directory) that failed.
    pub repository_scan_errors: IntCounterVec,
    /// `scope` (`repository`: one per poll round; `model`: one model's directory): scans,
    /// successful or not. Shows that API reads do not touch the disk, and lets tests wait for
    /// poll rounds instead of sleeping.
    pub repository_scans: IntCounterVec,
    /// No labels: model-load threads running, including loads past their deadline.
    pub load_threads: prometheus::IntGauge,
    /// `model`: requests of a failed batch that failed again when retried alone.
    pub inference_errors: IntCounterVec,
}

impl Metrics {
    /// Registers every metric. Long because it is the list itself: one definition per metric
    /// (name, help, labels, buckets) through three small helpers, kept in one function so the
    /// whole set reads in one place (the point of this module); splitting it would scatter it.
    pub fn new() -> Self {
        let registry = Registry::new();
        // 10 µs .. ~5 s: a tract call on a small catalogue is tens of µs.
        let latency = exponential_buckets(10e-6, 2.0, 20).expect("static bucket spec is valid");
        let reload = exponential_buckets(1e-3, 2.0, 16).expect("static bucket spec is valid");
        let batch: Vec<f64> = [1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 128, 256]
            .into_iter()
            .map(f64::from)
            .collect();

        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help).namespace(PREFIX), labels)
                .expect("metric definition is valid");
            registry
                .register(Box::new(c.clone()))
                .expect("each metric is registered once");
            c
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help).namespace(PREFIX), labels)
                .expect("metric definition is valid");
            registry
                .register(Box::new(g.clone()))
                .expect("each metric is registered once");
            g
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help)
                    .namespace(PREFIX)
                    .buckets(buckets.to_vec()),
                labels,
            )
            .expect("metric definition is valid");
            registry
                .register(Box::new(h.clone()))
                .expect("each metric is registered once");
            h
        };

        Metrics {
            http_requests: counter(
                "http_requests_total",
                "HTTP requests by route template, method and status code.",
                &["route", "method", "status"],
            ),
            http_duration: histogram(
                "http_request_duration_seconds",
                "Time from receiving a request to producing its response.",
                &["route", "method"],
                &latency,
            ),
            queue_duration: histogram(
                "queue_duration_seconds",
                "Time a recommend request waited in the batch queue.",
                &["model"],
                &latency,
            ),
            inference_duration: histogram(
                "inference_duration_seconds",
                "Duration of one model call (a whole batch) including top-k selection.",
                &["model"],
                &latency,
            ),
            batch_size: histogram(
                "batch_size",
                "Requests scored together in one model call.",
                &["model"],
                &batch,
            ),
            queue_depth: gauge(
                "queue_depth",
                "Recommend requests admitted and waiting for a batch.",
                &["model"],
            ),
            model_load: counter(
                "model_load_total",
                "Attempts to load a model version, by result (ok or the failure kind).",
                &["model", "result"],
            ),
            model_live: gauge(
                "model_live_info",
                "The live version of each model (value is always 1).",
                &["model", "version"],
            ),
            model_instances: gauge(
                "model_instances",
                "Model versions held in memory: the live one plus any still used by requests.",
                &["model"],
            ),
            reload_duration: histogram(
                "model_reload_duration_seconds",
                "Time to read, check, load and warm up a model version.",
                &["model"],
                &reload,
            ),
            unknown_items: counter(
                "unknown_items_total",
                "Item ids in requests that are not in the model's vocabulary (skipped).",
                &["model"],
            ),
            cancelled: counter(
                "cancelled_requests_total",
                "Recommend requests dropped before inference because the client had gone.",
                &["model"],
            ),
            connections: gauge(
                "open_connections",
                "Open HTTP connections per listener.",
                &["listener"],
            ),
            repository_scan_errors: counter(
                "repository_scan_errors_total",
                "Scans of the model repository or a model directory that failed (see the logs).",
                &[],
            ),
            repository_scans: counter(
                "repository_scans_total",
                "Scans of the model repository (scope=repository, one per poll round) or of a model directory (scope=model).",
                &["scope"],
            ),
            load_threads: {
                let g = prometheus::IntGauge::with_opts(
                    Opts::new(
                        "model_load_threads",
                        "Model-load threads running, including loads past --load-timeout-ms.",
                    )
                    .namespace(PREFIX),
                )
                .expect("metric definition is valid");
                registry
                    .register(Box::new(g.clone()))
                    .expect("each metric is registered once");
                g
            },
            inference_errors: counter(
                "inference_errors_total",
                "Recommend requests whose model call failed (after retrying a failed batch one by one).",
                &["model"],
            ),
            registry,
        }
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .expect("text encoding of gathered metrics cannot fail")
    }

    /// Marks `version` as the live one of `model`, removing the label set of `previous`.
    pub fn set_live(&self, model: &str, previous: Option<u64>, version: u64) {
        if let Some(p) = previous {
            let _ = self
                .model_live
                .remove_label_values(&[model, &p.to_string()]);
        }
        self.model_live
            .with_label_values(&[model, &version.to_string()])
            .set(1);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_prefix_and_swaps_live_label() {
        let m = Metrics::new();
        m.set_live("m", None, 1);
        m.set_live("m", Some(1), 2);
        m.http_requests
            .with_label_values(&["/recommend", "POST", "200"])
            .inc();
        m.queue_duration.with_label_values(&["m"]).observe(15e-6);
        let text = m.render();
        assert!(text.contains(r#"distilrec_model_live_info{model="m",version="2"} 1"#));
        assert!(!text.contains(r#"version="1""#), "{text}");
        assert!(text.contains(
            r#"distilrec_http_requests_total{method="POST",route="/recommend",status="200"} 1"#
        ));
        assert!(
            text.contains(r#"distilrec_queue_duration_seconds_bucket{model="m",le="0.00002"} 1"#)
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("distilrec_"), "{line}");
        }
    }

    #[test]
    fn two_instances_do_not_collide() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.unknown_items.with_label_values(&["m"]).inc_by(3);
        assert!(!b.render().contains("distilrec_unknown_items_total{"));
    }
}
