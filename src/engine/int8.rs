//! Int8 search: every item row is quantised symmetrically with its own scale
//! (`v ≈ scale_r · c_r`, `c_r ∈ [-127, 127]^d`), each query likewise, and the scan computes
//! `scale_r · scale_q · (c_r · c_q) + b_r` with integer dot products — a quarter of the f32
//! matrix's memory traffic. The best `max(rerank_factor · k, rerank_min)` candidates per query
//! are then re-scored exactly in f32, so returned scores are exact and only candidates the
//! quantised scan ranked too low can be missed.
//!
//! No well-kept Rust crate offers an int8 GEMM with per-row scales (`gemm` and
//! `matrixmultiply` are floating point only), so the kernel is a plain dot-product loop that the
//! compiler vectorises; it is compiled three times (baseline, AVX2, AVX-512 VNNI) and the best
//! one the CPU supports is picked at run time.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::contract::{rerank, Engine, EngineError, EngineKind, Query};
use super::matrix::quantise_row;
use super::matrix::ItemMatrix;
use crate::topk::TopK;

/// Code lanes per row: rows are zero-padded to a multiple of this.
const LANES: usize = 16;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Int8Params {
    /// Candidates re-ranked per query: `max(rerank_factor · k, rerank_min)`.
    pub rerank_factor: usize,
    pub rerank_min: usize,
}

impl Default for Int8Params {
    fn default() -> Self {
        Int8Params {
            rerank_factor: 4,
            rerank_min: 64,
        }
    }
}

impl Int8Params {
    /// Both settings are bounded by the catalogue: more candidates than rows re-rank nothing
    /// more, and each candidate is a slot allocated per query.
    pub fn check(&self, n_rows: usize) -> Result<(), EngineError> {
        if self.rerank_factor == 0 && self.rerank_min == 0 {
            return Err(EngineError::Params(
                "int8: rerank_factor and rerank_min cannot both be 0".into(),
            ));
        }
        let d = Int8Params::default();
        super::contract::at_most_rows(
            "int8.rerank_factor",
            self.rerank_factor,
            d.rerank_factor,
            n_rows,
        )?;
        super::contract::at_most_rows("int8.rerank_min", self.rerank_min, d.rerank_min, n_rows)
    }
}

pub struct Int8 {
    items: Arc<ItemMatrix>,
    /// `[n_rows, stride]` codes.
    codes: Vec<i8>,
    scales: Vec<f32>,
    stride: usize,
    params: Int8Params,
}

impl Int8 {
    pub fn new(items: Arc<ItemMatrix>, params: Int8Params) -> Result<Self, EngineError> {
        params.check(items.n_rows())?;
        let stride = items.dim().div_ceil(LANES) * LANES;
        let mut codes = vec![0i8; items.n_rows() * stride];
        let scales = codes
            .chunks_exact_mut(stride)
            .enumerate()
            .map(|(r, out)| quantise_row(items.row(r), out))
            .collect();
        Ok(Int8 {
            items,
            codes,
            scales,
            stride,
            params,
        })
    }

    /// Never more than the rows there are (the accumulator reserves this many slots).
    fn candidates(&self, k: usize) -> usize {
        self.params
            .rerank_factor
            .saturating_mul(k)
            .max(self.params.rerank_min)
            .max(k)
            .min(self.items.n_rows())
    }

    /// Largest |approximate − exact| score over `queries` × every row: the quantisation error
    /// bound the tests check against the analytic one.
    #[cfg(test)]
    fn max_error(&self, query: &[f32]) -> (f32, f32) {
        let mut qc = vec![0i8; self.stride];
        let qs = quantise_row(query, &mut qc);
        let mut worst = 0.0f32;
        for r in 0..self.items.n_rows() {
            let c = &self.codes[r * self.stride..(r + 1) * self.stride];
            let approx = dot_i8(c, &qc) as f32 * self.scales[r] * qs + self.items.bias()[r];
            worst = worst.max((approx - self.items.score(query, r)).abs());
        }
        // |u·v − ũ·ṽ| ≤ |u|₁·s_v/2 + |v|₁·s_u/2 + d·s_u·s_v/4 per row; report the largest.
        let d = self.items.dim() as f32;
        let u1: f32 = query.iter().map(|x| x.abs()).sum();
        let bound = (0..self.items.n_rows())
            .map(|r| {
                let v1: f32 = self.items.row(r).iter().map(|x| x.abs()).sum();
                u1 * self.scales[r] / 2.0 + v1 * qs / 2.0 + d * self.scales[r] * qs / 4.0
            })
            .fold(0.0f32, f32::max);
        (worst, bound)
    }
}

impl Engine for Int8 {
    fn kind(&self) -> EngineKind {
        EngineKind::Int8
    }

