//! Approximate search with an HNSW graph (the `usearch` crate: the C++ USearch library with
//! runtime-dispatched SIMD distances, through its official Rust binding).
//!
//! The index holds the augmented item vectors `[v, b]` under usearch's native inner-product
//! metric, and queries are `[q, 1]`, so the graph's best match is the best score `q·v + b`.
//! (The classic MIPS → L2 reduction, `[v, b, √(M² − |v|² − b²)]`, was measured first and is
//! not used: on clustered catalogues with varying norms it kept recall@10 below 0.81 at any
//! ef for all three crates compared, `benches/ann-compare/README.md`.) Row 0 (padding) is not
//! indexed.
//!
//! A search walks the graph with a filter that rejects the query's excluded rows, so they are
//! honoured exactly and never take a result slot; the `k + overfetch` candidates found are
//! re-scored exactly in f32 and the best k returned, so returned scores are exact. If the graph
//! yields fewer than k allowed rows (tiny catalogues, almost everything excluded) the query
//! falls back to scoring every allowed row.
//!
//! The index is the engine's only copy of the item side: it stores the augmented vectors in
//! f32, and the re-rank reads candidates back from it (`Index::get`), so the f32 matrix the
//! graph was built from is freed after the build.
//!
//! A graph can be built once, at publish time, and saved with the bundle
//! ([`Ann::to_bytes`] → `index.usearch`); [`Ann::from_bytes`] then serves it without a rebuild.
//! It views the verified bytes in place (usearch's `view_from_buffer`) rather than
//! memory-mapping the file: a mapped file that is truncated or rewritten while live (an
//! `rsync` over a published version) kills the process with SIGBUS, while a read buffer is
//! immune and costs the same memory.
//!
//! Small catalogues (fewer items than [`AnnParams::full_scan_below`]) get no graph: every query
//! is answered by the exact engine's blocked scan, which is faster there and exact (Qdrant's
//! `full_scan_threshold` is the same idea). A graph walk under inner product can also miss a
//! top row outright on a tiny, clustered catalogue, which a scan never does.
//!
//! The build runs on a dedicated thread pool at lowered priority; it happens at model load,
//! before the version is swapped in.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use super::contract::{Engine, EngineError, EngineKind, Query};
use super::exact::Exact;
use super::matrix::{dot, ItemMatrix, RowSample};
use crate::topk::TopK;

/// Concurrent searchers the index reserves state for (usearch refuses, rather than queues, a
/// search beyond the reserved number): inference threads of one model plus offline callers.
const SEARCH_SLOTS: usize = 32;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnnParams {
    /// Links per node and layer (HNSW's M, usearch's `connectivity`); 4..=64.
    pub m: usize,
    /// Candidate list size while building (`expansion_add`).
    pub ef_construction: usize,
    /// Candidate list size while searching (`expansion_search`; usearch uses
    /// `max(ef_search, k + overfetch)`). 32 halves the search cost of 64 and still gave
    /// recall@10 ≥ 0.99 against exact on the 100k clustered catalogue (test below and
    /// `benches/ann-compare/README.md`); raise it per model in the manifest for harder data.
    pub ef_search: usize,
    /// Candidates fetched beyond k and re-ranked exactly.
    pub overfetch: usize,
    /// Threads for the build (0 = one per core).
    pub build_threads: usize,
    /// Catalogues with fewer items than this are scanned exactly instead of indexed (0 = always
    /// build the graph). The default is where the graph starts to beat the scan at batch 1:
    /// `DISTILREC_BENCH_SIZES=1000,3000,10000 cargo bench --bench engines -- engine/` measured
    /// scan 6.2 / 18.4 / 75 µs against graph 10.8 / 13.0 / 9.3 µs per query (d 64); in batches
    /// of 32 the scan stays ahead per query up to ~6k items.
    pub full_scan_below: usize,
}

impl Default for AnnParams {
    fn default() -> Self {
        AnnParams {
            m: 16,
            ef_construction: 128,
            ef_search: 32,
            overfetch: 10,
            build_threads: 0,
            full_scan_below: FULL_SCAN_BELOW,
        }
    }
}

/// Default of [`AnnParams::full_scan_below`].
pub const FULL_SCAN_BELOW: usize = 2_000;

