//! The exported student through every serving engine: the two-tower student's user vectors come
//! from its exported ONNX user encoder (tract), each engine searches its item matrix with the
//! evaluation protocol's exclusions, and the ranking metrics are computed from what the engine
//! returned — so the report shows what serving with that engine would score, next to exact f32.

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::error::TrainError;
use crate::bundle::{item_row, item_rows, row_item};
use crate::data::split::Split;
use crate::engine::{self, exclusion_list, EngineKind, EngineParams, Query};
use crate::eval::{evaluate_lists, Stage};
use crate::onnx::{MeanMlpWeights, OnnxScorer};

/// One engine's test metrics for the exported student.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EngineEval {
    pub engine: String,
    /// Test-split metrics (the keys of [`crate::eval::Metrics`]).
    pub test: std::collections::BTreeMap<String, f64>,
    /// Test NDCG@10 divided by the exact engine's.
    pub ndcg10_vs_exact: f64,
    pub recall10_vs_exact: f64,
    /// Building the engine (int8 codes, HNSW graph) from the item matrix.
    pub build_seconds: f64,
    /// Mean search time per user at batch 1, in µs (one thread).
    pub search_us_per_user: f64,
}

/// Evaluates `weights` (a `mean_mlp` student) served through each engine on the test split.
pub fn evaluate(
    weights: &MeanMlpWeights,
    split: &Split,
    params: &EngineParams,
) -> Result<Vec<EngineEval>, TrainError> {
    let runtime = |e: &dyn std::fmt::Display| TrainError::Runtime {
        model: "student (user encoder)".into(),
        message: e.to_string(),
    };
    let encoder =
        OnnxScorer::load_encoder(&weights.to_encoder_onnx(), weights.n_rows, weights.d_last())
            .map_err(|e| runtime(&e))?;
    // User vectors from the training histories (the protocol's input for both stages).
    let histories: Vec<Vec<u32>> = split.train.iter().map(|h| item_rows(h)).collect();
    let dim = weights.d_last();
    let mut users = Vec::with_capacity(histories.len() * dim);
    for chunk in histories.chunks(64) {
        let refs: Vec<&[u32]> = chunk.iter().map(Vec::as_slice).collect();
        users.extend(encoder.score_batch(&refs).map_err(|e| runtime(&e))?);
    }
    let items = Arc::new(weights.item_matrix());
    let n_items = weights.n_rows - 1;
    let mut out: Vec<EngineEval> = Vec::new();
    // ANN is measured through its graph even where serving would scan a catalogue this small
    // (`full_scan_below`): the row is there to show what the graph loses.
    let mut params = params.clone();
    params.ann.full_scan_below = 0;
    for kind in EngineKind::ALL {
        let started = Instant::now();
        let engine = engine::build(kind, Arc::clone(&items), &params).map_err(|e| runtime(&e))?;
        let build_seconds = started.elapsed().as_secs_f64();
        let mut searching = 0.0f64;
        let mut searched = 0usize;
        let metrics = evaluate_lists(split, n_items, Stage::Test, |u, excluded, kmax| {
            let ex = exclusion_list(excluded.iter().map(|&i| item_row(i)));
            let query = Query {
                k: kmax,
                exclude: &ex,
            };
            let t = Instant::now();
            let found = engine.search(&users[u * dim..(u + 1) * dim], &[query]);
            searching += t.elapsed().as_secs_f64();
            searched += 1;
            found[0].iter().map(|&(row, _)| row_item(row)).collect()
        });
        let exact = out
            .first()
            .map(|e| (e.test["ndcg@10"], e.test["recall@10"]));
        let (n0, r0) = exact.unwrap_or((metrics.get("ndcg@10"), metrics.get("recall@10")));
        out.push(EngineEval {
            engine: kind.name().into(),
            ndcg10_vs_exact: metrics.get("ndcg@10") / n0,
            recall10_vs_exact: metrics.get("recall@10") / r0,
            test: metrics.0,
            build_seconds,
            search_us_per_user: searching * 1e6 / searched.max(1) as f64,
        });
    }
    Ok(out)
}
