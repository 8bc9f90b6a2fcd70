//! The HTTP recommendation server (the only module that knows axum).
//!
//! - [`config`]: the `Config` (flags + env vars) and its start-up checks.
//! - `router`: every route and the one edge middleware (metrics, protobuf error bodies,
//!   deadline); `routes/`: the handlers (`recommend`, `status`, `admin`, `floor`).
//! - `api`: the request and answer types and their checks; `errors` / `extract`: the error
//!   format and the JSON body extractor; `codec`: protobuf bodies and content negotiation;
//!   `json_body`: the JSON answer of `/recommend`, written directly.
//! - `views`: the registry as `GET /v1/models` shows it. The registry itself (live version per
//!   model, hot swap, polling, admin operations), loading one version, batching and ranking are
//!   the serving core ([`crate::serving`]), which knows no HTTP.
//! - `shutdown`: signal handling and draining; `listen`: the accept loop with its connection cap
//!   and header / idle timeout; `write_deadline`: the socket wrapper that closes a connection
//!   whose answer nobody reads. Metrics are registered in [`crate::metrics`].
//!
//! # API
//! - `POST /recommend` `{"history": [ids] | "user_id": id, "k"?: 10, "exclude"?: [ids],
//!   "model"?: name}` → `{"model", "version", "items": [{"id", "score", "title"?}],
//!   "unknown_items": [ids], "timing": {"queue_us", "inference_us", "batch_size"}}` with headers
//!   `x-model-version`, `x-queue-time` and `x-inference-time` (integer **microseconds**; the
//!   inference time is the whole batch's model call + top-k).
//! - The same request and answer as protobuf (`proto/recommend.proto`, package `distilrec.v1`):
//!   `content-type: application/x-protobuf` (or `application/protobuf`) on the request; the
//!   answer (errors included) is protobuf when `Accept` prefers it, or with no preference when
//!   the request was protobuf. Same validation, statuses and headers.
//! - Errors: `{"error", "error_type"}` (protobuf: `ErrorBody`) — `validation` 422,
//!   `malformed_json` 400, `malformed_protobuf` 400, `unsupported_media_type` 415,
//!   `payload_too_large` 413, `unknown_user` / `unknown_model` /
//!   `unknown_version` / `not_found` 404, `unauthorized` 401, `load_failed` 422, `conflict` 409,
//!   `not_ready` / `overloaded` / `timeout` 503 (with `retry-after: 1`), `internal` 500.
//! - `--http-floor` (benchmarks only, module `floor`): `POST /recommend` parses the request and
//!   answers a fixed 10-item body through the same router and middleware; no model is loaded.
//! - `GET /healthz`, `GET /readyz`, `GET /v1/models`, `GET /v1/models/{name}`, `GET /metrics`,
//!   `GET /openapi.json` (the OpenAPI document, `openapi`; committed as `proto/openapi.json`).
//! - Admin (only with `--admin-token`/`--admin-token-file` and/or `--admin-addr`):
//!   `POST /admin/models/{name}/load` `{"version": N}` (load + pin), `.../rollback` (previous live
//!   version, pinned), `.../unpin`; `GET /admin/models/{name}` (the model detail with the full
//!   text of each load failure; the public detail shows only their kinds).
//!
//! # Publishing a version
//! The poller only considers directories named by a positive integer, so write the bundle
//! under another name in the same model directory (e.g. `.tmp-…`, which is what
//! `bundle::write_bundle` does) and `rename` it to its version number: the rename is atomic and
//! a half-written version is never seen. A version that fails to load (including one whose load
//! panicked or passed `--load-timeout-ms`) is remembered and not retried until its files change
//! (size/mtime). Bundle files must be regular files under `--max-*-bytes` (`bundle::read_capped`).
//!
//! # Connections (`listen`)
//! HTTP/1.1 through hyper's connection builder: at most `--max-connections` per listener (then
//! the server stops accepting), a request head within `--header-timeout-ms` (also the idle
//! keep-alive timeout), no response write blocked for longer than `--write-timeout-ms` (a client
//! that stops reading loses its connection), graceful drain on shutdown.
//!
//! # Logs
//! Start-up logs `listening on HOST:PORT` (the bound address, also when `--addr` has port 0;
//! `admin API listening on HOST:PORT` for `--admin-addr`) and, per model version swapped in,
//! `model version live` with `model`, `version` and `n_items` fields.

mod api;
mod codec;
pub mod config;
mod errors;
mod extract;
mod json_body;
mod listen;
mod openapi;
mod router;
mod routes;
mod shutdown;
mod state;
mod views;
mod write_deadline;

use std::future::Future;
use std::sync::Arc;

