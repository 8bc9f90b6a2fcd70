//! Command-line / environment configuration of the `distilrec` server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Serve top-k recommendations from the ONNX model bundles in a model repository.
///
/// Every flag can also be set through the environment variable shown in brackets.
#[derive(Debug, Clone, Parser)]
#[command(name = "distilrec", version, about, long_about = None)]
pub struct Config {
    /// Model repository: `<DIR>/<model name>/<version>/{model.onnx,manifest.json,items.tsv,users.tsv}`.
    #[arg(long, env = "DISTILREC_MODELS", default_value = "models")]
    pub models: PathBuf,

    /// Address of the public API. Port 0 picks a free port; the bound address is logged as
    /// `listening on HOST:PORT`.
    #[arg(long, env = "DISTILREC_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    /// Model used when a request names none [default: `ml100k` if present, else the first model
    /// in the repository by name].
    #[arg(long, env = "DISTILREC_DEFAULT_MODEL")]
    pub default_model: Option<String>,

    /// How often the repository is scanned for new versions, in milliseconds (0 = never; versions
    /// then change only through the admin API).
    #[arg(long, env = "DISTILREC_POLL_INTERVAL_MS", default_value_t = 1000)]
    pub poll_interval_ms: u64,

    /// Largest number of requests scored in one model call.
    #[arg(long, env = "DISTILREC_MAX_BATCH_SIZE", default_value_t = 32)]
    pub max_batch_size: usize,

    /// Longest time the oldest queued request waits for a batch to fill, in microseconds
    /// (like Triton's `max_queue_delay_microseconds`). The default 0 is adaptive: each model call
    /// takes whatever queued during the previous one, so batches grow with load and a lone
    /// request never waits. Measured with loadtest on the default student: 200 µs gave p99
    /// 17 ms at 8k req/s where 0 gave 0.66 ms, and p50 0.63 → 0.39 ms at 1k req/s.
    #[arg(long, env = "DISTILREC_MAX_QUEUE_DELAY_US", default_value_t = 0)]
    pub max_queue_delay_us: u64,

    /// Requests that may wait for inference per model; beyond that the server answers 503
    /// `overloaded` at once instead of queueing without bound. Below --max-batch-size it also
    /// caps the batch size.
    #[arg(long, env = "DISTILREC_QUEUE_CAPACITY", default_value_t = 1024)]
    pub queue_capacity: usize,

    /// Largest `k` a request may ask for.
    #[arg(long, env = "DISTILREC_MAX_K", default_value_t = 100)]
    pub max_k: usize,

    /// Longest `history` (and `exclude`) list a request may send.
    #[arg(long, env = "DISTILREC_MAX_HISTORY", default_value_t = 1000)]
    pub max_history: usize,

    /// Whole-request deadline in milliseconds; past it the answer is 503 `timeout`.
    #[arg(long, env = "DISTILREC_REQUEST_TIMEOUT_MS", default_value_t = 5000)]
    pub request_timeout_ms: u64,

    /// Largest accepted request body in bytes; larger bodies get 413 `payload_too_large`.
    #[arg(long, env = "DISTILREC_MAX_BODY_BYTES", default_value_t = 256 * 1024)]
    pub max_body_bytes: usize,

    /// Bearer token required by the admin API (`/admin/...`). The admin API is disabled unless
    /// this or `--admin-addr` is set.
    #[arg(long, env = "DISTILREC_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Serve the admin API on this separate address (e.g. a loopback-only port) instead of the
    /// public one. The token, if set, is still required there.
    #[arg(long, env = "DISTILREC_ADMIN_ADDR")]
    pub admin_addr: Option<SocketAddr>,

    /// Log one JSON object per line instead of human-readable text.
    #[arg(long, env = "DISTILREC_JSON_LOGS")]
    pub json_logs: bool,

    /// Dedicated inference threads per model (they run the ONNX model off the async workers).
    #[arg(long, env = "DISTILREC_INFERENCE_THREADS", default_value_t = 1)]
    pub inference_threads: usize,

