//! The state every handler shares, and how it is built from the configuration.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::config::Config;
use crate::metrics::Metrics;
use crate::serving::batcher::BatcherConfig;
use crate::serving::registry::{Registry, RegistryConfig};

/// Everything handlers share: one `Arc`, because axum clones the state for every request and
/// each reference count touched there is an atomic shared between cores (`perf` at 1,682 items
/// under `wrk`: cloning `Metrics` by value cost ~8 % of the server's CPU, and four `Arc`s in
/// the clone and drop of this state another ~2.4 %). Fields are reached through `Deref`.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub config: Arc<Config>,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    /// Set when shutdown starts: readiness turns false before the listener closes.
    pub draining: Arc<AtomicBool>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    pub fn new(shared: Shared) -> Self {
        AppState(Arc::new(shared))
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

/// Builds the shared state: metrics and a registry with no model loaded yet.
pub fn app_state(config: Config) -> AppState {
    let metrics = Metrics::new();
    let registry = Registry::new(
        RegistryConfig {
            repo: config.models.clone(),
            default_model: config.default_model.clone(),
            limits: config.bundle_limits(),
            load_timeout: config.load_timeout(),
            batcher: BatcherConfig {
                max_batch_size: config.max_batch_size,
                max_delay: config.max_queue_delay(),
                queue_capacity: config.queue_capacity,
                threads: config.inference_threads,
            },
            engine: config.engine.engine(),
        },
        metrics.clone(),
    );
    AppState::new(Shared {
        config: Arc::new(config),
        registry: Arc::new(registry),
        metrics: Arc::new(metrics),
        draining: Arc::new(AtomicBool::new(false)),
    })
}
