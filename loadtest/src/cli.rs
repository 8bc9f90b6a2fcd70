//! Command-line configuration. Every flag is also readable from a `LOADTEST_*` environment variable.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Constant arrival rate (`--rate`); latency is measured from each request's intended send time,
    /// so a slow server cannot hide its queueing delay (no coordinated omission).
    Open,
    /// Fixed number of requests in flight (`--concurrency`), each sent as soon as the previous
    /// answer on its connection arrives.
    Closed,
    /// Repeated open or closed runs with a growing rate or concurrency, reporting the highest
    /// throughput whose p99 stays within `--p99-bound-ms`.
    Sweep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SweepOver {
    /// Step the open-loop arrival rate (starts at `--rate`).
    Rate,
    /// Step the closed-loop concurrency (starts at `--concurrency`).
    Concurrency,
}

/// HTTP load harness for the distilrec recommendation server.
#[derive(Debug, Clone, Parser)]
#[command(name = "loadtest", version, about)]
pub struct Cli {
    /// How load is generated.
    #[arg(long, env = "LOADTEST_MODE", value_enum, default_value_t = Mode::Closed)]
    pub mode: Mode,

    /// Base URL of the server (only plain http is supported).
    #[arg(long, env = "LOADTEST_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,

    /// Path the request bodies are POSTed to.
    #[arg(long, env = "LOADTEST_PATH", default_value = "/recommend")]
    pub path: String,

    /// Open loop: arrivals per second. Rate sweep: the first rate tried.
    #[arg(long, env = "LOADTEST_RATE", default_value_t = 1000.0)]
    pub rate: f64,

    /// Closed loop: requests in flight (one connection each). Concurrency sweep: the first value.
    #[arg(long, env = "LOADTEST_CONCURRENCY", default_value_t = 32)]
    pub concurrency: usize,

    /// Open loop: size of the connection pool. A request waits for a free connection, and that
    /// wait counts in its latency; size it above rate × worst latency.
    #[arg(long, env = "LOADTEST_CONNECTIONS", default_value_t = 64)]
    pub connections: usize,

    /// Measured duration in seconds (after the warm-up). Ignored when `--requests` is given.
    #[arg(long, env = "LOADTEST_DURATION", default_value_t = 10.0)]
    pub duration: f64,

    /// Stop after this many measured requests instead of after `--duration`.
    #[arg(long, env = "LOADTEST_REQUESTS")]
    pub requests: Option<u64>,

    /// Warm-up seconds before measuring; requests sent during it are not recorded.
    #[arg(long, env = "LOADTEST_WARMUP", default_value_t = 2.0)]
    pub warmup: f64,

    /// `k` sent in every request built from `--bodies` TSV or synthetic histories.
    #[arg(long, env = "LOADTEST_K", default_value_t = 10)]
    pub k: usize,

    /// Optional `model` field sent in every request built by the harness.
    #[arg(long, env = "LOADTEST_MODEL")]
    pub model: Option<String>,

    /// Request bodies: a TSV of `user<TAB>item` lines (optional header; grouped by user, in file
    /// order, into histories) or a JSONL file of ready request bodies. Without it, synthetic
    /// histories over items `i1..iN` (`--synthetic-items`) are used.
    #[arg(long, env = "LOADTEST_BODIES")]
    pub bodies: Option<PathBuf>,

    /// Send the same bodies encoded as protobuf (`proto/recommend.proto`), with `content-type`
    /// and `accept` set to `application/x-protobuf`, instead of JSON.
    #[arg(long, env = "LOADTEST_PROTOBUF")]
    pub protobuf: bool,

    /// Longest history sent (the most recent items are kept). TSV and synthetic bodies only.
    #[arg(long, env = "LOADTEST_HISTORY_LEN", default_value_t = 50)]
    pub history_len: usize,

    /// Catalogue size for synthetic histories (items `i1..iN`, as in synthetic bundles).
    #[arg(long, env = "LOADTEST_SYNTHETIC_ITEMS", default_value_t = 1682)]
    pub synthetic_items: usize,

    /// Seed for body selection and synthetic histories; the same seed replays the same bodies.
    #[arg(long, env = "LOADTEST_SEED", default_value_t = 42)]
    pub seed: u64,

    /// Per-request timeout in seconds (connect + send + full response).
    #[arg(long, env = "LOADTEST_TIMEOUT", default_value_t = 5.0)]
    pub timeout: f64,

