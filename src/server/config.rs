//! Command-line / environment configuration of the `distilrec` server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::engine::EngineKind;

/// A secret from the command line, the environment or a file: `Debug` (and so any log of the
/// configuration) does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl std::str::FromStr for Secret {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(Secret(s.to_string()))
    }
}

/// `--engine`: the manifest's choice or one engine for all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineChoice {
    Manifest,
    Force(EngineKind),
}

impl EngineChoice {
    pub fn engine(self) -> Option<EngineKind> {
        match self {
            EngineChoice::Manifest => None,
            EngineChoice::Force(k) => Some(k),
        }
    }
}

impl std::str::FromStr for EngineChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "manifest" {
            return Ok(EngineChoice::Manifest);
        }
        s.parse()
            .map(EngineChoice::Force)
            .map_err(|e: String| format!("{e}; or `manifest` for each bundle's own choice"))
    }
}

/// Serve top-k recommendations from the ONNX model bundles in a model repository.
///
/// Every flag can also be set through the environment variable shown in brackets.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "distilrec",
    version,
    about,
    long_about = None,
    after_help = "Also: `distilrec index <VERSION_DIR>` builds the ANN graph of a two-tower bundle \
                  and saves it in the bundle (`distilrec index --help`)."
)]
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
    /// this (or `--admin-token-file`) or `--admin-addr` is set. Prefer `--admin-token-file` or
    /// the environment variable: a value passed as a flag is visible to every user of the
    /// machine in `ps` and `/proc/<pid>/cmdline`.
    #[arg(long, env = "DISTILREC_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,

    /// File holding the admin token (surrounding whitespace and the final newline are
    /// ignored), e.g. a mounted Kubernetes or Docker secret. Exclusive with `--admin-token`.
    #[arg(
        long,
        env = "DISTILREC_ADMIN_TOKEN_FILE",
        conflicts_with = "admin_token"
    )]
    pub admin_token_file: Option<PathBuf>,

    /// Serve the admin API on this separate address (e.g. a loopback-only port) instead of the
    /// public one. The token, if set, is still required there.
    #[arg(long, env = "DISTILREC_ADMIN_ADDR")]
    pub admin_addr: Option<SocketAddr>,

    /// Log one JSON object per line instead of human-readable text.
    #[arg(long, env = "DISTILREC_JSON_LOGS")]
    pub json_logs: bool,

    /// Scoring engine for two-tower (format 2) bundles: `manifest` uses each bundle's
    /// `serving.engine` (exact when absent); `exact`, `int8` or `ann` overrides it for every
    /// model. Format-1 bundles always score every row in their ONNX graph.
    #[arg(long, env = "DISTILREC_ENGINE", default_value = "manifest")]
    pub engine: EngineChoice,

    /// Dedicated inference threads per model (they run the ONNX model off the async workers).
    #[arg(long, env = "DISTILREC_INFERENCE_THREADS", default_value_t = 1)]
    pub inference_threads: usize,

    /// Async worker threads (HTTP parsing, routing, answers). Default: the CPUs left once one
    /// model's inference threads have theirs (`available CPUs − --inference-threads`, at least
    /// 1), so the busy inference thread and the workers do not take turns on one core. On the
    /// 2-core benchmark host that is 1 worker; `loadtest/bench.sh` measures it against one
    /// worker per CPU (its report's "Worker threads" section).
    #[arg(long, env = "DISTILREC_HTTP_WORKERS")]
    pub http_workers: Option<usize>,

    /// Benchmark calibration: answer `POST /recommend` with a fixed 10-item body after parsing
    /// the request, through the same router and middleware, without loading any model. The load
    /// suite measures this "HTTP floor" next to the real server (loadtest/bench.sh).
    #[arg(long, env = "DISTILREC_HTTP_FLOOR")]
    pub http_floor: bool,

    /// On SIGTERM / ctrl-c, how long in-flight requests may take to finish, in seconds.
    #[arg(long, env = "DISTILREC_DRAIN_TIMEOUT_S", default_value_t = 30)]
    pub drain_timeout_s: u64,

    /// Accept a non-loopback `--admin-addr` without `--admin-token` (anyone who reaches that
    /// address can then load and roll back models). Refused at start-up otherwise.
    #[arg(long, env = "DISTILREC_ADMIN_INSECURE")]
    pub admin_insecure: bool,

    /// Largest `model.onnx` a bundle may have, in bytes; a larger one is refused (`too_large`)
    /// from its size alone, before anything is read.
    #[arg(long, env = "DISTILREC_MAX_MODEL_BYTES", default_value_t = 1 << 30, value_parser = crate::os::parse_bytes)]
    pub max_model_bytes: u64,

    /// Largest `items.tsv` a bundle may have, in bytes **as decoded in memory**: an upper
    /// estimate counted on the text before it is parsed (per item ~120 bytes of vector entries
    /// and table slot, plus the id twice and the title, each with allocator slack), so a file
    /// of many short rows is refused though small on disk. The file itself is read under the
    /// same cap. 1 GiB admits a million items with titles.
    #[arg(long, env = "DISTILREC_MAX_ITEMS_BYTES", default_value_t = 1 << 30, value_parser = crate::os::parse_bytes)]
    pub max_items_bytes: u64,

    /// Largest `users.tsv` a bundle may have, in bytes **as decoded in memory** (per user ~110
    /// bytes of table slot, plus the id and 4 bytes per history row kept under
    /// `--max-history`, each with allocator slack), estimated before it is parsed; the file
    /// itself is read under the same cap.
    #[arg(long, env = "DISTILREC_MAX_USERS_BYTES", default_value_t = 1 << 30, value_parser = crate::os::parse_bytes)]
    pub max_users_bytes: u64,

    /// Largest item matrix of a two-tower bundle, in bytes **as decoded in memory**
    /// (`n_rows · dim · 4`, plus 4 per row with biases), whatever the file's dtype: an int8
    /// `items.i8` is a quarter of that on disk. Checked from the manifest before anything is
    /// read. The exact engine keeps one more copy of the same size (int8: a quarter).
    #[arg(long, env = "DISTILREC_MAX_ITEM_MATRIX_BYTES", default_value_t = 8 << 30, value_parser = crate::os::parse_bytes)]
    pub max_item_matrix_bytes: u64,

    /// Deadline of one model load (read + check + optimise + warm up), in milliseconds, for the
    /// poller and the admin API alike. A load past it is refused (`timeout`) and, like any
    /// refused version, not retried until its files change. It includes building the scoring
    /// engine: an ANN index over 10^6 items takes minutes on 2 cores (raise it for those).
    #[arg(long, env = "DISTILREC_LOAD_TIMEOUT_MS", default_value_t = 60_000)]
    pub load_timeout_ms: u64,

    /// A connection must send a complete request head within this many milliseconds, and an
    /// idle keep-alive connection is closed after it (hyper starts the same timer whenever a
    /// connection waits for its next request).
    #[arg(long, env = "DISTILREC_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_timeout_ms: u64,

    /// A response write that makes no progress for this many milliseconds (the client stopped
    /// reading) closes the connection, so clients that never read cannot hold every
    /// connection slot. A slow client that keeps reading is not affected.
    #[arg(long, env = "DISTILREC_WRITE_TIMEOUT_MS", default_value_t = 30_000)]
    pub write_timeout_ms: u64,

    /// Open connections per listener; further clients wait in the kernel's accept queue until
    /// one closes, so file descriptors stay bounded.
    #[arg(long, env = "DISTILREC_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
}

