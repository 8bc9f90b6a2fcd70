//! Int8 search: every item row is quantised symmetrically with its own scale
//! (`v ≈ scale_r · c_r`, `c_r ∈ [-127, 127]^d`), each query likewise, and the scan computes
//! `(c_r · c_q) · (scale_r · scale_q) + b_r` with integer dot products — a quarter of the f32
//! matrix's memory traffic. The best `max(rerank_factor · k, rerank_min)` candidates per query
//! are then re-scored exactly in f32, so returned scores are exact and only candidates the
//! quantised scan ranked too low can be missed.
//!
//! The scan is blocked like [`super::exact`]'s GEMM: codes are stored in tiles of `TILE` = 64 rows,
//! `[tile][dim / 4][64 rows][4 bytes]`, so one 512-bit load holds four consecutive dims of 16
//! rows, and each tile is read once per batch and scored against up to `MAX_Q` = 4 queries held
//! in registers. With AVX-512 VNNI, `vpdpbusd` multiplies four unsigned bytes by four signed
//! bytes and adds them to a 32-bit lane; its signed operand is the one that can be a broadcast
//! from memory, so the *query* codes stay signed (one broadcast 32-bit word per 4 dims) and the
//! *row* codes are stored offset by 128 as unsigned bytes, the offset removed by starting each
//! query's accumulators at `-128 · Σ c_q`. The 16 approximate scores of a register are compared
//! with the query's current top-k threshold in one instruction; only rows that reach it are
//! offered to the heap, so most rows never leave the registers. Without VNNI a portable kernel
//! (compiled again for AVX2) computes the same integers and the same f32 operations, so both
//! paths return bit-identical candidates.
//!
//! It does not reuse `exact`'s `select` (scores of a block written out, chunk maxima, a block
//! bound): here the comparison with the threshold happens while the scores are still in
//! registers, one instruction per 16 rows, so nothing is written out at all.
//!
//! Why a hand-written kernel (the project prefers a well-kept crate): `gemm` and
//! `matrixmultiply` are floating point only, and the well-kept int8 dot product, `simsimd`'s
//! (C kernels picked at run time for the CPU), is one call per row and query.
//! `benches/engines.rs` runs the same algorithm with it as `int8-simsimd`; per request at d = 64,
//! 100k / 1M items (`DISTILREC_BENCH_SIZES=100000,1000000
//! DISTILREC_BENCH_ENGINES=exact,int8,int8-simsimd cargo bench --bench engines -- engine/`):
//!
//! | batch | exact | this kernel | simsimd per row |
//! |---|---|---|---|
//! | 1 | 1.00 / 18.9 ms | 0.257 / 2.55 ms | 0.833 / 8.73 ms |
//! | 32 | 184 µs / 2.21 ms | 72 / 550 µs | 669 µs / 6.66 ms |
//!
//! A per-row call cannot read a row once for a whole batch nor keep the scores in registers, so
//! at batch 32 it is slower than exact f32. Not measured: crates with an int8 GEMM (`rten-gemm`,
//! `numkong`'s packed dot products), which would write each block's scores out for a separate
//! top-k pass as `exact` does with `gemm`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::contract::{rerank, Engine, EngineError, EngineKind, Query};
use super::matrix::{quantise_row, ItemMatrix, QuantisedRows};
use crate::topk::TopK;

/// Rows per tile: four 16-lane registers of 32-bit scores.
const TILE: usize = 64;

/// Dims per code word: `vpdpbusd` sums four byte products per 32-bit lane.
const WORD: usize = 4;

/// Bytes of one word column of a tile: one word of each of its rows.
const COLUMN: usize = TILE * WORD;

/// Queries scored per pass over a tile: 4 queries × 4 registers of rows = 16 accumulators,
/// half the AVX-512 register file, leaving room for the row and broadcast registers.
const MAX_Q: usize = 4;

