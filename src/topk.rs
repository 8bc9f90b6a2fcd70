//! Top-k selection over one row of scores: the one place it is written.
//!
//! - [`top_k`] / [`TopK`] serve requests: vocabulary rows, row 0 (padding) and NaN scores are
//!   never returned, the heap compares with IEEE order.
//! - [`top_indices`] ranks for evaluation and distillation targets: item indices (0 is an item),
//!   a total order (`f32::total_cmp`) so every score, NaN included, has one place. Evaluation
//!   needs that to be reproducible whatever the model outputs; the server must never return a
//!   NaN, so the two differ exactly there.
//!
//! A full sort of a 100k-wide row costs 10–50× a partial selection (NOTES), and tract's `TopK`
//! sorts the whole row, so selection happens here: one pass with a bounded min-heap. Once the heap
//! is full almost every score fails a single comparison against the current k-th best.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// [`TopK::new`] reserves at most this many slots up front.
const PREALLOCATE_MAX: usize = 1024;

/// Excluded lists longer than this are sorted once and binary-searched.
const LINEAR_EXCLUDE_MAX: usize = 16;

/// Best k rows by score, descending (ties: lower row first). Never returns row 0, a row in
/// `excluded`, or a NaN score. Partial selection, not a full sort.
pub fn top_k(scores: &[f32], k: usize, excluded: &[u32]) -> Vec<(u32, f32)> {
    let k = k.min(scores.len().saturating_sub(1));
    if k == 0 {
        return Vec::new();
    }
    let sorted_excluded;
    let is_excluded: Box<dyn Fn(u32) -> bool + '_> = if excluded.len() <= LINEAR_EXCLUDE_MAX {
        Box::new(|row| excluded.contains(&row))
    } else {
        let mut v = excluded.to_vec();
        v.sort_unstable();
        sorted_excluded = v;
        Box::new(|row| sorted_excluded.binary_search(&row).is_ok())
    };
    let mut best = TopK::new(k);
    for (row, &score) in scores.iter().enumerate().skip(1) {
        // `admits` is one comparison once the accumulator is full; NaN never passes it.
        if best.admits(score) && !is_excluded(row as u32) {
            best.push(row as u32, score);
        }
    }
    best.into_sorted()
}

/// Indices of the `k` best candidates by score, best first, by `f32::total_cmp` with ties broken
/// by the lower index, so the result does not depend on the selection algorithm. `candidates`
/// is reordered; fewer than `k` candidates are all returned, sorted.
pub fn top_indices(scores: &[f32], candidates: &mut Vec<u32>, k: usize) -> Vec<u32> {
    let better = |a: &u32, b: &u32| {
        let (sa, sb) = (scores[*a as usize], scores[*b as usize]);
        sb.total_cmp(&sa).then(a.cmp(b))
    };
    if candidates.len() > k {
        candidates.select_nth_unstable_by(k, better);
        candidates.truncate(k);
    }
    candidates.sort_unstable_by(better);
    candidates.clone()
}

/// Streaming top-k: rows are offered one at a time (any order) and the best k by score are
/// kept, ties broken by the lower row. The scoring engines feed it block by block so the full
/// `[batch, n_rows]` score matrix never exists.
#[derive(Debug, Clone)]
pub struct TopK {
    k: usize,
    // The heap's top is the worst of the best k seen so far.
    heap: BinaryHeap<Reverse<Ranked>>,
    threshold: f32,
}

impl TopK {
    pub fn new(k: usize) -> Self {
        TopK {
            k,
            // Reserve for the common small k only: `k` can come from a manifest setting, and
            // the heap grows as needed when rows actually arrive.
            heap: BinaryHeap::with_capacity(k.saturating_add(1).min(PREALLOCATE_MAX)),
            threshold: if k == 0 {
                f32::INFINITY
            } else {
                f32::NEG_INFINITY
            },
        }
    }

    /// Whether `score` could enter: cheap pre-test before the caller checks exclusions. False
    /// for NaN and, once full, for anything below the current k-th best.
    #[inline(always)]
    pub fn admits(&self, score: f32) -> bool {
        score >= self.threshold
    }

    /// The k-th best score so far (`-inf` until k rows are held).
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// How many rows it keeps.
    pub fn k(&self) -> usize {
        self.k
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Offers one row. NaN scores are ignored. Offering the same row twice keeps both.
    pub fn push(&mut self, row: u32, score: f32) {
        if self.k == 0 || score.is_nan() {
            return;
        }
        let cand = Ranked { score, row };
        if self.heap.len() == self.k {
            match self.heap.peek() {
                Some(worst) if cand > worst.0 => {}
                _ => return,
            }
            self.heap.pop();
        }
        self.heap.push(Reverse(cand));
        if self.heap.len() == self.k {
            self.threshold = self.heap.peek().map_or(f32::NEG_INFINITY, |r| r.0.score);
        }
    }

    /// The rows held, best first.
    pub fn into_sorted(self) -> Vec<(u32, f32)> {
        // Ascending order of `Reverse<Ranked>` is best first.
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|Reverse(r)| (r.row, r.score))
            .collect()
    }
}