impl AnnParams {
    /// Every setting within its range: `m` 4..=64, `ef_*` up to [`super::contract::MAX_EF`],
    /// `overfetch` up to the catalogue, `build_threads` up to the CPUs available.
    pub fn check(&self, n_rows: usize) -> Result<(), EngineError> {
        let bad = |m: String| Err(EngineError::Params(format!("ann: {m}")));
        if !(4..=64).contains(&self.m) {
            return bad(format!("m {} is outside 4..=64", self.m));
        }
        if self.ef_construction < self.m || self.ef_construction > super::contract::MAX_EF {
            return bad(format!(
                "ef_construction {} is outside m ({})..={}",
                self.ef_construction,
                self.m,
                super::contract::MAX_EF
            ));
        }
        if !(1..=super::contract::MAX_EF).contains(&self.ef_search) {
            return bad(format!(
                "ef_search {} is outside 1..={}",
                self.ef_search,
                super::contract::MAX_EF
            ));
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        if self.build_threads > cpus {
            return bad(format!(
                "build_threads {} is more than the {cpus} CPUs available (0 = all of them)",
                self.build_threads
            ));
        }
        super::contract::at_most_rows(
            "ann.overfetch",
            self.overfetch,
            AnnParams::default().overfetch,
            n_rows,
        )
    }
}

pub struct Ann {
    n_rows: usize,
    dim: usize,
    search: Search,
    params: AnnParams,
    build_seconds: f64,
}

enum Search {
    Graph(Graph),
    /// Below [`AnnParams::full_scan_below`]: the exact blocked scan.
    Scan(Exact),
}

/// An HNSW index and, when it views serialized bytes rather than owning its memory, those
/// bytes. Field order matters: the index is dropped before the buffer it reads.
struct Graph {
    index: Index,
    backing: Option<IndexBytes>,
}

/// Serialized index bytes in an 8-byte-aligned buffer (the graph's offsets and vectors are read
/// in place by a viewing index).
#[derive(Clone)]
pub struct IndexBytes {
    words: Vec<u64>,
    len: usize,
}

impl std::fmt::Debug for IndexBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IndexBytes({} bytes)", self.len)
    }
}

impl IndexBytes {
    pub fn zeroed(len: usize) -> Self {
        IndexBytes {
            words: vec![0; len.div_ceil(8)],
            len,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }

    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut(&mut self.words)[..self.len]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Where a build stands: rows added so far out of the rows to add. Shared with whoever wants
/// to watch it (the loader's deadline, the models API).
#[derive(Debug, Default)]
pub struct BuildProgress {
    pub done: AtomicUsize,
    pub total: AtomicUsize,
}

impl BuildProgress {
    pub fn get(&self) -> (usize, usize) {
        (
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        )
    }
}

fn usearch_error(what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Build(format!("{what}: {e}"))
}

fn saved_error(message: String) -> EngineError {
    EngineError::Build(format!("saved index: {message}"))
}

/// Rows read back from a saved index and compared with the item matrix, bit for bit: proof that
/// the index was built from these items (its sha256 already proves it is the published file).
const SPOT_CHECKS: usize = 64;

/// The rows of an `n_rows` catalogue a saved graph is checked on ([`Ann::from_bytes`]): about
/// [`SPOT_CHECKS`] spread evenly over the indexed rows, and the last one.
pub fn spot_check_rows(n_rows: usize) -> Vec<usize> {
    let step = (n_rows.saturating_sub(1) / SPOT_CHECKS).max(1);
    let mut rows: Vec<usize> = (1..n_rows).step_by(step).collect();
    if n_rows > 1 && rows.last() != Some(&(n_rows - 1)) {
        rows.push(n_rows - 1);
    }
    rows
}

impl Ann {
    pub fn build(items: &ItemMatrix, params: AnnParams) -> Result<Self, EngineError> {
        Ann::build_watched(items, params, &BuildProgress::default())
    }

    /// [`Ann::build`], counting added rows in `progress` as it goes.
    pub fn build_watched(
        items: &ItemMatrix,
        params: AnnParams,
        progress: &BuildProgress,
    ) -> Result<Self, EngineError> {
        params.check(items.n_rows())?;
        let start = Instant::now();
        let (n_rows, dim) = (items.n_rows(), items.dim());
        if n_rows - 1 < params.full_scan_below {
            return Ok(Ann {
                n_rows,
                dim,
                search: Search::Scan(Exact::new(items)),
                params,
                build_seconds: start.elapsed().as_secs_f64(),
            });
        }
        let threads = match params.build_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            t => t,
        };
        let index = Index::new(&options(dim, &params))
            .map_err(|e| usearch_error("creating the index", e))?;
        index
            .reserve_capacity_and_threads(n_rows, threads.max(SEARCH_SLOTS))
            .map_err(|e| usearch_error("reserving the index", e))?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("ann-build-{i}"))
            .start_handler(|_| crate::os::lower_this_threads_priority())
            .build()
            .map_err(|e| usearch_error("starting the build threads", e))?;
        progress.total.store(n_rows - 1, Ordering::Relaxed);
        let added: Result<(), EngineError> = pool.install(|| {
            use rayon::prelude::*;
            (1..n_rows).into_par_iter().try_for_each_init(
                || Vec::with_capacity(dim + 1),
                |v, row| {
                    v.clear();
                    v.extend_from_slice(items.row(row));
                    v.push(items.bias()[row]);
                    index
                        .add(row as u64, v.as_slice())
                        .map_err(|e| usearch_error("adding a vector", e))?;
                    progress.done.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                },
            )
        });
        added?;
        let build_seconds = start.elapsed().as_secs_f64();
        tracing::debug!(rows = n_rows - 1, build_seconds, "ANN index built");
        Ok(Ann {
            n_rows,
            dim,
            search: Search::Graph(Graph {
                index,
                backing: None,
            }),
            params,
            build_seconds,
        })
    }