/// Stored row codes are `c + OFFSET` (unsigned); see the module doc.
const OFFSET: i32 = 128;

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
    n_rows: usize,
    dim: usize,
    /// The f32 rows of an f32 item side, for the exact re-rank. `None` when the engine was built
    /// from an int8 item side ([`Int8::from_quantised`]), whose vectors *are* `scale_r · c_r`:
    /// candidates are then re-scored from the codes, and no f32 copy exists.
    f32_rows: Option<Arc<ItemMatrix>>,
    /// `[n_tiles][words][TILE][WORD]` row codes plus [`OFFSET`]; padding dims and rows hold
    /// the code 0.
    codes: Vec<u8>,
    /// One per row, padded to whole tiles. Row 0 and the padding rows are NaN: their scores
    /// are NaN, which no threshold comparison admits, so the scan needs no test for them.
    scales: Vec<f32>,
    /// The items' bias padded to whole tiles (0 without one).
    bias: Vec<f32>,
    /// Code words per row: `dim / 4` rounded up.
    words: usize,
    params: Int8Params,
}

impl Int8 {
    /// Quantises an f32 item side; the f32 rows are kept for the exact re-rank.
    pub fn new(items: Arc<ItemMatrix>, params: Int8Params) -> Result<Self, EngineError> {
        let (n, dim) = (items.n_rows(), items.dim());
        let mut engine = Int8::tiled(n, dim, items.bias(), params, |r, out| {
            quantise_row(items.row(r), out)
        })?;
        engine.f32_rows = Some(items);
        Ok(engine)
    }

    /// Scans an int8 item side with its own codes and scales (no re-quantisation) and
    /// re-scores candidates from them: the model's vectors are `scale_r · c_r`, so the scores
    /// are the model's up to f32 rounding, and the engine holds a quarter of an f32 copy.
    pub fn from_quantised(rows: &QuantisedRows, params: Int8Params) -> Result<Self, EngineError> {
        Int8::tiled(rows.n_rows(), rows.dim(), rows.bias(), params, |r, out| {
            out.fill(0);
            for (o, c) in out.iter_mut().zip(rows.codes(r)) {
                *o = c;
            }
            rows.scale(r)
        })
    }

    /// Lays out `n` rows of codes in tiles; `row_codes(r, out)` writes row `r`'s codes into
    /// `out` (zero past `dim`) and returns its scale.
    fn tiled(
        n: usize,
        dim: usize,
        row_bias: &[f32],
        params: Int8Params,
        mut row_codes: impl FnMut(usize, &mut [i8]) -> f32,
    ) -> Result<Self, EngineError> {
        params.check(n)?;
        let words = dim.div_ceil(WORD);
        let n_tiles = n.div_ceil(TILE);
        let mut codes = vec![OFFSET as u8; n_tiles * words * COLUMN];
        let mut scales = vec![f32::NAN; n_tiles * TILE];
        let mut bias = vec![0.0; n_tiles * TILE];
        bias[..n].copy_from_slice(row_bias);
        let mut row = vec![0i8; words * WORD];
        for r in 0..n {
            let scale = row_codes(r, &mut row);
            if r > 0 {
                scales[r] = scale;
            }
            let tile = &mut codes[(r / TILE) * words * COLUMN..][..words * COLUMN];
            let at = (r % TILE) * WORD;
            for (column, word) in tile.chunks_exact_mut(COLUMN).zip(row.chunks_exact(WORD)) {
                for (out, &c) in column[at..at + WORD].iter_mut().zip(word) {
                    *out = (i32::from(c) + OFFSET) as u8;
                }
            }
        }
        Ok(Int8 {
            n_rows: n,
            dim,
            f32_rows: None,
            codes,
            scales,
            bias,
            words,
            params,
        })
    }

    /// `scale_r · (c_r · query) + b_r` from the stored codes: the score of an int8 item side.
    fn code_score(&self, query: &[f32], r: usize) -> f32 {
        let tile = &self.codes[(r / TILE) * self.words * COLUMN..][..self.words * COLUMN];
        let at = (r % TILE) * WORD;
        let mut sum = 0.0f32;
        for (d, &x) in query.iter().enumerate() {
            let c = i32::from(tile[(d / WORD) * COLUMN + at + d % WORD]) - OFFSET;
            sum += x * c as f32;
        }
        sum * self.scales[r] + self.bias[r]
    }

    /// Never more than the rows there are (the accumulator reserves this many slots).
    fn candidates(&self, k: usize) -> usize {
        self.params
            .rerank_factor
            .saturating_mul(k)
            .max(self.params.rerank_min)
            .max(k)
            .min(self.n_rows)
    }