/// A scored row ordered by quality: higher score is greater; on equal scores the lower row is.
#[derive(Debug, Clone, Copy)]
struct Ranked {
    score: f32,
    row: u32,
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        // NaN never enters the heap. IEEE comparison (not total_cmp) keeps -0.0 and 0.0 tied,
        // as the admission test `score <= threshold` sees them.
        self.score
            .partial_cmp(&other.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| other.row.cmp(&self.row))
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ranked {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_indices_equals_a_full_sort_with_ties_signed_zeros_and_nan() {
        use rand::{rngs::SmallRng, Rng, SeedableRng};
        let mut rng = SmallRng::seed_from_u64(11);
        let special = [0.0, -0.0, f32::NAN, -f32::NAN, f32::INFINITY, 1.0, 1.0];
        for trial in 0..200 {
            let n = rng.random_range(1..60);
            let scores: Vec<f32> = (0..n)
                .map(|_| {
                    if rng.random_bool(0.3) {
                        special[rng.random_range(0..special.len())]
                    } else {
                        rng.random_range(-2i8..=2) as f32
                    }
                })
                .collect();
            let mut candidates: Vec<u32> = (0..n as u32).filter(|_| rng.random_bool(0.8)).collect();
            let mut want = candidates.clone();
            want.sort_by(|&a, &b| {
                scores[b as usize]
                    .total_cmp(&scores[a as usize])
                    .then(a.cmp(&b))
            });
            let k = rng.random_range(0..n + 3);
            want.truncate(k);
            let got = top_indices(&scores, &mut candidates, k);
            assert_eq!(got, want, "trial {trial}: scores {scores:?}, k {k}");
        }
    }
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    /// The definition, by full sort.
    fn reference(scores: &[f32], k: usize, excluded: &[u32]) -> Vec<(u32, f32)> {
        let mut all: Vec<(u32, f32)> = scores
            .iter()
            .enumerate()
            .skip(1)
            .map(|(r, &s)| (r as u32, s))
            .filter(|(r, s)| !s.is_nan() && !excluded.contains(r))
            .collect();
        all.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap().then(a.0.cmp(&b.0)));
        all.truncate(k);
        all
    }

    #[test]
    fn picks_best_descending_and_skips_row_zero() {
        let scores = [100.0, 1.0, 5.0, 3.0, 4.0];
        assert_eq!(top_k(&scores, 2, &[]), vec![(2, 5.0), (4, 4.0)]);
    }

    #[test]
    fn ties_prefer_the_lower_row() {
        let scores = [0.0, 2.0, 7.0, 7.0, 2.0, 7.0];
        assert_eq!(top_k(&scores, 2, &[]), vec![(2, 7.0), (3, 7.0)]);
        assert_eq!(
            top_k(&scores, 4, &[]),
            vec![(2, 7.0), (3, 7.0), (5, 7.0), (1, 2.0)]
        );
    }

    #[test]
    fn excluded_rows_are_never_returned() {
        let scores = [0.0, 9.0, 8.0, 7.0, 6.0];
        assert_eq!(top_k(&scores, 2, &[1, 3]), vec![(2, 8.0), (4, 6.0)]);
        // Long exclusion lists take the sorted path.
        let many: Vec<u32> = (1..40).rev().collect();
        let wide: Vec<f32> = (0..50).map(|i| i as f32).collect();
        assert_eq!(
            top_k(&wide, 3, &many),
            vec![(49, 49.0), (48, 48.0), (47, 47.0)]
        );
    }

    #[test]
    fn k_larger_than_the_catalogue_returns_everything_valid() {
        let scores = [5.0, 1.0, f32::NAN, 3.0];
        assert_eq!(top_k(&scores, 10, &[]), vec![(3, 3.0), (1, 1.0)]);
        assert!(top_k(&scores, 0, &[]).is_empty());
        assert!(top_k(&[], 3, &[]).is_empty());
        assert!(top_k(&[1.0], 3, &[]).is_empty());
    }

    #[test]
    fn nan_scores_are_skipped_everywhere() {
        let scores = [0.0, f32::NAN, 1.0, f32::NAN, f32::NEG_INFINITY, 2.0];
        assert_eq!(
            top_k(&scores, 3, &[]),
            vec![(5, 2.0), (2, 1.0), (4, f32::NEG_INFINITY)]
        );
    }

    #[test]
    fn accumulator_in_any_order_matches_the_scan() {
        let mut rng = SmallRng::seed_from_u64(7);
        for _ in 0..100 {
            let n = rng.random_range(2..200);
            let scores: Vec<f32> = (0..n).map(|_| rng.random_range(-4i32..4) as f32).collect();
            let k = rng.random_range(0..n + 2);
            let mut order: Vec<u32> = (1..n as u32).collect();
            // Reverse order: ties must still prefer the lower row.
            order.reverse();
            let mut acc = TopK::new(k);
            for &r in &order {
                acc.push(r, scores[r as usize]);
            }
            assert_eq!(acc.into_sorted(), reference(&scores, k, &[]));
        }
    }

    #[test]
    fn matches_a_full_sort_on_random_rows() {
        let mut rng = SmallRng::seed_from_u64(42);
        for case in 0..200 {
            let n = rng.random_range(1..300);
            // Coarse values so ties are common.
            let scores: Vec<f32> = (0..n)
                .map(|_| match rng.random_range(0..20) {
                    0 => f32::NAN,
                    1 => -0.0,
                    _ => rng.random_range(-8i32..8) as f32 * 0.5,
                })
                .collect();
            let n_ex = rng.random_range(0..40);
            let excluded: Vec<u32> = (0..n_ex)
                .map(|_| rng.random_range(0..n as u32 + 5))
                .collect();
            let k = rng.random_range(0..n + 3);
            let got = top_k(&scores, k, &excluded);
            let want = reference(&scores, k, &excluded);
            assert_eq!(got.len(), want.len(), "case {case}");
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.0, w.0, "case {case}");
                assert_eq!(g.1.to_bits(), w.1.to_bits(), "case {case}");
            }
        }
    }
}
