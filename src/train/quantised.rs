//! The int8 export next to the f32 one: both student bundles are read back from disk with the
//! server's loader and run in tract, then compared on quality (test NDCG@10 / Recall@10), size
//! and latency, and checked against each other (parity of every user's scores).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::error::TrainError;
use super::export::median;
use super::external::ExternalTeacher;
use super::fit::evaluate_both;
use crate::data::split::Split;
use crate::data::Interactions;
use crate::topk::top_indices;

/// Largest allowed `max |int8 − f32|` score difference, as a fraction of the standard deviation
/// of the f32 student's scores (over every user × item). The int8 error comes from rounding
/// each weight to half a step of its row's scale (1/254 of the row's largest magnitude); on
/// ML-100K the measured ratio is reported next to this bound in report.md.
pub const PARITY_BOUND: f64 = 0.1;

/// Alternating latency rounds per bundle (the reported figure is the median round).
const LATENCY_ROUNDS: usize = 3;

#[derive(Debug, Clone, Serialize)]
pub struct QuantisedExport {
    /// f32 first, then int8.
    pub rows: Vec<BundleEval>,
    /// Users whose scores were compared (all of them).
    pub users: usize,
    pub max_abs_diff: f64,
    /// Standard deviation of the f32 bundle's scores: the scale the bound is relative to.
    pub score_std: f64,
    /// `max_abs_diff / score_std`, checked against [`PARITY_BOUND`].
    pub ratio: f64,
    pub bound: f64,
    /// Users whose top 10 (train items excluded) is the same set in both bundles.
    pub same_top10: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BundleEval {
    pub precision: String,
    pub bundle: PathBuf,
    /// `model.onnx` plus the item file: the weights on disk.
    pub weight_bytes: u64,
    pub test: BTreeMap<String, f64>,
    pub latency_single_us: f64,
    pub latency_batch32_us: f64,
}

/// Loads both bundles, scores every user's training history with each, evaluates both on the
/// test split and fails if the int8 scores leave the stated bound. The steps share the two
/// bundles' scores (the large part of the memory), so they run in one function.
pub fn compare(
    f32_dir: &Path,
    int8_dir: &Path,
    data: &Interactions,
    split: &Split,
    latency_iters: usize,
) -> Result<QuantisedExport, TrainError> {
    let n_items = data.n_items();
    let dirs = [("f32", f32_dir), ("int8", int8_dir)];
    let bundles = dirs
        .iter()
        .map(|(_, dir)| ExternalTeacher::load(dir, data))
        .collect::<Result<Vec<_>, _>>()?;
    // Latency in alternating rounds (f32, int8, then int8, f32, ...), the median round per
    // bundle: one bundle timed after the other picked up whatever the host did meanwhile.
    let mut timings: [Vec<(f64, f64)>; 2] = [Vec::new(), Vec::new()];
    for round in 0..LATENCY_ROUNDS {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let iters = latency_iters.div_ceil(LATENCY_ROUNDS).max(1);
            timings[i].push(bundles[i].latency(&split.train, iters)?);
        }
    }
    let mut rows = Vec::new();
    let mut scores = Vec::new();
    for (((precision, dir), bundle), timing) in dirs.iter().zip(&bundles).zip(timings) {
        let s = bundle.score(&split.train)?;
        let (_, test) = evaluate_both(&s, n_items, split);
        let item_file = bundle
            .manifest
            .item_side
            .as_ref()
            .map(|side| dir.join(&side.file));
        let weight_bytes = bundle.onnx_bytes
            + match item_file {
                Some(p) => std::fs::metadata(&p)
                    .map_err(|e| TrainError::io(&p, e))?
                    .len(),
                None => 0,
            };
        rows.push(BundleEval {
            precision: (*precision).into(),
            bundle: dir.to_path_buf(),
            weight_bytes,
            test: test.0,
            latency_single_us: median(&mut timing.iter().map(|t| t.0).collect::<Vec<_>>()),
            latency_batch32_us: median(&mut timing.iter().map(|t| t.1).collect::<Vec<_>>()),
        });
        scores.push(s);
    }
    let (a, b) = (&scores[0], &scores[1]);
    let max_abs_diff = a
        .iter()
        .zip(b)
        .fold(0f64, |m, (x, y)| m.max((x - y).abs() as f64));
    let score_std = std_dev(a);
    let ratio = max_abs_diff / score_std;
    let same = (0..split.n_users())
        .filter(|&u| {
            let seen = &split.train[u];
            let row = |s: &[f32]| top10(&s[u * n_items..(u + 1) * n_items], seen);
            row(a) == row(b)
        })
        .count();
    let out = QuantisedExport {
        rows,
        users: split.n_users(),
        max_abs_diff,
        score_std,
        ratio,
        bound: PARITY_BOUND,
        same_top10: same as f64 / split.n_users().max(1) as f64,
    };
    if ratio.is_nan() || ratio > PARITY_BOUND {
        return Err(TrainError::Parity {
            model: format!("{} (int8 vs f32)", int8_dir.display()),
            max_abs_diff,
            tolerance: PARITY_BOUND * score_std,
        });
    }
    Ok(out)
}

fn std_dev(xs: &[f32]) -> f64 {
    let n = xs.len().max(1) as f64;
    let mean = xs.iter().map(|&x| x as f64).sum::<f64>() / n;
    (xs.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt()
}

/// The 10 best items of one user's scores (item-index columns), training items excluded, as a
/// sorted set (the evaluation's own selection).
fn top10(scores: &[f32], seen: &[u32]) -> Vec<u32> {
    let seen: std::collections::HashSet<u32> = seen.iter().copied().collect();
    let mut candidates: Vec<u32> = (0..scores.len() as u32)
        .filter(|i| !seen.contains(i))
        .collect();
    let mut best = top_indices(scores, &mut candidates, 10);
    best.sort_unstable();
    best
}
