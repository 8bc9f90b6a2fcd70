//! History → top-k for a batch: one model call, then masking and partial-sort selection per
//! request. This is the whole compute of a recommend request; the batcher runs it on its
//! inference threads and the criterion benchmark calls it directly.

use super::standin::{top_k, OnnxScorer, RuntimeError};

/// One request of a batch, in vocabulary rows.
#[derive(Debug, Clone, Copy)]
pub struct RankRequest<'a> {
    pub history: &'a [u32],
    /// Rows never returned besides the history.
    pub exclude: &'a [u32],
    pub k: usize,
}

/// Best `(row, score)` pairs per request, descending. History and `exclude` rows are masked by
/// setting their scores to NaN, which `top_k` never returns: O(len) instead of a lookup per
/// candidate row.
pub fn rank(
    scorer: &OnnxScorer,
    requests: &[RankRequest<'_>],
) -> Result<Vec<Vec<(u32, f32)>>, RuntimeError> {
    let histories: Vec<&[u32]> = requests.iter().map(|r| r.history).collect();
    let mut scores = scorer.score_batch(&histories)?;
    let n = scorer.n_rows();
    assert_eq!(
        scores.len(),
        n * requests.len(),
        "OnnxScorer returns one row of n_rows scores per history"
    );
    Ok(requests
        .iter()
        .zip(scores.chunks_exact_mut(n))
        .map(|(req, row)| {
            for &r in req.history.iter().chain(req.exclude) {
                if let Some(s) = row.get_mut(r as usize) {
                    *s = f32::NAN;
                }
            }
            top_k(row, req.k, &[])
        })
        .collect())
}