    /// Serves a graph saved by [`Ann::to_bytes`] without rebuilding it. The bytes must describe
    /// an inner-product, f32, single-key index of the item side's augmented rows `1..n_rows`;
    /// the rows of [`spot_check_rows`] in `sample` are compared with the graph's bit for bit
    /// (the whole matrix is not needed: the graph holds every vector). `params` supplies the
    /// search settings (the graph keeps the `m` and `ef_construction` it was built with).
    pub fn from_bytes(
        bytes: IndexBytes,
        sample: &RowSample,
        params: AnnParams,
    ) -> Result<Self, EngineError> {
        params.check(sample.n_rows())?;
        let start = Instant::now();
        let (n_rows, dim) = (sample.n_rows(), sample.dim());
        let meta = Index::metadata_from_buffer(bytes.as_bytes())
            .map_err(|e| saved_error(format!("unreadable header: {e}")))?;
        if meta.dimensions as usize != dim + 1
            || meta.metric != MetricKind::IP
            || meta.quantization != ScalarKind::F32
            || meta.multi
            || meta.count_present as usize != n_rows - 1
            || meta.count_deleted != 0
        {
            return Err(saved_error(format!(
                "it holds {} vectors of {} dimensions ({:?}, {:?}{}), the bundle needs {} \
                 inner-product f32 vectors of {}",
                meta.count_present,
                meta.dimensions,
                meta.metric,
                meta.quantization,
                if meta.multi { ", multi-key" } else { "" },
                n_rows - 1,
                dim + 1
            )));
        }
        let index = Index::new(&options(dim, &params))
            .map_err(|e| usearch_error("creating the index", e))?;
        // SAFETY: `bytes` moves into the same `Graph` as the index and outlives it (fields drop
        // in declaration order), and it is never written to again.
        unsafe { index.view_from_buffer(bytes.as_bytes()) }
            .map_err(|e| saved_error(format!("cannot be viewed: {e}")))?;
        index.change_expansion_search(params.ef_search);
        // A view reserves search state for as many threads as the machine has cores; a search
        // beyond that fails, and `search_one` then scans every row. Built graphs reserve
        // `SEARCH_SLOTS`, and so must viewed ones: inference threads and offline callers can
        // outnumber the cores. The members stay the viewed ones (nothing is copied but the
        // node table's pointers).
        index
            .reserve_capacity_and_threads(index.size(), SEARCH_SLOTS)
            .map_err(|e| usearch_error("reserving search threads", e))?;
        if index.size() != n_rows - 1 || index.dimensions() != dim + 1 {
            return Err(saved_error(format!(
                "viewed {} vectors of {} dimensions, expected {} of {}",
                index.size(),
                index.dimensions(),
                n_rows - 1,
                dim + 1
            )));
        }
        let mut got = vec![0f32; dim + 1];
        let checked: Vec<usize> = sample.rows().map(|(r, _, _)| r).collect();
        if checked != spot_check_rows(n_rows) {
            return Err(saved_error(format!(
                "{} rows given to check, expected the {} of spot_check_rows",
                checked.len(),
                spot_check_rows(n_rows).len()
            )));
        }
        for (row, vector, bias) in sample.rows() {
            let found = index.get(row as u64, &mut got).unwrap_or(0);
            let same = found == 1
                && got[..dim]
                    .iter()
                    .zip(vector)
                    .all(|(a, b)| a.to_bits() == b.to_bits())
                && got[dim].to_bits() == bias.to_bits();
            if !same {
                return Err(saved_error(format!(
                    "row {row} differs from the item matrix: the index was built from other items"
                )));
            }
        }
        Ok(Ann {
            n_rows,
            dim,
            search: Search::Graph(Graph {
                index,
                backing: Some(bytes),
            }),
            params,
            build_seconds: start.elapsed().as_secs_f64(),
        })
    }

