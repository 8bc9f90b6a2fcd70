//! One trained model of a seed, and how its report row is made and evaluated.

use super::error::TrainError;
use super::fit::{evaluate_both, FitResult};
use super::model::MeanMlp;
use super::report::ModelResult;
use crate::bundle::Role;
use crate::data::split::Split;
use crate::onnx::ModelWeights;

/// A trained model of one seed: its report row, exportable weights (`None` for a
/// `--teacher-bundle` teacher, which is already ONNX, and for the ensemble, which has no graph)
/// and its scores `[n_users, n_items]` from the training histories (the parity reference).
pub struct Trained {
    pub result: ModelResult,
    pub weights: Option<ModelWeights>,
    pub scores: Vec<f32>,
}

/// The report row of a model with weights, evaluated on `scores`.
pub fn row(
    name: &str,
    role: Role,
    weights: &ModelWeights,
    scores: &[f32],
    split: &Split,
    seconds: f64,
    settings: serde_json::Value,
) -> ModelResult {
    let arch = weights.architecture();
    let row = ModelResult::new(
        name,
        role,
        &arch.kind,
        arch.description,
        weights.parameter_count(),
        settings,
    );
    evaluated(row, scores, weights.n_rows() - 1, split, seconds)
}

/// `row` with its valid/test metrics from `scores` (`[n_users, n_items]`) and its seconds.
pub fn evaluated(
    mut row: ModelResult,
    scores: &[f32],
    n_items: usize,
    split: &Split,
    seconds: f64,
) -> ModelResult {
    let (valid, test) = evaluate_both(scores, n_items, split);
    (row.valid, row.test) = (valid.0, test.0);
    row.train_seconds = seconds;
    row
}

/// A fitted `mean_mlp` with its row, training curve and epochs.
pub fn trained_mlp(
    name: &str,
    role: Role,
    m: &MeanMlp,
    scores: Vec<f32>,
    split: &Split,
    f: FitResult,
    settings: serde_json::Value,
) -> Result<Trained, TrainError> {
    let weights = m.to_weights()?;
    let mut r = row(name, role, &weights, &scores, split, f.seconds, settings);
    r.epochs = Some(f.epochs);
    r.best_epoch = Some(f.best_epoch);
    r.curve = f.curve;
    Ok(Trained {
        result: r,
        weights: Some(weights),
        scores,
    })
}
