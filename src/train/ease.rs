//! EASE (Steck 2019): closed-form item-item model, B = I − P·diag(1/diag P), P = (XᵀX + λI)⁻¹,
//! diag(B) = 0. Trained on the training split only; λ picked on validation NDCG@10.

use faer::linalg::solvers::DenseSolveCore;
use faer::{Mat, Side};

use super::error::TrainError;
use crate::onnx::{EaseWeights, ModelWeights};

/// Item-item Gram matrix XᵀX of the binary user×item matrix (f64, dense, symmetric).
pub fn gram(train: &[Vec<u32>], n_items: usize) -> Mat<f64> {
    let mut g = Mat::<f64>::zeros(n_items, n_items);
    for items in train {
        for &i in items {
            for &j in items {
                g[(i as usize, j as usize)] += 1.0;
            }
        }
    }
    g
}

/// The EASE weight matrix `[n_items, n_items]`, row-major f32, zero diagonal.
pub fn fit(g: &Mat<f64>, lambda: f64) -> Result<Vec<f32>, TrainError> {
    let n = g.nrows();
    let mut a = g.clone();
    for i in 0..n {
        a[(i, i)] += lambda;
    }
    let p = a
        .llt(Side::Lower)
        .map_err(|e| {
            TrainError::Numeric(format!("EASE: XᵀX + λI is not positive definite: {e:?}"))
        })?
        .inverse();
    let mut b = vec![0f32; n * n];
    for j in 0..n {
        let d = p[(j, j)];
        for i in 0..n {
            if i != j {
                b[i * n + j] = (-p[(i, j)] / d) as f32;
            }
        }
    }
    Ok(b)
}

/// Scores `[n_users, n_items]` = Σ over the history of B's rows (f32 sums, like the ONNX graph).
pub fn score(b: &[f32], n_items: usize, histories: &[Vec<u32>]) -> Vec<f32> {
    let mut out = vec![0f32; histories.len() * n_items];
    for (u, h) in histories.iter().enumerate() {
        let row = &mut out[u * n_items..(u + 1) * n_items];
        for &i in h {
            let bi = &b[i as usize * n_items..(i as usize + 1) * n_items];
            for (o, v) in row.iter_mut().zip(bi) {
                *o += v;
            }
        }
    }
    out
}

/// Contract weights: row/column 0 (padding) are zero.
pub fn to_weights(b: &[f32], n_items: usize) -> ModelWeights {
    let n_rows = n_items + 1;
    let mut w = vec![0f32; n_rows * n_rows];
    for i in 0..n_items {
        w[(i + 1) * n_rows + 1..(i + 2) * n_rows]
            .copy_from_slice(&b[i * n_items..(i + 1) * n_items]);
    }
    ModelWeights::Ease(EaseWeights { n_rows, b: w })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solution_satisfies_the_normal_equations_off_the_diagonal() {
        // EASE's KKT conditions: (G + λI)·B − G = −diag(μ), i.e. off-diagonal entries vanish.
        let train = vec![vec![0, 1, 2], vec![1, 2], vec![0, 3], vec![2, 3, 1]];
        let n = 4;
        let g = gram(&train, n);
        let lambda = 0.5;
        let b = fit(&g, lambda).unwrap();
        for i in 0..n {
            assert_eq!(b[i * n + i], 0.0);
            for j in 0..n {
                if i == j {
                    continue;
                }
                let mut lhs = 0.0;
                for k in 0..n {
                    let a = g[(i, k)] + if i == k { lambda } else { 0.0 };
                    lhs += a * b[k * n + j] as f64;
                }
                assert!(
                    (lhs - g[(i, j)]).abs() < 1e-4,
                    "({i},{j}): {lhs} vs {}",
                    g[(i, j)]
                );
            }
        }
    }

    #[test]
    fn exported_weights_match_scores() {
        let train = vec![vec![0, 1, 2], vec![1, 2], vec![0, 3]];
        let g = gram(&train, 4);
        let b = fit(&g, 1.0).unwrap();
        let s = score(&b, 4, &train);
        let w = to_weights(&b, 4);
        let r = w.score_reference(&[1, 2, 3]);
        for i in 0..4 {
            assert!((s[i] - r[i + 1]).abs() < 1e-6);
        }
        assert_eq!(r[0], 0.0);
    }
}
