//! From trained weights to served artefacts: ONNX bytes, tract latency, the parity check
//! against the training forward, and the model bundle.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::SeedableRng;

use super::error::TrainError;
use crate::bundle::{
    item_rows, write_bundle_with, DatasetInfo, ItemVocab, Manifest, Role, SplitInfo, UserHistories,
    ITEM_MATRIX_INT8_FILE,
};
use crate::data::split::Split;
use crate::data::Interactions;
use crate::engine::{EngineParams, DTYPE_INT8};
use crate::onnx::MeanMlpWeights;
use crate::onnx::{ModelWeights, OnnxScorer, Precision};

/// An exported model: its ONNX encoding and a tract plan of it.
pub struct Exported {
    pub name: String,
    pub weights: ModelWeights,
    pub onnx: Vec<u8>,
    pub scorer: OnnxScorer,
}

impl Exported {
    pub fn new(name: &str, weights: ModelWeights) -> Result<Self, TrainError> {
        let onnx = weights.to_onnx();
        let scorer = load_scorer(name, &weights, &onnx)?;
        Ok(Exported {
            name: name.to_string(),
            weights,
            onnx,
            scorer,
        })
    }

    /// Scores `[histories.len(), n_rows]` from tract, batched.
    pub fn score(&self, histories: &[Vec<u32>]) -> Result<Vec<f32>, TrainError> {
        let rows: Vec<Vec<u32>> = histories.iter().map(|h| item_rows(h)).collect();
        let mut out = Vec::with_capacity(histories.len() * self.weights.n_rows());
        for chunk in rows.chunks(64) {
            let refs: Vec<&[u32]> = chunk.iter().map(Vec::as_slice).collect();
            out.extend(
                self.scorer
                    .score_batch(&refs)
                    .map_err(|e| self.runtime(e))?,
            );
        }
        Ok(out)
    }

    fn runtime(&self, e: impl std::fmt::Display) -> TrainError {
        TrainError::Runtime {
            model: self.name.clone(),
            message: e.to_string(),
        }
    }

    /// Median µs of a single-history call and of a 32-history call, over `iters` calls each,
    /// with real users' training histories (cycled).
    pub fn latency(&self, histories: &[Vec<u32>], iters: usize) -> Result<(f64, f64), TrainError> {
        let rows: Vec<Vec<u32>> = histories.iter().map(|h| item_rows(h)).collect();
        time_calls(&rows, iters, |batch| {
            self.scorer
                .score_batch(batch)
                .map(drop)
                .map_err(|e| self.runtime(e))
        })
    }

    /// Compares tract's scores with the training forward (`reference`: `[n_users, n_items]`,
    /// item-index columns) for a seeded sample of users; fails above `tolerance`.
    pub fn check_parity(
        &self,
        histories: &[Vec<u32>],
        reference: &[f32],
        n_users: usize,
        tolerance: f64,
        seed: u64,
    ) -> Result<Parity, TrainError> {
        let n_items = self.weights.n_rows() - 1;
        let mut rng = StdRng::seed_from_u64(seed);
        let users: Vec<usize> =
            sample(&mut rng, histories.len(), n_users.min(histories.len())).into_vec();
        let sampled: Vec<Vec<u32>> = users.iter().map(|&u| histories[u].clone()).collect();
        let onnx = self.score(&sampled)?;
        let mut max_abs_diff = 0f64;
        for (k, &u) in users.iter().enumerate() {
            let got = &onnx[k * (n_items + 1) + 1..(k + 1) * (n_items + 1)];
            let want = &reference[u * n_items..(u + 1) * n_items];
            for (a, b) in got.iter().zip(want) {
                max_abs_diff = max_abs_diff.max((a - b).abs() as f64);
            }
        }
        let parity = Parity {
            model: self.name.clone(),
            users: users.len(),
            max_abs_diff,
            tolerance,
        };
        if max_abs_diff.is_nan() || max_abs_diff > tolerance {
            return Err(TrainError::Parity {
                model: self.name.clone(),
                max_abs_diff,
                tolerance,
            });
        }
        Ok(parity)
    }
}

fn load_scorer(name: &str, weights: &ModelWeights, onnx: &[u8]) -> Result<OnnxScorer, TrainError> {
    OnnxScorer::load(onnx, weights.n_rows()).map_err(|e| TrainError::Runtime {
        model: name.to_string(),
        message: e.to_string(),
    })
}

