//! The model registry: which version of each model is live, and how that changes.
//!
//! Each model name has an [`ArcSwapOption`] holding its live [`LoadedModel`]. Requests load it
//! once and keep the `Arc`, so a swap never splits a request or a batch. New versions come from
//! polling the repository (the highest version that is not known to be broken wins, like
//! TF Serving) or from the admin API (load a version and pin it, roll back, unpin). Every load
//! is read + checked + warmed on a low-priority thread ([`super::loader`]), and only a fully
//! working version is swapped in; a failed one is logged, counted and remembered (keyed by its
//! files' size and mtime, in [`super::control`]) so the poller does not retry it until its files
//! change. What the HTTP API shows of it is built from [`ModelSnapshot`]s in `server/views.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};

use super::batcher::{Batcher, BatcherConfig};
use super::control::{Control, Failure};
use super::loader::{fingerprint, load_off_thread, LoadSlot};
use super::model::{LoadError, LoadSpec, LoadedModel};
use super::retire::Retirer;
use crate::bundle::{scan_models, scan_versions, valid_model_name, BundleLimits};
use crate::engine::BuildProgress;
use crate::metrics::Metrics;

/// Model used by default when `--default-model` is not given and it exists.
pub const PREFERRED_DEFAULT: &str = "ml100k";

#[derive(Debug, Clone)]
pub struct RegistryConfig {
    pub repo: PathBuf,
    pub default_model: Option<String>,
    pub batcher: BatcherConfig,
    /// `--engine`: the scoring engine of every two-tower model (else each manifest's choice).
    pub engine: Option<crate::engine::EngineKind>,
    pub limits: BundleLimits,
    /// Deadline of one load (`--load-timeout-ms`).
    pub load_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("unknown model `{0}`")]
    UnknownModel(String),
    #[error("model `{model}` has no version {version} on disk")]
    UnknownVersion { model: String, version: u64 },
    #[error("{model} version {version}: {source}")]
    Load {
        model: String,
        version: u64,
        #[source]
        source: LoadError,
    },
    #[error("model `{0}` has no earlier version to roll back to")]
    NoPrevious(String),
    #[error(
        "a load of model `{0}` is still running past its deadline; no other load of it starts \
         until it ends"
    )]
    LoadRunning(String),
    #[error("{model} version {version} was refused ({kind}) and its files have not changed since")]
    KnownBad {
        model: String,
        version: u64,
        kind: &'static str,
    },
    #[error("could not start the inference threads: {0}")]
    Spawn(#[from] std::io::Error),
}

/// One model as the registry holds it at a moment (the API's views are built from this).
pub struct ModelSnapshot {
    pub name: String,
    pub default: bool,
    pub live: Option<Arc<LoadedModel>>,
    pub pinned: Option<u64>,
    /// Versions on disk at the last scan of the model's directory, ascending.
    pub versions: Vec<u64>,
    /// Earlier live versions, most recent last.
    pub previous: Vec<u64>,
    pub failures: Vec<Failure>,
    /// A load in progress: `(version, rows indexed, rows to index)`.
    pub loading: Option<(u64, usize, usize)>,
}

/// One model name: its live version, its batch queue and its load bookkeeping.
pub struct ModelEntry {
    pub name: String,
    live: ArcSwapOption<LoadedModel>,
    pub batcher: Batcher,
    /// Serialises loads of this model (poller vs admin); held across the blocking load, never
    /// touched by requests.
    load_lock: tokio::sync::Mutex<()>,
    /// One permit, held by the load *thread* (not by the task waiting for it): a load past its
    /// deadline releases `load_lock` but keeps running, and must not be joined by more.
    load_thread: Arc<tokio::sync::Semaphore>,
    control: Mutex<Control>,
    /// The load in progress, if any: its version and how far its ANN graph build is.
    loading: Mutex<Option<(u64, Arc<BuildProgress>)>>,
}

impl ModelEntry {
    /// The live version, if any; the caller keeps this `Arc` for the whole request.
    pub fn live(&self) -> Option<Arc<LoadedModel>> {
        self.live.load_full()
    }

