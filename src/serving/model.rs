//! One loaded model version: a bundle checked against its manifest, a runnable ONNX plan and
//! proof that it answers (warm-up). Loading is blocking work; callers run it off the async
//! workers.

use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use prometheus::IntGauge;

use super::rank::{rank, RankRequest, Scoring};
use crate::bundle::{
    Bundle, BundleError, BundleLimits, ItemRead, ItemVocab, Manifest, UserHistories,
};
use crate::engine::{self, BuildProgress, EngineError, EngineKind, IndexBytes, ItemSource};
use crate::onnx::{OnnxScorer, RuntimeError};

/// A model version ready to serve. Requests hold it through an `Arc` for their whole life, so a
/// swap never changes the version under a request; it is freed when the last holder drops it.
pub struct LoadedModel {
    pub name: String,
    pub version: u64,
    /// Unique per load (the same version loaded twice gets two ids); batches are keyed by it.
    pub load_id: u64,
    pub manifest: Manifest,
    pub items: ItemVocab,
    pub users: Option<UserHistories>,
    pub scoring: Scoring,
    /// Time spent building the engine (ANN index, int8 codes) at load.
    pub engine_build_seconds: f64,
    pub loaded_at: SystemTime,
    /// `distilrec_model_instances{model}`, decremented on drop: shows that swapped-out versions
    /// are really freed.
    instances: IntGauge,
}

impl Drop for LoadedModel {
    fn drop(&mut self) {
        self.instances.dec();
        tracing::debug!(model = %self.name, version = self.version, "model version freed");
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("the bundle is for model `{found}`, not `{expected}`")]
    WrongModel { expected: String, found: String },
    #[error("ONNX model rejected: {0}")]
    Runtime(#[from] RuntimeError),
    #[error("scoring engine: {0}")]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Shape(String),
    #[error("warm-up failed: {0}")]
    Warmup(String),
    #[error("loading panicked")]
    Panic,
    #[error("loading did not finish within {0:?} (--load-timeout-ms)")]
    Timeout(std::time::Duration),
}

impl LoadError {
    /// Stable label for `distilrec_model_load_total{result}` and the models API.
    pub fn kind(&self) -> &'static str {
        match self {
            LoadError::Bundle(e) => e.kind(),
            LoadError::WrongModel { .. } => "wrong_model",
            LoadError::Runtime(e) => e.kind(),
            LoadError::Engine(_) => "engine",
            LoadError::Shape(_) => "output_shape",
            LoadError::Warmup(_) => "warmup",
            LoadError::Panic => "panic",
            LoadError::Timeout(_) => "timeout",
        }
    }
}

/// What a load needs besides the directory.
pub struct LoadSpec {
    pub name: String,
    pub load_id: u64,
    /// Largest batch the warm-up runs (the batcher's maximum, capped by memory).
    pub warm_batch: usize,
    pub instances: IntGauge,
    /// `--engine`: overrides the manifest's choice for two-tower bundles.
    pub engine: Option<EngineKind>,
    pub limits: BundleLimits,
    /// Rows an ANN graph build has added so far: the loader's deadline counts them as
    /// progress, and the models API shows them.
    pub progress: Arc<BuildProgress>,
}

/// Reads, checks, loads and warms up the bundle in `dir`.
pub fn load_version(dir: &Path, spec: LoadSpec) -> Result<LoadedModel, LoadError> {
    let read_started = Instant::now();
    let Bundle {
        manifest,
        items,
        users,
        model_bytes,
        item_matrix,
        item_source,
        ann_index,
        ..
    } = Bundle::load_reading(dir, &spec.limits, ItemRead::ForEngine(spec.engine))?;
    let item_source = match item_matrix {
        Some(m) => Some(ItemSource::Matrix(Arc::new(m))),
        None => item_source,
    };
    if manifest.name != spec.name {
        return Err(LoadError::WrongModel {
            expected: spec.name.clone(),
            found: manifest.name,
        });
    }
    let started = Instant::now();
    let scoring = build_scoring(
        &manifest,
        &model_bytes,
        item_source,
        spec.engine,
        ann_index,
        &spec.progress,
    )?;
    let engine_build_seconds = started.elapsed().as_secs_f64();
    if scoring.n_rows() != manifest.n_rows {
        return Err(LoadError::Shape(format!(
            "the model scores {} rows, the manifest says {}",
            scoring.n_rows(),
            manifest.n_rows
        )));
    }
    drop(model_bytes);
    let warm_started = Instant::now();
    warm_up(&scoring, manifest.n_rows, spec.warm_batch)?;
    // Where a load's time goes, for operators sizing rollouts of large catalogues.
    tracing::info!(
        model = %manifest.name,
        version = manifest.version,
        read_ms = (started - read_started).as_millis() as u64,
        engine_ms = (warm_started - started).as_millis() as u64,
        warm_ms = warm_started.elapsed().as_millis() as u64,
        "model version loaded"
    );
    spec.instances.inc();
    Ok(LoadedModel {
        name: manifest.name.clone(),
        version: manifest.version,
        load_id: spec.load_id,
        manifest,
        items,
        users,
        scoring,
        engine_build_seconds,
        loaded_at: SystemTime::now(),
        instances: spec.instances,
    })
}