/// A configuration that cannot work, reported at start-up.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl Config {
    /// Reads `--admin-token-file` into the token. Call before [`Config::validate`].
    pub fn with_secrets(mut self) -> Result<Config, ConfigError> {
        if let Some(path) = &self.admin_token_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError(format!(
                    "cannot read --admin-token-file {}: {e}",
                    path.display()
                ))
            })?;
            self.admin_token = Some(Secret(text.trim().to_string()));
        }
        Ok(self)
    }

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
        if self.http_workers == Some(0) {
            return fail("--http-workers must be at least 1".into());
        }
        if Duration::from_micros(self.max_queue_delay_us)
            >= Duration::from_millis(self.request_timeout_ms)
        {
            return fail(format!(
                "--max-queue-delay-us ({} µs) must be shorter than --request-timeout-ms ({} ms)",
                self.max_queue_delay_us, self.request_timeout_ms
            ));
        }
        if self.admin_token_file.is_some() && self.admin_token.is_none() {
            return fail("--admin-token-file was not read (Config::with_secrets)".into());
        }
        if let Some(token) = &self.admin_token {
            let token = token.expose();
            if token.len() < 8 || token.chars().any(char::is_whitespace) {
                return fail("--admin-token must be at least 8 characters without spaces".into());
            }
        }
        if self.admin_addr.is_some() && self.admin_addr == Some(self.addr) && self.addr.port() != 0
        {
            return fail("--admin-addr must differ from --addr".into());
        }
        if let Some(addr) = self.admin_addr {
            if !addr.ip().is_loopback() && self.admin_token.is_none() && !self.admin_insecure {
                return fail(format!(
                    "--admin-addr {addr} is not a loopback address, so anyone who reaches it could \
                     load and roll back models: set --admin-token, or pass --admin-insecure to \
                     accept that"
                ));
            }
        }
        if self.load_timeout_ms == 0 {
            return fail("--load-timeout-ms must be at least 1".into());
        }
        if self.header_timeout_ms == 0 {
            return fail("--header-timeout-ms must be at least 1".into());
        }
        if self.write_timeout_ms == 0 {
            return fail("--write-timeout-ms must be at least 1".into());
        }
        if self.max_connections == 0 {
            return fail("--max-connections must be at least 1".into());
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

    /// Async worker threads: `--http-workers`, else the CPUs the inference threads leave (all of
    /// them in `--http-floor` mode, which runs no model).
    pub fn http_workers(&self) -> usize {
        self.http_workers.unwrap_or_else(|| {
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            let inference = if self.http_floor {
                0
            } else {
                self.inference_threads
            };
            cpus.saturating_sub(inference).max(1)
        })
    }

    pub fn load_timeout(&self) -> Duration {
        Duration::from_millis(self.load_timeout_ms)
    }

    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms)
    }

    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }

    /// Whether the admin API listens on a non-loopback address without a token (allowed only
    /// with `--admin-insecure`; logged as a warning).
    pub fn admin_exposed_without_token(&self) -> bool {
        self.admin_token.is_none() && self.admin_addr.is_some_and(|a| !a.ip().is_loopback())
    }

    pub fn bundle_limits(&self) -> crate::bundle::BundleLimits {
        crate::bundle::BundleLimits {
            max_model_bytes: self.max_model_bytes,
            max_items_bytes: self.max_items_bytes,
            max_users_bytes: self.max_users_bytes,
            max_item_matrix_bytes: self.max_item_matrix_bytes,
            max_history: self.max_history,
            ..crate::bundle::BundleLimits::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os::parse_bytes;

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
    fn a_public_admin_address_needs_a_token_or_the_explicit_flag() {
        let err = parse(&["--admin-addr", "0.0.0.0:9090"])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--admin-token") && err.contains("--admin-insecure"),
            "{err}"
        );
        parse(&[
            "--admin-addr",
            "0.0.0.0:9090",
            "--admin-token",
            "secret-token",
        ])
        .validate()
        .unwrap();
        let c = parse(&["--admin-addr", "0.0.0.0:9090", "--admin-insecure"]);
        c.validate().unwrap();
        assert!(c.admin_exposed_without_token());
        parse(&["--admin-addr", "[::1]:9090"]).validate().unwrap();
    }

    #[test]
    fn debug_output_does_not_show_the_token() {
        let c = parse(&["--admin-token", "very-secret-token"]);
        let shown = format!("{c:?}");
        assert!(!shown.contains("very-secret-token"), "{shown}");
        assert_eq!(c.admin_token.unwrap().expose(), "very-secret-token");
    }

    #[test]
    fn the_token_can_come_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "from-a-file-token\n").unwrap();
        let c = parse(&["--admin-token-file", path.to_str().unwrap()])
            .with_secrets()
            .unwrap();
        c.validate().unwrap();
        assert_eq!(
            c.admin_token.as_ref().unwrap().expose(),
            "from-a-file-token"
        );
        assert!(c.admin_enabled());
        let missing = parse(&["--admin-token-file", "/nonexistent/token"]).with_secrets();
        assert!(missing.is_err());
        let both = Config::try_parse_from([
            "distilrec",
            "--admin-token",
            "secret-token",
            "--admin-token-file",
            path.to_str().unwrap(),
        ]);
        assert!(both.is_err(), "the two are exclusive");
    }

    #[test]
    fn byte_counts_take_binary_suffixes() {
        assert_eq!(parse_bytes("1024").unwrap(), 1024);
        assert_eq!(parse_bytes("64M").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("8G").unwrap(), 8 << 30);
        assert_eq!(parse_bytes("512KiB").unwrap(), 512 << 10);
        for bad in ["", "M", "64 MB", "-1", "99999999999999999999G"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse(&["--max-item-matrix-bytes", "64M"]).max_item_matrix_bytes,
            64 << 20
        );
    }

    #[test]
    fn admin_is_enabled_by_token_or_address() {
        assert!(parse(&["--admin-token", "secret-token"]).admin_enabled());
        assert!(parse(&["--admin-addr", "127.0.0.1:0"]).admin_enabled());
        assert_eq!(parse(&["--poll-interval-ms", "0"]).poll_interval(), None);
    }
}