/// Median µs of `call` on one history and on 32 histories, over `iters` calls each, cycling
/// through the non-empty `rows` (vocabulary rows). One untimed call first: tract sizes its
/// scratch buffers on first use.
pub fn time_calls(
    rows: &[Vec<u32>],
    iters: usize,
    call: impl Fn(&[&[u32]]) -> Result<(), TrainError>,
) -> Result<(f64, f64), TrainError> {
    let rows: Vec<&[u32]> = rows
        .iter()
        .filter(|h| !h.is_empty())
        .map(Vec::as_slice)
        .collect();
    if rows.is_empty() {
        return Err(TrainError::Config("no user has a training history".into()));
    }
    call(&[rows[0]])?;
    let (mut single, mut batch) = (Vec::with_capacity(iters), Vec::with_capacity(iters));
    for i in 0..iters {
        let t = Instant::now();
        std::hint::black_box(call(&[rows[i % rows.len()]])?);
        single.push(t.elapsed().as_secs_f64() * 1e6);
        let refs: Vec<&[u32]> = (0..32).map(|k| rows[(i * 32 + k) % rows.len()]).collect();
        let t = Instant::now();
        std::hint::black_box(call(&refs)?);
        batch.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok((median(&mut single), median(&mut batch)))
}

/// The middle value (the upper one of an even count); sorts `xs`.
pub(super) fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// What the manifest records besides the model itself.
pub struct BundleMeta<'a> {
    pub data: &'a Interactions,
    pub split: &'a Split,
    pub split_protocol: &'a str,
    pub max_history: usize,
    pub test_metrics: BTreeMap<String, f64>,
    pub distillation: Option<serde_json::Value>,
}

/// An exported graph's scores against the training forward: the largest difference over
/// `users` users, and the tolerance it had to stay under.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Parity {
    pub model: String,
    pub users: usize,
    pub max_abs_diff: f64,
    pub tolerance: f64,
}

/// Writes `model` as a new bundle version: format 1 (its full-scores ONNX), or with
/// `two_tower` and a `mean_mlp` model format 2 (the user-encoder ONNX + `items.f32`, served by
/// the engine in `two_tower`). [`Precision::Int8`] (format 2 only) stores the encoder's weight
/// matrices and the item vectors as int8 with per-row scales (`items.i8`).
///
/// Long because the three forms (format 1, format 2 f32, format 2 int8) share the manifest,
/// vocabulary and user files and differ in a few lines each; one function keeps the shared
/// parts written once.
pub fn write(
    repo: &std::path::Path,
    name: &str,
    role: Role,
    model: &Exported,
    meta: &BundleMeta<'_>,
    two_tower: Option<&EngineParams>,
    precision: Precision,
) -> Result<PathBuf, TrainError> {
    let data = meta.data;
    if precision == Precision::Int8 && two_tower.is_none() {
        return Err(TrainError::Config(format!(
            "{}: an int8 export is a two-tower bundle",
            model.name
        )));
    }
    let split_tower: Option<(&MeanMlpWeights, &EngineParams)> = match (&model.weights, two_tower) {
        (ModelWeights::MeanMlp(w), Some(p)) => Some((w, p)),
        (_, Some(_)) => {
            return Err(TrainError::Config(format!(
                "{}: only mean_mlp models can be exported as two-tower bundles",
                model.name
            )))
        }
        _ => None,
    };
    let mut manifest = match split_tower {
        Some((w, params)) => {
            let mut m = Manifest::two_tower(
                name,
                role,
                w.n_rows,
                w.d_last(),
                true,
                model.weights.architecture(),
            );
            m.serving = Some(params.clone());
            if precision == Precision::Int8 {
                if let Some(side) = m.item_side.as_mut() {
                    side.file = ITEM_MATRIX_INT8_FILE.into();
                    side.dtype = DTYPE_INT8.into();
                }
                m.architecture.description.push_str(
                    "; weights stored as int8 with one f32 scale per row (embedding rows, \
                     layer output units, item vectors), biases f32",
                );
            }
            m
        }
        None => Manifest::new(
            name,
            role,
            model.weights.n_rows(),
            model.weights.architecture(),
        ),
    };
    manifest.parameters = model.weights.parameter_count();
    manifest.dataset = Some(DatasetInfo {
        name: data.name.clone(),
        sha256: data.sha256.clone(),
        n_users: data.n_users(),
        n_items: data.n_items(),
        n_interactions: data.records.len(),
    });
    manifest.split = Some(SplitInfo {
        protocol: meta.split_protocol.to_string(),
        seed: meta.split.seed,
        ratios: meta.split.ratios,
    });
    manifest.distillation = meta.distillation.clone();
    manifest.metrics = meta.test_metrics.clone();
    let items = ItemVocab::new(
        data.item_ids
            .iter()
            .cloned()
            .zip(data.item_titles.iter().cloned())
            .collect(),
    );
    // Training histories are in timestamp order, so the tail is the most recent.
    let users: HashMap<String, Vec<u32>> = meta
        .split
        .train
        .iter()
        .enumerate()
        .filter(|(_, h)| !h.is_empty())
        .map(|(u, h)| {
            let tail = &h[h.len().saturating_sub(meta.max_history)..];
            (data.user_ids[u].clone(), item_rows(tail))
        })
        .collect();
    let users = UserHistories::new(users);
    let (onnx, matrix) = match split_tower {
        Some((w, _)) if precision == Precision::Int8 => {
            (w.to_encoder_onnx_int8(), Some(w.item_matrix()))
        }
        Some((w, _)) => (w.to_encoder_onnx(), Some(w.item_matrix())),
        None => (model.onnx.clone(), None),
    };
    Ok(write_bundle_with(
        repo,
        manifest,
        &onnx,
        &items,
        Some(&users),
        matrix.as_ref(),
    )?)
}