    /// Client runtime threads. One leaves the other core to the server on a 2-core machine.
    #[arg(long, env = "LOADTEST_THREADS", default_value_t = 1)]
    pub threads: usize,

    /// Write the full report as JSON here.
    #[arg(long, env = "LOADTEST_JSON_OUT")]
    pub json_out: Option<PathBuf>,

    /// Write a Markdown summary here.
    #[arg(long, env = "LOADTEST_MD_OUT")]
    pub md_out: Option<PathBuf>,

    /// Write a PNG latency-by-percentile plot here.
    #[arg(long, env = "LOADTEST_PLOT")]
    pub plot: Option<PathBuf>,

    /// Write the request bodies (one JSON per line, in the order `--bodies` yields them) to this
    /// file and exit without sending anything — e.g. to feed the same bodies to wrk. Always JSON,
    /// also with `--protobuf`.
    #[arg(long, env = "LOADTEST_DUMP_BODIES")]
    pub dump_bodies: Option<PathBuf>,

    /// Label used in the Markdown and plot titles (e.g. "student 1682 items").
    #[arg(long, env = "LOADTEST_LABEL")]
    pub label: Option<String>,

    /// No once-per-second progress line on stderr.
    #[arg(long, env = "LOADTEST_QUIET")]
    pub quiet: bool,

    /// Sweep: what to step.
    #[arg(long, env = "LOADTEST_SWEEP_OVER", value_enum, default_value_t = SweepOver::Rate)]
    pub sweep_over: SweepOver,

    /// Sweep: a step passes when its p99 (ms) is at most this.
    #[arg(long, env = "LOADTEST_P99_BOUND_MS", default_value_t = 10.0)]
    pub p99_bound_ms: f64,

    /// Sweep: a step passes only if at most this fraction of its requests failed.
    #[arg(long, env = "LOADTEST_MAX_ERROR_RATE", default_value_t = 0.0)]
    pub max_error_rate: f64,

    /// Sweep: multiply the rate/concurrency by this while every step passes.
    #[arg(long, env = "LOADTEST_SWEEP_GROWTH", default_value_t = 2.0)]
    pub sweep_growth: f64,

    /// Sweep: after the first failure, bisect until passing and failing values are this close
    /// (relative).
    #[arg(long, env = "LOADTEST_SWEEP_PRECISION", default_value_t = 0.05)]
    pub sweep_precision: f64,

    /// Sweep: never run more steps than this.
    #[arg(long, env = "LOADTEST_SWEEP_MAX_STEPS", default_value_t = 16)]
    pub sweep_max_steps: usize,

    /// Sweep: seconds of idle time between steps so the server drains its queues.
    #[arg(long, env = "LOADTEST_SWEEP_PAUSE", default_value_t = 1.0)]
    pub sweep_pause: f64,

    /// Hot-swap scenario: load another model version through the admin API every this many
    /// seconds during the measured phase.
    #[arg(long, env = "LOADTEST_SWAP_EVERY")]
    pub swap_every: Option<f64>,

    /// Admin base URL (defaults to `--url`).
    #[arg(long, env = "LOADTEST_ADMIN_URL")]
    pub admin_url: Option<String>,

    /// Bearer token for the admin API.
    #[arg(long, env = "LOADTEST_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Model whose version is swapped (defaults to `--model`).
    #[arg(long, env = "LOADTEST_SWAP_MODEL")]
    pub swap_model: Option<String>,