    /// Quantises a batch of queries into the kernels' form.
    fn prepare(&self, queries: &[f32]) -> Prepared {
        let dim = self.dim;
        let batch = queries.len() / dim.max(1);
        let mut p = Prepared {
            words: Vec::with_capacity(batch * self.words),
            offsets: Vec::with_capacity(batch),
            scales: Vec::with_capacity(batch),
        };
        let mut codes = vec![0i8; self.words * WORD];
        for q in queries.chunks_exact(dim) {
            p.scales.push(quantise_row(q, &mut codes));
            let sum: i32 = codes.iter().map(|&c| i32::from(c)).sum();
            p.offsets.push(-OFFSET * sum);
            p.words.extend(
                codes
                    .as_chunks::<WORD>()
                    .0
                    .iter()
                    .map(|w| i32::from_le_bytes(w.map(|c| c as u8))),
            );
        }
        p
    }

    /// The quantised scan's candidates of each query, best first: the
    /// `max(rerank_factor · k, rerank_min)` allowed rows with the highest approximate scores.
    fn scan(&self, kernel: Kernel, queries: &[f32], requests: &[Query<'_>]) -> Vec<TopK> {
        let mut best = Best {
            accs: requests
                .iter()
                .map(|q| TopK::new(if q.k == 0 { 0 } else { self.candidates(q.k) }))
                .collect(),
            requests,
        };
        self.run(kernel, &self.prepare(queries), &mut best);
        best.accs
    }

    fn run<H: Hits>(&self, kernel: Kernel, q: &Prepared, hits: &mut H) {
        let tiles = Tiles {
            codes: &self.codes,
            scales: &self.scales,
            bias: &self.bias,
            words: self.words,
        };
        match kernel {
            // SAFETY: `Kernel::Vnni` is only constructed when the CPU has these features.
            #[cfg(target_arch = "x86_64")]
            Kernel::Vnni => unsafe { scan_vnni(&tiles, q, hits) },
            // SAFETY: as above, for AVX2.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe { scan_avx2(&tiles, q, hits) },
            Kernel::Portable => scan_portable(&tiles, q, hits),
        }
    }

    fn search_with(
        &self,
        kernel: Kernel,
        queries: &[f32],
        requests: &[Query<'_>],
    ) -> Vec<Vec<(u32, f32)>> {
        let dim = self.dim;
        assert_eq!(
            queries.len(),
            requests.len() * dim,
            "one query vector per request"
        );
        if requests.is_empty() {
            return Vec::new();
        }
        self.scan(kernel, queries, requests)
            .into_iter()
            .zip(requests)
            .zip(queries.chunks_exact(dim))
            .map(|((acc, q), query)| {
                let candidates = acc.into_sorted().into_iter().map(|p| p.0);
                match &self.f32_rows {
                    Some(items) => rerank(items, query, q, candidates),
                    None => {
                        let mut best = TopK::new(q.k);
                        for row in candidates {
                            // Candidates come from the scan, which admits only allowed rows.
                            best.push(row, self.code_score(query, row as usize));
                        }
                        best.into_sorted()
                    }
                }
            })
            .collect()
    }
}

impl Engine for Int8 {
    fn kind(&self) -> EngineKind {
        EngineKind::Int8
    }

    fn search(&self, queries: &[f32], requests: &[Query<'_>]) -> Vec<Vec<(u32, f32)>> {
        self.search_with(Kernel::detect(), queries, requests)
    }

    fn bytes(&self) -> usize {
        // An f32 item side is kept for the exact re-rank.
        self.codes.len()
            + 4 * (self.scales.len() + self.bias.len())
            + self.f32_rows.as_ref().map_or(0, |m| m.bytes())
    }
}

/// Which scan kernel runs; a value exists only for kernels the CPU supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    #[cfg(target_arch = "x86_64")]
    Vnni,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Portable,
}

impl Kernel {
    /// The fastest kernel the CPU supports (the checks are cached atomics in `std`).
    fn detect() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vnni")
            {
                return Kernel::Vnni;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Kernel::Avx2;
            }
        }
        Kernel::Portable
    }
}

/// A batch of quantised queries.
struct Prepared {
    /// `[batch][words]`: four codes per word, little-endian, zero-padded.
    words: Vec<i32>,
    /// `-OFFSET · Σ codes` per query: the accumulators' start, removing the rows' offset.
    offsets: Vec<i32>,
    scales: Vec<f32>,
}

