//! One loaded model version: a bundle checked against its manifest, a runnable ONNX plan and
//! proof that it answers (warm-up). Loading is blocking work; callers run it off the async
//! workers.

use std::path::Path;
use std::time::SystemTime;

use prometheus::IntGauge;

use super::standin::OnnxScorer;
use crate::bundle::{Bundle, BundleError, ItemVocab, Manifest, UserHistories};

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
    pub scorer: OnnxScorer,
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
    Runtime(String),
    #[error("warm-up failed: {0}")]
    Warmup(String),
    #[error("loading panicked")]
    Panic,
}

impl LoadError {
    /// Stable label for `distilrec_model_load_total{result}` and the models API.
    pub fn kind(&self) -> &'static str {
        match self {
            LoadError::Bundle(e) => e.kind(),
            LoadError::WrongModel { .. } => "wrong_model",
            LoadError::Runtime(_) => "runtime",
            LoadError::Warmup(_) => "warmup",
            LoadError::Panic => "panic",
        }
    }
}

/// What a load needs besides the directory.
pub struct LoadSpec<'a> {
    pub name: &'a str,
    pub load_id: u64,
    /// Largest batch the warm-up runs (the batcher's maximum, capped by memory).
    pub warm_batch: usize,
    pub instances: IntGauge,
}

/// Reads, checks, loads and warms up the bundle in `dir`.
pub fn load_version(dir: &Path, spec: LoadSpec<'_>) -> Result<LoadedModel, LoadError> {
    let Bundle {
        manifest,
        items,
        users,
        model_bytes,
        ..
    } = Bundle::load(dir)?;
    if manifest.name != spec.name {
        return Err(LoadError::WrongModel {
            expected: spec.name.to_string(),
            found: manifest.name,
        });
    }
    // `OnnxScorer::load` probes the output width, which catches an ONNX graph exported for a
    // different vocabulary than the one in items.tsv / the manifest.
    let scorer = OnnxScorer::load(&model_bytes, manifest.n_rows)
        .map_err(|e| LoadError::Runtime(e.to_string()))?;
    if scorer.n_rows() != manifest.n_rows {
        return Err(LoadError::Runtime(format!(
            "the model scores {} rows, the manifest says {}",
            scorer.n_rows(),
            manifest.n_rows
        )));
    }
    drop(model_bytes);
    warm_up(&scorer, manifest.n_rows, spec.warm_batch)?;
    spec.instances.inc();
    Ok(LoadedModel {
        name: manifest.name.clone(),
        version: manifest.version,
        load_id: spec.load_id,
        manifest,
        items,
        users,
        scorer,
        loaded_at: SystemTime::now(),
        instances: spec.instances,
    })
}

/// Runs the shapes the batcher will use (batch 1 and a full batch) so the first real request
/// does not pay for lazy initialisation, and refuses a model whose scores are not finite.
fn warm_up(scorer: &OnnxScorer, n_rows: usize, max_batch: usize) -> Result<(), LoadError> {
    // Cap the warm-up output at ~16M floats (64 MB) for very large catalogues.
    let batch = max_batch.clamp(1, (16 << 20) / n_rows.max(1)).max(1);
    let probe: Vec<u32> = (1..n_rows.min(51) as u32).collect();
    let short: &[u32] = &probe[..probe.len().min(1)];
    for histories in [vec![short], vec![probe.as_slice(); batch]] {
        let scores = scorer
            .score_batch(&histories)
            .map_err(|e| LoadError::Warmup(e.to_string()))?;
        if scores.len() != histories.len() * n_rows {
            return Err(LoadError::Warmup(format!(
                "expected {} scores, got {}",
                histories.len() * n_rows,
                scores.len()
            )));
        }
        if let Some(row) = scores[1..n_rows].iter().position(|s| !s.is_finite()) {
            return Err(LoadError::Warmup(format!(
                "score of row {} is not finite",
                row + 1
            )));
        }
    }
    Ok(())
}
