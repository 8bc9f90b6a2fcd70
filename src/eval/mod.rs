//! Ranking metrics under the full-ranking protocol (RecBole's definitions).
//!
//! For every user with at least one target item, all items are ranked by score, excluding the
//! items the user is known to have (train for validation; train + valid for test).
//! Binary relevance; NDCG's ideal DCG is over min(|targets|, K); averages are over those users.

use std::collections::BTreeMap;

use crate::data::Split;
use crate::topk::top_indices;

/// Cut-offs reported everywhere.
pub const KS: [usize; 2] = [10, 20];
const METRICS: [&str; 6] = ["recall", "ndcg", "hit", "precision", "f1", "mrr"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Valid,
    Test,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Metrics(pub BTreeMap<String, f64>);

impl Metrics {
    pub fn get(&self, name: &str) -> f64 {
        self.0.get(name).copied().unwrap_or(f64::NAN)
    }

    pub fn ndcg10(&self) -> f64 {
        self.get("ndcg@10")
    }
}

/// Metrics of one user's ranked list: `hits[r]` is whether the item at rank r is relevant.
fn user_metrics(hits: &[bool], n_targets: usize, k: usize) -> [f64; 6] {
    let top = &hits[..k.min(hits.len())];
    let n_hit = top.iter().filter(|&&h| h).count() as f64;
    let dcg: f64 = top
        .iter()
        .enumerate()
        .filter(|(_, &h)| h)
        .map(|(r, _)| 1.0 / ((r + 2) as f64).log2())
        .sum();
    let idcg: f64 = (0..n_targets.min(k))
        .map(|r| 1.0 / ((r + 2) as f64).log2())
        .sum();
    let recall = n_hit / n_targets as f64;
    let precision = n_hit / k as f64;
    let f1 = if recall + precision > 0.0 {
        2.0 * recall * precision / (recall + precision)
    } else {
        0.0
    };
    let mrr = top
        .iter()
        .position(|&h| h)
        .map_or(0.0, |r| 1.0 / (r + 1) as f64);
    let hit = if n_hit > 0.0 { 1.0 } else { 0.0 };
    [recall, dcg / idcg, hit, precision, f1, mrr]
}

/// `scores`: row-major `[n_users, n_items]`, column i = item index i.
pub fn evaluate(scores: &[f32], n_items: usize, split: &Split, stage: Stage) -> Metrics {
    assert_eq!(
        scores.len(),
        split.n_users() * n_items,
        "scores must be [n_users, n_items]"
    );
    let mut known = vec![false; n_items];
    evaluate_lists(split, n_items, stage, |u, excluded, kmax| {
        for &i in excluded {
            known[i as usize] = true;
        }
        let row = &scores[u * n_items..(u + 1) * n_items];
        let mut candidates: Vec<u32> = (0..n_items as u32)
            .filter(|&i| !known[i as usize])
            .collect();
        for &i in excluded {
            known[i as usize] = false;
        }
        top_indices(row, &mut candidates, kmax)
    })
}

/// The same metrics from ranked lists: `rank(user, excluded, kmax)` returns that user's best
/// `kmax` item indices, best first, none of them in `excluded` (the items the stage excludes:
/// train for validation, train + valid for test). Serving engines are evaluated this way.
pub fn evaluate_lists(
    split: &Split,
    n_items: usize,
    stage: Stage,
    mut rank: impl FnMut(usize, &[u32], usize) -> Vec<u32>,
) -> Metrics {
    let kmax = *KS.iter().max().expect("KS is not empty");
    let mut sums = [[0.0f64; 6]; KS.len()];
    let mut n_evaluated = 0usize;
    let mut known = vec![false; n_items];
    let mut is_target = vec![false; n_items];
    for u in 0..split.n_users() {
        let targets = match stage {
            Stage::Valid => &split.valid[u],
            Stage::Test => &split.test[u],
        };
        if targets.is_empty() {
            continue;
        }
        let excluded: Vec<u32> = match stage {
            Stage::Valid => split.train[u].clone(),
            Stage::Test => split.train[u]
                .iter()
                .chain(&split.valid[u])
                .copied()
                .collect(),
        };
        for &i in &excluded {
            known[i as usize] = true;
        }
        for &i in targets {
            is_target[i as usize] = true;
        }
        let ranked = rank(u, &excluded, kmax);
        debug_assert!(ranked.iter().all(|&i| !known[i as usize]));
        let hits: Vec<bool> = ranked.iter().map(|&i| is_target[i as usize]).collect();
        let n_targets = targets
            .iter()
            .filter(|&&i| !known[i as usize])
            .count()
            .max(1);
        for (ki, &k) in KS.iter().enumerate() {
            let m = user_metrics(&hits, n_targets, k);
            for (s, v) in sums[ki].iter_mut().zip(m) {
                *s += v;
            }
        }
        n_evaluated += 1;
        for &i in &excluded {
            known[i as usize] = false;
        }
        for &i in targets {
            is_target[i as usize] = false;
        }
    }
    let mut out = BTreeMap::new();
    for (ki, &k) in KS.iter().enumerate() {
        for (mi, name) in METRICS.iter().enumerate() {
            out.insert(
                format!("{name}@{k}"),
                sums[ki][mi] / n_evaluated.max(1) as f64,
            );
        }
    }
    Metrics(out)
}

/// Popularity baseline: each item's number of training interactions.
pub fn popularity_scores(split: &Split, n_items: usize) -> Vec<f32> {
    let mut counts = vec![0f32; n_items];
    for items in &split.train {
        for &i in items {
            counts[i as usize] += 1.0;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_one(train: Vec<u32>, valid: Vec<u32>, test: Vec<u32>) -> Split {
        Split {
            seed: 0,
            ratios: [0.8, 0.1, 0.1],
            train: vec![train],
            valid: vec![valid],
            test: vec![test],
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn hand_computed_single_user() {
        // 25 items; item 0 is in train (excluded), scores descend with the index except item 0.
        let n = 25;
        let mut scores: Vec<f32> = (0..n).map(|i| (n - i) as f32).collect();
        scores[0] = 1000.0;
        // Ranking after exclusion: 1, 2, 3, ... Test targets at ranks 2 and 5 (items 2, 5),
        // and item 24 at rank 24 (outside both cut-offs).
        let s = split_one(vec![0], vec![], vec![2, 5, 24]);
        let m = evaluate(&scores, n, &s, Stage::Test);
        let dcg = 1.0 / 3f64.log2() + 1.0 / 6f64.log2();
        let idcg = 1.0 + 1.0 / 3f64.log2() + 1.0 / 4f64.log2();
        assert!(close(m.get("ndcg@10"), dcg / idcg));
        assert!(close(m.get("recall@10"), 2.0 / 3.0));
        assert!(close(m.get("precision@10"), 0.2));
        assert!(close(m.get("hit@10"), 1.0));
        assert!(close(m.get("mrr@10"), 0.5));
        let (p, r) = (0.2, 2.0 / 3.0);
        assert!(close(m.get("f1@10"), 2.0 * p * r / (p + r)));
        assert!(close(m.get("precision@20"), 0.1));
    }

    #[test]
    fn excluded_items_do_not_take_ranks_and_users_without_targets_are_skipped() {
        let n = 5;
        let scores = vec![
            9.0, 8.0, 7.0, 6.0, 5.0, // user 0: item 0 (train) and 1 (valid) excluded at test
            1.0, 1.0, 1.0, 1.0, 1.0, // user 1: no test items → skipped
        ];
        let s = Split {
            seed: 0,
            ratios: [0.8, 0.1, 0.1],
            train: vec![vec![0], vec![0]],
            valid: vec![vec![1], vec![1]],
            test: vec![vec![2], vec![]],
        };
        let m = evaluate(&scores, n, &s, Stage::Test);
        assert!(close(m.get("ndcg@10"), 1.0));
        assert!(close(m.get("mrr@10"), 1.0));
        // At validation only train is excluded: item 1 is first.
        let v = evaluate(&scores, n, &s, Stage::Valid);
        assert!(close(v.get("hit@10"), 1.0));
        assert!(close(v.get("mrr@10"), 1.0));
    }

    #[test]
    fn a_miss_scores_zero_and_ties_break_by_index() {
        let n = 30;
        let scores = vec![0.0f32; n];
        // All tied: ranking is 0, 1, 2, ...; target 25 is outside top 20.
        let s = split_one(vec![], vec![], vec![25]);
        let m = evaluate(&scores, n, &s, Stage::Test);
        assert!(close(m.get("ndcg@20"), 0.0) && close(m.get("hit@20"), 0.0));
        let s = split_one(vec![], vec![], vec![3]);
        let m = evaluate(&scores, n, &s, Stage::Test);
        assert!(close(m.get("mrr@10"), 0.25));
    }

    #[test]
    fn popularity_counts_training_interactions() {
        let s = Split {
            seed: 0,
            ratios: [0.8, 0.1, 0.1],
            train: vec![vec![0, 1], vec![1]],
            valid: vec![vec![2], vec![]],
            test: vec![vec![], vec![2]],
        };
        assert_eq!(popularity_scores(&s, 3), vec![1.0, 2.0, 0.0]);
    }
}
