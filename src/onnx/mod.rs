//! The model families as plain weights, their ONNX export, and the tract runtime that serves them.
//!
//! The ONNX contract (input `history` int64 `[batch, L]`, 0 = padding; output `scores` float32
//! `[batch, n_rows]`) is documented in `docs/model-bundle.md`. [`ModelWeights::score_reference`]
//! is the same computation in plain Rust so tests can check the exported graph against it.

mod declared;
mod export;
mod runtime;
mod synthetic;
mod weights;

pub use declared::element_count;
pub use export::{Precision, IR_VERSION, OPSET};
pub use runtime::{OnnxScorer, RuntimeError};
pub use synthetic::{
    synthetic_items, synthetic_users, write_synthetic_bundle, write_synthetic_two_tower,
    write_synthetic_two_tower_as,
};
pub use weights::{Activation, Dense, EaseWeights, MeanMlpWeights, ModelWeights, ShapeError};

/// Every row's score for each history, row-major `[histories.len(), n_rows]`, from a bundle of
/// either format: format 1 runs its ONNX graph; format 2 runs the user encoder and scores every
/// row of the item matrix exactly (`u · v_r + b_r`). For parity checks and offline tools; the
/// server never materialises this matrix for format 2.
pub fn bundle_scores(
    bundle: &crate::bundle::Bundle,
    histories: &[&[u32]],
) -> Result<Vec<f32>, RuntimeError> {
    let n_rows = bundle.manifest.n_rows;
    match &bundle.item_matrix {
        None => OnnxScorer::load(&bundle.model_bytes, n_rows)?.score_batch(histories),
        Some(m) => {
            let encoder = OnnxScorer::load_encoder(&bundle.model_bytes, n_rows, m.dim())?;
            let users = encoder.score_batch(histories)?;
            Ok(users
                .chunks_exact(m.dim())
                .flat_map(|u| (0..n_rows).map(move |r| m.score(u, r)))
                .collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_weights_have_consistent_shapes_and_counts() {
        let w = ModelWeights::MeanMlp(MeanMlpWeights::random(11, 4, &[6, 3], 1));
        w.check_shapes().unwrap();
        assert_eq!(
            w.parameter_count(),
            (11 * 4 + 4 * 6 + 6 + 6 * 3 + 3 + 3 * 11 + 11) as u64
        );
        assert_eq!(w.architecture().hidden, vec![6, 3]);
        let e = ModelWeights::Ease(EaseWeights::random(5, 1));
        e.check_shapes().unwrap();
        assert_eq!(e.parameter_count(), 25);
        let ModelWeights::Ease(ew) = &e else {
            unreachable!()
        };
        assert!(ew.b[..5].iter().all(|&x| x == 0.0));
        assert!((0..5).all(|i| ew.b[i * 5 + i] == 0.0));
    }

    #[test]
    fn same_seed_same_weights() {
        assert_eq!(
            MeanMlpWeights::random(7, 3, &[2], 9),
            MeanMlpWeights::random(7, 3, &[2], 9)
        );
        assert_ne!(EaseWeights::random(4, 1), EaseWeights::random(4, 2));
    }

    #[test]
    fn shape_errors_are_reported() {
        let mut w = MeanMlpWeights::random(5, 2, &[3], 0);
        w.layers[0].b.pop();
        assert!(w.check_shapes().unwrap_err().0.contains("layer 0"));
        let e = EaseWeights {
            n_rows: 3,
            b: vec![0.0; 8],
        };
        assert!(e.check_shapes().is_err());
    }

    #[test]
    fn int8_encoder_runs_in_tract_close_to_f32_at_a_third_of_its_size() {
        let w = MeanMlpWeights::random(300, 16, &[16], 4);
        let (f32_onnx, i8_onnx) = (w.to_encoder_onnx(), w.to_encoder_onnx_int8());
        assert!(
            (i8_onnx.len() as f64) < 0.4 * f32_onnx.len() as f64,
            "{} vs {} bytes",
            i8_onnx.len(),
            f32_onnx.len()
        );
        let f = OnnxScorer::load_encoder(&f32_onnx, 300, 16).unwrap();
        let q = OnnxScorer::load_encoder(&i8_onnx, 300, 16).unwrap();
        // The runtime keeps the embedding table (300 × 16, most of the weights) as int8 codes
        // plus one scale per row, not as a folded f32 copy.
        let table_f32 = 300 * 16 * 4;
        assert!(f.constant_bytes() >= table_f32, "{}", f.constant_bytes());
        assert!(
            q.constant_bytes() < f.constant_bytes() - table_f32 / 2,
            "int8 plan holds {} bytes of constants, f32 plan {}",
            q.constant_bytes(),
            f.constant_bytes()
        );
        let histories: Vec<Vec<u32>> = (0..20)
            .map(|u| {
                (0..1 + u % 9)
                    .map(|j| 1 + (u * 31 + j * 17) % 299)
                    .collect()
            })
            .collect();
        let refs: Vec<&[u32]> = histories.iter().map(Vec::as_slice).collect();
        let (a, b) = (f.score_batch(&refs).unwrap(), q.score_batch(&refs).unwrap());
        assert_eq!(a.len(), b.len());
        let spread = a.iter().fold(0f32, |m, x| m.max(x.abs()));
        let worst = a
            .iter()
            .zip(&b)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        // Each weight is off by at most half a step (1/254 of its row's largest magnitude);
        // through the mean and one tanh layer that stays within a few percent of the output.
        assert!(worst > 0.0, "the int8 graph is not the f32 one");
        assert!(
            worst <= 0.02 * spread,
            "max |Δ| {worst} vs output scale {spread}"
        );
    }

    #[test]
    fn reference_ignores_padding_and_uses_the_mean() {
        let w = ModelWeights::MeanMlp(MeanMlpWeights::random(9, 4, &[5], 3));
        assert_eq!(
            w.score_reference(&[3, 5]),
            w.score_reference(&[0, 3, 0, 5, 0])
        );
        // The mean of one repeated row equals that row alone.
        let a = w.score_reference(&[4, 4]);
        let b = w.score_reference(&[4]);
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-6));
        let e = ModelWeights::Ease(EaseWeights::random(6, 3));
        assert!(e.score_reference(&[]).iter().all(|&s| s == 0.0));
        assert_eq!(e.score_reference(&[2, 0]), e.score_reference(&[2]));
    }
}
