//! Exported graphs run by tract compute exactly the contract's forward pass
//! (`ModelWeights::score_reference`), including padding, empty histories and mixed batches.

use distilrec::onnx::{Activation, EaseWeights, MeanMlpWeights, ModelWeights, OnnxScorer};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const TOL: f32 = 1e-4;

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (j, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= TOL,
            "{what}: column {j}: tract {g} vs reference {w}"
        );
    }
}

fn models() -> Vec<(&'static str, ModelWeights)> {
    let mut tanh = MeanMlpWeights::random(77, 12, &[20, 8], 11);
    tanh.activation = Activation::Tanh;
    vec![
        (
            "mean_mlp relu 2 layers",
            ModelWeights::MeanMlp(MeanMlpWeights::random(150, 16, &[32, 24], 7)),
        ),
        ("mean_mlp tanh", ModelWeights::MeanMlp(tanh)),
        (
            "mean_mlp no hidden layer",
            ModelWeights::MeanMlp(MeanMlpWeights::random(40, 8, &[], 3)),
        ),
        ("ease", ModelWeights::Ease(EaseWeights::random(90, 5))),
    ]
}

fn random_histories(rng: &mut SmallRng, n_rows: usize, count: usize) -> Vec<Vec<u32>> {
    (0..count)
        .map(|_| {
            let len = rng.random_range(0..30);
            (0..len)
                .map(|_| {
                    // Some explicit padding inside histories, which the mask must ignore.
                    if rng.random_range(0..6) == 0 {
                        0
                    } else {
                        rng.random_range(1..n_rows as u32)
                    }
                })
                .collect()
        })
        .collect()
}

#[test]
fn tract_matches_reference_one_history_at_a_time() {
    let mut rng = SmallRng::seed_from_u64(1);
    for (name, w) in models() {
        let scorer = OnnxScorer::load(&w.to_onnx(), w.n_rows()).unwrap();
        let mut cases = random_histories(&mut rng, w.n_rows(), 8);
        cases.push(vec![]);
        cases.push(vec![0, 0, 0]);
        cases.push(vec![1, 0, 0, 0]);
        cases.push(vec![w.n_rows() as u32 - 1]);
        for h in &cases {
            let got = scorer.score_batch(&[h]).unwrap();
            assert_close(
                &got,
                &w.score_reference(h),
                &format!("{name}, history {h:?}"),
            );
        }
    }
}

#[test]
fn batching_and_padding_do_not_change_a_rows_scores() {
    let mut rng = SmallRng::seed_from_u64(2);
    for (name, w) in models() {
        let n = w.n_rows();
        let scorer = OnnxScorer::load(&w.to_onnx(), n).unwrap();
        let mut cases = random_histories(&mut rng, n, 12);
        cases.insert(3, vec![]);
        let refs: Vec<&[u32]> = cases.iter().map(Vec::as_slice).collect();
        let batch = scorer.score_batch(&refs).unwrap();
        assert_eq!(batch.len(), cases.len() * n, "{name}");
        for (i, h) in cases.iter().enumerate() {
            let row = &batch[i * n..(i + 1) * n];
            assert_close(
                row,
                &w.score_reference(h),
                &format!("{name}, batch row {i}"),
            );
            let alone = scorer.score_batch(&[h]).unwrap();
            assert_close(row, &alone, &format!("{name}, batch row {i} vs alone"));
        }
    }
}

#[test]
fn scorer_is_usable_from_several_threads() {
    let w = ModelWeights::MeanMlp(MeanMlpWeights::random(64, 8, &[16], 9));
    let scorer = std::sync::Arc::new(OnnxScorer::load(&w.to_onnx(), 64).unwrap());
    let handles: Vec<_> = (1..5u32)
        .map(|t| {
            let (scorer, w) = (scorer.clone(), w.clone());
            std::thread::spawn(move || {
                let h = [t, t + 10, t + 20];
                let want = w.score_reference(&h);
                for _ in 0..20 {
                    assert_close(&scorer.score_batch(&[&h]).unwrap(), &want, "threaded");
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("scoring thread panicked");
    }
}

#[test]
fn width_other_than_the_models_is_refused() {
    for (name, w) in models() {
        let bytes = w.to_onnx();
        for expected in [w.n_rows() - 1, w.n_rows() + 1] {
            let err = OnnxScorer::load(&bytes, expected).expect_err(name);
            assert!(!err.to_string().is_empty());
        }
    }
}