    /// The graph serialized (what [`Ann::from_bytes`] reads); `None` when the catalogue is
    /// scanned instead.
    pub fn to_bytes(&self) -> Result<Option<IndexBytes>, EngineError> {
        let Search::Graph(graph) = &self.search else {
            return Ok(None);
        };
        let mut out = IndexBytes::zeroed(graph.index.serialized_length());
        graph
            .index
            .save_to_buffer(out.as_bytes_mut())
            .map_err(|e| usearch_error("serializing the index", e))?;
        Ok(Some(out))
    }

    /// Seconds spent building the graph, or viewing and checking a saved one.
    pub fn build_seconds(&self) -> f64 {
        self.build_seconds
    }

    /// Whether queries walk an HNSW graph (false: the catalogue is scanned exactly).
    pub fn has_graph(&self) -> bool {
        matches!(self.search, Search::Graph(_))
    }

    /// Whether the graph was read from saved bytes rather than built here.
    pub fn is_viewed(&self) -> bool {
        matches!(&self.search, Search::Graph(g) if g.backing.is_some())
    }

    /// Exact f32 re-rank of candidate rows read back from the index: the best `q.k` that `q`
    /// allows.
    fn rerank(
        &self,
        index: &Index,
        query: &[f32],
        q: &Query<'_>,
        candidates: impl IntoIterator<Item = u32>,
        row: &mut [f32],
    ) -> Vec<(u32, f32)> {
        let mut best = TopK::new(q.k);
        for r in candidates {
            if q.excludes(r) {
                continue;
            }
            if let Ok(1) = index.get(r as u64, row) {
                best.push(r, dot(query, &row[..self.dim]) + row[self.dim]);
            }
        }
        best.into_sorted()
    }

    fn search_one(
        &self,
        index: &Index,
        query: &[f32],
        aug: &mut Vec<f32>,
        q: &Query<'_>,
    ) -> Vec<(u32, f32)> {
        if q.k == 0 {
            return Vec::new();
        }
        aug.clear();
        aug.extend_from_slice(query);
        aug.push(1.0);
        let want = q.k.saturating_add(self.params.overfetch).min(self.n_rows);
        let found = index.filtered_search(aug.as_slice(), want, |key| !q.excludes(key as u32));
        let mut row = vec![0f32; self.dim + 1];
        let best = match found {
            Ok(m) => self.rerank(index, query, q, m.keys.iter().map(|&k| k as u32), &mut row),
            Err(e) => {
                tracing::warn!(error = %e, "ANN search failed; answering exactly");
                Vec::new()
            }
        };
        let allowed = self.n_rows - 1 - q.exclude.iter().filter(|&&r| r != 0).count();
        if best.len() < q.k.min(allowed) {
            // Rare (tiny catalogues, almost everything excluded): score every allowed row
            // rather than keep a second, GEMM-friendly copy of the items as `Exact` does.
            return self.rerank(index, query, q, 1..self.n_rows as u32, &mut row);
        }
        best
    }
}

fn options(dim: usize, params: &AnnParams) -> IndexOptions {
    IndexOptions {
        dimensions: dim + 1,
        metric: MetricKind::IP,
        quantization: ScalarKind::F32,
        connectivity: params.m,
        expansion_add: params.ef_construction,
        expansion_search: params.ef_search,
        multi: false,
    }
}

impl Engine for Ann {
    fn kind(&self) -> EngineKind {
        EngineKind::Ann
    }

    fn search(&self, queries: &[f32], requests: &[Query<'_>]) -> Vec<Vec<(u32, f32)>> {
        let index = match &self.search {
            Search::Graph(graph) => &graph.index,
            Search::Scan(exact) => return exact.search(queries, requests),
        };
        let dim = self.dim;
        assert_eq!(
            queries.len(),
            requests.len() * dim,
            "one query vector per request"
        );
        let mut aug = Vec::with_capacity(dim + 1);
        queries
            .chunks_exact(dim)
            .zip(requests)
            .map(|(query, q)| self.search_one(index, query, &mut aug, q))
            .collect()
    }

    fn graph(&self) -> Option<&'static str> {
        match &self.search {
            Search::Graph(g) if g.backing.is_some() => Some("saved"),
            Search::Graph(_) => Some("built"),
            Search::Scan(_) => None,
        }
    }