    /// Versions loaded in turn, comma-separated.
    #[arg(
        long,
        env = "LOADTEST_SWAP_VERSIONS",
        value_delimiter = ',',
        default_value = "1,2"
    )]
    pub swap_versions: Vec<u64>,

    /// Half-width in ms of the window around each swap whose requests are reported separately.
    #[arg(long, env = "LOADTEST_SWAP_WINDOW_MS", default_value_t = 250.0)]
    pub swap_window_ms: f64,

    /// Soak: hostile requests (malformed JSON, oversized bodies, garbage methods, stalled
    /// connections, in turn) at this fraction of `--rate`, sent beside the valid ones and
    /// counted apart from them. Open loop only.
    #[arg(long, env = "LOADTEST_HOSTILE_FRACTION", default_value_t = 0.0)]
    pub hostile_fraction: f64,

    /// Soak: size of the oversized hostile body in bytes (above the server's --max-body-bytes).
    #[arg(long, env = "LOADTEST_HOSTILE_BODY_BYTES", default_value_t = 512 * 1024)]
    pub hostile_body_bytes: usize,

    /// Soak: stalled connections held at once at most (beyond that a stall is skipped).
    #[arg(long, env = "LOADTEST_HOSTILE_MAX_STALLED", default_value_t = 64)]
    pub hostile_max_stalled: usize,

    /// Soak: seconds a stalled connection waits for the server to close it.
    #[arg(long, env = "LOADTEST_HOSTILE_STALL_S", default_value_t = 15.0)]
    pub hostile_stall_s: f64,

    /// Soak: pid of the server (same machine) whose RSS and open fds are sampled from /proc.
    #[arg(long, env = "LOADTEST_SERVER_PID")]
    pub server_pid: Option<u32>,

    /// Soak: seconds between /proc samples.
    #[arg(long, env = "LOADTEST_SAMPLE_EVERY", default_value_t = 5.0)]
    pub sample_every: f64,

    /// Soak: write the hostile counts and the resource samples as JSON here.
    #[arg(long, env = "LOADTEST_SOAK_JSON_OUT")]
    pub soak_json_out: Option<PathBuf>,
}

impl Cli {
    /// Cross-field rules, checked once at start-up so a bad combination fails with a clear message.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(self.rate.is_finite() && self.rate > 0.0) {
            bail!("--rate must be a positive number, got {}", self.rate);
        }
        if self.concurrency == 0 || self.connections == 0 || self.threads == 0 {
            bail!("--concurrency, --connections and --threads must be at least 1");
        }
        if self.requests.is_none() && !(self.duration.is_finite() && self.duration > 0.0) {
            bail!("--duration must be positive (or give --requests)");
        }
        if self.requests == Some(0) {
            bail!("--requests must be at least 1");
        }
        if !(self.warmup.is_finite() && self.warmup >= 0.0) {
            bail!("--warmup must be >= 0");
        }
        if !(self.timeout.is_finite() && self.timeout > 0.0) {
            bail!("--timeout must be positive");
        }
        if self.history_len == 0 || self.synthetic_items == 0 {
            bail!("--history-len and --synthetic-items must be at least 1");
        }
        if self.mode == Mode::Sweep {
            if self.sweep_growth <= 1.0 {
                bail!("--sweep-growth must be > 1, got {}", self.sweep_growth);
            }
            if self.sweep_precision <= 0.0 {
                bail!("--sweep-precision must be > 0");
            }
            if self.p99_bound_ms <= 0.0 {
                bail!("--p99-bound-ms must be > 0");
            }
        }
        if let Some(every) = self.swap_every {
            if !(every.is_finite() && every > 0.0) {
                bail!("--swap-every must be positive");
            }
            if self.swap_model().is_none() {
                bail!("--swap-every needs --swap-model (or --model)");
            }
            if self.swap_versions.is_empty() {
                bail!("--swap-versions must list at least one version");
            }
            if self.mode == Mode::Sweep {
                bail!("--swap-every is not supported in sweep mode; run open or closed");
            }
        }
        if !(self.hostile_fraction.is_finite() && (0.0..=1.0).contains(&self.hostile_fraction)) {
            bail!("--hostile-fraction must be between 0 and 1");
        }
        if self.hostile_fraction > 0.0 && self.mode != Mode::Open {
            bail!("--hostile-fraction needs --mode open");
        }
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if !positive(self.sample_every) || !positive(self.hostile_stall_s) {
            bail!("--sample-every and --hostile-stall-s must be positive");
        }
        crate::http::Target::parse(&self.url).context("--url")?;
        if let Some(admin) = &self.admin_url {
            crate::http::Target::parse(admin).context("--admin-url")?;
        }
        Ok(())
    }

    /// Whether a soak task (hostile traffic or /proc sampling) runs beside the load.
    pub fn soak(&self) -> bool {
        self.hostile_fraction > 0.0 || self.server_pid.is_some()
    }

    pub fn swap_model(&self) -> Option<&str> {
        self.swap_model.as_deref().or(self.model.as_deref())
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout)
    }

    pub fn warmup(&self) -> Duration {
        Duration::from_secs_f64(self.warmup)
    }
}