/// How a bundle's parts score: format 1 → its ONNX graph scores every row; format 2 → the
/// ONNX user encoder plus the engine the manifest names (`engine` overrides it) over the item
/// matrix. Blocking: an ANN index over 10^6 items takes minutes to build when the bundle has
/// no saved graph (`ann_index`); `progress` counts the rows added meanwhile.
pub fn build_scoring(
    manifest: &Manifest,
    model_bytes: &[u8],
    items: Option<ItemSource>,
    engine: Option<EngineKind>,
    ann_index: Option<IndexBytes>,
    progress: &BuildProgress,
) -> Result<Scoring, LoadError> {
    Ok(match items {
        // `OnnxScorer::load` probes the output width, which catches an ONNX graph exported for
        // a different vocabulary than the one in items.tsv / the manifest.
        None => Scoring::FullScores(OnnxScorer::load(model_bytes, manifest.n_rows)?),
        Some(items) => {
            let encoder = OnnxScorer::load_encoder(model_bytes, manifest.n_rows, items.dim())?;
            let params = manifest.serving.clone().unwrap_or_default();
            let kind = engine.unwrap_or(params.engine);
            let engine = engine::build_with(kind, items, &params, ann_index, progress)?;
            Scoring::TwoTower { encoder, engine }
        }
    })
}

/// Runs the shapes the batcher will use (batch 1 and a full batch) through the whole ranking
/// path so the first real request does not pay for lazy initialisation, and refuses a model
/// whose scores are not finite.
fn warm_up(scoring: &Scoring, n_rows: usize, max_batch: usize) -> Result<(), LoadError> {
    // Cap the warm-up at ~16M scores (64 MB) for very large catalogues of format 1.
    let batch = max_batch.clamp(1, (16 << 20) / n_rows.max(1)).max(1);
    let probe: Vec<u32> = (1..n_rows.min(51) as u32).collect();
    let short: &[u32] = &probe[..probe.len().min(1)];
    let k = 10.min(n_rows - 1);
    // The last row too: a graph whose embedding table is shorter than its output passes the
    // probe of the first rows and would fail (tract panics on the Gather) on the first request
    // that uses a high row.
    let last = [(n_rows - 1) as u32];
    for histories in [vec![short], vec![probe.as_slice(); batch], vec![&last[..]]] {
        if let Scoring::FullScores(scorer) = scoring {
            // Every row's score, not only the top k: a NaN row would silently never be served.
            let scores = scorer
                .score_batch(&histories)
                .map_err(|e| LoadError::Warmup(e.to_string()))?;
            if let Some(row) = scores[1..n_rows].iter().position(|s| !s.is_finite()) {
                return Err(LoadError::Warmup(format!(
                    "score of row {} is not finite",
                    row + 1
                )));
            }
        }
        let requests: Vec<RankRequest<'_>> = histories
            .iter()
            .map(|h| RankRequest {
                history: h,
                exclude: &[],
                k,
            })
            .collect();
        let ranked = rank(scoring, &requests).map_err(|e| LoadError::Warmup(e.to_string()))?;
        if ranked.len() != requests.len() {
            return Err(LoadError::Warmup(format!(
                "expected {} answers, got {}",
                requests.len(),
                ranked.len()
            )));
        }
        for (row, score) in ranked.iter().flatten() {
            if !score.is_finite() {
                return Err(LoadError::Warmup(format!(
                    "score of row {row} is not finite"
                )));
            }
        }
    }
    Ok(())
}
