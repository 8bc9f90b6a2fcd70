//! TEMPORARY stand-in for `crate::onnx::OnnxScorer` and `crate::topk::top_k` until the onnx
//! branch lands. Same signatures; deterministic fake scores.

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RuntimeError(String);

pub struct OnnxScorer {
    n_rows: usize,
}

impl OnnxScorer {
    pub fn load(model_bytes: &[u8], expected_rows: usize) -> Result<Self, RuntimeError> {
        if model_bytes.len() < 4 {
            return Err(RuntimeError("model too short".into()));
        }
        Ok(OnnxScorer {
            n_rows: expected_rows,
        })
    }

    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    pub fn score_batch(&self, histories: &[&[u32]]) -> Result<Vec<f32>, RuntimeError> {
        let mut out = Vec::with_capacity(histories.len() * self.n_rows);
        for h in histories {
            let s: u64 = h.iter().map(|&r| r as u64).sum();
            for j in 0..self.n_rows {
                out.push(((j as u64 * 7919 + s) % 1000) as f32 / 1000.0);
            }
        }
        Ok(out)
    }
}

pub fn top_k(scores: &[f32], k: usize, excluded: &[u32]) -> Vec<(u32, f32)> {
    let mut v: Vec<(u32, f32)> = scores
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(i, s)| !s.is_nan() && !excluded.contains(&(*i as u32)))
        .map(|(i, s)| (i as u32, *s))
        .collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    v.truncate(k);
    v
}
