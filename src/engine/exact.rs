//! Exact search: the item matrix is scanned in blocks of [`BLOCK`] rows; each block's scores
//! for the whole batch come from one GEMM call (`gemm` crate: runtime-dispatched AVX2 / AVX-512
//! kernels) into a block-sized scratch buffer, and feed each query's streaming top-k at once.
//! Memory traffic is one pass over the item matrix per batch; the `[batch, n_rows]` score matrix
//! is never allocated.
//!
//! The engine keeps its own copy of the items in the layout the GEMM kernels read directly:
//! column-major blocks (`[dim, BLOCK]`, rows padded to a multiple of 16 lanes). With the
//! row-major `items.f32` layout `gemm` re-packed every block of the catalogue on every call
//! (`gemm-common`: a left operand is used in place only when its rows are contiguous and its row
//! count a multiple of the SIMD width); packing once at load is what tract does with a constant
//! item matrix, and is why the format-1 path beat this engine before.

use std::cell::RefCell;
use std::sync::Arc;

use super::{Engine, EngineKind, ItemMatrix, Query};
use crate::topk::TopK;

/// Rows per GEMM call: 2,048 × 64-d f32 = 512 KiB of items, so a block stays in L2 while the
/// batch's scores for it are selected.
pub const BLOCK: usize = 2048;

/// Row padding of the last block: the widest SIMD register (AVX-512) holds 16 f32 lanes.
const LANES: usize = 16;

pub struct Exact {
    items: Arc<ItemMatrix>,
    /// Block `b` starts at `b · BLOCK · dim`; element (row i of the block, d) is at
    /// `start + d · padded_len(b) + i`. Padding rows are zero and never read back.
    blocks: Vec<f32>,
}

fn padded(len: usize) -> usize {
    len.div_ceil(LANES) * LANES
}

impl Exact {
    pub fn new(items: Arc<ItemMatrix>) -> Self {
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
        Exact { items, blocks }
    }
}

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

impl Engine for Exact {
    fn kind(&self) -> EngineKind {
        EngineKind::Exact
    }

    fn search(&self, queries: &[f32], requests: &[Query<'_>]) -> Vec<Vec<(u32, f32)>> {
        let m = &*self.items;
        let dim = m.dim();
        let batch = requests.len();
        assert_eq!(queries.len(), batch * dim, "one query vector per request");
        if batch == 0 {
            return Vec::new();
        }
        let mut best: Vec<TopK> = requests.iter().map(|q| TopK::new(q.k)).collect();
        SCRATCH.with_borrow_mut(|scores| {
            scores.resize(BLOCK * batch, 0.0);
            let bias = m.bias();
            for start in (0..m.n_rows()).step_by(BLOCK) {
                let len = BLOCK.min(m.n_rows() - start);
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
                    let s = &scores[qi * plen..qi * plen + len];
                    select(acc, q, start, s, &bias[start..start + len]);
                }
            }
        });
        best.into_iter().map(TopK::into_sorted).collect()
    }

    fn extra_bytes(&self) -> usize {
        // The column-major copy of the items (the per-thread scratch is `BLOCK × batch` floats).
        self.blocks.len() * std::mem::size_of::<f32>()
    }
}

/// Rows scanned per pre-test in [`select`]: one AVX-512 register, two AVX2 ones.
const CHUNK: usize = 16;

/// Offers rows `start..start + dots.len()` (score = dot + bias) to one query's top-k. Once the
/// accumulator is full almost no row enters, so each chunk of [`CHUNK`] scores is first tested
/// as a whole against the current threshold (a compare-and-or loop the compiler vectorises);
/// only a chunk holding a candidate goes through the per-row test, exclusion lookup and push.
/// perf put the one-row-at-a-time loop above the GEMM itself at 1,682 items.
#[inline]
fn select(acc: &mut TopK, q: &Query<'_>, start: usize, dots: &[f32], bias: &[f32]) {
    debug_assert_eq!(dots.len(), bias.len());
    fn offer(acc: &mut TopK, q: &Query<'_>, first: usize, dots: &[f32], bias: &[f32]) {
        for (j, (&dot, &bj)) in dots.iter().zip(bias).enumerate() {
            let score = dot + bj;
            if acc.admits(score) {
                let row = (first + j) as u32;
                if !q.excludes(row) {
                    acc.push(row, score);
                }
            }
        }
    }
    let (dc, dr) = dots.as_chunks::<CHUNK>();
    let (bc, br) = bias.as_chunks::<CHUNK>();
    for (c, (d, b)) in dc.iter().zip(bc).enumerate() {
        let t = acc.threshold();
        let mut hit = false;
        for i in 0..CHUNK {
            // NaN compares false, as in `admits`.
            hit |= d[i] + b[i] >= t;
        }
        if hit {
            offer(acc, q, start + c * CHUNK, d, b);
        }
    }
    offer(acc, q, start + dc.len() * CHUNK, dr, br);
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
    use super::super::testing::*;
    use super::*;

    #[test]
    fn equals_brute_force_with_exclusions_across_blocks() {
        // 5,000 rows: three blocks, the last one partial.
        for (n_rows, dim, bias) in [(5000, 13, true), (70, 64, false), (2, 1, true)] {
            let items = Arc::new(random_matrix(n_rows, dim, bias, 1));
            let engine = Exact::new(Arc::clone(&items));
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
    fn never_returns_padding_or_excluded_rows_even_if_best() {
        let mut v = vec![0.0f32; 4 * 2];
        v[0] = 100.0; // row 0 would win
        v[2] = 50.0; // row 1 would be second
        v[4] = 1.0;
        v[6] = 2.0;
        let items = Arc::new(ItemMatrix::new(4, 2, v, None).unwrap());
        let e = Exact::new(items);
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