    fn control(&self) -> std::sync::MutexGuard<'_, Control> {
        // Control holds plain data updated in single statements; a poisoned lock is still
        // consistent.
        self.control.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn live_version(&self) -> Option<u64> {
        self.live.load().as_ref().map(|m| m.version)
    }
}

pub struct Registry {
    config: RegistryConfig,
    metrics: Metrics,
    models: ArcSwap<BTreeMap<String, Arc<ModelEntry>>>,
    add_lock: Mutex<()>,
    default_model: OnceLock<String>,
    next_load_id: AtomicU64,
    /// Frees swapped-out versions off the request path.
    retirer: Retirer,
}

impl Registry {
    pub fn new(config: RegistryConfig, metrics: Metrics) -> Self {
        let default_model = OnceLock::new();
        if let Some(name) = &config.default_model {
            let _ = default_model.set(name.clone());
        }
        Registry {
            config,
            metrics,
            models: ArcSwap::default(),
            add_lock: Mutex::new(()),
            default_model,
            next_load_id: AtomicU64::new(1),
            retirer: Retirer::default(),
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<ModelEntry>> {
        self.models.load().get(name).cloned()
    }

    /// `None` until a model exists (unless configured).
    pub fn default_name(&self) -> Option<&str> {
        self.default_model.get().map(String::as_str)
    }

    /// The default model's live version: what readiness means.
    pub fn default_live(&self) -> Option<Arc<LoadedModel>> {
        self.get(self.default_name()?)?.live()
    }

    pub fn names(&self) -> Vec<String> {
        self.models.load().keys().cloned().collect()
    }

    fn entry_or_create(&self, name: &str) -> Result<Arc<ModelEntry>, RegistryError> {
        if let Some(e) = self.get(name) {
            return Ok(e);
        }
        let _guard = self.add_lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = self.get(name) {
            return Ok(e);
        }
        let entry = Arc::new(ModelEntry {
            name: name.to_string(),
            live: ArcSwapOption::empty(),
            batcher: Batcher::spawn(name, self.config.batcher, &self.metrics)?,
            load_lock: tokio::sync::Mutex::new(()),
            load_thread: Arc::new(tokio::sync::Semaphore::new(1)),
            control: Mutex::new(Control::default()),
            loading: Mutex::new(None),
        });
        let mut map = BTreeMap::clone(&self.models.load());
        map.insert(name.to_string(), Arc::clone(&entry));
        self.models.store(Arc::new(map));
        Ok(entry)
    }

    /// One scan of the repository: new models get an entry, and every unpinned model moves to
    /// its best version, all models concurrently; returns when their loads are done (start-up
    /// and tests). Errors are logged and counted, never returned: one broken model must not
    /// stop the others.
    pub async fn poll_once(self: &Arc<Self>) {
        let mut tasks = self.start_syncs().await;
        while tasks.join_next().await.is_some() {}
        self.choose_default();
    }

    /// [`Registry::poll_once`] without waiting for the loads it starts, so a slow or stuck load
    /// (hung NFS) never delays the next scan for the other models. A model whose sync is still
    /// running is skipped.
    pub async fn poll_in_background(self: &Arc<Self>) {
        self.start_syncs().await.detach_all();
    }

    async fn start_syncs(self: &Arc<Self>) -> tokio::task::JoinSet<()> {
        let mut tasks = tokio::task::JoinSet::new();
        let repo = self.config.repo.clone();
        self.metrics
            .repository_scans
            .with_label_values(&["repository"])
            .inc();
        let scanned = tokio::task::spawn_blocking(move || scan_models(&repo)).await;
        let names = match scanned {
            Ok(Ok(names)) => names,
            Ok(Err(e)) => {
                self.scan_failed(&self.config.repo, &e.to_string());
                return tasks;
            }
            Err(e) => {
                self.scan_failed(&self.config.repo, &e.to_string());
                return tasks;
            }
        };
        for name in names {
            let entry = match self.entry_or_create(&name) {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(model = %name, error = %e, "cannot serve model");
                    continue;
                }
            };
            let this = Arc::clone(self);
            tasks.spawn(async move {
                // Busy: a load (poller or admin) is running; the next scan looks again.
                let Ok(lock) = entry.load_lock.try_lock() else {
                    return;
                };
                this.sync_locked(&entry).await;
                drop(lock);
                this.choose_default();
            });
        }
        tasks
    }

    fn scan_failed(&self, dir: &Path, error: &str) {
        self.metrics
            .repository_scan_errors
            .with_label_values::<&str>(&[])
            .inc();
        tracing::warn!(dir = %dir.display(), error, "cannot scan the model repository; keeping the live versions");
    }

    /// Without `--default-model`: `ml100k` if present, else the first model by name, passing
    /// over models that were tried and have no live version (a broken first model must not
    /// leave the server never-ready). Waits while an earlier candidate is still loading.
    fn choose_default(&self) {
        if self.default_model.get().is_some() {
            return;
        }
        let models = self.models.load();
        let preferred = models.get(PREFERRED_DEFAULT).into_iter();
        let others = models
            .iter()
            .filter(|(n, _)| n.as_str() != PREFERRED_DEFAULT)
            .map(|(_, e)| e);
        for entry in preferred.chain(others) {
            if entry.live_version().is_some() {
                tracing::info!(model = %entry.name, "default model");
                let _ = self.default_model.set(entry.name.clone());
                return;
            }
            let tried = entry.control().synced && entry.load_lock.try_lock().is_ok();
            if !tried {
                return;
            }
        }
    }

    /// Moves an unpinned model to the highest version on disk that is not known to be broken
    /// (trying lower ones when a load fails). The live version is kept when nothing better loads.
    /// The caller holds `load_lock`.
    async fn sync_locked(&self, entry: &ModelEntry) {
        self.sync_versions(entry).await;
        entry.control().synced = true;
    }

    async fn sync_versions(&self, entry: &ModelEntry) {
        // Scanned even when pinned: the listing `GET /v1/models` shows comes from here.
        let versions = self.versions_on_disk(entry).await;
        if entry.control().pinned().is_some() {
            return;
        }
        for &version in versions.iter().rev() {
            if entry.live_version() == Some(version) {
                return;
            }
            if self.known_bad(entry, version).await {
                continue;
            }
            match self.load_and_swap(entry, version, true).await {
                Ok(_) | Err(RegistryError::LoadRunning(_)) => return,
                Err(_) => {}
            }
        }
    }

    /// Scans `name`'s directory off the async workers and records the listing that
    /// `GET /v1/models` shows; a failed scan is logged and counted, keeps the last listing and
    /// offers no versions.
    async fn versions_on_disk(&self, entry: &ModelEntry) -> Vec<u64> {
        let repo = self.config.repo.clone();
        let model = entry.name.clone();
        self.metrics
            .repository_scans
            .with_label_values(&["model"])
            .inc();
        let error = match tokio::task::spawn_blocking(move || scan_versions(&repo, &model)).await {
            Ok(Ok(v)) => {
                entry.control().listed(v.clone());
                return v;
            }
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        self.scan_failed(&self.config.repo.join(&entry.name), &error);
        Vec::new()
    }

    async fn known_bad(&self, entry: &ModelEntry, version: u64) -> bool {
        let Some(remembered) = entry.control().failed_fingerprint(version) else {
            return false;
        };
        self.unchanged_since(entry, version, remembered).await
    }

    /// Whether `version`'s files still have the `remembered` fingerprint of a failed load.
    async fn unchanged_since(
        &self,
        entry: &ModelEntry,
        version: u64,
        remembered: Option<u64>,
    ) -> bool {
        let dir = self.version_dir(&entry.name, version);
        let now = tokio::time::timeout(
            self.config.load_timeout,
            tokio::task::spawn_blocking(move || fingerprint(&dir)),
        )
        .await;
        match (now, remembered) {
            (Ok(Ok(now)), Some(remembered)) => now == remembered,
            // Stat'able again after a load that could not even stat: worth another try.
            (Ok(Ok(_)), None) => false,
            // Still hanging (or the stat thread failed): do not start another load.
            _ => true,
        }
    }

    fn version_dir(&self, name: &str, version: u64) -> PathBuf {
        self.config.repo.join(name).join(version.to_string())
    }

    /// Loads `version` off the async workers and swaps it in. The caller holds `load_lock`.
    async fn load_and_swap(
        &self,
        entry: &ModelEntry,
        version: u64,
        remember_previous: bool,
    ) -> Result<Arc<LoadedModel>, RegistryError> {
        let Ok(permit) = Arc::clone(&entry.load_thread).try_acquire_owned() else {
            tracing::warn!(model = %entry.name, version, "not loading: an earlier load of this model is still running past its deadline");
            return Err(RegistryError::LoadRunning(entry.name.clone()));
        };
        let spec = LoadSpec {
            name: entry.name.clone(),
            load_id: self.next_load_id.fetch_add(1, Ordering::Relaxed),
            warm_batch: self.config.batcher.max_batch_size,
            instances: self
                .metrics
                .model_instances
                .with_label_values(&[&entry.name]),
            engine: self.config.engine,
            limits: self.config.limits,
            progress: Arc::default(),
        };
        *entry.loading.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((version, Arc::clone(&spec.progress)));
        let start = Instant::now();
        tracing::info!(model = %entry.name, version, "loading model version");
        let dir = self.version_dir(&entry.name, version);
        let slot = LoadSlot::new(permit, self.metrics.load_threads.clone());
        let attempt = load_off_thread(dir, spec, self.config.load_timeout, slot).await;
        *entry.loading.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let elapsed = start.elapsed();
        self.metrics
            .reload_duration
            .with_label_values(&[&entry.name])
            .observe(elapsed.as_secs_f64());
        match attempt.result {
            Ok(model) => Ok(self.swap_in(entry, model, remember_previous, elapsed)),
            Err(source) => {
                let kind = source.kind();
                self.metrics
                    .model_load
                    .with_label_values(&[&entry.name, kind])
                    .inc();
                tracing::error!(model = %entry.name, version, kind, error = %source, "model version refused; the previous version keeps serving");
                entry.control().failed(Failure {
                    version,
                    kind,
                    error: self.redact(&source.to_string()),
                    at: crate::os::unix_seconds(SystemTime::now()),
                    fingerprint: attempt.fingerprint,
                });
                Err(RegistryError::Load {
                    model: entry.name.clone(),
                    version,
                    source,
                })
            }
        }
    }

    /// Makes a loaded version live; the old one is freed off the request path once its last
    /// request ends ([`Retirer`]).
    fn swap_in(
        &self,
        entry: &ModelEntry,
        model: LoadedModel,
        remember_previous: bool,
        elapsed: Duration,
    ) -> Arc<LoadedModel> {
        self.metrics
            .model_load
            .with_label_values(&[&entry.name, "ok"])
            .inc();
        let model = Arc::new(model);
        let version = model.version;
        let old = entry.live.swap(Some(Arc::clone(&model)));
        let old_version = old.as_ref().map(|m| m.version);
        self.metrics.set_live(&entry.name, old_version, version);
        entry
            .control()
            .went_live(version, old_version, remember_previous);
        tracing::info!(
            model = %entry.name,
            version,
            previous = ?old_version,
            n_items = model.manifest.n_rows - 1,
            role = ?model.manifest.role,
            load_ms = elapsed.as_secs_f64() * 1e3,
            "model version live"
        );
        if let Some(old) = old {
            self.retirer.retire(old);
        }
        model
    }

    /// Error messages name files; show them relative to the repository.
    fn redact(&self, message: &str) -> String {
        let prefix = format!("{}/", self.config.repo.display());
        message.replace(&prefix, "")
    }

    /// Admin: loads `version` (if it is not live already) and pins the model to it.
    pub async fn load_pinned(&self, name: &str, version: u64) -> Result<u64, RegistryError> {
        let entry = self.known_entry(name)?;
        let _lock = entry.load_lock.lock().await;
        if !self.versions_on_disk(&entry).await.contains(&version) {
            return Err(RegistryError::UnknownVersion {
                model: name.to_string(),
                version,
            });
        }
        if entry.live_version() != Some(version) {
            self.refuse_timed_out(&entry, version).await?;
            self.load_and_swap(&entry, version, true).await?;
        }
        entry.control().pin(version);
        tracing::info!(model = %name, version, "model pinned");
        Ok(version)
    }

    /// A version whose load ran past its deadline is not loaded again through the admin API
    /// either until its files change: the same files would time out again, each time leaving
    /// one more thread behind.
    async fn refuse_timed_out(
        &self,
        entry: &ModelEntry,
        version: u64,
    ) -> Result<(), RegistryError> {
        let remembered = entry
            .control()
            .failure(version)
            .map(|f| (f.kind, f.fingerprint));
        let Some((kind, print)) = remembered else {
            return Ok(());
        };
        if kind == "timeout" && self.unchanged_since(entry, version, print).await {
            return Err(RegistryError::KnownBad {
                model: entry.name.clone(),
                version,
                kind,
            });
        }
        Ok(())
    }

    /// Admin: back to the version that was live before the current one (or, with no such
    /// history, the next lower version on disk), pinned.
    pub async fn rollback(&self, name: &str) -> Result<u64, RegistryError> {
        let entry = self.known_entry(name)?;
        let _lock = entry.load_lock.lock().await;
        let on_disk = self.versions_on_disk(&entry).await;
        let live = entry.live_version();
        let target = entry.control().rollback_target(live, &on_disk);
        let Some(target) = target else {
            return Err(RegistryError::NoPrevious(name.to_string()));
        };
        let version = target.version;
        self.refuse_timed_out(&entry, version).await?;
        self.load_and_swap(&entry, version, false).await?;
        entry.control().rolled_back(target);
        tracing::info!(model = %name, version, "model rolled back and pinned");
        Ok(version)
    }

    /// Admin: back to following the repository; moves to the best version right away.
    pub async fn unpin(&self, name: &str) -> Result<Option<u64>, RegistryError> {
        let entry = self.known_entry(name)?;
        // Under the load lock: an admin load still running would otherwise pin its version
        // after this unpin and silently undo it.
        let _lock = entry.load_lock.lock().await;
        entry.control().unpin();
        tracing::info!(model = %name, "model unpinned");
        self.sync_locked(&entry).await;
        Ok(entry.live_version())
    }

    fn known_entry(&self, name: &str) -> Result<Arc<ModelEntry>, RegistryError> {
        if !valid_model_name(name) {
            return Err(RegistryError::UnknownModel(name.to_string()));
        }
        self.get(name)
            .ok_or_else(|| RegistryError::UnknownModel(name.to_string()))
    }

    /// Every model's [`ModelSnapshot`], by name.
    pub fn snapshots(&self) -> Vec<ModelSnapshot> {
        self.names()
            .iter()
            .filter_map(|name| self.snapshot(name))
            .collect()
    }

    /// What an operator sees of one model: its live version, pin, versions on disk as of the
    /// last scan (never a scan per request: this route is public, and a directory of 10^5
    /// entries or a hung mount would make every request as slow as a scan), rollback history
    /// and remembered failures.
    pub fn snapshot(&self, name: &str) -> Option<ModelSnapshot> {
        let entry = self.get(name)?;
        let loading = entry
            .loading
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(v, p)| {
                let (done, total) = p.get();
                (*v, done, total)
            });
        let c = entry.control();
        Some(ModelSnapshot {
            name: entry.name.clone(),
            default: self.default_name() == Some(name),
            live: entry.live(),
            pinned: c.pinned(),
            versions: c.listed_versions().to_vec(),
            previous: c.previous().to_vec(),
            failures: c.failures().cloned().collect(),
            loading,
        })
    }
}