    fn search(&self, queries: &[f32], requests: &[Query<'_>]) -> Vec<Vec<(u32, f32)>> {
        let dim = self.items.dim();
        assert_eq!(
            queries.len(),
            requests.len() * dim,
            "one query vector per request"
        );
        let mut qcodes = vec![0i8; requests.len() * self.stride];
        let qscales: Vec<f32> = queries
            .chunks_exact(dim)
            .zip(qcodes.chunks_exact_mut(self.stride))
            .map(|(q, out)| quantise_row(q, out))
            .collect();
        let mut accs: Vec<TopK> = requests
            .iter()
            .map(|q| TopK::new(if q.k == 0 { 0 } else { self.candidates(q.k) }))
            .collect();
        let scan = Scan {
            codes: &self.codes,
            stride: self.stride,
            scales: &self.scales,
            bias: self.items.bias(),
            qcodes: &qcodes,
            qscales: &qscales,
            requests,
        };
        scan.run(&mut accs);
        accs.into_iter()
            .zip(requests)
            .zip(queries.chunks_exact(dim))
            .map(|((acc, q), query)| {
                rerank(
                    &self.items,
                    query,
                    q,
                    acc.into_sorted().into_iter().map(|p| p.0),
                )
            })
            .collect()
    }

    fn bytes(&self) -> usize {
        // The f32 matrix is kept for the exact re-rank.
        self.codes.len() + 4 * self.scales.len() + self.items.bytes()
    }
}

struct Scan<'a> {
    codes: &'a [i8],
    stride: usize,
    scales: &'a [f32],
    bias: &'a [f32],
    qcodes: &'a [i8],
    qscales: &'a [f32],
    requests: &'a [Query<'a>],
}

impl Scan<'_> {
    fn run(&self, accs: &mut [TopK]) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vnni")
            {
                // SAFETY: the CPU supports the features `run_avx512` is compiled for.
                return unsafe { self.run_avx512(accs) };
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: as above, for AVX2.
                return unsafe { self.run_avx2(accs) };
            }
        }
        self.body(accs)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn run_avx512(&self, accs: &mut [TopK]) {
        self.body(accs)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn run_avx2(&self, accs: &mut [TopK]) {
        self.body(accs)
    }

    /// Row-major scan: each row's codes are read once per batch and scored against every query.
    #[inline(always)]
    fn body(&self, accs: &mut [TopK]) {
        let s = self.stride;
        for (r, c) in self.codes.chunks_exact(s).enumerate().skip(1) {
            let scale = self.scales[r];
            let bias = self.bias[r];
            for (qi, acc) in accs.iter_mut().enumerate() {
                let qc = &self.qcodes[qi * s..(qi + 1) * s];
                let approx = dot_i8(c, qc) as f32 * (scale * self.qscales[qi]) + bias;
                if acc.admits(approx) {
                    let row = r as u32;
                    if !self.requests[qi].excludes(row) {
                        acc.push(row, approx);
                    }
                }
            }
        }
    }
}

/// Integer dot product of two code rows (length a multiple of [`LANES`]).
#[inline(always)]
fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    let mut acc = [0i32; LANES];
    for (x, y) in a
        .as_chunks::<LANES>()
        .0
        .iter()
        .zip(b.as_chunks::<LANES>().0)
    {
        for i in 0..LANES {
            acc[i] += x[i] as i32 * y[i] as i32;
        }
    }
    acc.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn quantisation_error_stays_within_the_analytic_bound() {
        let items = Arc::new(random_matrix(3000, 64, true, 3));
        let e = Int8::new(Arc::clone(&items), Int8Params::default()).unwrap();
        for (i, q) in random_queries(8, 64, 5).chunks_exact(64).enumerate() {
            let (worst, bound) = e.max_error(q);
            assert!(worst <= bound, "query {i}: error {worst} > bound {bound}");
            // The bound is not vacuous: scores here are O(1..10).
            assert!(bound < 0.5, "query {i}: bound {bound}");
        }
    }

    #[test]
    fn results_are_exactly_scored_allowed_rows_and_mostly_the_true_top_k() {
        let items = Arc::new(random_matrix(5000, 32, true, 11));
        let e = Int8::new(Arc::clone(&items), Int8Params::default()).unwrap();
        let mean = approximate_recall(&e, &items, 20, 12);
        assert!(mean >= 0.99, "int8 + re-rank recall {mean}");
    }

    #[test]
    fn zero_query_and_k_zero_are_fine() {
        let items = Arc::new(random_matrix(50, 8, true, 1));
        let e = Int8::new(Arc::clone(&items), Int8Params::default()).unwrap();
        let q = Query { k: 3, exclude: &[] };
        let got = e.search(&[0.0; 8], &[q]);
        // A zero user vector ranks by bias alone.
        assert_eq!(got[0], brute_force(&items, &[0.0; 8], &q));
        let got = e.search(&[1.0; 8], &[Query { k: 0, exclude: &[] }]);
        assert!(got[0].is_empty());
    }
}
