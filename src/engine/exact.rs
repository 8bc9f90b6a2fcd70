//! Exact search: the item matrix is scanned in blocks of [`BLOCK`] rows; each block's scores
//! for the whole batch come from one GEMM call (`gemm` crate: runtime-dispatched AVX2 / AVX-512
//! kernels) into a block-sized scratch buffer, and feed each query's streaming top-k at once.
//! Memory traffic is one pass over the item matrix per batch; the `[batch, n_rows]` score matrix
//! is never allocated.
//!
//! The engine keeps the items only in the layout the GEMM kernels read directly (the row-major
//! matrix it was built from is released): column-major blocks (`[dim, BLOCK]`, rows padded to a multiple of 16 lanes). With the
//! row-major `items.f32` layout `gemm` re-packed every block of the catalogue on every call
//! (`gemm-common`: a left operand is used in place only when its rows are contiguous and its row
//! count a multiple of the SIMD width); packing once at load is what tract does with a constant
//! item matrix, and is why the format-1 path beat this engine before.

use std::cell::RefCell;

use super::contract::{Engine, EngineKind, Query};
use super::matrix::ItemMatrix;
use crate::topk::TopK;

/// Rows per GEMM call: 2,048 × 64-d f32 = 512 KiB of items, so a block stays in L2 while the
/// batch's scores for it are selected.
pub const BLOCK: usize = 2048;

/// Row padding of the last block: the widest SIMD register (AVX-512) holds 16 f32 lanes.
const LANES: usize = 16;

pub struct Exact {
    n_rows: usize,
    dim: usize,
    bias: Vec<f32>,
    /// Block `b` starts at `b · BLOCK · dim`; element (row i of the block, d) is at
    /// `start + d · padded_len(b) + i`. Padding rows are zero and never read back.
    blocks: Vec<f32>,
}

fn padded(len: usize) -> usize {
    len.div_ceil(LANES) * LANES
}