/// What a kernel reads of the engine.
struct Tiles<'a> {
    codes: &'a [u8],
    scales: &'a [f32],
    bias: &'a [f32],
    words: usize,
}

impl Tiles<'_> {
    fn n_tiles(&self) -> usize {
        self.scales.len() / TILE
    }
}

/// Where a kernel's scores go: rows whose approximate score reaches the query's threshold
/// (compared as `score >= threshold`, so NaN never passes) are offered to `hit`.
trait Hits {
    fn threshold(&self, query: usize) -> f32;
    fn hit(&mut self, query: usize, row: usize, score: f32);
}

/// Each query's candidates: a top-k of the allowed rows.
struct Best<'a> {
    accs: Vec<TopK>,
    requests: &'a [Query<'a>],
}

impl Hits for Best<'_> {
    #[inline(always)]
    fn threshold(&self, query: usize) -> f32 {
        self.accs[query].threshold()
    }

    #[inline(always)]
    fn hit(&mut self, query: usize, row: usize, score: f32) {
        // Rows of one register are compared with the threshold as it was before the first of
        // them entered, so check again before the exclusion lookup.
        let acc = &mut self.accs[query];
        if acc.admits(score) && !self.requests[query].excludes(row as u32) {
            acc.push(row as u32, score);
        }
    }
}

/// AVX-512 VNNI scan: tiles in order, each scored against the batch [`MAX_Q`] queries at a time
/// while it is in L1.
///
/// # Safety
/// The CPU must support `avx512f`, `avx512bw` and `avx512vnni`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn scan_vnni<H: Hits>(t: &Tiles<'_>, q: &Prepared, hits: &mut H) {
    let batch = q.scales.len();
    let words = t.words;
    assert!(
        t.codes.len() == t.n_tiles() * words * COLUMN
            && t.bias.len() == t.scales.len()
            && q.words.len() == batch * words
            && q.offsets.len() == batch
    );
    for tile in 0..t.n_tiles() {
        let mut first = 0;
        while first < batch {
            let n = (batch - first).min(MAX_Q);
            // SAFETY: `tile < n_tiles` and `first + n <= batch`, within the lengths asserted.
            unsafe {
                match n {
                    1 => tile_vnni::<1, H>(t, q, tile, first, hits),
                    2 => tile_vnni::<2, H>(t, q, tile, first, hits),
                    3 => tile_vnni::<3, H>(t, q, tile, first, hits),
                    _ => tile_vnni::<MAX_Q, H>(t, q, tile, first, hits),
                }
            }
            first += n;
        }
    }
}

/// Scores tile `tile` against queries `first..first + Q` and offers the rows that reach each
/// query's threshold.
///
/// # Safety
/// As [`scan_vnni`], whose assertions must hold, with `tile < n_tiles` and `first + Q <= batch`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
unsafe fn tile_vnni<const Q: usize, H: Hits>(
    t: &Tiles<'_>,
    q: &Prepared,
    tile: usize,
    first: usize,
    hits: &mut H,
) {
    use std::arch::x86_64::*;
    const REGS: usize = TILE / 16;
    let words = t.words;
    // SAFETY (every pointer below): the tile's codes are `words · COLUMN` bytes from `codes`,
    // its scales and bias `TILE` floats from `tile · TILE`, the queries' words `Q · words`
    // from `first · words`: all within the lengths `scan_vnni` asserted.
    let codes = unsafe { t.codes.as_ptr().add(tile * words * COLUMN) };
    let qwords = unsafe { q.words.as_ptr().add(first * words) };
    let mut acc = [[_mm512_setzero_si512(); REGS]; Q];
    for (i, a) in acc.iter_mut().enumerate() {
        *a = [_mm512_set1_epi32(q.offsets[first + i]); REGS];
    }
    for w in 0..words {
        let column = unsafe { codes.add(w * COLUMN) };
        let mut rows = [_mm512_setzero_si512(); REGS];
        for (g, r) in rows.iter_mut().enumerate() {
            *r = unsafe { _mm512_loadu_si512(column.add(g * 64).cast()) };
        }
        for (i, a) in acc.iter_mut().enumerate() {
            let word = _mm512_set1_epi32(unsafe { *qwords.add(i * words + w) });
            for (a, &r) in a.iter_mut().zip(&rows) {
                *a = _mm512_dpbusd_epi32(*a, r, word);
            }
        }
    }
    let base = tile * TILE;
    for g in 0..REGS {
        let row = base + g * 16;
        let scale = unsafe { _mm512_loadu_ps(t.scales.as_ptr().add(row)) };
        let bias = unsafe { _mm512_loadu_ps(t.bias.as_ptr().add(row)) };
        for (i, a) in acc.iter().enumerate() {
            let qi = first + i;
            let s = _mm512_mul_ps(scale, _mm512_set1_ps(q.scales[qi]));
            let score = _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(a[g]), s), bias);
            let threshold = _mm512_set1_ps(hits.threshold(qi));
            let mut mask = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(score, threshold);
            if mask != 0 {
                let mut lanes = [0.0f32; 16];
                unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), score) };
                while mask != 0 {
                    let lane = mask.trailing_zeros() as usize;
                    hits.hit(qi, row + lane, lanes[lane]);
                    mask &= mask - 1;
                }
            }
        }
    }
}

