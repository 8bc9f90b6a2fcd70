//! History → top-k for a batch. This is the whole compute of a recommend request; the batcher
//! runs it on its inference threads and the criterion benchmark calls it directly.
//!
//! Two ways to score, one per bundle format:
//! - [`Scoring::FullScores`] (format 1): one model call gives `[batch, n_rows]` scores, then
//!   masking and partial-sort selection per request;
//! - [`Scoring::TwoTower`] (format 2): one model call gives `[batch, d]` user vectors, then a
//!   scoring [`Engine`] searches the item matrix with the exclusions, fused with top-k selection.

use crate::engine::{exclusion_list, Engine, EngineKind, Query};
use crate::onnx::{OnnxScorer, RuntimeError};
use crate::topk::top_k;

/// One request of a batch, in vocabulary rows.
#[derive(Debug, Clone, Copy)]
pub struct RankRequest<'a> {
    pub history: &'a [u32],
    /// Rows never returned besides the history.
    pub exclude: &'a [u32],
    pub k: usize,
}

/// How one loaded model version turns histories into scores.
pub enum Scoring {
    /// Format 1: the ONNX graph outputs every row's score.
    FullScores(OnnxScorer),
    /// Format 2: the ONNX graph outputs a user vector, the engine searches the item side.
    TwoTower {
        encoder: OnnxScorer,
        engine: Box<dyn Engine>,
    },
}

impl Scoring {
    /// Vocabulary rows (including padding row 0) that histories may reference.
    pub fn n_rows(&self) -> usize {
        match self {
            Scoring::FullScores(s) => s.n_rows(),
            Scoring::TwoTower { encoder, .. } => encoder.n_rows(),
        }
    }

    /// The engine of a two-tower model; `None` for format 1.
    pub fn engine(&self) -> Option<EngineKind> {
        match self {
            Scoring::FullScores(_) => None,
            Scoring::TwoTower { engine, .. } => Some(engine.kind()),
        }
    }

    /// See [`crate::engine::Engine::graph`].
    pub fn graph(&self) -> Option<&'static str> {
        match self {
            Scoring::FullScores(_) => None,
            Scoring::TwoTower { engine, .. } => engine.graph(),
        }
    }
}

/// Best `(row, score)` pairs per request, descending. History and `exclude` rows are never
/// returned, nor row 0, nor a non-finite score (an overflowing model; JSON has no form for it).
pub fn rank(
    scoring: &Scoring,
    requests: &[RankRequest<'_>],
) -> Result<Vec<Vec<(u32, f32)>>, RuntimeError> {
    match scoring {
        Scoring::FullScores(scorer) => rank_full(scorer, requests),
        Scoring::TwoTower { encoder, engine } => {
            let histories: Vec<&[u32]> = requests.iter().map(|r| r.history).collect();
            let excluded: Vec<Vec<u32>> = requests
                .iter()
                .map(|r| exclusion_list(r.history.iter().chain(r.exclude).copied()))
                .collect();
            let queries: Vec<Query<'_>> = requests
                .iter()
                .zip(&excluded)
                .map(|(r, e)| Query { k: r.k, exclude: e })
                .collect();
            let mut ranked =
                encoder.score_batch_with(&histories, |users| engine.search(users, &queries))?;
            for r in &mut ranked {
                r.retain(|(_, s)| s.is_finite());
            }
            Ok(ranked)
        }
    }
}

/// Format 1. History and `exclude` rows are masked by setting their scores to NaN, which
/// `top_k` never returns: O(len) instead of a lookup per candidate row. Non-finite scores are
/// masked the same way, so every returned score is finite.
fn rank_full(
    scorer: &OnnxScorer,
    requests: &[RankRequest<'_>],
) -> Result<Vec<Vec<(u32, f32)>>, RuntimeError> {
    let histories: Vec<&[u32]> = requests.iter().map(|r| r.history).collect();
    let mut scores = scorer.score_batch(&histories)?;
    let n = scorer.width();
    assert_eq!(
        scores.len(),
        n * requests.len(),
        "OnnxScorer returns one row of n_rows scores per history"
    );
    Ok(requests
        .iter()
        .zip(scores.chunks_exact_mut(n))
        .map(|(req, row)| {
            // A non-finite score has no place in a ranking and no JSON form (`null`).
            row.iter_mut()
                .filter(|s| !s.is_finite())
                .for_each(|s| *s = f32::NAN);
            for &r in req.history.iter().chain(req.exclude) {
                if let Some(s) = row.get_mut(r as usize) {
                    *s = f32::NAN;
                }
            }
            top_k(row, req.k, &[])
        })
        .collect())
}