use anyhow::{bail, Context};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use crate::metrics::Metrics;
pub use config::Config;
pub use openapi::document as openapi_document;
pub use router::router;
pub use state::{app_state, AppState, Shared};

use crate::serving::registry::Registry;
use listen::ConnLimits;

/// Binds the configured addresses and serves until SIGTERM / ctrl-c.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let config = config.with_secrets()?;
    config.validate()?;
    let listener = TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.addr))?;
    let admin = match config.admin_addr {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (--admin-addr)"))?,
        ),
        None => None,
    };
    serve(config, listener, admin, shutdown::signal()).await
}

/// Serves on already-bound listeners until `shutdown` resolves, then drains and returns.
/// Models are loaded in the background: `/healthz` answers at once, `/readyz` once the default
/// model is live.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    admin_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let config = config.with_secrets()?;
    config.validate()?;
    if !config.models.is_dir() {
        bail!(
            "model repository {} is not a directory (set --models)",
            config.models.display()
        );
    }
    if admin_listener.is_some() != config.admin_addr.is_some() {
        bail!("an admin listener is passed exactly when --admin-addr is set");
    }
    let drain_timeout = config.drain_timeout();
    let poll_interval = config.poll_interval();
    let state = app_state(config);
    let token = CancellationToken::new();
    tokio::spawn(shutdown::begin_on(
        shutdown,
        Arc::clone(&state.draining),
        token.clone(),
    ));

    let limits = ConnLimits {
        max_connections: state.config.max_connections,
        header_timeout: state.config.header_timeout(),
        write_timeout: state.config.write_timeout(),
    };
    let connections = |listener: &str| state.metrics.connections.with_label_values(&[listener]);
    let addr = listener.local_addr().context("reading the bound address")?;
    tracing::info!(%addr, models = %state.config.models.display(), "listening on {addr}");
    let main = tokio::spawn(listen::serve(
        listener,
        router(state.clone()),
        limits,
        connections("public"),
        token.clone(),
    ));
    let admin = match admin_listener {
        Some(l) => {
            let admin_addr = l.local_addr().context("reading the admin address")?;
            tracing::info!(%admin_addr, "admin API listening on {admin_addr}");
            if state.config.admin_exposed_without_token() {
                tracing::warn!(
                    %admin_addr,
                    "admin API on a non-loopback address without a token (--admin-insecure)"
                );
            }
            Some(tokio::spawn(listen::serve(
                l,
                router::admin_router(state.clone()),
                limits,
                connections("admin"),
                token.clone(),
            )))
        }
        None => None,
    };
    if state.config.admin_enabled() && admin.is_none() {
        tracing::info!("admin API enabled on the main address (bearer token required)");
    }

    if state.config.http_floor {
        tracing::warn!("--http-floor: answering a fixed body, no model is loaded");
    }
    let poller = tokio::spawn(poll_repository(
        Arc::clone(&state.registry),
        state.config.http_floor,
        poll_interval,
    ));

    let result = run_until_drained(main, admin, token, drain_timeout).await;
    poller.abort();
    if result.is_ok() {
        tracing::info!("shutdown complete");
    }
    result
}

/// Loads the repository's models once, then rescans every `every` (`--poll-interval-ms`; never
/// with `None`). Nothing is loaded in `--http-floor` mode.
async fn poll_repository(registry: Arc<Registry>, floor: bool, every: Option<std::time::Duration>) {
    if floor {
        return;
    }
    registry.poll_once().await;
    if registry.default_live().is_none() {
        tracing::warn!(
            default_model = ?registry.default_name(),
            "no default model is live yet; /readyz stays 503"
        );
    }
    let Some(every) = every else { return };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        // Does not wait for the loads it starts: a slow or stuck model must not delay the
        // next scan for the others (a model whose load is still running is skipped).
        registry.poll_in_background().await;
    }
}

/// Waits for the listeners to finish draining after shutdown starts, or for `drain_timeout`
/// after it, whichever comes first.
async fn run_until_drained(
    main: tokio::task::JoinHandle<()>,
    admin: Option<tokio::task::JoinHandle<()>>,
    token: CancellationToken,
    drain_timeout: std::time::Duration,
) -> anyhow::Result<()> {
    let servers = async {
        main.await.context("server task")?;
        if let Some(a) = admin {
            a.await.context("admin server task")?;
        }
        anyhow::Ok(())
    };
    let deadline = async {
        token.cancelled().await;
        tokio::time::sleep(drain_timeout).await;
    };
    tokio::select! {
        r = servers => r,
        _ = deadline => {
            tracing::warn!(?drain_timeout, "drain timeout reached; exiting with requests in flight");
            Ok(())
        }
    }
}