/// The portable kernel compiled for AVX2 (the compiler vectorises its integer loop).
///
/// # Safety
/// The CPU must support `avx2`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn scan_avx2<H: Hits>(t: &Tiles<'_>, q: &Prepared, hits: &mut H) {
    scan_portable(t, q, hits)
}

/// Any CPU: the same integers as `vpdpbusd` (wrapping 32-bit sums of four byte products) and
/// the same f32 operations in the same order, row by row.
#[inline(always)]
fn scan_portable<H: Hits>(t: &Tiles<'_>, q: &Prepared, hits: &mut H) {
    let words = t.words;
    let mut acc = [0i32; TILE];
    for (tile, codes) in t.codes.chunks_exact(words * COLUMN).enumerate() {
        let base = tile * TILE;
        let scales = &t.scales[base..base + TILE];
        let bias = &t.bias[base..base + TILE];
        for (qi, qwords) in q.words.chunks_exact(words).enumerate() {
            acc.fill(q.offsets[qi]);
            for (column, &word) in codes.chunks_exact(COLUMN).zip(qwords) {
                let b = word.to_le_bytes().map(|c| i32::from(c as i8));
                for (a, r) in acc.iter_mut().zip(column.as_chunks::<WORD>().0) {
                    let sum = i32::from(r[0]) * b[0]
                        + i32::from(r[1]) * b[1]
                        + i32::from(r[2]) * b[2]
                        + i32::from(r[3]) * b[3];
                    *a = a.wrapping_add(sum);
                }
            }
            let qs = q.scales[qi];
            for (i, &a) in acc.iter().enumerate() {
                let score = a as f32 * (scales[i] * qs) + bias[i];
                if score >= hits.threshold(qi) {
                    hits.hit(qi, base + i, score);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    /// Every kernel this CPU supports, fastest first.
    fn kernels() -> Vec<Kernel> {
        let mut out = vec![Kernel::detect()];
        #[cfg(target_arch = "x86_64")]
        if out[0] == Kernel::Vnni {
            out.push(Kernel::Avx2);
        }
        if out[0] != Kernel::Portable {
            out.push(Kernel::Portable);
        }
        out
    }

    /// The definition the kernels must reproduce bit for bit: the row-major codes of
    /// `quantise_row`, a plain i32 dot product, `dot · (scale_r · scale_q) + b_r`.
    fn reference(items: &ItemMatrix, query: &[f32]) -> Vec<f32> {
        let dim = items.dim();
        let mut qc = vec![0i8; dim];
        let qs = quantise_row(query, &mut qc);
        let mut rc = vec![0i8; dim];
        (0..items.n_rows())
            .map(|r| {
                let s = quantise_row(items.row(r), &mut rc);
                let dot: i32 = rc
                    .iter()
                    .zip(&qc)
                    .map(|(&a, &b)| i32::from(a) * i32::from(b))
                    .sum();
                dot as f32 * (s * qs) + items.bias()[r]
            })
            .collect()
    }

    /// Every score a kernel produces, `[query][row]` (NaN where none was).
    struct All(Vec<Vec<f32>>);

    impl Hits for All {
        fn threshold(&self, _: usize) -> f32 {
            f32::NEG_INFINITY
        }
        fn hit(&mut self, query: usize, row: usize, score: f32) {
            let slot = &mut self.0[query];
            assert!(row < slot.len(), "query {query}: padding row {row} scored");
            assert!(slot[row].is_nan(), "query {query}: row {row} scored twice");
            slot[row] = score;
        }
    }

    const SHAPES: [(usize, usize); 8] = [
        (2, 1),
        (2, 3),
        (17, 5),
        (64, 4),
        (65, 13),
        (130, 16),
        (200, 64),
        (1000, 67),
    ];

    #[test]
    fn every_kernel_scores_every_row_as_the_scalar_reference() {
        let kernels = kernels();
        eprintln!("kernels on this CPU: {kernels:?}");
        for (n_rows, dim) in SHAPES {
            let items = Arc::new(random_matrix(n_rows, dim, true, n_rows as u64));
            let e = Int8::new(Arc::clone(&items), Int8Params::default()).unwrap();
            // 1..=9 queries: every register-block width and remainder.
            for batch in [1, 2, 3, 4, 5, 9] {
                let queries = random_queries(batch, dim, (batch * dim) as u64);
                let p = e.prepare(&queries);
                for &kernel in &kernels {
                    let mut all = All(vec![vec![f32::NAN; n_rows]; batch]);
                    e.run(kernel, &p, &mut all);
                    for (qi, got) in all.0.iter().enumerate() {
                        let want = reference(&items, &queries[qi * dim..(qi + 1) * dim]);
                        assert!(got[0].is_nan(), "{kernel:?}: row 0 scored");
                        for r in 1..n_rows {
                            assert_eq!(
                                got[r].to_bits(),
                                want[r].to_bits(),
                                "{kernel:?} {n_rows}×{dim}, batch {batch}, query {qi}, row {r}: \
                                 {} vs {}",
                                got[r],
                                want[r]
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn every_kernel_keeps_the_reference_candidates_of_the_allowed_rows() {
        for (n_rows, dim) in SHAPES.into_iter().chain([(5000, 64), (3001, 7)]) {
            let items = Arc::new(random_matrix(n_rows, dim, true, 7));
            let params = Int8Params {
                rerank_factor: 2,
                rerank_min: 5,
            };
            let e = Int8::new(Arc::clone(&items), params).unwrap();
            let batch = 11;
            let queries = random_queries(batch, dim, n_rows as u64);
            let (ex, ks) = random_requests(batch, n_rows, 3);
            let reqs: Vec<Query> = ex
                .iter()
                .zip(&ks)
                .map(|(e, &k)| Query { k, exclude: e })
                .collect();
            for kernel in kernels() {
                let got = e.scan(kernel, &queries, &reqs);
                for (qi, (acc, q)) in got.into_iter().zip(&reqs).enumerate() {
                    let scores = reference(&items, &queries[qi * dim..(qi + 1) * dim]);
                    let mut want: Vec<(u32, f32)> = (0..n_rows as u32)
                        .filter(|&r| !q.excludes(r))
                        .map(|r| (r, scores[r as usize]))
                        .collect();
                    want.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                    want.truncate(if q.k == 0 { 0 } else { e.candidates(q.k) });
                    assert_eq!(
                        acc.into_sorted(),
                        want,
                        "{kernel:?} {n_rows}×{dim}, query {qi}"
                    );
                }
            }
        }
    }

    #[test]
    fn quantisation_error_stays_within_the_analytic_bound() {
        let items = Arc::new(random_matrix(3000, 64, true, 3));
        let d = items.dim() as f32;
        let mut rc = vec![0i8; 64];
        let scales: Vec<f32> = (0..items.n_rows())
            .map(|r| quantise_row(items.row(r), &mut rc))
            .collect();
        for (i, q) in random_queries(8, 64, 5).chunks_exact(64).enumerate() {
            let qs = quantise_row(q, &mut rc);
            let approx = reference(&items, q);
            let worst = (0..items.n_rows())
                .map(|r| (approx[r] - items.score(q, r)).abs())
                .fold(0.0f32, f32::max);
            // |u·v − ũ·ṽ| ≤ |u|₁·s_v/2 + |v|₁·s_u/2 + d·s_u·s_v/4 per row; the largest.
            let u1: f32 = q.iter().map(|x| x.abs()).sum();
            let bound = (0..items.n_rows())
                .map(|r| {
                    let v1: f32 = items.row(r).iter().map(|x| x.abs()).sum();
                    u1 * scales[r] / 2.0 + v1 * qs / 2.0 + d * scales[r] * qs / 4.0
                })
                .fold(0.0f32, f32::max);
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
        // Every kernel returns the same rows and scores.
        let queries = random_queries(20, 32, 12);
        let (ex, ks) = random_requests(20, items.n_rows(), 13);
        let reqs: Vec<Query> = ex
            .iter()
            .zip(&ks)
            .map(|(e, &k)| Query { k, exclude: e })
            .collect();
        let first = e.search(&queries, &reqs);
        for kernel in kernels() {
            assert_eq!(e.search_with(kernel, &queries, &reqs), first, "{kernel:?}");
        }
    }

    /// An int8 item side served from its own codes: the same rows as the engine over the
    /// decoded f32 matrix, scores equal to the model's (`q · (scale_r · c_r) + b_r`) up to f32
    /// rounding, and a quarter of the memory (no f32 copy).
    #[test]
    fn an_int8_item_side_is_served_from_its_codes() {
        use crate::engine::{QuantisedRows, DTYPE_INT8};
        for (n_rows, dim) in [(2, 1), (65, 13), (5000, 32), (3001, 7)] {
            let f32_items = random_matrix(n_rows, dim, true, 21);
            let file = f32_items.to_file_bytes(DTYPE_INT8).unwrap();
            let rows = QuantisedRows::from_file_bytes(file, n_rows, dim, true).unwrap();
            let decoded = Arc::new(rows.dequantise().unwrap());
            let from_codes = Int8::from_quantised(&rows, Int8Params::default()).unwrap();
            let from_f32 = Int8::new(Arc::clone(&decoded), Int8Params::default()).unwrap();
            let batch = 16;
            let queries = random_queries(batch, dim, 22);
            let (ex, ks) = random_requests(batch, n_rows, 23);
            let reqs: Vec<Query> = ex
                .iter()
                .zip(&ks)
                .map(|(e, &k)| Query { k, exclude: e })
                .collect();
            for kernel in kernels() {
                let got = from_codes.search_with(kernel, &queries, &reqs);
                let want = from_f32.search_with(kernel, &queries, &reqs);
                for (qi, (g, w)) in got.iter().zip(&want).enumerate() {
                    let query = &queries[qi * dim..(qi + 1) * dim];
                    assert_eq!(g.len(), w.len(), "{n_rows}×{dim} query {qi}");
                    for (&(row, score), &(_, exact)) in g.iter().zip(w) {
                        assert!(!reqs[qi].excludes(row) && row != 0);
                        let model = decoded.score(query, row as usize);
                        let tol = 1e-5 * (1.0 + model.abs());
                        assert!(
                            (score - model).abs() <= tol,
                            "row {row}: {score} vs {model}"
                        );
                        // Same ranks as the f32 re-rank, up to near-ties.
                        assert!((score - exact).abs() <= 2.0 * tol, "{score} vs {exact}");
                    }
                }
            }
            let f32_bytes = 4 * n_rows * (dim + 1);
            assert!(from_codes.bytes() < from_f32.bytes() && from_f32.bytes() >= f32_bytes);
        }
        // 5000 × 32: the codes-only engine holds about a quarter of the f32 matrix.
        let items = random_matrix(5000, 32, true, 24);
        let rows = QuantisedRows::from_file_bytes(
            items.to_file_bytes(DTYPE_INT8).unwrap(),
            5000,
            32,
            true,
        )
        .unwrap();
        let e = Int8::from_quantised(&rows, Int8Params::default()).unwrap();
        assert!(
            e.bytes() * 2 < items.bytes(),
            "{} vs {}",
            e.bytes(),
            items.bytes()
        );
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
        assert!(e.search(&[], &[]).is_empty());
    }

    #[test]
    fn never_returns_row_zero_or_excluded_rows_even_if_best() {
        let items = padding_and_excluded_score_best();
        let e = Int8::new(Arc::clone(&items), Int8Params::default()).unwrap();
        let q = Query {
            k: 5,
            exclude: &[1],
        };
        for kernel in kernels() {
            let got = e.search_with(kernel, &[1.0, 0.0], &[q]);
            assert_eq!(got[0], vec![(3, 2.0), (2, 1.0)], "{kernel:?}");
        }
    }
}