impl Exact {
    pub fn new(items: &ItemMatrix) -> Self {
        let (n, dim) = (items.n_rows(), items.dim());
        let mut blocks = Vec::with_capacity(padded(n) * dim);
        for start in (0..n).step_by(BLOCK) {
            let len = BLOCK.min(n - start);
            let plen = padded(len);
            for d in 0..dim {
                blocks.extend((start..start + len).map(|r| items.row(r)[d]));
                blocks.extend(std::iter::repeat_n(0.0, plen - len));
            }
        }
        Exact {
            n_rows: n,
            dim,
            bias: items.bias().to_vec(),
            blocks,
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl Engine for Exact {
    fn kind(&self) -> EngineKind {
        EngineKind::Exact
    }

    fn search(&self, queries: &[f32], requests: &[Query<'_>]) -> Vec<Vec<(u32, f32)>> {
        let dim = self.dim;
        let batch = requests.len();
        assert_eq!(queries.len(), batch * dim, "one query vector per request");
        if batch == 0 {
            return Vec::new();
        }
        let mut best: Vec<TopK> = requests.iter().map(|q| TopK::new(q.k)).collect();
        SCRATCH.with_borrow_mut(|scratch| {
            let mut scores = std::mem::take(&mut scratch.scores);
            scores.resize(BLOCK * batch, 0.0);
            let bias = &self.bias;
            for start in (0..self.n_rows).step_by(BLOCK) {
                let len = BLOCK.min(self.n_rows - start);
                let plen = padded(len);
                let block = &self.blocks[start * dim..start * dim + plen * dim];
                block_scores(
                    block,
                    plen,
                    dim,
                    queries,
                    batch,
                    &mut scores[..plen * batch],
                );
                for (qi, (acc, q)) in best.iter_mut().zip(requests).enumerate() {
                    let s = &mut scores[qi * plen..(qi + 1) * plen];
                    select(acc, q, start, s, &bias[start..start + len], scratch);
                }
            }
            scratch.scores = scores;
        });
        best.into_iter().map(TopK::into_sorted).collect()
    }

    fn bytes(&self) -> usize {
        // The per-thread scratch (`BLOCK × batch` floats) is not counted.
        std::mem::size_of::<f32>() * (self.blocks.len() + self.bias.len())
    }
}

/// Rows per chunk in [`select`]: one AVX-512 register, two AVX2 ones.
const CHUNK: usize = 16;

/// Offers one block's rows `start..start + bias.len()` to one query's top-k. `scores` holds
/// the block's dot products, padded to a multiple of [`CHUNK`]; it is overwritten.
///
/// Only a few chunks can hold a top-k row, so the work per row is kept to a handful of vector
/// operations and the per-row heap test runs on those chunks alone:
/// 1. `score = dot + bias`; padding, row 0 and the query's excluded rows of this block become
///    NaN, which [`TopK`] never admits (one write per excluded row, not a lookup per row);
/// 2. each chunk's maximum, as a reduction tree the compiler vectorises;
/// 3. a lower bound on the k-th best admissible score: the k-th largest chunk maximum (k
///    distinct chunks each hold a row at least that good), or the threshold the accumulator
///    already holds from earlier blocks, whichever is higher;
/// 4. only rows that reach the bound, in chunks whose maximum reaches it, are offered to the
///    heap. Ties at the bound are offered too, so the result equals a full scan's, tie order
///    included.
///
/// perf on the 1,682-item student (batch 32) had the earlier row-by-row pre-test and the heap
/// pushes it let through costing more than the GEMM itself.
#[inline]
fn select(
    acc: &mut TopK,
    q: &Query<'_>,
    start: usize,
    scores: &mut [f32],
    bias: &[f32],
    scratch: &mut Scratch,
) {
    let len = bias.len();
    debug_assert!(scores.len() >= len && scores.len().is_multiple_of(CHUNK));
    for (s, b) in scores.iter_mut().zip(bias) {
        *s += b;
    }
    scores[len..].fill(f32::NAN);
    if start == 0 {
        scores[0] = f32::NAN;
    }
    let end = (start + len) as u32;
    let first = q.exclude.partition_point(|&r| (r as usize) < start);
    for &r in q.exclude[first..].iter().take_while(|&&r| r < end) {
        scores[r as usize - start] = f32::NAN;
    }
    let (chunks, _) = scores.as_chunks::<CHUNK>();
    let maxima = &mut scratch.maxima;
    maxima.clear();
    maxima.extend(chunks.iter().map(chunk_max));
    let mut bound = acc.threshold();
    if acc.len() < acc.k() && acc.k() <= maxima.len() {
        let sorted = &mut scratch.sorted;
        sorted.clear();
        sorted.extend_from_slice(maxima);
        let (_, &mut kth, _) = sorted.select_nth_unstable_by(acc.k() - 1, |a, b| b.total_cmp(a));
        if kth.is_finite() {
            bound = bound.max(kth);
        }
    }
    for (c, (&m, chunk)) in maxima.iter().zip(chunks).enumerate() {
        // An all-excluded chunk's maximum is -inf: below any finite bound.
        if m >= bound {
            let first_row = start + c * CHUNK;
            for (j, &score) in chunk.iter().enumerate() {
                // Below the bound a row cannot make the top k; skipping it spares the heap the
                // first k pushes of whatever rows come first.
                if score >= bound && acc.admits(score) {
                    acc.push((first_row + j) as u32, score);
                }
            }
        }
    }
}

/// Per-thread buffers of [`Exact::search`], reused across calls.
#[derive(Default)]
struct Scratch {
    /// `[batch, padded block]` dot products of the current block.
    scores: Vec<f32>,
    /// One maximum per chunk of the current block and query.
    maxima: Vec<f32>,
    /// A copy of `maxima` for the k-th-largest selection.
    sorted: Vec<f32>,
}

/// Largest non-NaN value of a chunk (`-inf` if all are NaN), as a halving tree: each level is
/// one lane-wise compare-and-select on half the chunk.
#[inline(always)]
fn chunk_max(c: &[f32; CHUNK]) -> f32 {
    let mut m = [f32::NEG_INFINITY; CHUNK];
    for i in 0..CHUNK {
        // NaN > -inf is false: a NaN lane counts as -inf.
        if c[i] > f32::NEG_INFINITY {
            m[i] = c[i];
        }
    }
    let mut w = CHUNK / 2;
    while w > 0 {
        for i in 0..w {
            if m[i + w] > m[i] {
                m[i] = m[i + w];
            }
        }
        w /= 2;
    }
    m[0]
}

/// `out[q·len + i] = block[i] · queries[q]` for a column-major `[len, dim]` block (element
/// (i, d) at `d·len + i`) and row-major `[batch, dim]` queries.
fn block_scores(
    block: &[f32],
    len: usize,
    dim: usize,
    queries: &[f32],
    batch: usize,
    out: &mut [f32],
) {
    assert!(block.len() == len * dim && queries.len() == batch * dim && out.len() == len * batch);
    // dst (len × batch), column-major: element (i, q) at q·len + i.
    // lhs = block (len × dim), column-major: (i, d) at d·len + i.
    // rhs = queriesᵀ (dim × batch): (d, q) at q·dim + d.
    // SAFETY: the three buffers have exactly the extents described by (m, n, k) and the strides
    // above (asserted), `out` is exclusively borrowed and does not alias the inputs, and
    // `read_dst = false` means its previous contents are never read.
    unsafe {
        gemm::gemm(
            len,
            batch,
            dim,
            out.as_mut_ptr(),
            len as isize,
            1,
            false,
            block.as_ptr(),
            len as isize,
            1,
            queries.as_ptr(),
            dim as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::testing::*;
    use super::*;

    #[test]
    fn equals_brute_force_with_exclusions_across_blocks() {
        // 5,000 rows: three blocks, the last one partial.
        for (n_rows, dim, bias) in [(5000, 13, true), (70, 64, false), (2, 1, true)] {
            let items = Arc::new(random_matrix(n_rows, dim, bias, 1));
            let engine = Exact::new(&items);
            for batch in [1, 3, 17] {
                let queries = random_queries(batch, dim, batch as u64);
                let (ex, ks) = random_requests(batch, n_rows, 9);
                let reqs: Vec<Query> = ex
                    .iter()
                    .zip(&ks)
                    .map(|(e, &k)| Query { k, exclude: e })
                    .collect();
                let got = engine.search(&queries, &reqs);
                assert_exact(&items, &queries, &reqs, &got);
            }
        }
    }

    #[test]
    fn ties_are_broken_by_the_lower_row_as_a_full_sort_does() {
        // Small integer entries: every dot product is exact in any summation order and most
        // scores tie, so the chunk bounds in `select` must keep every tied row in play.
        use rand::{rngs::SmallRng, Rng, SeedableRng};
        let mut rng = SmallRng::seed_from_u64(3);
        let (n_rows, dim) = (3000, 4);
        let mut int =
            |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-1i8..=1) as f32).collect() };
        let items = ItemMatrix::new(n_rows, dim, int(n_rows * dim), Some(int(n_rows))).unwrap();
        let queries = int(8 * dim);
        let items = Arc::new(items);
        let engine = Exact::new(&items);
        let (ex, _) = random_requests(8, n_rows, 5);
        let reqs: Vec<Query> = ex
            .iter()
            .zip([1, 5, 10, 17, 40, 100, 200, 2999])
            .map(|(e, k)| Query { k, exclude: e })
            .collect();
        let got = engine.search(&queries, &reqs);
        for (i, q) in reqs.iter().enumerate() {
            let want = brute_force(&items, &queries[i * dim..(i + 1) * dim], q);
            assert_eq!(got[i], want, "query {i} (k = {})", q.k);
        }
    }

    #[test]
    fn never_returns_padding_or_excluded_rows_even_if_best() {
        let items = padding_and_excluded_score_best();
        let e = Exact::new(&items);
        let got = e.search(
            &[1.0, 0.0],
            &[Query {
                k: 5,
                exclude: &[1],
            }],
        );
        assert_eq!(got[0], vec![(3, 2.0), (2, 1.0)]);
    }
}