    fn bytes(&self) -> usize {
        match &self.search {
            Search::Graph(Graph {
                backing: Some(b), ..
            }) => b.len(),
            Search::Graph(graph) => graph.index.memory_usage(),
            Search::Scan(exact) => exact.bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::testing::*;
    use super::*;

    /// The defaults, with a graph at any catalogue size, built on one thread (a parallel build
    /// inserts in a different order each run, so the graph and its recall would vary).
    fn graph() -> AnnParams {
        AnnParams {
            full_scan_below: 0,
            build_threads: 1,
            ..AnnParams::default()
        }
    }

    #[test]
    fn exclusions_are_exact_and_scores_are_exact() {
        let items = Arc::new(random_matrix(3000, 16, true, 21));
        let e = Ann::build(&items, graph()).unwrap();
        assert!(e.has_graph());
        let mean = approximate_recall(&e, &items, 30, 22);
        assert!(mean >= 0.95, "recall {mean}");
    }

    #[test]
    fn excluding_almost_everything_still_answers_exactly() {
        let items = Arc::new(random_matrix(40, 4, false, 2));
        let e = Ann::build(&items, graph()).unwrap();
        let ex: Vec<u32> = (1..37).collect();
        let q = Query {
            k: 10,
            exclude: &ex,
        };
        let query = random_queries(1, 4, 3);
        let got = e.search(&query, &[q]);
        assert_eq!(got[0], brute_force(&items, &query, &q));
    }

    #[test]
    fn a_catalogue_below_the_threshold_is_scanned_exactly() {
        let items = Arc::new(random_matrix(200, 8, true, 5));
        let e = Ann::build(&items, AnnParams::default()).unwrap();
        assert!(!e.has_graph());
        let (ex, ks) = random_requests(40, 200, 6);
        let queries = random_queries(40, 8, 7);
        let reqs: Vec<Query> = ex
            .iter()
            .zip(&ks)
            .map(|(e, &k)| Query { k, exclude: e })
            .collect();
        assert_exact(&items, &queries, &reqs, &e.search(&queries, &reqs));
        let at = AnnParams {
            full_scan_below: 199,
            ..AnnParams::default()
        };
        assert!(
            Ann::build(&items, at).unwrap().has_graph(),
            "199 items get a graph at 199"
        );
    }

    /// The acceptance check of issue 13: recall@10 of ANN against exact ≥ 0.95 on a 100k-item
    /// clustered catalogue (d = 64) with history-sized exclusions.
    #[test]
    fn recall_at_10_on_a_100k_clustered_catalogue() {
        use crate::engine::synthetic::{clustered_items, clustered_queries};
        let (n_rows, dim, clusters) = (100_001, 64, 256);
        let items = Arc::new(clustered_items(n_rows, dim, clusters, 1));
        let ann = Ann::build(&items, AnnParams::default()).unwrap();
        let exact = Exact::new(&items);
        let n = 200;
        let queries = clustered_queries(n, dim, clusters, 1);
        let (ex, _) = random_requests(n, n_rows, 2);
        let reqs: Vec<Query> = ex.iter().map(|e| Query { k: 10, exclude: e }).collect();
        let want = exact.search(&queries, &reqs);
        let got = ann.search(&queries, &reqs);
        let mean: f64 = got
            .iter()
            .zip(&want)
            .map(|(g, w)| recall(g, w))
            .sum::<f64>()
            / n as f64;
        eprintln!(
            "ANN recall@10 vs exact on 100k clustered items: {mean:.4} (build {:.1} s)",
            ann.build_seconds()
        );
        assert!(mean >= 0.95, "recall@10 {mean}");
    }

    fn sample(items: &ItemMatrix) -> RowSample {
        RowSample::from_matrix(items, &spot_check_rows(items.n_rows()))
    }

    #[test]
    fn spot_check_rows_spread_over_the_indexed_rows_and_end_at_the_last() {
        assert_eq!(spot_check_rows(2), vec![1]);
        assert_eq!(spot_check_rows(5), vec![1, 2, 3, 4]);
        let rows = spot_check_rows(1_000_001);
        assert!(rows.len() <= SPOT_CHECKS + 2 && rows.len() >= SPOT_CHECKS);
        assert_eq!((rows[0], *rows.last().unwrap()), (1, 1_000_000));
        assert!(rows.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn a_saved_graph_answers_as_the_graph_it_was_saved_from() {
        let items = Arc::new(random_matrix(3000, 16, true, 31));
        let built = Ann::build(&items, graph()).unwrap();
        let bytes = built.to_bytes().unwrap().expect("a graph to save");
        let viewed = Ann::from_bytes(bytes, &sample(&items), graph()).unwrap();
        assert!(viewed.has_graph() && viewed.is_viewed() && !built.is_viewed());
        let n = 50;
        let queries = random_queries(n, 16, 32);
        let (ex, ks) = random_requests(n, 3000, 33);
        let reqs: Vec<Query> = ex
            .iter()
            .zip(&ks)
            .map(|(e, &k)| Query { k, exclude: e })
            .collect();
        assert_eq!(
            viewed.search(&queries, &reqs),
            built.search(&queries, &reqs),
            "same graph, same answers"
        );
        let mean = approximate_recall(&viewed, &items, 30, 34);
        assert!(mean >= 0.95, "recall {mean}");
        // Searched from more threads at once than the machine has cores, as inference
        // threads and offline callers do (a search beyond the reserved threads would fail and
        // be answered by a full scan, not by the graph).
        let start = std::sync::Barrier::new(8);
        std::thread::scope(|s| {
            for t in 0..8u64 {
                let (viewed, built, start) = (&viewed, &built, &start);
                s.spawn(move || {
                    start.wait();
                    let queries = random_queries(200, 16, 100 + t);
                    let reqs = vec![
                        Query {
                            k: 10,
                            exclude: &[]
                        };
                        200
                    ];
                    assert_eq!(
                        viewed.search(&queries, &reqs),
                        built.search(&queries, &reqs)
                    );
                });
            }
        });
        // The viewed bytes are the engine's only copy of the item side.
        assert_eq!(viewed.bytes(), built.to_bytes().unwrap().unwrap().len());
    }

    #[test]
    fn a_saved_graph_of_other_items_or_cut_short_is_refused() {
        let items = Arc::new(random_matrix(3000, 16, true, 41));
        let bytes = Ann::build(&items, graph())
            .unwrap()
            .to_bytes()
            .unwrap()
            .unwrap();
        // Same shape, one row different: the spot check compares rows bit for bit.
        let mut other = items.vectors().to_vec();
        other[16..32].iter_mut().for_each(|v| *v += 1.0);
        let other = ItemMatrix::new(3000, 16, other, Some(items.bias().to_vec())).unwrap();
        let Err(err) = Ann::from_bytes(bytes.clone(), &sample(&other), graph()) else {
            panic!("a graph of other items was accepted");
        };
        assert!(err.to_string().contains("row 1 differs"), "{err}");
        // Another shape.
        let wider = random_matrix(3000, 17, true, 41);
        assert!(Ann::from_bytes(bytes.clone(), &sample(&wider), graph()).is_err());
        let fewer = random_matrix(2999, 16, true, 41);
        assert!(Ann::from_bytes(bytes.clone(), &sample(&fewer), graph()).is_err());
        // Cut short: the header still parses, the body does not fit.
        for keep in [10, 64, bytes.len() / 2, bytes.len() - 1] {
            let mut cut = IndexBytes::zeroed(keep);
            cut.as_bytes_mut()
                .copy_from_slice(&bytes.as_bytes()[..keep]);
            assert!(
                Ann::from_bytes(cut, &sample(&items), graph()).is_err(),
                "{keep} of {} bytes accepted",
                bytes.len()
            );
        }
    }

    #[test]
    fn a_build_reports_its_progress() {
        let items = random_matrix(500, 8, false, 5);
        let progress = BuildProgress::default();
        Ann::build_watched(&items, graph(), &progress).unwrap();
        assert_eq!(progress.get(), (499, 499));
    }

    #[test]
    fn bad_parameters_are_refused() {
        let items = Arc::new(random_matrix(10, 2, false, 2));
        for p in [
            AnnParams {
                m: 300,
                ..AnnParams::default()
            },
            AnnParams {
                m: 2,
                ..AnnParams::default()
            },
            AnnParams {
                ef_search: 0,
                ..AnnParams::default()
            },
        ] {
            assert!(Ann::build(&items, p).is_err());
        }
    }
}
