//! Full ranking at any catalogue size: user vectors from the tower, every item scored through
//! the exact serving engine (`crate::engine::exact`: blocked GEMM fused with a streaming top-k,
//! the code the server runs), in batches of users on a small thread pool. Memory is one batch
//! of queries and the engine's copy of the item side; the `[users, items]` score matrix never
//! exists. Used for early stopping, the final evaluation, the teacher's top-K KD lists and the
//! student's current top items.

use rayon::prelude::*;

use super::tower::Tower;
use crate::data::split::Split;
use crate::engine::exact::Exact;
use crate::engine::{exclusion_list, Engine, Query};
use crate::eval::{evaluate_lists, Metrics, Stage, KS};

/// Users per engine call: one GEMM per item block serves the whole batch.
const BATCH: usize = 128;

/// Each listed user's best `k_of(u)` items, best first, never one of `exclude_of(u)`.
/// `inputs[u]` is user u's tower input (the training history).
pub fn top_items(
    tower: &Tower,
    inputs: &[Vec<u32>],
    users: &[u32],
    k_of: &(dyn Fn(u32) -> usize + Sync),
    exclude_of: &(dyn Fn(u32) -> Vec<u32> + Sync),
    threads: usize,
    progress: Option<&indicatif::ProgressBar>,
) -> Vec<Vec<u32>> {
    let engine = Exact::new(&tower.item_matrix());
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .expect("a thread pool of a few threads can be built");
    pool.install(|| {
        users
            .par_chunks(BATCH)
            .flat_map_iter(|chunk| {
                let histories: Vec<&[u32]> =
                    chunk.iter().map(|&u| &inputs[u as usize][..]).collect();
                let z = tower.forward(&histories).users().to_vec();
                let excluded: Vec<Vec<u32>> = chunk
                    .iter()
                    .map(|&u| exclusion_list(exclude_of(u).into_iter().map(|i| i + 1)))
                    .collect();
                let queries: Vec<Query<'_>> = chunk
                    .iter()
                    .zip(&excluded)
                    .map(|(&u, ex)| Query {
                        k: k_of(u),
                        exclude: ex,
                    })
                    .collect();
                let found = engine.search(&z, &queries);
                if let Some(bar) = progress {
                    bar.inc(chunk.len() as u64);
                }
                found
                    .into_iter()
                    .map(|list| {
                        list.into_iter()
                            .map(|(row, _)| row - 1)
                            .collect::<Vec<u32>>()
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    })
}

/// Valid and test metrics of `tower` on the users of `split` that have valid or test items,
/// from one ranking pass per user (train excluded, `max(K) + |valid|` items: the test list is
/// that list without the valid items, the same as ranking with train + valid excluded).
/// Returns the metrics and, per user of `split`, the ranked list (empty for users not ranked).
pub fn evaluate(
    tower: &Tower,
    split: &Split,
    extra_k: usize,
    threads: usize,
    progress: Option<&indicatif::ProgressBar>,
) -> (Metrics, Metrics, Vec<Vec<u32>>) {
    let kmax = *KS.iter().max().expect("KS is not empty");
    let n_items = tower.n_items;
    let users: Vec<u32> = (0..split.n_users() as u32)
        .filter(|&u| {
            let u = u as usize;
            !split.valid[u].is_empty() || !split.test[u].is_empty() || extra_k > 0
        })
        .collect();
    let ranked = top_items(
        tower,
        &split.train,
        &users,
        &|u| (kmax + split.valid[u as usize].len()).max(extra_k),
        &|u| split.train[u as usize].clone(),
        threads,
        progress,
    );
    let mut lists = vec![Vec::new(); split.n_users()];
    for (&u, list) in users.iter().zip(ranked) {
        lists[u as usize] = list;
    }
    let valid = evaluate_lists(split, n_items, Stage::Valid, |u, _, k| {
        lists[u].iter().take(k).copied().collect()
    });
    let test = evaluate_lists(split, n_items, Stage::Test, |u, _, k| {
        let mut v = split.valid[u].clone();
        v.sort_unstable();
        lists[u]
            .iter()
            .filter(|i| v.binary_search(i).is_err())
            .take(k)
            .copied()
            .collect()
    });
    (valid, test, lists)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::Activation;
    use crate::train::model::MlpSpec;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// The streaming evaluation equals the dense one (`eval::evaluate` over the full
    /// `[users, items]` score matrix) on a random split.
    #[test]
    fn streaming_evaluation_equals_the_dense_one() {
        let (n_users, n_items) = (60, 300);
        let mut rng = StdRng::seed_from_u64(4);
        let spec = MlpSpec {
            dim: 8,
            hidden: vec![6],
            activation: Activation::Tanh,
        };
        let tower = Tower::new(n_items, spec, &mut rng);
        let mut pick = |n: usize| -> Vec<u32> {
            let mut v: Vec<u32> = (0..n)
                .map(|_| rng.random_range(0..n_items as u32))
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let mut split = Split {
            seed: 0,
            ratios: [0.8, 0.1, 0.1],
            train: Vec::new(),
            valid: Vec::new(),
            test: Vec::new(),
        };
        for u in 0..n_users {
            let all = pick(40);
            let (a, b) = (all.len() * 8 / 10, all.len() * 9 / 10);
            split.train.push(all[..a].to_vec());
            split.valid.push(if u % 7 == 0 {
                Vec::new()
            } else {
                all[a..b].to_vec()
            });
            split.test.push(all[b..].to_vec());
        }
        let z = tower.user_vectors(&split.train);
        let dl = tower.last_dim();
        let dense: Vec<f32> = (0..n_users)
            .flat_map(|u| {
                let zu = z[u * dl..(u + 1) * dl].to_vec();
                let t = &tower;
                (0..n_items as u32).map(move |i| t.score(&zu, i))
            })
            .collect();
        let want_valid = crate::eval::evaluate(&dense, n_items, &split, Stage::Valid);
        let want_test = crate::eval::evaluate(&dense, n_items, &split, Stage::Test);
        let (valid, test, _) = evaluate(&tower, &split, 0, 2, None);
        for (got, want) in [(&valid, &want_valid), (&test, &want_test)] {
            assert_eq!(
                got.0.keys().collect::<Vec<_>>(),
                want.0.keys().collect::<Vec<_>>()
            );
            for (k, w) in &want.0 {
                assert!((got.get(k) - w).abs() < 1e-9, "{k}: {} vs {w}", got.get(k));
            }
        }
    }

    /// Top-K lists equal a brute-force sort of every allowed item's score.
    #[test]
    fn top_k_lists_equal_brute_force() {
        let n_items = 500;
        let mut rng = StdRng::seed_from_u64(8);
        let spec = MlpSpec {
            dim: 6,
            hidden: vec![],
            activation: Activation::Relu,
        };
        let tower = Tower::new(n_items, spec, &mut rng);
        let inputs: Vec<Vec<u32>> = (0..40)
            .map(|_| {
                (0..10)
                    .map(|_| rng.random_range(0..n_items as u32))
                    .collect()
            })
            .collect();
        let users: Vec<u32> = (0..40).collect();
        let got = top_items(
            &tower,
            &inputs,
            &users,
            &|u| 5 + u as usize,
            &|u| inputs[u as usize].clone(),
            2,
            None,
        );
        for &u in &users {
            let z = tower.user_vectors(&[inputs[u as usize].clone()]);
            let mut all: Vec<(u32, f32)> = (0..n_items as u32)
                .filter(|i| !inputs[u as usize].contains(i))
                .map(|i| (i, tower.score(&z, i)))
                .collect();
            all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let want: Vec<u32> = all.iter().take(5 + u as usize).map(|p| p.0).collect();
            assert_eq!(got[u as usize], want, "user {u}");
        }
    }
}