    /// Benchmark calibration: answer `POST /recommend` with a fixed 10-item body after parsing
    /// the request, through the same router and middleware, without loading any model. The load
    /// suite measures this "HTTP floor" next to the real server (loadtest/bench.sh).
    #[arg(long, env = "DISTILREC_HTTP_FLOOR")]
    pub http_floor: bool,

    /// On SIGTERM / ctrl-c, how long in-flight requests may take to finish, in seconds.
    #[arg(long, env = "DISTILREC_DRAIN_TIMEOUT_S", default_value_t = 30)]
    pub drain_timeout_s: u64,
}

/// A configuration that cannot work, reported at start-up.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl Config {
    /// Checks the rules that involve more than one flag or that clap cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |m: String| Err(ConfigError(m));
        if self.max_batch_size == 0 {
            return fail("--max-batch-size must be at least 1".into());
        }
        if self.queue_capacity == 0 {
            return fail("--queue-capacity must be at least 1".into());
        }
        if self.max_k == 0 {
            return fail("--max-k must be at least 1".into());
        }
        if self.max_history == 0 {
            return fail("--max-history must be at least 1".into());
        }
        if self.request_timeout_ms == 0 {
            return fail("--request-timeout-ms must be at least 1".into());
        }
        if self.max_body_bytes < 64 {
            return fail("--max-body-bytes must be at least 64".into());
        }
        if self.inference_threads == 0 {
            return fail("--inference-threads must be at least 1".into());
        }
        if Duration::from_micros(self.max_queue_delay_us)
            >= Duration::from_millis(self.request_timeout_ms)
        {
            return fail(format!(
                "--max-queue-delay-us ({} µs) must be shorter than --request-timeout-ms ({} ms)",
                self.max_queue_delay_us, self.request_timeout_ms
            ));
        }
        if let Some(token) = &self.admin_token {
            if token.len() < 8 || token.chars().any(char::is_whitespace) {
                return fail("--admin-token must be at least 8 characters without spaces".into());
            }
        }
        if self.admin_addr.is_some() && self.admin_addr == Some(self.addr) && self.addr.port() != 0
        {
            return fail("--admin-addr must differ from --addr".into());
        }
        if let Some(name) = &self.default_model {
            if !crate::bundle::valid_model_name(name) {
                return fail(format!(
                    "--default-model `{name}` is not a valid model name"
                ));
            }
        }
        Ok(())
    }

    /// Whether `/admin/...` routes exist at all.
    pub fn admin_enabled(&self) -> bool {
        self.admin_token.is_some() || self.admin_addr.is_some()
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn max_queue_delay(&self) -> Duration {
        Duration::from_micros(self.max_queue_delay_us)
    }

    pub fn poll_interval(&self) -> Option<Duration> {
        (self.poll_interval_ms > 0).then(|| Duration::from_millis(self.poll_interval_ms))
    }

    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        Config::try_parse_from(std::iter::once("distilrec").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn defaults_are_valid() {
        let c = parse(&[]);
        c.validate().unwrap();
        assert_eq!(c.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.models, PathBuf::from("models"));
        assert!(!c.admin_enabled());
        assert_eq!(c.poll_interval(), Some(Duration::from_secs(1)));
    }

    #[test]
    fn cross_field_rules_are_checked() {
        let err = parse(&["--queue-capacity", "0"])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("--queue-capacity"), "{err}");
        let err = parse(&["--max-queue-delay-us", "5000", "--request-timeout-ms", "5"])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("--max-queue-delay-us"), "{err}");
        assert!(parse(&["--admin-token", "short"]).validate().is_err());
        assert!(parse(&["--default-model", "../etc"]).validate().is_err());
        assert!(parse(&["--inference-threads", "0"]).validate().is_err());
    }

    #[test]
    fn admin_is_enabled_by_token_or_address() {
        assert!(parse(&["--admin-token", "secret-token"]).admin_enabled());
        assert!(parse(&["--admin-addr", "127.0.0.1:0"]).admin_enabled());
        assert_eq!(parse(&["--poll-interval-ms", "0"]).poll_interval(), None);
    }
}
